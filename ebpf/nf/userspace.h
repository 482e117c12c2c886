/* SPDX-License-Identifier: Apache-2.0 */
/*
 * userspace.h - hand-off to the user-space tier.
 *
 * The packet leaves the kernel chain through the AF_XDP socket that the
 * user-space tier registered for the packet's receive queue in vnf_xsks
 * (an XSKMAP, key = rx queue index).  The tier runs the chain's user-space
 * functions and transmits the result itself.  A queue without a socket
 * drops the packet with reason VNF_R_NO_XSK (counted, never a silent pass
 * around functions the chain asked for).
 *
 * TC cannot hand packets to AF_XDP: under TC the function drops with the
 * same reason (the API refuses user-space functions behind TC, so this is
 * only reached by a misconfiguration).
 */
#ifndef VNF_NF_USERSPACE_H
#define VNF_NF_USERSPACE_H

#include "../lib/chain.h"

#ifdef VNF_HOOK_XDP
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, VNF_MAX_XSK_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} vnf_xsks SEC(".maps");
#endif

static __always_inline int nf_userspace(vnf_ctx_t *ctx, struct vnf_scratch *s,
					__u32 inst, struct vnf_fn_stats *st)
{
	(void)inst;
	(void)st;
#ifdef VNF_HOOK_XDP
	if (bpf_redirect_map(&vnf_xsks, ctx->rx_queue_index, XDP_DROP) ==
	    XDP_REDIRECT)
		return XDP_REDIRECT;
#else
	(void)ctx;
#endif
	s->reason = VNF_R_NO_XSK;
	return VNF_ACT_DROP;
}

#endif /* VNF_NF_USERSPACE_H */
