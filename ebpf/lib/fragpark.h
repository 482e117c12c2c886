/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fragpark.h - fragments that overtake their first fragment.
 *
 * A non-first fragment carries no ports, so its verdict is its datagram's,
 * known only once the first fragment has been parsed (lib/parse.h,
 * vnf_frags).  When a later fragment arrives first, a firewall *parks* it:
 * the frame is copied into the hash vnf_frag_park (bounded: VNF_PARK_MAX
 * frames of at most VNF_PARK_BYTES, VNF_PARK_PER_DGRAM per datagram,
 * VNF_PARK_TIMEOUT_NS) and the original is dropped (reason
 * fragment_parked).  When the first fragment arrives, the entry *releases*
 * the datagram's parked frames into the interface's ingress:
 *
 *  - TC: each is written into the skb in turn and cloned back into the
 *    ingress (bpf_clone_redirect with BPF_F_INGRESS), then the first
 *    fragment is restored and goes on through the chain;
 *  - XDP cannot emit a frame it did not receive: the entry tells user space
 *    (an event in the ring buffer vnf_frag_events: datagram, interface, rx
 *    queue), which takes the parked frames out of the park and runs each
 *    through the entry program with BPF_PROG_TEST_RUN in live-frames mode
 *    on that interface (cnf-dataplane engine/fragreplay.rs), so its verdict
 *    acts as a received frame's would (XDP_PASS: into the stack).
 *
 * A released frame runs the whole chain again, like any frame: its datagram
 * is now known, so it gets the datagram's verdict (denied datagrams stay
 * denied; nothing is passed on the strength of parking).
 *
 * Fail closed: a frame that cannot be parked (too long, bounds reached) is
 * dropped as fragment_unknown_flow; a parked frame older than the timeout
 * is deleted and counted fragment_expired (when met by a release, or by the
 * reclaim that runs when the map is full, and on XDP by the sweep user
 * space runs every 100 ms: vnf_frag_sweep in xdp_chain.c).
 */
#ifndef VNF_FRAGPARK_H
#define VNF_FRAGPARK_H

#include "parse.h"
#include "telemetry.h"

/* How long a parked fragment waits for its first fragment. */
#define VNF_PARK_TIMEOUT_NS (1000ULL * 1000000ULL)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VNF_PARK_MAX);
	__type(key, struct vnf_frag_key);
	__type(value, struct vnf_frag_pend);
} vnf_frag_pend SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VNF_PARK_MAX);
	__type(key, struct vnf_park_key);
	__type(value, struct vnf_park_val);
} vnf_frag_park SEC(".maps");

/* Per-CPU buffers: [0] builds a parked value, [1] saves the first fragment
 * while its datagram's parked frames are released. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct vnf_park_val);
} vnf_park_buf SEC(".maps");

/* Loopback: BPF_PROG_TEST_RUN runs programs on it without a context;
 * nothing is released there (a chain is never attached to lo). */
#define VNF_LOOPBACK_IFINDEX 1

static __always_inline void vnf_park_count_expired(__u32 state)
{
	struct vnf_fn_stats *st = bpf_map_lookup_elem(&vnf_stats, &state);

	if (st)
		st->dropped[VNF_R_FRAG_EXPIRED]++;
}

static long vnf_park_reclaim_one(void *map, const void *key, void *value,
				 void *ctx)
{
	struct vnf_park_val *v = value;
	__u64 now = *(__u64 *)ctx;

	if (now - v->parked_ns > VNF_PARK_TIMEOUT_NS) {
		vnf_park_count_expired(v->state);
		bpf_map_delete_elem(map, key);
	}
	return 0;
}

static long vnf_pend_reclaim_one(void *map, const void *key, void *value,
				 void *ctx)
{
	struct vnf_frag_pend *p = value;
	__u64 now = *(__u64 *)ctx;

	if (now - p->since_ns > VNF_PARK_TIMEOUT_NS)
		bpf_map_delete_elem(map, key);
	return 0;
}

/* len when 14 <= len <= VNF_PARK_BYTES (two branches the verifier sees on
 * the register itself), else 0. */
static __always_inline __u32 vnf_park_len(__u32 len)
{
	if (len > VNF_PARK_BYTES)
		return 0;
	asm volatile("" : "+r"(len));
	if (len < 14)
		return 0;
	return len;
}

/* Frees the parked frames and datagram entries past the timeout (run when
 * a map is full: a flood of orphans costs the flood, not the common case). */
static __always_inline void vnf_park_reclaim(__u64 now)
{
	bpf_for_each_map_elem(&vnf_frag_park, vnf_park_reclaim_one, &now, 0);
	bpf_for_each_map_elem(&vnf_frag_pend, vnf_pend_reclaim_one, &now, 0);
}

/* Parks the fragment of an unknown datagram in ctx; 1 if parked (the caller
 * drops the original), 0 if it cannot be (the caller drops it for good). */
static __always_inline int vnf_frag_park_frame(vnf_ctx_t *ctx,
					       const struct vnf_pkt *p,
					       __u32 state)
{
	struct vnf_frag_pend np = {}, *pend;
	struct vnf_park_key pk = {};
	struct vnf_park_val *v;
	__u64 now = vnf_flow_clock();
	__u32 len = vnf_park_len(ctx_len(ctx)), zero = 0, seq;

	if (!len)
		return 0;
	v = bpf_map_lookup_elem(&vnf_park_buf, &zero);
	if (!v)
		return 0;
	vnf_frag_key_of(&pk.dgram, p);
	np.since_ns = now;
	if (bpf_map_update_elem(&vnf_frag_pend, &pk.dgram, &np, BPF_NOEXIST) ==
	    -7 /* E2BIG: full */) {
		vnf_park_reclaim(now);
		bpf_map_update_elem(&vnf_frag_pend, &pk.dgram, &np, BPF_NOEXIST);
	}
	pend = bpf_map_lookup_elem(&vnf_frag_pend, &pk.dgram);
	if (!pend)
		return 0;
	if (now - pend->since_ns > VNF_PARK_TIMEOUT_NS) {
		/* a stale entry (its frames expired): start over */
		pend->since_ns = now;
		pend->nr = 0;
	}
	seq = __sync_fetch_and_add(&pend->nr, 1);
	if (seq >= VNF_PARK_PER_DGRAM)
		return 0;
	pk.seq = seq;
	if (ctx_load_bytes(ctx, 0, v->data, len) < 0)
		return 0;
	v->parked_ns = now;
	v->len = len;
	v->state = state;
	v->vlan = ctx_vlan(ctx);
	v->ifindex = ctx_ifindex(ctx);
	if (bpf_map_update_elem(&vnf_frag_park, &pk, v, BPF_NOEXIST)) {
		vnf_park_reclaim(now);
		if (bpf_map_update_elem(&vnf_frag_park, &pk, v, BPF_NOEXIST))
			return 0;
	}
	/* the first fragment may have been recorded on another CPU between
	 * our lookup and the parking (it records, then looks for parked
	 * frames; we park, then look for the record): take the frame back and
	 * drop it rather than leave it stranded */
	if (bpf_map_lookup_elem(&vnf_frags, &pk.dgram)) {
		bpf_map_delete_elem(&vnf_frag_park, &pk);
		return 0;
	}
	return 1;
}

#ifdef VNF_HOOK_TC

/* Writes len bytes of buf over the frame in ctx (resizing it). */
static __always_inline int vnf_park_write(vnf_ctx_t *ctx, __u8 *buf, __u32 len)
{
	len = vnf_park_len(len);
	if (!len)
		return -1;
	if (bpf_skb_change_tail(ctx, len, 0))
		return -1;
	if (bpf_skb_store_bytes(ctx, 0, buf, len, 0))
		return -1;
	/* the device's checksum of the carrier does not cover these bytes */
	bpf_csum_level(ctx, BPF_CSUM_LEVEL_RESET);
	return 0;
}

/* The first fragment in ctx (parsed into p, recorded in vnf_frags): replay
 * its datagram's parked frames into the interface's ingress.  Returns 0
 * when ctx holds the first fragment again (or was never changed), -1 when
 * it could not be restored (the caller drops it). */
static __always_inline int vnf_frag_release(vnf_ctx_t *ctx,
					    const struct vnf_pkt *p)
{
	struct vnf_park_key pk = {};
	struct vnf_park_val *save;
	__u64 now = vnf_flow_clock();
	__u32 one = 1, len = vnf_park_len(ctx->len), vlan, ifindex = ctx->ifindex;
	int i, changed = 0;

	vnf_frag_key_of(&pk.dgram, p);
	if (!bpf_map_lookup_elem(&vnf_frag_pend, &pk.dgram))
		return 0;
	bpf_map_delete_elem(&vnf_frag_pend, &pk.dgram);
	save = bpf_map_lookup_elem(&vnf_park_buf, &one);
	if (!save || !len || ifindex == VNF_LOOPBACK_IFINDEX)
		return 0; /* the parked frames stay until they expire */
	if (bpf_skb_load_bytes(ctx, 0, save->data, len) < 0)
		return 0;
	vlan = ctx_vlan(ctx);

	for (i = 0; i < VNF_PARK_PER_DGRAM; i++) {
		struct vnf_park_val *v;

		pk.seq = i;
		v = bpf_map_lookup_elem(&vnf_frag_park, &pk);
		if (!v)
			continue;
		if (now - v->parked_ns > VNF_PARK_TIMEOUT_NS || v->vlan != vlan) {
			vnf_park_count_expired(v->state);
		} else {
			changed = 1;
			if (vnf_park_write(ctx, v->data, v->len) == 0)
				bpf_clone_redirect(ctx, ifindex, BPF_F_INGRESS);
		}
		bpf_map_delete_elem(&vnf_frag_park, &pk);
	}
	if (!changed)
		return 0;
	if (vnf_park_write(ctx, save->data, len))
		return -1;
	bpf_skb_pull_data(ctx, len);
	return 0;
}

#else /* XDP: user space replays the parked frames */

/* Datagrams whose first fragment arrived while frames of theirs were
 * parked (struct vnf_frag_event), read by cnf-dataplane's replay. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024);
} vnf_frag_events SEC(".maps");

/* The first fragment in ctx (parsed into p, recorded in vnf_frags): if
 * frames of its datagram are parked, tell user space, which replays them
 * (they expire if the event is lost).  Always 0: the first fragment goes
 * on through the chain untouched. */
static __always_inline int vnf_frag_release(vnf_ctx_t *ctx,
					    const struct vnf_pkt *p)
{
	struct vnf_frag_event *e;
	struct vnf_frag_key k;

	vnf_frag_key_of(&k, p);
	if (!bpf_map_lookup_elem(&vnf_frag_pend, &k))
		return 0;
	bpf_map_delete_elem(&vnf_frag_pend, &k);
	if (ctx->ingress_ifindex == VNF_LOOPBACK_IFINDEX)
		return 0; /* the parked frames stay until they expire */
	e = bpf_ringbuf_reserve(&vnf_frag_events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->dgram = k;
	e->ifindex = ctx->ingress_ifindex;
	e->rx_queue = ctx->rx_queue_index;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* The sweep (run by user space): parked frames past the timeout go. */
static __always_inline int vnf_frag_sweep_body(void)
{
	vnf_park_reclaim(vnf_flow_clock());
	return XDP_DROP;
}

#endif /* VNF_HOOK_TC */

#endif /* VNF_FRAGPARK_H */
