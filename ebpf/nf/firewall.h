/* SPDX-License-Identifier: Apache-2.0 */
/*
 * firewall.h - ordered-rule firewall (up to VNF_FW_MAX_RULES = 10240 rules
 * per instance) with optional connection tracking.
 *
 * Classification: aggregated bit vectors (Lakshman & Stiliadis, SIGCOMM
 * 1998).  Rules are numbered 0..n-1 in priority order; user space
 * (cnf-dataplane/src/engine/firewall.rs) precomputes, for every dimension,
 * the bitmap of the rules each packet value matches:
 *
 *   source, destination  LPM tries (instance, address) -> bitmap of every
 *                        rule whose prefix contains the longest matching
 *                        prefix (ancestors folded in; /0 always present);
 *   protocol             array (instance * 256 + proto) -> bitmap;
 *   source, destination  the elementary intervals cut by all rule port
 *   port                 bounds, sorted in a pool region per instance and
 *                        binary-searched (<= 17 steps) -> bitmap; packets
 *                        without TCP/UDP ports use the bitmap of the rules
 *                        without port criteria.
 *
 * A bitmap is nwords = ceil(n / 64) u64 words in the pool vnf_fw_words
 * (identical bitmaps are stored once), plus an aggregate with one bit per
 * word that is set when the word is non-zero.  Per packet: 5 lookups, AND
 * of the five 3-word aggregates, then for each candidate word in ascending
 * order (a bpf_loop() callback) the AND of the five words; the first
 * non-zero word's lowest bit is the first matching rule.  The cost is a
 * handful of lookups plus one step per word whose aggregate bits are set in
 * all five dimensions, so it barely grows with the rule count (rule sets
 * whose matching rules are spread over many words pay one step per word
 * with a false aggregate hit).  Memory is the classic price: one bitmap of
 * n bits per distinct prefix / port interval / protocol.
 *
 * No match -> default action.  With conntrack, an allowed packet records its
 * flow (stamped with the policy version of the configuration), and later
 * packets of the flow in either direction pass directly while the version
 * is current (sidecar mode adds the flows the pod opens: fw_ct_pod_reply,
 * lib/egress.h).  After a policy change the next packet of a flow re-checks
 * the flow's original tuple against the new rules: still allowed, the entry
 * is re-stamped and keeps its state; denied, the entry is removed and the
 * packet dropped (a tightened policy takes effect on established flows).
 *
 * Packets the parser could not fully parse are dropped with the parser's
 * reason (malformed, encapsulation / extension-header depth, tiny fragment,
 * fragment of an unknown datagram).  Non-IP frames pass when the chain's
 * generation lists their EtherType (spec.nonIp.allow, default ARP) and are
 * dropped with VNF_R_NON_IP otherwise, whatever the default action: no rule
 * can match them.  The contract: docs/security.md.
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

/* action (enum vnf_action) of rule slot rule_off + i */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_FW_RULE_POOL);
	__type(key, __u32);
	__type(value, __u32);
} vnf_fw_actions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VNF_FW_RULE_POOL);
	__type(key, __u32);
	__type(value, __u64);
} vnf_fw_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_FW_WORD_POOL);
	__type(key, __u32);
	__type(value, __u64);
} vnf_fw_words SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES * 256);
	__type(key, __u32);
	__type(value, struct vnf_fw_bm);
} vnf_fw_proto SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_FW_PORT_POOL);
	__type(key, __u32);
	__type(value, struct vnf_fw_port_seg);
} vnf_fw_ports SEC(".maps");

#define VNF_FW_LPM(name, keytype)                                   \
	struct {                                                    \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                \
		__uint(max_entries, VNF_FW_LPM_MAX);                \
		__uint(map_flags, BPF_F_NO_PREALLOC);               \
		__type(key, keytype);                               \
		__type(value, struct vnf_fw_bm);                    \
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

static __always_inline struct vnf_fw_bm *fw_lookup(void *trie4, void *trie6,
						   __u32 inst, __u8 family,
						   const __u8 *addr)
{
	if (family == 4) {
		struct vnf_lpm4_key k = { .prefixlen = 64,
					  .instance = bpf_htonl(inst) };

		__builtin_memcpy(k.addr, addr, 4);
		return bpf_map_lookup_elem(trie4, &k);
	} else {
		struct vnf_lpm6_key k = { .prefixlen = 160,
					  .instance = bpf_htonl(inst) };

		__builtin_memcpy(k.addr, addr, 16);
		return bpf_map_lookup_elem(trie6, &k);
	}
}

/* Index (relative to off) of the port segment containing port, -1 if the
 * pool is inconsistent: binary search over the instance's n (>= 1) segments
 * at off, sorted by lo, the first at 0.
 *
 * A global (non-inlined) function: the verifier checks it once, on its own,
 * instead of once for every path that reaches each of its two call sites;
 * inlined, its 18-step loop made the firewall the slowest program to load. */
__attribute__((noinline)) int fw_port_seg(__u32 off, __u32 n, __u32 port)
{
	struct vnf_fw_port_seg *seg;
	__u32 lo = 0, hi = n ? n - 1 : 0, idx;
	int i;

	for (i = 0; i < 18; i++) {
		__u32 mid;

		if (lo >= hi)
			break;
		mid = (lo + hi + 1) / 2;
		idx = off + mid;
		seg = bpf_map_lookup_elem(&vnf_fw_ports, &idx);
		if (!seg)
			return -1;
		if (seg->lo <= port)
			lo = mid;
		else
			hi = mid - 1;
	}
	return (int)(lo & 0x7fffffff);
}

/* Bitmap of the port segment containing port. */
static __always_inline struct vnf_fw_bm *fw_port_bm(__u32 off, __u32 n,
						    __u16 port)
{
	struct vnf_fw_port_seg *seg;
	int k = fw_port_seg(off, n, port);
	__u32 idx;

	if (k < 0)
		return NULL;
	idx = off + (__u32)k;
	seg = bpf_map_lookup_elem(&vnf_fw_ports, &idx);
	return seg ? &seg->bm : NULL;
}


/* The tracked connection of the packet (either direction) or NULL; *k is
 * left holding the entry's key, whose tuple is the flow's original
 * direction.  An idle-expired entry is removed and not returned. */
static __always_inline struct vnf_ct_val *
fw_ct_find(__u32 state, const struct vnf_fw_cfg *cfg, const struct vnf_pkt *p,
	   struct vnf_ct_key *k)
{
	struct vnf_ct_val *v;
	__u64 now = vnf_flow_clock();

	__builtin_memset(k, 0, sizeof(*k));
	k->instance = state;
	k->t = p->t;
	v = bpf_map_lookup_elem(&vnf_ct, k);
	if (!v) {
		vnf_tuple_reverse(&k->t, &p->t);
		v = bpf_map_lookup_elem(&vnf_ct, k);
	}
	if (!v)
		return NULL;
	if (cfg->ct_timeout_ns && now - v->last_seen_ns > cfg->ct_timeout_ns) {
		bpf_map_delete_elem(&vnf_ct, k);
		return NULL;
	}
	vnf_touch(&v->last_seen_ns, now);
	__sync_fetch_and_add(&v->packets, 1);
	return v;
}

/* Is the packet the reply of a flow the pod opened (sidecar mode: recorded
 * by vnf_egress, lib/egress.h, with the tuple as the pod sent it)?  Only the
 * reverse direction matches: such an entry admits its replies, nothing else. */
static __always_inline int fw_ct_pod_reply(__u32 state,
					   const struct vnf_fw_cfg *cfg,
					   const struct vnf_pkt *p)
{
	struct vnf_ct_key k = { .instance = state, ._pad = VNF_CT_POD };
	struct vnf_ct_val *v;
	__u64 now = vnf_flow_clock();

	vnf_tuple_reverse(&k.t, &p->t);
	v = bpf_map_lookup_elem(&vnf_ct, &k);
	if (!v)
		return 0;
	if (cfg->ct_timeout_ns && now - v->last_seen_ns > cfg->ct_timeout_ns) {
		bpf_map_delete_elem(&vnf_ct, &k);
		return 0;
	}
	vnf_touch(&v->last_seen_ns, now);
	__sync_fetch_and_add(&v->packets, 1);
	return 1;
}

static __always_inline void fw_ct_open(__u32 state, const struct vnf_fw_cfg *cfg,
				       const struct vnf_pkt *p)
{
	struct vnf_ct_key k = { .instance = state };
	struct vnf_ct_val v = { .last_seen_ns = vnf_flow_clock(),
				.packets = 1,
				.version = cfg->version };

	k.t = p->t;
	bpf_map_update_elem(&vnf_ct, &k, &v, BPF_ANY);
}

/* A packet the parser could not fully parse (rc != VNF_PARSE_OK): a non-IP
 * frame passes when the chain allows its EtherType, whatever the rules and
 * the default action (no rule can match it); everything else is dropped. */
static __always_inline int fw_unparsed(vnf_ctx_t *ctx, const struct vnf_pkt *p,
				       int rc, struct vnf_scratch *s)
{
	/* a fragment that overtook its first one waits for it (fragpark.h) */
	if (rc == VNF_PARSE_FRAG_UNKNOWN && vnf_frag_park_frame(ctx, p, s->state)) {
		s->reason = VNF_R_FRAG_PARKED;
		return VNF_ACT_DROP;
	}
	if (rc == VNF_PARSE_NON_IP) {
		__u32 gen = s->gen;

		if (chain_non_ip_allowed(bpf_map_lookup_elem(&vnf_gen_cfg, &gen),
					 p->eth_proto))
			return VNF_NEXT;
		s->reason = VNF_R_NON_IP;
		return VNF_ACT_DROP;
	}
	s->reason = vnf_parse_reason(rc);
	return VNF_ACT_DROP;
}

static __always_inline int fw_verdict(__u8 action, __u32 reason,
				      struct vnf_scratch *s)
{
	if (action == VNF_ACT_ALLOW)
		return VNF_NEXT;
	s->reason = reason;
	return VNF_ACT_DROP;
}

/* Index of the lowest set bit of a non-zero v, branch-free: popcount of
 * the bits below it (SWAR).  Without branches the verifier sees one unknown
 * scalar instead of 64 constants, each of which it would otherwise follow
 * through the rest of the program. */
static __always_inline __u32 fw_ctz(__u64 v)
{
	__u64 x = (v & -v) - 1;

	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (__u32)((x * 0x0101010101010101ULL) >> 56);
}

/* State of the word scan, passed to the bpf_loop() callback. */
struct fw_scan {
	__u64 agg[VNF_FW_AGG_WORDS]; /* candidate words still to check */
	__u32 off[5]; /* word_off of the five dimension bitmaps */
	__u32 nwords;
	__s32 matched; /* rule index, -1 = none */
};

static __always_inline __u64 fw_word(__u32 idx)
{
	__u64 *w = bpf_map_lookup_elem(&vnf_fw_words, &idx);

	return w ? *w : 0;
}

/* One step: AND the five bitmaps' next candidate word.  The callback is
 * verified once instead of once per unrolled iteration. */
static long fw_scan_step(__u64 index, void *data)
{
	struct fw_scan *sc = data;
	__u32 a, j, k;
	__u64 w;

	(void)index;
	if (sc->agg[0])
		a = 0;
	else if (sc->agg[1])
		a = 1;
	else if (sc->agg[2])
		a = 2;
	else
		return 1;
	j = a * 64 + fw_ctz(sc->agg[a]);
	sc->agg[a] &= sc->agg[a] - 1;
	if (j >= sc->nwords)
		return 1;
	w = ~0ULL;
	for (k = 0; k < 5; k++)
		w &= fw_word(sc->off[k] + j);
	if (!w)
		return 0;
	sc->matched = j * 64 + fw_ctz(w);
	return 1;
}

static __always_inline int nf_firewall(vnf_ctx_t *ctx, struct vnf_scratch *s,
				       __u32 inst, struct vnf_fn_stats *st)
{
	struct vnf_fw_cfg *cfg = bpf_map_lookup_elem(&vnf_fw_cfg, &inst);
	struct vnf_ct_val *cv = NULL;
	const struct vnf_tuple *t;
	struct vnf_fw_bm *bm[5];
	struct vnf_ct_key ck;
	struct fw_scan sc;
	struct vnf_pkt p;
	__u8 action;
	__u32 idx;
	int ct = 0;
	int rc, k, i;

	if (!cfg) {
		s->reason = VNF_R_NO_CONFIG;
		return VNF_ACT_DROP;
	}
	rc = chain_parse(ctx, &p);
	if (rc != VNF_PARSE_OK)
		return fw_unparsed(ctx, &p, rc, s);

	/* the rules judge the packet, or, for a tracked flow stamped under
	 * another policy version, the flow's original tuple */
	t = &p.t;
	ct = cfg->flags & VNF_FW_F_CONNTRACK;
	if (ct) {
		cv = fw_ct_find(s->state, cfg, &p, &ck);
		if (cv && cv->version == cfg->version) {
			st->aux++;
			fp_note(FP_OP_COUNT, 0, 0, cfg->ct_timeout_ns);
			return VNF_NEXT;
		}
		if (cv)
			t = &ck.t;
		/* sidecar mode: the reply of a flow the pod opened passes
		 * whatever the rules say about inbound flows (docs/security.md) */
		else if (fw_ct_pod_reply(s->state, cfg, &p)) {
			st->aux++;
			fp_note(FP_OP_COUNT, 0, 0, cfg->ct_timeout_ns);
			return VNF_NEXT;
		}
	}

	sc.matched = -1;
	action = cfg->default_action;
	if (!cfg->nr_rules)
		goto verdict;
	/* an address dimension no rule constrains needs no trie lookup */
	bm[0] = (cfg->flags & VNF_FW_F_ANY_SRC) ?
			&cfg->any :
			fw_lookup(&vnf_fw_src4, &vnf_fw_src6, inst, t->family,
				  t->saddr);
	bm[1] = (cfg->flags & VNF_FW_F_ANY_DST) ?
			&cfg->any :
			fw_lookup(&vnf_fw_dst4, &vnf_fw_dst6, inst, t->family,
				  t->daddr);
	idx = (inst & (VNF_MAX_INSTANCES - 1)) * 256 + t->proto;
	bm[2] = bpf_map_lookup_elem(&vnf_fw_proto, &idx);
	if (p.l4_valid &&
	    (t->proto == IPPROTO_TCP || t->proto == IPPROTO_UDP)) {
		bm[3] = fw_port_bm(cfg->sport_off, cfg->sport_n, t->sport);
		bm[4] = fw_port_bm(cfg->dport_off, cfg->dport_n, t->dport);
	} else {
		bm[3] = &cfg->noport;
		bm[4] = &cfg->noport;
	}
#pragma unroll
	for (i = 0; i < VNF_FW_AGG_WORDS; i++)
		sc.agg[i] = ~0ULL;
#pragma unroll
	for (k = 0; k < 5; k++) {
		if (!bm[k])
			goto verdict; /* a dimension without entry: no rule */
		sc.off[k] = bm[k]->word_off;
#pragma unroll
		for (i = 0; i < VNF_FW_AGG_WORDS; i++)
			sc.agg[i] &= bm[k]->agg[i];
	}
	sc.nwords = cfg->nwords;
	bpf_loop(VNF_FW_MAX_WORDS, fw_scan_step, &sc, 0);

	if (sc.matched >= 0 && sc.matched < cfg->nr_rules) {
		__u64 *hits;
		__u32 *act;

		idx = cfg->rule_off + sc.matched;
		act = bpf_map_lookup_elem(&vnf_fw_actions, &idx);
		hits = bpf_map_lookup_elem(&vnf_fw_hits, &idx);
		if (act)
			action = *act;
		if (hits)
			(*hits)++;
	} else {
		sc.matched = -1;
	}
verdict:
	if (cv) {
		/* re-check of a flow from another policy version */
		if (action == VNF_ACT_ALLOW) {
			cv->version = cfg->version;
			st->aux++;
			return VNF_NEXT;
		}
		bpf_map_delete_elem(&vnf_ct, &ck);
	} else if (action == VNF_ACT_ALLOW && ct) {
		fw_ct_open(s->state, cfg, &p);
		s->new_flow = 1;
	} else {
		/* the rules' verdict holds for the flow; with conntrack on, a
		 * denied flow passes once the other side opens it */
		fp_note(FP_OP_COUNT,
			sc.matched >= 0 ? cfg->rule_off + sc.matched + 1 : 0,
			ct ? FP_F_MISS_DEP : 0, 0);
	}
	return fw_verdict(action,
			  sc.matched >= 0 ? VNF_R_FW_RULE : VNF_R_FW_DEFAULT, s);
}

#endif /* VNF_NF_FIREWALL_H */
