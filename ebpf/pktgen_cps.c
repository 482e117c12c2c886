/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pktgen_cps.c - the new-flow generator and its counting sink
 * (pktgen/src/xdp_cps.rs, vnfctl bench's "new flows" table).
 *
 * pktgen_cps is run with BPF_PROG_TEST_RUN in live-frames mode over copies of
 * one frame. Every frame is a new flow: the program writes the whole
 * Ethernet + IPv4 + UDP header afresh from the template in pktgen_cps_cfg
 * (pages are recycled with whatever the middle box wrote into them, so
 * nothing of an earlier pass may survive), with the source address and port
 * of flow number n:
 *     port = port_lo + n % ports,  host = src_base + (n / ports) % hosts
 * then the IPv4 header checksum, UDP checksum 0 ("none"), and n and the
 * CLOCK_MONOTONIC time in the pktgen header. n comes from pktgen_cps_seq and
 * survives calls, so a run of many calls never repeats a tuple until
 * hosts * ports flows have been sent. XDP_TX sends the frame out of the
 * interface named in the test context.
 *
 * cps_sink (attached to the server's veth) counts every frame, the IPv4/UDP
 * frames that arrive as expected (source address = cfg.saddr unless 0,
 * destination within [cfg.daddr_lo, cfg.daddr_hi], destination port =
 * cfg.dport unless 0: the translation the scenario must perform), and sets a
 * bit per source port of those frames (distinct translated source ports),
 * then drops the frame.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "include/pktgen.h"

#define CPS_HDR (14 + 20 + 8)
#define CPS_SEQ (CPS_HDR + PKTGEN_SEQ_OFF)
#define CPS_TX (CPS_HDR + PKTGEN_TX_OFF)

struct cps_cfg {
	__u8 hdr[CPS_HDR]; /* Ethernet + IPv4 + UDP of the template */
	__u16 port_lo; /* first source port (host order) */
	__u32 ports; /* source ports per host (>= 1) */
	__u32 hosts; /* source hosts (>= 1) */
	__u32 src_base; /* first source address (host order) */
};
_Static_assert(sizeof(struct cps_cfg) == 56, "cps_cfg size");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cps_cfg);
} pktgen_cps_cfg SEC(".maps");

/* Slot 0: the next flow number; user space reads it as the sent count. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pktgen_cps_seq SEC(".maps");

static __always_inline __u16 ip_csum(const __u16 *w)
{
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

SEC("xdp")
int pktgen_cps(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct cps_cfg *cfg;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 zero = 0, port, host;
	__u64 *next, n;

	if (data + CPS_TX + sizeof(__u64) > data_end)
		return XDP_DROP;
	cfg = bpf_map_lookup_elem(&pktgen_cps_cfg, &zero);
	next = bpf_map_lookup_elem(&pktgen_cps_seq, &zero);
	if (!cfg || !next || !cfg->ports || !cfg->hosts)
		return XDP_DROP;
	n = *next;
	*next = n + 1;
	port = cfg->port_lo + (__u32)(n % cfg->ports);
	host = cfg->src_base + (__u32)((n / cfg->ports) % cfg->hosts);

	__builtin_memcpy(data, cfg->hdr, CPS_HDR);
	ip = data + 14;
	udp = data + 14 + 20;
	ip->saddr = bpf_htonl(host);
	ip->check = 0;
	ip->check = ip_csum((const __u16 *)ip);
	udp->source = bpf_htons((__u16)port);
	udp->check = 0;
	*(__u64 *)(data + CPS_SEQ) = n;
	*(__u64 *)(data + CPS_TX) = bpf_ktime_get_ns();
	return XDP_TX;
}

struct cps_sink_cfg {
	__u32 saddr; /* expected source address (network order), 0 = any */
	__u32 daddr_lo; /* expected destination range (host order, inclusive) */
	__u32 daddr_hi;
	__u16 dport; /* expected destination port (host order), 0 = any */
	__u16 _pad;
};
_Static_assert(sizeof(struct cps_sink_cfg) == 16, "cps_sink_cfg size");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cps_sink_cfg);
} cps_sink_cfg SEC(".maps");

/* Slot 0: every frame; slot 1: the frames as expected. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} cps_sink_count SEC(".maps");

/* One bit per source port of the expected frames. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} cps_sink_ports SEC(".maps");

static __always_inline void sink_bump(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&cps_sink_count, &slot);

	if (c)
		*c += 1;
}

SEC("xdp")
int cps_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct cps_sink_cfg *cfg;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 zero = 0, d, word;
	__u64 *bits;
	__u16 sport;

	sink_bump(0);
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_DROP;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return XDP_DROP;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_DROP;
	cfg = bpf_map_lookup_elem(&cps_sink_cfg, &zero);
	if (!cfg)
		return XDP_DROP;
	d = bpf_ntohl(ip->daddr);
	if ((cfg->saddr && ip->saddr != cfg->saddr) || d < cfg->daddr_lo ||
	    d > cfg->daddr_hi ||
	    (cfg->dport && udp->dest != bpf_htons(cfg->dport)))
		return XDP_DROP;
	sink_bump(1);
	sport = bpf_ntohs(udp->source);
	word = sport >> 6;
	bits = bpf_map_lookup_elem(&cps_sink_ports, &word);
	if (bits)
		__sync_fetch_and_or(bits, 1ULL << (sport & 63));
	return XDP_DROP;
}

/* cps_echo: the request-response reflector of the RTT row, in the kernel so
 * no user-space wake-up sits in the round trip. An IPv4/UDP frame to
 * cps_echo_cfg.dport goes back out of the interface it came in on (XDP_TX)
 * with addresses and ports swapped (the checksums stay valid: their sums do
 * not change) and the configured MACs; anything else passes. */
struct cps_echo_cfg {
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u16 dport; /* host order */
	__u16 _pad;
};
_Static_assert(sizeof(struct cps_echo_cfg) == 16, "cps_echo_cfg size");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cps_echo_cfg);
} cps_echo_cfg SEC(".maps");

SEC("xdp")
int cps_echo(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct cps_echo_cfg *cfg;
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 zero = 0, a;
	__u16 p;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&cps_echo_cfg, &zero);
	if (!cfg || udp->dest != bpf_htons(cfg->dport))
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, cfg->dst_mac, 6);
	__builtin_memcpy(eth->h_source, cfg->src_mac, 6);
	a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	p = udp->source;
	udp->source = udp->dest;
	udp->dest = p;
	return XDP_TX;
}

/* cps_pass: passes every frame. On a veth it enables the receive path that
 * takes XDP frames its peer sends with XDP_TX (veth schedules the peer's
 * NAPI for them only when the peer has an XDP program). */
SEC("xdp")
int cps_pass(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
