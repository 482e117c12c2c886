//! The traffic a testbed sends, derived from the manifest, and what each flow should meet.
//!
//! Flows (also in docs/user-guide.md, "What the testbed sends"):
//! - **Services**: every NAT DNAT destination and load-balancer VIP gets a flow of its protocol from the
//!   allowed client and, when the manifest names one, from the denied client.
//! - **Chains without services** send to the sink (see [`super::plan`]): per firewall rule one flow of the
//!   rule's protocol (`any`: UDP) to the first port of its first destination range (none: port 7), for each
//!   address family its sources name (none: both); then, per family, a UDP and a TCP flow to a port no rule
//!   names (the default action); the classifier's ports give one more flow each. Duplicates are dropped.
//! - The expected outcome comes from walking the chain as the data plane does, first match wins: a packet the
//!   classifier does not match passes untouched; a firewall rule or default that denies drops it; DNAT and the
//!   load balancer rewrite the destination for the functions after them. A TCP flow is delivered only when
//!   the reply comes back too, so a stateless firewall must also allow the reply. Rate limiters are assumed not
//!   to bite: the testbed's rates stay far below the examples' limits.

use std::net::{IpAddr, SocketAddr};

use crds::{Action, FunctionType, Protocol, TrafficMatch, VNFChain};
use serde::{Deserialize, Serialize};

use super::plan::{EndpointPlan, Plan, Role};

/// Transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// UDP datagrams (pktgen's paced sender, one-way).
    Udp,
    /// TCP connections with a request and its reply (both directions).
    Tcp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        })
    }
}

/// What a flow should meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Every packet (UDP) or every request's reply (TCP) arrives.
    Delivered,
    /// Nothing arrives.
    Dropped,
}

/// One planned flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Its index (UDP stream ids are `id << 16 | n`).
    pub id: usize,
    /// UDP or TCP.
    pub protocol: Proto,
    /// The client's namespace.
    pub client: String,
    /// The client's address.
    pub source: IpAddr,
    /// Where the client sends.
    pub destination: SocketAddr,
    /// Where it may arrive: (namespace, address:port) of each server behind the destination.
    pub targets: Vec<(String, SocketAddr)>,
    /// What it should meet.
    pub expect: Expect,
    /// Why (the rule or default that decides).
    pub why: String,
    /// The flow the progress lines follow (the first allowed UDP flow of the allowed client).
    pub main: bool,
}

impl Flow {
    /// `allowed 10.0.1.10 → 10.0.0.200:9999 udp`.
    pub fn label(&self) -> String {
        let what = match self.expect {
            Expect::Delivered => "allowed",
            Expect::Dropped => "denied",
        };
        format!(
            "{what} {} → {} {}",
            self.source, self.destination, self.protocol
        )
    }
}

/// A packet as the chain sees it.
#[derive(Clone, Copy, Debug)]
struct Packet {
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
}

/// The source port the evaluation assumes for clients (pktgen and the OS pick ephemeral ports).
const EPHEMERAL: u16 = 40000;

fn matches(m: &TrafficMatch, p: &Packet) -> bool {
    let proto_ok = matches!(
        (m.protocol, p.proto),
        (Protocol::Any, _) | (Protocol::Udp, Proto::Udp) | (Protocol::Tcp, Proto::Tcp)
    );
    let in_cidrs = |cidrs: &[crds::net::Cidr], a: IpAddr| {
        cidrs.is_empty()
            || cidrs
                .iter()
                .any(|c| c.parse().is_ok_and(|n| n.contains(&a)))
    };
    let in_ports = |ports: &[crds::net::PortRange], p: u16| {
        ports.is_empty() || ports.iter().any(|r| r.contains(p))
    };
    proto_ok
        && in_cidrs(&m.source_cidrs, p.src.ip())
        && in_cidrs(&m.destination_cidrs, p.dst.ip())
        && in_ports(&m.source_ports, p.src.port())
        && in_ports(&m.destination_ports, p.dst.port())
}

fn same_l4(a: crds::L4Protocol, b: Proto) -> bool {
    matches!(
        (a, b),
        (crds::L4Protocol::Udp, Proto::Udp) | (crds::L4Protocol::Tcp, Proto::Tcp)
    )
}

/// Walks the chain for one packet: `Ok(note)` when it passes, `Err(why)` when a function drops it.
fn walk(chain: &VNFChain, mut p: Packet) -> Result<String, String> {
    let spec = &chain.spec;
    if !matches(&spec.classifier, &p) {
        return Ok("the classifier does not match it: it passes untouched".into());
    }
    let mut notes = Vec::new();
    for f in &spec.functions {
        let name = f.name.as_str();
        match f.type_ {
            FunctionType::Firewall => {
                let Some(fw) = &f.firewall else { continue };
                let hit = fw
                    .rules
                    .iter()
                    .enumerate()
                    .find(|(_, r)| matches(&r.traffic, &p));
                let (action, what) = match hit {
                    Some((i, r)) => (r.action, format!("{name} rule {i}")),
                    None => (fw.default_action, format!("{name} default")),
                };
                match action {
                    Action::Allow => notes.push(format!("{what} allows")),
                    Action::Deny => return Err(format!("{what} denies")),
                }
            }
            FunctionType::Nat => {
                let Some(nat) = &f.nat else { continue };
                for d in &nat.dnat {
                    if same_l4(d.protocol, p.proto)
                        && d.destination.parse().ok() == Some(p.dst.ip())
                        && d.port == p.dst.port()
                        && let Ok(to) = d.to_address.parse()
                    {
                        p.dst = SocketAddr::new(to, d.to_port.unwrap_or(d.port));
                        notes.push(format!("{name} DNAT to {}", p.dst));
                        break;
                    }
                }
            }
            FunctionType::LoadBalancer => {
                let Some(lb) = &f.load_balancer else { continue };
                if same_l4(lb.protocol, p.proto)
                    && lb.vip.parse().ok() == Some(p.dst.ip())
                    && lb.port == p.dst.port()
                    && let Some(b) = lb.backends.first()
                    && let Ok(a) = b.address.parse()
                {
                    p.dst = SocketAddr::new(a, b.port.unwrap_or(lb.port));
                    notes.push(format!("{name} balances to the backends"));
                }
            }
            _ => {}
        }
    }
    Ok(if notes.is_empty() {
        "no function drops it".into()
    } else {
        notes.join(", ")
    })
}

/// The expected outcome of a flow and why. TCP needs the reply to pass as well (from the target back to the
/// client), except through a stateful firewall, whose connection tracking lets replies through.
fn expect(chain: &VNFChain, proto: Proto, src: IpAddr, dst: SocketAddr) -> (Expect, String) {
    let p = Packet {
        proto,
        src: SocketAddr::new(src, EPHEMERAL),
        dst,
    };
    match walk(chain, p) {
        Err(why) => (Expect::Dropped, why),
        Ok(why) if proto == Proto::Udp => (Expect::Delivered, why),
        Ok(why) => {
            let stateful = chain
                .spec
                .functions
                .iter()
                .filter_map(|f| f.firewall.as_ref())
                .all(|fw| fw.stateful);
            if stateful {
                return (Expect::Delivered, why);
            }
            let reply = Packet {
                proto,
                src: dst,
                dst: p.src,
            };
            match walk(chain, reply) {
                Ok(_) => (Expect::Delivered, why),
                Err(r) => (
                    Expect::Dropped,
                    format!("{why}, but {r} the reply (the firewall is stateless)"),
                ),
            }
        }
    }
}

fn addr_of(e: &EndpointPlan, v6: bool) -> Option<IpAddr> {
    if v6 {
        e.ipv6_addr().map(IpAddr::V6)
    } else {
        e.ipv4_addr().map(IpAddr::V4)
    }
}

/// The flows for `chain` laid out as `plan` (see the module documentation for the rules).
pub fn plan_flows(chain: &VNFChain, plan: &Plan) -> Vec<Flow> {
    let clients: Vec<&EndpointPlan> = plan
        .endpoints
        .iter()
        .filter(|e| matches!(e.role, Role::Client | Role::DeniedClient))
        .collect();
    let mut flows: Vec<Flow> = Vec::new();
    let mut add = |proto: Proto,
                   client: &EndpointPlan,
                   dst: SocketAddr,
                   targets: Vec<(String, SocketAddr)>| {
        let Some(src) = addr_of(client, dst.is_ipv6()) else {
            return;
        };
        if flows
            .iter()
            .any(|f| f.protocol == proto && f.source == src && f.destination == dst)
        {
            return;
        }
        let (expect, why) = expect(chain, proto, src, dst);
        flows.push(Flow {
            id: flows.len(),
            protocol: proto,
            client: client.netns.clone(),
            source: src,
            destination: dst,
            targets,
            expect,
            why,
            main: false,
        });
    };
    let server_of = |a: IpAddr| {
        plan.endpoints
            .iter()
            .find(|e| e.role == Role::Server && e.has_addr(a))
            .map(|e| e.netns.clone())
    };
    for s in &plan.services {
        let proto = if s.protocol == "tcp" {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        let targets: Vec<(String, SocketAddr)> = s
            .targets
            .iter()
            .filter_map(|(a, p)| server_of(*a).map(|ns| (ns, SocketAddr::new(*a, *p))))
            .collect();
        for c in &clients {
            add(
                proto,
                c,
                SocketAddr::new(s.address, s.port),
                targets.clone(),
            );
        }
    }
    if let Some(sink) = plan.endpoints.iter().find(|e| e.role == Role::Sink) {
        for (proto, port, families, who) in sink_probes(chain) {
            for v6 in [false, true] {
                if !families.contains(&v6) {
                    continue;
                }
                let Some(dst) = addr_of(sink, v6) else {
                    continue;
                };
                let dst = SocketAddr::new(dst, port);
                let targets = vec![(sink.netns.clone(), dst)];
                for c in &clients {
                    // a rule about one source host is probed from that host only, the rest from the client
                    let send = match who {
                        Some(h) => c.has_addr(h),
                        None => c.role == Role::Client,
                    };
                    if send {
                        add(proto, c, dst, targets.clone());
                    }
                }
            }
        }
    }
    if let Some(f) = flows.iter_mut().find(|f| {
        f.protocol == Proto::Udp
            && f.expect == Expect::Delivered
            && clients.first().is_some_and(|c| c.netns == f.client)
    }) {
        f.main = true;
    }
    flows
}

/// (protocol, port, address families as `is_ipv6`, source host) of each probe of the sink.
type Probe = (Proto, u16, Vec<bool>, Option<IpAddr>);

fn sink_probes(chain: &VNFChain) -> Vec<Probe> {
    let spec = &chain.spec;
    let mut named: Vec<crds::net::PortRange> = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    let families = |m: &TrafficMatch| -> Vec<bool> {
        let fams: Vec<bool> = m
            .source_cidrs
            .iter()
            .chain(&m.destination_cidrs)
            .filter_map(|c| c.parse().ok())
            .map(|n: ipnet::IpNet| matches!(n, ipnet::IpNet::V6(_)))
            .collect();
        match m.protocol {
            Protocol::Icmp => vec![false],
            Protocol::Icmpv6 => vec![true],
            _ if fams.is_empty() => vec![false, true],
            _ => fams,
        }
    };
    let mut rule_probe = |m: &TrafficMatch, host: Option<IpAddr>| {
        named.extend(m.destination_ports.iter().copied());
        let proto = match m.protocol {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp | Protocol::Any => Proto::Udp,
            Protocol::Icmp | Protocol::Icmpv6 => return,
        };
        let port = m.destination_ports.first().map_or(7, |r| r.from);
        probes.push((proto, port, families(m), host));
    };
    if spec.classifier.protocol.has_ports() || !spec.classifier.destination_ports.is_empty() {
        rule_probe(&spec.classifier, None);
    }
    for f in &spec.functions {
        let Some(fw) = &f.firewall else { continue };
        for r in &fw.rules {
            // a rule about one source host is probed from that host (the planned denied client)
            let host = r.traffic.source_cidrs.iter().find_map(|c| {
                c.parse()
                    .ok()
                    .filter(|n: &ipnet::IpNet| n.prefix_len() == n.max_prefix_len())
                    .map(|n| n.addr())
            });
            rule_probe(&r.traffic, host);
        }
    }
    let free = (7u16..)
        .take(1000)
        .find(|p| !named.iter().any(|r| r.contains(*p)))
        .unwrap_or(7);
    for proto in [Proto::Udp, Proto::Tcp] {
        probes.push((proto, free, vec![false, true], None));
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testbed::plan::tests::example;

    fn lines(file: &str) -> Vec<String> {
        let chain = example(file);
        let plan = super::super::plan::plan(&chain, "x").expect("plans");
        plan.flows
            .iter()
            .map(|f| format!("{} ({:?})", f.label(), f.expect))
            .collect()
    }

    #[test]
    fn the_edge_chain_sends_to_each_service_from_both_clients() {
        let l = lines("edge-chain.yaml");
        assert_eq!(
            l,
            [
                "allowed 10.0.1.10 → 10.0.0.200:9999 udp (Delivered)",
                "denied 10.0.1.66 → 10.0.0.200:9999 udp (Dropped)",
                "allowed 10.0.1.10 → 10.0.0.100:80 tcp (Delivered)",
                "denied 10.0.1.66 → 10.0.0.100:80 tcp (Dropped)",
            ]
        );
    }

    #[test]
    fn a_stateless_firewall_drops_tcp_replies_and_the_classifier_lets_other_traffic_pass() {
        let chain = example("dns-firewall.yaml");
        let plan = super::super::plan::plan(&chain, "x").expect("plans");
        let tcp53 = plan
            .flows
            .iter()
            .find(|f| f.protocol == Proto::Tcp && f.destination.port() == 53)
            .expect("tcp 53");
        assert_eq!(tcp53.expect, Expect::Dropped, "{}", tcp53.why);
        assert!(tcp53.why.contains("stateless"), "{}", tcp53.why);
        let udp53 = plan
            .flows
            .iter()
            .find(|f| f.protocol == Proto::Udp && f.destination.port() == 53 && f.source.is_ipv4())
            .expect("udp 53");
        assert_eq!(udp53.expect, Expect::Delivered);
        assert!(udp53.main);
        // lab: TCP is not classified (protocol udp) and passes; UDP 9001 is denied
        let l = lines("lab.yaml");
        assert!(l.iter().any(|x| x.contains(":9001 udp (Dropped)")), "{l:?}");
        assert!(l.iter().any(|x| x.contains(" tcp (Delivered)")), "{l:?}");
    }

    #[test]
    fn every_example_has_an_allowed_and_a_checked_flow() {
        for f in [
            "edge-chain.yaml",
            "firewall.yaml",
            "dns-firewall.yaml",
            "lab.yaml",
            "ipv6-router.yaml",
            "userspace-cipher.yaml",
        ] {
            let l = lines(f);
            assert!(l.iter().any(|x| x.ends_with("(Delivered)")), "{f}: {l:?}");
            assert!(l.len() >= 2, "{f}: {l:?}");
        }
    }
}
