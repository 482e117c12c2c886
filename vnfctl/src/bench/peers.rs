//! The kernel peers of a VNFChain: the same manifest translated into nftables, IPVS, tc police and xdp-filter.
//!
//! Pure functions: they produce the rule text and command lines, and a list of [`Gap`]s — every manifest feature
//! the kernel tool cannot express, or expresses differently — so a benchmark never silently compares different
//! behaviour. [`crate::bench::apply`] runs the commands inside a namespace.
//!
//! Mapping:
//! - firewall → an nftables chain. When the firewall comes before any address-rewriting function (NAT, load
//!   balancer) it runs in `prerouting` at priority -150 (after conntrack, before DNAT), so it sees the addresses the
//!   chain's firewall sees; otherwise in `forward`. `stateful: true` adds `ct state established,related accept`
//!   first. The chain's classifier guards the jump into it (traffic outside the classifier bypasses the chain).
//! - NAT → nftables `snat`/`dnat` in `postrouting`/`prerouting` (ports only for TCP/UDP).
//! - load balancer → IPVS in masquerade (NAT) mode with the `mh` (Maglev hashing) scheduler and the manifest's
//!   weights; the VIP is added to the CNF's loopback so IPVS (which works on locally-addressed traffic) sees it.
//! - rate limiter → `tc ... matchall action police` on the ingress interface (packet and/or bit rate), and the
//!   same limits as an nftables `limit` in a table of its own (one bucket per key through a dynamic set, for kernels
//!   without `act_police`, and because per-source/per-flow keys have no tc police equivalent).
//! - firewall-only chains → `xdp-filter` (stateless, single-field matches).

use std::fmt::Write as _;

use crds::functions::{Action, L4Protocol, Protocol, RateKey, RateLimiterConfig};
use crds::net::PortRange;
use crds::valid::{FunctionConfig, IpNet, ValidFirewall, ValidLoadBalancer, ValidMatch, ValidNat};
use crds::vnfchain::VNFChainSpec;
use crds::{ValidSpec, ValidationErrors};

/// The nftables table every peer rule lives in (`inet` family).
pub const NFT_TABLE: &str = "buildvnf_bench";
/// The nftables table of the rate limiter's `limit` peer.
pub const NFT_RL_TABLE: &str = "buildvnf_bench_rl";

/// Ports of one range xdp-filter gets listed one by one, at most.
const XDP_FILTER_MAX_PORTS: u32 = 1024;

/// A manifest feature a kernel peer cannot express, or expresses differently.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    /// Which peer (`nftables`, `ipvs`, `tc`, `xdp-filter`, `kernel`).
    pub peer: &'static str,
    /// The manifest field, e.g. `spec.functions[3].rateLimiter.key`.
    pub field: String,
    /// What differs.
    pub note: String,
}

/// Why a chain cannot be translated at all.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PeerError {
    /// The spec does not pass `validate()`.
    #[error("the chain is not valid (check it with `vnfctl validate`):\n{0}")]
    Invalid(#[from] ValidationErrors),
}

/// Every kernel peer of one chain.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct KernelPeers {
    /// `nft -f -` input for the firewall and NAT (None when the chain has neither).
    pub nft: Option<String>,
    /// Shell-free command lines for IPVS (`ipvsadm ...` and `ip addr add VIP dev lo`).
    pub ipvs: Vec<Vec<String>>,
    /// Command lines for tc police on the ingress interface.
    pub tc: Vec<Vec<String>>,
    /// `nft -f -` input for the rate limiter as nftables `limit` (None without a rate limiter).
    pub nft_ratelimit: Option<String>,
    /// Command lines for xdp-filter (only for firewall-only chains).
    pub xdp_filter: Option<Vec<Vec<String>>>,
    /// What the peers do differently from the chain.
    pub gaps: Vec<Gap>,
}

impl KernelPeers {
    /// Whether the chain has a function each peer covers.
    pub fn has_nft(&self) -> bool {
        self.nft.is_some()
    }
}

/// [`peers`] of a spec as written: validates it first.
pub fn kernel_peers(spec: &VNFChainSpec, ingress: &str) -> Result<KernelPeers, PeerError> {
    Ok(peers(&crds::validate_spec(spec)?, ingress))
}

/// Translates a validated chain into its kernel peers; `ingress` is the CNF's ingress interface (for tc).
pub fn peers(spec: &ValidSpec, ingress: &str) -> KernelPeers {
    let mut p = KernelPeers::default();
    let mut fw_rules = String::new();
    let mut nat_pre = String::new();
    let mut nat_post = String::new();
    let mut fw_hook: Option<&'static str> = None;
    let mut rewritten = false;
    let mut firewall_only = !spec.functions.is_empty();
    let mut single_fw: Option<(usize, &ValidFirewall)> = None;
    for (i, f) in spec.functions.iter().enumerate() {
        let base = format!("spec.functions[{i}]");
        if !matches!(f.config, FunctionConfig::Firewall(_)) {
            firewall_only = false;
        }
        match &f.config {
            FunctionConfig::Firewall(fw) => {
                if fw_hook.is_some() {
                    p.gaps.push(Gap {
                        peer: "nftables",
                        field: base.clone(),
                        note: "a second firewall is appended to the first one's nftables chain; the chain \
                               evaluates them separately (a packet must pass both), nftables stops at the \
                               first matching rule"
                            .into(),
                    });
                    firewall_only = false;
                } else {
                    fw_hook = Some(if rewritten { "forward" } else { "prerouting" });
                    single_fw = Some((i, fw));
                }
                fw_rules.push_str(&nft_firewall(fw));
            }
            FunctionConfig::Nat(nat) => {
                nft_nat(nat, &base, &mut nat_pre, &mut nat_post, &mut p.gaps);
                rewritten = true;
            }
            FunctionConfig::LoadBalancer(lb) => {
                p.ipvs.extend(ipvs(lb, &base, &mut p.gaps));
                rewritten = true;
            }
            FunctionConfig::RateLimiter(rl) => {
                p.tc.extend(tc_police(rl, ingress, &base, &mut p.gaps));
                let rules = nft_limit(rl, i);
                p.nft_ratelimit = Some(match p.nft_ratelimit.take() {
                    None => format!(
                        "table inet {NFT_RL_TABLE} {{\n  chain rl {{\n    type filter hook prerouting priority -160; policy accept;\n{}  }}\n{}}}\n",
                        rules.0, rules.1
                    ),
                    Some(prev) => prev.replacen("  }\n", &format!("{}  }}\n{}", rules.0, rules.1), 1),
                });
            }
            FunctionConfig::Monitor(_) => p.gaps.push(Gap {
                peer: "kernel",
                field: base,
                note: "monitor: no kernel peer configured (the kernel path keeps only interface and nftables \
                       counters, no per-key counts or latency histograms)"
                    .into(),
            }),
            FunctionConfig::Forwarder(_) => p.gaps.push(Gap {
                peer: "kernel",
                field: base,
                note: "forwarder: the kernel path forwards by its routing table (ip_forward=1), not by the \
                       manifest's egress interface / next-hop MAC"
                    .into(),
            }),
            FunctionConfig::PayloadCipher(_) => p.gaps.push(Gap {
                peer: "kernel",
                field: base,
                note: "payloadCipher: no kernel equivalent (IPsec/WireGuard encrypt whole packets into a \
                       tunnel, not the UDP payload in place); the kernel path forwards these packets in clear"
                    .into(),
            }),
        }
    }

    let classifier = nft_match(&spec.classifier);
    if fw_hook.is_some() || !nat_pre.is_empty() || !nat_post.is_empty() {
        let mut s = format!("table inet {NFT_TABLE} {{\n");
        if let Some(hook) = fw_hook {
            let prio = if hook == "prerouting" { "-150" } else { "0" };
            let _ = write!(
                s,
                "  chain fw {{\n{fw_rules}  }}\n  chain fw_hook {{\n    type filter hook {hook} priority {prio}; policy accept;\n"
            );
            for m in classifier.iter().flatten() {
                let _ = writeln!(s, "    {m}jump fw");
            }
            s.push_str("  }\n");
        }
        if !nat_pre.is_empty() {
            let _ = write!(
                s,
                "  chain nat_pre {{\n    type nat hook prerouting priority -100; policy accept;\n{nat_pre}  }}\n"
            );
        }
        if !nat_post.is_empty() {
            let _ = write!(
                s,
                "  chain nat_post {{\n    type nat hook postrouting priority 100; policy accept;\n{nat_post}  }}\n"
            );
        }
        s.push_str("}\n");
        p.nft = Some(s);
    }
    if firewall_only && let Some((i, fw)) = single_fw {
        p.xdp_filter = Some(xdp_filter(
            fw,
            ingress,
            &format!("spec.functions[{i}].firewall"),
            &mut p.gaps,
        ));
    }
    p
}

/// The nft match expressions of a traffic match, one per address family it can match (each ends with a space,
/// empty for "everything"). `None` entries are families the match can never hit (e.g. IPv4 sources with IPv6
/// destinations) and are left out; an empty result means the match matches nothing.
fn nft_match(m: &ValidMatch) -> Vec<Option<String>> {
    let fam = |c: &IpNet| if matches!(c, IpNet::V6(_)) { 6 } else { 4 };
    let families: Vec<Option<u8>> = if m.source_cidrs.is_empty() && m.destination_cidrs.is_empty() {
        vec![None]
    } else {
        let mut f: Vec<u8> = m
            .source_cidrs
            .iter()
            .chain(&m.destination_cidrs)
            .map(fam)
            .collect();
        f.sort_unstable();
        f.dedup();
        f.into_iter().map(Some).collect()
    };
    let set = |items: Vec<String>| {
        if items.len() == 1 {
            items.into_iter().next().unwrap_or_default()
        } else {
            format!("{{ {} }}", items.join(", "))
        }
    };
    let ports = |r: &[PortRange]| {
        set(r
            .iter()
            .map(|r| {
                if r.end() == r.from {
                    r.from.to_string()
                } else {
                    format!("{}-{}", r.from, r.end())
                }
            })
            .collect())
    };
    let mut out = Vec::new();
    for f in families {
        let mut s = String::new();
        if let Some(f) = f {
            let ip = if f == 4 { "ip" } else { "ip6" };
            let src: Vec<String> = m
                .source_cidrs
                .iter()
                .filter(|c| fam(c) == f)
                .map(ToString::to_string)
                .collect();
            let dst: Vec<String> = m
                .destination_cidrs
                .iter()
                .filter(|c| fam(c) == f)
                .map(ToString::to_string)
                .collect();
            if (!m.source_cidrs.is_empty() && src.is_empty())
                || (!m.destination_cidrs.is_empty() && dst.is_empty())
            {
                continue;
            }
            if (f == 4 && m.protocol == Protocol::Icmpv6)
                || (f == 6 && m.protocol == Protocol::Icmp)
            {
                continue;
            }
            if !src.is_empty() {
                let _ = write!(s, "{ip} saddr {} ", set(src));
            }
            if !dst.is_empty() {
                let _ = write!(s, "{ip} daddr {} ", set(dst));
            }
        }
        let l4 = match m.protocol {
            Protocol::Tcp => Some("tcp"),
            Protocol::Udp => Some("udp"),
            Protocol::Icmp => {
                s.push_str("meta l4proto icmp ");
                None
            }
            Protocol::Icmpv6 => {
                s.push_str("meta l4proto ipv6-icmp ");
                None
            }
            Protocol::Any => None,
        };
        let has_ports = !m.source_ports.is_empty() || !m.destination_ports.is_empty();
        let th = match l4 {
            Some(l4) => {
                if !has_ports {
                    let _ = write!(s, "meta l4proto {l4} ");
                }
                l4
            }
            None if has_ports && m.protocol == Protocol::Any => {
                s.push_str("meta l4proto { tcp, udp } ");
                "th"
            }
            None => "",
        };
        if !th.is_empty() {
            if !m.source_ports.is_empty() {
                let _ = write!(s, "{th} sport {} ", ports(&m.source_ports));
            }
            if !m.destination_ports.is_empty() {
                let _ = write!(s, "{th} dport {} ", ports(&m.destination_ports));
            }
        }
        out.push(Some(s));
    }
    out
}

/// The body of the `fw` chain: state first, the rules in order, the default action last.
fn nft_firewall(fw: &ValidFirewall) -> String {
    let mut s = String::new();
    if fw.stateful {
        s.push_str("    ct state established,related accept\n");
    }
    let verdict = |a: Action| if a == Action::Allow { "accept" } else { "drop" };
    for r in &fw.rules {
        for m in nft_match(&r.traffic).into_iter().flatten() {
            let _ = writeln!(s, "    {m}{}", verdict(r.action));
        }
    }
    let _ = writeln!(s, "    {}", verdict(fw.default_action));
    s
}

fn l4(p: L4Protocol) -> &'static str {
    match p {
        L4Protocol::Tcp => "tcp",
        L4Protocol::Udp => "udp",
    }
}

fn nft_nat(nat: &ValidNat, base: &str, pre: &mut String, post: &mut String, gaps: &mut Vec<Gap>) {
    for d in &nat.dnat {
        let ip = if d.destination.is_ipv6() { "ip6" } else { "ip" };
        let to = match d.to_port {
            Some(port) if ip == "ip6" => format!("[{}]:{port}", d.to_address),
            Some(port) => format!("{}:{port}", d.to_address),
            None => d.to_address.to_string(),
        };
        let _ = writeln!(
            pre,
            "    {ip} daddr {} {} dport {} dnat {ip} to {to}",
            d.destination,
            l4(d.protocol),
            d.port
        );
    }
    if let Some(sn) = &nat.snat {
        let ip = if sn.to_address.is_ipv6() { "ip6" } else { "ip" };
        let srcs: Vec<String> = sn
            .source_cidrs
            .iter()
            .filter(|c| matches!(c, IpNet::V6(_)) == (ip == "ip6"))
            .map(ToString::to_string)
            .collect();
        if srcs.len() != sn.source_cidrs.len() {
            gaps.push(Gap {
                peer: "nftables",
                field: format!("{base}.nat.snat.sourceCIDRs"),
                note: "sources of the other address family than toAddress are not translated"
                    .into(),
            });
        }
        let m = if srcs.is_empty() {
            String::new()
        } else {
            format!("{ip} saddr {{ {} }} ", srcs.join(", "))
        };
        let addr = if ip == "ip6" {
            format!("[{}]", sn.to_address)
        } else {
            sn.to_address.to_string()
        };
        let _ = writeln!(
            post,
            "    {m}meta l4proto {{ tcp, udp }} snat {ip} to {addr}:{}-{}",
            sn.to_ports.from,
            sn.to_ports.end()
        );
        let _ = writeln!(post, "    {m}snat {ip} to {}", sn.to_address);
    }
    if nat.conntrack_size != 0 {
        gaps.push(Gap {
            peer: "nftables",
            field: format!("{base}.nat.conntrackSize"),
            note: "the kernel's conntrack table is shared and sized by nf_conntrack_max, not per function".into(),
        });
    }
}

fn ipvs(lb: &ValidLoadBalancer, base: &str, gaps: &mut Vec<Gap>) -> Vec<Vec<String>> {
    let v6 = lb.vip.is_ipv6();
    let hostport = |a: std::net::IpAddr, port: u16| {
        if v6 {
            format!("[{a}]:{port}")
        } else {
            format!("{a}:{port}")
        }
    };
    let flag = match lb.protocol {
        L4Protocol::Tcp => "-t",
        L4Protocol::Udp => "-u",
    };
    let svc = hostport(lb.vip, lb.port);
    let plen = if v6 { "/128" } else { "/32" };
    let mut cmds = vec![
        vec![
            "ip".into(),
            "addr".into(),
            "add".into(),
            format!("{}{plen}", lb.vip),
            "dev".into(),
            "lo".into(),
        ],
        vec![
            "ipvsadm".into(),
            "-A".into(),
            flag.into(),
            svc.clone(),
            "-s".into(),
            "mh".into(),
        ],
    ];
    for b in &lb.backends {
        cmds.push(vec![
            "ipvsadm".into(),
            "-a".into(),
            flag.into(),
            svc.clone(),
            "-r".into(),
            hostport(b.address, b.port),
            "-m".into(),
            "-w".into(),
            b.weight.to_string(),
        ]);
    }
    gaps.push(Gap {
        peer: "ipvs",
        field: format!("{base}.loadBalancer.tableSize"),
        note: format!(
            "IPVS's Maglev scheduler (mh) uses the kernel's compiled-in table size, not {}",
            lb.table_size
        ),
    });
    gaps.push(Gap {
        peer: "ipvs",
        field: format!("{base}.loadBalancer.vip"),
        note: "IPVS serves only locally-addressed traffic: the VIP is added to the CNF's loopback, so the CNF \
               also answers ARP/ICMP for it"
            .into(),
    });
    cmds
}

fn tc_police(
    rl: &RateLimiterConfig,
    ingress: &str,
    base: &str,
    gaps: &mut Vec<Gap>,
) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    let mut cmds = vec![s(&["tc", "qdisc", "add", "dev", ingress, "clsact"])];
    let mut filter = s(&["tc", "filter", "add", "dev", ingress, "ingress", "matchall"]);
    let both = rl.packets_per_second.is_some() && rl.bits_per_second.is_some();
    if let Some(pps) = rl.packets_per_second {
        let burst = rl.burst_packets.unwrap_or(pps.div_ceil(10).max(1));
        filter.extend(s(&["action", "police", "pkts_rate"]));
        filter.push(pps.to_string());
        filter.push("pkts_burst".into());
        filter.push(burst.to_string());
        filter.extend(s(&[
            "conform-exceed",
            if both { "drop/pipe" } else { "drop/ok" },
        ]));
    }
    if let Some(bps) = rl.bits_per_second {
        let burst = rl.burst_bytes.unwrap_or((bps / 8).div_ceil(10).max(1600));
        filter.extend(s(&["action", "police", "rate"]));
        filter.push(format!("{bps}bit"));
        filter.push("burst".into());
        filter.push(burst.to_string());
        filter.extend(s(&["conform-exceed", "drop/ok"]));
    }
    cmds.push(filter);
    if rl.key != RateKey::Global {
        gaps.push(Gap {
            peer: "tc",
            field: format!("{base}.rateLimiter.key"),
            note: format!(
                "tc police keeps one bucket for all traffic; the chain keeps one per {} — with several \
                 sources the kernel path drops more",
                if rl.key == RateKey::SourceIp { "source address" } else { "flow" }
            ),
        });
    }
    cmds
}

/// nftables `limit` rules (chain body, set declarations) for rate limiter number `i`.
fn nft_limit(rl: &RateLimiterConfig, i: usize) -> (String, String) {
    let (mut rules, mut sets) = (String::new(), String::new());
    let mut limits = Vec::new();
    if let Some(pps) = rl.packets_per_second {
        let burst = rl.burst_packets.unwrap_or(pps.div_ceil(10).max(1));
        limits.push(format!(
            "limit rate over {pps}/second burst {burst} packets"
        ));
    }
    if let Some(bps) = rl.bits_per_second {
        let burst = rl.burst_bytes.unwrap_or((bps / 8).div_ceil(10).max(1600));
        limits.push(format!(
            "limit rate over {} bytes/second burst {burst} bytes",
            bps / 8
        ));
    }
    for (j, limit) in limits.iter().enumerate() {
        match rl.key {
            RateKey::Global => {
                let _ = writeln!(rules, "    {limit} drop");
            }
            RateKey::SourceIp | RateKey::Flow => {
                let (ty, key4, key6, ty6) = if rl.key == RateKey::SourceIp {
                    ("ipv4_addr", "ip saddr", "ip6 saddr", "ipv6_addr")
                } else {
                    (
                        "ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service",
                        "ip saddr . ip daddr . meta l4proto . th sport . th dport",
                        "ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport",
                        "ipv6_addr . ipv6_addr . inet_proto . inet_service . inet_service",
                    )
                };
                let timeout = "flags dynamic,timeout; timeout 10s; size 65535;";
                let _ = writeln!(sets, "  set k{i}_{j}_4 {{ type {ty}; {timeout} }}");
                let _ = writeln!(sets, "  set k{i}_{j}_6 {{ type {ty6}; {timeout} }}");
                let l4 = if rl.key == RateKey::Flow {
                    "meta l4proto { tcp, udp } "
                } else {
                    ""
                };
                let _ = writeln!(
                    rules,
                    "    meta nfproto ipv4 {l4}add @k{i}_{j}_4 {{ {key4} {limit} }} drop"
                );
                let _ = writeln!(
                    rules,
                    "    meta nfproto ipv6 {l4}add @k{i}_{j}_6 {{ {key6} {limit} }} drop"
                );
            }
        }
    }
    (rules, sets)
}

/// xdp-filter commands for a firewall-only chain, with a gap for everything it cannot express.
fn xdp_filter(
    fw: &ValidFirewall,
    ingress: &str,
    base: &str,
    gaps: &mut Vec<Gap>,
) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
    // policy deny: listed entries pass, the rest drops; policy allow: listed entries drop.
    let policy = if fw.default_action == Action::Deny {
        "deny"
    } else {
        "allow"
    };
    let mut cmds = vec![s(&[
        "xdp-filter",
        "load",
        ingress,
        "--mode",
        "native",
        "--policy",
        policy,
    ])];
    let mut gap = |field: String, note: &str| {
        gaps.push(Gap {
            peer: "xdp-filter",
            field,
            note: note.into(),
        })
    };
    if fw.stateful {
        gap(
            format!("{base}.stateful"),
            "xdp-filter is stateless: replies of allowed flows pass only if a rule matches them",
        );
    }
    for (j, r) in fw.rules.iter().enumerate() {
        let field = format!("{base}.rules[{j}]");
        if r.action == fw.default_action {
            gap(
                field,
                "a rule with the default action has no xdp-filter entry (xdp-filter lists only exceptions), so \
                 its precedence over later rules is lost",
            );
            continue;
        }
        let t = &r.traffic;
        let dims = [
            !t.source_cidrs.is_empty(),
            !t.destination_cidrs.is_empty(),
            !t.source_ports.is_empty(),
            !t.destination_ports.is_empty(),
        ];
        if dims.iter().filter(|d| **d).count() > 1 {
            gap(
                field.clone(),
                "xdp-filter matches one field per entry (entries are ORed): each field of this rule becomes its \
                 own entry, so the rule matches more than in the chain",
            );
        }
        if !dims.iter().any(|d| *d) {
            gap(
                field.clone(),
                "a rule on the protocol alone has no xdp-filter entry (it filters on ports, addresses and MACs)",
            );
        }
        for (cidrs, mode) in [(&t.source_cidrs, "src"), (&t.destination_cidrs, "dst")] {
            for c in cidrs {
                if c.prefix_len() != c.max_prefix_len() {
                    gap(
                        field.clone(),
                        &format!(
                            "xdp-filter matches single addresses; {c} is listed as its network address only"
                        ),
                    );
                }
                cmds.push(s(&[
                    "xdp-filter",
                    "ip",
                    &c.addr().to_string(),
                    "--mode",
                    mode,
                ]));
            }
        }
        let proto = match t.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            _ => "tcp,udp",
        };
        for (ranges, mode) in [(&t.source_ports, "src"), (&t.destination_ports, "dst")] {
            for r in ranges {
                let n = u32::from(r.end()) - u32::from(r.from) + 1;
                if n > XDP_FILTER_MAX_PORTS {
                    gap(
                        field.clone(),
                        &format!(
                            "port range {r} has {n} ports; only the first {XDP_FILTER_MAX_PORTS} are listed"
                        ),
                    );
                }
                for port in
                    (u32::from(r.from)..=u32::from(r.end())).take(XDP_FILTER_MAX_PORTS as usize)
                {
                    cmds.push(s(&[
                        "xdp-filter",
                        "port",
                        &port.to_string(),
                        "--mode",
                        mode,
                        "--proto",
                        proto,
                    ]));
                }
            }
        }
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> VNFChainSpec {
        crds::manifest::parse_single_chain(yaml)
            .expect("valid manifest")
            .spec
    }

    fn edge() -> VNFChainSpec {
        spec(include_str!("../../../examples/edge-chain.yaml"))
    }

    #[test]
    fn edge_chain_nftables() {
        let p = kernel_peers(&edge(), "c0").expect("translate");
        let nft = p.nft.expect("nft");
        // firewall before NAT: prerouting, before DNAT, stateful first, default deny last
        assert!(
            nft.contains("type filter hook prerouting priority -150"),
            "{nft}"
        );
        let fw = nft.split("chain fw {").nth(1).expect("fw chain");
        let fw = fw.split("}\n").next().expect("fw body");
        let lines: Vec<&str> = fw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(
            lines,
            vec![
                "ct state established,related accept",
                "ip saddr 10.0.1.66/32 drop",
                "ip saddr 10.0.1.0/24 tcp dport { 80, 8000-8099 } accept",
                "ip6 saddr 2001:db8:1::/64 tcp dport { 80, 8000-8099 } accept",
                "udp dport 9999 accept",
                "meta l4proto icmp accept",
                "drop",
            ]
        );
        // the classifier guards the jump, per family
        assert!(nft.contains("    ip daddr 10.0.0.0/16 jump fw\n"), "{nft}");
        assert!(
            nft.contains("    ip6 daddr 2001:db8:100::/48 jump fw\n"),
            "{nft}"
        );
        assert!(
            nft.contains("ip daddr 10.0.0.200 udp dport 9999 dnat ip to 10.0.2.10:9999"),
            "{nft}"
        );
        assert!(nft.contains(
            "ip saddr { 10.0.1.0/24 } meta l4proto { tcp, udp } snat ip to 10.0.0.1:20000-59999"
        ));
        assert!(nft.contains("type nat hook postrouting priority 100"));
    }

    #[test]
    fn edge_chain_ipvs_tc_and_gaps() {
        let p = kernel_peers(&edge(), "c0").expect("translate");
        let cmds: Vec<String> = p.ipvs.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            cmds,
            vec![
                "ip addr add 10.0.0.100/32 dev lo",
                "ipvsadm -A -t 10.0.0.100:80 -s mh",
                "ipvsadm -a -t 10.0.0.100:80 -r 10.0.2.1:8080 -m -w 2",
                "ipvsadm -a -t 10.0.0.100:80 -r 10.0.2.2:8080 -m -w 1",
                "ipvsadm -a -t 10.0.0.100:80 -r 10.0.2.3:8080 -m -w 1",
            ]
        );
        let tc: Vec<String> = p.tc.iter().map(|c| c.join(" ")).collect();
        assert_eq!(tc[0], "tc qdisc add dev c0 clsact");
        assert_eq!(
            tc[1],
            "tc filter add dev c0 ingress matchall action police pkts_rate 100000 pkts_burst 10000 \
             conform-exceed drop/pipe action police rate 1000000000bit burst 12500000 conform-exceed drop/ok"
        );
        let rl = p.nft_ratelimit.expect("nft limit");
        assert!(rl.contains("    meta nfproto ipv4 add @k3_0_4 { ip saddr limit rate over 100000/second burst 10000 packets } drop\n"), "{rl}");
        assert!(rl.contains("add @k3_1_4 { ip saddr limit rate over 125000000 bytes/second burst 12500000 bytes } drop"), "{rl}");
        assert!(
            rl.contains(
                "set k3_0_4 { type ipv4_addr; flags dynamic,timeout; timeout 10s; size 65535; }"
            ),
            "{rl}"
        );
        // not firewall-only: no xdp-filter; every difference is named
        assert!(p.xdp_filter.is_none());
        let fields: Vec<&str> = p.gaps.iter().map(|g| g.field.as_str()).collect();
        assert!(
            fields.contains(&"spec.functions[3].rateLimiter.key"),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"spec.functions[4]"),
            "monitor gap missing: {fields:?}"
        );
        assert!(fields.contains(&"spec.functions[2].loadBalancer.tableSize"));
    }

    #[test]
    fn firewall_only_gets_xdp_filter() {
        let s = spec(
            "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata: {name: f}\nspec:\n  functions:\n  \
             - name: fw\n    type: firewall\n    firewall:\n      defaultAction: deny\n      rules:\n      \
             - {action: allow, protocol: udp, destinationPorts: [{from: 9999}, {from: 7000, to: 7001}]}\n      \
             - {action: allow, protocol: tcp, sourceCIDRs: [10.0.0.0/8], destinationPorts: [{from: 22}]}\n",
        );
        let p = kernel_peers(&s, "c0").expect("translate");
        let nft = p.nft.as_deref().expect("nft");
        assert!(
            nft.contains("udp dport { 9999, 7000-7001 } accept"),
            "{nft}"
        );
        assert!(
            !nft.contains("ct state"),
            "stateless firewall must not accept by state: {nft}"
        );
        let x: Vec<String> = p
            .xdp_filter
            .expect("xdp-filter")
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            x,
            vec![
                "xdp-filter load c0 --mode native --policy deny",
                "xdp-filter port 9999 --mode dst --proto udp",
                "xdp-filter port 7000 --mode dst --proto udp",
                "xdp-filter port 7001 --mode dst --proto udp",
                "xdp-filter ip 10.0.0.0 --mode src",
                "xdp-filter port 22 --mode dst --proto tcp",
            ]
        );
        // the second rule's conjunction and its /8 are differences, said out loud
        let notes: Vec<&Gap> = p
            .gaps
            .iter()
            .filter(|g| g.field == "spec.functions[0].firewall.rules[1]")
            .collect();
        assert_eq!(notes.len(), 2, "{:?}", p.gaps);
        assert!(p.tc.is_empty() && p.ipvs.is_empty());
    }

    #[test]
    fn firewall_after_nat_filters_in_forward() {
        let s = spec(
            "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata: {name: f}\nspec:\n  functions:\n  \
             - name: nat\n    type: nat\n    nat:\n      dnat: [{protocol: tcp, destination: 10.1.0.1, port: 80, \
             toAddress: 10.2.0.1}]\n  \
             - name: fw\n    type: firewall\n    firewall:\n      defaultAction: allow\n      rules:\n      \
             - {action: deny, protocol: udp, destinationPorts: [{from: 53}]}\n",
        );
        let p = kernel_peers(&s, "c0").expect("translate");
        let nft = p.nft.expect("nft");
        assert!(nft.contains("type filter hook forward priority 0"), "{nft}");
        assert!(nft.contains("    udp dport 53 drop\n"), "{nft}");
        assert!(
            nft.contains("ip daddr 10.1.0.1 tcp dport 80 dnat ip to 10.2.0.1\n"),
            "{nft}"
        );
        assert!(nft.contains("    accept\n"), "default allow: {nft}");
    }
}
