//! The network functions a chain is made of: one typed configuration block per function type.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::net::{Cidr, DnsLabel, InterfaceName, IpAddress, MacAddress, PortRange};

// The list limits below are also the schema's `maxItems` (the attributes are literals; `crds/tests/cel_cost.rs`
// checks they agree). The API server multiplies the estimated cost of a CEL rule by the `maxItems` of every list
// above it (functions × rules × port ranges for a port range's rule) and refuses a CRD whose rules exceed its
// budget; these bounds keep every rule under half of it, and that test computes the estimate as the API server does.
//
// Integer fields declare `format: int32`/`int64`, the formats the API server knows (schemars would say
// `uint16`/`uint32`/`uint64`, which the API server warns about); `minimum`/`maximum` carry the exact bounds.

/// Most rules a firewall may hold (the data plane's LPM tries are sized for this).
pub const MAX_FIREWALL_RULES: usize = 10_000;
/// Most functions in one chain (the size of a generation's slice of the program array).
pub const MAX_FUNCTIONS: usize = 16;
/// Most port ranges in one `sourcePorts` or `destinationPorts` list (of the classifier or of a firewall rule).
pub const MAX_PORT_RANGES: usize = 4;
/// Most prefixes in one CIDR list (`sourceCIDRs`, `destinationCIDRs`, `snat.sourceCIDRs`).
pub const MAX_PREFIXES: usize = 64;
/// Smallest Maglev lookup table (a prime).
pub const MIN_MAGLEV_TABLE: u32 = 65_537;

/// The kind of a network function; its configuration goes in the block of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FunctionType {
    /// Ordered allow/deny rules on protocol, CIDRs and ports (block `firewall`).
    Firewall,
    /// Source NAT to an address and port range, static destination NAT (block `nat`).
    Nat,
    /// L4 load balancer with Maglev hashing over weighted backends (block `loadBalancer`).
    LoadBalancer,
    /// Token-bucket rate limiter in packets and/or bits per second (block `rateLimiter`).
    RateLimiter,
    /// Per-class counters and sampled packet metadata (block `monitor`).
    Monitor,
    /// MAC rewrite and redirect to the egress interface; must be last (block `forwarder`).
    Forwarder,
    /// Authenticated payload encryption/decryption in the user-space tier (block `payloadCipher`).
    PayloadCipher,
}

impl FunctionType {
    /// Every function type, in declaration order.
    pub const ALL: [FunctionType; 7] = [
        FunctionType::Firewall,
        FunctionType::Nat,
        FunctionType::LoadBalancer,
        FunctionType::RateLimiter,
        FunctionType::Monitor,
        FunctionType::Forwarder,
        FunctionType::PayloadCipher,
    ];

    /// The YAML name of the type, which is also the name of its configuration block.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionType::Firewall => "firewall",
            FunctionType::Nat => "nat",
            FunctionType::LoadBalancer => "loadBalancer",
            FunctionType::RateLimiter => "rateLimiter",
            FunctionType::Monitor => "monitor",
            FunctionType::Forwarder => "forwarder",
            FunctionType::PayloadCipher => "payloadCipher",
        }
    }

    /// Which tiers can run this type today.
    pub fn supports(self, tier: Tier) -> bool {
        match (self, tier) {
            (_, Tier::Auto) => true,
            (FunctionType::PayloadCipher, t) => t == Tier::Userspace,
            (_, t) => t == Tier::Kernel,
        }
    }

    /// The tier `auto` resolves to.
    pub fn default_tier(self) -> Tier {
        match self {
            FunctionType::PayloadCipher => Tier::Userspace,
            _ => Tier::Kernel,
        }
    }
}

impl std::fmt::Display for FunctionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a function runs: in the kernel (eBPF at XDP/TC) or in the user-space tier (AF_XDP/DPDK).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Tier {
    /// The data plane picks: kernel for elementary functions, user space for advanced ones.
    #[default]
    Auto,
    /// eBPF in the kernel.
    Kernel,
    /// Rust on AF_XDP sockets (or DPDK) in the sidecar.
    Userspace,
}

/// An L3/L4 protocol to match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Protocol {
    /// Any IP protocol.
    #[default]
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (IPv4).
    Icmp,
    /// ICMPv6.
    Icmpv6,
}

impl Protocol {
    /// Whether port ranges mean anything for this protocol.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }

    /// Whether every packet matched by `other` is matched by `self`.
    pub fn covers(self, other: Protocol) -> bool {
        self == Protocol::Any || self == other
    }
}

/// What a firewall does with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Let the packet continue along the chain.
    Allow,
    /// Drop the packet.
    Deny,
}

/// Which packets something applies to: the chain classifier, and each firewall rule (beside its action).
/// Every field that is set must match; empty lists match anything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(has(self.protocol) && self.protocol in ['tcp', 'udp']) || ((!has(self.sourcePorts) || size(self.sourcePorts) == 0) && (!has(self.destinationPorts) || size(self.destinationPorts) == 0))").message("ports can only be matched with protocol tcp or udp"))]
pub struct TrafficMatch {
    /// Protocol to match.
    #[serde(default)]
    pub protocol: Protocol,
    /// Source prefixes, IPv4 and/or IPv6 (any of them); empty matches any source.
    #[serde(default, rename = "sourceCIDRs")]
    #[schemars(length(max = 64))]
    pub source_cidrs: Vec<Cidr>,
    /// Destination prefixes, IPv4 and/or IPv6 (any of them); empty matches any destination.
    #[serde(default, rename = "destinationCIDRs")]
    #[schemars(length(max = 64))]
    pub destination_cidrs: Vec<Cidr>,
    /// Source port ranges (any of them); TCP and UDP only.
    #[serde(default)]
    #[schemars(length(max = 4))] // MAX_PORT_RANGES
    pub source_ports: Vec<PortRange>,
    /// Destination port ranges (any of them); TCP and UDP only.
    #[serde(default)]
    #[schemars(length(max = 4))] // MAX_PORT_RANGES
    pub destination_ports: Vec<PortRange>,
}

/// One firewall rule: an action for the packets its match selects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirewallRule {
    /// What to do with a packet that matches.
    pub action: Action,
    /// The packets this rule is about.
    #[serde(flatten)]
    pub traffic: TrafficMatch,
}

/// Firewall/ACL: ordered rules, the first match wins, else the default action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirewallConfig {
    /// Action for packets that match no rule.
    pub default_action: Action,
    /// Track connections so that replies of allowed flows pass whatever the rules say.
    #[serde(default)]
    pub stateful: bool,
    /// Rules, evaluated in order; the first that matches decides.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub rules: Vec<FirewallRule>,
}

/// Source NAT: rewrite the source of outgoing flows to one address and a port range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnatConfig {
    /// Only flows from these prefixes are translated; empty means every flow entering the function.
    #[serde(default, rename = "sourceCIDRs")]
    #[schemars(length(max = 64))]
    pub source_cidrs: Vec<Cidr>,
    /// The address flows are masqueraded to.
    pub to_address: IpAddress,
    /// Source ports handed out to translated TCP/UDP flows (ICMP echo uses the same range for its identifier).
    #[serde(default = "default_snat_ports")]
    pub to_ports: PortRange,
}

fn default_snat_ports() -> PortRange {
    PortRange {
        from: 20000,
        to: Some(59999),
    }
}

/// One static destination NAT mapping: `destination:port` is rewritten to `toAddress:toPort`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnatMapping {
    /// Protocol of the mapping.
    pub protocol: L4Protocol,
    /// Original destination address.
    pub destination: IpAddress,
    /// Original destination port.
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub port: u16,
    /// Translated destination address.
    pub to_address: IpAddress,
    /// Translated destination port; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub to_port: Option<u16>,
}

/// A transport protocol with ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum L4Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl From<L4Protocol> for Protocol {
    fn from(p: L4Protocol) -> Self {
        match p {
            L4Protocol::Tcp => Protocol::Tcp,
            L4Protocol::Udp => Protocol::Udp,
        }
    }
}

/// NAT: SNAT and/or static DNAT, with connection tracking so replies are translated back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.snat) || (has(self.dnat) && size(self.dnat) > 0)").message("nat needs snat, dnat, or both"))]
pub struct NatConfig {
    /// Source NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat: Option<SnatConfig>,
    /// Static destination NAT mappings.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub dnat: Vec<DnatMapping>,
    /// Connection-tracking table size (entries).
    #[serde(default = "default_conntrack_size")]
    #[schemars(range(min = 1024, max = 4194304), extend("format" = "int32"))]
    pub conntrack_size: u32,
}

fn default_conntrack_size() -> u32 {
    65536
}

/// A load-balancer backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// Backend address.
    pub address: IpAddress,
    /// Backend port; defaults to the VIP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub port: Option<u16>,
    /// Relative share of new flows.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1000), extend("format" = "int32"))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Backend selection algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LbAlgorithm {
    /// Maglev consistent hashing over the 5-tuple.
    #[default]
    Maglev,
}

/// L4 load balancer: VIP:port → weighted backends, in NAT mode (destination rewritten, replies restored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerConfig {
    /// The virtual IP clients connect to.
    pub vip: IpAddress,
    /// The virtual port.
    #[schemars(range(min = 1, max = 65535), extend("format" = "int32"))]
    pub port: u16,
    /// Protocol of the service.
    #[serde(default)]
    pub protocol: L4Protocol,
    /// Backend selection algorithm.
    #[serde(default)]
    pub algorithm: LbAlgorithm,
    /// Maglev lookup-table size; must be a prime of at least 65537.
    #[serde(default = "default_table_size")]
    #[schemars(range(min = 65537, max = 16777259), extend("format" = "int32"))]
    pub table_size: u32,
    /// LRU flow-table size: established flows stay on their backend while they are in it.
    #[serde(default = "default_flow_table_size")]
    #[schemars(range(min = 1024, max = 4194304), extend("format" = "int32"))]
    pub flow_table_size: u32,
    /// The backends (at least one).
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = kube::core::Rule::new("size(self) > 0").message("a load balancer needs at least one backend"))]
    pub backends: Vec<Backend>,
}

fn default_table_size() -> u32 {
    MIN_MAGLEV_TABLE
}

fn default_flow_table_size() -> u32 {
    65536
}

/// What the rate limiter keeps one bucket for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateKey {
    /// One bucket for all traffic entering the function.
    #[default]
    Global,
    /// One bucket per source address.
    SourceIp,
    /// One bucket per 5-tuple flow.
    Flow,
}

/// Token-bucket rate limiter: packets above the rate are dropped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.packetsPerSecond) || has(self.bitsPerSecond)").message("rateLimiter needs packetsPerSecond, bitsPerSecond, or both"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.burstPackets) || has(self.packetsPerSecond)").message("burstPackets needs packetsPerSecond"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.burstBytes) || has(self.bitsPerSecond)").message("burstBytes needs bitsPerSecond"))]
pub struct RateLimiterConfig {
    /// Sustained packet rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000), extend("format" = "int64"))]
    pub packets_per_second: Option<u64>,
    /// Sustained bit rate (counting IP packet bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000000u64), extend("format" = "int64"))]
    pub bits_per_second: Option<u64>,
    /// Bucket depth in packets; defaults to a tenth of a second at the packet rate (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000), extend("format" = "int64"))]
    pub burst_packets: Option<u64>,
    /// Bucket depth in bytes; defaults to a tenth of a second at the bit rate (at least 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 64, max = 125000000000u64), extend("format" = "int64"))]
    pub burst_bytes: Option<u64>,
    /// What one bucket is kept for.
    #[serde(default)]
    pub key: RateKey,
    /// Bucket-table size for per-source and per-flow keys (LRU).
    #[serde(default = "default_bucket_table_size")]
    #[schemars(range(min = 1024, max = 4194304), extend("format" = "int32"))]
    pub table_size: u32,
}

fn default_bucket_table_size() -> u32 {
    65536
}

/// How the monitor splits its counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CountBy {
    /// One counter pair per IP protocol.
    #[default]
    Protocol,
    /// One counter pair per destination port (TCP/UDP).
    DestinationPort,
    /// One counter pair per DSCP value.
    Dscp,
}

/// Monitor: per-class packet and byte counters, and sampled packet metadata sent to user space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MonitorConfig {
    /// How packets are classed for counting.
    #[serde(default)]
    pub count_by: CountBy,
    /// Send the metadata of one packet in N to user space; 0 turns sampling off.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000), extend("format" = "int32"))]
    pub sample_one_in: u32,
}

/// What the forwarder does with a packet at the end of the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ForwardMode {
    /// Redirect to `egressInterface` (devmap), rewriting MACs.
    #[default]
    Redirect,
    /// Send back out of the interface it came in on (XDP_TX), rewriting MACs.
    Bounce,
    /// Hand to the pod's kernel stack.
    Pass,
}

/// Forwarder: MAC rewrite and redirect to the egress interface, or bounce/pass for one-armed chains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("(has(self.mode) && self.mode != 'redirect') || has(self.egressInterface)").message("mode redirect needs egressInterface"))]
pub struct ForwarderConfig {
    /// What to do with the packet.
    #[serde(default)]
    pub mode: ForwardMode,
    /// The interface to redirect to (one of the chain's interfaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_interface: Option<InterfaceName>,
    /// Destination MAC to write; defaults to the neighbour the kernel knows for the destination.
    #[serde(
        default,
        rename = "nextHopMAC",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_hop_mac: Option<MacAddress>,
}

/// Cipher of the payload-cipher function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CipherAlgorithm {
    /// ChaCha20-Poly1305 (RFC 8439), 32-byte key.
    #[default]
    #[serde(rename = "chacha20Poly1305")]
    ChaCha20Poly1305,
    /// AES-256-GCM, 32-byte key.
    #[serde(rename = "aes256Gcm")]
    Aes256Gcm,
}

/// Whether the payload cipher seals or opens payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CipherDirection {
    /// Encrypt and authenticate the L4 payload (adds nonce and tag).
    Encrypt,
    /// Verify and decrypt; packets that fail authentication are dropped.
    Decrypt,
}

/// A key held in a Kubernetes Secret in the chain's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key inside the Secret: a file name in the mounted Secret, so not `.` and not starting with `..`.
    #[serde(default = "default_secret_key")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$")
    )]
    pub key: String,
}

/// Where the data plane finds the keys of user-space functions: the operator mounts Secret `S`'s key `K`
/// (a [`SecretKeyRef`]) read-only at `KEY_SECRETS_DIR/S/K` in the sidecar.
pub const KEY_SECRETS_DIR: &str = "/etc/buildvnf/secrets";

impl SecretKeyRef {
    /// The file the sidecar reads this key from.
    pub fn mounted_path(&self) -> String {
        format!("{KEY_SECRETS_DIR}/{}/{}", self.name, self.key)
    }
}

fn default_secret_key() -> String {
    "key".to_owned()
}

/// Payload cipher: authenticated encryption or decryption of UDP/TCP payloads, in the user-space tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayloadCipherConfig {
    /// The AEAD.
    #[serde(default)]
    pub algorithm: CipherAlgorithm,
    /// Encrypt or decrypt.
    pub direction: CipherDirection,
    /// The 32-byte key.
    pub key_secret_ref: SecretKeyRef,
}

/// One function of the chain: a name, a type, a tier, and the configuration block named after the type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.firewall) == (self.type == 'firewall')").message("the firewall block is required for type firewall and not allowed otherwise").field_path(".firewall"))]
#[x_kube(validation = kube::core::Rule::new("has(self.nat) == (self.type == 'nat')").message("the nat block is required for type nat and not allowed otherwise").field_path(".nat"))]
#[x_kube(validation = kube::core::Rule::new("has(self.loadBalancer) == (self.type == 'loadBalancer')").message("the loadBalancer block is required for type loadBalancer and not allowed otherwise").field_path(".loadBalancer"))]
#[x_kube(validation = kube::core::Rule::new("has(self.rateLimiter) == (self.type == 'rateLimiter')").message("the rateLimiter block is required for type rateLimiter and not allowed otherwise").field_path(".rateLimiter"))]
#[x_kube(validation = kube::core::Rule::new("has(self.monitor) == (self.type == 'monitor')").message("the monitor block is required for type monitor and not allowed otherwise").field_path(".monitor"))]
#[x_kube(validation = kube::core::Rule::new("has(self.forwarder) == (self.type == 'forwarder')").message("the forwarder block is required for type forwarder and not allowed otherwise").field_path(".forwarder"))]
#[x_kube(validation = kube::core::Rule::new("has(self.payloadCipher) == (self.type == 'payloadCipher')").message("the payloadCipher block is required for type payloadCipher and not allowed otherwise").field_path(".payloadCipher"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.tier) || self.tier == 'auto' || (self.type == 'payloadCipher') == (self.tier == 'userspace')").message("payloadCipher runs only in the userspace tier; every other type runs only in the kernel tier").field_path(".tier"))]
pub struct Function {
    /// Unique name of the function in the chain (a DNS label); used in metrics labels.
    pub name: DnsLabel,
    /// The function type.
    #[serde(rename = "type")]
    pub type_: FunctionType,
    /// Where the function runs.
    #[serde(default)]
    pub tier: Tier,
    /// Configuration for type `firewall`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallConfig>,
    /// Configuration for type `nat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatConfig>,
    /// Configuration for type `loadBalancer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerConfig>,
    /// Configuration for type `rateLimiter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiterConfig>,
    /// Configuration for type `monitor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorConfig>,
    /// Configuration for type `forwarder`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<ForwarderConfig>,
    /// Configuration for type `payloadCipher`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_cipher: Option<PayloadCipherConfig>,
}

impl Function {
    /// The tier this function actually runs in (`auto` resolved).
    pub fn effective_tier(&self) -> Tier {
        match self.tier {
            Tier::Auto => self.type_.default_tier(),
            t => t,
        }
    }

    /// Which configuration blocks are present, by the type they belong to.
    pub fn present_blocks(&self) -> Vec<FunctionType> {
        let present = [
            self.firewall.is_some(),
            self.nat.is_some(),
            self.load_balancer.is_some(),
            self.rate_limiter.is_some(),
            self.monitor.is_some(),
            self.forwarder.is_some(),
            self.payload_cipher.is_some(),
        ];
        FunctionType::ALL
            .into_iter()
            .zip(present)
            .filter_map(|(t, p)| p.then_some(t))
            .collect()
    }
}
