/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench.c - reference programs for the chain benchmark (not part of a chain).
 *
 * bench_redirect is the ceiling a chain is compared with: one XDP hop that
 * redirects every frame to the interface in bench_port[0], nothing else.
 * bench_sink counts and drops what arrives at the far end (a veth needs an
 * XDP program on the peer of a redirect target, and counting in XDP is the
 * cheapest honest receiver).
 *
 * bench_fw_linear and bench_fw_tss are the alternative firewall classifiers
 * the aggregated bit vectors of nf/firewall.h are measured against
 * (docs/architecture.md, "Firewall classifier"), on IPv4 TCP/UDP only:
 *   linear  first matching rule of an array, one bpf_loop() step per rule;
 *   tss     tuple-space search (Srinivasan et al., SIGCOMM 1999): one hash
 *           table per distinct mask tuple (prefix lengths, exact-or-any
 *           protocol and ports), every tuple probed, lowest priority kept.
 * User space (examples/chain-bench.rs) fills the tables.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

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

#define BENCH_FW_MAX 10240
#define BENCH_TSS_MAX 64

/* One rule of the linear classifier; addresses and masks in network order,
 * proto 0 = any, port ranges inclusive (host order). */
struct bench_rule {
	__u32 saddr, smask, daddr, dmask;
	__u16 sp_lo, sp_hi, dp_lo, dp_hi;
	__u8 proto, action; /* action: 0 allow, 1 deny */
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BENCH_FW_MAX);
	__type(key, __u32);
	__type(value, struct bench_rule);
} bench_fw_rules SEC(".maps");

/* [0] = rules of the linear classifier, [1] = tuples of the TSS one,
 * [2] = default action */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u32);
} bench_fw_n SEC(".maps");

/* A TSS tuple: the masks every rule of its table shares. */
struct bench_tuple {
	__u32 smask, dmask;
	__u16 spmask, dpmask;
	__u8 protomask;
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BENCH_TSS_MAX);
	__type(key, __u32);
	__type(value, struct bench_tuple);
} bench_tss_tuples SEC(".maps");

struct bench_tss_key {
	__u32 tuple;
	__u32 saddr, daddr;
	__u16 sport, dport;
	__u8 proto;
	__u8 _pad[3];
};

struct bench_tss_val {
	__u32 prio;
	__u32 action;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BENCH_FW_MAX);
	__type(key, struct bench_tss_key);
	__type(value, struct bench_tss_val);
} bench_tss_rules SEC(".maps");

struct bench_pkt {
	__u32 saddr, daddr;
	__u16 sport, dport;
	__u8 proto;
	__s32 action; /* of the best match so far, -1 none */
	__u32 prio;
};

/* IPv4 TCP/UDP without options or VLAN tags (the benchmark's probe). */
static __always_inline int bench_parse(struct xdp_md *ctx, struct bench_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u16 *ports = (void *)(ip + 1);

	if ((void *)(ports + 2) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->ihl != 5)
		return -1;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->sport = bpf_ntohs(ports[0]);
	p->dport = bpf_ntohs(ports[1]);
	p->action = -1;
	p->prio = ~0u;
	return 0;
}

static __always_inline int bench_verdict(struct bench_pkt *p)
{
	__u32 k = 2;
	__u32 *def = bpf_map_lookup_elem(&bench_fw_n, &k);
	__s32 a = p->action >= 0 ? p->action : (def ? (__s32)*def : 1);

	return a == 0 ? XDP_PASS : XDP_DROP;
}

static long bench_linear_step(__u64 i, void *data)
{
	struct bench_pkt *p = data;
	__u32 k = (__u32)i;
	struct bench_rule *r = bpf_map_lookup_elem(&bench_fw_rules, &k);

	if (!r)
		return 1;
	if ((p->saddr & r->smask) != r->saddr ||
	    (p->daddr & r->dmask) != r->daddr ||
	    (r->proto && r->proto != p->proto) || p->sport < r->sp_lo ||
	    p->sport > r->sp_hi || p->dport < r->dp_lo || p->dport > r->dp_hi)
		return 0;
	p->action = r->action;
	return 1;
}

SEC("xdp")
int bench_fw_linear(struct xdp_md *ctx)
{
	struct bench_pkt p;
	__u32 k = 0;
	__u32 *n = bpf_map_lookup_elem(&bench_fw_n, &k);

	if (!n || bench_parse(ctx, &p))
		return XDP_DROP;
	bpf_loop(*n, bench_linear_step, &p, 0);
	return bench_verdict(&p);
}

static long bench_tss_step(__u64 i, void *data)
{
	struct bench_pkt *p = data;
	__u32 k = (__u32)i;
	struct bench_tuple *t = bpf_map_lookup_elem(&bench_tss_tuples, &k);
	struct bench_tss_key key = {};
	struct bench_tss_val *v;

	if (!t)
		return 1;
	key.tuple = k;
	key.saddr = p->saddr & t->smask;
	key.daddr = p->daddr & t->dmask;
	key.sport = p->sport & t->spmask;
	key.dport = p->dport & t->dpmask;
	key.proto = p->proto & t->protomask;
	v = bpf_map_lookup_elem(&bench_tss_rules, &key);
	if (v && v->prio < p->prio) {
		p->prio = v->prio;
		p->action = (__s32)v->action;
	}
	return 0;
}

SEC("xdp")
int bench_fw_tss(struct xdp_md *ctx)
{
	struct bench_pkt p;
	__u32 k = 1;
	__u32 *n = bpf_map_lookup_elem(&bench_fw_n, &k);

	if (!n || bench_parse(ctx, &p))
		return XDP_DROP;
	bpf_loop(*n, bench_tss_step, &p, 0);
	return bench_verdict(&p);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
