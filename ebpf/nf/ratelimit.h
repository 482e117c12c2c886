/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ratelimit.h - token-bucket rate limiter (packets/s and/or bits/s) keyed
 * globally, by source address or by 5-tuple, state in an LRU hash.
 *
 * Each bucket is implemented as GCRA (the "virtual scheduling" form of a
 * token bucket): the state is a theoretical arrival time (TAT); a packet
 * conforms if max(TAT, now) + increment - now <= tau, where increment is
 * 1e9/pps (or len*8e9/bps, bps in bits per second) and tau = burst *
 * increment (both precomputed by user space, so no division per packet).
 * This admits exactly
 * `burst` back-to-back packets and then `rate` per second, like a token
 * bucket, but the state is one u64 updated lock-free with compare-and-swap,
 * so CPUs sharing a bucket do not lose updates.  The packet bucket is
 * checked before the byte bucket (buckets in series).
 */
#ifndef VNF_NF_RATELIMIT_H
#define VNF_NF_RATELIMIT_H

#include "../lib/chain.h"

#define VNF_RL_CAS_TRIES 4

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_rl_cfg);
} vnf_rl_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNF_RL_MAX);
	__type(key, struct vnf_rl_key);
	__type(value, struct vnf_rl_state);
} vnf_rl_buckets SEC(".maps");

/* The one bucket of each instance keyed globally: an array slot, so the
 * global mode needs neither a parse nor a hash lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_rl_state);
} vnf_rl_global SEC(".maps");

/* Returns 1 if a packet with this increment conforms (and charges it). */
static __always_inline int rl_gcra(__u64 *tat_p, __u64 now, __u64 inc,
				   __u64 tau)
{
	int i;

#pragma unroll
	for (i = 0; i < VNF_RL_CAS_TRIES; i++) {
		__u64 tat = *(volatile __u64 *)tat_p;
		__u64 ntat = (tat > now ? tat : now) + inc;

		if (ntat - now > tau)
			return 0;
		if (__sync_val_compare_and_swap(tat_p, tat, ntat) == tat)
			return 1;
	}
	return 0; /* heavy contention: treat as non-conforming */
}

static __always_inline int nf_ratelimit(vnf_ctx_t *ctx, struct vnf_scratch *s,
					__u32 inst, struct vnf_fn_stats *st)
{
	struct vnf_rl_cfg *cfg = bpf_map_lookup_elem(&vnf_rl_cfg, &inst);
	struct vnf_rl_key k;
	struct vnf_rl_state *b;
	struct vnf_pkt p;
	__u64 now;
	int rc;

	(void)st;
	if (!cfg) {
		s->reason = VNF_R_NO_CONFIG;
		return VNF_ACT_DROP;
	}
	if (cfg->key_mode == VNF_RL_KEY_GLOBAL) {
		__u32 state = s->state;

		b = bpf_map_lookup_elem(&vnf_rl_global, &state);
		if (!b)
			return VNF_NEXT;
		goto charge;
	}
	__builtin_memset(&k, 0, sizeof(k));
	k.instance = s->state; /* buckets are state: they survive chain updates */
	rc = chain_parse(ctx, &p);
	if (rc == VNF_PARSE_OK) {
		/* unparsable packets share the all-zero key of the instance */
		if (cfg->key_mode == VNF_RL_KEY_SRC) {
			__builtin_memcpy(k.t.saddr, p.t.saddr, 16);
			k.t.family = p.t.family;
		} else {
			k.t = p.t;
		}
	}

	b = bpf_map_lookup_elem(&vnf_rl_buckets, &k);
	if (!b) {
		struct vnf_rl_state fresh = {};

		bpf_map_update_elem(&vnf_rl_buckets, &k, &fresh, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&vnf_rl_buckets, &k);
		if (!b)
			return VNF_NEXT; /* cannot track: fail open */
	}
charge:
	fp_note(FP_OP_RL, inst, 0, 0);
	now = bpf_ktime_get_ns();
	if (cfg->pkt_inc_ns &&
	    !rl_gcra(&b->pkt_tat_ns, now, cfg->pkt_inc_ns, cfg->pkt_tau_ns))
		goto drop;
	if (cfg->byte_inc_q16 &&
	    !rl_gcra(&b->byte_tat_ns, now,
		     ((__u64)ctx_len(ctx) * cfg->byte_inc_q16) >> 16,
		     cfg->byte_tau_ns))
		goto drop;
	return VNF_NEXT;
drop:
	s->reason = VNF_R_RATELIMIT;
	return VNF_ACT_DROP;
}

#endif /* VNF_NF_RATELIMIT_H */
