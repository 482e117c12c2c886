/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parse.h - bounded, fail-closed packet parser shared by the classifier and
 * the functions (the contract it implements: docs/security.md).
 *
 * Ethernet, up to VNF_MAX_VLAN tags (0x8100, 0x88a8, 0x9100), IPv4 (options,
 * fragments), IPv6 (up to VNF_MAX_EXT extension headers: hop-by-hop, routing,
 * fragment, destination options, AH; ESP and no-next-header end the walk),
 * then TCP/UDP/ICMP/ICMPv6 with their lengths checked against the IP payload
 * (never against the frame: link padding is not payload).  Result: a
 * vnf_tuple (see vnf_shared.h) plus header offsets, and a vnf_parse_rc that
 * says why a packet could not be fully parsed.  Only VNF_PARSE_NON_IP is a
 * proof that a packet is outside IP; every other non-OK code means "cannot
 * tell", and a filtering chain drops it with the reason vnf_parse_reason().
 *
 * Fragments (RFC 1858, RFC 3128): a first fragment must carry the whole L4
 * header (else VNF_PARSE_TINY_FRAG); it records its ports in the LRU map
 * vnf_frags under (source, destination, id, protocol); a non-first fragment
 * takes the ports of its datagram from there (so rules and conntrack see the
 * datagram's flow), and is VNF_PARSE_FRAG_UNKNOWN when its first fragment was
 * not seen (or VNF_PARSE_TINY_FRAG when it overlaps the L4 header the
 * verdict was taken on).
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

/* Bounds of the walk (docs/security.md): deeper stacks are dropped by a
 * filtering chain, never taken for non-IP or for a packet without ports. */
#define VNF_MAX_VLAN 4
#define VNF_MAX_EXT 8
_Static_assert(14 + 4 * VNF_MAX_VLAN <= 0x3f, "vnf_parse_l3v6 masks the offset to 6 bits");

/* Idle lifetime of a fragment record: the kernel's ipfrag_time default. */
#define VNF_FRAG_TIMEOUT_NS (30ULL * 1000000000ULL)

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#define VNF_ETH_P_QINQ_OLD 0x9100 /* pre-802.1ad Q-in-Q TPID */

enum vnf_parse_rc {
	VNF_PARSE_OK = 0, /* IPv4/IPv6 parsed (L4 see l4_valid) */
	VNF_PARSE_NON_IP = 1, /* well-formed, but neither IPv4 nor IPv6 */
	VNF_PARSE_MALFORMED = 2, /* truncated or invalid header */
	VNF_PARSE_ENCAP_DEPTH = 3, /* more than VNF_MAX_VLAN VLAN tags */
	VNF_PARSE_EXT_DEPTH = 4, /* more than VNF_MAX_EXT IPv6 extension headers */
	VNF_PARSE_TINY_FRAG = 5, /* first fragment without the whole L4 header */
	VNF_PARSE_FRAG_UNKNOWN = 6, /* non-first fragment, first one not seen */
};

#define VNF_FRAG_NONE 0
#define VNF_FRAG_FIRST 1 /* first fragment: L4 header present */
#define VNF_FRAG_LATER 2 /* non-first fragment: no L4 header */

struct vnf_pkt {
	struct vnf_tuple t;
	__u16 l3_off; /* offset of the IP header from data */
	__u16 l4_off; /* offset of the L4 header (valid if l4_valid and not LATER) */
	__u16 eth_proto; /* host order, after VLAN tags */
	__u8 vlan_depth;
	__u8 frag; /* VNF_FRAG_* */
	__u8 l4_valid; /* ports/type fields valid (LATER: taken from the first) */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 dscp; /* IPv4 TOS / IPv6 traffic class >> 2 */
	__u8 _pad;
	__u16 frag_off8; /* fragment offset in 8-byte units */
	__u32 frag_id; /* IPv4 / IPv6 fragment identification (fragments only) */
	__u16 l4_hlen; /* bytes of the L4 header the parser checked */
	__u16 _pad2;
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

/* Drop reason of a packet the parser could not fully parse (enum vnf_reason). */
static __always_inline __u32 vnf_parse_reason(int rc)
{
	switch (rc) {
	case VNF_PARSE_ENCAP_DEPTH:
		return VNF_R_ENCAP_DEPTH;
	case VNF_PARSE_EXT_DEPTH:
		return VNF_R_EXT_DEPTH;
	case VNF_PARSE_TINY_FRAG:
		return VNF_R_TINY_FRAGMENT;
	case VNF_PARSE_FRAG_UNKNOWN:
		return VNF_R_FRAG_UNKNOWN;
	}
	return VNF_R_MALFORMED;
}

/* Did the IP header itself parse (family, addresses, DSCP, l3_off valid),
 * even if what follows it could not be?  For functions that work on the IP
 * header only (TTL, DSCP counters); filtering never relies on it. */
static __always_inline int vnf_parse_has_l3(int rc)
{
	return rc == VNF_PARSE_OK || rc == VNF_PARSE_EXT_DEPTH ||
	       rc == VNF_PARSE_TINY_FRAG || rc == VNF_PARSE_FRAG_UNKNOWN;
}

/* L4 header at pos with len bytes of IP payload from pos on.  A header cut
 * short is a tiny fragment in a first fragment and malformed otherwise. */
static __always_inline int vnf_parse_l4(void *pos, void *data_end, __u32 len,
					struct vnf_pkt *p)
{
	int short_rc = p->frag == VNF_FRAG_FIRST ? VNF_PARSE_TINY_FRAG :
						   VNF_PARSE_MALFORMED;

	switch (p->t.proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = pos;
		__u32 hl;

		if ((void *)(th + 1) > data_end || len < sizeof(*th))
			return short_rc;
		if (th->doff < 5)
			return VNF_PARSE_MALFORMED;
		hl = th->doff * 4;
		if (hl > len)
			return short_rc;
		p->t.sport = bpf_ntohs(th->source);
		p->t.dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		p->l4_hlen = hl;
		p->l4_valid = 1;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = pos;
		__u32 ulen;

		if ((void *)(uh + 1) > data_end || len < sizeof(*uh))
			return short_rc;
		/* the UDP length covers the whole datagram: within the payload
		 * unless fragmented (0, an IPv6 jumbogram, is refused too) */
		ulen = bpf_ntohs(uh->len);
		if (ulen < sizeof(*uh) ||
		    (p->frag == VNF_FRAG_NONE && ulen > len))
			return VNF_PARSE_MALFORMED;
		p->t.sport = bpf_ntohs(uh->source);
		p->t.dport = bpf_ntohs(uh->dest);
		p->l4_hlen = sizeof(*uh);
		p->l4_valid = 1;
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		/* type, code, checksum, then identifier for echo */
		__u8 *ih = pos;
		__u8 type;

		if ((void *)(ih + 8) > data_end || len < 8)
			return short_rc;
		if ((p->t.proto == IPPROTO_ICMP) != (p->t.family == 4))
			break; /* ICMP in IPv6, ICMPv6 in IPv4: just a protocol */
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
		p->l4_hlen = 8;
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
	__u32 hlen, tot;
	__u16 frag_off;
	void *l4;

	if ((void *)(iph + 1) > data_end)
		return VNF_PARSE_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return VNF_PARSE_MALFORMED;
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen)
		return VNF_PARSE_MALFORMED;
	/* the datagram must be complete (link padding may follow it) */
	if ((void *)iph + tot > data_end)
		return VNF_PARSE_MALFORMED;
	l4 = (void *)iph + hlen;
	if (l4 > data_end)
		return VNF_PARSE_MALFORMED;

	p->t.family = 4;
	p->t.proto = iph->protocol;
	p->dscp = iph->tos >> 2;
	__builtin_memcpy(p->t.saddr, &iph->saddr, 4);
	__builtin_memcpy(p->t.daddr, &iph->daddr, 4);
	p->l4_off = l4 - data;

	frag_off = bpf_ntohs(iph->frag_off);
	if (frag_off & 0x3fff) {
		p->frag = (frag_off & 0x1fff) ? VNF_FRAG_LATER : VNF_FRAG_FIRST;
		p->frag_off8 = frag_off & 0x1fff;
		p->frag_id = bpf_ntohs(iph->id);
		/* no datagram ends beyond 65535 bytes (ping of death) */
		if ((__u32)p->frag_off8 * 8 + (tot - hlen) > 0xffff)
			return VNF_PARSE_MALFORMED;
		if (p->frag == VNF_FRAG_LATER)
			return VNF_PARSE_OK; /* ports: vnf_frag_track() */
	}
	return vnf_parse_l4(l4, data_end, tot - hlen, p);
}

static __always_inline int vnf_parse_ipv6(void *data, void *data_end,
					  struct ipv6hdr *ip6, struct vnf_pkt *p)
{
	void *pos = ip6 + 1;
	__u32 left; /* bytes of the payload after pos */
	__u8 nexthdr;
	int i;

	if (pos > data_end)
		return VNF_PARSE_MALFORMED;
	if (ip6->version != 6)
		return VNF_PARSE_MALFORMED;
	left = bpf_ntohs(ip6->payload_len);
	if (pos + left > data_end)
		return VNF_PARSE_MALFORMED;

	p->t.family = 6;
	p->dscp = ((ip6->priority << 4) | (ip6->flow_lbl[0] >> 4)) >> 2;
	__builtin_memcpy(p->t.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->t.daddr, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;

#pragma unroll
	for (i = 0; i < VNF_MAX_EXT; i++) {
		struct vnf_ipv6_opt *opt = pos;
		__u32 hl;

		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
		case IPPROTO_AH:
			if ((void *)(opt + 1) > data_end || left < sizeof(*opt))
				goto cut;
			if (nexthdr == IPPROTO_AH)
				hl = ((__u32)opt->hdrlen + 2) * 4;
			else
				hl = ((__u32)opt->hdrlen + 1) * 8;
			if (hl > left)
				goto cut;
			nexthdr = opt->nexthdr;
			pos += hl;
			left -= hl;
			break;
		case IPPROTO_FRAGMENT: {
			struct vnf_ipv6_frag *fh = pos;
			__u16 fo;

			if ((void *)(fh + 1) > data_end || left < sizeof(*fh))
				return VNF_PARSE_MALFORMED;
			if (p->frag != VNF_FRAG_NONE)
				return VNF_PARSE_MALFORMED; /* two fragment headers */
			fo = bpf_ntohs(fh->frag_off);
			nexthdr = fh->nexthdr;
			pos += sizeof(*fh);
			left -= sizeof(*fh);
			/* offset 0 without M: an atomic fragment, RFC 6946 */
			if (!(fo & 0xfff9))
				break;
			p->frag = (fo & 0xfff8) ? VNF_FRAG_LATER : VNF_FRAG_FIRST;
			p->frag_off8 = fo >> 3;
			p->frag_id = bpf_ntohl(fh->id);
			if ((__u32)p->frag_off8 * 8 + left > 0xffff)
				return VNF_PARSE_MALFORMED;
			if (p->frag == VNF_FRAG_LATER) {
				/* the rest is payload, not headers */
				p->t.proto = nexthdr;
				p->l4_off = pos - data;
				return VNF_PARSE_OK;
			}
			break;
		}
		default:
			/* upper layer, ESP (50) or no next header (59) */
			goto done;
		}
	}
	/* still an extension header after VNF_MAX_EXT: over the bound */
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return VNF_PARSE_EXT_DEPTH;
	}
done:
	if (pos > data_end)
		return VNF_PARSE_MALFORMED;
	p->t.proto = nexthdr;
	p->l4_off = pos - data;
	return vnf_parse_l4(pos, data_end, left, p);
cut:
	/* RFC 7112: a first fragment holds the whole header chain */
	return p->frag == VNF_FRAG_FIRST ? VNF_PARSE_TINY_FRAG :
					   VNF_PARSE_MALFORMED;
}

/* The IPv6 header at offset off of the frame and everything after it.
 *
 * A global (non-inlined) function: verified once with an unknown offset
 * instead of once per VLAN depth (each depth is a different constant offset,
 * which multiplied the extension-header walk by VNF_MAX_VLAN + 1 and took the
 * entry program to 750,000 verified instructions).  IPv4, cheap to verify,
 * stays inline: the common case pays no call. */
__attribute__((noinline)) int vnf_parse_l3v6(vnf_ctx_t *ctx, struct vnf_pkt *p,
					     __u32 off)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);

	if (!p)
		return VNF_PARSE_MALFORMED;
	/* at most 14 + 4 * VNF_MAX_VLAN bytes of link-layer headers */
	return vnf_parse_ipv6(data, data_end, data + (off & 0x3f), p);
}

static __always_inline int vnf_is_vlan(__u16 proto)
{
	return proto == ETH_P_8021Q || proto == ETH_P_8021AD ||
	       proto == VNF_ETH_P_QINQ_OLD;
}

/* Parse the packet in ctx into *p (zeroed first); fragments unresolved. */
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

		if (!vnf_is_vlan(proto))
			goto l3;
		if ((void *)(vh + 1) > data_end)
			return VNF_PARSE_MALFORMED;
		proto = bpf_ntohs(vh->proto);
		pos = vh + 1;
		p->vlan_depth++;
	}
	/* a tag beyond the bound: never non-IP, the kernel would strip it */
	if (vnf_is_vlan(proto))
		return VNF_PARSE_ENCAP_DEPTH;
l3:
	p->eth_proto = proto;
	p->l3_off = pos - data;

	if (proto == ETH_P_IP)
		return vnf_parse_ipv4(data, data_end, pos, p);
	if (proto == ETH_P_IPV6)
		return vnf_parse_l3v6(ctx, p, p->l3_off);
	return VNF_PARSE_NON_IP;
}

/* Fragment records: LRU hash "vnf_frags" (see vnf_shared.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VNF_FRAG_MAX);
	__type(key, struct vnf_frag_key);
	__type(value, struct vnf_frag_val);
} vnf_frags SEC(".maps");

/* A parsed fragment: the first records its datagram's ports, a later one
 * takes them (RFC 1858 / RFC 3128; design: docs/security.md). */
static __always_inline void vnf_frag_key_of(struct vnf_frag_key *k,
					    const struct vnf_pkt *p)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->id = p->frag_id;
	k->family = p->t.family;
	__builtin_memcpy(k->saddr, p->t.saddr, 16);
	__builtin_memcpy(k->daddr, p->t.daddr, 16);
	/* IPv4 keys on the protocol (RFC 791); in IPv6 only the first
	 * fragment's next header counts (RFC 8200 4.5) */
	if (p->t.family == 4)
		k->proto = p->t.proto;
}

static __always_inline int vnf_frag_track(struct vnf_pkt *p)
{
	struct vnf_frag_key k;
	struct vnf_frag_val *v;
	__u64 now = vnf_flow_clock();

	vnf_frag_key_of(&k, p);
	if (p->frag == VNF_FRAG_FIRST) {
		struct vnf_frag_val nv = { .seen_ns = now,
					   .sport = p->t.sport,
					   .dport = p->t.dport,
					   .l4_hlen = p->l4_hlen,
					   .proto = p->t.proto,
					   .l4_valid = p->l4_valid };

		bpf_map_update_elem(&vnf_frags, &k, &nv, BPF_ANY);
		return VNF_PARSE_OK;
	}
	v = bpf_map_lookup_elem(&vnf_frags, &k);
	if (!v || now - v->seen_ns > VNF_FRAG_TIMEOUT_NS)
		return VNF_PARSE_FRAG_UNKNOWN;
	/* rewriting the L4 header the verdict was taken on (RFC 3128) */
	if ((__u32)p->frag_off8 * 8 < v->l4_hlen)
		return VNF_PARSE_TINY_FRAG;
	p->t.proto = v->proto;
	p->t.sport = v->sport;
	p->t.dport = v->dport;
	p->l4_valid = v->l4_valid;
	return VNF_PARSE_OK;
}

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

/* Parse the packet in ctx into *p (zeroed first), fragments resolved
 * through vnf_frags.
 *
 * A global (non-inlined) function, like fw_port_seg: the verifier checks the
 * parser's branches (VLAN tags, IPv6 extension headers, L4 types) once, on
 * their own, instead of inside every path of every program that parses.
 * *p holds offsets and values only, never packet pointers, so callers
 * re-derive and bounds-check every header they touch. */
__attribute__((noinline)) int vnf_parse(vnf_ctx_t *ctx, struct vnf_pkt *p)
{
	int rc;

	if (!p)
		return VNF_PARSE_MALFORMED;
	rc = vnf_parse_inline(ctx, p);
	if (rc == VNF_PARSE_OK && p->frag != VNF_FRAG_NONE)
		rc = vnf_frag_track(p);
	return rc;
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
