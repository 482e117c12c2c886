/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vnf_shared.h - every structure shared between the eBPF data plane and the
 * Rust engine (cnf-dataplane/src/engine/abi.rs mirrors this file).
 *
 * Rules: fixed-width types only, explicit padding, no implicit holes.  Every
 * struct carries a _Static_assert on its size; abi.rs asserts the same
 * numbers plus field offsets, so a change on one side breaks the build/tests
 * of the other.
 */
#ifndef VNF_SHARED_H
#define VNF_SHARED_H

#include <linux/types.h>

/* ---- limits ------------------------------------------------------------ */
#define VNF_MAX_CHAIN 16 /* functions per chain (positions) */
#define VNF_GENERATIONS 2 /* double-buffered chain generations */
#define VNF_SLOTS (VNF_MAX_CHAIN * VNF_GENERATIONS)
#define VNF_MAX_INSTANCES 64 /* function instances (ids 1..63; 0 = none) */
#define VNF_FW_MAX_RULES 10240 /* rules per firewall instance */
#define VNF_FW_MAX_WORDS (VNF_FW_MAX_RULES / 64) /* u64 words of a rule bitmap */
#define VNF_FW_AGG_WORDS 3 /* aggregate: 1 bit per bitmap word (>= 160) */
#define VNF_FW_RULE_POOL 65536 /* rule slots of all firewall instances */
#define VNF_FW_WORD_POOL (1u << 22) /* bitmap words of all firewall instances */
#define VNF_FW_PORT_POOL 131072 /* port segments of all firewall instances */
#define VNF_FW_LPM_MAX 32768 /* prefixes per firewall trie, all instances */
#define VNF_HIST_BUCKETS 32 /* log2 ns buckets: bucket i = [2^i, 2^(i+1)) */
#define VNF_NR_REASONS 19 /* counter slots: one per enum vnf_reason */
#define VNF_MAX_XSK_QUEUES 64 /* receive queues the user-space tier can serve */
#define VNF_MON_CLASSES 8
#define VNF_CT_MAX 65536
#define VNF_FRAG_MAX 16384 /* fragmented datagrams tracked at once (LRU) */
#define VNF_PARK_MAX 1024 /* fragments parked at once, all datagrams */
#define VNF_PARK_PER_DGRAM 8 /* fragments parked per datagram */
#define VNF_PARK_BYTES 1536 /* longest frame parked (Ethernet MTU 1500 + headers) */
#define VNF_RL_MAX 65536
#define VNF_NAT_MAX 65536
#define VNF_NAT_DNAT_MAX 8192 /* static DNAT mappings, all instances */
#define VNF_MON_KEYED_MAX 65536 /* per-port / per-DSCP monitor counters */
#define VNF_CLS_MAX_PORTS 16 /* port ranges per classifier field */
#define VNF_CLS_LPM_MAX 1024 /* classifier prefixes, both generations */
#define VNF_NON_IP_MAX 8 /* non-IP EtherTypes a filtering chain lets pass */
#define VNF_RINGBUF_BYTES (256 * 1024)

/* ---- function kinds ---------------------------------------------------- */
enum vnf_kind {
	VNF_KIND_NONE = 0,
	VNF_KIND_FIREWALL = 1,
	VNF_KIND_FORWARDER = 2,
	VNF_KIND_MONITOR = 3,
	VNF_KIND_RATELIMIT = 4,
	VNF_KIND_NAT = 5,
	VNF_KIND_LB = 6,
	VNF_KIND_USERSPACE = 7, /* hand-off to the AF_XDP user-space tier */
};

/* ---- drop / verdict reasons (index into vnf_fn_stats.dropped) ----------- */
enum vnf_reason {
	VNF_R_NONE = 0,
	VNF_R_MALFORMED = 1, /* truncated / invalid headers */
	VNF_R_FW_RULE = 2, /* a firewall rule with action deny matched */
	VNF_R_FW_DEFAULT = 3, /* no rule matched, default action deny */
	VNF_R_RATELIMIT = 4, /* token bucket empty */
	VNF_R_NO_CONFIG = 5, /* instance id without configuration */
	VNF_R_CHAIN_BROKEN = 6, /* tail call failed (empty slot) */
	VNF_R_TTL_EXCEEDED = 7, /* forwarder: TTL/hop limit would reach 0 */
	VNF_R_FWD_DROP = 8, /* forwarder configured to drop */
	VNF_R_NAT_EXHAUSTED = 9, /* no free SNAT port found */
	VNF_R_LB_NO_BACKEND = 10, /* VIP traffic but no usable backend */
	VNF_R_NO_XSK = 11, /* user-space hand-off: no AF_XDP socket on the queue */
	/* fail-closed parsing (docs/security.md) */
	VNF_R_ENCAP_DEPTH = 12, /* more VLAN tags than the parser walks */
	VNF_R_EXT_DEPTH = 13, /* more IPv6 extension headers than the parser walks */
	VNF_R_TINY_FRAGMENT = 14, /* first fragment without the whole L4 header, or a
				     later one overlapping it (RFC 1858 / RFC 3128) */
	VNF_R_FRAG_UNKNOWN = 15, /* non-first fragment whose first fragment was not seen */
	VNF_R_NON_IP = 16, /* non-IP frame whose EtherType the chain does not allow */
	VNF_R_FRAG_PARKED = 17, /* non-first fragment held back until its first one
				   arrives: replayed through the chain, or expired */
	VNF_R_FRAG_EXPIRED = 18, /* a parked fragment whose first fragment never came */
};
_Static_assert(VNF_R_FRAG_EXPIRED + 1 == VNF_NR_REASONS, "a counter slot per reason");

/* ---- chain: per-generation flags (array "vnf_gen_flags", index = generation) */
/* Replies of flows the chain created state for run the chain in reverse order
 * (set when the chain has a NAT or LB and another function before its
 * terminal one: each undoes its own translation in the opposite order). */
#define VNF_GEN_F_REVERSE_REPLIES (1u << 0)
/* Established flows take the fast path (lib/fastpath.h); the engine clears
 * it only to compare both paths. */
#define VNF_GEN_F_FAST_PATH (1u << 1)

/* ---- attach: per-interface flags (hash "vnf_if_flags", key = ifindex) ---- */
/* The entry program on this interface runs in generic (skb) XDP mode: the
 * skb survives every verdict (see lib/l4csum.h). */
#define VNF_IF_F_XDP_GENERIC (1u << 0)

/* ---- chain: generation config, slots, scratch -------------------------- */
#define VNF_CLS_F_FAMILY (1u << 0)
#define VNF_CLS_F_PROTO (1u << 1)
#define VNF_CLS_F_SRC (1u << 2)
#define VNF_CLS_F_DST (1u << 3)
#define VNF_CLS_F_SPORT (1u << 4)
#define VNF_CLS_F_DPORT (1u << 5)

/* Inclusive port range, host order. */
struct vnf_port_range {
	__u16 lo;
	__u16 hi;
};
_Static_assert(sizeof(struct vnf_port_range) == 4, "vnf_port_range size");

/* Entry classifier: all enabled fields must match (AND); within a field any
 * element may match (OR).  The prefixes of VNF_CLS_F_SRC / VNF_CLS_F_DST
 * live in the LPM tries vnf_cls_{src,dst}{4,6}, keyed by (generation,
 * address): a packet matches the field when its address hits a prefix of
 * the generation in the trie of its family.  Ports in host order. */
struct vnf_classifier {
	__u32 fields; /* VNF_CLS_F_* */
	__u8 family; /* 4 or 6 */
	__u8 proto; /* IPPROTO_* */
	__u8 nr_sports; /* used entries of sports (1..VNF_CLS_MAX_PORTS) */
	__u8 nr_dports;
	struct vnf_port_range sports[VNF_CLS_MAX_PORTS];
	struct vnf_port_range dports[VNF_CLS_MAX_PORTS];
};
_Static_assert(sizeof(struct vnf_classifier) == 136, "vnf_classifier size");

/* Array map "vnf_gen_cfg", index = generation. */
struct vnf_gen_cfg {
	__u32 chain_len; /* 0 = chain disabled, all traffic bypasses */
	__u32 latency_sample_rate; /* latency sampling: 0 = off, N = 1 in N packets */
	struct vnf_classifier cls;
	/* EtherTypes (host order, after VLAN tags) of the non-IP frames the
	 * chain's firewalls let pass (spec.nonIp.allow); every other non-IP
	 * frame is dropped by a firewall with VNF_R_NON_IP */
	__u16 non_ip[VNF_NON_IP_MAX];
	__u32 nr_non_ip;
};
_Static_assert(sizeof(struct vnf_gen_cfg) == 164, "vnf_gen_cfg size");

/* Array map "vnf_slots", index = slot(gen, pos). */
struct vnf_slot {
	__u32 instance;
	__u32 kind;
};
_Static_assert(sizeof(struct vnf_slot) == 8, "vnf_slot size");

/* Per-CPU array "vnf_scratch", one entry: chain state of the packet that
 * is currently travelling through the tail-call chain on this CPU. */
struct vnf_scratch {
	__u64 entry_ns; /* ktime at the entry program (if sampled) */
	__u64 countdown; /* classified packets on this CPU until the next sample */
	__u32 gen; /* generation fixed at entry */
	__u32 pos; /* position of the function currently running */
	__u32 chain_len; /* length of the generation, fixed at entry */
	__u32 reason; /* last verdict reason (enum vnf_reason) */
	__u32 sampled; /* latency sampled for this packet (chain and functions) */
	__u32 state; /* state id of the function currently running */
	__u64 mark_ns; /* sampled packets: ktime when the previous function ended */
	/* a reply of a flow the chain translated: the first rev_n positions run
	 * in reverse order (see lib/chain.h); 0 = forward */
	__u32 rev_n;
	__u32 new_flow; /* a function created flow state for this packet */
};
_Static_assert(sizeof(struct vnf_scratch) == 56, "vnf_scratch size");

/* Array map "vnf_instances", index = instance id. */
struct vnf_instance_cfg {
	__u32 kind; /* enum vnf_kind, 0 = unconfigured */
	__u32 latency_sample_rate; /* 0 = off; else time the packets the chain samples */
	/* Key of the function's state and counters (vnf_stats, conntrack, NAT
	 * and LB flows, rate-limit buckets, monitor counters).  A function that
	 * keeps its name and kind across a chain update inherits the state id
	 * of its predecessor, so flows, buckets and counters survive updates;
	 * configuration stays keyed by the instance id. */
	__u32 state;
	__u32 _pad;
};
_Static_assert(sizeof(struct vnf_instance_cfg) == 16, "vnf_instance_cfg size");

/* ---- telemetry ----------------------------------------------------------- */
/* Per-CPU array "vnf_stats", index = instance id. */
struct vnf_fn_stats {
	__u64 pkts_in;
	__u64 bytes_in;
	__u64 passed;
	__u64 aux; /* function specific: conntrack hits, samples emitted, ... */
	__u64 dropped[VNF_NR_REASONS];
	__u64 latency_hist[VNF_HIST_BUCKETS];
};
_Static_assert(sizeof(struct vnf_fn_stats) == 440, "vnf_fn_stats size");

/* Per-CPU array "vnf_chain_stats", index = generation. */
struct vnf_chain_stats {
	__u64 classified; /* entered the chain */
	__u64 bypassed; /* did not match the classifier */
	__u64 completed; /* left the chain with a verdict */
	__u64 broken; /* tail call failed */
	/* sampled entry-to-verdict latency of every packet, either path */
	__u64 latency_hist[VNF_HIST_BUCKETS];
	/* of completed: packets that took the fast path (lib/fastpath.h) */
	__u64 fast;
	/* sampled entry-to-verdict latency of the fast-path packets alone */
	__u64 fast_hist[VNF_HIST_BUCKETS];
};
_Static_assert(sizeof(struct vnf_chain_stats) == 552, "vnf_chain_stats size");

/* ---- parsed flow tuple --------------------------------------------------- */
struct vnf_tuple {
	__u8 saddr[16]; /* network order, IPv4 in first 4 bytes */
	__u8 daddr[16];
	__u16 sport; /* host order; ICMP echo: identifier in both */
	__u16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6, 0 = not IP */
	__u8 _pad[2];
};
_Static_assert(sizeof(struct vnf_tuple) == 40, "vnf_tuple size");

/* ---- firewall ------------------------------------------------------------ */
enum vnf_action {
	VNF_ACT_ALLOW = 0,
	VNF_ACT_DENY = 1,
};

#define VNF_FW_F_CONNTRACK (1u << 0)
#define VNF_FW_F_ANY_SRC (1u << 1) /* no rule constrains the source address */
#define VNF_FW_F_ANY_DST (1u << 2) /* no rule constrains the destination address */

/* A rule bitmap (bit i = rule i of the instance) of nwords u64 words at
 * vnf_fw_words[word_off ..], with its aggregate: bit j of agg is set when
 * word j is non-zero (Lakshman-Stiliadis aggregated bit vectors). */
struct vnf_fw_bm {
	__u32 word_off;
	__u32 _pad;
	__u64 agg[VNF_FW_AGG_WORDS];
};
_Static_assert(sizeof(struct vnf_fw_bm) == 32, "vnf_fw_bm size");

/* Array map "vnf_fw_cfg", index = instance id. */
struct vnf_fw_cfg {
	__u8 default_action; /* enum vnf_action */
	__u8 flags; /* VNF_FW_F_* */
	__u16 nwords; /* words per bitmap: ceil(nr_rules / 64) */
	__u32 nr_rules;
	__u64 ct_timeout_ns; /* conntrack idle timeout */
	__u32 rule_off; /* first slot in vnf_fw_actions / vnf_fw_hits */
	__u32 sport_off; /* first segment in vnf_fw_ports (source port) */
	__u32 sport_n; /* segments (>= 1 when configured) */
	__u32 dport_off;
	__u32 dport_n;
	/* policy version: differs from every earlier configuration of the same
	 * state id, so conntrack entries stamped under another policy are
	 * re-checked against these rules on their next packet */
	__u32 version;
	struct vnf_fw_bm noport; /* rules without port criteria */
	struct vnf_fw_bm any; /* every rule: the address dimensions of ANY_SRC/ANY_DST */
};
_Static_assert(sizeof(struct vnf_fw_cfg) == 104, "vnf_fw_cfg size");

/* Array map "vnf_fw_ports": elementary port intervals of one dimension of
 * an instance, sorted by lo; segment k covers [lo_k, lo_{k+1} - 1] and the
 * first starts at 0.  The bitmap holds every rule whose range covers it. */
struct vnf_fw_port_seg {
	__u16 lo;
	__u16 _pad;
	__u32 _pad2;
	struct vnf_fw_bm bm;
};
_Static_assert(sizeof(struct vnf_fw_port_seg) == 40, "vnf_fw_port_seg size");

/* LPM tries "vnf_fw_src4"/"vnf_fw_dst4"/..., prefixlen = 32 + cidr length,
 * value struct vnf_fw_bm: every rule whose CIDR contains this prefix. */
struct vnf_lpm4_key {
	__u32 prefixlen;
	__u32 instance; /* big-endian so it forms the first 32 prefix bits */
	__u8 addr[4];
};
_Static_assert(sizeof(struct vnf_lpm4_key) == 12, "vnf_lpm4_key size");

struct vnf_lpm6_key {
	__u32 prefixlen;
	__u32 instance;
	__u8 addr[16];
};
_Static_assert(sizeof(struct vnf_lpm6_key) == 24, "vnf_lpm6_key size");

/* LRU hash "vnf_ct": connections opened through an allow rule. */
/* vnf_ct_key._pad: 0 for a flow the firewall allowed in; VNF_CT_POD for a
 * flow the pod itself opened, recorded by the TC egress program of sidecar
 * mode (lib/egress.h): only its replies pass. */
#define VNF_CT_POD 1

struct vnf_ct_key {
	__u32 instance;
	__u32 _pad; /* 0 or VNF_CT_POD */
	struct vnf_tuple t; /* as seen in the original direction */
};
_Static_assert(sizeof(struct vnf_ct_key) == 48, "vnf_ct_key size");

struct vnf_ct_val {
	__u64 last_seen_ns;
	__u32 packets;
	__u32 version; /* vnf_fw_cfg.version of the policy that last allowed the flow */
};
_Static_assert(sizeof(struct vnf_ct_val) == 16, "vnf_ct_val size");

/* ---- fragments (lib/parse.h) ---------------------------------------------- */
/* LRU hash "vnf_frags": the first fragment of a datagram records its ports,
 * later fragments take them.  proto is 0 for IPv6 (RFC 8200: only the first
 * fragment's next header counts). */
struct vnf_frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id; /* IPv4 identification (16 bits) or IPv6 fragment id */
	__u8 proto;
	__u8 family;
	__u8 _pad[2];
};
_Static_assert(sizeof(struct vnf_frag_key) == 40, "vnf_frag_key size");

struct vnf_frag_val {
	__u64 seen_ns; /* coarse clock when the first fragment passed the parser */
	__u16 sport; /* host order, as in vnf_tuple */
	__u16 dport;
	__u16 l4_hlen; /* bytes of L4 header in the first fragment */
	__u8 proto; /* the datagram's protocol */
	__u8 l4_valid;
};
_Static_assert(sizeof(struct vnf_frag_val) == 16, "vnf_frag_val size");

/* Hash "vnf_frag_pend": datagrams with parked fragments (key as vnf_frags),
 * and hash "vnf_frag_park": the parked frames (lib/fragpark.h). */
struct vnf_frag_pend {
	__u64 since_ns; /* coarse clock when the first fragment was parked */
	__u32 nr; /* parked-slot sequence numbers handed out */
	__u32 _pad;
};
_Static_assert(sizeof(struct vnf_frag_pend) == 16, "vnf_frag_pend size");

struct vnf_park_key {
	struct vnf_frag_key dgram;
	__u32 seq; /* 0 .. VNF_PARK_PER_DGRAM - 1 */
};
_Static_assert(sizeof(struct vnf_park_key) == 44, "vnf_park_key size");

struct vnf_park_val {
	__u64 parked_ns; /* coarse clock when parked */
	__u32 len; /* bytes of data used */
	__u32 state; /* state id of the firewall that parked it (its counters) */
	__u32 vlan; /* TC: skb vlan_present << 16 | vlan_tci when parked */
	__u32 ifindex; /* interface the frame came in on */
	__u8 data[VNF_PARK_BYTES];
};
_Static_assert(sizeof(struct vnf_park_val) == 24 + VNF_PARK_BYTES, "vnf_park_val size");

/* Ring buffer "vnf_frag_events" (XDP): the first fragment of a datagram with
 * parked frames arrived; user space replays them (lib/fragpark.h). */
struct vnf_frag_event {
	struct vnf_frag_key dgram;
	__u32 ifindex; /* where the first fragment came in */
	__u32 rx_queue;
};
_Static_assert(sizeof(struct vnf_frag_event) == 48, "vnf_frag_event size");

/* ---- forwarder ----------------------------------------------------------- */
enum vnf_fwd_mode {
	VNF_FWD_PASS = 0, /* hand to the kernel stack */
	VNF_FWD_TX = 1, /* bounce out of the ingress interface */
	VNF_FWD_REDIRECT = 2, /* XDP: devmap[instance]; TC: bpf_redirect */
	VNF_FWD_DROP = 3,
};

#define VNF_FWD_F_SMAC (1u << 0)
#define VNF_FWD_F_DMAC (1u << 1)
#define VNF_FWD_F_DEC_TTL (1u << 2)

/* Array map "vnf_fwd_cfg", index = instance id. */
struct vnf_fwd_cfg {
	__u8 mode; /* enum vnf_fwd_mode */
	__u8 flags; /* VNF_FWD_F_* */
	__u8 _pad[2];
	__u32 ifindex; /* redirect target (TC); XDP uses devmap "vnf_devmap" */
	__u8 smac[6];
	__u8 dmac[6];
};
_Static_assert(sizeof(struct vnf_fwd_cfg) == 20, "vnf_fwd_cfg size");

/* ---- monitor ------------------------------------------------------------- */
enum vnf_mon_class {
	VNF_MON_TCP = 0,
	VNF_MON_UDP = 1,
	VNF_MON_ICMP = 2, /* ICMP and ICMPv6 */
	VNF_MON_OTHER_V4 = 3,
	VNF_MON_OTHER_V6 = 4,
	VNF_MON_FRAGMENT = 5, /* non-first fragments */
	VNF_MON_NON_IP = 6,
	VNF_MON_MALFORMED = 7,
};

/* Array map "vnf_mon_cfg", index = instance id. */
enum vnf_mon_count_by {
	VNF_MON_BY_CLASS = 0, /* vnf_mon_classes, enum vnf_mon_class */
	VNF_MON_BY_DPORT = 1, /* vnf_mon_keyed: TCP/UDP dport, else 65536 */
	VNF_MON_BY_DSCP = 2, /* vnf_mon_keyed: DSCP 0..63, non-IP 64 */
};
#define VNF_MON_NO_PORT 65536
#define VNF_MON_NO_DSCP 64

struct vnf_mon_cfg {
	__u32 sample_rate; /* 0 = no samples, N = 1 in N packets per CPU */
	__u8 count_by; /* enum vnf_mon_count_by */
	__u8 _pad[3];
};
_Static_assert(sizeof(struct vnf_mon_cfg) == 8, "vnf_mon_cfg size");

/* Per-CPU array "vnf_mon_classes", index = instance*VNF_MON_CLASSES+class */
struct vnf_mon_counter {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct vnf_mon_counter) == 16, "vnf_mon_counter size");

/* Per-CPU hash "vnf_mon_keyed" (count_by dport / dscp). */
struct vnf_mon_key {
	__u32 instance;
	__u32 value; /* port or DSCP, see enum vnf_mon_count_by */
};
_Static_assert(sizeof(struct vnf_mon_key) == 8, "vnf_mon_key size");

/* Ring buffer "vnf_samples" record. */
struct vnf_mon_sample {
	__u64 ts_ns;
	__u32 instance;
	__u32 ifindex;
	__u32 pkt_len;
	__u8 class; /* enum vnf_mon_class */
	__u8 tcp_flags;
	__u8 _pad[2];
	struct vnf_tuple t;
};
_Static_assert(sizeof(struct vnf_mon_sample) == 64, "vnf_mon_sample size");

/* ---- rate limiter ---------------------------------------------------------- */
enum vnf_rl_key_mode {
	VNF_RL_KEY_GLOBAL = 0,
	VNF_RL_KEY_SRC = 1,
	VNF_RL_KEY_FLOW = 2,
};

/* Array map "vnf_rl_cfg", index = instance id.  Token buckets implemented
 * as GCRA (virtual scheduling): a packet conforms when its theoretical
 * arrival time is at most tau_ns ahead of now; emission interval = 1e9/pps
 * per packet and len*8e9/bps per frame (bps in bits). 0 rates disable that
 * bucket. */
struct vnf_rl_cfg {
	__u8 key_mode; /* enum vnf_rl_key_mode */
	__u8 _pad[7];
	__u64 pkt_inc_ns; /* 1e9 / pps (GCRA increment per packet); 0 = no packet rate */
	__u64 pkt_tau_ns; /* burst_pkts * pkt_inc_ns */
	__u64 byte_inc_q16; /* 8e9 / bps * 2^16 (ns per byte, 16.16 fixed point); 0 = no bit rate */
	__u64 byte_tau_ns; /* burst_bytes * 8e9 / bps */
};
_Static_assert(sizeof(struct vnf_rl_cfg) == 40, "vnf_rl_cfg size");

/* LRU hash "vnf_rl_buckets". */
struct vnf_rl_key {
	__u32 instance;
	__u32 _pad;
	struct vnf_tuple t; /* zeroed except the fields of key_mode */
};
_Static_assert(sizeof(struct vnf_rl_key) == 48, "vnf_rl_key size");

struct vnf_rl_state {
	__u64 pkt_tat_ns; /* theoretical arrival time, packet bucket */
	__u64 byte_tat_ns; /* theoretical arrival time, byte bucket */
};
_Static_assert(sizeof(struct vnf_rl_state) == 16, "vnf_rl_state size");

/* ---- NAT ------------------------------------------------------------------- */
#define VNF_NAT_F_SNAT (1u << 0) /* the SNAT rule is set */
#define VNF_NAT_F_SNAT_ANY (1u << 1) /* SNAT every source of snat_family */

/* Array map "vnf_nat_cfg", index = instance id.  A new flow is checked
 * against the DNAT mappings first (hash vnf_nat_dnat), then against the
 * SNAT rule, whose source prefixes live in the LPM tries
 * vnf_nat_src{4,6} keyed by (instance, address). */
struct vnf_nat_cfg {
	__u8 flags; /* VNF_NAT_F_*, 0 with nr_dnat 0 = unconfigured */
	__u8 snat_family; /* 4 or 6 */
	__u16 port_lo; /* SNAT port pool, inclusive */
	__u16 port_hi;
	__u16 nr_dnat; /* DNAT mappings of the instance */
	__u64 timeout_ns; /* idle timeout of a translation */
	__u8 snat_addr[16];
};
_Static_assert(sizeof(struct vnf_nat_cfg) == 32, "vnf_nat_cfg size");

/* Hash "vnf_nat_dnat": static DNAT.  proto 0 = TCP and UDP, port 0 = any
 * port; the most specific of (proto, port), (proto, *), (*, port), (*, *)
 * wins. */
struct vnf_nat_dnat_key {
	__u32 instance;
	__u8 proto;
	__u8 family;
	__u16 port; /* host order */
	__u8 addr[16];
};
_Static_assert(sizeof(struct vnf_nat_dnat_key) == 24, "vnf_nat_dnat_key size");

struct vnf_nat_dnat_val {
	__u8 addr[16];
	__u16 port; /* host order, 0 = keep */
	__u8 _pad[2];
};
_Static_assert(sizeof(struct vnf_nat_dnat_val) == 20, "vnf_nat_dnat_val size");

/* LRU hash "vnf_nat_ct": one entry per direction of a translated flow,
 * keyed by the tuple as it arrives. */
struct vnf_nat_key {
	__u32 instance;
	__u32 _pad;
	struct vnf_tuple t;
};
_Static_assert(sizeof(struct vnf_nat_key) == 48, "vnf_nat_key size");

struct vnf_nat_val {
	__u64 last_seen_ns;
	__u8 addr[16]; /* replacement address */
	__u16 port; /* replacement port (host order) */
	__u8 rewrite_src; /* 1: rewrite source, 0: rewrite destination */
	__u8 _pad[5];
};
_Static_assert(sizeof(struct vnf_nat_val) == 32, "vnf_nat_val size");

/* ---- L4 load balancer ------------------------------------------------------ */
#define VNF_LB_MAX_BACKENDS 256
#define VNF_LB_POOL (1u << 21) /* Maglev slots shared by all LB instances */

/* Array map "vnf_lb_cfg", index = instance id. */
struct vnf_lb_cfg {
	__u8 family; /* 4 or 6, 0 = unconfigured */
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP, 0 = both */
	__u16 vip_port; /* 0 = any port */
	__u32 nr_backends;
	__u64 affinity_timeout_ns; /* idle timeout of a flow's backend choice */
	__u8 vip[16];
	__u32 table_off; /* first slot of the instance's table in vnf_lb_maglev */
	__u32 table_size; /* Maglev table size (prime), 0 = no table */
};
_Static_assert(sizeof(struct vnf_lb_cfg) == 40, "vnf_lb_cfg size");

/* Array map "vnf_lb_backends", index = instance * VNF_LB_MAX_BACKENDS + i */
struct vnf_lb_backend {
	__u8 addr[16];
	__u16 port; /* 0 = keep the client's destination port */
	__u8 _pad[2];
};
_Static_assert(sizeof(struct vnf_lb_backend) == 20, "vnf_lb_backend size");

/* Array map "vnf_lb_maglev" (VNF_LB_POOL slots), index = table_off + slot,
 * value = backend index (u32), filled by user space with Maglev's
 * population; user space allocates each instance a region of table_size. */

#endif /* VNF_SHARED_H */
