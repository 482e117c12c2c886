/* SPDX-License-Identifier: Apache-2.0 */
/*
 * programs.h - the program set of an attach point: vnf_entry plus one
 * program per network function, identical for XDP and TC.
 *
 * The attach-point file defines VNF_HOOK_XDP or VNF_HOOK_TC (which selects
 * vnf_ctx_t in ctx.h) and VNF_PROG_SEC (the ELF section the loader expects:
 * "xdp" or "classifier"), then includes this file once.
 */
#ifndef VNF_PROGRAMS_H
#define VNF_PROGRAMS_H

#ifndef VNF_PROG_SEC
#error "define VNF_PROG_SEC before including programs.h"
#endif

#include "ctx.h"
#include "chain.h"
#include "../nf/firewall.h"
#include "../nf/forwarder.h"
#include "../nf/monitor.h"
#include "../nf/nat.h"
#include "../nf/lb.h"
#include "../nf/ratelimit.h"
#include "../nf/userspace.h"
#include "fastpath.h" /* the fast path itself, with every function's maps */

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
	case VNF_KIND_USERSPACE:
		return nf_userspace(ctx, s, instance, st);
	}
	s->reason = VNF_R_NO_CONFIG;
	return VNF_ACT_DROP;
}

SEC(VNF_PROG_SEC)
int vnf_entry(vnf_ctx_t *ctx)
{
	return chain_entry(ctx);
}

SEC(VNF_PROG_SEC)
int vnf_firewall(vnf_ctx_t *ctx)
{
	return chain_function(ctx, VNF_KIND_FIREWALL);
}

SEC(VNF_PROG_SEC)
int vnf_forwarder(vnf_ctx_t *ctx)
{
	return chain_function(ctx, VNF_KIND_FORWARDER);
}

SEC(VNF_PROG_SEC)
int vnf_monitor(vnf_ctx_t *ctx)
{
	return chain_function(ctx, VNF_KIND_MONITOR);
}

SEC(VNF_PROG_SEC)
int vnf_ratelimit(vnf_ctx_t *ctx)
{
	return chain_function(ctx, VNF_KIND_RATELIMIT);
}

SEC(VNF_PROG_SEC)
int vnf_nat(vnf_ctx_t *ctx)
{
	return chain_function(ctx, VNF_KIND_NAT);
}

SEC(VNF_PROG_SEC)
int vnf_lb(vnf_ctx_t *ctx)
{
	return chain_function(ctx, VNF_KIND_LB);
}

SEC(VNF_PROG_SEC)
int vnf_userspace(vnf_ctx_t *ctx)
{
	return chain_function(ctx, VNF_KIND_USERSPACE);
}

/* sidecar mode's TC egress program (records the pod's own flows) */
#include "egress.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#endif /* VNF_PROGRAMS_H */
