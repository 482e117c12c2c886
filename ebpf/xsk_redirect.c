/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xsk_redirect.c - standalone XDP program of the user-space tier's tests and
 * benchmarks: every frame goes to the AF_XDP socket registered in the XSKMAP
 * slot of its receive queue (ctx->rx_queue_index); frames of a queue without
 * a socket pass to the kernel stack.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define XSK_MAX_QUEUES 64

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XSK_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

SEC("xdp")
int xsk_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
