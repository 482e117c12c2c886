//! The typed result of [`validate()`](crate::validate()): a [`ValidChain`] holds every value of a chain that
//! passed validation as a parsed type — addresses ([`IpAddr`]), prefixes ([`IpNet`]), ports, MACs ([`Mac`]) —
//! and one [`FunctionConfig`] variant per function type with its configuration.
//!
//! A `ValidChain` can only be made by validation (its fields are private), so a consumer that takes one (the
//! data plane's mapping into the engine, the bench's kernel peers, the testbed's plan, the operator) never
//! parses a string of the manifest again and never needs an error of its own for what validation checked.
//! The manifest as written stays available ([`ValidChain::chain`], [`ValidChain::spec`]) for what is not
//! parsed (names, the Kubernetes parts of the spec).

use std::net::IpAddr;
use std::ops::Deref;

pub use ipnet::IpNet;

use crate::functions::{
    Action, CountBy, FirewallConfig, ForwardMode, ForwarderConfig, Function, FunctionType,
    L4Protocol, LbAlgorithm, LoadBalancerConfig, MonitorConfig, NatConfig, PayloadCipherConfig,
    Protocol, RateLimiterConfig, Tier, TrafficMatch,
};
use crate::net::{Cidr, InterfaceName, IpAddress, MacAddress, PortRange};
use crate::validate::{ValidationError, ValidationErrors};
use crate::vnfchain::{Dataplane, Interfaces, VNFChain, VNFChainSpec};

/// A chain that passed [`validate()`](crate::validate()): the manifest as written and its typed form.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidChain {
    chain: VNFChain,
    typed: ValidSpec,
}

impl ValidChain {
    pub(crate) fn new(chain: VNFChain, typed: ValidSpec) -> Self {
        Self { chain, typed }
    }

    /// The chain as written (names, metadata, the Kubernetes parts of the spec).
    pub fn chain(&self) -> &VNFChain {
        &self.chain
    }

    /// The spec as written.
    pub fn spec(&self) -> &VNFChainSpec {
        &self.chain.spec
    }

    /// The typed spec: what consumers read instead of the manifest's strings.
    pub fn typed(&self) -> &ValidSpec {
        &self.typed
    }

    /// The chain as written, dropping the typed form.
    pub fn into_chain(self) -> VNFChain {
        self.chain
    }

    /// Both parts.
    pub fn into_parts(self) -> (VNFChain, ValidSpec) {
        (self.chain, self.typed)
    }
}

/// Read-only access to the chain as written (`valid.metadata`, `valid.spec.placement`), so code written for a
/// [`VNFChain`] reads a `ValidChain` unchanged.
impl Deref for ValidChain {
    type Target = VNFChain;

    fn deref(&self) -> &VNFChain {
        &self.chain
    }
}

/// The typed form of a spec that passed validation (defaults applied: a backend's port, a tier `auto`).
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    /// Which traffic enters the chain.
    pub classifier: ValidMatch,
    /// The functions, in chain order.
    pub functions: Vec<ValidFunction>,
    /// The interfaces (names checked against the kernel's rules).
    pub interfaces: Interfaces,
    /// How the data plane runs the chain.
    pub dataplane: Dataplane,
    /// The non-IP EtherTypes a filtering chain lets pass (`spec.nonIp.allow`, names resolved; default ARP).
    pub non_ip: Vec<u16>,
}

/// A traffic match (the classifier or a firewall rule's) with parsed prefixes; empty lists match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidMatch {
    /// The protocol.
    pub protocol: Protocol,
    /// Source prefixes (host bits zero).
    pub source_cidrs: Vec<IpNet>,
    /// Destination prefixes (host bits zero).
    pub destination_cidrs: Vec<IpNet>,
    /// Source port ranges (only with tcp or udp; each `from <= to`, no port 0).
    pub source_ports: Vec<PortRange>,
    /// Destination port ranges.
    pub destination_ports: Vec<PortRange>,
}

/// One function: its name, the tier it runs in (`auto` resolved) and its typed configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidFunction {
    /// Unique name in the chain (a DNS label).
    pub name: String,
    /// Where it runs (never [`Tier::Auto`]).
    pub tier: Tier,
    /// What it does.
    pub config: FunctionConfig,
}

impl ValidFunction {
    /// The function's type.
    pub fn type_(&self) -> FunctionType {
        self.config.type_()
    }
}

/// One variant per function type, with its typed configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum FunctionConfig {
    /// Ordered allow/deny rules.
    Firewall(ValidFirewall),
    /// SNAT and/or static DNAT.
    Nat(ValidNat),
    /// L4 load balancer.
    LoadBalancer(ValidLoadBalancer),
    /// Token-bucket rate limiter (every value is a number, checked against its bounds).
    RateLimiter(RateLimiterConfig),
    /// Counters and sampling.
    Monitor(ValidMonitor),
    /// MAC rewrite and redirect/bounce/pass.
    Forwarder(ValidForwarder),
    /// Payload encryption in the user-space tier (the Secret's name and key are checked names).
    PayloadCipher(PayloadCipherConfig),
}

impl FunctionConfig {
    /// The function type this configuration belongs to.
    pub fn type_(&self) -> FunctionType {
        match self {
            FunctionConfig::Firewall(_) => FunctionType::Firewall,
            FunctionConfig::Nat(_) => FunctionType::Nat,
            FunctionConfig::LoadBalancer(_) => FunctionType::LoadBalancer,
            FunctionConfig::RateLimiter(_) => FunctionType::RateLimiter,
            FunctionConfig::Monitor(_) => FunctionType::Monitor,
            FunctionConfig::Forwarder(_) => FunctionType::Forwarder,
            FunctionConfig::PayloadCipher(_) => FunctionType::PayloadCipher,
        }
    }
}

/// A firewall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidFirewall {
    /// Action for packets no rule matches.
    pub default_action: Action,
    /// Connection tracking: replies of allowed flows pass.
    pub stateful: bool,
    /// The rules, first match wins.
    pub rules: Vec<ValidRule>,
}

/// A firewall rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRule {
    /// What to do with a matching packet.
    pub action: Action,
    /// Which packets match.
    pub traffic: ValidMatch,
}

/// NAT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidNat {
    /// Source NAT.
    pub snat: Option<ValidSnat>,
    /// Static destination NAT mappings (no two for the same protocol, address and port).
    pub dnat: Vec<ValidDnat>,
    /// Connection-tracking table size.
    pub conntrack_size: u32,
}

/// Source NAT: sources of `to_address`'s family only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSnat {
    /// Which sources are translated; empty: every source of `to_address`'s family.
    pub source_cidrs: Vec<IpNet>,
    /// The unicast address they are translated to.
    pub to_address: IpAddr,
    /// Source ports used for TCP/UDP.
    pub to_ports: PortRange,
}

/// One DNAT mapping (`destination` and `to_address` of the same family, both unicast).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidDnat {
    /// Protocol.
    pub protocol: L4Protocol,
    /// Address matched.
    pub destination: IpAddr,
    /// Port matched.
    pub port: u16,
    /// Address written.
    pub to_address: IpAddr,
    /// Port written as the manifest says it; `None`: the port is kept (see [`ValidDnat::target_port`]).
    pub to_port: Option<u16>,
}

impl ValidDnat {
    /// The port written into a translated packet.
    pub fn target_port(&self) -> u16 {
        self.to_port.unwrap_or(self.port)
    }
}

/// A load balancer (backends of the VIP's family, unicast, no duplicates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidLoadBalancer {
    /// The virtual IP.
    pub vip: IpAddr,
    /// The virtual port.
    pub port: u16,
    /// Protocol of the service.
    pub protocol: L4Protocol,
    /// Backend selection.
    pub algorithm: LbAlgorithm,
    /// Maglev table size (a prime of at least 65537).
    pub table_size: u32,
    /// Flow-table size.
    pub flow_table_size: u32,
    /// The backends (at least one).
    pub backends: Vec<ValidBackend>,
}

/// A backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidBackend {
    /// Its address.
    pub address: IpAddr,
    /// Its port (the VIP's port when the manifest gives none).
    pub port: u16,
    /// Relative share of new flows (1 to 1000).
    pub weight: u32,
}

/// A monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidMonitor {
    /// How packets are classed.
    pub count_by: CountBy,
    /// One packet in N is sampled; 0: off.
    pub sample_one_in: u32,
}

/// A forwarder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidForwarder {
    /// Where packets go.
    pub mode: Forward,
    /// Destination MAC to write.
    pub next_hop_mac: Option<Mac>,
}

/// Where a forwarder sends packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Redirect to one of the chain's interfaces.
    Redirect {
        /// The interface.
        egress: InterfaceName,
    },
    /// Back out of the interface the packet came in on.
    Bounce,
    /// To the pod's kernel stack.
    Pass,
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Builds the typed form of a spec `validate()` found no problem in. Every value parses then; a value that
/// does not is still an error naming its field (never a panic), though validation reports it first.
pub(crate) fn typed_spec(spec: &VNFChainSpec) -> Result<ValidSpec, ValidationErrors> {
    let functions = spec
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| function(f, &format!("spec.functions[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ValidationErrors(vec![e]))?;
    let non_ip = spec.non_ip.problems();
    if !non_ip.is_empty() {
        return Err(ValidationErrors(
            non_ip
                .into_iter()
                .map(|(path, message)| ValidationError { path, message })
                .collect(),
        ));
    }
    Ok(ValidSpec {
        classifier: traffic(&spec.classifier, &|| "spec.classifier".into())
            .map_err(|e| ValidationErrors(vec![e]))?,
        functions,
        interfaces: spec.interfaces.clone(),
        dataplane: spec.dataplane.clone(),
        non_ip: spec.non_ip.ether_types(),
    })
}

type Typed<T> = Result<T, ValidationError>;

fn at(path: String) -> impl FnOnce(String) -> ValidationError {
    move |message| ValidationError { path, message }
}

/// Parses a prefix list; `path` (of the list) is only formatted for an error.
fn cidrs(list: &[Cidr], path: &dyn Fn() -> String) -> Typed<Vec<IpNet>> {
    list.iter()
        .enumerate()
        .map(|(k, c)| c.parse().map_err(|m| at(format!("{}[{k}]", path()))(m)))
        .collect()
}

fn ip(a: &IpAddress, path: String) -> Typed<IpAddr> {
    a.parse().map_err(at(path))
}

fn mac(m: &MacAddress, path: String) -> Typed<Mac> {
    m.parse().map(Mac).map_err(at(path))
}

fn traffic(m: &TrafficMatch, path: &dyn Fn() -> String) -> Typed<ValidMatch> {
    Ok(ValidMatch {
        protocol: m.protocol,
        source_cidrs: cidrs(&m.source_cidrs, &|| format!("{}.sourceCIDRs", path()))?,
        destination_cidrs: cidrs(&m.destination_cidrs, &|| {
            format!("{}.destinationCIDRs", path())
        })?,
        source_ports: m.source_ports.clone(),
        destination_ports: m.destination_ports.clone(),
    })
}

fn function(f: &Function, path: &str) -> Typed<ValidFunction> {
    let block = f.type_.as_str();
    let missing = || ValidationError {
        path: format!("{path}.{block}"),
        message: format!("type {} needs a {block} block", f.type_),
    };
    let path = format!("{path}.{block}");
    let config = match f.type_ {
        FunctionType::Firewall => {
            FunctionConfig::Firewall(firewall(f.firewall.as_ref().ok_or_else(missing)?, &path)?)
        }
        FunctionType::Nat => FunctionConfig::Nat(nat(f.nat.as_ref().ok_or_else(missing)?, &path)?),
        FunctionType::LoadBalancer => FunctionConfig::LoadBalancer(load_balancer(
            f.load_balancer.as_ref().ok_or_else(missing)?,
            &path,
        )?),
        FunctionType::RateLimiter => {
            FunctionConfig::RateLimiter(f.rate_limiter.clone().ok_or_else(missing)?)
        }
        FunctionType::Monitor => {
            let m: &MonitorConfig = f.monitor.as_ref().ok_or_else(missing)?;
            FunctionConfig::Monitor(ValidMonitor {
                count_by: m.count_by,
                sample_one_in: m.sample_one_in,
            })
        }
        FunctionType::Forwarder => {
            FunctionConfig::Forwarder(forwarder(f.forwarder.as_ref().ok_or_else(missing)?, &path)?)
        }
        FunctionType::PayloadCipher => {
            FunctionConfig::PayloadCipher(f.payload_cipher.clone().ok_or_else(missing)?)
        }
    };
    Ok(ValidFunction {
        name: f.name.as_str().to_owned(),
        tier: f.effective_tier(),
        config,
    })
}

fn firewall(c: &FirewallConfig, path: &str) -> Typed<ValidFirewall> {
    let rules = c
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(ValidRule {
                action: r.action,
                traffic: traffic(&r.traffic, &|| format!("{path}.rules[{i}]"))?,
            })
        })
        .collect::<Typed<Vec<_>>>()?;
    Ok(ValidFirewall {
        default_action: c.default_action,
        stateful: c.stateful,
        rules,
    })
}

fn nat(c: &NatConfig, path: &str) -> Typed<ValidNat> {
    let snat = match &c.snat {
        Some(s) => Some(ValidSnat {
            source_cidrs: cidrs(&s.source_cidrs, &|| format!("{path}.snat.sourceCIDRs"))?,
            to_address: ip(&s.to_address, format!("{path}.snat.toAddress"))?,
            to_ports: s.to_ports,
        }),
        None => None,
    };
    let dnat = c
        .dnat
        .iter()
        .enumerate()
        .map(|(k, m)| {
            Ok(ValidDnat {
                protocol: m.protocol,
                destination: ip(&m.destination, format!("{path}.dnat[{k}].destination"))?,
                port: m.port,
                to_address: ip(&m.to_address, format!("{path}.dnat[{k}].toAddress"))?,
                to_port: m.to_port,
            })
        })
        .collect::<Typed<Vec<_>>>()?;
    Ok(ValidNat {
        snat,
        dnat,
        conntrack_size: c.conntrack_size,
    })
}

fn load_balancer(c: &LoadBalancerConfig, path: &str) -> Typed<ValidLoadBalancer> {
    let backends = c
        .backends
        .iter()
        .enumerate()
        .map(|(k, b)| {
            Ok(ValidBackend {
                address: ip(&b.address, format!("{path}.backends[{k}].address"))?,
                port: b.port.unwrap_or(c.port),
                weight: b.weight,
            })
        })
        .collect::<Typed<Vec<_>>>()?;
    Ok(ValidLoadBalancer {
        vip: ip(&c.vip, format!("{path}.vip"))?,
        port: c.port,
        protocol: c.protocol,
        algorithm: c.algorithm,
        table_size: c.table_size,
        flow_table_size: c.flow_table_size,
        backends,
    })
}

fn forwarder(c: &ForwarderConfig, path: &str) -> Typed<ValidForwarder> {
    let mode = match (c.mode, &c.egress_interface) {
        (ForwardMode::Redirect, Some(egress)) => Forward::Redirect {
            egress: egress.clone(),
        },
        (ForwardMode::Redirect, None) => {
            return Err(ValidationError {
                path: format!("{path}.egressInterface"),
                message: "is required with mode redirect".into(),
            });
        }
        (ForwardMode::Bounce, _) => Forward::Bounce,
        (ForwardMode::Pass, _) => Forward::Pass,
    };
    Ok(ValidForwarder {
        mode,
        next_hop_mac: match &c.next_hop_mac {
            Some(m) => Some(mac(m, format!("{path}.nextHopMAC"))?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE: &str = include_str!("../../examples/edge-chain.yaml");

    /// What a consumer gets from a validated chain are parsed values: this test only compiles while the
    /// typed spec's addresses, prefixes, ports and MACs are `IpAddr`, `IpNet`, `u16` and `Mac`.
    #[test]
    fn the_typed_spec_holds_parsed_values_only() {
        let valid = crate::manifest::read_single_chain(EDGE).expect("valid example");
        let t = valid.typed();
        let _: &Vec<IpNet> = &t.classifier.destination_cidrs;
        let mut seen = Vec::new();
        for f in &t.functions {
            assert_ne!(f.tier, Tier::Auto, "{}: tier auto is resolved", f.name);
            match &f.config {
                FunctionConfig::Firewall(fw) => {
                    let _: Option<&IpNet> =
                        fw.rules.iter().flat_map(|r| &r.traffic.source_cidrs).next();
                }
                FunctionConfig::Nat(n) => {
                    let _: Option<IpAddr> = n.snat.as_ref().map(|s| s.to_address);
                    let _: Vec<(IpAddr, u16)> = n
                        .dnat
                        .iter()
                        .map(|d| (d.to_address, d.target_port()))
                        .collect();
                }
                FunctionConfig::LoadBalancer(lb) => {
                    let _: IpAddr = lb.vip;
                    assert!(
                        lb.backends
                            .iter()
                            .all(|b| b.port != 0 && b.address.is_ipv4() == lb.vip.is_ipv4())
                    );
                }
                FunctionConfig::Forwarder(fwd) => {
                    let _: Option<Mac> = fwd.next_hop_mac;
                }
                FunctionConfig::RateLimiter(_)
                | FunctionConfig::Monitor(_)
                | FunctionConfig::PayloadCipher(_) => {}
            }
            seen.push(f.type_());
        }
        let written: Vec<FunctionType> = valid.spec().functions.iter().map(|f| f.type_).collect();
        assert_eq!(seen, written);
        // The manifest as written is still there, through the accessors and Deref.
        assert_eq!(valid.metadata.name, valid.chain().metadata.name);
    }

    #[test]
    fn a_broken_value_is_an_error_naming_its_field_never_a_panic() {
        let mut chain = crate::manifest::parse_single_chain(EDGE).expect("valid example");
        chain.spec.classifier.destination_cidrs = vec![Cidr::from("10.0.0.1/8")];
        let e = typed_spec(&chain.spec).expect_err("host bits");
        assert_eq!(e.0[0].path, "spec.classifier.destinationCIDRs[0]");
        assert_eq!(Mac([2, 0, 0, 0, 0, 0x1f]).to_string(), "02:00:00:00:00:1f");
    }
}
