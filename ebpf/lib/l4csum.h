/* SPDX-License-Identifier: Apache-2.0 */
/*
 * l4csum.h - partial TCP/UDP checksums from senders with transmit checksum
 * offload (CHECKSUM_PARTIAL), made correct whichever way a packet leaves.
 *
 * A socket behind a veth with tx checksum offload (the kernel default) hands
 * over TCP/UDP packets whose checksum field holds only the folded
 * pseudo-header sum P; "hardware" would add the segment's sum later.  In an
 * skb the kernel remembers that (ip_summed), and finishes the checksum when
 * the packet leaves through a device without offload.  XDP sees bytes only:
 *   - a packet sent on with XDP_TX / XDP_REDIRECT in native mode leaves as
 *     an xdp_frame, the skb and its "finish me" state are gone, and the
 *     receiver sees a wrong checksum;
 *   - NAT/LB update checksums incrementally (RFC 1624), which is right for a
 *     complete checksum but has the wrong sign for a partial one.
 * So the entry completes a partial checksum in place before any function
 * runs (every function then sees a complete checksum), and the exit puts the
 * partial form back (the pseudo-header sum of the packet as it leaves) when
 * the skb survives: XDP_PASS, and every verdict in generic mode, where the
 * kernel still finishes the checksum from the field.  Native TX/REDIRECT
 * leave with the complete checksum.
 *
 * Detection: the field equals fold(P) and the segment does not verify as a
 * complete checksum.  A complete checksum that happens to equal fold(P) still
 * verifies, so it is never touched.  Only packets whose field equals fold(P)
 * pay for summing the segment.  Segments longer than VNF_CSUM_MAX_LEN
 * (jumbo frames) are left as they are.
 *
 * XDP only: a TC program sees the skb, whose partial state the kernel keeps
 * on every verdict.
 */
#ifndef VNF_L4CSUM_H
#define VNF_L4CSUM_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include "ctx.h"
#include "parse.h"

#define VNF_CSUM_MAX_LEN 4096

/* Per-interface flags written by the loader at attach (key = ifindex);
 * no entry = native XDP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} vnf_if_flags SEC(".maps");

/* What the exit must do with the L4 checksum (vnf_parsed.csum). */
enum vnf_csum_leave {
	VNF_CSUM_KEEP = 0, /* the packet arrived with a complete checksum */
	VNF_CSUM_PARTIAL_ON_PASS = 1, /* completed at entry; native XDP */
	VNF_CSUM_PARTIAL_ALWAYS = 2, /* completed at entry; generic XDP */
};

static __always_inline __u16 csum_fold64(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Folded one's complement sum of len (< 512) bytes at offset off, words in
 * memory order as the other checksum helpers take them; -1 if the bytes are
 * not all in the packet.  A global function: verified once. */
__attribute__((noinline)) int vnf_csum_small(vnf_ctx_t *ctx, __u32 off,
					     __u32 len)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	void *pos = data + (off & (VNF_CSUM_MAX_LEN * 2 - 1));
	__u64 sum = 0;

	/* bpf_csum_diff wants constant sizes, in multiples of 4 bytes */
#define VNF_CSUM_STEP(n)                                                  \
	if (len >= (n)) {                                                 \
		if (pos + (n) > data_end)                                 \
			return -1;                                        \
		sum += (__u32)bpf_csum_diff(NULL, 0, pos, (n), 0);        \
		pos += (n);                                               \
		len -= (n);                                               \
	}
	VNF_CSUM_STEP(256)
	VNF_CSUM_STEP(128)
	VNF_CSUM_STEP(64)
	VNF_CSUM_STEP(32)
	VNF_CSUM_STEP(16)
	VNF_CSUM_STEP(8)
	VNF_CSUM_STEP(4)
#undef VNF_CSUM_STEP
	if (len >= 2) {
		if (pos + 2 > data_end)
			return -1;
		sum += *(__u16 *)pos;
		pos += 2;
		len -= 2;
	}
	if (len) {
		if (pos + 1 > data_end)
			return -1;
		/* the odd byte is the high-order byte of a zero-padded word */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		sum += *(__u8 *)pos;
#else
		sum += (__u32)(*(__u8 *)pos) << 8;
#endif
	}
	return csum_fold64(sum);
}

/* Folded sum of the 512 bytes at offset off, or -1. */
__attribute__((noinline)) int vnf_csum_512(vnf_ctx_t *ctx, __u32 off)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	void *pos = data + (off & (VNF_CSUM_MAX_LEN * 2 - 1));

	if (pos + 512 > data_end)
		return -1;
	return csum_fold64((__u32)bpf_csum_diff(NULL, 0, pos, 512, 0));
}

/* Where a TCP/UDP packet's checksum field is (offset from data), its
 * pseudo-header sum and the segment length; 0, or -1 when there is none
 * (an IPv4 UDP checksum of 0 means "none"). */
static __always_inline int csum_locate(vnf_ctx_t *ctx, __u32 l3, __u32 l4,
				       __u8 family, __u8 proto, __u32 *field,
				       __u64 *pseudo, __u32 *seg_len)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	__u32 off, len;
	__u64 sum = 0;
	__u16 *check;
	int i;

	l3 &= 0xff;
	l4 &= 0x1ff;
	if (proto == IPPROTO_TCP)
		off = offsetof(struct tcphdr, check);
	else if (proto == IPPROTO_UDP)
		off = offsetof(struct udphdr, check);
	else
		return -1;

	if (family == 4) {
		struct iphdr *iph = data + l3;

		if ((void *)(iph + 1) > data_end)
			return -1;
		len = bpf_ntohs(iph->tot_len);
		if (len < l4 - l3)
			return -1;
		len -= l4 - l3;
		sum += (__u16)(iph->saddr & 0xffff) + (iph->saddr >> 16);
		sum += (__u16)(iph->daddr & 0xffff) + (iph->daddr >> 16);
	} else {
		struct ipv6hdr *ip6 = data + l3;
		__u16 *a;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		if (len < l4 - l3)
			return -1;
		len -= l4 - l3;
		a = (__u16 *)&ip6->saddr;
#pragma unroll
		for (i = 0; i < 16; i++) /* saddr and daddr are adjacent */
			sum += a[i];
	}
	sum += bpf_htons(proto) + bpf_htons(len);

	check = data + l4 + off;
	if ((void *)(check + 1) > data_end)
		return -1;
	if (proto == IPPROTO_UDP && family == 4 && *check == 0)
		return -1;
	*field = l4 + off;
	*pseudo = sum;
	*seg_len = len;
	return 0;
}

static __always_inline __u16 *csum_field(vnf_ctx_t *ctx, __u32 off)
{
	__u16 *f = ctx_data(ctx) + (off & 0x3ff);

	if ((void *)(f + 1) > ctx_data_end(ctx))
		return NULL;
	return f;
}

/* Entry: completes a partial checksum in place; returns the enum
 * vnf_csum_leave action for the exit. */
__attribute__((noinline)) int vnf_csum_complete(vnf_ctx_t *ctx,
						struct vnf_pkt *p)
{
	__u32 off, len, pos, key, *flags;
	__u64 pseudo, seg = 0;
	__u16 *field, folded;
	int i, r;

	if (!p || !p->l4_valid || p->frag != VNF_FRAG_NONE)
		return VNF_CSUM_KEEP;
	if (csum_locate(ctx, p->l3_off, p->l4_off, p->t.family, p->t.proto,
			&off, &pseudo, &len) < 0)
		return VNF_CSUM_KEEP;
	field = csum_field(ctx, off);
	if (!field || *field != csum_fold64(pseudo))
		return VNF_CSUM_KEEP; /* the common case: nothing more to read */
	if (len > VNF_CSUM_MAX_LEN)
		return VNF_CSUM_KEEP;
	pos = p->l4_off & 0x1ff;
	for (i = 0; i < VNF_CSUM_MAX_LEN / 512; i++) {
		if (len < 512)
			break;
		r = vnf_csum_512(ctx, pos);
		if (r < 0)
			return VNF_CSUM_KEEP;
		seg += r;
		pos += 512;
		len -= 512;
	}
	r = vnf_csum_small(ctx, pos, len & 511);
	if (r < 0)
		return VNF_CSUM_KEEP;
	seg += r;
	/* complete already (field == fold(P) by coincidence): it verifies */
	if (csum_fold64(seg + pseudo) == 0xffff)
		return VNF_CSUM_KEEP;
	/* partial: the field holds P, so the segment's sum is P + data */
	folded = ~csum_fold64(seg);
	if (p->t.proto == IPPROTO_UDP && folded == 0)
		folded = 0xffff;
	field = csum_field(ctx, off);
	if (!field)
		return VNF_CSUM_KEEP;
	*field = folded;
	key = ctx_ifindex(ctx);
	flags = bpf_map_lookup_elem(&vnf_if_flags, &key);
	if (flags && (*flags & VNF_IF_F_XDP_GENERIC))
		return VNF_CSUM_PARTIAL_ALWAYS;
	return VNF_CSUM_PARTIAL_ON_PASS;
}

/* Exit: puts the partial form back where the skb (and the kernel's promise
 * to finish the checksum) survives the verdict.  Headers keep their offsets
 * through the chain; addresses and ports may have been rewritten. */
__attribute__((noinline)) int vnf_csum_leave(vnf_ctx_t *ctx, __u32 how,
					     __u32 verdict, __u32 offsets,
					     __u32 family_proto)
{
	__u32 off, len;
	__u64 pseudo;
	__u16 *field;

	if (how == VNF_CSUM_KEEP || verdict == XDP_DROP ||
	    verdict == XDP_ABORTED)
		return 0;
	if (how == VNF_CSUM_PARTIAL_ON_PASS && verdict != XDP_PASS)
		return 0;
	if (csum_locate(ctx, offsets & 0xffff, offsets >> 16,
			family_proto >> 8, family_proto & 0xff, &off, &pseudo,
			&len) < 0)
		return 0;
	field = csum_field(ctx, off);
	if (field)
		*field = csum_fold64(pseudo);
	return 0;
}

#endif /* VNF_L4CSUM_H */
