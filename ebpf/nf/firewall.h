/* SPDX-License-Identifier: Apache-2.0 */
/*
 * firewall.h - ordered rule firewall with optional connection tracking.
 *
 * Rules of an instance are numbered 0..63 in priority order.  The source and
 * destination CIDRs live in LPM tries keyed by (instance, address); each trie
 * entry's value is the bitmap of all rules whose CIDR contains that prefix
 * (user space folds ancestors in), so one lookup per trie yields every rule
 * whose addresses match.  The candidates (src & dst) are then checked in
 * ascending order for protocol and port ranges; the first match decides.
 * No match -> default action.  With conntrack, an allowed packet records its
 * flow, and later packets of the flow in either direction pass directly.
 * Non-IP frames (ARP, ...) pass; malformed IP packets are dropped.
 */
#ifndef VNF_NF_FIREWALL_H
#define VNF_NF_FIREWALL_H

#include "../lib/chain.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_fw_cfg);
} vnf_fw_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES * VNF_FW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct vnf_fw_rule);
} vnf_fw_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES * VNF_FW_MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} vnf_fw_hits SEC(".maps");

#define VNF_FW_LPM(name, keytype)                                   \
	struct {                                                    \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                \
		__uint(max_entries, 16384);                         \
		__uint(map_flags, BPF_F_NO_PREALLOC);               \
		__type(key, keytype);                               \
		__type(value, __u64);                               \
	} name SEC(".maps")

VNF_FW_LPM(vnf_fw_src4, struct vnf_lpm4_key);
VNF_FW_LPM(vnf_fw_dst4, struct vnf_lpm4_key);
VNF_FW_LPM(vnf_fw_src6, struct vnf_lpm6_key);
VNF_FW_LPM(vnf_fw_dst6, struct vnf_lpm6_key);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNF_CT_MAX);
	__type(key, struct vnf_ct_key);
	__type(value, struct vnf_ct_val);
} vnf_ct SEC(".maps");

static __always_inline __u64 fw_lookup4(void *map, __u32 inst,
					const __u8 *addr)
{
	struct vnf_lpm4_key k = { .prefixlen = 64,
				  .instance = bpf_htonl(inst) };
	__u64 *v;

	__builtin_memcpy(k.addr, addr, 4);
	v = bpf_map_lookup_elem(map, &k);
	return v ? *v : 0;
}

static __always_inline __u64 fw_lookup6(void *map, __u32 inst,
					const __u8 *addr)
{
	struct vnf_lpm6_key k = { .prefixlen = 160,
				  .instance = bpf_htonl(inst) };
	__u64 *v;

	__builtin_memcpy(k.addr, addr, 16);
	v = bpf_map_lookup_elem(map, &k);
	return v ? *v : 0;
}

static __always_inline int fw_rule_match(const struct vnf_fw_rule *r,
					 const struct vnf_pkt *p)
{
	if (!(r->flags & VNF_FW_RULE_VALID))
		return 0;
	if (r->family && r->family != p->t.family)
		return 0;
	if (r->proto && r->proto != p->t.proto)
		return 0;
	if (!(r->flags & VNF_FW_RULE_PORTS))
		return 1;
	/* port criteria need a TCP/UDP header */
	if (!p->l4_valid ||
	    (p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP))
		return 0;
	return p->t.sport >= r->sport_lo && p->t.sport <= r->sport_hi &&
	       p->t.dport >= r->dport_lo && p->t.dport <= r->dport_hi;
}

static __always_inline void fw_reverse(struct vnf_tuple *dst,
				       const struct vnf_tuple *src)
{
	__builtin_memcpy(dst->saddr, src->daddr, 16);
	__builtin_memcpy(dst->daddr, src->saddr, 16);
	dst->sport = src->dport;
	dst->dport = src->sport;
	dst->proto = src->proto;
	dst->family = src->family;
	dst->_pad[0] = 0;
	dst->_pad[1] = 0;
}

/* Is the packet part of a tracked connection (either direction)? */
static __always_inline int fw_ct_hit(__u32 inst, const struct vnf_fw_cfg *cfg,
				     const struct vnf_pkt *p)
{
	struct vnf_ct_key k = { .instance = inst };
	struct vnf_ct_val *v;
	__u64 now = bpf_ktime_get_ns();

	k.t = p->t;
	v = bpf_map_lookup_elem(&vnf_ct, &k);
	if (!v) {
		fw_reverse(&k.t, &p->t);
		v = bpf_map_lookup_elem(&vnf_ct, &k);
	}
	if (!v)
		return 0;
	if (cfg->ct_timeout_ns && now - v->last_seen_ns > cfg->ct_timeout_ns) {
		bpf_map_delete_elem(&vnf_ct, &k);
		return 0;
	}
	v->last_seen_ns = now;
	__sync_fetch_and_add(&v->packets, 1);
	return 1;
}

static __always_inline void fw_ct_open(__u32 inst, const struct vnf_pkt *p)
{
	struct vnf_ct_key k = { .instance = inst };
	struct vnf_ct_val v = { .last_seen_ns = bpf_ktime_get_ns(),
				.packets = 1 };

	k.t = p->t;
	bpf_map_update_elem(&vnf_ct, &k, &v, BPF_ANY);
}

static __always_inline int fw_verdict(__u8 action, __u32 reason,
				      struct vnf_scratch *s)
{
	if (action == VNF_ACT_ALLOW)
		return VNF_NEXT;
	s->reason = reason;
	return VNF_ACT_DROP;
}

/* Index of the lowest set bit of a non-zero v. */
static __always_inline __u32 fw_ctz(__u64 v)
{
	__u32 r = 0;

	v &= -v;
	if (v & 0xffffffff00000000ULL)
		r += 32;
	if (v & 0xffff0000ffff0000ULL)
		r += 16;
	if (v & 0xff00ff00ff00ff00ULL)
		r += 8;
	if (v & 0xf0f0f0f0f0f0f0f0ULL)
		r += 4;
	if (v & 0xccccccccccccccccULL)
		r += 2;
	if (v & 0xaaaaaaaaaaaaaaaaULL)
		r += 1;
	return r;
}

/* State of the rule scan, passed to the bpf_loop() callback. */
struct fw_scan {
	struct vnf_pkt p;
	__u64 cand; /* rules still to check */
	__u32 inst;
	__s32 matched; /* rule index, -1 = none */
	__u8 action;
};

/* One step of the scan: check the lowest-numbered candidate rule.  The
 * callback is verified once instead of once per unrolled iteration. */
static long fw_scan_step(__u64 index, void *data)
{
	struct fw_scan *sc = data;
	struct vnf_fw_rule *r;
	__u32 i, idx;

	(void)index;
	if (!sc->cand)
		return 1;
	i = fw_ctz(sc->cand) & (VNF_FW_MAX_RULES - 1);
	sc->cand &= ~(1ULL << i);
	idx = sc->inst * VNF_FW_MAX_RULES + i;
	r = bpf_map_lookup_elem(&vnf_fw_rules, &idx);
	if (!r || !fw_rule_match(r, &sc->p))
		return 0;
	sc->matched = i;
	sc->action = r->action;
	return 1;
}

static __always_inline int nf_firewall(vnf_ctx_t *ctx, struct vnf_scratch *s,
				       __u32 inst, struct vnf_fn_stats *st)
{
	struct vnf_fw_cfg *cfg = bpf_map_lookup_elem(&vnf_fw_cfg, &inst);
	struct fw_scan sc;
	int ct = 0;
	int rc;

	if (!cfg) {
		s->reason = VNF_R_NO_CONFIG;
		return VNF_ACT_DROP;
	}
	rc = vnf_parse(ctx, &sc.p);
	if (rc == VNF_PARSE_NON_IP)
		return VNF_NEXT;
	if (rc != VNF_PARSE_OK) {
		s->reason = VNF_R_MALFORMED;
		return VNF_ACT_DROP;
	}

	ct = cfg->flags & VNF_FW_F_CONNTRACK;
	if (ct && fw_ct_hit(inst, cfg, &sc.p)) {
		st->aux++;
		return VNF_NEXT;
	}

	if (sc.p.t.family == 4)
		sc.cand = fw_lookup4(&vnf_fw_src4, inst, sc.p.t.saddr) &
			  fw_lookup4(&vnf_fw_dst4, inst, sc.p.t.daddr);
	else
		sc.cand = fw_lookup6(&vnf_fw_src6, inst, sc.p.t.saddr) &
			  fw_lookup6(&vnf_fw_dst6, inst, sc.p.t.daddr);
	sc.inst = inst;
	sc.matched = -1;
	sc.action = cfg->default_action;
	bpf_loop(VNF_FW_MAX_RULES, fw_scan_step, &sc, 0);

	if (sc.matched >= 0) {
		__u32 idx = inst * VNF_FW_MAX_RULES +
			    (sc.matched & (VNF_FW_MAX_RULES - 1));
		__u64 *hits = bpf_map_lookup_elem(&vnf_fw_hits, &idx);

		if (hits)
			(*hits)++;
	}
	if (sc.action == VNF_ACT_ALLOW && ct)
		fw_ct_open(inst, &sc.p);
	return fw_verdict(sc.action,
			  sc.matched >= 0 ? VNF_R_FW_RULE : VNF_R_FW_DEFAULT, s);
}

#endif /* VNF_NF_FIREWALL_H */
