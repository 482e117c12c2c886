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
#define VNF_FW_MAX_RULES 64 /* rules per firewall instance (one u64 bitmap) */
#define VNF_HIST_BUCKETS 32 /* log2 ns buckets: bucket i = [2^i, 2^(i+1)) */
#define VNF_NR_REASONS 16
#define VNF_MON_CLASSES 8
#define VNF_CT_MAX 65536
#define VNF_RL_MAX 65536
#define VNF_NAT_MAX 65536
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
};

/* ---- chain: generation config, slots, scratch -------------------------- */
#define VNF_CLS_F_FAMILY (1u << 0)
#define VNF_CLS_F_PROTO (1u << 1)
#define VNF_CLS_F_SRC (1u << 2)
#define VNF_CLS_F_DST (1u << 3)
#define VNF_CLS_F_SPORT (1u << 4)
#define VNF_CLS_F_DPORT (1u << 5)

/* Entry classifier: all enabled fields must match (AND).  Addresses are in
 * network byte order (IPv4 in the first 4 bytes), ports in host order. */
struct vnf_classifier {
	__u32 fields; /* VNF_CLS_F_* */
	__u8 family; /* 4 or 6 */
	__u8 proto; /* IPPROTO_* */
	__u8 src_plen;
	__u8 dst_plen;
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u8 src[16];
	__u8 dst[16];
};
_Static_assert(sizeof(struct vnf_classifier) == 48, "vnf_classifier size");

/* Array map "vnf_gen_cfg", index = generation. */
struct vnf_gen_cfg {
	__u32 chain_len; /* 0 = chain disabled, all traffic bypasses */
	__u32 latency_sample_rate; /* chain latency: 0 = off, N = 1 in N */
	struct vnf_classifier cls;
};
_Static_assert(sizeof(struct vnf_gen_cfg) == 56, "vnf_gen_cfg size");

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
	__u64 seq; /* packets classified on this CPU (sampling) */
	__u32 gen; /* generation fixed at entry */
	__u32 pos; /* position of the function currently running */
	__u32 chain_len; /* length of the generation, fixed at entry */
	__u32 reason; /* last verdict reason (enum vnf_reason) */
	__u32 sampled; /* chain latency sampled for this packet */
	__u32 _pad;
};
_Static_assert(sizeof(struct vnf_scratch) == 40, "vnf_scratch size");

/* Array map "vnf_instances", index = instance id. */
struct vnf_instance_cfg {
	__u32 kind; /* enum vnf_kind, 0 = unconfigured */
	__u32 latency_sample_rate; /* 0 = off, N = time 1 in N packets */
};
_Static_assert(sizeof(struct vnf_instance_cfg) == 8, "vnf_instance_cfg size");

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
_Static_assert(sizeof(struct vnf_fn_stats) == 416, "vnf_fn_stats size");

/* Per-CPU array "vnf_chain_stats", index = generation. */
struct vnf_chain_stats {
	__u64 classified; /* entered the chain */
	__u64 bypassed; /* did not match the classifier */
	__u64 completed; /* left the chain with a verdict */
	__u64 broken; /* tail call failed */
	__u64 latency_hist[VNF_HIST_BUCKETS];
};
_Static_assert(sizeof(struct vnf_chain_stats) == 288, "vnf_chain_stats size");

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

/* Array map "vnf_fw_cfg", index = instance id. */
struct vnf_fw_cfg {
	__u8 default_action; /* enum vnf_action */
	__u8 flags; /* VNF_FW_F_* */
	__u8 _pad[2];
	__u32 nr_rules;
	__u64 ct_timeout_ns; /* conntrack idle timeout */
};
_Static_assert(sizeof(struct vnf_fw_cfg) == 16, "vnf_fw_cfg size");

/* Array map "vnf_fw_rules", index = instance * VNF_FW_MAX_RULES + rule.
 * Rule index order is priority order (lowest index wins).  Addresses are
 * matched by the LPM tries; this entry holds the remaining criteria. */
#define VNF_FW_RULE_VALID (1u << 0)
#define VNF_FW_RULE_PORTS (1u << 1) /* port ranges apply: TCP/UDP only */

struct vnf_fw_rule {
	__u8 proto; /* 0 = any */
	__u8 action; /* enum vnf_action */
	__u8 family; /* 0 = any, 4, 6 */
	__u8 flags; /* VNF_FW_RULE_* */
	__u16 sport_lo; /* inclusive, host order */
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
};
_Static_assert(sizeof(struct vnf_fw_rule) == 12, "vnf_fw_rule size");

/* LPM tries "vnf_fw_src4"/"vnf_fw_dst4": prefixlen = 32 + cidr length. The
 * value is the bitmap of every rule whose CIDR contains this prefix. */
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
struct vnf_ct_key {
	__u32 instance;
	__u32 _pad;
	struct vnf_tuple t; /* as seen in the original direction */
};
_Static_assert(sizeof(struct vnf_ct_key) == 48, "vnf_ct_key size");

struct vnf_ct_val {
	__u64 last_seen_ns;
	__u64 packets;
};
_Static_assert(sizeof(struct vnf_ct_val) == 16, "vnf_ct_val size");

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
struct vnf_mon_cfg {
	__u32 sample_rate; /* 0 = no samples, N = 1 in N packets per CPU */
	__u32 _pad;
};
_Static_assert(sizeof(struct vnf_mon_cfg) == 8, "vnf_mon_cfg size");

/* Per-CPU array "vnf_mon_classes", index = instance*VNF_MON_CLASSES+class */
struct vnf_mon_counter {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct vnf_mon_counter) == 16, "vnf_mon_counter size");

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
 * per packet and len*1e9/bps per byte. 0 rates disable that bucket. */
struct vnf_rl_cfg {
	__u8 key_mode; /* enum vnf_rl_key_mode */
	__u8 _pad[7];
	__u64 pps;
	__u64 pkt_tau_ns; /* burst_pkts * (1e9 / pps) */
	__u64 bps; /* bytes per second */
	__u64 byte_tau_ns; /* burst_bytes * 1e9 / bps */
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
enum vnf_nat_mode {
	VNF_NAT_SNAT = 1, /* src in match prefix -> nat_addr:port from pool */
	VNF_NAT_DNAT = 2, /* dst == match_addr[:match_port] -> nat_addr[:port_lo] */
};

/* Array map "vnf_nat_cfg", index = instance id. */
struct vnf_nat_cfg {
	__u8 mode; /* enum vnf_nat_mode, 0 = unconfigured */
	__u8 family; /* 4 or 6 */
	__u8 match_plen; /* SNAT: source prefix length */
	__u8 _pad;
	__u16 port_lo; /* SNAT: port pool; DNAT: new port (0 = keep) */
	__u16 port_hi;
	__u16 match_port; /* DNAT: destination port, 0 = any */
	__u8 _pad2[6];
	__u64 timeout_ns; /* idle timeout of a translation */
	__u8 match_addr[16];
	__u8 nat_addr[16];
};
_Static_assert(sizeof(struct vnf_nat_cfg) == 56, "vnf_nat_cfg size");

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
#define VNF_LB_MAX_BACKENDS 32
#define VNF_LB_TABLE 4093 /* Maglev lookup table size (prime) */

/* Array map "vnf_lb_cfg", index = instance id. */
struct vnf_lb_cfg {
	__u8 family; /* 4 or 6, 0 = unconfigured */
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP, 0 = both */
	__u16 vip_port; /* 0 = any port */
	__u32 nr_backends;
	__u64 affinity_timeout_ns; /* idle timeout of a flow's backend choice */
	__u8 vip[16];
};
_Static_assert(sizeof(struct vnf_lb_cfg) == 32, "vnf_lb_cfg size");

/* Array map "vnf_lb_backends", index = instance * VNF_LB_MAX_BACKENDS + i */
struct vnf_lb_backend {
	__u8 addr[16];
	__u16 port; /* 0 = keep the client's destination port */
	__u8 _pad[2];
};
_Static_assert(sizeof(struct vnf_lb_backend) == 20, "vnf_lb_backend size");

/* Array map "vnf_lb_maglev", index = instance * VNF_LB_TABLE + slot, value =
 * backend index (u32), filled by user space with Maglev's population. */

#endif /* VNF_SHARED_H */
