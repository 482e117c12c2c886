/* SPDX-License-Identifier: Apache-2.0 */
/*
 * monitor.h - passive function: per-class packet/byte counters and 1-in-N
 * sampled packet metadata (vnf_mon_sample) pushed to the ring buffer
 * vnf_samples.  count_by selects the counters: the fixed classes of
 * enum vnf_mon_class (array vnf_mon_classes), or one counter per TCP/UDP
 * destination port or per DSCP value (per-CPU hash vnf_mon_keyed; a full
 * hash only loses the count of a new key, never the packet).  stats.aux counts samples emitted; a full ring buffer only
 * loses the sample, never the packet.
 */
#ifndef VNF_NF_MONITOR_H
#define VNF_NF_MONITOR_H

#include "../lib/chain.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_mon_cfg);
} vnf_mon_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES * VNF_MON_CLASSES);
	__type(key, __u32);
	__type(value, struct vnf_mon_counter);
} vnf_mon_classes SEC(".maps");

/* Allocated on first use: preallocating 65,536 per-CPU entries cost a fifth
 * of the data plane's start-up time, for counters most chains never key. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, VNF_MON_KEYED_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vnf_mon_key);
	__type(value, struct vnf_mon_counter);
} vnf_mon_keyed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VNF_RINGBUF_BYTES);
} vnf_samples SEC(".maps");

static __always_inline __u8 mon_class(int rc, const struct vnf_pkt *p)
{
	if (rc == VNF_PARSE_NON_IP)
		return VNF_MON_NON_IP;
	/* non-first fragments, whether or not their first one was seen */
	if (p->frag == VNF_FRAG_LATER && vnf_parse_has_l3(rc))
		return VNF_MON_FRAGMENT;
	if (rc != VNF_PARSE_OK)
		return VNF_MON_MALFORMED;
	switch (p->t.proto) {
	case IPPROTO_TCP:
		return VNF_MON_TCP;
	case IPPROTO_UDP:
		return VNF_MON_UDP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return VNF_MON_ICMP;
	}
	return p->t.family == 4 ? VNF_MON_OTHER_V4 : VNF_MON_OTHER_V6;
}

/* Count one packet of len bytes for monitor state `state`: in its class
 * counter, or (count_by dport / dscp) in the keyed counter for value,
 * created on first use.  Shared by nf_monitor and the fast path (fp_mon). */
static __always_inline void mon_count(const struct vnf_mon_cfg *cfg,
				      __u32 state, __u8 cls, __u32 value,
				      __u32 len)
{
	struct vnf_mon_counter *c;

	if (cfg->count_by == VNF_MON_BY_CLASS) {
		__u32 idx = state * VNF_MON_CLASSES + cls;

		c = bpf_map_lookup_elem(&vnf_mon_classes, &idx);
		if (c) {
			c->packets++;
			c->bytes += len;
		}
	} else {
		struct vnf_mon_key k = { .instance = state, .value = value };

		c = bpf_map_lookup_elem(&vnf_mon_keyed, &k);
		if (c) {
			c->packets++;
			c->bytes += len;
		} else {
			struct vnf_mon_counter first = { .packets = 1,
							 .bytes = len };

			bpf_map_update_elem(&vnf_mon_keyed, &k, &first,
					    BPF_NOEXIST);
		}
	}
}

/* 1-in-sample_rate (on seq): reserve a sample and fill all but its tuple,
 * which the caller sets before bpf_ringbuf_submit.  NULL: no sample. */
static __always_inline struct vnf_mon_sample *
mon_sample_start(const struct vnf_mon_cfg *cfg, __u64 seq, __u32 inst,
		 __u32 ifindex, __u32 len, __u8 cls, __u8 tcp_flags)
{
	struct vnf_mon_sample *smp;

	if (!tel_sample(cfg->sample_rate, seq))
		return NULL;
	smp = bpf_ringbuf_reserve(&vnf_samples, sizeof(*smp), 0);
	if (!smp)
		return NULL;
	smp->ts_ns = bpf_ktime_get_ns();
	smp->instance = inst;
	smp->ifindex = ifindex;
	smp->pkt_len = len;
	smp->class = cls;
	smp->tcp_flags = tcp_flags;
	smp->_pad[0] = 0;
	smp->_pad[1] = 0;
	return smp;
}

static __always_inline int nf_monitor(vnf_ctx_t *ctx, struct vnf_scratch *s,
				      __u32 inst, struct vnf_fn_stats *st)
{
	struct vnf_mon_cfg *cfg = bpf_map_lookup_elem(&vnf_mon_cfg, &inst);
	struct vnf_mon_sample *smp;
	struct vnf_pkt p;
	__u32 len = ctx_len(ctx);
	__u32 value = 0;
	__u8 cls;
	int rc;

	if (!cfg) {
		s->reason = VNF_R_NO_CONFIG;
		return VNF_ACT_DROP;
	}
	fp_note(FP_OP_MON, inst, 0, 0);
	rc = chain_parse(ctx, &p);
	cls = mon_class(rc, &p);
	if (cfg->count_by == VNF_MON_BY_DPORT)
		value = (rc == VNF_PARSE_OK && p.l4_valid &&
			 p.frag != VNF_FRAG_LATER &&
			 (p.t.proto == IPPROTO_TCP ||
			  p.t.proto == IPPROTO_UDP)) ?
				p.t.dport :
				VNF_MON_NO_PORT;
	else if (cfg->count_by == VNF_MON_BY_DSCP)
		value = vnf_parse_has_l3(rc) ? p.dscp : VNF_MON_NO_DSCP;
	mon_count(cfg, s->state, cls, value, len);
	smp = mon_sample_start(cfg, st->pkts_in, inst, ctx_ifindex(ctx), len,
			       cls, p.tcp_flags);
	if (!smp)
		return VNF_NEXT;
	smp->t = p.t;
	bpf_ringbuf_submit(smp, 0);
	st->aux++;
	return VNF_NEXT;
}

#endif /* VNF_NF_MONITOR_H */
