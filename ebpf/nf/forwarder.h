/* SPDX-License-Identifier: Apache-2.0 */
/*
 * forwarder.h - terminal function: optional MAC rewrite and TTL / hop-limit
 * decrement (IPv4 header checksum updated incrementally), then PASS to the
 * stack, TX out of the ingress interface, REDIRECT (XDP: devmap entry of
 * this instance; TC: bpf_redirect to the configured ifindex) or DROP.
 */
#ifndef VNF_NF_FORWARDER_H
#define VNF_NF_FORWARDER_H

#include "../lib/chain.h"
#include "../lib/csum.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_fwd_cfg);
} vnf_fwd_cfg SEC(".maps");

/* Decrement TTL/hop limit; returns 0, or -1 when the packet must die. */
static __always_inline int fwd_dec_ttl(vnf_ctx_t *ctx, struct vnf_scratch *s)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct vnf_pkt p;
	int rc = chain_parse(ctx, &p);

	if (rc == VNF_PARSE_NON_IP)
		return 0;
	/* the TTL needs the IP header only: what follows it is a filter's
	 * business (docs/security.md) */
	if (!vnf_parse_has_l3(rc)) {
		s->reason = vnf_parse_reason(rc);
		return -1;
	}
	/* re-derive the pointer: vnf_parse may not have left it in a reg */
	data = ctx_data(ctx);
	data_end = ctx_data_end(ctx);
	if (p.t.family == 4) {
		struct iphdr *iph = data + (p.l3_off & 0xff);
		__u16 old, new;

		if ((void *)(iph + 1) > data_end) {
			s->reason = VNF_R_MALFORMED;
			return -1;
		}
		if (iph->ttl <= 1) {
			s->reason = VNF_R_TTL_EXCEEDED;
			return -1;
		}
		old = *(__u16 *)&iph->ttl; /* ttl and protocol word */
		iph->ttl--;
		new = *(__u16 *)&iph->ttl;
		csum_replace2(&iph->check, old, new);
	} else {
		struct ipv6hdr *ip6 = data + (p.l3_off & 0xff);

		if ((void *)(ip6 + 1) > data_end) {
			s->reason = VNF_R_MALFORMED;
			return -1;
		}
		if (ip6->hop_limit <= 1) {
			s->reason = VNF_R_TTL_EXCEEDED;
			return -1;
		}
		ip6->hop_limit--;
	}
	return 0;
}

static __always_inline int nf_forwarder(vnf_ctx_t *ctx, struct vnf_scratch *s,
					__u32 inst, struct vnf_fn_stats *st)
{
	struct vnf_fwd_cfg *cfg = bpf_map_lookup_elem(&vnf_fwd_cfg, &inst);
	void *data, *data_end;
	struct ethhdr *eth;

	(void)st;
	if (!cfg) {
		s->reason = VNF_R_NO_CONFIG;
		return VNF_ACT_DROP;
	}
	if (cfg->mode == VNF_FWD_DROP) {
		s->reason = VNF_R_FWD_DROP;
		fp_note(FP_OP_COUNT, 0, 0, 0);
		return VNF_ACT_DROP;
	}
	if ((cfg->flags & VNF_FWD_F_DEC_TTL) && fwd_dec_ttl(ctx, s) < 0)
		return VNF_ACT_DROP;

	data = ctx_data(ctx);
	data_end = ctx_data_end(ctx);
	eth = data;
	if ((void *)(eth + 1) > data_end) {
		s->reason = VNF_R_MALFORMED;
		return VNF_ACT_DROP;
	}
	if (cfg->flags & VNF_FWD_F_SMAC)
		__builtin_memcpy(eth->h_source, cfg->smac, ETH_ALEN);
	if (cfg->flags & VNF_FWD_F_DMAC)
		__builtin_memcpy(eth->h_dest, cfg->dmac, ETH_ALEN);
	fp_note_fwd(cfg, inst);

	switch (cfg->mode) {
	case VNF_FWD_TX:
		return ctx_tx(ctx);
	case VNF_FWD_REDIRECT:
		return ctx_redirect(ctx, inst, cfg->ifindex);
	default:
		return VNF_ACT_PASS;
	}
}

#endif /* VNF_NF_FORWARDER_H */
