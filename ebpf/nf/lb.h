/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb.h - L4 load balancer (TCP/UDP, IPv4/IPv6) by destination NAT.
 *
 * A new flow to the VIP[:port] picks a backend from the instance's Maglev
 * lookup table (vnf_lb_maglev, filled by user space) at
 * table_off + nat_hash(5-tuple) % table_size and is DNATed to it (the
 * tables of all instances share the slot pool vnf_lb_maglev; user space
 * builds them with the backends' weights).  The choice is kept
 * in vnf_nat_ct (LRU) together with the reverse translation for the replies,
 * so established flows keep their backend (flow affinity) when the backend
 * set or table changes; Maglev keeps the remapping of new flows minimal.
 */
#ifndef VNF_NF_LB_H
#define VNF_NF_LB_H

#include "nat.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES);
	__type(key, __u32);
	__type(value, struct vnf_lb_cfg);
} vnf_lb_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_MAX_INSTANCES * VNF_LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct vnf_lb_backend);
} vnf_lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VNF_LB_POOL);
	__type(key, __u32);
	__type(value, __u32);
} vnf_lb_maglev SEC(".maps");

static __always_inline int nf_lb(vnf_ctx_t *ctx, struct vnf_scratch *s,
				 __u32 inst, struct vnf_fn_stats *st)
{
	struct vnf_lb_cfg *cfg = bpf_map_lookup_elem(&vnf_lb_cfg, &inst);
	/* flows are state: keyed by the state id, which survives chain updates */
	struct vnf_nat_key fk = { .instance = s->state };
	struct vnf_nat_key rk = { .instance = s->state };
	struct vnf_nat_val fv = {}, rv = {};
	struct vnf_lb_backend *be;
	struct vnf_nat_val *v;
	struct vnf_pkt p;
	__u32 idx, *bi;
	__u64 now;

	if (!cfg || !cfg->family) {
		s->reason = VNF_R_NO_CONFIG;
		return VNF_ACT_DROP;
	}
	if (chain_parse(ctx, &p) != VNF_PARSE_OK || !p.l4_valid ||
	    p.frag != VNF_FRAG_NONE ||
	    (p.t.proto != IPPROTO_TCP && p.t.proto != IPPROTO_UDP))
		return VNF_NEXT;

	now = vnf_flow_clock();
	fk.t = p.t;
	v = bpf_map_lookup_elem(&vnf_nat_ct, &fk);
	if (v && (!cfg->affinity_timeout_ns ||
		  now - v->last_seen_ns <= cfg->affinity_timeout_ns)) {
		vnf_touch(&v->last_seen_ns, now);
		st->aux++;
		nat_rewrite(ctx, &p, v->rewrite_src, v->addr, v->port);
		fp_note(FP_OP_COUNT, 0, 0, cfg->affinity_timeout_ns);
		return VNF_NEXT;
	}

	if (p.t.family != cfg->family || !nat_addr_eq(p.t.daddr, cfg->vip) ||
	    (cfg->proto && p.t.proto != cfg->proto) ||
	    (cfg->vip_port && p.t.dport != cfg->vip_port)) {
		/* not for the VIP: until a translation for the tuple appears */
		fp_note(FP_OP_COUNT, 0, FP_F_MISS_DEP, 0);
		return VNF_NEXT;
	}

	if (!cfg->table_size) {
		s->reason = VNF_R_LB_NO_BACKEND;
		return VNF_ACT_DROP;
	}
	idx = cfg->table_off + nat_hash(&p.t) % cfg->table_size;
	bi = bpf_map_lookup_elem(&vnf_lb_maglev, &idx);
	if (!bi || *bi >= cfg->nr_backends || *bi >= VNF_LB_MAX_BACKENDS) {
		s->reason = VNF_R_LB_NO_BACKEND;
		return VNF_ACT_DROP;
	}
	idx = inst * VNF_LB_MAX_BACKENDS + *bi;
	be = bpf_map_lookup_elem(&vnf_lb_backends, &idx);
	if (!be) {
		s->reason = VNF_R_LB_NO_BACKEND;
		return VNF_ACT_DROP;
	}

	fv.last_seen_ns = now;
	__builtin_memcpy(fv.addr, be->addr, 16);
	fv.port = be->port ? be->port : p.t.dport;
	fv.rewrite_src = 0;
	/* the backend's reply arrives as backend:port -> client */
	rv.last_seen_ns = now;
	vnf_tuple_reverse(&rk.t, &p.t);
	__builtin_memcpy(rk.t.saddr, be->addr, 16);
	rk.t.sport = fv.port;
	__builtin_memcpy(rv.addr, p.t.daddr, 16);
	rv.port = p.t.dport;
	rv.rewrite_src = 1;
	bpf_map_update_elem(&vnf_nat_ct, &rk, &rv, BPF_ANY);
	bpf_map_update_elem(&vnf_nat_ct, &fk, &fv, BPF_ANY);
	s->new_flow = 1;
	nat_rewrite(ctx, &p, 0, fv.addr, fv.port);
	return VNF_NEXT;
}

#endif /* VNF_NF_LB_H */
