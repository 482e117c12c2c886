/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctx.h - hook abstraction so one function body compiles for XDP and TC.
 *
 * The attach-point file defines exactly one of VNF_HOOK_XDP / VNF_HOOK_TC
 * before including anything from lib/.  Bodies only use vnf_ctx_t and the
 * ctx_* helpers and VNF_ACT_* verdicts below.
 */
#ifndef VNF_CTX_H
#define VNF_CTX_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../include/vnf_shared.h"

/* Returned by a function body to continue with the next function. */
#define VNF_NEXT (-1)

#if defined(VNF_HOOK_XDP) == defined(VNF_HOOK_TC)
#error "define exactly one of VNF_HOOK_XDP or VNF_HOOK_TC"
#endif

#ifdef VNF_HOOK_XDP
typedef struct xdp_md vnf_ctx_t;

#define VNF_ACT_PASS XDP_PASS
#define VNF_ACT_DROP XDP_DROP

/* Redirect targets for the forwarder, key = instance id, value = ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} vnf_devmap SEC(".maps");

static __always_inline void *ctx_data(vnf_ctx_t *ctx)
{
	return (void *)(long)ctx->data;
}

static __always_inline void *ctx_data_end(vnf_ctx_t *ctx)
{
	return (void *)(long)ctx->data_end;
}

static __always_inline __u32 ctx_len(vnf_ctx_t *ctx)
{
	__u32 len = ctx->data_end - ctx->data;

	/* make the length a plain scalar here: otherwise clang may keep the
	 * 32-bit loads of the packet pointers alive and spill them, which the
	 * verifier refuses ("invalid size of register spill") */
	asm volatile("" : "+r"(len));
	return len;
}

static __always_inline __u32 ctx_ifindex(vnf_ctx_t *ctx)
{
	return ctx->ingress_ifindex;
}

/* Make the headers directly accessible; nothing to do for XDP. */
static __always_inline void ctx_prepare(vnf_ctx_t *ctx)
{
	(void)ctx;
}

static __always_inline int ctx_tx(vnf_ctx_t *ctx)
{
	(void)ctx;
	return XDP_TX;
}

static __always_inline int ctx_redirect(vnf_ctx_t *ctx, __u32 instance,
					__u32 ifindex)
{
	(void)ctx;
	(void)ifindex;
	return bpf_redirect_map(&vnf_devmap, instance, XDP_DROP);
}

/* Copy len bytes of the frame from offset off into buf. */
static __always_inline long ctx_load_bytes(vnf_ctx_t *ctx, __u32 off,
					   void *buf, __u32 len)
{
	return bpf_xdp_load_bytes(ctx, off, buf, len);
}

/* The VLAN tag the hook took out of the frame (none: XDP sees tags in it). */
static __always_inline __u32 ctx_vlan(vnf_ctx_t *ctx)
{
	(void)ctx;
	return 0;
}
#endif /* VNF_HOOK_XDP */

#ifdef VNF_HOOK_TC
typedef struct __sk_buff vnf_ctx_t;

#define VNF_ACT_PASS TC_ACT_OK
#define VNF_ACT_DROP TC_ACT_SHOT

static __always_inline void *ctx_data(vnf_ctx_t *ctx)
{
	return (void *)(long)ctx->data;
}

static __always_inline void *ctx_data_end(vnf_ctx_t *ctx)
{
	return (void *)(long)ctx->data_end;
}

static __always_inline __u32 ctx_len(vnf_ctx_t *ctx)
{
	return ctx->len;
}

static __always_inline __u32 ctx_ifindex(vnf_ctx_t *ctx)
{
	return ctx->ifindex;
}

/* Pull the whole packet into the linear area when it is not (GRO/fragged
 * skbs); afterwards data/data_end cover the whole packet.  The length must
 * be given: bpf_skb_pull_data(ctx, 0) only makes the linear head writable
 * (net/core/filter.c: len ?: skb_headlen(skb)), so a TCP segment whose
 * payload sits in page fragments stayed "truncated" and was dropped as
 * malformed. */
static __always_inline void ctx_prepare(vnf_ctx_t *ctx)
{
	if (ctx->data_end - ctx->data < ctx->len)
		bpf_skb_pull_data(ctx, ctx->len);
}

static __always_inline int ctx_tx(vnf_ctx_t *ctx)
{
	return bpf_redirect(ctx->ifindex, 0);
}

static __always_inline int ctx_redirect(vnf_ctx_t *ctx, __u32 instance,
					__u32 ifindex)
{
	(void)ctx;
	(void)instance;
	return bpf_redirect(ifindex, 0);
}

static __always_inline long ctx_load_bytes(vnf_ctx_t *ctx, __u32 off,
					   void *buf, __u32 len)
{
	return bpf_skb_load_bytes(ctx, off, buf, len);
}

/* The VLAN tag the device took out of the frame: present << 16 | TCI. */
static __always_inline __u32 ctx_vlan(vnf_ctx_t *ctx)
{
	return ctx->vlan_present ? (1u << 16) | (ctx->vlan_tci & 0xffff) : 0;
}
#endif /* VNF_HOOK_TC */

/* Clock of flow state (conntrack, NAT, LB affinity): idle timeouts are
 * seconds, so the coarse clock (CLOCK_MONOTONIC at tick resolution, a few
 * ms) is precise enough and far cheaper than bpf_ktime_get_ns(). */
static __always_inline __u64 vnf_flow_clock(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* Refresh a last-seen stamp; written only when the tick moved, so a busy
 * flow does not dirty its cache line on every packet. */
static __always_inline void vnf_touch(__u64 *last_seen_ns, __u64 now)
{
	if (*last_seen_ns != now)
		*last_seen_ns = now;
}

#endif /* VNF_CTX_H */
