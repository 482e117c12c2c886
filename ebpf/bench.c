/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench.c - reference programs for the chain benchmark (not part of a chain).
 *
 * bench_redirect is the ceiling a chain is compared with: one XDP hop that
 * redirects every frame to the interface in bench_port[0], nothing else.
 * bench_sink counts and drops what arrives at the far end (a veth needs an
 * XDP program on the peer of a redirect target, and counting in XDP is the
 * cheapest honest receiver).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_count SEC(".maps");

SEC("xdp")
int bench_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&bench_port, 0, XDP_DROP);
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&bench_count, &zero);

	if (n)
		(*n)++;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
