/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tc_chain.c - TC (clsact ingress) attach point, fallback when XDP cannot attach.
 *
 * vnf_entry classifies the packet and starts the chain of the active
 * generation; every other program runs one network function and tail-calls
 * the next position (see lib/chain.h).  User space places the function
 * programs into the prog array vnf_progs.
 */
#define VNF_HOOK_TC 1

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

SEC("classifier")
int vnf_entry(struct __sk_buff *ctx)
{
	return chain_entry(ctx);
}

SEC("classifier")
int vnf_firewall(struct __sk_buff *ctx)
{
	return chain_function(ctx, VNF_KIND_FIREWALL);
}

SEC("classifier")
int vnf_forwarder(struct __sk_buff *ctx)
{
	return chain_function(ctx, VNF_KIND_FORWARDER);
}

SEC("classifier")
int vnf_monitor(struct __sk_buff *ctx)
{
	return chain_function(ctx, VNF_KIND_MONITOR);
}

SEC("classifier")
int vnf_ratelimit(struct __sk_buff *ctx)
{
	return chain_function(ctx, VNF_KIND_RATELIMIT);
}

SEC("classifier")
int vnf_nat(struct __sk_buff *ctx)
{
	return chain_function(ctx, VNF_KIND_NAT);
}

SEC("classifier")
int vnf_lb(struct __sk_buff *ctx)
{
	return chain_function(ctx, VNF_KIND_LB);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
