//! Rust mirror of `ebpf/include/vnf_shared.h`: map keys/values shared with the eBPF programs.
//!
//! Every struct is `#[repr(C)]` with explicit padding; the tests at the bottom
//! assert the same sizes as the `_Static_assert`s in the C header plus the
//! field offsets, so the two sides cannot drift apart silently.

use aya::Pod;

/// Functions per chain (positions).
pub const MAX_CHAIN: u32 = 16;
/// Double-buffered chain generations.
pub const GENERATIONS: u32 = 2;
/// Slots in the prog array / slot table.
pub const SLOTS: u32 = MAX_CHAIN * GENERATIONS;
/// Function instance ids are `1..MAX_INSTANCES` (0 = none).
pub const MAX_INSTANCES: u32 = 64;
/// Rules per firewall instance.
pub const FW_MAX_RULES: u32 = 10_240;
/// u64 words of a firewall rule bitmap at most.
pub const FW_MAX_WORDS: u32 = FW_MAX_RULES / 64;
/// Aggregate words of a firewall bitmap (one bit per bitmap word).
pub const FW_AGG_WORDS: usize = 3;
/// Rule slots (actions, hit counters) of all firewall instances.
pub const FW_RULE_POOL: u32 = 65_536;
/// Bitmap words of all firewall instances.
pub const FW_WORD_POOL: u32 = 1 << 22;
/// Port segments of all firewall instances.
pub const FW_PORT_POOL: u32 = 131_072;
/// Prefixes per firewall trie over all instances.
pub const FW_LPM_MAX: u32 = 32_768;
/// log2 latency histogram buckets.
pub const HIST_BUCKETS: usize = 32;
/// Drop-reason counters per function: one per [`reason`].
pub const NR_REASONS: usize = 19;
/// Non-IP EtherTypes a filtering chain lets pass (`VNF_NON_IP_MAX`).
pub const NON_IP_MAX: usize = 8;
/// Receive queues the user-space tier can serve (entries of the XSKMAP `vnf_xsks`).
pub const MAX_XSK_QUEUES: u32 = 64;
/// Backends per load-balancer instance.
pub const LB_MAX_BACKENDS: u32 = 256;
/// Maglev slots shared by the tables of all load-balancer instances.
pub const LB_POOL: u32 = 1 << 21;
/// Port ranges per classifier port field.
pub const CLS_MAX_PORTS: usize = 16;
/// Classifier prefixes per trie (both generations).
pub const CLS_LPM_MAX: usize = 1024;
/// Static DNAT mappings over all NAT instances.
pub const NAT_DNAT_MAX: usize = 8192;
/// SNAT source prefixes per trie over all NAT instances.
pub const NAT_LPM_MAX: usize = 4096;
/// Monitor traffic classes.
pub const MON_CLASSES: u32 = 8;
/// `vnf_gen_flags` bit: replies of flows the chain created state for run the chain in reverse order.
pub const GEN_F_REVERSE_REPLIES: u32 = 1;
/// `vnf_gen_flags` bit: established flows of this generation take the fast path (`ebpf/lib/fastpath.h`).
pub const GEN_F_FAST_PATH: u32 = 2;
/// `vnf_if_flags` value bit: the entry program runs in generic (skb) XDP mode on this interface, so the
/// skb (and a partial checksum's "finish me" state) survives every verdict (`ebpf/lib/l4csum.h`).
pub const IF_F_XDP_GENERIC: u32 = 1;

/// Function kinds (`enum vnf_kind`).
pub mod kind {
    pub const FIREWALL: u32 = 1;
    pub const FORWARDER: u32 = 2;
    pub const MONITOR: u32 = 3;
    pub const RATELIMIT: u32 = 4;
    pub const NAT: u32 = 5;
    pub const LB: u32 = 6;
    pub const USERSPACE: u32 = 7;
}

/// Verdict reasons (`enum vnf_reason`), index into [`FnStats::dropped`].
pub mod reason {
    pub const NONE: usize = 0;
    pub const MALFORMED: usize = 1;
    pub const FW_RULE: usize = 2;
    pub const FW_DEFAULT: usize = 3;
    pub const RATELIMIT: usize = 4;
    pub const NO_CONFIG: usize = 5;
    pub const CHAIN_BROKEN: usize = 6;
    pub const TTL_EXCEEDED: usize = 7;
    pub const FWD_DROP: usize = 8;
    pub const NAT_EXHAUSTED: usize = 9;
    pub const LB_NO_BACKEND: usize = 10;
    pub const NO_XSK: usize = 11;
    /// More VLAN tags than the parser walks (`VNF_MAX_VLAN`, docs/security.md).
    pub const ENCAP_DEPTH: usize = 12;
    /// More IPv6 extension headers than the parser walks (`VNF_MAX_EXT`).
    pub const EXT_DEPTH: usize = 13;
    /// A first fragment without the whole L4 header, or a later one overlapping it (RFC 1858 / 3128).
    pub const TINY_FRAGMENT: usize = 14;
    /// A non-first fragment whose first fragment the chain has not seen.
    pub const FRAG_UNKNOWN: usize = 15;
    /// A non-IP frame whose EtherType the chain does not allow (`spec.nonIp`).
    pub const NON_IP: usize = 16;
    /// A non-first fragment held back until its first fragment arrives: replayed through the
    /// chain then (and counted again by its verdict), or expired.
    pub const FRAG_PARKED: usize = 17;
    /// A parked fragment whose first fragment did not come within the park timeout.
    pub const FRAG_EXPIRED: usize = 18;

    /// The name of each reason (index = the constant above), as labels and the gRPC stats carry it: the
    /// one table of them on the Rust side (the C side is `enum vnf_reason` in ebpf/include/vnf_shared.h).
    pub const NAMES: [&str; super::NR_REASONS] = [
        "none",
        "malformed",
        "firewall_rule",
        "firewall_default",
        "rate_limited",
        "no_config",
        "chain_broken",
        "ttl_exceeded",
        "forward_failed",
        "nat_ports_exhausted",
        "lb_no_backend",
        "no_xsk",
        "encapsulation_depth",
        "extension_header_depth",
        "tiny_fragment",
        "fragment_unknown_flow",
        "non_ip",
        "fragment_parked",
        "fragment_expired",
    ];
}

/// Classifier field bits (`VNF_CLS_F_*`).
pub mod cls {
    pub const FAMILY: u32 = 1 << 0;
    pub const PROTO: u32 = 1 << 1;
    pub const SRC: u32 = 1 << 2;
    pub const DST: u32 = 1 << 3;
    pub const SPORT: u32 = 1 << 4;
    pub const DPORT: u32 = 1 << 5;
}

/// Firewall actions (`enum vnf_action`).
pub const ACT_ALLOW: u8 = 0;
/// Firewall deny action.
pub const ACT_DENY: u8 = 1;
/// `VNF_FW_F_CONNTRACK`.
pub const FW_F_CONNTRACK: u8 = 1;
/// `VNF_FW_F_ANY_SRC`: no rule constrains the source address.
pub const FW_F_ANY_SRC: u8 = 1 << 1;
/// `VNF_FW_F_ANY_DST`: no rule constrains the destination address.
pub const FW_F_ANY_DST: u8 = 1 << 2;

/// Forwarder modes and flags.
pub mod fwd {
    pub const PASS: u8 = 0;
    pub const TX: u8 = 1;
    pub const REDIRECT: u8 = 2;
    pub const DROP: u8 = 3;
    pub const F_SMAC: u8 = 1 << 0;
    pub const F_DMAC: u8 = 1 << 1;
    pub const F_DEC_TTL: u8 = 1 << 2;
}

/// Monitor classes (`enum vnf_mon_class`).
pub mod mon {
    pub const TCP: u8 = 0;
    pub const UDP: u8 = 1;
    pub const ICMP: u8 = 2;
    pub const OTHER_V4: u8 = 3;
    pub const OTHER_V6: u8 = 4;
    pub const FRAGMENT: u8 = 5;
    pub const NON_IP: u8 = 6;
    pub const MALFORMED: u8 = 7;
}

/// Rate limiter key modes (`enum vnf_rl_key_mode`).
pub mod rl {
    pub const KEY_GLOBAL: u8 = 0;
    pub const KEY_SRC: u8 = 1;
    pub const KEY_FLOW: u8 = 2;
}

/// NAT flags (`VNF_NAT_F_*`).
pub mod nat {
    pub const F_SNAT: u8 = 1 << 0;
    pub const F_SNAT_ANY: u8 = 1 << 1;
}

/// Monitor counter modes (`enum vnf_mon_count_by`) and their catch-all keys.
pub mod mon_by {
    pub const CLASS: u8 = 0;
    pub const DPORT: u8 = 1;
    pub const DSCP: u8 = 2;
    /// `VNF_MON_NO_PORT`: key of packets without a TCP/UDP port.
    pub const NO_PORT: u32 = 65_536;
    /// `VNF_MON_NO_DSCP`: key of non-IP packets.
    pub const NO_DSCP: u32 = 64;
}

/// `struct vnf_port_range`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRangeAbi {
    pub lo: u16,
    pub hi: u16,
}

/// `struct vnf_classifier`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Classifier {
    pub fields: u32,
    pub family: u8,
    pub proto: u8,
    pub nr_sports: u8,
    pub nr_dports: u8,
    pub sports: [PortRangeAbi; CLS_MAX_PORTS],
    pub dports: [PortRangeAbi; CLS_MAX_PORTS],
}

/// `struct vnf_gen_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenCfg {
    pub chain_len: u32,
    pub latency_sample_rate: u32,
    pub cls: Classifier,
    /// EtherTypes (host order) of the non-IP frames the chain's firewalls let pass.
    pub non_ip: [u16; NON_IP_MAX],
    /// Used entries of `non_ip`.
    pub nr_non_ip: u32,
}

/// `struct vnf_slot`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub instance: u32,
    pub kind: u32,
}

/// `struct vnf_scratch` (only read by tests/debugging).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scratch {
    pub entry_ns: u64,
    pub countdown: u64,
    pub generation: u32,
    pub pos: u32,
    pub chain_len: u32,
    pub reason: u32,
    pub sampled: u32,
    pub state: u32,
    pub mark_ns: u64,
    pub rev_n: u32,
    pub new_flow: u32,
}

/// `struct vnf_instance_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceCfg {
    pub kind: u32,
    pub latency_sample_rate: u32,
    pub state: u32,
    pub _pad: u32,
}

/// `struct vnf_fn_stats` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FnStats {
    pub pkts_in: u64,
    pub bytes_in: u64,
    pub passed: u64,
    pub aux: u64,
    pub dropped: [u64; NR_REASONS],
    pub latency_hist: [u64; HIST_BUCKETS],
}

/// `struct vnf_chain_stats` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainStats {
    pub classified: u64,
    pub bypassed: u64,
    pub completed: u64,
    pub broken: u64,
    pub latency_hist: [u64; HIST_BUCKETS],
    /// Of `completed`: packets that took the fast path (`ebpf/lib/fastpath.h`).
    pub fast: u64,
    /// Sampled entry-to-verdict latency of the fast-path packets alone.
    pub fast_hist: [u64; HIST_BUCKETS],
}

/// `struct vnf_tuple`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// `struct vnf_fw_bm`: a rule bitmap in the word pool and its aggregate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FwBm {
    pub word_off: u32,
    pub _pad: u32,
    pub agg: [u64; FW_AGG_WORDS],
}

/// `struct vnf_fw_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwCfg {
    pub default_action: u8,
    pub flags: u8,
    pub nwords: u16,
    pub nr_rules: u32,
    pub ct_timeout_ns: u64,
    pub rule_off: u32,
    pub sport_off: u32,
    pub sport_n: u32,
    pub dport_off: u32,
    pub dport_n: u32,
    /// Policy version: conntrack entries stamped with another one are re-checked against the rules.
    pub version: u32,
    pub noport: FwBm,
    pub any: FwBm,
}

/// `struct vnf_fw_port_seg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwPortSeg {
    pub lo: u16,
    pub _pad: u16,
    pub _pad2: u32,
    pub bm: FwBm,
}

/// Data part of `struct vnf_lpm4_key` (aya's `lpm_trie::Key` adds `prefixlen`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lpm4Data {
    /// Instance id, big-endian (the first 32 prefix bits).
    pub instance_be: u32,
    pub addr: [u8; 4],
}

/// Data part of `struct vnf_lpm6_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lpm6Data {
    pub instance_be: u32,
    pub addr: [u8; 16],
}

/// `struct vnf_ct_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtKey {
    pub instance: u32,
    pub _pad: u32,
    pub t: Tuple,
}

/// `struct vnf_ct_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtVal {
    pub last_seen_ns: u64,
    pub packets: u32,
    /// [`FwCfg::version`] of the policy that last allowed the flow.
    pub version: u32,
}

/// `struct vnf_frag_key` (LRU hash `vnf_frags`, written by the parser only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub id: u32,
    /// IPv4: the protocol; IPv6: 0 (only the first fragment's next header counts).
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// `struct vnf_frag_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragVal {
    pub seen_ns: u64,
    pub sport: u16,
    pub dport: u16,
    pub l4_hlen: u16,
    pub proto: u8,
    pub l4_valid: u8,
}

/// `struct vnf_fwd_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwdCfg {
    pub mode: u8,
    pub flags: u8,
    pub _pad: [u8; 2],
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}

/// `struct vnf_mon_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonCfg {
    pub sample_rate: u32,
    pub count_by: u8,
    pub _pad: [u8; 3],
}

/// `struct vnf_mon_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonKey {
    pub instance: u32,
    pub value: u32,
}

/// `struct vnf_mon_counter` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonCounter {
    pub packets: u64,
    pub bytes: u64,
}

/// `struct vnf_mon_sample`: one ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonSample {
    pub ts_ns: u64,
    pub instance: u32,
    pub ifindex: u32,
    pub pkt_len: u32,
    pub class: u8,
    pub tcp_flags: u8,
    pub _pad: [u8; 2],
    pub t: Tuple,
}

impl MonSample {
    /// Decodes a ring-buffer record (`None` if it is too short).
    pub fn from_bytes(buf: &[u8]) -> Option<Self> {
        if buf.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: `Self` is a padding-free `repr(C)` POD for which every bit
        // pattern is valid; the length was checked and `read_unaligned`
        // tolerates any alignment of the ring-buffer slice.
        Some(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<Self>()) })
    }
}

/// `struct vnf_rl_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RlCfg {
    pub key_mode: u8,
    pub _pad: [u8; 7],
    pub pkt_inc_ns: u64,
    pub pkt_tau_ns: u64,
    pub byte_inc_q16: u64,
    pub byte_tau_ns: u64,
}

/// `struct vnf_rl_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RlKey {
    pub instance: u32,
    pub _pad: u32,
    pub t: Tuple,
}

/// `struct vnf_rl_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RlState {
    pub pkt_tat_ns: u64,
    pub byte_tat_ns: u64,
}

/// `struct vnf_nat_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatCfg {
    pub flags: u8,
    pub snat_family: u8,
    pub port_lo: u16,
    pub port_hi: u16,
    pub nr_dnat: u16,
    pub timeout_ns: u64,
    pub snat_addr: [u8; 16],
}

/// `struct vnf_nat_dnat_key`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NatDnatKey {
    pub instance: u32,
    pub proto: u8,
    pub family: u8,
    pub port: u16,
    pub addr: [u8; 16],
}

/// `struct vnf_nat_dnat_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatDnatVal {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 2],
}

/// `struct vnf_nat_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatKey {
    pub instance: u32,
    pub _pad: u32,
    pub t: Tuple,
}

/// `struct vnf_nat_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatVal {
    pub last_seen_ns: u64,
    pub addr: [u8; 16],
    pub port: u16,
    pub rewrite_src: u8,
    pub _pad: [u8; 5],
}

/// `struct vnf_lb_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbCfg {
    pub family: u8,
    pub proto: u8,
    pub vip_port: u16,
    pub nr_backends: u32,
    pub affinity_timeout_ns: u64,
    pub vip: [u8; 16],
    pub table_off: u32,
    pub table_size: u32,
}

/// `struct vnf_lb_backend`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbBackend {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 2],
}

// SAFETY: all types below are `repr(C)`, contain only integers and integer
// arrays, have no implicit padding (checked by the layout tests), and every
// bit pattern is a valid value, which is what `aya::Pod` requires.
unsafe impl Pod for Classifier {}
// SAFETY: see above.
unsafe impl Pod for PortRangeAbi {}
// SAFETY: see above.
unsafe impl Pod for MonKey {}
// SAFETY: see above.
unsafe impl Pod for NatDnatKey {}
// SAFETY: see above.
unsafe impl Pod for NatDnatVal {}
// SAFETY: see above.
unsafe impl Pod for GenCfg {}
// SAFETY: see above.
unsafe impl Pod for Slot {}
// SAFETY: see above.
unsafe impl Pod for Scratch {}
// SAFETY: see above.
unsafe impl Pod for InstanceCfg {}
// SAFETY: see above.
unsafe impl Pod for FnStats {}
// SAFETY: see above.
unsafe impl Pod for ChainStats {}
// SAFETY: see above.
unsafe impl Pod for Tuple {}
// SAFETY: see above.
unsafe impl Pod for FwCfg {}
// SAFETY: see above.
unsafe impl Pod for FwBm {}
// SAFETY: see above.
unsafe impl Pod for FwPortSeg {}
// SAFETY: see above.
unsafe impl Pod for Lpm4Data {}
// SAFETY: see above.
unsafe impl Pod for Lpm6Data {}
// SAFETY: see above.
unsafe impl Pod for CtKey {}
// SAFETY: see above.
unsafe impl Pod for CtVal {}
// SAFETY: see above.
unsafe impl Pod for FwdCfg {}
// SAFETY: see above.
unsafe impl Pod for MonCfg {}
// SAFETY: see above.
unsafe impl Pod for MonCounter {}
// SAFETY: see above.
unsafe impl Pod for MonSample {}
// SAFETY: see above.
unsafe impl Pod for RlCfg {}
// SAFETY: see above.
unsafe impl Pod for RlKey {}
// SAFETY: see above.
unsafe impl Pod for RlState {}
// SAFETY: see above.
unsafe impl Pod for NatCfg {}
// SAFETY: see above.
unsafe impl Pod for NatKey {}
// SAFETY: see above.
unsafe impl Pod for NatVal {}
// SAFETY: see above.
unsafe impl Pod for LbCfg {}
// SAFETY: see above.
unsafe impl Pod for LbBackend {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    /// Sizes from the `_Static_assert`s in vnf_shared.h.
    #[test]
    fn sizes_match_c_header() {
        assert_eq!(size_of::<PortRangeAbi>(), 4);
        assert_eq!(size_of::<Classifier>(), 136);
        assert_eq!(size_of::<GenCfg>(), 164);
        assert_eq!(size_of::<MonKey>(), 8);
        assert_eq!(size_of::<NatDnatKey>(), 24);
        assert_eq!(size_of::<NatDnatVal>(), 20);
        assert_eq!(size_of::<Slot>(), 8);
        assert_eq!(size_of::<Scratch>(), 56);
        assert_eq!(size_of::<InstanceCfg>(), 16);
        assert_eq!(size_of::<FnStats>(), 440);
        assert_eq!(size_of::<ChainStats>(), 552);
        assert_eq!(size_of::<Tuple>(), 40);
        assert_eq!(size_of::<FwCfg>(), 104);
        assert_eq!(size_of::<FwBm>(), 32);
        assert_eq!(size_of::<FwPortSeg>(), 40);
        assert_eq!(size_of::<Lpm4Data>() + 4, 12);
        assert_eq!(size_of::<Lpm6Data>() + 4, 24);
        assert_eq!(size_of::<CtKey>(), 48);
        assert_eq!(size_of::<CtVal>(), 16);
        assert_eq!(size_of::<FragKey>(), 40);
        assert_eq!(size_of::<FragVal>(), 16);
        assert_eq!(size_of::<FwdCfg>(), 20);
        assert_eq!(size_of::<MonCfg>(), 8);
        assert_eq!(size_of::<MonCounter>(), 16);
        assert_eq!(size_of::<MonSample>(), 64);
        assert_eq!(size_of::<RlCfg>(), 40);
        assert_eq!(size_of::<RlKey>(), 48);
        assert_eq!(size_of::<RlState>(), 16);
        assert_eq!(size_of::<NatCfg>(), 32);
        assert_eq!(size_of::<NatKey>(), 48);
        assert_eq!(size_of::<NatVal>(), 32);
        assert_eq!(size_of::<LbCfg>(), 40);
        assert_eq!(size_of::<LbBackend>(), 20);
    }

    #[test]
    fn offsets_and_alignment_match_c_header() {
        assert_eq!(offset_of!(Classifier, family), 4);
        assert_eq!(offset_of!(Classifier, nr_sports), 6);
        assert_eq!(offset_of!(Classifier, sports), 8);
        assert_eq!(offset_of!(Classifier, dports), 72);
        assert_eq!(offset_of!(MonCfg, count_by), 4);
        assert_eq!(offset_of!(NatDnatKey, port), 6);
        assert_eq!(offset_of!(NatDnatKey, addr), 8);
        assert_eq!(offset_of!(NatDnatVal, port), 16);
        assert_eq!(offset_of!(LbCfg, table_off), 32);
        assert_eq!(offset_of!(LbCfg, table_size), 36);
        assert_eq!(offset_of!(GenCfg, cls), 8);
        assert_eq!(offset_of!(GenCfg, non_ip), 144);
        assert_eq!(offset_of!(GenCfg, nr_non_ip), 160);
        assert_eq!(offset_of!(Scratch, generation), 16);
        assert_eq!(offset_of!(Scratch, reason), 28);
        assert_eq!(offset_of!(FnStats, dropped), 32);
        assert_eq!(offset_of!(FnStats, latency_hist), 32 + 8 * NR_REASONS);
        assert_eq!(offset_of!(ChainStats, latency_hist), 32);
        assert_eq!(offset_of!(ChainStats, fast), 288);
        assert_eq!(offset_of!(ChainStats, fast_hist), 296);
        assert_eq!(offset_of!(Tuple, sport), 32);
        assert_eq!(offset_of!(Tuple, proto), 36);
        assert_eq!(offset_of!(Tuple, family), 37);
        assert_eq!(offset_of!(FwCfg, nr_rules), 4);
        assert_eq!(offset_of!(FwCfg, ct_timeout_ns), 8);
        assert_eq!(offset_of!(FwCfg, rule_off), 16);
        assert_eq!(offset_of!(FwCfg, dport_n), 32);
        assert_eq!(offset_of!(FwCfg, version), 36);
        assert_eq!(offset_of!(CtVal, version), 12);
        assert_eq!(offset_of!(FragKey, id), 32);
        assert_eq!(offset_of!(FragVal, l4_hlen), 12);
        assert_eq!(offset_of!(FwCfg, noport), 40);
        assert_eq!(offset_of!(FwCfg, any), 72);
        assert_eq!(offset_of!(FwBm, agg), 8);
        assert_eq!(offset_of!(FwPortSeg, bm), 8);
        assert_eq!(offset_of!(Lpm6Data, addr), 4);
        assert_eq!(offset_of!(CtKey, t), 8);
        assert_eq!(offset_of!(FwdCfg, ifindex), 4);
        assert_eq!(offset_of!(FwdCfg, smac), 8);
        assert_eq!(offset_of!(FwdCfg, dmac), 14);
        assert_eq!(offset_of!(MonSample, pkt_len), 16);
        assert_eq!(offset_of!(MonSample, class), 20);
        assert_eq!(offset_of!(MonSample, t), 24);
        assert_eq!(offset_of!(RlCfg, pkt_inc_ns), 8);
        assert_eq!(offset_of!(RlCfg, byte_tau_ns), 32);
        assert_eq!(offset_of!(RlKey, t), 8);
        assert_eq!(offset_of!(NatCfg, port_lo), 2);
        assert_eq!(offset_of!(NatCfg, nr_dnat), 6);
        assert_eq!(offset_of!(NatCfg, timeout_ns), 8);
        assert_eq!(offset_of!(NatCfg, snat_addr), 16);
        assert_eq!(offset_of!(NatVal, addr), 8);
        assert_eq!(offset_of!(NatVal, port), 24);
        assert_eq!(offset_of!(NatVal, rewrite_src), 26);
        assert_eq!(offset_of!(LbCfg, nr_backends), 4);
        assert_eq!(offset_of!(LbCfg, affinity_timeout_ns), 8);
        assert_eq!(offset_of!(LbCfg, vip), 16);
        assert_eq!(offset_of!(LbBackend, port), 16);
        assert_eq!(align_of::<GenCfg>(), 4);
        assert_eq!(align_of::<FnStats>(), 8);
        assert_eq!(align_of::<FwCfg>(), 8);
        assert_eq!(align_of::<MonSample>(), 8);
        assert_eq!(align_of::<RlCfg>(), 8);
    }

    #[test]
    fn mon_sample_decodes_from_unaligned_bytes() {
        let mut buf = [0u8; 65];
        buf[1 + 16..1 + 20].copy_from_slice(&1500u32.to_ne_bytes());
        buf[1 + 20] = mon::UDP;
        let s = MonSample::from_bytes(&buf[1..]).expect("long enough");
        assert_eq!(s.pkt_len, 1500);
        assert_eq!(s.class, mon::UDP);
        assert!(MonSample::from_bytes(&buf[..63]).is_none());
    }
}
