/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pktgen.h - the pktgen header at the start of every pktgen UDP payload, as
 * the XDP programs of pktgen_sink.c and pktgen_live.c see it. The wire format
 * is defined by pktgen/src/payload.rs (all fields little-endian; the BPF
 * target has the host's byte order, so native loads read them on x86 and
 * arm64).
 */
#ifndef PKTGEN_H
#define PKTGEN_H

#include <linux/types.h>

struct pktgen_hdr {
	__u32 magic;     /* "BVN1"; its value is set by user space (pktgen_magic) */
	__u32 stream_id;
	__u64 seq;
	__u64 tx_ns;
};

#define PKTGEN_SEQ_OFF 8
#define PKTGEN_TX_OFF 16

/*
 * The live-frames generator's configuration (pktgen_live.c, written by
 * pktgen/src/xdp_live.rs): the template's Ethernet + IPv4 + UDP headers,
 * restored on every frame, and the flow pattern: frame n carries source port
 * sport + n % flows (host order; flows 0 = not configured, the program drops).
 */
#define PKTGEN_LIVE_HDR (14 + 20 + 8)

struct pktgen_live_cfg {
	__u8 hdr[PKTGEN_LIVE_HDR];
	__u16 flows;
	__u16 sport;
};

_Static_assert(sizeof(struct pktgen_live_cfg) == 46, "live cfg is 46 bytes");

_Static_assert(sizeof(struct pktgen_hdr) == 24, "pktgen header is 24 bytes");
_Static_assert(__builtin_offsetof(struct pktgen_hdr, seq) == PKTGEN_SEQ_OFF, "seq offset");
_Static_assert(__builtin_offsetof(struct pktgen_hdr, tx_ns) == PKTGEN_TX_OFF, "tx_ns offset");

#endif
