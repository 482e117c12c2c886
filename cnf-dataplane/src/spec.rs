//! The contract between the API and the engine: maps a validated chain ([`crds::ValidSpec`], what
//! [`crds::validate()`] returns) onto an engine [`ChainConfig`].
//!
//! [`plan`] is the entry point: it takes the typed spec, whose addresses, prefixes, ports and MACs are already
//! parsed, so nothing here parses a string of the manifest or repeats a check of `validate()`. What remains a
//! [`SpecError`] naming the spec field is what only this data plane knows: a feature it does not support yet,
//! a size above its tables, an interface missing from its network namespace — never approximated silently.
//! [`chain_plan`] and [`chain_config`] take a spec as written and validate it first (for callers that hold
//! no `ValidSpec`).
//!
//! What maps to what:
//!
//! - **classifier** → [`ClassifierConfig`]: lists of CIDRs (IPv4 and IPv6 mixed) and port ranges map one to
//!   one; protocol `icmp` restricts the family to IPv4 and `icmpv6` to IPv6.
//! - **firewall** → [`FirewallConfig`]: each API rule with lists is expanded into one engine rule per
//!   combination of source CIDR × destination CIDR × source port range × destination port range (pairs of
//!   CIDRs of different families are left out: they can never match). All engine rules of API rule `i` carry
//!   priority `i` and sit consecutively, so first-match order is preserved and
//!   [`crate::engine::Engine::firewall_hits_by_priority`] gives the hit count of API rule `i`.
//!   `stateful` → connection tracking (idle timeout [`CONNTRACK_TIMEOUT`]).
//! - **nat** → [`NatConfig`]: `snat` → one [`NatRule::Snat`] (empty `sourceCIDRs` = every flow of
//!   `toAddress`'s family), each `dnat[j]` → one [`NatRule::Dnat`]. A new flow matching a DNAT mapping is
//!   only destination-translated. Translations idle for [`NAT_TIMEOUT`] expire.
//! - **loadBalancer** → [`LbConfig`]: backend port defaults to the VIP port, weights and `tableSize` go to
//!   the weighted Maglev table; flows keep their backend while they are in the flow table (no idle timeout).
//! - **rateLimiter** → [`RateLimiterConfig`]: `bitsPerSecond` as is (the kernel counts bits), default
//!   `burstPackets` = max(1, pps / 10), default `burstBytes` = max(1500, bps / 80) — a tenth of a second.
//! - **monitor** → [`MonitorConfig`]: `countBy` and `sampleOneIn` as is (`protocol` counts the engine's fixed
//!   classes: TCP, UDP, ICMP/ICMPv6, other IPv4, other IPv6, fragments, non-IP, malformed).
//! - **forwarder** → [`ForwarderConfig`]: `redirect` → the egress interface's ifindex (from the resolver),
//!   `bounce` → XDP_TX, `pass` → the kernel stack; `nextHopMAC` → destination MAC rewrite. Known gap: without
//!   `nextHopMAC` the MACs are left as received (the API's default, the kernel's neighbour for the destination,
//!   needs `bpf_fib_lookup` in the forwarder), and the source MAC is not rewritten to the egress interface's.
//! - **state across updates**: the engine keys flows, buckets and counters by a state id that a function
//!   keeping its `name` and `type` inherits from its predecessor, so an edited chain keeps its NAT/LB flows,
//!   conntrack entries, rate-limit buckets and counters; renaming a function starts it fresh.
//! - **dataplane.telemetry**: `latencyHistograms: false` → latency sampling 0 (off), else `sampleOneIn`,
//!   for the chain and every function.
//!
//! - **user-space functions** (`payloadCipher`, or tier `userspace`) → [`chain_plan`] splits them off into a
//!   [`UserspacePlan`] for the AF_XDP tier; the kernel chain ends in a [`FunctionKind::UserspaceHandoff`].
//!
//! Not supported by this data plane yet (each a [`SpecError`] at the field): kernel functions after
//! user-space ones (other than one forwarder), types other than `payloadCipher` in user space; firewalls whose expansion exceeds [`abi::FW_MAX_RULES`] engine rules; Maglev tables
//! above [`MAX_MAGLEV_TABLE`]; conntrack / flow / bucket table sizes above the engine's shared tables.
//! `interfaces`, `dataplane.hook`, `dataplane.userspace`, `dataplane.image`/`resources` and `placement` are
//! not part of the engine configuration (the daemon and operator handle them).

use std::time::Duration;

use crds::valid::{
    Forward, FunctionConfig as ApiFunction, IpNet, ValidFirewall, ValidForwarder, ValidFunction,
    ValidLoadBalancer, ValidMatch, ValidMonitor, ValidNat,
};
use crds::{
    Action as ApiAction, CountBy as ApiCountBy, L4Protocol, Protocol, RateKey,
    RateLimiterConfig as ApiRateLimiter, Tier, VNFChainSpec, ValidSpec, ValidationErrors,
};

use crate::engine::{
    Action, ChainConfig, ClassifierConfig, CountBy, FirewallConfig, FirewallRule, ForwardMode,
    ForwarderConfig, FunctionConfig, FunctionKind, IpCidr, LbBackendConfig, LbConfig,
    MAX_MAGLEV_TABLE, MonitorConfig, NatConfig, NatRule, NonIpConfig, PortRange, RateLimitKey,
    RateLimiterConfig, abi,
};

/// Idle timeout of firewall connection tracking.
pub const CONNTRACK_TIMEOUT: Duration = Duration::from_secs(120);
/// Idle timeout of a NAT translation.
pub const NAT_TIMEOUT: Duration = Duration::from_secs(300);
/// Entries of the engine's shared NAT/LB translation table (`VNF_NAT_MAX`).
pub const NAT_TABLE_ENTRIES: u32 = 65_536;
/// Entries of the engine's shared rate-limiter bucket table (`VNF_RL_MAX`).
pub const RL_TABLE_ENTRIES: u32 = 65_536;

/// A spec feature this data plane cannot run, with the spec field it concerns (or, from [`chain_plan`] and
/// [`chain_config`], the first problem `validate()` found).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    /// Field path in the manifest, e.g. `spec.functions[2].nat.dnat[1]`.
    pub path: String,
    /// What is wrong or unsupported.
    pub message: String,
}

impl SpecError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    fn unsupported(path: impl Into<String>, what: impl std::fmt::Display) -> Self {
        Self::new(
            path,
            format!("{what}: not supported by this data plane yet"),
        )
    }
}

/// The first problem validation found (all of them are in the message when there are several).
impl From<ValidationErrors> for SpecError {
    fn from(e: ValidationErrors) -> Self {
        let path = e.0.first().map(|f| f.path.clone()).unwrap_or_default();
        match e.0.as_slice() {
            [one] => Self::new(path, one.message.clone()),
            _ => Self::new(path, format!("the spec is not valid:\n{e}")),
        }
    }
}

type Result<T> = std::result::Result<T, SpecError>;

/// The user-space part of a chain: the functions the AF_XDP tier runs, in order, and where their
/// output goes.
#[derive(Clone, Debug, PartialEq)]
pub struct UserspacePlan {
    /// Name of the kernel chain's hand-off step (the first user-space function's name).
    pub handoff: String,
    /// The user-space functions, in chain order.
    pub functions: Vec<UserFunction>,
    /// Where the tier sends what its functions pass: the forwarder that follows them in the spec
    /// (applied by the tier when it transmits), or back out of the ingress interface.
    pub egress: UserEgress,
}

/// Where the user-space tier transmits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserEgress {
    /// Egress interface (a `redirect` forwarder's); `None`: back out of the ingress interface.
    pub interface: Option<String>,
    /// Destination MAC written into every frame (the forwarder's `nextHopMAC`).
    pub dst_mac: Option<[u8; 6]>,
    /// Whether a forwarder followed the user-space functions.
    pub from_forwarder: bool,
}

/// One function of the user-space tier.
#[derive(Clone, Debug, PartialEq)]
pub struct UserFunction {
    /// Name from the spec.
    pub name: String,
    /// Path of the function in the manifest (`spec.functions[3]`).
    pub path: String,
    /// What it does.
    pub kind: UserFunctionKind,
}

/// The functions the user-space tier can run.
#[derive(Clone, Debug, PartialEq)]
pub enum UserFunctionKind {
    /// Authenticated payload encryption/decryption (the key comes from the Secret the config names).
    PayloadCipher(crds::PayloadCipherConfig),
}

/// A chain split into its kernel part and its user-space part.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainPlan {
    /// What the eBPF engine runs (with a [`FunctionKind::UserspaceHandoff`] step in place of the
    /// user-space functions).
    pub kernel: ChainConfig,
    /// The user-space functions, if the chain has any.
    pub userspace: Option<UserspacePlan>,
}

/// [`config`] for a spec as written: validates it first.
pub fn chain_config(
    spec: &VNFChainSpec,
    ifindex: &dyn Fn(&str) -> Option<u32>,
) -> Result<ChainConfig> {
    config(&crds::validate_spec(spec)?, ifindex)
}

/// [`plan`] for a spec as written: validates it first.
pub fn chain_plan(spec: &VNFChainSpec, ifindex: &dyn Fn(&str) -> Option<u32>) -> Result<ChainPlan> {
    plan(&crds::validate_spec(spec)?, ifindex)
}

/// Maps a validated chain onto the engine configuration.
///
/// `ifindex` resolves an interface name to its index in the data plane's network namespace (the daemon passes
/// `if_nametoindex`); it is asked only for the egress interface of a `redirect` forwarder.  Returns the first
/// problem found, as a [`SpecError`] naming the spec field: a feature this data plane does not support yet or
/// an interface that does not exist. A chain with user-space functions is an error here (use [`plan`], which
/// splits it).
pub fn config(spec: &ValidSpec, ifindex: &dyn Fn(&str) -> Option<u32>) -> Result<ChainConfig> {
    let plan = plan(spec, ifindex)?;
    if let Some(u) = plan.userspace {
        let first = u
            .functions
            .first()
            .map(|f| f.path.clone())
            .unwrap_or_default();
        return Err(SpecError::unsupported(
            first,
            format!(
                "function {:?} runs in the user-space tier (AF_XDP), which this caller does not start",
                u.handoff
            ),
        ));
    }
    Ok(plan.kernel)
}

/// Splits a validated chain into the engine configuration and the user-space tier's part.
///
/// User-space functions (tier `userspace`, and `payloadCipher` by default) must form one run at the
/// end of the chain, optionally followed by one forwarder, which the tier applies when it
/// transmits; the kernel chain hands packets to the tier at the run's position. Only
/// `payloadCipher` runs in user space today; anything else is a [`SpecError`] naming the field.
pub fn plan(spec: &ValidSpec, ifindex: &dyn Fn(&str) -> Option<u32>) -> Result<ChainPlan> {
    let telemetry = &spec.dataplane.telemetry;
    let sample = if telemetry.latency_histograms {
        telemetry.sample_one_in
    } else {
        0
    };
    if spec.functions.len() > abi::MAX_CHAIN as usize {
        return Err(SpecError::unsupported(
            "spec.functions",
            format!(
                "{} functions (at most {})",
                spec.functions.len(),
                abi::MAX_CHAIN
            ),
        ));
    }
    let classifier = classifier(&spec.classifier)?;
    let mut functions = Vec::new();
    let mut userspace: Option<UserspacePlan> = None;
    for (i, f) in spec.functions.iter().enumerate() {
        let path = format!("spec.functions[{i}]");
        if f.tier == Tier::Userspace {
            user_function(&mut userspace, f, path)?;
            continue;
        }
        let kind = function(f, &path, ifindex)?;
        if let Some(plan) = userspace.as_mut() {
            // after the user-space run only a forwarder, which the tier applies
            match (&f.config, plan.egress.from_forwarder) {
                (ApiFunction::Forwarder(fwd), false) => {
                    plan.egress = user_egress(fwd, &path)?;
                    continue;
                }
                _ => {
                    return Err(SpecError::unsupported(
                        path,
                        format!(
                            "kernel function {:?} after the user-space function {:?} (move it before \
                             the user-space functions; only a forwarder may follow them)",
                            f.name, plan.handoff
                        ),
                    ));
                }
            }
        }
        functions.push(FunctionConfig {
            name: f.name.clone(),
            latency_sample_rate: sample,
            kind,
        });
    }
    if let Some(plan) = &userspace {
        functions.push(FunctionConfig {
            name: plan.handoff.clone(),
            latency_sample_rate: sample,
            kind: FunctionKind::UserspaceHandoff,
        });
    }
    Ok(ChainPlan {
        kernel: ChainConfig {
            classifier,
            functions,
            latency_sample_rate: sample,
            non_ip: NonIpConfig {
                allow: spec.non_ip.clone(),
            },
        },
        userspace,
    })
}

/// Adds user-space function `f` to the run of user-space functions.
fn user_function(run: &mut Option<UserspacePlan>, f: &ValidFunction, path: String) -> Result<()> {
    let plan = run.get_or_insert_with(|| UserspacePlan {
        handoff: f.name.clone(),
        functions: Vec::new(),
        egress: UserEgress::default(),
    });
    if plan.egress.from_forwarder {
        return Err(SpecError::unsupported(
            path,
            "a user-space function after the forwarder that ends the user-space run",
        ));
    }
    let kind = match &f.config {
        ApiFunction::PayloadCipher(c) => UserFunctionKind::PayloadCipher(c.clone()),
        other => {
            return Err(SpecError::unsupported(
                format!("{path}.tier"),
                format!(
                    "type {} in the user-space tier (only payloadCipher runs there)",
                    other.type_()
                ),
            ));
        }
    };
    plan.functions.push(UserFunction {
        name: f.name.clone(),
        path,
        kind,
    });
    Ok(())
}

/// Where the user-space tier transmits, from the forwarder that follows its functions.
fn user_egress(fwd: &ValidForwarder, path: &str) -> Result<UserEgress> {
    let interface = match &fwd.mode {
        Forward::Redirect { egress } => Some(egress.as_str().to_owned()),
        Forward::Bounce => None,
        Forward::Pass => {
            return Err(SpecError::unsupported(
                format!("{path}.forwarder.mode"),
                "mode pass after user-space functions (the user-space tier \
                 transmits: use redirect or bounce)",
            ));
        }
    };
    Ok(UserEgress {
        interface,
        dst_mac: fwd.next_hop_mac.map(|m| m.0),
        from_forwarder: true,
    })
}

fn function(
    f: &ValidFunction,
    path: &str,
    ifindex: &dyn Fn(&str) -> Option<u32>,
) -> Result<FunctionKind> {
    let path = format!("{path}.{}", f.type_().as_str());
    Ok(match &f.config {
        ApiFunction::Firewall(c) => FunctionKind::Firewall(firewall(c, &path)?),
        ApiFunction::Nat(c) => FunctionKind::Nat(nat(c, &path)?),
        ApiFunction::LoadBalancer(c) => FunctionKind::LoadBalancer(load_balancer(c, &path)?),
        ApiFunction::RateLimiter(c) => FunctionKind::RateLimiter(rate_limiter(c, &path)?),
        ApiFunction::Monitor(c) => FunctionKind::Monitor(monitor(c)),
        ApiFunction::Forwarder(c) => FunctionKind::Forwarder(forwarder(c, &path, ifindex)?),
        ApiFunction::PayloadCipher(_) => {
            return Err(SpecError::unsupported(
                path,
                "payloadCipher in the kernel tier",
            ));
        }
    })
}

/// The engine's form of parsed prefixes. An `IpNet`'s prefix length always fits its family, so the error
/// (named at `path`) cannot happen; it is reported rather than approximated all the same.
fn cidrs(list: &[IpNet], path: &dyn Fn() -> String) -> Result<Vec<IpCidr>> {
    list.iter()
        .map(|n| {
            IpCidr::new(n.addr(), n.prefix_len())
                .map_err(|e| SpecError::new(path(), format!("internal: {e}")))
        })
        .collect()
}

fn ports(list: &[crds::net::PortRange]) -> Vec<PortRange> {
    list.iter()
        .map(|r| PortRange {
            lo: r.from,
            hi: r.end(),
        })
        .collect()
}

/// IP protocol number and the only family it exists in, if any.
fn protocol(p: Protocol) -> (Option<u8>, Option<u8>) {
    match p {
        Protocol::Any => (None, None),
        Protocol::Tcp => (Some(6), None),
        Protocol::Udp => (Some(17), None),
        Protocol::Icmp => (Some(1), Some(4)),
        Protocol::Icmpv6 => (Some(58), Some(6)),
    }
}

fn l4(p: L4Protocol) -> u8 {
    match p {
        L4Protocol::Tcp => 6,
        L4Protocol::Udp => 17,
    }
}

/// The classifier; `validate()` has checked that an icmp/icmpv6 classifier's prefixes are of its family.
fn classifier(m: &ValidMatch) -> Result<ClassifierConfig> {
    let (proto, family) = protocol(m.protocol);
    Ok(ClassifierConfig {
        family,
        protocol: proto,
        src: cidrs(&m.source_cidrs, &|| "spec.classifier.sourceCIDRs".into())?,
        dst: cidrs(&m.destination_cidrs, &|| {
            "spec.classifier.destinationCIDRs".into()
        })?,
        src_ports: ports(&m.source_ports),
        dst_ports: ports(&m.destination_ports),
    })
}

fn action(a: ApiAction) -> Action {
    match a {
        ApiAction::Allow => Action::Allow,
        ApiAction::Deny => Action::Deny,
    }
}

/// `[None]` for an empty list (wildcard), else every element.
fn or_any<T: Copy>(list: &[T]) -> Vec<Option<T>> {
    if list.is_empty() {
        vec![None]
    } else {
        list.iter().copied().map(Some).collect()
    }
}

fn too_many(fw: &ValidFirewall, path: &str, max: usize) -> SpecError {
    SpecError::unsupported(
        format!("{path}.rules"),
        format!(
            "{} rules expand to more than {max} engine rules (one per combination of source CIDR, destination \
             CIDR, source and destination port range; at most {max} per firewall)",
            fw.rules.len()
        ),
    )
}

fn firewall(fw: &ValidFirewall, path: &str) -> Result<FirewallConfig> {
    let max = abi::FW_MAX_RULES as usize;
    let mut rules = Vec::new();
    for (i, r) in fw.rules.iter().enumerate() {
        let m = &r.traffic;
        let (proto, family) = protocol(m.protocol);
        let src = cidrs(&m.source_cidrs, &|| {
            format!("{path}.rules[{i}].sourceCIDRs")
        })?;
        let dst = cidrs(&m.destination_cidrs, &|| {
            format!("{path}.rules[{i}].destinationCIDRs")
        })?;
        let sports = ports(&m.source_ports);
        let dports = ports(&m.destination_ports);
        // a protocol of one family without addresses: pin the family with a /0 prefix
        let srcs = match (family, src.is_empty() && dst.is_empty()) {
            (Some(f), true) => vec![Some(IpCidr::any(f))],
            _ => or_any(&src),
        };
        for s in &srcs {
            for d in or_any(&dst) {
                let fam = |c: &Option<IpCidr>| c.map(|c| c.family());
                if let (Some(a), Some(b)) = (fam(s), fam(&d))
                    && a != b
                {
                    continue; // different families never match together
                }
                if let (Some(f), Some(c)) = (family, fam(s).or(fam(&d)))
                    && f != c
                {
                    continue; // e.g. icmp with an IPv6 prefix
                }
                for sp in or_any(&sports) {
                    for dp in or_any(&dports) {
                        if rules.len() == max {
                            return Err(too_many(fw, path, max));
                        }
                        rules.push(FirewallRule {
                            priority: i as u32,
                            action: action(r.action),
                            protocol: proto,
                            src: *s,
                            dst: d,
                            src_ports: sp,
                            dst_ports: dp,
                        });
                    }
                }
            }
        }
    }
    Ok(FirewallConfig {
        rules,
        default_action: action(fw.default_action),
        conntrack: fw.stateful,
        conntrack_timeout: CONNTRACK_TIMEOUT,
    })
}

fn nat(n: &ValidNat, path: &str) -> Result<NatConfig> {
    if n.conntrack_size > NAT_TABLE_ENTRIES {
        return Err(SpecError::unsupported(
            format!("{path}.conntrackSize"),
            format!(
                "conntrackSize {} (the data plane's translation table holds {NAT_TABLE_ENTRIES} entries)",
                n.conntrack_size
            ),
        ));
    }
    if n.dnat.len() > crate::engine::MAX_DNAT {
        return Err(SpecError::unsupported(
            format!("{path}.dnat"),
            format!(
                "{} DNAT mappings (at most {})",
                n.dnat.len(),
                crate::engine::MAX_DNAT
            ),
        ));
    }
    let mut rules = Vec::new();
    if let Some(s) = &n.snat {
        rules.push(NatRule::Snat {
            match_src: cidrs(&s.source_cidrs, &|| format!("{path}.snat.sourceCIDRs"))?,
            to_addr: s.to_address,
            ports: PortRange {
                lo: s.to_ports.from,
                hi: s.to_ports.end(),
            },
        });
    }
    for d in &n.dnat {
        rules.push(NatRule::Dnat {
            protocol: Some(l4(d.protocol)),
            match_dst: d.destination,
            match_port: Some(d.port),
            to_addr: d.to_address,
            to_port: Some(d.target_port()),
        });
    }
    Ok(NatConfig {
        rules,
        timeout: NAT_TIMEOUT,
    })
}

fn load_balancer(lb: &ValidLoadBalancer, path: &str) -> Result<LbConfig> {
    if lb.table_size > MAX_MAGLEV_TABLE {
        return Err(SpecError::unsupported(
            format!("{path}.tableSize"),
            format!("tableSize {} (at most {MAX_MAGLEV_TABLE})", lb.table_size),
        ));
    }
    if lb.flow_table_size > NAT_TABLE_ENTRIES {
        return Err(SpecError::unsupported(
            format!("{path}.flowTableSize"),
            format!(
                "flowTableSize {} (the data plane's flow table holds {NAT_TABLE_ENTRIES} entries)",
                lb.flow_table_size
            ),
        ));
    }
    if lb.backends.len() > abi::LB_MAX_BACKENDS as usize {
        return Err(SpecError::unsupported(
            format!("{path}.backends"),
            format!(
                "{} backends (at most {})",
                lb.backends.len(),
                abi::LB_MAX_BACKENDS
            ),
        ));
    }
    Ok(LbConfig {
        vip: lb.vip,
        port: Some(lb.port),
        protocol: Some(l4(lb.protocol)),
        backends: lb
            .backends
            .iter()
            .map(|b| LbBackendConfig {
                addr: b.address,
                port: Some(b.port),
                weight: b.weight,
            })
            .collect(),
        affinity_timeout: Duration::ZERO,
        table_size: lb.table_size,
    })
}

fn rate_limiter(r: &ApiRateLimiter, path: &str) -> Result<RateLimiterConfig> {
    if r.table_size > RL_TABLE_ENTRIES {
        return Err(SpecError::unsupported(
            format!("{path}.tableSize"),
            format!(
                "tableSize {} (the data plane's bucket table holds {RL_TABLE_ENTRIES} entries)",
                r.table_size
            ),
        ));
    }
    let burst_packets = match (r.packets_per_second, r.burst_packets) {
        (_, Some(b)) => b,
        (Some(pps), None) => (pps / 10).max(1),
        (None, None) => 0,
    };
    let burst_bytes = match (r.bits_per_second, r.burst_bytes) {
        (_, Some(b)) => b,
        (Some(bps), None) => (bps / 80).max(1500),
        (None, None) => 0,
    };
    Ok(RateLimiterConfig {
        key: match r.key {
            RateKey::Global => RateLimitKey::Global,
            RateKey::SourceIp => RateLimitKey::SourceIp,
            RateKey::Flow => RateLimitKey::Flow,
        },
        packets_per_sec: r.packets_per_second,
        burst_packets,
        bits_per_sec: r.bits_per_second,
        burst_bytes,
    })
}

fn monitor(m: &ValidMonitor) -> MonitorConfig {
    MonitorConfig {
        sample_rate: m.sample_one_in,
        count_by: match m.count_by {
            ApiCountBy::Protocol => CountBy::Protocol,
            ApiCountBy::DestinationPort => CountBy::DestinationPort,
            ApiCountBy::Dscp => CountBy::Dscp,
        },
    }
}

fn forwarder(
    f: &ValidForwarder,
    path: &str,
    ifindex: &dyn Fn(&str) -> Option<u32>,
) -> Result<ForwarderConfig> {
    let mode = match &f.mode {
        Forward::Redirect { egress } => {
            let idx = ifindex(egress.as_str()).ok_or_else(|| {
                SpecError::new(
                    format!("{path}.egressInterface"),
                    format!(
                        "interface {:?} does not exist in the data plane's network namespace",
                        egress.as_str()
                    ),
                )
            })?;
            ForwardMode::Redirect { ifindex: idx }
        }
        Forward::Bounce => ForwardMode::Tx,
        Forward::Pass => ForwardMode::Pass,
    };
    Ok(ForwarderConfig {
        mode,
        src_mac: None,
        dst_mac: f.next_hop_mac.map(|m| m.0),
        decrement_ttl: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crds::net::Cidr;
    use std::net::IpAddr;

    fn example(name: &str) -> VNFChainSpec {
        let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        match crds::manifest::parse_single_chain(&text) {
            Ok(c) => c.spec,
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// The typed form of an example, as `validate()` returns it.
    fn typed(name: &str) -> ValidSpec {
        match crds::validate_spec(&example(name)) {
            Ok(t) => t,
            Err(e) => panic!("{name}: {e}"),
        }
    }

    #[test]
    fn non_ip_maps_into_the_engine_config() {
        let mut spec = example("edge-chain.yaml");
        let default = crds::validate_spec(&spec).expect("valid");
        let p = plan(&default, &resolver).expect("plan");
        assert_eq!(p.kernel.non_ip.allow, vec![0x0806]);
        spec.non_ip = crds::NonIp {
            allow: vec![
                crds::EtherType("lldp".into()),
                crds::EtherType("0x88b5".into()),
            ],
        };
        let typed = crds::validate_spec(&spec).expect("valid");
        let p = plan(&typed, &resolver).expect("plan");
        assert_eq!(p.kernel.non_ip.allow, vec![0x88cc, 0x88b5]);
        spec.non_ip.allow.push(crds::EtherType("0x0800".into()));
        let err = crds::validate_spec(&spec).expect_err("IPv4 refused");
        assert!(err.to_string().contains("spec.nonIp.allow[2]"), "{err}");
    }

    fn resolver(name: &str) -> Option<u32> {
        match name {
            "eth0" => Some(2),
            "eth1" => Some(3),
            "net1" => Some(7),
            _ => None,
        }
    }

    fn c(s: &str) -> IpCidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_example_maps_or_names_its_unsupported_function() {
        let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("examples dir") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("name")
                .to_owned();
            let spec = example(&name);
            let cipher = spec
                .functions
                .iter()
                .position(|f| f.type_ == crds::FunctionType::PayloadCipher);
            match (chain_config(&spec, &resolver), cipher) {
                (Ok(cfg), None) => assert_eq!(cfg.functions.len(), spec.functions.len(), "{name}"),
                (Err(e), Some(i)) => {
                    assert_eq!(e.path, format!("spec.functions[{i}]"), "{name}: {e}");
                    assert!(
                        e.message.contains("not supported by this data plane yet"),
                        "{name}: {e}"
                    );
                    assert!(e.message.contains("user-space tier"), "{name}: {e}");
                }
                (r, _) => panic!("{name}: unexpected {r:?}"),
            }
            seen += 1;
        }
        assert!(seen >= 4, "only {seen} examples found in {dir}");
    }

    #[test]
    fn user_space_functions_split_off_into_a_plan() {
        let plan = chain_plan(&example("userspace-cipher.yaml"), &resolver).expect("plans");
        let names: Vec<&str> = plan
            .kernel
            .functions
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["limit", "seal"]);
        assert_eq!(
            plan.kernel.functions[1].kind,
            FunctionKind::UserspaceHandoff
        );
        let u = plan.userspace.expect("user-space part");
        assert_eq!(u.handoff, "seal");
        assert_eq!(u.functions.len(), 1);
        assert_eq!(u.functions[0].path, "spec.functions[1]");
        let UserFunctionKind::PayloadCipher(c) = &u.functions[0].kind;
        assert_eq!(c.direction, crds::CipherDirection::Encrypt);
        assert_eq!(c.key_secret_ref.name, "tunnel-key");
        assert_eq!(
            u.egress,
            UserEgress {
                interface: Some("net1".into()),
                dst_mac: Some([2, 0, 0, 0, 0, 2]),
                from_forwarder: true,
            },
            "the trailing forwarder goes to the tier"
        );
        // chains without user-space functions have no plan
        let plain = chain_plan(&example("edge-chain.yaml"), &resolver).expect("plans");
        assert!(plain.userspace.is_none());
    }

    #[test]
    fn kernel_functions_after_user_space_ones_are_refused_at_their_field() {
        let refused = |e: SpecError, path: &str, says: &str| {
            assert_eq!(e.path, path);
            assert!(e.message.contains(says), "{e}");
        };
        let mut spec = example("userspace-cipher.yaml");
        // move the rate limiter behind the cipher: limit is now functions[2]
        let limit = spec.functions.remove(0);
        spec.functions.insert(1, limit);
        let e = chain_plan(&spec, &resolver).expect_err("kernel after user space");
        refused(
            e,
            "spec.functions[1]",
            "after the user-space function \"seal\"",
        );

        // validate() refuses a rate limiter in user space (with its own message) ...
        let mut spec = example("userspace-cipher.yaml");
        spec.functions[0].tier = Tier::Userspace;
        let e = chain_plan(&spec, &resolver).expect_err("rate limiter in user space");
        refused(
            e,
            "spec.functions[0].tier",
            "cannot run in the userspace tier",
        );
        // ... and the mapping refuses it too, should a typed spec say so.
        let mut spec = typed("userspace-cipher.yaml");
        spec.functions[0].tier = Tier::Userspace;
        let e = plan(&spec, &resolver).expect_err("rate limiter in user space");
        refused(e, "spec.functions[0].tier", "only payloadCipher runs there");
    }

    #[test]
    fn edge_chain_field_by_field() {
        let cfg = chain_config(&example("edge-chain.yaml"), &resolver).expect("maps");
        assert_eq!(cfg.latency_sample_rate, 64);
        assert_eq!(
            cfg.classifier,
            ClassifierConfig {
                family: None,
                protocol: None,
                src: vec![],
                dst: vec![c("10.0.0.0/16"), c("2001:db8:100::/48")],
                src_ports: vec![],
                dst_ports: vec![],
            }
        );
        let names: Vec<&str> = cfg.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["fw", "nat", "lb", "rl", "mon"]);
        assert!(cfg.functions.iter().all(|f| f.latency_sample_rate == 64));

        let FunctionKind::Firewall(fw) = &cfg.functions[0].kind else {
            panic!("fw: {:?}", cfg.functions[0].kind)
        };
        assert_eq!(fw.default_action, Action::Deny);
        assert!(fw.conntrack);
        assert_eq!(fw.conntrack_timeout, CONNTRACK_TIMEOUT);
        let rule = |priority, action, protocol, src: Option<&str>, dst_ports: Option<PortRange>| {
            FirewallRule {
                priority,
                action,
                protocol,
                src: src.map(c),
                dst: None,
                src_ports: None,
                dst_ports,
            }
        };
        let p80 = PortRange::single(80);
        let p8000 = PortRange::new(8000, 8099).expect("range");
        assert_eq!(
            fw.rules,
            vec![
                rule(0, Action::Deny, None, Some("10.0.1.66/32"), None),
                rule(1, Action::Allow, Some(6), Some("10.0.1.0/24"), Some(p80)),
                rule(1, Action::Allow, Some(6), Some("10.0.1.0/24"), Some(p8000)),
                rule(
                    1,
                    Action::Allow,
                    Some(6),
                    Some("2001:db8:1::/64"),
                    Some(p80)
                ),
                rule(
                    1,
                    Action::Allow,
                    Some(6),
                    Some("2001:db8:1::/64"),
                    Some(p8000)
                ),
                rule(
                    2,
                    Action::Allow,
                    Some(17),
                    None,
                    Some(PortRange::single(9999))
                ),
                rule(3, Action::Allow, Some(1), Some("0.0.0.0/0"), None),
            ]
        );

        let FunctionKind::Nat(nat) = &cfg.functions[1].kind else {
            panic!("nat: {:?}", cfg.functions[1].kind)
        };
        assert_eq!(nat.timeout, NAT_TIMEOUT);
        assert_eq!(
            nat.rules,
            vec![
                NatRule::Snat {
                    match_src: vec![c("10.0.1.0/24")],
                    to_addr: ip("10.0.0.1"),
                    ports: PortRange::new(20000, 59999).expect("range"),
                },
                NatRule::Dnat {
                    protocol: Some(17),
                    match_dst: ip("10.0.0.200"),
                    match_port: Some(9999),
                    to_addr: ip("10.0.2.10"),
                    to_port: Some(9999),
                },
            ]
        );

        let FunctionKind::LoadBalancer(lb) = &cfg.functions[2].kind else {
            panic!("lb: {:?}", cfg.functions[2].kind)
        };
        let be = |a: &str, weight| LbBackendConfig {
            addr: ip(a),
            port: Some(8080),
            weight,
        };
        assert_eq!(
            *lb,
            LbConfig {
                vip: ip("10.0.0.100"),
                port: Some(80),
                protocol: Some(6),
                backends: vec![be("10.0.2.1", 2), be("10.0.2.2", 1), be("10.0.2.3", 1)],
                affinity_timeout: Duration::ZERO,
                table_size: 65_537,
            }
        );

        let FunctionKind::RateLimiter(rl) = &cfg.functions[3].kind else {
            panic!("rl: {:?}", cfg.functions[3].kind)
        };
        assert_eq!(
            *rl,
            RateLimiterConfig {
                key: RateLimitKey::SourceIp,
                packets_per_sec: Some(100_000),
                burst_packets: 10_000,
                bits_per_sec: Some(1_000_000_000),
                // default: a tenth of a second at 1 Gbit/s
                burst_bytes: 12_500_000,
            }
        );

        let FunctionKind::Monitor(mon) = &cfg.functions[4].kind else {
            panic!("mon: {:?}", cfg.functions[4].kind)
        };
        assert_eq!(
            *mon,
            MonitorConfig {
                sample_rate: 1000,
                count_by: CountBy::Protocol,
            }
        );
    }

    #[test]
    fn ipv6_router_resolves_the_egress_interface() {
        let spec = example("ipv6-router.yaml");
        let cfg = chain_config(&spec, &resolver).expect("maps");
        assert_eq!(cfg.classifier.src, vec![c("2001:db8:1::/48")]);
        assert_eq!(
            cfg.functions[0].kind,
            FunctionKind::Monitor(MonitorConfig {
                sample_rate: 0,
                count_by: CountBy::Dscp
            })
        );
        assert_eq!(
            cfg.functions[1].kind,
            FunctionKind::RateLimiter(RateLimiterConfig {
                key: RateLimitKey::Flow,
                packets_per_sec: None,
                burst_packets: 0,
                bits_per_sec: Some(100_000_000),
                burst_bytes: 1_500_000,
            })
        );
        assert_eq!(
            cfg.functions[2].kind,
            FunctionKind::Forwarder(ForwarderConfig {
                mode: ForwardMode::Redirect { ifindex: 3 },
                src_mac: None,
                dst_mac: None,
                decrement_ttl: false,
            })
        );
        let e = chain_config(&spec, &|_| None).expect_err("no eth1");
        assert_eq!(e.path, "spec.functions[2].forwarder.egressInterface");
        assert!(e.message.contains("\"eth1\""), "{e}");
    }

    #[test]
    fn firewall_example_pins_icmp_families() {
        let cfg = chain_config(&example("firewall.yaml"), &resolver).expect("maps");
        let FunctionKind::Firewall(fw) = &cfg.functions[0].kind else {
            panic!("{:?}", cfg.functions[0].kind)
        };
        let last: Vec<(u32, Option<u8>, Option<IpCidr>)> = fw
            .rules
            .iter()
            .map(|r| (r.priority, r.protocol, r.src))
            .collect();
        assert_eq!(
            last,
            vec![
                (0, Some(6), Some(c("10.0.0.0/8"))),
                (1, Some(6), None),
                (1, Some(6), None),
                (2, Some(1), Some(c("0.0.0.0/0"))),
                (3, Some(58), Some(c("::/0"))),
            ]
        );
        assert_eq!(fw.rules[1].dst_ports, Some(PortRange::single(80)));
        assert_eq!(fw.rules[2].dst_ports, Some(PortRange::single(443)));
        // defaults of the telemetry block: histograms on, one packet in 64
        assert_eq!(cfg.latency_sample_rate, 64);
    }

    #[test]
    fn telemetry_off_and_defaults() {
        let mut spec = example("firewall.yaml");
        spec.dataplane.telemetry.latency_histograms = false;
        spec.dataplane.telemetry.sample_one_in = 64;
        let cfg = chain_config(&spec, &resolver).expect("maps");
        assert_eq!(cfg.latency_sample_rate, 0);
        assert!(cfg.functions.iter().all(|f| f.latency_sample_rate == 0));
        spec.dataplane.telemetry.latency_histograms = true;
        let cfg = chain_config(&spec, &resolver).expect("maps");
        assert_eq!(cfg.latency_sample_rate, 64);
    }

    #[test]
    fn unsupported_sizes_name_their_field() {
        let mut spec = example("edge-chain.yaml");
        if let Some(lb) = spec.functions[2].load_balancer.as_mut() {
            lb.table_size = 16_777_259;
        }
        let e = chain_config(&spec, &resolver).expect_err("too big");
        assert_eq!(e.path, "spec.functions[2].loadBalancer.tableSize");
        assert!(
            e.message.contains("not supported by this data plane yet"),
            "{e}"
        );

        let mut spec = example("edge-chain.yaml");
        if let Some(nat) = spec.functions[1].nat.as_mut() {
            nat.conntrack_size = 1 << 20;
        }
        let e = chain_config(&spec, &resolver).expect_err("too big");
        assert_eq!(e.path, "spec.functions[1].nat.conntrackSize");

        // More engine rules than the engine holds (validate() refuses this many identical rules; the typed
        // spec reaches the mapping's own bound).
        let mut spec = typed("edge-chain.yaml");
        if let crds::FunctionConfig::Firewall(fw) = &mut spec.functions[0].config {
            let rule = fw.rules[2].clone();
            fw.rules = vec![rule; abi::FW_MAX_RULES as usize + 1];
        }
        let e = config(&spec, &resolver).expect_err("too many rules");
        assert_eq!(e.path, "spec.functions[0].firewall.rules");
        assert!(
            e.message.contains("not supported by this data plane yet"),
            "{e}"
        );
        assert_eq!(e.to_string(), format!("{}: {}", e.path, e.message));
    }

    #[test]
    fn cross_family_pairs_are_left_out() {
        let mut spec = example("firewall.yaml");
        if let Some(fw) = spec.functions[0].firewall.as_mut() {
            fw.rules[0].traffic.source_cidrs =
                vec![Cidr::from("10.0.0.0/8"), Cidr::from("2001:db8::/32")];
            fw.rules[0].traffic.destination_cidrs = vec![Cidr::from("2001:db8:1::/48")];
        }
        let cfg = chain_config(&spec, &resolver).expect("maps");
        let FunctionKind::Firewall(fw) = &cfg.functions[0].kind else {
            panic!("{:?}", cfg.functions[0].kind)
        };
        let first: Vec<&FirewallRule> = fw.rules.iter().filter(|r| r.priority == 0).collect();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].src, Some(c("2001:db8::/32")));
        assert_eq!(first[0].dst, Some(c("2001:db8:1::/48")));
    }

    /// The mapping reads parsed values only: no parsing of manifest strings, and none of the errors of its own
    /// that it had for what `validate()` checks (a value that does not parse, families that differ, a missing
    /// block, a table size that is not a prime).
    #[test]
    fn nothing_here_parses_the_manifest_again() {
        let source = include_str!("spec.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        for gone in [
            ".parse()",
            "crds::net::Cidr",
            "IpAddress",
            "MacAddress",
            "of different IP families",
            "is not a prime",
            "block is required",
            "nat needs snat",
            "needs packetsPerSecond",
            "mode redirect needs egressInterface",
        ] {
            assert!(!code.contains(gone), "spec.rs still has {gone:?}");
        }
    }

    /// A spec as written that validate() refuses gets validate()'s message, not one of the mapping's own.
    #[test]
    fn an_invalid_spec_gets_the_message_of_validate() {
        let mut spec = example("edge-chain.yaml");
        spec.classifier.destination_cidrs[0] = Cidr::from("10.0.0.1/16");
        let e = chain_plan(&spec, &resolver).expect_err("host bits");
        let v = crds::validate_spec(&spec).expect_err("host bits");
        assert_eq!(e.path, v.0[0].path);
        assert_eq!(e.path, "spec.classifier.destinationCIDRs[0]");
        assert!(e.message.contains(&v.0[0].message), "{e}");
    }
}
