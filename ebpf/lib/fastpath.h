/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fastpath.h - the fast path for established flows.
 *
 * The first packets of a flow run the whole chain (the slow path: one
 * program per function, a tail call between each).  While they do, every
 * function that ran declares whether what it did for this packet is what it
 * will do for every later packet of the flow (fp_note), and what of it must
 * still run per packet (counters, a token bucket, monitor counters and
 * samples, the forwarder's TTL/MAC/redirect).  When every function that ran
 * declared the packet's result cacheable, the exit (chain_finish) records
 * the composed result in vnf_fp_flows under a compact key (IPv4 addresses,
 * ports, protocol: 16 bytes).  A later packet of the flow then does one
 * lookup at the entry and, without a tail call, runs the recorded steps and
 * the composed rewrite (addresses and ports with their incremental checksum
 * deltas, IPv4 header and L4 with the pseudo-header, precomputed once).
 *
 * An entry is used only while
 *   - the generation is the one that recorded it and has VNF_GEN_F_FAST_PATH;
 *   - the policy epoch (vnf_fp_epoch[0]) is the one it was recorded under:
 *     the engine bumps it on every change that can alter a decision
 *     (generation switch, rule and backend updates, state resets and
 *     purges, set_fast_path, adoption);
 *   - it is younger than its lifetime (at most 1 s, at most half of the
 *     idle timeout of any conntrack/NAT/LB state it relied on, counted in
 *     jiffies), so the slow path refreshes that state's last-seen stamps at
 *     least that often;
 *   - for entries whose result relied on a *missing* flow state (a NAT or LB
 *     that let the flow through untranslated, a firewall verdict from the
 *     rules with conntrack on), no flow state was created anywhere since it
 *     was recorded (vnf_fp_epoch[1], bumped by the data path).
 * A new reply tuple (vnf_replies) deletes the entry of that tuple.
 *
 * Never cached: IPv6, fragments, non-TCP/UDP, packets the parser could not
 * fully parse, TCP with SYN, FIN or RST (FIN and RST delete the entry), a
 * packet that created flow state, the user-space hand-off, rate-limiter
 * drops, TTL expiry, chains with more than one rate limiter or more than
 * FP_MAX_STEPS functions.  A packet the rate limiter would drop on the fast
 * path, or whose TTL would expire, takes the slow path instead before
 * anything is counted, so both paths count exactly the same.
 */
#ifndef VNF_FASTPATH_H
#define VNF_FASTPATH_H

#include "ctx.h"
#include "parse.h"
#include "csum.h"
#include "telemetry.h"

#define FP_MAX_STEPS 8
#define FP_MAX_STAGES 4
#define FP_MAX_LIFE_NS 1000000000ULL
/* Lifetimes count in jiffies (bpf_jiffies64: a plain load, where a clock read
 * costs ~30 ns on this VM).  CONFIG_HZ is not known here: a lifetime is
 * converted as if HZ were 100, the smallest Linux allows, so at HZ 250 or
 * 1000 it is 2.5 or 10 times shorter than asked, never longer. */
#define FP_NS_PER_JIFFY_MIN 10000000ULL
#define FP_SLOW (-2)

/* step operations */
#define FP_OP_NONE 0 /* not cacheable */
#define FP_OP_COUNT 1 /* counters only (arg: firewall rule slot + 1, 0 = none) */
#define FP_OP_RL 2 /* rate limiter (arg: instance) */
#define FP_OP_MON 3 /* monitor (arg: instance) */
#define FP_OP_FWD 4 /* forwarder (fields in the value) */

/* entry flags */
#define FP_F_MISS_DEP (1u << 0)
#define FP_F_FWD (1u << 1)
#define FP_F_DROP (1u << 2)
#define FP_F_REWRITE (1u << 3)

#define FP_TCP_SLOW_FLAGS 0x07 /* FIN, SYN, RST */

struct fp_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport; /* host order, as in vnf_tuple */
	__u16 dport;
	__u8 proto;
	__u8 _pad[3];
};

/* The addresses and ports a function saw (IPv4). */
struct fp_tup {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
};

struct fp_step {
	__u32 state; /* vnf_stats index */
	__u32 arg;
	__u8 op; /* FP_OP_* */
	__u8 stage; /* index of the tuple the function saw */
	__u8 aux; /* stats.aux increment (not for monitors: per packet) */
	__u8 drop; /* the function dropped the packet */
	__u16 reason;
	__u16 _pad;
};

struct fp_val {
	__u32 epoch;
	__u32 flowgen;
	__u64 expires; /* jiffies */
	__u32 ifindex;
	__u8 gen;
	__u8 flags; /* FP_F_* */
	__u8 nsteps;
	__u8 nstages;
	__u32 ip_delta; /* folded sum of ~old + new over the addresses */
	__u32 l4_delta; /* the same plus the ports */
	__u32 rl_step; /* index of the rate-limiter step, FP_MAX_STEPS = none */
	__u32 fwd_ifindex;
	__u32 fwd_inst;
	__u8 fwd_mode;
	__u8 fwd_flags;
	__u8 smac[6];
	__u8 dmac[6];
	__u8 _pad[6];
	struct fp_tup stage[FP_MAX_STAGES];
	struct fp_step step[FP_MAX_STEPS];
};

/* Per-CPU recording of the packet on the slow path. */
struct fp_rec {
	__u32 ok; /* still cacheable */
	__u8 note; /* FP_OP_* of the function running now, 0 = not cacheable */
	__u8 note_flags; /* FP_F_MISS_DEP */
	__u16 _pad;
	__u32 note_arg;
	__u32 _pad2;
	__u64 life_ns;
	struct fp_key key;
	struct fp_val v;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNF_NAT_MAX);
	__type(key, struct fp_key);
	__type(value, struct fp_val);
} vnf_fp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_rec);
} vnf_fp_rec SEC(".maps");

/* [0] policy epoch (the engine), [1] flow-state generation (the data path) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} vnf_fp_epoch SEC(".maps");

static __always_inline struct fp_rec *fp_rec_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&vnf_fp_rec, &zero);
}

static __always_inline __u32 fp_epoch(__u32 idx)
{
	__u32 *e = bpf_map_lookup_elem(&vnf_fp_epoch, &idx);

	return e ? *e : 0;
}

/* Flow state was created: entries that relied on its absence are stale. */
static __always_inline void fp_flows_changed(void)
{
	__u32 one = 1;
	__u32 *e = bpf_map_lookup_elem(&vnf_fp_epoch, &one);

	if (e)
		__sync_fetch_and_add(e, 1);
}

/* Called by a function body: what it did for this packet holds for the
 * flow (op FP_OP_*), flags FP_F_MISS_DEP when it relied on missing flow
 * state, life_ns the idle timeout of state it relied on (0 = none). */
static __always_inline void fp_note(__u8 op, __u32 arg, __u8 flags,
				    __u64 life_ns)
{
	struct fp_rec *r = fp_rec_get();

	if (!r)
		return;
	r->note = op;
	r->note_arg = arg;
	r->note_flags = flags;
	if (life_ns && life_ns / 2 < r->life_ns)
		r->life_ns = life_ns / 2;
}

/* The forwarder's part of the result. */
static __always_inline void fp_note_fwd(const struct vnf_fwd_cfg *cfg,
					__u32 inst)
{
	struct fp_rec *r = fp_rec_get();

	if (!r)
		return;
	r->v.fwd_ifindex = cfg->ifindex;
	r->v.fwd_inst = inst;
	r->v.fwd_mode = cfg->mode;
	r->v.fwd_flags = cfg->flags;
	__builtin_memcpy(r->v.smac, cfg->smac, 6);
	__builtin_memcpy(r->v.dmac, cfg->dmac, 6);
	r->note = FP_OP_FWD;
	r->note_arg = inst;
	r->note_flags = 0;
}

static __always_inline int fp_eligible(const struct vnf_pkt *p, int rc)
{
	return rc == VNF_PARSE_OK && p->t.family == 4 && p->l4_valid &&
	       p->frag == VNF_FRAG_NONE &&
	       (p->t.proto == IPPROTO_UDP ||
		(p->t.proto == IPPROTO_TCP &&
		 !(p->tcp_flags & FP_TCP_SLOW_FLAGS)));
}

static __always_inline void fp_key_of(struct fp_key *k,
				      const struct vnf_tuple *t)
{
	__builtin_memcpy(&k->saddr, t->saddr, 4);
	__builtin_memcpy(&k->daddr, t->daddr, 4);
	k->sport = t->sport;
	k->dport = t->dport;
	k->proto = t->proto;
	k->_pad[0] = 0;
	k->_pad[1] = 0;
	k->_pad[2] = 0;
}

/* The compact form of an IPv4 tuple; 0 when it has bytes the compact form
 * would lose. */
static __always_inline int fp_tup_of(struct fp_tup *c,
				     const struct vnf_tuple *t)
{
	const __u32 *s = (const __u32 *)t->saddr;
	const __u32 *d = (const __u32 *)t->daddr;

	if (t->family != 4 || s[1] | s[2] | s[3] | d[1] | d[2] | d[3])
		return 0;
	c->saddr = s[0];
	c->daddr = d[0];
	c->sport = t->sport;
	c->dport = t->dport;
	return 1;
}

/* A slow-path packet's entry: start recording (or not). */
static __always_inline void fp_begin(struct fp_rec *r, __u32 gen,
				     __u32 ifindex, const struct vnf_pkt *p,
				     int rc, __u32 epoch, __u32 flowgen)
{
	r->ok = 0;
	if (!fp_eligible(p, rc) || !fp_tup_of(&r->v.stage[0], &p->t))
		return;
	fp_key_of(&r->key, &p->t);
	r->life_ns = FP_MAX_LIFE_NS;
	r->v.epoch = epoch;
	r->v.flowgen = flowgen;
	r->v.ifindex = ifindex;
	r->v.gen = gen;
	r->v.flags = 0;
	r->v.nsteps = 0;
	r->v.nstages = 1;
	r->v.rl_step = FP_MAX_STEPS;
	r->ok = 1;
}

/* After a function body: append its step (or stop recording). */
static __always_inline void fp_step_end(struct fp_rec *r,
					const struct vnf_tuple *now_t,
					__u32 state, int verdict, __u32 reason,
					__u64 aux_delta)
{
	struct fp_step *st;
	struct fp_tup c;
	__u32 n, last;

	if (!r->ok)
		return;
	r->ok = 0;
	if (r->note == FP_OP_NONE || aux_delta > 1)
		return;
	n = r->v.nsteps;
	if (n >= FP_MAX_STEPS)
		return;
	st = &r->v.step[n & (FP_MAX_STEPS - 1)];
	st->state = state;
	st->arg = r->note_arg;
	st->op = r->note;
	last = (r->v.nstages - 1) & (FP_MAX_STAGES - 1);
	st->stage = last;
	st->aux = r->note == FP_OP_MON ? 0 : aux_delta;
	st->drop = verdict == VNF_ACT_DROP;
	st->reason = st->drop ? reason : 0;
	st->_pad = 0;
	if (st->drop) {
		if (r->note != FP_OP_COUNT)
			return; /* only deterministic drops are cached */
		r->v.flags |= FP_F_DROP;
	}
	if (r->note == FP_OP_RL) {
		if (r->v.rl_step != FP_MAX_STEPS)
			return;
		r->v.rl_step = n;
	}
	if (r->note == FP_OP_FWD)
		r->v.flags |= FP_F_FWD;
	r->v.flags |= r->note_flags;
	/* a function that rewrote the tuple starts a new stage */
	if (!now_t || !fp_tup_of(&c, now_t))
		return;
	if (c.saddr != r->v.stage[last].saddr ||
	    c.daddr != r->v.stage[last].daddr ||
	    c.sport != r->v.stage[last].sport ||
	    c.dport != r->v.stage[last].dport) {
		if (r->v.nstages >= FP_MAX_STAGES)
			return;
		r->v.stage[r->v.nstages & (FP_MAX_STAGES - 1)] = c;
		r->v.nstages++;
	}
	r->v.nsteps = n + 1;
	r->ok = 1;
}

static __always_inline __u32 fp_delta32(__u32 old, __u32 new)
{
	return (__u16)~(old & 0xffff) + (__u16)~(old >> 16) + (new & 0xffff) +
	       (new >> 16);
}

/* The exit of a slow-path packet: keep what the chain did for the flow. */
static __always_inline void fp_record(struct fp_rec *r, int verdict,
				      int new_flow)
{
	struct fp_tup *o, *f;
	__u32 d;

	if (!r->ok)
		return;
	r->ok = 0;
	if (new_flow || r->v.nsteps == 0)
		return;
	if ((verdict == VNF_ACT_DROP) != !!(r->v.flags & FP_F_DROP))
		return;
	o = &r->v.stage[0];
	f = &r->v.stage[(r->v.nstages - 1) & (FP_MAX_STAGES - 1)];
	r->v.ip_delta = 0;
	r->v.l4_delta = 0;
	if (r->v.nstages > 1) {
		d = fp_delta32(o->saddr, f->saddr) + fp_delta32(o->daddr, f->daddr);
		r->v.ip_delta = csum_fold32(d);
		d += (__u16)~bpf_htons(o->sport) + bpf_htons(f->sport);
		d += (__u16)~bpf_htons(o->dport) + bpf_htons(f->dport);
		r->v.l4_delta = csum_fold32(d);
		r->v.flags |= FP_F_REWRITE;
	}
	r->v.expires = bpf_jiffies64() + r->life_ns / FP_NS_PER_JIFFY_MIN;
	bpf_map_update_elem(&vnf_fp_flows, &r->key, &r->v, BPF_ANY);
}

/* A new reply tuple (vnf_replies): its flow must run the chain again. */
static __always_inline void fp_forget(const struct vnf_tuple *t)
{
	struct fp_key k;

	if (t->family != 4)
		return;
	fp_key_of(&k, t);
	bpf_map_delete_elem(&vnf_fp_flows, &k);
}

#endif /* VNF_FASTPATH_H */

/* ---- the fast path itself: needs every function's maps ------------------- */
#if defined(VNF_NF_FIREWALL_H) && defined(VNF_NF_MONITOR_H) &&                \
	defined(VNF_NF_RATELIMIT_H) && defined(VNF_NF_FORWARDER_H) &&          \
	defined(VNF_NF_NAT_H) && !defined(VNF_FASTPATH_RUN_H)
#define VNF_FASTPATH_RUN_H

/* The packet bucket and then the byte bucket would both admit the packet. */
static __always_inline int fp_rl_conforms(const struct vnf_rl_state *b,
					  const struct vnf_rl_cfg *cfg,
					  __u64 now, __u64 len)
{
	__u64 tat, ntat;

	if (cfg->pkt_inc_ns) {
		tat = b->pkt_tat_ns;
		ntat = (tat > now ? tat : now) + cfg->pkt_inc_ns;
		if (ntat - now > cfg->pkt_tau_ns)
			return 0;
	}
	if (cfg->byte_inc_q16) {
		tat = b->byte_tat_ns;
		ntat = (tat > now ? tat : now) + ((len * cfg->byte_inc_q16) >> 16);
		if (ntat - now > cfg->byte_tau_ns)
			return 0;
	}
	return 1;
}

/* The rate limiter step: charges the bucket, or FP_SLOW (nothing charged)
 * when the packet would not conform, so the slow path drops it and counts. */
static __always_inline int fp_rl(vnf_ctx_t *ctx, const struct fp_val *v,
				 __u8 proto)
{
	const struct fp_step *st;
	const struct fp_tup *c;
	struct vnf_rl_state *b;
	struct vnf_rl_cfg *cfg;
	struct vnf_rl_key k;
	__u32 inst, state;
	__u64 now, len;

	if (v->rl_step >= FP_MAX_STEPS)
		return 0;
	st = &v->step[v->rl_step & (FP_MAX_STEPS - 1)];
	inst = st->arg;
	state = st->state;
	cfg = bpf_map_lookup_elem(&vnf_rl_cfg, &inst);
	if (!cfg)
		return FP_SLOW;
	if (cfg->key_mode == VNF_RL_KEY_GLOBAL) {
		b = bpf_map_lookup_elem(&vnf_rl_global, &state);
	} else {
		c = &v->stage[st->stage & (FP_MAX_STAGES - 1)];
		__builtin_memset(&k, 0, sizeof(k));
		k.instance = state;
		k.t.family = 4;
		__builtin_memcpy(k.t.saddr, &c->saddr, 4);
		if (cfg->key_mode != VNF_RL_KEY_SRC) {
			__builtin_memcpy(k.t.daddr, &c->daddr, 4);
			k.t.sport = c->sport;
			k.t.dport = c->dport;
			k.t.proto = proto;
		}
		b = bpf_map_lookup_elem(&vnf_rl_buckets, &k);
	}
	if (!b)
		return FP_SLOW;
	now = bpf_ktime_get_ns();
	len = ctx_len(ctx);
	if (!fp_rl_conforms(b, cfg, now, len))
		return FP_SLOW;
	if (cfg->pkt_inc_ns &&
	    !rl_gcra(&b->pkt_tat_ns, now, cfg->pkt_inc_ns, cfg->pkt_tau_ns))
		return FP_SLOW;
	/* only a concurrent charge from another CPU can fail here, after the
	 * packet bucket was charged: the slow path charges it once more */
	if (cfg->byte_inc_q16 &&
	    !rl_gcra(&b->byte_tat_ns, now, (len * cfg->byte_inc_q16) >> 16,
		     cfg->byte_tau_ns))
		return FP_SLOW;
	return 0;
}

/* The monitor step (class or keyed counters, 1-in-N samples). */
static __always_inline void fp_mon(const struct fp_val *v,
				   const struct fp_step *st,
				   struct vnf_fn_stats *fs,
				   const struct vnf_pkt *p, __u32 len)
{
	struct vnf_mon_sample *smp;
	const struct fp_tup *t;
	struct vnf_mon_cfg *cfg;
	__u32 inst = st->arg;
	__u8 cls = p->t.proto == IPPROTO_TCP ? VNF_MON_TCP : VNF_MON_UDP;

	cfg = bpf_map_lookup_elem(&vnf_mon_cfg, &inst);
	if (!cfg)
		return;
	t = &v->stage[st->stage & (FP_MAX_STAGES - 1)];
	mon_count(cfg, st->state, cls,
		  cfg->count_by == VNF_MON_BY_DPORT ? t->dport : p->dscp, len);
	/* v->ifindex: the entry checked it is the packet's */
	smp = mon_sample_start(cfg, fs->pkts_in, inst, v->ifindex, len, cls,
			       p->tcp_flags);
	if (!smp)
		return;
	__builtin_memset(&smp->t, 0, sizeof(smp->t));
	__builtin_memcpy(smp->t.saddr, &t->saddr, 4);
	__builtin_memcpy(smp->t.daddr, &t->daddr, 4);
	smp->t.sport = t->sport;
	smp->t.dport = t->dport;
	smp->t.proto = p->t.proto;
	smp->t.family = 4;
	bpf_ringbuf_submit(smp, 0);
	fs->aux++;
}

/* The composed rewrite: addresses, ports, checksums (a zero UDP checksum
 * stays zero, a computed zero is sent as 0xffff, as nat_rewrite does). */
static __always_inline int fp_rewrite(vnf_ctx_t *ctx, const struct fp_val *v,
				      const struct vnf_pkt *p)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	__u32 l3 = p->l3_off, l4 = p->l4_off;
	const struct fp_tup *f;
	struct iphdr *iph;
	__u16 *csum;
	__be16 *ports;
	__u32 s;

	if (nat_bound_offs(&l3, &l4))
		return -1;
	iph = data + l3;
	if ((void *)(iph + 1) > data_end)
		return -1;
	if (p->t.proto == IPPROTO_UDP) {
		struct udphdr *uh = data + l4;

		if ((void *)(uh + 1) > data_end)
			return -1;
		csum = &uh->check;
		ports = &uh->source;
	} else {
		struct tcphdr *th = data + l4;

		if ((void *)(th + 1) > data_end)
			return -1;
		csum = &th->check;
		ports = &th->source;
	}
	f = &v->stage[(v->nstages - 1) & (FP_MAX_STAGES - 1)];
	if (v->ip_delta) {
		s = (__u16)~iph->check;
		iph->check = ~csum_fold32(s + v->ip_delta);
	}
	if (p->t.proto == IPPROTO_UDP) {
		if (*csum) {
			s = (__u16)~*csum;
			*csum = ~csum_fold32(s + v->l4_delta);
			if (*csum == 0)
				*csum = 0xffff;
		}
	} else {
		s = (__u16)~*csum;
		*csum = ~csum_fold32(s + v->l4_delta);
	}
	iph->saddr = f->saddr;
	iph->daddr = f->daddr;
	ports[0] = bpf_htons(f->sport);
	ports[1] = bpf_htons(f->dport);
	return 0;
}

/* The forwarder step: TTL (checked before), MACs, verdict. */
static __always_inline int fp_fwd(vnf_ctx_t *ctx, const struct fp_val *v,
				  const struct vnf_pkt *p)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth;

	if (v->fwd_flags & VNF_FWD_F_DEC_TTL) {
		struct iphdr *iph = data + (p->l3_off & 0xff);
		__u16 old, new;

		if ((void *)(iph + 1) > data_end)
			return VNF_ACT_DROP;
		old = *(__u16 *)&iph->ttl;
		iph->ttl--;
		new = *(__u16 *)&iph->ttl;
		csum_replace2(&iph->check, old, new);
	}
	data = ctx_data(ctx);
	data_end = ctx_data_end(ctx);
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return VNF_ACT_DROP;
	if (v->fwd_flags & VNF_FWD_F_SMAC)
		__builtin_memcpy(eth->h_source, v->smac, ETH_ALEN);
	if (v->fwd_flags & VNF_FWD_F_DMAC)
		__builtin_memcpy(eth->h_dest, v->dmac, ETH_ALEN);
	switch (v->fwd_mode) {
	case VNF_FWD_TX:
#ifdef VNF_HOOK_TC
		/* ctx_tx: the ingress interface, which the entry checked is
		 * v->ifindex (reading ctx here again confuses the verifier) */
		return bpf_redirect(v->ifindex, 0);
#else
		return ctx_tx(ctx);
#endif
	case VNF_FWD_REDIRECT:
		return ctx_redirect(ctx, v->fwd_inst, v->fwd_ifindex);
	default:
		return VNF_ACT_PASS;
	}
}

/* Runs an established flow's recorded result; FP_SLOW when the packet must
 * take the slow path (nothing has been counted or changed then). */
static __always_inline int fp_run(vnf_ctx_t *ctx, struct vnf_scratch *s,
				  struct vnf_chain_stats *cs,
				  const struct fp_val *v,
				  const struct vnf_pkt *p,
				  struct vnf_parsed *pc)
{
	__u32 len = ctx_len(ctx);
	int verdict = VNF_ACT_PASS;
	__u32 i, n = v->nsteps;

	/* checks that can still send the packet to the slow path */
	if ((v->flags & FP_F_FWD) && (v->fwd_flags & VNF_FWD_F_DEC_TTL)) {
		struct iphdr *iph = ctx_data(ctx) + (p->l3_off & 0xff);

		if ((void *)(iph + 1) > ctx_data_end(ctx) || iph->ttl <= 1)
			return FP_SLOW;
	}
	if (fp_rl(ctx, v, p->t.proto) == FP_SLOW)
		return FP_SLOW;

	if ((v->flags & FP_F_REWRITE) && fp_rewrite(ctx, v, p) < 0)
		return FP_SLOW; /* not reached: the slow path recorded it */

	for (i = 0; i < FP_MAX_STEPS; i++) {
		const struct fp_step *st;
		struct vnf_fn_stats *fs;
		__u32 state;
		int fv = VNF_NEXT;

		if (i >= n)
			break;
		st = &v->step[i];
		state = st->state;
		fs = bpf_map_lookup_elem(&vnf_stats, &state);
		if (!fs)
			break;
		tel_in(fs, len);
		fs->aux += st->aux;
		if (st->op == FP_OP_COUNT && st->arg) {
			__u32 idx = st->arg - 1;
			__u64 *hits = bpf_map_lookup_elem(&vnf_fw_hits, &idx);

			if (hits)
				(*hits)++;
		} else if (st->op == FP_OP_MON) {
			fp_mon(v, st, fs, p, len);
		} else if (st->op == FP_OP_FWD) {
			fv = fp_fwd(ctx, v, p);
			verdict = fv;
		}
		if (st->drop) {
			tel_verdict(fs, VNF_ACT_DROP, st->reason);
			verdict = VNF_ACT_DROP;
			break;
		}
		tel_verdict(fs, fv, VNF_R_NONE);
	}

#ifdef VNF_HOOK_XDP
	if (pc && pc->csum)
		vnf_csum_leave(ctx, pc->csum, verdict,
			       p->l3_off | (__u32)p->l4_off << 16,
			       (__u32)p->t.family << 8 | p->t.proto);
#else
	(void)pc;
#endif
	cs->completed++;
	cs->fast++;
	if (s->sampled) {
		__u64 d = bpf_ktime_get_ns() - s->entry_ns;

		tel_hist_add(cs->latency_hist, d);
		tel_hist_add(cs->fast_hist, d);
	}
	return verdict;
}

/* The entry's fast path: the recorded result of the packet's flow, or
 * FP_SLOW with recording set up for the slow path. */
static __always_inline int fp_entry(vnf_ctx_t *ctx, struct vnf_scratch *s,
				    struct vnf_chain_stats *cs, __u32 gen,
				    const struct vnf_pkt *p, int rc,
				    struct vnf_parsed *pc, struct fp_rec *r)
{
	__u32 epoch = fp_epoch(0), flowgen = fp_epoch(1);
	__u32 ifindex = ctx_ifindex(ctx);
	struct fp_val *v;
	struct fp_key k;
	int verdict;

	if (fp_eligible(p, rc)) {
		fp_key_of(&k, &p->t);
		v = bpf_map_lookup_elem(&vnf_fp_flows, &k);
		if (v && v->epoch == epoch && v->gen == gen &&
		    v->ifindex == ifindex &&
		    (!(v->flags & FP_F_MISS_DEP) || v->flowgen == flowgen) &&
		    bpf_jiffies64() < v->expires) {
			verdict = fp_run(ctx, s, cs, v, p, pc);
			if (verdict != FP_SLOW)
				return verdict;
		}
	} else if (rc == VNF_PARSE_OK && p->t.family == 4 &&
		   p->t.proto == IPPROTO_TCP && p->frag == VNF_FRAG_NONE &&
		   (p->tcp_flags & 0x05)) {
		/* FIN or RST: the flow is ending */
		fp_key_of(&k, &p->t);
		bpf_map_delete_elem(&vnf_fp_flows, &k);
	}
	fp_begin(r, gen, ifindex, p, rc, epoch, flowgen);
	return FP_SLOW;
}

#endif /* VNF_FASTPATH_RUN_H */
