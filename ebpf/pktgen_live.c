/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pktgen_live.c - pktgen's live-frames generator (pktgen/src/xdp_live.rs).
 *
 * Not attached to an interface: pktgen runs it with BPF_PROG_TEST_RUN in
 * live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) over copies of one prepared
 * Ethernet/IPv4/UDP frame. For each copy it writes the next sequence number
 * and bpf_ktime_get_ns() (the CLOCK_MONOTONIC the receiver reads) into the
 * pktgen header and returns XDP_TX, which sends the frame out of the
 * interface named in the test context. A frame too short for the header is
 * dropped.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "include/pktgen.h"

/* Offsets in the template frame: Ethernet, IPv4 without options, UDP. */
#define PK_LIVE_HDR (14 + 20 + 8)
#define PK_LIVE_SEQ (PK_LIVE_HDR + PKTGEN_SEQ_OFF)
#define PK_LIVE_TX (PK_LIVE_HDR + PKTGEN_TX_OFF)

/* Slot 0: the next sequence number; user space reads it as the sent count. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pktgen_live_seq SEC(".maps");

SEC("xdp")
int pktgen_live(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	__u64 *next, seq;

	if (data + PK_LIVE_TX + sizeof(__u64) > data_end)
		return XDP_DROP;
	next = bpf_map_lookup_elem(&pktgen_live_seq, &zero);
	if (!next)
		return XDP_DROP;
	seq = *next;
	*next = seq + 1;
	*(__u64 *)(data + PK_LIVE_SEQ) = seq;
	*(__u64 *)(data + PK_LIVE_TX) = bpf_ktime_get_ns();
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
