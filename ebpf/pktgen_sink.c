/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pktgen_sink.c - pktgen's XDP sink receiver (pktgen/src/xdp_sink.rs).
 *
 * Counts pktgen frames per CPU and per stream, then drops them or passes
 * them up the stack (sink_verdict); every other frame is counted apart and
 * always passed, so ARP/NDP and the like keep working.
 *
 * A pktgen frame: Ethernet + IPv4 without options (IHL 5) or IPv6, with UDP
 * as the protocol / next header, long enough for the 24-byte pktgen header,
 * whose magic is pktgen_magic. This is a traffic counter, not a filter: it
 * does not use lib/parse.h (VLANs, options and extension headers are not
 * pktgen's frames). Bytes are whole frames (Ethernet header included, no
 * FCS), from bpf_xdp_get_buff_len.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "include/pktgen.h"

#define PK_V4_HDR (ETH_HLEN + sizeof(struct iphdr) + 8)
#define PK_V6_HDR (ETH_HLEN + sizeof(struct ipv6hdr) + 8)

/* Set by user space at load time. */
volatile const __u32 pktgen_magic = 0;
volatile const __u32 sink_verdict = XDP_DROP;

struct pk_count {
	__u64 packets;
	__u64 bytes;
};

enum { PK_SLOT_PKTGEN = 0, PK_SLOT_OTHER = 1 };

/* Stream id -> count; max_entries is set by user space (MAX_STREAMS). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pk_count);
} pktgen_sink_streams SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct pk_count);
} pktgen_sink_totals SEC(".maps");

/* The pktgen header of a pktgen frame, or NULL. */
static __always_inline struct pktgen_hdr *pktgen_header(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct pktgen_hdr *hdr;

	if (data + PK_V4_HDR + sizeof(*hdr) > end)
		return NULL;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + ETH_HLEN;

		if (*(__u8 *)ip != 0x45 || ip->protocol != IPPROTO_UDP)
			return NULL;
		hdr = data + PK_V4_HDR;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if (data + PK_V6_HDR + sizeof(*hdr) > end)
			return NULL;
		if (ip6->nexthdr != IPPROTO_UDP)
			return NULL;
		hdr = data + PK_V6_HDR;
	} else {
		return NULL;
	}
	return hdr->magic == pktgen_magic ? hdr : NULL;
}

SEC("xdp")
int pktgen_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = bpf_xdp_get_buff_len(ctx);
	struct pktgen_hdr *hdr = pktgen_header(data, data_end);
	__u32 slot = PK_SLOT_OTHER;
	int verdict = XDP_PASS;
	struct pk_count *c;

	if (hdr) {
		__u32 stream = hdr->stream_id;

		c = bpf_map_lookup_elem(&pktgen_sink_streams, &stream);
		if (c) {
			c->packets++;
			c->bytes += len;
		} else {
			struct pk_count first = { .packets = 1, .bytes = len };

			/* fails only when the table is full: the totals still count */
			bpf_map_update_elem(&pktgen_sink_streams, &stream, &first, BPF_ANY);
		}
		slot = PK_SLOT_PKTGEN;
		verdict = sink_verdict;
	}
	c = bpf_map_lookup_elem(&pktgen_sink_totals, &slot);
	if (c) {
		c->packets++;
		c->bytes += len;
	}
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
