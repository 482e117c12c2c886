/* SPDX-License-Identifier: Apache-2.0 */
/*
 * csum.h - incremental Internet checksum updates (RFC 1624, eqn. 3):
 *     HC' = ~(~HC + ~m + m')
 * All values are taken exactly as they sit in the packet (network order);
 * one's complement arithmetic is byte-order independent.
 */
#ifndef VNF_CSUM_H
#define VNF_CSUM_H

#include <linux/types.h>

static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Replace one 16-bit word covered by *sum. */
static __always_inline void csum_replace2(__u16 *sum, __u16 old, __u16 new)
{
	__u32 s = (__u16)~*sum;

	s += (__u16)~old;
	s += new;
	*sum = ~csum_fold32(s);
}

/* Replace a 32-bit word (two 16-bit words) covered by *sum. */
static __always_inline void csum_replace4(__u16 *sum, __u32 old, __u32 new)
{
	__u32 s = (__u16)~*sum;

	s += (__u16)~(old & 0xffff);
	s += (__u16)~(old >> 16);
	s += new & 0xffff;
	s += new >> 16;
	*sum = ~csum_fold32(s);
}

/* UDP over IPv4: a zero checksum means "none" and must stay zero; a
 * computed zero is transmitted as 0xffff (RFC 768). */
static __always_inline void csum_replace4_udp(__u16 *sum, __u32 old,
					      __u32 new)
{
	if (*sum == 0)
		return;
	csum_replace4(sum, old, new);
	if (*sum == 0)
		*sum = 0xffff;
}

#endif /* VNF_CSUM_H */
