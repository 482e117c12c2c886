/* SPDX-License-Identifier: Apache-2.0 */
/*
 * egress.h - vnf_egress, the TC egress program of sidecar mode.
 *
 * In sidecar mode (spec.target) the chain runs on the pod's own eth0, on
 * ingress (XDP, or TC ingress).  What the pod itself sends leaves by the
 * interface's egress, where the chain has no hook, so a stateful firewall
 * never saw the flows the pod opens (DNS, calls to other services) and a
 * default-deny policy dropped their replies.  vnf_egress is attached to the
 * same interface's TC egress and *records*: for every firewall with
 * conntrack in the active generation it writes the pod's outbound flow into
 * vnf_ct under the firewall's state id with vnf_ct_key._pad = VNF_CT_POD, the
 * tuple as the pod sent it.  The firewall (nf/firewall.h) admits an inbound
 * packet on such an entry only when the packet is the entry's *reply* (its
 * tuple reversed): a pod-opened flow admits its replies and nothing else, and
 * an inbound new flow the policy denies is still dropped (docs/security.md).
 *
 * What opens an entry: a UDP datagram, a TCP SYN without ACK (a connect()),
 * both fully parsed (Ethernet without VLAN tag: the pod's eth0; IPv4, or
 * IPv6 without extension headers), not a non-first fragment, whose reply
 * the generation's classifier would send through the chain.  A TCP segment of
 * a flow the firewall tracks because it came *in* (the pod answering a
 * client) opens nothing, it only refreshes the inbound entry; so a tightened
 * policy that removed an inbound flow is not undone by the pod's next
 * segment.  Other outbound packets refresh an existing pod entry and pass.
 *
 * Translations.  A NAT or load balancer on ingress (a DNAT port mapping
 * to the pod, a VIP whose backend is the pod) translated the inbound packets
 * of a flow; the pod's replies leave by egress and would show the client the
 * untranslated source.  vnf_egress walks the generation's functions in
 * reverse order, as a reply runs the chain (lib/chain.h): a NAT/LB whose
 * vnf_nat_ct holds the entry for the packet's tuple (the reply entry it
 * wrote on ingress) rewrites it back, with the kernel's checksum helpers;
 * a firewall further up the chain then sees the tuple as it saw the flow.
 *
 * vnf_egress never drops: every packet leaves with TC_ACT_OK (the pod's
 * replies to the kubelet's probes and the operator's gRPC included); it
 * only rewrites the replies of translated flows.  It reads the active
 * generation once per packet, like the entry, so it follows live updates: a
 * function added, removed, or a firewall switched to stateless changes what
 * it does on the next packet.
 *
 * It is written against struct __sk_buff directly (bpf_skb_load_bytes, no
 * packet pointers), so the same program compiles into the XDP object, where
 * vnf_ctx_t is the XDP context, and shares that object's maps.
 */
#ifndef VNF_EGRESS_H
#define VNF_EGRESS_H

#include "chain.h"
#include "../nf/firewall.h"
#include "../nf/nat.h"

#define VNF_EGRESS_OPEN 1 /* the packet may open a pod entry */

/* The tuple of an outbound frame as vnf_parse would build it (family,
 * addresses in the first 4 or 16 bytes, host-order ports, zero padding);
 * < 0 when the frame is not plain Ethernet + IPv4/IPv6 + TCP/UDP. */
static __always_inline int egress_parse(struct __sk_buff *skb,
					struct vnf_tuple *t, __u32 *open,
					__u32 *l4_off)
{
	__u16 eth_proto, ports[2];
	__u32 l4;
	__u8 tcp_flags = 0;

	__builtin_memset(t, 0, sizeof(*t));
	if (bpf_skb_load_bytes(skb, 12, &eth_proto, 2) < 0)
		return -1;
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 14, &ip, sizeof(ip)) < 0)
			return -1;
		if (ip.version != 4 || ip.ihl < 5)
			return -1;
		/* a non-first fragment carries no ports */
		if (ip.frag_off & bpf_htons(0x1fff))
			return -1;
		t->family = 4;
		t->proto = ip.protocol;
		__builtin_memcpy(t->saddr, &ip.saddr, 4);
		__builtin_memcpy(t->daddr, &ip.daddr, 4);
		l4 = 14 + (__u32)ip.ihl * 4;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 14, &ip6, sizeof(ip6)) < 0)
			return -1;
		t->family = 6;
		t->proto = ip6.nexthdr; /* extension headers: not TCP/UDP below */
		__builtin_memcpy(t->saddr, &ip6.saddr, 16);
		__builtin_memcpy(t->daddr, &ip6.daddr, 16);
		l4 = 14 + sizeof(ip6);
	} else {
		return -1;
	}
	if (t->proto != IPPROTO_TCP && t->proto != IPPROTO_UDP)
		return -1;
	if (bpf_skb_load_bytes(skb, l4 & 0xff, ports, sizeof(ports)) < 0)
		return -1;
	t->sport = bpf_ntohs(ports[0]);
	t->dport = bpf_ntohs(ports[1]);
	*l4_off = l4 & 0xff;
	if (t->proto == IPPROTO_UDP) {
		*open = VNF_EGRESS_OPEN;
		return 0;
	}
	/* TCP flags: byte 13 of the header; SYN 0x02, ACK 0x10 */
	if (bpf_skb_load_bytes(skb, (l4 & 0xff) + 13, &tcp_flags, 1) < 0)
		return -1;
	*open = (tcp_flags & 0x12) == 0x02 ? VNF_EGRESS_OPEN : 0;
	return 0;
}

/* Records (or refreshes) the outbound flow t in firewall state `state`. */
static __always_inline void egress_record(__u32 state,
					  const struct vnf_fw_cfg *cfg,
					  const struct vnf_tuple *t, __u32 open)
{
	struct vnf_ct_key k = { .instance = state };
	struct vnf_ct_val *v;
	__u64 now = vnf_flow_clock();

	/* a flow that came in: the pod's packet is its reply */
	vnf_tuple_reverse(&k.t, t);
	v = bpf_map_lookup_elem(&vnf_ct, &k);
	if (v) {
		vnf_touch(&v->last_seen_ns, now);
		return;
	}
	k._pad = VNF_CT_POD;
	k.t = *t;
	v = bpf_map_lookup_elem(&vnf_ct, &k);
	if (v) {
		vnf_touch(&v->last_seen_ns, now);
		return;
	}
	if (open) {
		struct vnf_ct_val nv = { .last_seen_ns = now,
					 .packets = 0,
					 .version = cfg->version };

		bpf_map_update_elem(&vnf_ct, &k, &nv, BPF_ANY);
		/* the flow's replies now pass: cached verdicts that relied on
		 * its absence are stale (fastpath.h) */
		fp_flows_changed();
	}
}

/* Rewrites the source (src) or destination address and port of the
 * outbound packet to addr:port with the kernel's checksum helpers, which
 * also handle CHECKSUM_PARTIAL skbs (the pod's stack may leave the L4 sum
 * to the device) and a zero UDP-over-IPv4 checksum (BPF_F_MARK_MANGLED_0);
 * t follows the rewrite.  l4 <= 255 (egress_parse). */
static __always_inline void egress_rewrite(struct __sk_buff *skb,
					   struct vnf_tuple *t, __u32 l4,
					   __u32 src, const __u8 *addr,
					   __u16 port)
{
	__u32 udp = t->proto == IPPROTO_UDP;
	__u32 csum_off = l4 + (udp ? 6 : 16);
	__u64 mangled = udp ? BPF_F_MARK_MANGLED_0 : 0;
	__u8 *old_addr = src ? t->saddr : t->daddr;
	__be16 old_port = bpf_htons(src ? t->sport : t->dport);
	__be16 new_port = bpf_htons(port);
	__u32 i;

	if (t->family == 4) {
		__be32 from, to;
		__u32 at = 14 + (src ? 12 : 16);

		__builtin_memcpy(&from, old_addr, 4);
		__builtin_memcpy(&to, addr, 4);
		bpf_l4_csum_replace(skb, csum_off, from, to,
				    BPF_F_PSEUDO_HDR | mangled | 4);
		bpf_l3_csum_replace(skb, 14 + 10, from, to, 4);
		bpf_skb_store_bytes(skb, at, &to, 4, 0);
	} else {
		__u32 at = 14 + (src ? 8 : 24);

#pragma unroll
		for (i = 0; i < 4; i++) {
			__be32 from, to;

			__builtin_memcpy(&from, old_addr + 4 * i, 4);
			__builtin_memcpy(&to, addr + 4 * i, 4);
			bpf_l4_csum_replace(skb, csum_off, from, to,
					    BPF_F_PSEUDO_HDR | mangled | 4);
		}
		bpf_skb_store_bytes(skb, at, addr, 16, 0);
	}
	bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | 2);
	bpf_skb_store_bytes(skb, l4 + (src ? 0 : 2), &new_port, 2, 0);
	if (t->family == 4)
		__builtin_memcpy(old_addr, addr, 4);
	else
		__builtin_memcpy(old_addr, addr, 16);
	if (src)
		t->sport = port;
	else
		t->dport = port;
}

/* The reply of a flow a NAT or load balancer (state `state`) translated on
 * ingress: undo the translation as the chain's reply path does (the entry
 * keyed by the reply tuple as it leaves the pod, vnf_nat_ct).  Returns 1
 * when the packet was translated.
 *
 * A global (non-inlined) function, like fw_port_seg: the verifier checks it
 * once, not once per position of the loop that calls it. */
__attribute__((noinline)) int egress_translate(struct __sk_buff *skb,
					       __u32 state,
					       struct vnf_tuple *t, __u32 l4)
{
	struct vnf_nat_key k = { .instance = state };
	struct vnf_nat_val *v;

	if (!t || l4 > 0xff)
		return 0;
	k.t = *t;
	v = bpf_map_lookup_elem(&vnf_nat_ct, &k);
	if (!v)
		return 0;
	vnf_touch(&v->last_seen_ns, vnf_flow_clock());
	egress_rewrite(skb, t, l4, v->rewrite_src, v->addr, v->port);
	return 1;
}

SEC("classifier")
int vnf_egress(struct __sk_buff *skb)
{
	struct vnf_gen_cfg *gc;
	struct vnf_tuple t;
	struct vnf_pkt rp;
	__u32 zero = 0, gen, open = 0, l4 = 0, j;
	__u32 *active;

	active = bpf_map_lookup_elem(&vnf_active_gen, &zero);
	if (!active)
		return TC_ACT_OK;
	gen = *active & (VNF_GENERATIONS - 1); /* read once */
	gc = bpf_map_lookup_elem(&vnf_gen_cfg, &gen);
	if (!gc || gc->chain_len == 0)
		return TC_ACT_OK;
	if (egress_parse(skb, &t, &open, &l4) < 0)
		return TC_ACT_OK;
	/* only a flow whose replies enter the chain needs a new entry */
	__builtin_memset(&rp, 0, sizeof(rp));
	vnf_tuple_reverse(&rp.t, &t);
	rp.eth_proto = t.family == 4 ? ETH_P_IP : ETH_P_IPV6;
	rp.l4_valid = 1;
	if (!chain_classify(gc, gen, VNF_PARSE_OK, &rp))
		open = 0;

	/* the chain in reverse order, as a reply runs it: each translator
	 * undoes its translation, each stateful firewall sees the tuple as it
	 * saw the flow's inbound packets */
	for (j = 0; j < VNF_MAX_CHAIN; j++) {
		struct vnf_instance_cfg *ic;
		struct vnf_fw_cfg *fc;
		struct vnf_slot *slot;
		__u32 idx, inst, pos;

		if (j >= gc->chain_len)
			break;
		pos = (gc->chain_len - 1 - j) & (VNF_MAX_CHAIN - 1);
		idx = chain_slot(gen, pos);
		slot = bpf_map_lookup_elem(&vnf_slots, &idx);
		if (!slot)
			continue;
		inst = slot->instance;
		ic = bpf_map_lookup_elem(&vnf_instances, &inst);
		if (!ic)
			continue;
		if (slot->kind == VNF_KIND_NAT || slot->kind == VNF_KIND_LB) {
			/* a translated packet is a reply: it opens nothing */
			if (egress_translate(skb, ic->state, &t, l4))
				open = 0;
			continue;
		}
		if (slot->kind != VNF_KIND_FIREWALL)
			continue;
		fc = bpf_map_lookup_elem(&vnf_fw_cfg, &inst);
		if (!fc || !(fc->flags & VNF_FW_F_CONNTRACK))
			continue;
		egress_record(ic->state, fc, &t, open);
	}
	return TC_ACT_OK;
}

#endif /* VNF_EGRESS_H */
