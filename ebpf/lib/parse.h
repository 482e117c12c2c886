/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parse.h - bounded packet parser shared by the classifier and functions.
 *
 * Ethernet, up to two VLAN tags (802.1Q / 802.1ad), IPv4 (options,
 * fragments), IPv6 (up to VNF_MAX_EXT extension headers: hop-by-hop,
 * routing, fragment, destination options, AH), then TCP/UDP/ICMP/ICMPv6.
 * Result: a vnf_tuple (see vnf_shared.h) plus header offsets.
 */
#ifndef VNF_PARSE_H
#define VNF_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

/* linux/icmp.h drags in libc socket headers; the four types we need: */
#define VNF_ICMP_ECHOREPLY 0
#define VNF_ICMP_ECHO 8
#define VNF_ICMPV6_ECHO_REQUEST 128
#define VNF_ICMPV6_ECHO_REPLY 129

#include "ctx.h"

#define VNF_MAX_VLAN 2
#define VNF_MAX_EXT 4

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

enum vnf_parse_rc {
	VNF_PARSE_OK = 0, /* IPv4/IPv6 parsed (L4 see l4_valid) */
	VNF_PARSE_NON_IP = 1, /* well-formed, but neither IPv4 nor IPv6 */
	VNF_PARSE_MALFORMED = 2, /* truncated or invalid header */
};

#define VNF_FRAG_NONE 0
#define VNF_FRAG_FIRST 1 /* first fragment: L4 header present */
#define VNF_FRAG_LATER 2 /* non-first fragment: no L4 header */

struct vnf_pkt {
	struct vnf_tuple t;
	__u16 l3_off; /* offset of the IP header from data */
	__u16 l4_off; /* offset of the L4 header (valid if l4_valid) */
	__u16 eth_proto; /* host order, after VLAN tags */
	__u8 vlan_depth;
	__u8 frag; /* VNF_FRAG_* */
	__u8 l4_valid; /* ports/type fields valid */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 dscp; /* IPv4 TOS / IPv6 traffic class >> 2 */
};

struct vnf_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct vnf_ipv6_opt {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct vnf_ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | res | M */
	__be32 id;
};

static __always_inline int vnf_parse_l4(void *pos, void *data_end,
					struct vnf_pkt *p)
{
	if (p->frag == VNF_FRAG_LATER)
		return VNF_PARSE_OK;

	switch (p->t.proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = pos;

		if ((void *)(th + 1) > data_end || th->doff < 5)
			return VNF_PARSE_MALFORMED;
		p->t.sport = bpf_ntohs(th->source);
		p->t.dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		p->l4_valid = 1;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = pos;

		if ((void *)(uh + 1) > data_end)
			return VNF_PARSE_MALFORMED;
		p->t.sport = bpf_ntohs(uh->source);
		p->t.dport = bpf_ntohs(uh->dest);
		p->l4_valid = 1;
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		/* type, code, checksum, then identifier for echo */
		__u8 *ih = pos;
		__u8 type;

		if ((void *)(ih + 8) > data_end)
			return VNF_PARSE_MALFORMED;
		type = ih[0];
		p->icmp_type = type;
		p->icmp_code = ih[1];
		if ((p->t.proto == IPPROTO_ICMP &&
		     (type == VNF_ICMP_ECHO || type == VNF_ICMP_ECHOREPLY)) ||
		    (p->t.proto == IPPROTO_ICMPV6 &&
		     (type == VNF_ICMPV6_ECHO_REQUEST ||
		      type == VNF_ICMPV6_ECHO_REPLY))) {
			__u16 id = ((__u16)ih[4] << 8) | ih[5];

			p->t.sport = id;
			p->t.dport = id;
		}
		p->l4_valid = 1;
		break;
	}
	default:
		break;
	}
	return VNF_PARSE_OK;
}

static __always_inline int vnf_parse_ipv4(void *data, void *data_end,
					  struct iphdr *iph, struct vnf_pkt *p)
{
	__u32 hlen;
	__u16 frag_off;
	void *l4;

	if ((void *)(iph + 1) > data_end)
		return VNF_PARSE_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return VNF_PARSE_MALFORMED;
	hlen = iph->ihl * 4;
	if (bpf_ntohs(iph->tot_len) < hlen)
		return VNF_PARSE_MALFORMED;
	/* the datagram must be complete (link padding may follow it) */
	if ((void *)iph + bpf_ntohs(iph->tot_len) > data_end)
		return VNF_PARSE_MALFORMED;
	l4 = (void *)iph + hlen;
	if (l4 > data_end)
		return VNF_PARSE_MALFORMED;

	p->t.family = 4;
	p->t.proto = iph->protocol;
	p->dscp = iph->tos >> 2;
	__builtin_memcpy(p->t.saddr, &iph->saddr, 4);
	__builtin_memcpy(p->t.daddr, &iph->daddr, 4);

	frag_off = bpf_ntohs(iph->frag_off);
	if (frag_off & 0x1fff)
		p->frag = VNF_FRAG_LATER;
	else if (frag_off & 0x2000)
		p->frag = VNF_FRAG_FIRST;
	p->l4_off = l4 - data;
	return vnf_parse_l4(l4, data_end, p);
}

static __always_inline int vnf_parse_ipv6(void *data, void *data_end,
					  struct ipv6hdr *ip6, struct vnf_pkt *p)
{
	void *pos = ip6 + 1;
	__u8 nexthdr;
	int i;

	if (pos > data_end)
		return VNF_PARSE_MALFORMED;
	if (ip6->version != 6)
		return VNF_PARSE_MALFORMED;
	if (pos + bpf_ntohs(ip6->payload_len) > data_end)
		return VNF_PARSE_MALFORMED;

	p->t.family = 6;
	p->dscp = ((ip6->priority << 4) | (ip6->flow_lbl[0] >> 4)) >> 2;
	__builtin_memcpy(p->t.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->t.daddr, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;

#pragma unroll
	for (i = 0; i < VNF_MAX_EXT; i++) {
		struct vnf_ipv6_opt *opt = pos;

		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if ((void *)(opt + 1) > data_end)
				return VNF_PARSE_MALFORMED;
			nexthdr = opt->nexthdr;
			pos += ((__u32)opt->hdrlen + 1) * 8;
			break;
		case IPPROTO_AH:
			if ((void *)(opt + 1) > data_end)
				return VNF_PARSE_MALFORMED;
			nexthdr = opt->nexthdr;
			pos += ((__u32)opt->hdrlen + 2) * 4;
			break;
		case IPPROTO_FRAGMENT: {
			struct vnf_ipv6_frag *fh = pos;
			__u16 fo;

			if ((void *)(fh + 1) > data_end)
				return VNF_PARSE_MALFORMED;
			fo = bpf_ntohs(fh->frag_off);
			if (fo & 0xfff8)
				p->frag = VNF_FRAG_LATER;
			else if (fo & 1)
				p->frag = VNF_FRAG_FIRST;
			nexthdr = fh->nexthdr;
			pos += sizeof(*fh);
			break;
		}
		default:
			goto done;
		}
	}
	/* still an extension header after VNF_MAX_EXT: give up on L4 */
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		p->t.proto = nexthdr;
		return VNF_PARSE_OK;
	}
done:
	if (pos > data_end)
		return VNF_PARSE_MALFORMED;
	p->t.proto = nexthdr;
	p->l4_off = pos - data;
	return vnf_parse_l4(pos, data_end, p);
}

/* Parse the packet in ctx into *p (zeroed first). */
static __always_inline int vnf_parse_inline(vnf_ctx_t *ctx, struct vnf_pkt *p)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	void *pos = eth + 1;
	__u16 proto;
	int i;

	__builtin_memset(p, 0, sizeof(*p));
	if (pos > data_end)
		return VNF_PARSE_MALFORMED;
	proto = bpf_ntohs(eth->h_proto);

#pragma unroll
	for (i = 0; i < VNF_MAX_VLAN; i++) {
		struct vnf_vlan_hdr *vh = pos;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if ((void *)(vh + 1) > data_end)
			return VNF_PARSE_MALFORMED;
		proto = bpf_ntohs(vh->proto);
		pos = vh + 1;
		p->vlan_depth++;
	}
	p->eth_proto = proto;
	p->l3_off = pos - data;

	if (proto == ETH_P_IP)
		return vnf_parse_ipv4(data, data_end, pos, p);
	if (proto == ETH_P_IPV6)
		return vnf_parse_ipv6(data, data_end, pos, p);
	return VNF_PARSE_NON_IP;
}

/* Parse the packet in ctx into *p (zeroed first).
 *
 * A global (non-inlined) function, like fw_port_seg: the verifier checks the
 * parser's branches (VLAN tags, IPv6 extension headers, L4 types) once, on
 * their own, instead of inside every path of every program that parses.
 * *p holds offsets and values only, never packet pointers, so callers
 * re-derive and bounds-check every header they touch. */
/* The tuple of the other direction of a flow (source and destination
 * swapped, padding zeroed: tuples are hash keys). */
static __always_inline void vnf_tuple_reverse(struct vnf_tuple *r,
					      const struct vnf_tuple *t)
{
	__builtin_memcpy(r->saddr, t->daddr, 16);
	__builtin_memcpy(r->daddr, t->saddr, 16);
	r->sport = t->dport;
	r->dport = t->sport;
	r->proto = t->proto;
	r->family = t->family;
	r->_pad[0] = 0;
	r->_pad[1] = 0;
}

__attribute__((noinline)) int vnf_parse(vnf_ctx_t *ctx, struct vnf_pkt *p)
{
	if (!p)
		return VNF_PARSE_MALFORMED;
	return vnf_parse_inline(ctx, p);
}

/* Compare the first plen bits of two addresses (plen <= 128). */
static __always_inline int vnf_prefix_match(const __u8 *a, const __u8 *b,
					    __u32 plen)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		__u32 bits = i * 8;
		__u8 mask;

		if (bits >= plen)
			break;
		mask = plen - bits >= 8 ? 0xff : (__u8)(0xff << (8 - (plen - bits)));
		if ((a[i] ^ b[i]) & mask)
			return 0;
	}
	return 1;
}

#endif /* VNF_PARSE_H */
