/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xdp_chain.c - XDP attach point (native or generic XDP).
 *
 * vnf_entry classifies the packet and starts the chain of the active
 * generation; every other program runs one network function and tail-calls
 * the next position (see lib/chain.h).  User space places the function
 * programs into the prog array vnf_progs.
 */
#define VNF_HOOK_XDP 1

#include "lib/ctx.h"
#include "lib/chain.h"
#include "nf/firewall.h"
#include "nf/forwarder.h"
#include "nf/monitor.h"
#include "nf/nat.h"
#include "nf/lb.h"
#include "nf/ratelimit.h"

static __always_inline int vnf_dispatch(vnf_ctx_t *ctx, __u32 kind,
					struct vnf_scratch *s, __u32 instance,
					struct vnf_fn_stats *st)
{
	switch (kind) {
	case VNF_KIND_FIREWALL:
		return nf_firewall(ctx, s, instance, st);
	case VNF_KIND_FORWARDER:
		return nf_forwarder(ctx, s, instance, st);
	case VNF_KIND_MONITOR:
		return nf_monitor(ctx, s, instance, st);
	case VNF_KIND_RATELIMIT:
		return nf_ratelimit(ctx, s, instance, st);
	case VNF_KIND_NAT:
		return nf_nat(ctx, s, instance, st);
	case VNF_KIND_LB:
		return nf_lb(ctx, s, instance, st);
	}
	s->reason = VNF_R_NO_CONFIG;
	return VNF_ACT_DROP;
}

SEC("xdp")
int vnf_entry(struct xdp_md *ctx)
{
	return chain_entry(ctx);
}

SEC("xdp")
int vnf_firewall(struct xdp_md *ctx)
{
	return chain_function(ctx, VNF_KIND_FIREWALL);
}

SEC("xdp")
int vnf_forwarder(struct xdp_md *ctx)
{
	return chain_function(ctx, VNF_KIND_FORWARDER);
}

SEC("xdp")
int vnf_monitor(struct xdp_md *ctx)
{
	return chain_function(ctx, VNF_KIND_MONITOR);
}

SEC("xdp")
int vnf_ratelimit(struct xdp_md *ctx)
{
	return chain_function(ctx, VNF_KIND_RATELIMIT);
}

SEC("xdp")
int vnf_nat(struct xdp_md *ctx)
{
	return chain_function(ctx, VNF_KIND_NAT);
}

SEC("xdp")
int vnf_lb(struct xdp_md *ctx)
{
	return chain_function(ctx, VNF_KIND_LB);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
