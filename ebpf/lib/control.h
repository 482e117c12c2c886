/* SPDX-License-Identifier: Apache-2.0 */
/*
 * control.h - the chain never cuts its own control plane.
 *
 * The kubelet probes the sidecar's /readyz and /healthz on its metrics port
 * and the operator dials its gRPC port, both over TCP to the pod's own
 * addresses.  A chain that drops them (a default-deny firewall, a rate
 * limiter, a classifier that sends everything through the chain) would take
 * the pod out of service and the operator out of reach.  So the entry passes
 * such packets before the classifier, whatever the chain says:
 *
 *   an IPv4/IPv6 packet, fully parsed, not a fragment, TCP, whose
 *   (destination address, destination port) is one of the endpoints the
 *   daemon wrote into vnf_ctl_endpoints: an address of the pod's network
 *   namespace on which one of the daemon's own TCP listeners (gRPC,
 *   metrics) accepts connections.
 *
 * Nothing else: not UDP, not other ports of the pod, not traffic the pod
 * forwards to other hosts (its destination is not the pod), not the
 * connections the pod opens.  Replies (the sidecar's SYN-ACK and data) leave
 * by the interface's egress, where the chain has no hook (XDP and TC
 * ingress only), so they never meet the chain.
 *
 * Cost for other packets: one array lookup (inlined by the verifier) and a
 * few compares; only TCP to one of the listed ports reaches the hash lookup.
 * Passes are counted in vnf_ctl_stats (not per generation, never zeroed).
 *
 * The structs below are shared with Rust (cnf-dataplane/src/engine/control.rs
 * mirrors them and asserts the same sizes).
 */
#ifndef VNF_CONTROL_H
#define VNF_CONTROL_H

#include "ctx.h"
#include "parse.h"

#define VNF_CTL_MAX_PORTS 4 /* distinct listener ports */
#define VNF_CTL_MAX_ENDPOINTS 64 /* (address, port) pairs */

/* Array map "vnf_ctl_cfg", one entry: the ports of vnf_ctl_endpoints, a
 * cheap first test before the hash lookup.  Host order, 0 = unused. */
struct vnf_ctl_cfg {
	__u16 ports[VNF_CTL_MAX_PORTS];
};
_Static_assert(sizeof(struct vnf_ctl_cfg) == 8, "vnf_ctl_cfg size");

/* Hash "vnf_ctl_endpoints": a TCP endpoint of the daemon on an address of
 * the pod.  Address in network order (IPv4 in the first 4 bytes), port in
 * host order. */
struct vnf_ctl_key {
	__u8 family; /* 4 or 6 */
	__u8 _pad;
	__u16 port;
	__u8 addr[16];
};
_Static_assert(sizeof(struct vnf_ctl_key) == 20, "vnf_ctl_key size");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vnf_ctl_cfg);
} vnf_ctl_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VNF_CTL_MAX_ENDPOINTS);
	__type(key, struct vnf_ctl_key);
	__type(value, __u32);
} vnf_ctl_endpoints SEC(".maps");

/* Packets passed as control-plane traffic (per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} vnf_ctl_stats SEC(".maps");

/* Is the parsed packet TCP to one of the daemon's own endpoints?  Counts it
 * when it is. */
static __always_inline int vnf_control_plane(const struct vnf_pkt *p,
					     int parse_rc)
{
	struct vnf_ctl_key k = {};
	struct vnf_ctl_cfg *cfg;
	__u32 zero = 0;
	__u64 *n;
	int i, hit = 0;

	if (parse_rc != VNF_PARSE_OK || p->t.proto != IPPROTO_TCP ||
	    !p->l4_valid || p->frag != VNF_FRAG_NONE)
		return 0;
	cfg = bpf_map_lookup_elem(&vnf_ctl_cfg, &zero);
	if (!cfg)
		return 0;
#pragma unroll
	for (i = 0; i < VNF_CTL_MAX_PORTS; i++)
		if (cfg->ports[i] && cfg->ports[i] == p->t.dport)
			hit = 1;
	if (!hit)
		return 0;
	k.family = p->t.family;
	k.port = p->t.dport;
	__builtin_memcpy(k.addr, p->t.daddr, 16);
	if (!bpf_map_lookup_elem(&vnf_ctl_endpoints, &k))
		return 0;
	n = bpf_map_lookup_elem(&vnf_ctl_stats, &zero);
	if (n)
		(*n)++;
	return 1;
}

#endif /* VNF_CONTROL_H */
