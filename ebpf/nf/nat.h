/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nat.h - stateful SNAT / DNAT for TCP and UDP over IPv4 and IPv6.
 *
 * An instance has at most one SNAT rule (translated address, port pool,
 * source prefixes in the LPM tries vnf_nat_src{4,6} keyed by (instance,
 * address), or every source of the family with VNF_NAT_F_SNAT_ANY) and any
 * number of static DNAT mappings (hash vnf_nat_dnat).  A new flow that
 * matches a DNAT mapping is destination-translated only; any other new flow
 * whose source matches the SNAT rule is source-translated.
 *
 * The first packet of a flow that matches a rule creates two
 * entries in vnf_nat_ct, both keyed by the tuple *as it arrives*: the
 * original direction (rewrite to the translated address/port) and the reply
 * direction (rewrite back).  SNAT picks a source port from the pool by
 * hashing the flow and probing up to VNF_NAT_PROBES ports; the reply entry
 * is inserted with BPF_NOEXIST so two flows never share a translated tuple.
 * Checksums are updated incrementally (IPv4 header; TCP/UDP including the
 * pseudo-header; a zero UDP-over-IPv4 checksum stays zero).  Both directions
 * must traverse the same engine (e.g. the entry attached to both
 * interfaces).  Other protocols and non-first fragments pass untranslated.
 *
 * TC caveat: checksums are patched in the packet directly; for skbs with
 * CHECKSUM_COMPLETE (some NICs) skb->csum is not adjusted yet, so the TC
 * path should move to bpf_l4_csum_replace() before NAT is used there on such
 * hardware (veth and XDP are unaffected).
 */
#ifndef VNF_NF_NAT_H
#define VNF_NF_NAT_H

#include "../lib/chain.h"
#include "../lib/csum.h"

#define VNF_NAT_PROBES 8
/* Offsets are masked to keep the verifier's packet range bounded; packets
 * whose L4 header starts beyond it are not translated. */
#define VNF_NAT_OFF_MASK 0x1ff

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_nat_cfg);
} vnf_nat_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VNF_NAT_DNAT_MAX);
	__type(key, struct vnf_nat_dnat_key);
	__type(value, struct vnf_nat_dnat_val);
} vnf_nat_dnat SEC(".maps");

#define VNF_NAT_LPM(name, keytype)                                  \
	struct {                                                    \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                \
		__uint(max_entries, 4096);                          \
		__uint(map_flags, BPF_F_NO_PREALLOC);               \
		__type(key, keytype);                               \
		__type(value, __u32);                               \
	} name SEC(".maps")

VNF_NAT_LPM(vnf_nat_src4, struct vnf_lpm4_key);
VNF_NAT_LPM(vnf_nat_src6, struct vnf_lpm6_key);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNF_NAT_MAX);
	__type(key, struct vnf_nat_key);
	__type(value, struct vnf_nat_val);
} vnf_nat_ct SEC(".maps");

static __always_inline __u32 nat_hash(const struct vnf_tuple *t)
{
	const __u32 *w = (const __u32 *)t;
	__u32 h = 0x9e3779b9;
	int i;

#pragma unroll
	for (i = 0; i < sizeof(*t) / 4; i++) {
		h ^= w[i];
		h *= 0x85ebca6b;
		h ^= h >> 13;
	}
	return h;
}

/* -1 when an L3/L4 offset is past VNF_NAT_OFF_MASK; else masks both, in a
 * way the verifier sees bounds the variable packet offsets.  Shared by
 * nat_rewrite and the fast path's composed rewrite (fp_rewrite). */
static __always_inline int nat_bound_offs(__u32 *l3, __u32 *l4)
{
	__u32 a = *l3, b = *l4;

	if (a > VNF_NAT_OFF_MASK || b > VNF_NAT_OFF_MASK)
		return -1;
	/* hide the range check from clang so the masks below survive: the
	 * verifier needs them to bound the variable packet offsets */
	asm volatile("" : "+r"(a), "+r"(b));
	*l3 = a & VNF_NAT_OFF_MASK;
	*l4 = b & VNF_NAT_OFF_MASK;
	return 0;
}

/* Rewrite source (or destination) address and port, fixing checksums. */
static __always_inline int nat_rewrite(vnf_ctx_t *ctx, const struct vnf_pkt *p,
				       int src, const __u8 *addr, __u16 port)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	__u32 l3 = p->l3_off, l4 = p->l4_off;
	__be16 nport = bpf_htons(port);
	__u16 *csum = NULL;
	__be16 *pport;
	int udp = p->t.proto == IPPROTO_UDP;
	int i;

	if (nat_bound_offs(&l3, &l4))
		return -1;
	if (udp) {
		struct udphdr *uh = data + l4;

		if ((void *)(uh + 1) > data_end)
			return -1;
		csum = &uh->check;
		pport = src ? &uh->source : &uh->dest;
	} else {
		struct tcphdr *th = data + l4;

		if ((void *)(th + 1) > data_end)
			return -1;
		csum = &th->check;
		pport = src ? &th->source : &th->dest;
	}

	if (p->t.family == 4) {
		struct iphdr *iph = data + l3;
		__be32 old, new;

		if ((void *)(iph + 1) > data_end)
			return -1;
		old = src ? iph->saddr : iph->daddr;
		__builtin_memcpy(&new, addr, 4);
		csum_replace4(&iph->check, old, new);
		if (udp)
			csum_replace4_udp(csum, old, new);
		else
			csum_replace4(csum, old, new);
		if (src)
			iph->saddr = new;
		else
			iph->daddr = new;
	} else {
		struct ipv6hdr *ip6 = data + l3;
		__u32 *a;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		a = src ? (__u32 *)&ip6->saddr : (__u32 *)&ip6->daddr;
#pragma unroll
		for (i = 0; i < 4; i++) {
			__u32 new;

			__builtin_memcpy(&new, addr + 4 * i, 4);
			csum_replace4(csum, a[i], new);
			a[i] = new;
		}
	}
	if (udp && p->t.family == 4 && *csum == 0)
		; /* no UDP checksum: nothing to adjust for the port */
	else if (udp)
		csum_replace4_udp(csum, *pport, nport);
	else
		csum_replace2(csum, *pport, nport);
	*pport = nport;

	/* the functions after this one see the rewritten tuple */
	{
		struct vnf_parsed *pc = chain_parsed();

		if (pc) {
			if (src) {
				__builtin_memcpy(pc->pkt.t.saddr, addr, 16);
				pc->pkt.t.sport = port;
			} else {
				__builtin_memcpy(pc->pkt.t.daddr, addr, 16);
				pc->pkt.t.dport = port;
			}
		}
	}
	return 0;
}

static __always_inline int nat_addr_eq(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}


/* The DNAT mapping for the packet, most specific first. */
static __always_inline struct vnf_nat_dnat_val *
nat_dnat_find(__u32 inst, const struct vnf_pkt *p)
{
	struct vnf_nat_dnat_key k = { .instance = inst,
				      .family = p->t.family };
	struct vnf_nat_dnat_val *v;

	__builtin_memcpy(k.addr, p->t.daddr, 16);
	k.proto = p->t.proto;
	k.port = p->t.dport;
	v = bpf_map_lookup_elem(&vnf_nat_dnat, &k);
	if (v)
		return v;
	k.port = 0;
	v = bpf_map_lookup_elem(&vnf_nat_dnat, &k);
	if (v)
		return v;
	k.proto = 0;
	k.port = p->t.dport;
	v = bpf_map_lookup_elem(&vnf_nat_dnat, &k);
	if (v)
		return v;
	k.port = 0;
	return bpf_map_lookup_elem(&vnf_nat_dnat, &k);
}

/* Does the SNAT rule apply to the packet's source? */
static __always_inline int nat_snat_match(__u32 inst,
					  const struct vnf_nat_cfg *cfg,
					  const struct vnf_pkt *p)
{
	if (!(cfg->flags & VNF_NAT_F_SNAT) || p->t.family != cfg->snat_family)
		return 0;
	if (cfg->flags & VNF_NAT_F_SNAT_ANY)
		return 1;
	if (p->t.family == 4) {
		struct vnf_lpm4_key k = { .prefixlen = 64,
					  .instance = bpf_htonl(inst) };

		__builtin_memcpy(k.addr, p->t.saddr, 4);
		return bpf_map_lookup_elem(&vnf_nat_src4, &k) != NULL;
	} else {
		struct vnf_lpm6_key k = { .prefixlen = 160,
					  .instance = bpf_htonl(inst) };

		__builtin_memcpy(k.addr, p->t.saddr, 16);
		return bpf_map_lookup_elem(&vnf_nat_src6, &k) != NULL;
	}
}

static __always_inline int nf_nat(vnf_ctx_t *ctx, struct vnf_scratch *s,
				  __u32 inst, struct vnf_fn_stats *st)
{
	struct vnf_nat_cfg *cfg = bpf_map_lookup_elem(&vnf_nat_cfg, &inst);
	/* flows are state: keyed by the state id, which survives chain updates */
	struct vnf_nat_key fk = { .instance = s->state };
	struct vnf_nat_key rk = { .instance = s->state };
	struct vnf_nat_val fv = {}, rv = {};
	struct vnf_nat_dnat_val *dv = NULL;
	struct vnf_nat_val *v;
	struct vnf_pkt p;
	__u64 now;
	int i;

	if (!cfg || (!cfg->flags && !cfg->nr_dnat)) {
		s->reason = VNF_R_NO_CONFIG;
		return VNF_ACT_DROP;
	}
	if (chain_parse(ctx, &p) != VNF_PARSE_OK || !p.l4_valid ||
	    p.frag != VNF_FRAG_NONE ||
	    (p.t.proto != IPPROTO_TCP && p.t.proto != IPPROTO_UDP))
		return VNF_NEXT;

	now = vnf_flow_clock();
	fk.t = p.t;
	v = bpf_map_lookup_elem(&vnf_nat_ct, &fk);
	if (v && (!cfg->timeout_ns || now - v->last_seen_ns <= cfg->timeout_ns)) {
		vnf_touch(&v->last_seen_ns, now);
		st->aux++;
		nat_rewrite(ctx, &p, v->rewrite_src, v->addr, v->port);
		fp_note(FP_OP_COUNT, 0, 0, cfg->timeout_ns);
		return VNF_NEXT;
	}

	/* new flow: does a DNAT mapping or the SNAT rule apply? */
	fv.last_seen_ns = now;
	rv.last_seen_ns = now;
	if (cfg->nr_dnat)
		dv = nat_dnat_find(inst, &p);
	if (dv) {
		__builtin_memcpy(fv.addr, dv->addr, 16);
		fv.port = dv->port ? dv->port : p.t.dport;
		fv.rewrite_src = 0;
		/* reply arrives as to_addr:port -> saddr:sport */
		vnf_tuple_reverse(&rk.t, &p.t);
		__builtin_memcpy(rk.t.saddr, dv->addr, 16);
		rk.t.sport = fv.port;
		__builtin_memcpy(rv.addr, p.t.daddr, 16);
		rv.port = p.t.dport;
		rv.rewrite_src = 1;
		bpf_map_update_elem(&vnf_nat_ct, &rk, &rv, BPF_ANY);
	} else if (nat_snat_match(inst, cfg, &p)) {
		__u32 range = (__u32)cfg->port_hi - cfg->port_lo + 1;
		__u32 start;

		/* reply arrives as snat_addr:port <- daddr:dport */
		vnf_tuple_reverse(&rk.t, &p.t);
		__builtin_memcpy(rk.t.daddr, cfg->snat_addr, 16);
		__builtin_memcpy(rv.addr, p.t.saddr, 16);
		rv.port = p.t.sport;
		rv.rewrite_src = 0;
		start = nat_hash(&p.t);
		for (i = 0; i < VNF_NAT_PROBES; i++) {
			__u16 port = cfg->port_lo + (start + i) % range;

			rk.t.dport = port;
			if (bpf_map_update_elem(&vnf_nat_ct, &rk, &rv, BPF_NOEXIST) == 0) {
				fv.port = port;
				goto found;
			}
		}
		s->reason = VNF_R_NAT_EXHAUSTED;
		return VNF_ACT_DROP;
found:
		__builtin_memcpy(fv.addr, cfg->snat_addr, 16);
		fv.rewrite_src = 1;
	} else {
		/* untranslated: until a translation for the tuple appears */
		fp_note(FP_OP_COUNT, 0, FP_F_MISS_DEP, 0);
		return VNF_NEXT;
	}
	bpf_map_update_elem(&vnf_nat_ct, &fk, &fv, BPF_ANY);
	s->new_flow = 1;
	nat_rewrite(ctx, &p, fv.rewrite_src, fv.addr, fv.port);
	return VNF_NEXT;
}

#endif /* VNF_NF_NAT_H */
