/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pktgen_live.c - pktgen's live-frames generator (pktgen/src/xdp_live.rs).
 *
 * Not attached to an interface: pktgen runs it with BPF_PROG_TEST_RUN in
 * live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES) over copies of one prepared
 * Ethernet/IPv4/UDP frame. Live-frames mode recycles its pages without
 * re-initialising them, so a frame the receiver rewrote (NAT, a forwarder's
 * MAC rewrite) comes back with that rewrite; the program therefore restores
 * the Ethernet, IPv4 and UDP headers from the template in pktgen_live_cfg on
 * every frame, then sets the source port of the frame's flow (one of
 * cfg->flows consecutive ports, round robin by sequence number; the UDP
 * checksum is 0 and the IPv4 checksum does not cover ports), writes the next
 * sequence number and bpf_ktime_get_ns() (the CLOCK_MONOTONIC the receiver
 * reads) into the pktgen header and returns XDP_TX, which sends the frame
 * out of the interface named in the test context. A frame too short for the
 * header, or a run without a configuration, is dropped.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/pktgen.h"

/* Offsets in the template frame: Ethernet, IPv4 without options, UDP. */
#define PK_LIVE_SEQ (PKTGEN_LIVE_HDR + PKTGEN_SEQ_OFF)
#define PK_LIVE_TX (PKTGEN_LIVE_HDR + PKTGEN_TX_OFF)
#define PK_LIVE_SPORT (14 + 20)

/* Slot 0: the next sequence number; user space reads it as the sent count. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pktgen_live_seq SEC(".maps");

/* Slot 0: the header template and the flow pattern, written by user space before the run. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pktgen_live_cfg);
} pktgen_live_cfg SEC(".maps");

SEC("xdp")
int pktgen_live(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct pktgen_live_cfg *cfg;
	__u32 zero = 0;
	__u64 *next, seq;
	__u16 port;

	if (data + PK_LIVE_TX + sizeof(__u64) > data_end)
		return XDP_DROP;
	next = bpf_map_lookup_elem(&pktgen_live_seq, &zero);
	cfg = bpf_map_lookup_elem(&pktgen_live_cfg, &zero);
	if (!next || !cfg || !cfg->flows)
		return XDP_DROP;
	seq = *next;
	*next = seq + 1;
	__builtin_memcpy(data, cfg->hdr, PKTGEN_LIVE_HDR);
	port = cfg->sport;
	if (cfg->flows > 1)
		port += (__u16)(seq % cfg->flows);
	*(__u16 *)(data + PK_LIVE_SPORT) = bpf_htons(port);
	*(__u64 *)(data + PK_LIVE_SEQ) = seq;
	*(__u64 *)(data + PK_LIVE_TX) = bpf_ktime_get_ns();
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
