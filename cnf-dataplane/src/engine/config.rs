//! Engine-level chain configuration: plain Rust types, independent of the Kubernetes API.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use super::error::{EngineError, Result};

/// An IPv4 or IPv6 prefix, e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpCidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpCidr {
    /// Creates a prefix; host bits are cleared.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(EngineError::Config(format!(
                "prefix length {prefix_len} exceeds {max} for {addr}"
            )));
        }
        let mut c = Self { addr, prefix_len };
        let masked = c.masked_bytes();
        c.addr = match addr {
            IpAddr::V4(_) => {
                let mut b = [0u8; 4];
                b.copy_from_slice(&masked[..4]);
                IpAddr::from(b)
            }
            IpAddr::V6(_) => IpAddr::from(masked),
        };
        Ok(c)
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// 4 for IPv4, 6 for IPv6.
    pub fn family(&self) -> u8 {
        if self.addr.is_ipv4() { 4 } else { 6 }
    }

    /// Address bytes (IPv4 in the first four) with host bits cleared.
    pub fn masked_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        match self.addr {
            IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
        }
        for (i, byte) in out.iter_mut().enumerate() {
            let bits = i * 8;
            let plen = usize::from(self.prefix_len);
            if bits >= plen {
                *byte = 0;
            } else if plen - bits < 8 {
                *byte &= 0xffu8 << (8 - (plen - bits));
            }
        }
        out
    }

    /// Does this prefix contain `addr` (same family)?
    pub fn contains(&self, addr: IpAddr) -> bool {
        if addr.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let other = Self {
            addr,
            prefix_len: self.prefix_len,
        };
        other.masked_bytes() == self.masked_bytes()
    }

    /// Does this prefix contain the whole of `other`?
    pub fn contains_cidr(&self, other: &IpCidr) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.addr)
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn any(family: u8) -> Self {
        let addr = if family == 4 {
            IpAddr::from([0u8; 4])
        } else {
            IpAddr::from([0u8; 16])
        };
        Self {
            addr,
            prefix_len: 0,
        }
    }
}

impl FromStr for IpCidr {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || EngineError::Config(format!("invalid CIDR {s:?}"));
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len = match len {
            Some(l) => l.parse::<u8>().map_err(|_| bad())?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        Self::new(addr, len)
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// A validated range `lo..=hi`.
    pub fn new(lo: u16, hi: u16) -> Result<Self> {
        if lo > hi {
            return Err(EngineError::Config(format!(
                "port range {lo}-{hi} is empty"
            )));
        }
        Ok(Self { lo, hi })
    }

    /// A single port.
    pub fn single(port: u16) -> Self {
        Self { lo: port, hi: port }
    }

    /// Does the range contain `port`?
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// Which traffic enters the chain; everything else bypasses it untouched.
/// All given criteria must match; within one list, any element may match (OR).
/// An empty list matches anything; an empty classifier matches every frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// IP family (4 or 6).
    pub family: Option<u8>,
    /// IP protocol number (6 = TCP, 17 = UDP, ...).
    pub protocol: Option<u8>,
    /// Source prefixes, IPv4 and/or IPv6 (at most [`MAX_CLASSIFIER_CIDRS`]).
    pub src: Vec<IpCidr>,
    /// Destination prefixes, IPv4 and/or IPv6 (at most [`MAX_CLASSIFIER_CIDRS`]).
    pub dst: Vec<IpCidr>,
    /// TCP/UDP source port ranges (at most [`MAX_CLASSIFIER_PORTS`]).
    pub src_ports: Vec<PortRange>,
    /// TCP/UDP destination port ranges (at most [`MAX_CLASSIFIER_PORTS`]).
    pub dst_ports: Vec<PortRange>,
}

/// Most prefixes per classifier address field.
pub const MAX_CLASSIFIER_CIDRS: usize = 64;
/// Most port ranges per classifier port field.
pub const MAX_CLASSIFIER_PORTS: usize = super::abi::CLS_MAX_PORTS;

/// Firewall verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the packet continue.
    #[default]
    Allow,
    /// Drop the packet.
    Deny,
}

/// One firewall rule; `None` fields are wildcards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallRule {
    /// Lower numbers are evaluated first.
    pub priority: u32,
    /// What to do on match.
    pub action: Action,
    /// IP protocol number.
    pub protocol: Option<u8>,
    /// Source prefix.
    pub src: Option<IpCidr>,
    /// Destination prefix.
    pub dst: Option<IpCidr>,
    /// Source port range (TCP/UDP only).
    pub src_ports: Option<PortRange>,
    /// Destination port range (TCP/UDP only).
    pub dst_ports: Option<PortRange>,
}

/// Firewall function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallConfig {
    /// Ordered rules (at most [`super::abi::FW_MAX_RULES`]).
    pub rules: Vec<FirewallRule>,
    /// Verdict when no rule matches.
    pub default_action: Action,
    /// Track allowed flows so their replies pass.
    pub conntrack: bool,
    /// Idle timeout of tracked flows.
    pub conntrack_timeout: Duration,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_action: Action::Allow,
            conntrack: false,
            conntrack_timeout: Duration::from_secs(120),
        }
    }
}

/// What the forwarder does with the packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardMode {
    /// Hand to the kernel stack.
    #[default]
    Pass,
    /// Send back out of the ingress interface.
    Tx,
    /// Redirect out of another interface.
    Redirect {
        /// Target interface index.
        ifindex: u32,
    },
    /// Drop everything.
    Drop,
}

/// Forwarder function (terminal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Verdict.
    pub mode: ForwardMode,
    /// Rewrite the source MAC.
    pub src_mac: Option<[u8; 6]>,
    /// Rewrite the destination MAC.
    pub dst_mac: Option<[u8; 6]>,
    /// Decrement the IPv4 TTL / IPv6 hop limit (drop at 1).
    pub decrement_ttl: bool,
}

/// How the monitor splits its counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CountBy {
    /// Fixed classes: TCP, UDP, ICMP, other v4/v6, fragments, non-IP, malformed.
    #[default]
    Protocol,
    /// One counter pair per TCP/UDP destination port (other packets: port 0).
    DestinationPort,
    /// One counter pair per DSCP value (non-IP: 0).
    Dscp,
}

/// Monitor function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Emit metadata of 1 in N packets (per CPU) to the ring buffer; 0 = none.
    pub sample_rate: u32,
    /// Counter classes.
    pub count_by: CountBy,
}

/// What a rate-limiter bucket is keyed by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateLimitKey {
    /// One bucket for all traffic.
    #[default]
    Global,
    /// One bucket per source address.
    SourceIp,
    /// One bucket per 5-tuple.
    Flow,
}

/// Rate limiter function; at least one of the two rates must be set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimiterConfig {
    /// Bucket key.
    pub key: RateLimitKey,
    /// Packets per second.
    pub packets_per_sec: Option<u64>,
    /// Packet burst (bucket depth); at least 1 when the packet rate is set.
    pub burst_packets: u64,
    /// Bits per second (counting the frame as seen by the hook).
    pub bits_per_sec: Option<u64>,
    /// Byte burst (bucket depth in bytes); at least 64 when the bit rate is set.
    pub burst_bytes: u64,
}

/// Address translation rule of a NAT function (TCP and UDP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatRule {
    /// Flows from any of `match_src` leave as `to_addr` with a source port from `ports`.
    Snat {
        /// Sources to translate (any of them, same family as `to_addr`); empty = every
        /// flow of `to_addr`'s family.
        match_src: Vec<IpCidr>,
        /// Translated source address.
        to_addr: IpAddr,
        /// Pool of translated source ports.
        ports: PortRange,
    },
    /// Flows to `match_dst[:match_port]` are sent to `to_addr[:to_port]`.
    Dnat {
        /// 6 (TCP) or 17 (UDP); `None` = both.
        protocol: Option<u8>,
        /// Destination address to translate.
        match_dst: IpAddr,
        /// Destination port to translate (`None` = any).
        match_port: Option<u16>,
        /// New destination address (same family).
        to_addr: IpAddr,
        /// New destination port (`None` = keep).
        to_port: Option<u16>,
    },
}

/// NAT function: at most one SNAT rule plus any number of static DNAT mappings
/// (at most [`MAX_DNAT`]), with connection tracking.  A new flow that matches
/// a DNAT mapping is destination-translated (and not source-translated); any
/// other new flow whose source matches the SNAT rule is source-translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// The translations.
    pub rules: Vec<NatRule>,
    /// Idle timeout of a translated flow.
    pub timeout: Duration,
}

/// Most DNAT mappings per NAT function.
pub const MAX_DNAT: usize = 1024;

/// One load-balancer backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbBackendConfig {
    /// Backend address (same family as the VIP).
    pub addr: IpAddr,
    /// Backend port (`None` = the client's destination port).
    pub port: Option<u16>,
    /// Relative share of new flows (1..=1000).
    pub weight: u32,
}

/// L4 load balancer: DNAT from the VIP to a Maglev-chosen backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbConfig {
    /// Virtual IP.
    pub vip: IpAddr,
    /// Virtual port (`None` = any).
    pub port: Option<u16>,
    /// 6 (TCP) or 17 (UDP); `None` = both.
    pub protocol: Option<u8>,
    /// Backends (1..=32).
    pub backends: Vec<LbBackendConfig>,
    /// Idle timeout after which a flow may be re-balanced.
    pub affinity_timeout: Duration,
    /// Maglev lookup-table size: a prime of at most [`MAX_MAGLEV_TABLE`], larger than
    /// the number of backends (the API asks for at least 65537).
    pub table_size: u32,
}

/// Largest Maglev table one load balancer may use (the shared slot pool holds
/// [`super::abi::LB_POOL`] slots for every live load-balancer instance).
pub const MAX_MAGLEV_TABLE: u32 = 1_048_573;

/// The kind-specific part of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    /// Ordered-rule firewall.
    Firewall(FirewallConfig),
    /// MAC rewrite and redirect/TX/pass.
    Forwarder(ForwarderConfig),
    /// Counters and sampled metadata.
    Monitor(MonitorConfig),
    /// Token-bucket rate limiter.
    RateLimiter(RateLimiterConfig),
    /// Stateful SNAT/DNAT.
    Nat(NatConfig),
    /// Maglev L4 load balancer.
    LoadBalancer(LbConfig),
    /// Hand the packet to the user-space tier (the AF_XDP socket registered for its
    /// receive queue with [`super::Engine::register_xsk`]); XDP only.
    UserspaceHandoff,
}

/// One function of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionConfig {
    /// Human-readable name (for reports).
    pub name: String,
    /// Record this function's latency (0 = off). Packets are sampled once, at the chain's
    /// entry, at the chain's rate (or, if the chain's is 0, the smallest non-zero function
    /// rate), so the function's histogram holds the packets the chain samples.
    pub latency_sample_rate: u32,
    /// What the function does.
    pub kind: FunctionKind,
}

impl FunctionConfig {
    /// A function with latency sampling off.
    pub fn new(name: impl Into<String>, kind: FunctionKind) -> Self {
        Self {
            name: name.into(),
            latency_sample_rate: 0,
            kind,
        }
    }
}

/// A whole chain: classifier plus ordered functions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainConfig {
    /// Which traffic enters the chain.
    pub classifier: ClassifierConfig,
    /// Functions in order (at most 16); empty = chain disabled.
    pub functions: Vec<FunctionConfig>,
    /// Time 1 in N classified packets from entry to verdict (and through each function
    /// whose rate is non-zero); 0 = off.
    pub latency_sample_rate: u32,
    /// The non-IP frames the chain's firewalls let pass (`spec.nonIp`).
    pub non_ip: NonIpConfig,
}

/// EtherType of ARP, the one non-IP protocol a filtering chain lets pass by default.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// The non-IP EtherTypes (after VLAN tags) a filtering chain lets pass; every firewall of the chain
/// drops other non-IP frames with reason `non_ip`, whatever its rules and default action. A chain
/// without a firewall passes every non-IP frame. Default: ARP only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonIpConfig {
    /// At most [`super::abi::NON_IP_MAX`] EtherTypes; never IPv4, IPv6, a VLAN TPID or an 802.3
    /// length (below `0x0600`).
    pub allow: Vec<u16>,
}

impl Default for NonIpConfig {
    fn default() -> Self {
        Self {
            allow: vec![ETHERTYPE_ARP],
        }
    }
}

impl NonIpConfig {
    /// Checks the list: the bound, and no EtherType the parser treats as IP or as a tag.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.allow.len() > super::abi::NON_IP_MAX {
            return Err(format!(
                "non-IP allow list: at most {} EtherTypes, got {}",
                super::abi::NON_IP_MAX,
                self.allow.len()
            ));
        }
        for &t in &self.allow {
            if matches!(t, 0x0800 | 0x86dd | 0x8100 | 0x88a8 | 0x9100) || t < 0x0600 {
                return Err(format!(
                    "non-IP allow list: EtherType {t:#06x} is IP, a VLAN tag or not an EtherType"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_masks_host_bits() {
        let c: IpCidr = "10.1.2.3/8".parse().expect("valid");
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains("10.200.0.1".parse().expect("ip")));
        assert!(!c.contains("11.0.0.1".parse().expect("ip")));
        let c6: IpCidr = "2001:db8::1/33".parse().expect("valid");
        assert_eq!(c6.to_string(), "2001:db8::/33");
        assert!(c6.contains("2001:db8:7fff::1".parse().expect("ip")));
        assert!(!c6.contains("2001:db8:8000::1".parse().expect("ip")));
        assert!(!c6.contains("10.0.0.1".parse().expect("ip")));
        let host: IpCidr = "192.0.2.7".parse().expect("valid");
        assert_eq!(host.prefix_len(), 32);
    }

    #[test]
    fn cidr_rejects_garbage() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/1",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<IpCidr>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn cidr_containment() {
        let a: IpCidr = "10.0.0.0/8".parse().expect("valid");
        let b: IpCidr = "10.1.0.0/16".parse().expect("valid");
        assert!(a.contains_cidr(&b));
        assert!(!b.contains_cidr(&a));
        assert!(IpCidr::any(4).contains_cidr(&a));
        assert!(!IpCidr::any(6).contains_cidr(&a));
    }

    #[test]
    fn port_range_validation() {
        assert!(PortRange::new(10, 9).is_err());
        let r = PortRange::new(80, 90).expect("valid");
        assert!(r.contains(80) && r.contains(90) && !r.contains(91));
    }
}
