/* SPDX-License-Identifier: Apache-2.0 */
/*
 * chain.h - tail-call chaining of network functions with atomic
 * re-composition.
 *
 * Design
 * ------
 * A chain is a list of up to VNF_MAX_CHAIN function *instances*.  Every
 * instance has a numeric id; all per-function configuration maps are keyed
 * by that id, so two chains that use differently configured copies of the
 * same function coexist in the maps.
 *
 * There are VNF_GENERATIONS (2) generations of the chain.  The prog array
 * vnf_progs and the slot table vnf_slots have one slot per (generation,
 * position): slot = gen * VNF_MAX_CHAIN + pos.  vnf_gen_cfg[gen] holds the
 * chain length and the entry classifier of that generation.
 *
 * The entry program reads the active generation from vnf_active_gen[0]
 * exactly once and stores it, together with the chain length, in the
 * per-CPU scratch (vnf_scratch).  Every later tail call of this packet
 * uses slot(scratch.gen, pos), so a packet never mixes two generations.
 *
 * To re-compose, user space writes the instance configs, vnf_slots,
 * vnf_progs and vnf_gen_cfg of the *inactive* generation, then flips
 * vnf_active_gen with one map update.  Packets already in flight finish in
 * the old generation; user space lets an RCU grace period pass (a few ms)
 * before it reuses the old generation for the next re-composition.
 *
 * Replies.  A chain that translates (NAT, LB) and has more than one function
 * must undo its work in the opposite order for the replies of a flow, as a
 * router's conntrack does: the reply first meets the last translation.  When
 * a function creates flow state for a packet (s->new_flow), the exit records
 * the tuple of the flow's reply as it will arrive (the packet's final tuple,
 * reversed) in vnf_replies; the entry looks every classified packet up there
 * (generations with VNF_GEN_F_REVERSE_REPLIES only) and runs a hit through the
 * positions in reverse order.  A terminal forwarder or user-space hand-off
 * stays last.  s->pos counts steps; chain_pos() maps a step to its position.
 *
 * The per-CPU scratch is safe across tail calls: a chain runs to completion
 * on one CPU in one softirq/NAPI context without preemption.
 */
#ifndef VNF_CHAIN_H
#define VNF_CHAIN_H

#include "ctx.h"
#include "parse.h"
#include "telemetry.h"
#include "fragpark.h"
#include "control.h"
#include "fastpath.h"
#ifdef VNF_HOOK_XDP
#include "l4csum.h"
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} vnf_active_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_GENERATIONS);
	__type(key, __u32);
	__type(value, struct vnf_gen_cfg);
} vnf_gen_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_SLOTS);
	__type(key, __u32);
	__type(value, struct vnf_slot);
} vnf_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_GENERATIONS);
	__type(key, __u32);
	__type(value, __u32);
} vnf_gen_flags SEC(".maps");

/* Reply tuples (as they will arrive) of flows the chain created state for. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNF_NAT_MAX);
	__type(key, struct vnf_tuple);
	__type(value, __u32);
} vnf_replies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, VNF_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} vnf_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vnf_scratch);
} vnf_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_instance_cfg);
} vnf_instances SEC(".maps");

/* Classifier prefixes: key (generation, address), value unused (1). */
#define VNF_CLS_LPM(name, keytype)                                  \
	struct {                                                    \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                \
		__uint(max_entries, VNF_CLS_LPM_MAX);               \
		__uint(map_flags, BPF_F_NO_PREALLOC);               \
		__type(key, keytype);                               \
		__type(value, __u32);                               \
	} name SEC(".maps")

VNF_CLS_LPM(vnf_cls_src4, struct vnf_lpm4_key);
VNF_CLS_LPM(vnf_cls_dst4, struct vnf_lpm4_key);
VNF_CLS_LPM(vnf_cls_src6, struct vnf_lpm6_key);
VNF_CLS_LPM(vnf_cls_dst6, struct vnf_lpm6_key);

/* The entry's parse of the packet travelling through the chain on this CPU:
 * functions read it instead of parsing again (parsing is a good part of a
 * function's cost), and a function that rewrites the tuple updates it. */
struct vnf_parsed {
	struct vnf_pkt pkt;
	__s32 rc; /* enum vnf_parse_rc */
	__u32 csum; /* XDP: enum vnf_csum_leave, what the exit does (l4csum.h) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vnf_parsed);
} vnf_parsed SEC(".maps");

static __always_inline struct vnf_parsed *chain_parsed(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&vnf_parsed, &zero);
}

/* The packet as parsed at the entry (and updated by rewriting functions);
 * parses afresh only if the cache is unavailable. */
static __always_inline int chain_parse(vnf_ctx_t *ctx, struct vnf_pkt *p)
{
	struct vnf_parsed *pc = chain_parsed();

	if (!pc)
		return vnf_parse(ctx, p);
	*p = pc->pkt;
	return pc->rc;
}

static __always_inline __u32 chain_slot(__u32 gen, __u32 pos)
{
	return (gen & (VNF_GENERATIONS - 1)) * VNF_MAX_CHAIN + pos;
}

/* Position of the function at step s->pos (reverse order for replies). */
static __always_inline __u32 chain_pos(const struct vnf_scratch *s)
{
	if (s->rev_n && s->pos < s->rev_n)
		return s->rev_n - 1 - s->pos;
	return s->pos;
}

static __always_inline struct vnf_scratch *chain_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&vnf_scratch, &zero);
}

/* The packet leaves the chain with the final verdict.  end_ns is the time
 * the last function ended when it was measured (0: read the clock now). */
static __always_inline int chain_finish(vnf_ctx_t *ctx, struct vnf_scratch *s,
					int verdict, __u64 end_ns)
{
	__u32 gen = s->gen;
	struct vnf_chain_stats *cs = bpf_map_lookup_elem(&vnf_chain_stats, &gen);
	struct vnf_parsed *pc = NULL;

	if (s->new_flow && !s->rev_n && verdict != VNF_ACT_DROP) {
		struct vnf_tuple reply;
		__u32 one = 1;

		pc = chain_parsed();
		if (pc) {
			vnf_tuple_reverse(&reply, &pc->pkt.t);
			bpf_map_update_elem(&vnf_replies, &reply, &one, BPF_ANY);
			/* the reply's flow now runs the chain in reverse */
			fp_forget(&reply);
		}
	}
	{
		struct fp_rec *r = fp_rec_get();

		if (r)
			fp_record(r, verdict, s->new_flow);
		/* flow state was created: results that relied on its absence
		 * are stale (fastpath.h) */
		if (s->new_flow)
			fp_flows_changed();
	}
#ifdef VNF_HOOK_XDP
	if (!pc)
		pc = chain_parsed();
	if (pc && pc->csum)
		vnf_csum_leave(ctx, pc->csum, verdict,
			       pc->pkt.l3_off | (__u32)pc->pkt.l4_off << 16,
			       (__u32)pc->pkt.t.family << 8 | pc->pkt.t.proto);
#else
	(void)ctx;
#endif

	if (cs) {
		cs->completed++;
		if (s->sampled)
			tel_hist_add(cs->latency_hist,
				     (end_ns ? end_ns : bpf_ktime_get_ns()) -
					     s->entry_ns);
	}
	return verdict;
}

/* Tail-call the function at position s->pos.  Only returns on failure. */
static __always_inline int chain_jump(vnf_ctx_t *ctx, struct vnf_scratch *s)
{
	__u32 gen = s->gen;
	struct vnf_chain_stats *cs;

	bpf_tail_call(ctx, &vnf_progs, chain_slot(gen, chain_pos(s)));

	/* empty slot: fail closed */
	cs = bpf_map_lookup_elem(&vnf_chain_stats, &gen);
	if (cs)
		cs->broken++;
	s->reason = VNF_R_CHAIN_BROKEN;
	return VNF_ACT_DROP;
}

/* Continue after the function at s->pos passed the packet on. */
static __always_inline int chain_next(vnf_ctx_t *ctx, struct vnf_scratch *s,
				      __u64 end_ns)
{
	s->pos++;
	if (s->pos >= s->chain_len || s->pos >= VNF_MAX_CHAIN)
		return chain_finish(ctx, s, VNF_ACT_PASS, end_ns);
	return chain_jump(ctx, s);
}

/* Is port in one of the first n ranges? */
static __always_inline int vnf_cls_ports_in(__u16 port,
					    const struct vnf_port_range *r,
					    __u32 n)
{
	__u32 i;

	/* a bounded loop (not unrolled): n is at most VNF_CLS_MAX_PORTS */
	for (i = 0; i < VNF_CLS_MAX_PORTS; i++) {
		if (i >= n)
			break;
		if (port >= r[i].lo && port <= r[i].hi)
			return 1;
	}
	return 0;
}

/* Does addr hit one of the generation's prefixes in the family's trie? */
static __always_inline int vnf_cls_addr_in(void *trie4, void *trie6, __u32 gen,
					   const struct vnf_tuple *t,
					   const __u8 *addr)
{
	if (t->family == 4) {
		struct vnf_lpm4_key k = { .prefixlen = 64,
					  .instance = bpf_htonl(gen) };

		__builtin_memcpy(k.addr, addr, 4);
		return bpf_map_lookup_elem(trie4, &k) != NULL;
	} else {
		struct vnf_lpm6_key k = { .prefixlen = 160,
					  .instance = bpf_htonl(gen) };

		__builtin_memcpy(k.addr, addr, 16);
		return bpf_map_lookup_elem(trie6, &k) != NULL;
	}
}

/* Is the non-IP EtherType proto in the generation's list (spec.nonIp)? */
static __always_inline int chain_non_ip_allowed(const struct vnf_gen_cfg *gc,
						__u16 proto)
{
	__u32 i, n;

	if (!gc)
		return 0;
	n = gc->nr_non_ip;
	for (i = 0; i < VNF_NON_IP_MAX; i++) {
		if (i >= n)
			break;
		if (gc->non_ip[i] == proto)
			return 1;
	}
	return 0;
}

/* Does the parsed packet match the generation's classifier?  A packet
 * bypasses the chain only when the classifier can prove it is outside:
 * fully parsed and not matching, or a non-IP frame the chain allows
 * (spec.nonIp; the classifier selects IP traffic).  Other non-IP frames
 * and packets the parser could not fully parse enter the chain, whose
 * filtering functions drop them (docs/security.md). */
static __always_inline int chain_classify(const struct vnf_gen_cfg *gc,
					  __u32 gen, int parse_rc,
					  const struct vnf_pkt *p)
{
	const struct vnf_classifier *c = &gc->cls;
	__u32 f = c->fields;

	if (!f)
		return 1;
	if (parse_rc == VNF_PARSE_NON_IP)
		return !chain_non_ip_allowed(gc, p->eth_proto);
	if (parse_rc != VNF_PARSE_OK)
		return 1;
	if ((f & VNF_CLS_F_FAMILY) && p->t.family != c->family)
		return 0;
	if ((f & VNF_CLS_F_PROTO) && p->t.proto != c->proto)
		return 0;
	if ((f & VNF_CLS_F_SRC) &&
	    !vnf_cls_addr_in(&vnf_cls_src4, &vnf_cls_src6, gen, &p->t,
			     p->t.saddr))
		return 0;
	if ((f & VNF_CLS_F_DST) &&
	    !vnf_cls_addr_in(&vnf_cls_dst4, &vnf_cls_dst6, gen, &p->t,
			     p->t.daddr))
		return 0;
	if (f & (VNF_CLS_F_SPORT | VNF_CLS_F_DPORT)) {
		if (!p->l4_valid ||
		    (p->t.proto != IPPROTO_TCP && p->t.proto != IPPROTO_UDP))
			return 0;
		if ((f & VNF_CLS_F_SPORT) &&
		    !vnf_cls_ports_in(p->t.sport, c->sports, c->nr_sports))
			return 0;
		if ((f & VNF_CLS_F_DPORT) &&
		    !vnf_cls_ports_in(p->t.dport, c->dports, c->nr_dports))
			return 0;
	}
	return 1;
}

/* Defined in fastpath.h's second part, after the nf/ bodies. */
static __always_inline int fp_entry(vnf_ctx_t *ctx, struct vnf_scratch *s,
				    struct vnf_chain_stats *cs, __u32 gen,
				    const struct vnf_pkt *p, int rc,
				    struct vnf_parsed *pc, struct fp_rec *r);

/* Entry program body: pick the generation, classify, start the chain. */
static __always_inline int chain_entry(vnf_ctx_t *ctx)
{
	struct vnf_chain_stats *cs;
	struct vnf_gen_cfg *gc;
	struct vnf_scratch *s;
	struct vnf_pkt pkt;
	__u32 zero = 0, gen;
	__u32 *active, *gf;
	int rc;

	ctx_prepare(ctx);
	active = bpf_map_lookup_elem(&vnf_active_gen, &zero);
	if (!active)
		return VNF_ACT_PASS;
	gen = *active & (VNF_GENERATIONS - 1); /* read once */
	gc = bpf_map_lookup_elem(&vnf_gen_cfg, &gen);
	cs = bpf_map_lookup_elem(&vnf_chain_stats, &gen);
	s = chain_scratch();
	if (!gc || !cs || !s || gc->chain_len == 0)
		return VNF_ACT_PASS;

	rc = vnf_parse(ctx, &pkt);
	/* a first fragment releases its datagram's parked fragments */
	if (pkt.frag == VNF_FRAG_FIRST && rc == VNF_PARSE_OK &&
	    vnf_frag_release(ctx, &pkt))
		return VNF_ACT_DROP;
	/* the pod's own gRPC and metrics endpoints always pass (control.h) */
	if (vnf_control_plane(&pkt, rc))
		return VNF_ACT_PASS;
	if (!chain_classify(gc, gen, rc, &pkt)) {
		cs->bypassed++;
		return VNF_ACT_PASS;
	}
	cs->classified++;
	{
		struct vnf_parsed *pc = chain_parsed();

		if (pc) {
			pc->pkt = pkt;
			pc->rc = rc;
#ifdef VNF_HOOK_XDP
			pc->csum = vnf_csum_complete(ctx, &pkt);
#else
			pc->csum = 0;
#endif
		}
	}

	s->gen = gen;
	s->pos = 0;
	s->chain_len = gc->chain_len;
	s->reason = VNF_R_NONE;
	s->new_flow = 0;
	s->rev_n = 0;
	gf = bpf_map_lookup_elem(&vnf_gen_flags, &gen);
	/* 1-in-N sampling with a per-CPU countdown (no division per packet) */
	s->sampled = 0;
	if (gc->latency_sample_rate) {
		if (s->countdown == 0 || s->countdown > gc->latency_sample_rate)
			s->countdown = gc->latency_sample_rate;
		if (--s->countdown == 0)
			s->sampled = 1;
	}
	if (s->sampled) {
		s->entry_ns = bpf_ktime_get_ns();
		s->mark_ns = s->entry_ns;
	}
	{
		struct fp_rec *r = fp_rec_get();

		if (r) {
			r->ok = 0;
			if (gf && (*gf & VNF_GEN_F_FAST_PATH)) {
				int v = fp_entry(ctx, s, cs, gen, &pkt, rc,
						 chain_parsed(), r);

				if (v != FP_SLOW)
					return v;
			}
		}
	}
	if (gf && (*gf & VNF_GEN_F_REVERSE_REPLIES) && rc == VNF_PARSE_OK &&
	    bpf_map_lookup_elem(&vnf_replies, &pkt.t)) {
		__u32 last = chain_slot(gen, (gc->chain_len - 1) &
						     (VNF_MAX_CHAIN - 1));
		struct vnf_slot *ls = bpf_map_lookup_elem(&vnf_slots, &last);

		s->rev_n = gc->chain_len;
		if (ls && (ls->kind == VNF_KIND_FORWARDER ||
			   ls->kind == VNF_KIND_USERSPACE))
			s->rev_n--;
	}
	return chain_jump(ctx, s);
}

/* Defined by the attach point after including the nf/ bodies:
 * runs the body of `kind` for `instance`. */
static __always_inline int vnf_dispatch(vnf_ctx_t *ctx, __u32 kind,
					struct vnf_scratch *s, __u32 instance,
					struct vnf_fn_stats *st);

/* Program body of one chain function (kind is a compile-time constant).
 *
 * Latency of sampled packets is measured between boundaries: a function's
 * time runs from the end of the previous one (or the entry program) to its
 * own end, so it includes the tail call into it, and a chain of N functions
 * reads the clock N + 1 times instead of 2N + 2. */
static __always_inline int chain_function(vnf_ctx_t *ctx, __u32 kind)
{
	struct vnf_instance_cfg *ic;
	struct vnf_fn_stats *st;
	struct vnf_scratch *s;
	struct vnf_slot *slot;
	struct fp_rec *fr;
	__u32 idx, inst, rec = 0;
	__u64 t1 = 0, aux0;
	int verdict;

	s = chain_scratch();
	if (!s)
		return VNF_ACT_DROP;
	/* fast-path recording: a step is kept only once it has run whole */
	fr = fp_rec_get();
	if (fr) {
		rec = fr->ok;
		fr->ok = 0;
		fr->note = FP_OP_NONE;
	}
	idx = chain_slot(s->gen, chain_pos(s));
	slot = bpf_map_lookup_elem(&vnf_slots, &idx);
	if (!slot)
		return VNF_ACT_DROP;
	inst = slot->instance;
	ic = bpf_map_lookup_elem(&vnf_instances, &inst);
	if (!ic)
		return chain_finish(ctx, s, VNF_ACT_DROP, 0);
	s->state = ic->state;
	st = bpf_map_lookup_elem(&vnf_stats, &s->state);
	if (!st)
		return chain_finish(ctx, s, VNF_ACT_DROP, 0);
	tel_in(st, ctx_len(ctx));
	if (slot->kind != kind || ic->kind != kind) {
		s->reason = VNF_R_NO_CONFIG;
		tel_verdict(st, VNF_ACT_DROP, s->reason);
		return chain_finish(ctx, s, VNF_ACT_DROP, 0);
	}

	s->reason = VNF_R_NONE;
	aux0 = st->aux;
	verdict = vnf_dispatch(ctx, kind, s, inst, st);
	if (rec && fr) {
		struct vnf_parsed *pc = chain_parsed();

		fr->ok = 1;
		fp_step_end(fr, pc ? &pc->pkt.t : NULL, s->state, verdict,
			    s->reason, st->aux - aux0);
	}

	if (s->sampled) {
		t1 = bpf_ktime_get_ns();
		if (ic->latency_sample_rate)
			tel_hist_add(st->latency_hist, t1 - s->mark_ns);
		s->mark_ns = t1;
	}
	tel_verdict(st, verdict, s->reason);
	if (verdict == VNF_NEXT)
		return chain_next(ctx, s, t1);
	return chain_finish(ctx, s, verdict, t1);
}

#endif /* VNF_CHAIN_H */
