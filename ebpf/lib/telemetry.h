/* SPDX-License-Identifier: Apache-2.0 */
/*
 * telemetry.h - per-function, per-CPU counters and log2 latency histograms.
 *
 * vnf_stats[instance] counts packets/bytes in, passed, dropped by reason,
 * and (when the instance's latency_sample_rate says so) the time spent in
 * the function body.  vnf_chain_stats[generation] counts classification
 * and the sampled entry-to-verdict latency of whole chains.
 */
#ifndef VNF_TELEMETRY_H
#define VNF_TELEMETRY_H

#include "ctx.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_fn_stats);
} vnf_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VNF_GENERATIONS);
	__type(key, __u32);
	__type(value, struct vnf_chain_stats);
} vnf_chain_stats SEC(".maps");

/* floor(log2(v)) for v > 0, 0 for v == 0, clamped to the last bucket. */
static __always_inline __u32 tel_log2(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) {
		v >>= 32;
		r += 32;
	}
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r < VNF_HIST_BUCKETS ? r : VNF_HIST_BUCKETS - 1;
}

static __always_inline void tel_hist_add(__u64 *hist, __u64 delta_ns)
{
	__u32 b = tel_log2(delta_ns);

	if (b < VNF_HIST_BUCKETS)
		hist[b]++;
}

/* 1-in-rate sampling on a per-CPU sequence number. */
static __always_inline int tel_sample(__u32 rate, __u64 seq)
{
	return rate && (seq % rate) == 0;
}

static __always_inline void tel_in(struct vnf_fn_stats *st, __u32 len)
{
	st->pkts_in++;
	st->bytes_in += len;
}

/* Account the verdict of a function body. */
static __always_inline void tel_verdict(struct vnf_fn_stats *st, int verdict,
					__u32 reason)
{
	if (verdict == VNF_ACT_DROP) {
		if (reason >= VNF_NR_REASONS)
			reason = 0;
		st->dropped[reason]++;
	} else {
		st->passed++;
	}
}

#endif /* VNF_TELEMETRY_H */
