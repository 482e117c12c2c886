//! The benchmark bed: generator → CNF → server namespaces joined by veths, addressed from the manifest's probe flow.
//!
//! The bed is removed on drop (namespaces take their veths, nftables, IPVS and tc state with them). The probe flow
//! is IPv4/UDP the chain lets through: to the manifest's UDP DNAT service if it has one, else its UDP load-balancer
//! VIP, else a UDP port a firewall rule allows.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, Ordering};

use crds::functions::{Action, L4Protocol, Protocol};
use crds::vnfchain::VNFChainSpec;
use netkit::{Netlink, Route, VethEnd};
use pktgen::netns::exec_in;

use super::BenchError;

/// The generator's veth (in the generator namespace).
pub const GEN_DEV: &str = "g0";
/// The CNF's ingress veth (the chain is attached here).
pub const CNF_IN: &str = "c0";
/// The CNF's egress veth.
pub const CNF_OUT: &str = "c1";
/// The server's veth (the sink counts here).
pub const SRV_DEV: &str = "s0";

/// The one flow every scenario carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flow {
    /// Source address and port (the generator's).
    pub src: SocketAddrV4,
    /// Destination as sent (the service address before NAT).
    pub dst: SocketAddrV4,
    /// Where it arrives after the chain (the server's address and port).
    pub server: SocketAddrV4,
    /// Why this flow: which manifest field chose it.
    pub reason: String,
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// A host address inside an IPv4 CIDR (`.2` of it, or the address itself for a /32).
fn host_in(cidr: &str) -> Option<Ipv4Addr> {
    let (a, p) = cidr.split_once('/')?;
    let a: Ipv4Addr = a.parse().ok()?;
    let p: u32 = p.parse().ok()?;
    if p >= 31 {
        return Some(a);
    }
    Some(Ipv4Addr::from(u32::from(a) + 2))
}

/// Chooses the probe flow for `spec` (pure; see the module docs).
pub fn probe_flow(spec: &VNFChainSpec) -> Result<Flow, BenchError> {
    // candidates by preference: a UDP DNAT service, a UDP VIP, a UDP port a firewall allows
    type Cand = Option<(SocketAddrV4, SocketAddrV4, String)>;
    let (mut by_dnat, mut by_lb, mut by_fw): (Cand, Cand, Cand) = (None, None, None);
    let mut src: Option<Ipv4Addr> = None;
    let mut denied: Vec<Ipv4Addr> = Vec::new();
    let mut fw_src: Option<Ipv4Addr> = None;
    for (i, f) in spec.functions.iter().enumerate() {
        if let Some(nat) = &f.nat {
            if by_dnat.is_none()
                && let Some((j, d)) = nat.dnat.iter().enumerate().find(|(_, d)| {
                    d.protocol == L4Protocol::Udp
                        && v4(&d.destination.0).is_some()
                        && v4(&d.to_address.0).is_some()
                })
                && let (Some(a), Some(b)) = (v4(&d.destination.0), v4(&d.to_address.0))
            {
                by_dnat = Some((
                    SocketAddrV4::new(a, d.port),
                    SocketAddrV4::new(b, d.to_port.unwrap_or(d.port)),
                    format!("spec.functions[{i}].nat.dnat[{j}] (UDP DNAT service)"),
                ));
            }
            if src.is_none()
                && let Some(sn) = &nat.snat
            {
                src = sn.source_cidrs.iter().find_map(|c| host_in(&c.0));
            }
        }
        if let Some(lb) = &f.load_balancer
            && by_lb.is_none()
            && lb.protocol == L4Protocol::Udp
            && let (Some(vip), Some(b)) = (
                v4(&lb.vip.0),
                lb.backends.iter().find_map(|b| v4(&b.address.0)),
            )
        {
            let port = lb.backends.iter().find_map(|b| b.port).unwrap_or(lb.port);
            by_lb = Some((
                SocketAddrV4::new(vip, lb.port),
                SocketAddrV4::new(b, port),
                format!("spec.functions[{i}].loadBalancer (UDP VIP)"),
            ));
        }
        if let Some(fw) = &f.firewall {
            for (j, r) in fw.rules.iter().enumerate() {
                let t = &r.traffic;
                if r.action == Action::Deny {
                    denied.extend(t.source_cidrs.iter().filter_map(|c| host_in(&c.0)));
                    continue;
                }
                if by_fw.is_none()
                    && t.protocol == Protocol::Udp
                    && let Some(port) = t.destination_ports.first().map(|p| p.from)
                {
                    let dst = t
                        .destination_cidrs
                        .iter()
                        .chain(&spec.classifier.destination_cidrs)
                        .find_map(|c| host_in(&c.0))
                        .unwrap_or(Ipv4Addr::new(10, 0, 2, 10));
                    by_fw = Some((
                        SocketAddrV4::new(dst, port),
                        SocketAddrV4::new(dst, port),
                        format!("spec.functions[{i}].firewall.rules[{j}] (allowed UDP port)"),
                    ));
                    if fw_src.is_none() {
                        fw_src = t.source_cidrs.iter().find_map(|c| host_in(&c.0));
                    }
                }
            }
        }
    }
    let dst_server = by_dnat.or(by_lb).or(by_fw);
    let src = src.or(fw_src);
    let (dst, server, reason) = dst_server.ok_or_else(|| BenchError::NoFlow {
        reason: "the chain has no UDP DNAT service, UDP load-balancer VIP or firewall rule allowing a UDP port; \
                 the benchmark's traffic is IPv4/UDP the chain must let through"
            .into(),
    })?;
    let src = src
        .or_else(|| {
            spec.classifier
                .source_cidrs
                .iter()
                .find_map(|c| host_in(&c.0))
        })
        .unwrap_or(Ipv4Addr::new(10, 0, 1, 2));
    if denied.contains(&src) {
        return Err(BenchError::NoFlow {
            reason: format!("the chosen source {src} is denied by a firewall rule"),
        });
    }
    let net = |a: Ipv4Addr| u32::from(a) & 0xffff_ff00;
    if net(src) == net(server.ip().to_owned()) {
        return Err(BenchError::NoFlow {
            reason: format!(
                "source {src} and server {} share a /24; the bed routes between two /24s",
                server.ip()
            ),
        });
    }
    Ok(Flow {
        src: SocketAddrV4::new(src, 40000),
        dst,
        server,
        reason,
    })
}

/// The gateway address the CNF uses on the /24 of `a` (`.254`, or `.253` when `a` is `.254`); high, so it does
/// not collide with the low host numbers manifests use for backends.
pub fn gateway_for(a: Ipv4Addr) -> Ipv4Addr {
    let base = u32::from(a) & 0xffff_ff00;
    let gw = Ipv4Addr::from(base | 254);
    if gw == a {
        Ipv4Addr::from(base | 253)
    } else {
        gw
    }
}

/// Three namespaces joined by two veth pairs, removed on drop.
#[derive(Debug)]
pub struct Bed {
    pub gen_ns: String,
    pub cnf_ns: String,
    pub srv_ns: String,
    pub flow: Flow,
    pub gen_mac: [u8; 6],
    pub cnf_in_mac: [u8; 6],
    pub srv_mac: [u8; 6],
    pub cnf_out_ifindex: u32,
}

/// Receive (and transmit) queues of every bed veth: one per CPU of a small machine, so the two-queue layout can
/// put a generator and its flow set on each CPU (a veth picks its peer's receive queue by the sending CPU).
pub const QUEUES: u32 = 2;

/// A netlink socket in namespace `ns`.
fn nl(ns: &str) -> Result<Netlink, BenchError> {
    Ok(Netlink::open_in(ns)?)
}

/// Runs `program args` in `ns` (the kernel peers' tools), mapping failure to a setup error.
pub fn sh(ns: &str, program: &str, args: &[&str]) -> Result<String, BenchError> {
    Ok(exec_in(ns, program, args)?)
}

/// Runs `f` in a thread inside namespace `ns`.
pub fn in_ns<T: Send>(
    ns: &str,
    f: impl FnOnce() -> Result<T, BenchError> + Send,
) -> Result<T, BenchError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            pktgen::netns::enter(ns)?;
            f()
        })
        .join()
        .map_err(|_| BenchError::Panicked {
            what: format!("a thread in {ns}"),
        })?
    })
}

/// Writes `value` to `/proc/sys/{key}` (dots for slashes, as `sysctl -w` takes it) in namespace `ns`: the
/// network sysctls under /proc/sys/net are those of the writing thread's namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), BenchError> {
    let path = std::path::Path::new("/proc/sys").join(key.replace('.', "/"));
    in_ns(ns, || {
        std::fs::write(&path, value).map_err(|source| BenchError::SetupIo {
            context: format!("{} in {ns}", path.display()),
            source,
        })
    })
}

/// `(ifindex, MAC)` of `dev` in `ns`.
pub fn link_info(ns: &str, dev: &str) -> Result<(u32, [u8; 6]), BenchError> {
    let link = nl(ns)?.link(dev)?;
    let mac = link.mac.ok_or_else(|| BenchError::NoMac {
        dev: dev.into(),
        ns: ns.into(),
    })?;
    Ok((link.index, mac))
}

impl Bed {
    /// Creates the namespaces, veths, addresses, routes and static neighbours for `flow`.
    pub fn create(flow: Flow) -> Result<Self, BenchError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "vb{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut bed = Bed {
            gen_ns: format!("{id}-gen"),
            cnf_ns: format!("{id}-cnf"),
            srv_ns: format!("{id}-srv"),
            flow,
            gen_mac: [0; 6],
            cnf_in_mac: [0; 6],
            srv_mac: [0; 6],
            cnf_out_ifindex: 0,
        };
        // from here on, Drop removes whatever was made
        for ns in [&bed.gen_ns, &bed.cnf_ns, &bed.srv_ns] {
            let _ = netkit::netns::del(ns);
            netkit::netns::add(ns)?;
            nl(ns)?.set_up("lo", true)?;
        }
        bed.wire()?;
        Ok(bed)
    }

    fn wire(&mut self) -> Result<(), BenchError> {
        let (g, c, s) = (
            self.gen_ns.clone(),
            self.cnf_ns.clone(),
            self.srv_ns.clone(),
        );
        let src = *self.flow.src.ip();
        let srv = *self.flow.server.ip();
        let (gw_in, gw_out) = (gateway_for(src), gateway_for(srv));
        let pair = |a_ns: &str, a: &str, b_ns: &str, b: &str| -> Result<(), BenchError> {
            Ok(nl(a_ns)?.add_veth(
                VethEnd::new(a).queues(QUEUES),
                VethEnd::new(b).ns(b_ns).queues(QUEUES),
            )?)
        };
        pair(&g, GEN_DEV, &c, CNF_IN)?;
        pair(&c, CNF_OUT, &s, SRV_DEV)?;
        let (_, gen_mac) = link_info(&g, GEN_DEV)?;
        let (_, cnf_in_mac) = link_info(&c, CNF_IN)?;
        // The server's MAC is the CNF ingress MAC: the bare redirect (the ceiling) does not rewrite MACs, and
        // with equal MACs its frames are still addressed to the server. They sit on different links.
        nl(&s)?.set_mac(SRV_DEV, cnf_in_mac)?;
        let (cnf_out_ifindex, _) = link_info(&c, CNF_OUT)?;
        let (_, srv_mac) = link_info(&s, SRV_DEV)?;
        let (_, cnf_out_mac) = link_info(&c, CNF_OUT)?;
        let (mut gn, mut cn, mut sn) = (nl(&g)?, nl(&c)?, nl(&s)?);
        let v4 = |a: Ipv4Addr| std::net::IpAddr::V4(a);
        gn.add_addr(GEN_DEV, v4(src), 24, false)?;
        cn.add_addr(CNF_IN, v4(gw_in), 24, false)?;
        cn.add_addr(CNF_OUT, v4(gw_out), 24, false)?;
        sn.add_addr(SRV_DEV, v4(srv), 24, false)?;
        gn.set_up(GEN_DEV, true)?;
        cn.set_up(CNF_IN, true)?;
        cn.set_up(CNF_OUT, true)?;
        sn.set_up(SRV_DEV, true)?;
        gn.add_route(&Route::default_via(v4(gw_in)))?;
        sn.add_route(&Route::default_via(v4(gw_out)))?;
        // static neighbours: XDP programs on c0 and s0 would eat ARP
        gn.replace_neigh(GEN_DEV, v4(gw_in), cnf_in_mac)?;
        cn.replace_neigh(CNF_OUT, v4(srv), srv_mac)?;
        cn.replace_neigh(CNF_IN, v4(src), gen_mac)?;
        sn.replace_neigh(SRV_DEV, v4(gw_out), cnf_out_mac)?;
        sysctl(&c, "net.ipv4.ip_forward", "1")?;
        sysctl(&c, "net.ipv4.conf.all.rp_filter", "0")?;
        sysctl(&s, "net.ipv4.conf.all.rp_filter", "0")?;
        // UDP from a veth with tx checksum offload arrives with bad checksums after an XDP redirect
        for (ns, dev) in [(&g, GEN_DEV), (&c, CNF_OUT)] {
            in_ns(ns, || Ok(netkit::ethtool::set_tx_checksum(dev, false)?))?;
        }
        // The service address before NAT is local on the server too: paths without NAT (the ceiling, plain
        // forwarding) deliver the packet as sent.
        let dst = *self.flow.dst.ip();
        if dst != srv {
            sn.add_addr("lo", v4(dst), 32, false)?;
            // and the CNF routes it to the server, so plain forwarding (no NAT) delivers it too
            cn.add_route(&Route::to(v4(dst), 32).via(v4(srv)).dev(CNF_OUT))?;
        }
        self.gen_mac = gen_mac;
        self.cnf_in_mac = cnf_in_mac;
        self.srv_mac = srv_mac;
        self.cnf_out_ifindex = cnf_out_ifindex;
        Ok(())
    }

    /// Turns GRO on or off on `dev` in `ns` (a veth with GRO has NAPI, so it accepts XDP redirects without a program).
    pub fn gro(&self, ns: &str, dev: &str, on: bool) -> Result<(), BenchError> {
        in_ns(ns, || Ok(netkit::ethtool::set_gro(dev, on)?))
    }

    /// Removes every kernel-peer configuration from the CNF namespace (nftables table, IPVS, tc, xdp-filter, VIPs).
    pub fn reset_cnf(&self) {
        let c = &self.cnf_ns;
        let _ = exec_in(
            c,
            "nft",
            &["delete", "table", "inet", super::peers::NFT_TABLE],
        );
        let _ = exec_in(
            c,
            "nft",
            &["delete", "table", "inet", super::peers::NFT_RL_TABLE],
        );
        let _ = exec_in(c, "ipvsadm", &["-C"]);
        let _ = exec_in(c, "tc", &["qdisc", "del", "dev", CNF_IN, "clsact"]);
        if let Ok(mut n) = Netlink::open_in(c) {
            let _ = n.detach_xdp(CNF_IN);
            let _ = n.flush_global_addrs("lo");
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in [&self.gen_ns, &self.cnf_ns, &self.srv_ns] {
            let _ = netkit::netns::del(ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_chain_flow_is_the_udp_dnat_service() {
        let spec =
            crds::manifest::parse_single_chain(include_str!("../../../examples/edge-chain.yaml"))
                .expect("valid")
                .spec;
        let f = probe_flow(&spec).expect("flow");
        assert_eq!(f.dst, "10.0.0.200:9999".parse().expect("addr"));
        assert_eq!(f.server, "10.0.2.10:9999".parse().expect("addr"));
        assert_eq!(f.src, "10.0.1.2:40000".parse().expect("addr"));
        assert!(f.reason.contains("nat.dnat[0]"), "{}", f.reason);
        assert_eq!(gateway_for(*f.src.ip()), Ipv4Addr::new(10, 0, 1, 254));
        assert_eq!(
            gateway_for(Ipv4Addr::new(10, 0, 2, 254)),
            Ipv4Addr::new(10, 0, 2, 253)
        );
    }

    #[test]
    fn bench_chain_flow_is_the_udp_vip_through_snat() {
        let spec =
            crds::manifest::parse_single_chain(include_str!("../../../examples/bench-chain.yaml"))
                .expect("valid")
                .spec;
        let f = probe_flow(&spec).expect("flow");
        assert_eq!(f.dst, "10.0.0.100:9999".parse().expect("addr"));
        assert_eq!(f.server, "10.0.2.10:9999".parse().expect("addr"));
        assert_eq!(f.src, "10.0.1.2:40000".parse().expect("addr"));
        assert!(f.reason.contains("loadBalancer"), "{}", f.reason);
        // the limiter cannot cap a run: a billion packets per second per source
        let rl = spec
            .functions
            .iter()
            .find_map(|f| f.rate_limiter.as_ref())
            .expect("a rate limiter");
        assert!(rl.packets_per_second.is_some_and(|p| p >= 1_000_000_000));
    }

    #[test]
    fn a_chain_without_udp_is_refused_by_name() {
        let spec =
            crds::manifest::parse_single_chain(include_str!("../../../examples/firewall.yaml"))
                .expect("valid")
                .spec;
        let e = probe_flow(&spec).expect_err("TCP-only firewall");
        assert!(e.to_string().contains("UDP"), "{e}");
    }
}
