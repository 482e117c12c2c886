//! Turns a VNFChain manifest into a testbed plan: which namespaces, addresses, MACs and routes to create.
//!
//! The rules (also in docs/user-guide.md, "The laptop testbed"):
//! - **Client subnet**: the first IPv4 prefix among the firewall's `allow` rules' `sourceCIDRs`, then the SNAT
//!   `sourceCIDRs`, then the classifier's `sourceCIDRs`, then the first /24 of a classifier `destinationCIDRs`
//!   prefix that holds no service or server address — preferring one inside the classifier's destination
//!   prefixes, because replies to the client must be classified for a one-armed chain to restore them; else
//!   192.0.2.0/24. Prefixes shorter than /24 are narrowed to their first /24. The client takes the first host from .10 up that no rule or service names
//!   (10.0.1.10 for the edge chain); the CNF takes the first free host from .1 up.
//! - **Denied client**: the first firewall `deny` rule whose source is one IPv4 host (/32) gets a second client
//!   with that address (10.0.1.66 for the edge chain), so the test and the demo can show the drop.
//! - **IPv6**: when an `allow` rule names an IPv6 source prefix of /64 or shorter, the allowed client also gets
//!   host ::10 of that prefix (its first /64) and the CNF host ::1.
//! - **Servers**: one namespace per distinct load-balancer backend and NAT DNAT target address, in manifest
//!   order, each in its /24 (IPv4) or /64 (IPv6), serving the ports the manifest sends it; the CNF takes the
//!   first free host from .254 (IPv4) or ::fffe (IPv6) down in every server subnet.
//! - Every client and server routes everything (default routes) through the CNF, the only router; neighbours are
//!   permanent entries in both directions, so no first packet waits for ARP/NDP.
//! - One-armed chains (only `interfaces.ingress`): clients, servers and the CNF's ingress interface share one
//!   bridge, so backend replies re-enter the CNF on the ingress interface where NAT/LB reverse translation runs.
//!   Chains with `interfaces.egress`: the servers sit on a second bridge behind the egress interface.
//! - An address the plan needs that the manifest already uses for something else (a backend on the VIP, a backend
//!   on the CNF's or a client's address) is refused with the field path.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crds::{Action, FunctionConfig, VNFChain};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::TestbedError;
use super::flows::{Flow, plan_flows};

/// What an endpoint namespace is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// A client the chain allows.
    Client,
    /// A client a firewall rule denies by its source address.
    DeniedClient,
    /// A server: a load-balancer backend and/or a NAT DNAT target.
    Server,
    /// The server of a chain that offers no service (no NAT DNAT, no load balancer): the destination of the
    /// flows planned from the firewall rules and the classifier.
    Sink,
}

/// One planned client or server namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPlan {
    /// Its role.
    pub role: Role,
    /// Network namespace name.
    pub netns: String,
    /// Interface inside the namespace (always `eth0`).
    pub interface: String,
    /// The interface's port name on the bridge (inside the bridge namespace).
    pub bridge_port: String,
    /// MAC address of `interface`.
    pub mac: String,
    /// IPv4 address and prefix, if any.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address and prefix, if any.
    pub ipv6: Option<Ipv6Net>,
    /// The CNF's IPv4 address on this endpoint's subnet (its default gateway).
    pub gateway4: Option<Ipv4Addr>,
    /// The CNF's IPv6 address on this endpoint's subnet.
    pub gateway6: Option<Ipv6Addr>,
    /// Ports the manifest sends to this server (backend ports, DNAT target ports); empty for clients.
    pub ports: Vec<u16>,
    /// Whether this endpoint hangs off the egress side (chains with `interfaces.egress`).
    pub behind_egress: bool,
    /// The bridge it hangs off (empty in state files of older versions: `br1` when `behind_egress`, else
    /// `br0`).
    #[serde(default)]
    pub bridge: String,
}

impl EndpointPlan {
    /// The bridge this endpoint hangs off.
    pub fn bridge_name(&self) -> &str {
        match (self.bridge.as_str(), self.behind_egress) {
            ("", true) => "br1",
            ("", false) => "br0",
            (b, _) => b,
        }
    }
}

/// One planned CNF interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnfInterface {
    /// Interface name inside the CNF namespace (the manifest's ingress/egress name).
    pub name: String,
    /// Its port name on the bridge.
    pub bridge_port: String,
    /// Which bridge (`br0` clients, `br1` servers behind egress).
    pub bridge: String,
    /// MAC address.
    pub mac: String,
    /// Addresses with prefixes.
    pub addrs: Vec<IpNet>,
    /// Whether the chain is attached here (ingress and egress); a secondary network's interface only carries
    /// what a forwarder redirects to it.
    #[serde(default = "yes")]
    pub attached: bool,
}

fn yes() -> bool {
    true
}

/// A service the chain offers the clients: a load-balancer VIP or a NAT DNAT destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The function that offers it.
    pub function: String,
    /// `loadBalancer` or `dnat`.
    pub kind: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The address clients send to.
    pub address: IpAddr,
    /// The port clients send to.
    pub port: u16,
    /// Where it goes: (server address, port) for each backend / the DNAT target.
    pub targets: Vec<(IpAddr, u16)>,
}

/// The whole plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Testbed name.
    pub name: String,
    /// The namespace holding the bridge(s).
    pub bridge_netns: String,
    /// The CNF namespace.
    pub cnf_netns: String,
    /// The CNF's interfaces (ingress first).
    pub cnf_interfaces: Vec<CnfInterface>,
    /// Clients, then servers.
    pub endpoints: Vec<EndpointPlan>,
    /// The services (VIPs, DNAT destinations) in manifest order.
    pub services: Vec<Service>,
    /// The flows `vnfctl testbed traffic` sends (see [`super::flows`]).
    #[serde(default)]
    pub flows: Vec<Flow>,
    /// Sidecar mode (`spec.target`): the server namespaces the chain runs in (see [`super::sidecar`]); empty
    /// for a dedicated chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecar_pods: Vec<String>,
}

impl Plan {
    /// Every namespace of the plan, bridge first.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.bridge_netns.clone(), self.cnf_netns.clone()];
        v.extend(self.endpoints.iter().map(|e| e.netns.clone()));
        v
    }
}

/// Validates a testbed name: 1 to 32 of `[a-z0-9-]`, starting and ending with an alphanumeric.
pub fn check_name(name: &str) -> Result<(), TestbedError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(TestbedError::InvalidName {
            name: name.to_string(),
            reason:
                "must be 1 to 32 characters of a-z, 0-9 and '-', not starting or ending with '-'"
                    .into(),
        })
    }
}

/// Namespace-name prefix of testbed `name`.
pub fn netns_prefix(name: &str) -> String {
    format!("bvnf-{name}-")
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> TestbedError {
    TestbedError::Plan {
        field: field.into(),
        message: message.into(),
    }
}

/// Addresses the manifest gives a meaning to (VIPs, NAT addresses, backends, denied hosts), with their field.
#[derive(Default)]
struct Used(Vec<(IpAddr, String)>);

impl Used {
    fn find(&self, a: IpAddr) -> Option<&str> {
        self.0
            .iter()
            .find(|(x, _)| *x == a)
            .map(|(_, f)| f.as_str())
    }
}

fn mac(n: usize) -> String {
    format!("02:bf:00:00:{:02x}:{:02x}", (n >> 8) & 0xff, n & 0xff)
}

/// First /24 of an IPv4 prefix (the prefix itself when it is /24 or longer).
fn narrow4(net: Ipv4Net) -> Ipv4Net {
    if net.prefix_len() >= 24 {
        net
    } else {
        Ipv4Net::new(net.network(), 24).map_or(net, |n| n.trunc())
    }
}

fn narrow6(net: Ipv6Net) -> Ipv6Net {
    if net.prefix_len() >= 64 {
        net
    } else {
        Ipv6Net::new(net.network(), 64).map_or(net, |n| n.trunc())
    }
}

fn host4(net: Ipv4Net, n: u32) -> Option<Ipv4Addr> {
    let a = u32::from(net.network()).checked_add(n)?;
    let a = Ipv4Addr::from(a);
    (net.contains(&a) && a != net.broadcast() && n != 0).then_some(a)
}

fn host6(net: Ipv6Net, n: u128) -> Option<Ipv6Addr> {
    let a = u128::from(net.network()).checked_add(n)?;
    let a = Ipv6Addr::from(a);
    (net.contains(&a) && n != 0).then_some(a)
}

/// Builds the plan for `chain` under testbed `name`: validates it, then [`plan_valid`].
pub fn plan(chain: &VNFChain, name: &str) -> Result<Plan, TestbedError> {
    let valid = crds::validate(chain).map_err(|e| match e.0.first() {
        Some(first) => bad(&first.path, e.to_string()),
        None => bad("spec", "is not valid"),
    })?;
    plan_valid(&valid, name)
}

/// Builds the plan for a validated chain under testbed `name`, from its typed values (nothing is parsed).
pub fn plan_valid(chain: &crds::ValidChain, name: &str) -> Result<Plan, TestbedError> {
    check_name(name)?;
    check_drivable(chain)?;
    let spec = &chain.spec;
    // Sidecar mode (docs/sidecar.md): the dedicated one-armed layout, then the chain moves into the servers.
    if spec.target.is_some() {
        super::sidecar::check(chain)?;
    }
    let typed = chain.typed();
    let prefix = netns_prefix(name);

    let mut m = Manifest::read(typed);
    m.claim_servers()?;
    let dst4 = v4(&typed.classifier.destination_cidrs);
    let dst6 = v6(&typed.classifier.destination_cidrs);
    let client_net = client_subnet(&m, &v4(&typed.classifier.source_cidrs), &dst4);
    let mut cnf = CnfAddrs::default();
    let mut endpoints = plan_clients(
        &m,
        client_net,
        &v6(&typed.classifier.source_cidrs),
        &prefix,
        &mut cnf,
    )?;
    let behind_egress = spec.interfaces.egress.is_some();
    // MACs 16 and up: the clients, then the servers, then the sink.
    let mut n_mac = 15 + endpoints.len();
    let servers = plan_servers(
        &m,
        client_net,
        &endpoints[0],
        behind_egress,
        &prefix,
        &mut n_mac,
        &mut cnf,
    )?;
    endpoints.extend(servers);
    let mut cnf_interfaces = plan_cnf_interfaces(spec, cnf);
    for e in &mut endpoints {
        e.bridge = if e.behind_egress { "br1" } else { "br0" }.into();
    }
    if m.services.is_empty() {
        let ctx = SinkContext {
            used: &m.used,
            client_net,
            client6: endpoints[0].ipv6.map(|n| n.trunc()),
            dst4,
            dst6,
        };
        let sink = plan_sink(chain, &ctx, &prefix, &mut cnf_interfaces, mac(n_mac + 1))?;
        endpoints.push(sink);
    }
    let mut plan = Plan {
        name: name.to_string(),
        bridge_netns: format!("{prefix}br"),
        cnf_netns: format!("{prefix}cnf"),
        cnf_interfaces,
        endpoints,
        services: m.services,
        flows: Vec::new(),
        sidecar_pods: Vec::new(),
    };
    plan.flows = plan_flows(chain, &plan);
    set_sink_ports(&mut plan);
    if spec.target.is_some() {
        super::sidecar::place(chain, &mut plan);
    }
    Ok(plan)
}

/// What the manifest gives a meaning to, and where the client subnet comes from.
#[derive(Default)]
struct Manifest {
    used: Used,
    allow4: Vec<Ipv4Net>,
    allow6: Vec<Ipv6Net>,
    snat4: Vec<Ipv4Net>,
    denied: Option<(Ipv4Addr, String)>,
    /// Servers: (address, ports, field) in manifest order.
    servers: Vec<(IpAddr, Vec<u16>, String)>,
    services: Vec<Service>,
}

fn proto(p: crds::L4Protocol) -> String {
    match p {
        crds::L4Protocol::Tcp => "tcp".to_string(),
        crds::L4Protocol::Udp => "udp".to_string(),
    }
}

impl Manifest {
    /// Reads the addresses, prefixes, servers and services of every function.
    fn read(typed: &crds::ValidSpec) -> Self {
        let mut m = Manifest::default();
        for (i, f) in typed.functions.iter().enumerate() {
            let at = format!("spec.functions[{i}]");
            match &f.config {
                FunctionConfig::Firewall(fw) => m.firewall(&at, fw),
                FunctionConfig::Nat(nat) => m.nat(&at, &f.name, nat),
                FunctionConfig::LoadBalancer(lb) => m.load_balancer(&at, &f.name, lb),
                _ => {}
            }
        }
        m
    }

    fn add_server(&mut self, addr: IpAddr, port: u16, field: String) {
        if let Some(s) = self.servers.iter_mut().find(|s| s.0 == addr) {
            if !s.1.contains(&port) {
                s.1.push(port);
            }
        } else {
            self.servers.push((addr, vec![port], field));
        }
    }

    fn firewall(&mut self, at: &str, fw: &crds::valid::ValidFirewall) {
        for (j, r) in fw.rules.iter().enumerate() {
            for (k, c) in r.traffic.source_cidrs.iter().enumerate() {
                let field = format!("{at}.firewall.rules[{j}].sourceCIDRs[{k}]");
                match (r.action, *c) {
                    (Action::Allow, IpNet::V4(n)) if n.prefix_len() <= 30 => self.allow4.push(n),
                    (Action::Allow, IpNet::V6(n)) if n.prefix_len() <= 64 => self.allow6.push(n),
                    (Action::Deny, IpNet::V4(n)) if n.prefix_len() == 32 => {
                        self.used.0.push((IpAddr::V4(n.addr()), field.clone()));
                        if self.denied.is_none() {
                            self.denied = Some((n.addr(), field));
                        }
                    }
                    (Action::Deny, IpNet::V6(n)) if n.prefix_len() == 128 => {
                        self.used.0.push((IpAddr::V6(n.addr()), field));
                    }
                    _ => {}
                }
            }
        }
    }

    fn nat(&mut self, at: &str, function: &str, nat: &crds::valid::ValidNat) {
        if let Some(s) = &nat.snat {
            let field = format!("{at}.nat.snat.toAddress");
            self.used.0.push((s.to_address, field));
            for c in &s.source_cidrs {
                if let IpNet::V4(n) = *c {
                    self.snat4.push(n);
                }
            }
        }
        for (j, d) in nat.dnat.iter().enumerate() {
            let field = format!("{at}.nat.dnat[{j}].destination");
            let dest = d.destination;
            self.used.0.push((dest, field));
            let field = format!("{at}.nat.dnat[{j}].toAddress");
            let to = d.to_address;
            let to_port = d.target_port();
            self.add_server(to, to_port, field);
            self.services.push(Service {
                function: function.to_string(),
                kind: "dnat".into(),
                protocol: proto(d.protocol),
                address: dest,
                port: d.port,
                targets: vec![(to, to_port)],
            });
        }
    }

    fn load_balancer(&mut self, at: &str, function: &str, lb: &crds::valid::ValidLoadBalancer) {
        let field = format!("{at}.loadBalancer.vip");
        let vip = lb.vip;
        self.used.0.push((vip, field));
        let mut targets = Vec::new();
        for (j, b) in lb.backends.iter().enumerate() {
            let field = format!("{at}.loadBalancer.backends[{j}].address");
            let a = b.address;
            let port = b.port;
            self.add_server(a, port, field);
            targets.push((a, port));
        }
        self.services.push(Service {
            function: function.to_string(),
            kind: "loadBalancer".into(),
            protocol: proto(lb.protocol),
            address: vip,
            port: lb.port,
            targets,
        });
    }

    /// Servers are "used" too (a client or CNF address must not land on one); a server on a service
    /// address (VIP, NAT address, denied host) is a conflict.
    fn claim_servers(&mut self) -> Result<(), TestbedError> {
        for (addr, _, field) in &self.servers {
            if let Some(other) = self.used.find(*addr) {
                return Err(bad(
                    field,
                    format!(
                        "backend/target address {addr} is also {other}; a server cannot take it"
                    ),
                ));
            }
        }
        for (addr, _, field) in &self.servers {
            self.used.0.push((*addr, field.clone()));
        }
        Ok(())
    }
}

fn v4(list: &[IpNet]) -> Vec<Ipv4Net> {
    list.iter()
        .filter_map(|c| match c {
            IpNet::V4(n) => Some(*n),
            IpNet::V6(_) => None,
        })
        .collect()
}

fn v6(list: &[IpNet]) -> Vec<Ipv6Net> {
    list.iter()
        .filter_map(|c| match c {
            IpNet::V6(n) => Some(*n),
            IpNet::V4(_) => None,
        })
        .collect()
}

/// The client subnet. Replies to the client must be classified too (a one-armed chain restores them), so the
/// client subnet lies inside the classifier's destination prefixes when there are any; a /24 of a destination
/// prefix that holds no service or server address is the fallback.
fn client_subnet(m: &Manifest, classifier4: &[Ipv4Net], classifier_dst4: &[Ipv4Net]) -> Ipv4Net {
    let in_classifier =
        |n: &Ipv4Net| classifier_dst4.is_empty() || classifier_dst4.iter().any(|d| d.contains(n));
    // (servers are in `used` by now)
    let holds_used = |n: &Ipv4Net| {
        m.used
            .0
            .iter()
            .any(|(a, _)| matches!(a, IpAddr::V4(a) if n.contains(a)))
    };
    let mut candidates: Vec<Ipv4Net> = m
        .allow4
        .iter()
        .chain(&m.snat4)
        .chain(classifier4)
        .copied()
        .map(narrow4)
        .collect();
    for d in classifier_dst4 {
        if let Ok(subnets) = d.subnets(d.prefix_len().max(24)) {
            candidates.extend(subnets.take(256).filter(|n| !holds_used(n)));
        }
    }
    candidates
        .iter()
        .find(|n| in_classifier(n))
        .or(candidates.first())
        .copied()
        .unwrap_or_else(|| Ipv4Net::new(Ipv4Addr::new(192, 0, 2, 0), 24).expect("/24 is valid"))
}

/// The first host of `net` from host number `from` (up, or `down`) that the manifest does not use and that
/// is not in `taken`.
fn free4(used: &Used, net: Ipv4Net, from: u32, down: bool, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let size = 1u32 << (32 - u32::from(net.prefix_len()));
    let mut n = from;
    loop {
        let a = host4(net, n)?;
        if used.find(IpAddr::V4(a)).is_none() && !taken.contains(&a) {
            return Some(a);
        }
        n = if down { n.checked_sub(1)? } else { n + 1 };
        if n >= size {
            return None;
        }
    }
}

fn full(what: &str) -> TestbedError {
    bad("spec", format!("no free address for the {what}"))
}

/// The CNF's addresses: on the client side (ingress) and on the server side.
#[derive(Default)]
struct CnfAddrs {
    client: Vec<IpNet>,
    server: Vec<IpNet>,
}

impl CnfAddrs {
    fn all4(&self) -> Vec<Ipv4Addr> {
        self.client
            .iter()
            .chain(&self.server)
            .filter_map(|n| match n {
                IpNet::V4(n) => Some(n.addr()),
                IpNet::V6(_) => None,
            })
            .collect()
    }
}

/// The allowed client (IPv4 in `client_net`, IPv6 in the firewall's allowed prefix, else the classifier's
/// source prefix, else a documentation /64) and the denied client, with the CNF's addresses on their subnets.
fn plan_clients(
    m: &Manifest,
    client_net: Ipv4Net,
    classifier6: &[Ipv6Net],
    prefix: &str,
    cnf: &mut CnfAddrs,
) -> Result<Vec<EndpointPlan>, TestbedError> {
    let cnf_client4 = free4(&m.used, client_net, 1, false, &[]).ok_or_else(|| full("CNF"))?;
    let client4 =
        free4(&m.used, client_net, 10, false, &[cnf_client4]).ok_or_else(|| full("client"))?;
    cnf.client.push(IpNet::V4(
        Ipv4Net::new(cnf_client4, client_net.prefix_len()).expect("prefix from a net"),
    ));
    let net6 = m
        .allow6
        .first()
        .or(classifier6.first())
        .copied()
        .map(narrow6)
        .or_else(|| Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0xc1, 0, 0, 0, 0, 0), 64).ok());
    let (client6, cnf_client6) = match net6 {
        Some(net) => {
            let c6 = host6(net, 1).ok_or_else(|| full("CNF (IPv6)"))?;
            let c = host6(net, 0x10).ok_or_else(|| full("client (IPv6)"))?;
            cnf.client.push(IpNet::V6(
                Ipv6Net::new(c6, net.prefix_len()).expect("prefix from a net"),
            ));
            (
                Some(Ipv6Net::new(c, net.prefix_len()).expect("prefix from a net")),
                Some(c6),
            )
        }
        None => (None, None),
    };
    let n_mac = 16usize;
    let mut endpoints = vec![EndpointPlan {
        role: Role::Client,
        netns: format!("{prefix}client"),
        interface: "eth0".into(),
        bridge_port: "client".into(),
        mac: mac(n_mac),
        ipv4: Some(Ipv4Net::new(client4, client_net.prefix_len()).expect("prefix from a net")),
        ipv6: client6,
        gateway4: Some(cnf_client4),
        gateway6: cnf_client6,
        ports: Vec::new(),
        behind_egress: false,
        bridge: String::new(),
    }];
    if let Some((addr, _field)) = &m.denied {
        let (net, gw) = if client_net.contains(addr) {
            (client_net, cnf_client4)
        } else {
            let net = Ipv4Net::new(*addr, 24).expect("/24").trunc();
            let gw = free4(&m.used, net, 1, false, &[]).ok_or_else(|| full("CNF"))?;
            cnf.client
                .push(IpNet::V4(Ipv4Net::new(gw, 24).expect("/24")));
            (net, gw)
        };
        endpoints.push(EndpointPlan {
            role: Role::DeniedClient,
            netns: format!("{prefix}denied"),
            interface: "eth0".into(),
            bridge_port: "denied".into(),
            mac: mac(n_mac + 1),
            ipv4: Some(Ipv4Net::new(*addr, net.prefix_len()).expect("prefix from a net")),
            ipv6: None,
            gateway4: Some(gw),
            gateway6: None,
            ports: Vec::new(),
            behind_egress: false,
            bridge: String::new(),
        });
    }
    Ok(endpoints)
}

/// One server namespace per distinct server address, with the CNF's address on its subnet (reused when the
/// CNF already has one there); a server on the client's or the CNF's address is refused.
fn plan_servers(
    m: &Manifest,
    client_net: Ipv4Net,
    client: &EndpointPlan,
    behind_egress: bool,
    prefix: &str,
    n_mac: &mut usize,
    cnf: &mut CnfAddrs,
) -> Result<Vec<EndpointPlan>, TestbedError> {
    let mut endpoints = Vec::new();
    let client4 = client.ipv4.expect("the client has an IPv4 address").addr();
    let cnf_client4 = client.gateway4.expect("the client has an IPv4 gateway");
    for (i, (addr, ports, field)) in m.servers.iter().enumerate() {
        *n_mac += 1;
        let (ipv4, ipv6, gateway4, gateway6) = match addr {
            IpAddr::V4(a) => {
                if *a == client4 || *a == cnf_client4 {
                    return Err(bad(
                        field,
                        format!("{a} is the address the testbed gives the client or the CNF"),
                    ));
                }
                let net = if client_net.contains(a) && !behind_egress {
                    client_net
                } else {
                    narrow4(Ipv4Net::new(*a, 24).expect("/24").trunc())
                };
                let gw = match cnf.all4().into_iter().find(|g| net.contains(g)) {
                    Some(g) => g,
                    None => {
                        let g = free4(&m.used, net, 254, true, &[]).ok_or_else(|| full("CNF"))?;
                        cnf.server
                            .push(IpNet::V4(Ipv4Net::new(g, 24).expect("/24")));
                        g
                    }
                };
                (
                    Some(Ipv4Net::new(*a, net.prefix_len()).expect("prefix from a net")),
                    None,
                    Some(gw),
                    None,
                )
            }
            IpAddr::V6(a) => {
                let net = Ipv6Net::new(*a, 64).expect("/64").trunc();
                let existing = cnf.client.iter().chain(&cnf.server).find_map(|n| match n {
                    IpNet::V6(n) if n.trunc() == net => Some(n.addr()),
                    _ => None,
                });
                let gw = match existing {
                    Some(g) => g,
                    None => {
                        let g = host6(net, 0xfffe).ok_or_else(|| full("CNF (IPv6)"))?;
                        if g == *a {
                            return Err(bad(
                                field,
                                format!("{a} is the CNF's address on its subnet"),
                            ));
                        }
                        cnf.server
                            .push(IpNet::V6(Ipv6Net::new(g, 64).expect("/64")));
                        g
                    }
                };
                (
                    None,
                    Some(Ipv6Net::new(*a, 64).expect("/64")),
                    None,
                    Some(gw),
                )
            }
        };
        endpoints.push(EndpointPlan {
            role: Role::Server,
            netns: format!("{prefix}server{i}"),
            interface: "eth0".into(),
            bridge_port: format!("server{i}"),
            mac: mac(*n_mac),
            ipv4,
            ipv6,
            gateway4,
            gateway6,
            ports: ports.clone(),
            behind_egress,
            bridge: String::new(),
        });
    }
    // A server address that is the CNF's address on some subnet.
    let cnf_hosts: BTreeSet<IpAddr> = cnf
        .client
        .iter()
        .chain(&cnf.server)
        .map(|n| n.addr())
        .collect();
    for (addr, _, field) in &m.servers {
        if cnf_hosts.contains(addr) {
            return Err(bad(
                field,
                format!("{addr} is the CNF's address on its subnet"),
            ));
        }
    }
    Ok(endpoints)
}

/// The CNF's interfaces: ingress on `br0`, egress on `br1` (else the server addresses go on the ingress), and
/// one more veth and bridge per secondary network, which only a forwarder's redirect uses.
fn plan_cnf_interfaces(spec: &crds::VNFChainSpec, cnf: CnfAddrs) -> Vec<CnfInterface> {
    let mut cnf_interfaces = vec![CnfInterface {
        name: spec.interfaces.ingress.as_str().to_string(),
        bridge_port: "cnf0".into(),
        bridge: "br0".into(),
        mac: mac(1),
        addrs: cnf.client,
        attached: true,
    }];
    match &spec.interfaces.egress {
        Some(e) => cnf_interfaces.push(CnfInterface {
            name: e.as_str().to_string(),
            bridge_port: "cnf1".into(),
            bridge: "br1".into(),
            mac: mac(2),
            addrs: cnf.server,
            attached: true,
        }),
        None => cnf_interfaces[0].addrs.extend(cnf.server),
    }
    // A secondary network that supplies the ingress or egress interface itself (validate() allows it once) is
    // already that interface's veth.
    for n in &spec.interfaces.secondary_networks {
        if cnf_interfaces
            .iter()
            .any(|c| c.name == n.interface.as_str())
        {
            continue;
        }
        let i = cnf_interfaces.len();
        cnf_interfaces.push(CnfInterface {
            name: n.interface.as_str().to_string(),
            bridge_port: format!("cnf{i}"),
            bridge: format!("br{i}"),
            mac: mac(1 + i),
            addrs: Vec::new(),
            attached: false,
        });
    }
    cnf_interfaces
}

/// The sink serves the ports its flows go to.
fn set_sink_ports(plan: &mut Plan) {
    let mut sink_ports: Vec<u16> = plan
        .flows
        .iter()
        .flat_map(|f| f.targets.iter())
        .filter(|(ns, _)| ns.ends_with("-sink"))
        .map(|(_, a)| a.port())
        .collect();
    sink_ports.sort_unstable();
    sink_ports.dedup();
    if let Some(sink) = plan.endpoints.iter_mut().find(|e| e.role == Role::Sink) {
        sink.ports = sink_ports;
    }
}

/// What [`plan_sink`] needs from the rest of the plan.
struct SinkContext<'a> {
    used: &'a Used,
    client_net: Ipv4Net,
    client6: Option<Ipv6Net>,
    dst4: Vec<Ipv4Net>,
    dst6: Vec<Ipv6Net>,
}

/// The sink of a chain without services: host .10 (IPv4) and ::10 (IPv6) of the first /24 and /64 of the
/// classifier's destination prefixes that hold nothing else (else 198.51.100.0/24 and 2001:db8:5::/64), behind
/// the interface a forwarder redirects to (else the egress, else the ingress), with the forwarder's
/// `nextHopMAC` — or, when a redirecting forwarder names none, the CNF ingress MAC, which the frames keep.
fn plan_sink(
    chain: &VNFChain,
    ctx: &SinkContext<'_>,
    prefix: &str,
    cnf_interfaces: &mut [CnfInterface],
    own_mac: String,
) -> Result<EndpointPlan, TestbedError> {
    let spec = &chain.spec;
    let holds_used = |n: &Ipv4Net| {
        ctx.used
            .0
            .iter()
            .any(|(a, _)| matches!(a, IpAddr::V4(a) if n.contains(a)))
    };
    let mut nets4 = Vec::new();
    for d in &ctx.dst4 {
        if let Ok(subnets) = d.subnets(d.prefix_len().max(24)) {
            nets4.extend(subnets.take(256));
        }
    }
    nets4.push(Ipv4Net::new(Ipv4Addr::new(198, 51, 100, 0), 24).expect("/24"));
    nets4.push(Ipv4Net::new(Ipv4Addr::new(203, 0, 113, 0), 24).expect("/24"));
    let net4 = nets4
        .into_iter()
        .find(|n| !holds_used(n) && !n.contains(&ctx.client_net.network()))
        .ok_or_else(|| {
            bad(
                "spec.classifier.destinationCIDRs",
                "no free /24 for the sink",
            )
        })?;
    let mut nets6: Vec<Ipv6Net> = ctx.dst6.iter().copied().map(narrow6).collect();
    nets6.push(Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 0), 64).expect("/64"));
    let net6 = nets6
        .into_iter()
        .find(|n| Some(*n) != ctx.client6)
        .ok_or_else(|| {
            bad(
                "spec.classifier.destinationCIDRs",
                "no free /64 for the sink",
            )
        })?;
    let full = || bad("spec", "no free address for the sink");
    let (a4, g4) = (
        host4(net4, 10).ok_or_else(full)?,
        host4(net4, 254).ok_or_else(full)?,
    );
    let (a6, g6) = (
        host6(net6, 0x10).ok_or_else(full)?,
        host6(net6, 0xfffe).ok_or_else(full)?,
    );

    // Where a forwarder sends the chain's packets.
    let redirect = spec.functions.iter().find_map(|f| {
        let fwd = f.forwarder.as_ref()?;
        (fwd.mode == crds::ForwardMode::Redirect).then(|| {
            (
                fwd.egress_interface
                    .as_ref()
                    .map(|i| i.as_str().to_string()),
                fwd.next_hop_mac.as_ref().map(|m| m.as_str().to_lowercase()),
            )
        })
    });
    let side = match &redirect {
        Some((Some(i), _)) => cnf_interfaces.iter().position(|c| &c.name == i),
        _ => None,
    }
    .unwrap_or(usize::from(spec.interfaces.egress.is_some()));
    let mac = match &redirect {
        Some((_, Some(m))) => m.clone(),
        Some((Some(i), None)) if side != 0 && *i != cnf_interfaces[0].name => {
            cnf_interfaces[0].mac.clone()
        }
        _ => own_mac,
    };
    let cnf = &mut cnf_interfaces[side];
    cnf.addrs
        .push(IpNet::V4(Ipv4Net::new(g4, 24).expect("/24")));
    cnf.addrs
        .push(IpNet::V6(Ipv6Net::new(g6, 64).expect("/64")));
    Ok(EndpointPlan {
        role: Role::Sink,
        netns: format!("{prefix}sink"),
        interface: "eth0".into(),
        bridge_port: "sink".into(),
        mac,
        ipv4: Some(Ipv4Net::new(a4, 24).expect("/24")),
        ipv6: Some(Ipv6Net::new(a6, 64).expect("/64")),
        gateway4: Some(g4),
        gateway6: Some(g6),
        ports: Vec::new(),
        behind_egress: side != 0,
        bridge: cnf.bridge.clone(),
    })
}

/// Refuses, with the reason, a chain the testbed cannot drive.
pub fn check_drivable(chain: &VNFChain) -> Result<(), TestbedError> {
    let spec = &chain.spec;
    for (i, f) in spec.functions.iter().enumerate() {
        if let Some(fwd) = &f.forwarder
            && fwd.mode == crds::ForwardMode::Bounce
        {
            return Err(bad(
                format!("spec.functions[{i}].forwarder.mode"),
                "bounce sends every frame back out of the interface it came in on; the testbed has no \
                 next hop there to receive it, so it cannot carry traffic through this chain",
            ));
        }
    }
    if spec.dataplane.userspace.backend == crds::UserspaceBackend::Dpdk
        && spec
            .functions
            .iter()
            .any(|f| f.tier == crds::Tier::Userspace)
    {
        return Err(bad(
            "spec.dataplane.userspace.backend",
            "the testbed runs user-space functions with AF_XDP on veth pairs; DPDK needs a NIC bound to it",
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An example manifest of `examples/`, parsed.
    pub(crate) fn example(file: &str) -> VNFChain {
        let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("example");
        crds::manifest::parse_single_chain(&text).expect("valid example")
    }

    #[test]
    fn edge_chain_plan_follows_the_documented_rules() {
        let p = plan(&example("edge-chain.yaml"), "edge").expect("plans");
        assert_eq!(p.cnf_netns, "bvnf-edge-cnf");
        let client = &p.endpoints[0];
        assert_eq!(client.role, Role::Client);
        assert_eq!(
            client.ipv4.map(|n| n.to_string()).as_deref(),
            Some("10.0.1.10/24")
        );
        assert_eq!(client.gateway4, Some(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(
            client.ipv6.map(|n| n.to_string()).as_deref(),
            Some("2001:db8:1::10/64")
        );
        let denied = &p.endpoints[1];
        assert_eq!(denied.role, Role::DeniedClient);
        assert_eq!(
            denied.ipv4.map(|n| n.addr()),
            Some(Ipv4Addr::new(10, 0, 1, 66))
        );
        let servers: Vec<(String, Vec<u16>)> = p
            .endpoints
            .iter()
            .filter(|e| e.role == Role::Server)
            .map(|e| {
                (
                    e.ipv4.map(|n| n.addr().to_string()).unwrap_or_default(),
                    e.ports.clone(),
                )
            })
            .collect();
        assert_eq!(
            servers,
            vec![
                ("10.0.2.10".to_string(), vec![9999]),
                ("10.0.2.1".to_string(), vec![8080]),
                ("10.0.2.2".to_string(), vec![8080]),
                ("10.0.2.3".to_string(), vec![8080]),
            ]
        );
        let cnf: Vec<String> = p.cnf_interfaces[0]
            .addrs
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(cnf, ["10.0.1.1/24", "2001:db8:1::1/64", "10.0.2.254/24"]);
        assert_eq!(p.cnf_interfaces.len(), 1, "one-armed");
        let svc: Vec<String> = p
            .services
            .iter()
            .map(|s| {
                format!(
                    "{} {} {}:{} -> {}",
                    s.kind,
                    s.protocol,
                    s.address,
                    s.port,
                    s.targets.len()
                )
            })
            .collect();
        assert_eq!(
            svc,
            [
                "dnat udp 10.0.0.200:9999 -> 1",
                "loadBalancer tcp 10.0.0.100:80 -> 3"
            ]
        );
        let macs: BTreeSet<&str> = p.endpoints.iter().map(|e| e.mac.as_str()).collect();
        assert_eq!(macs.len(), p.endpoints.len(), "MACs are unique");
    }

    #[test]
    fn a_backend_on_a_service_address_is_refused_with_its_field() {
        let mut chain = example("edge-chain.yaml");
        let lb = chain.spec.functions[2].load_balancer.as_mut().expect("lb");
        lb.backends[1].address = crds::net::IpAddress::from("10.0.0.200");
        let e = plan(&chain, "edge").expect_err("conflict");
        let msg = e.to_string();
        assert!(
            msg.contains("spec.functions[2].loadBalancer.backends[1].address")
                && msg.contains("spec.functions[1].nat.dnat[0].destination"),
            "{msg}"
        );
        let mut chain = example("edge-chain.yaml");
        let lb = chain.spec.functions[2].load_balancer.as_mut().expect("lb");
        lb.backends[0].address = crds::net::IpAddress::from("10.0.1.66");
        let msg = plan(&chain, "edge").expect_err("conflict").to_string();
        assert!(
            msg.contains("backends[0].address") && msg.contains("firewall.rules[0].sourceCIDRs[0]"),
            "{msg}"
        );
        // a backend in the client's subnet is fine: the client and the CNF step around it
        let mut chain = example("edge-chain.yaml");
        let lb = chain.spec.functions[2].load_balancer.as_mut().expect("lb");
        lb.backends[0].address = crds::net::IpAddress::from("10.0.1.10");
        let p = plan(&chain, "edge").expect("plans");
        assert_eq!(
            p.endpoints[0].ipv4_addr(),
            Some(Ipv4Addr::new(10, 0, 1, 11))
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("edge-1").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chains_with_an_egress_put_servers_behind_it() {
        let mut chain = example("edge-chain.yaml");
        chain.spec.interfaces.egress = Some(crds::net::InterfaceName::from("eth1"));
        let p = plan(&chain, "e2").expect("plans");
        assert_eq!(p.cnf_interfaces.len(), 2);
        assert_eq!(p.cnf_interfaces[1].name, "eth1");
        let a: Vec<String> = p.cnf_interfaces[1]
            .addrs
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(a, ["10.0.2.254/24"]);
        assert!(
            p.endpoints
                .iter()
                .filter(|e| e.role == Role::Server)
                .all(|e| e.behind_egress)
        );
    }
}
