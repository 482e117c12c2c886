//! The fast path for established flows (`ebpf/lib/fastpath.h`), with real packets through
//! `BPF_PROG_TEST_RUN` on both hooks: two engines run the same packets, one with the fast path
//! (the default) and one without; every output frame, verdict and counter must be the same, and the
//! fast one must actually have taken the fast path.

mod common;

use std::time::Duration;

use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{
    Action, AppliedChain, ChainConfig, CountBy, Engine, FirewallConfig, FirewallRule, ForwardMode,
    ForwarderConfig, FunctionConfig, FunctionKind, Hook, MonitorConfig, NatConfig, NatRule,
    PortRange, RateLimitKey, RateLimiterConfig,
};
use common::*;

const UDP: u8 = 17;

/// Two engines fed the same packets: `slow` with the fast path off, `fast` with it on.
struct Twin {
    hook: Hook,
    slow: Engine,
    fast: Engine,
    slow_chain: AppliedChain,
    fast_chain: AppliedChain,
}

impl Twin {
    fn new(hook: Hook, cfg: &ChainConfig) -> Self {
        let mut slow = load(hook);
        let mut fast = load(hook);
        slow.set_fast_path(false).expect("fast path off");
        assert!(fast.fast_path(), "on by default");
        let slow_chain = slow.apply(cfg).expect("apply slow");
        let fast_chain = fast.apply(cfg).expect("apply fast");
        assert_eq!(slow_chain, fast_chain);
        Self {
            hook,
            slow,
            fast,
            slow_chain,
            fast_chain,
        }
    }

    fn apply(&mut self, cfg: &ChainConfig) {
        self.slow_chain = self.slow.apply(cfg).expect("apply slow");
        self.fast_chain = self.fast.apply(cfg).expect("apply fast");
        assert_eq!(self.slow_chain, self.fast_chain);
    }

    /// Runs `frame` through both; the verdicts and output frames must be equal.
    fn send(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let a = self.slow.test_run(frame, 1).expect("slow run");
        let b = self.fast.test_run(frame, 1).expect("fast run");
        assert_eq!(a.retval, b.retval, "{:?}: verdict", self.hook);
        assert_eq!(a.data, b.data, "{:?}: output frame", self.hook);
        (b.retval, b.data)
    }

    /// Packets of the fast engine that took the fast path (the slow engine's must stay 0).
    fn fast_packets(&self) -> u64 {
        let g = self.slow.active_generation();
        assert_eq!(self.slow.chain_counters(g).expect("c").fast, 0);
        let g = self.fast.active_generation();
        self.fast.chain_counters(g).expect("c").fast
    }

    /// Every counter of every function (latency histograms aside: the fast path times packets as a
    /// whole), the chain's totals, firewall rule hits and monitor classes are equal.
    fn same_counters(&self) {
        let (a, b) = (&self.slow, &self.fast);
        let ga = a.chain_counters(a.active_generation()).expect("c");
        let gb = b.chain_counters(b.active_generation()).expect("c");
        assert_eq!(
            (ga.classified, ga.completed, ga.broken, ga.bypassed),
            (gb.classified, gb.completed, gb.broken, gb.bypassed),
            "{:?}: chain counters",
            self.hook
        );
        for (ia, ib) in self
            .slow_chain
            .instances
            .iter()
            .zip(&self.fast_chain.instances)
        {
            let (sa, sb) = (
                a.function_stats(*ia).expect("s"),
                b.function_stats(*ib).expect("s"),
            );
            assert_eq!(
                (sa.packets_in, sa.bytes_in, sa.passed, sa.aux, sa.dropped),
                (sb.packets_in, sb.bytes_in, sb.passed, sb.aux, sb.dropped),
                "{:?}: counters of instance {ia}",
                self.hook
            );
            if let Ok(h) = a.firewall_rule_hits(*ia) {
                assert_eq!(
                    h,
                    b.firewall_rule_hits(*ib).expect("hits"),
                    "{:?}: rule hits",
                    self.hook
                );
            }
            if let Ok(c) = a.monitor_classes(*ia) {
                assert_eq!(
                    c,
                    b.monitor_classes(*ib).expect("classes"),
                    "{:?}: monitor",
                    self.hook
                );
            }
            if let Ok(k) = a.monitor_keyed(*ia) {
                assert_eq!(k, b.monitor_keyed(*ib).expect("keyed"));
            }
        }
    }
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = Pkt::tcp(src, sport, dst, dport);
    p.l4 = L4::Tcp {
        sport,
        dport,
        flags,
    };
    p.payload = vec![0x5a; 32];
    p.build()
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: u8) -> Vec<u8> {
    let mut p = Pkt::udp(src, sport, dst, dport);
    p.payload = vec![payload; 24];
    p.build()
}

/// The same UDP frame without a checksum (0: none, IPv4): it must stay 0 through NAT.
fn no_udp_checksum(mut f: Vec<u8>) -> Vec<u8> {
    let ihl = usize::from(f[14] & 0xf) * 4;
    f[14 + ihl + 6] = 0;
    f[14 + ihl + 7] = 0;
    f
}

/// (source, source port, destination, destination port) of an untagged IPv4 TCP/UDP frame.
fn ends(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    let h = &f[14..];
    let l4 = &h[usize::from(h[0] & 0xf) * 4..];
    (
        [h[12], h[13], h[14], h[15]],
        u16::from_be_bytes([l4[0], l4[1]]),
        [h[16], h[17], h[18], h[19]],
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

fn cidr(s: &str) -> cnf_dataplane::engine::IpCidr {
    s.parse().expect("cidr")
}

fn rule(action: Action, src: Option<&str>, dport: Option<u16>) -> FirewallRule {
    FirewallRule {
        priority: 0,
        action,
        protocol: None,
        src: src.map(cidr),
        dst: None,
        src_ports: None,
        dst_ports: dport.map(|p| PortRange::new(p, p).expect("range")),
    }
}

fn firewall(rules: Vec<FirewallRule>, conntrack: bool) -> FunctionConfig {
    FunctionConfig::new(
        "fw",
        FunctionKind::Firewall(FirewallConfig {
            rules,
            default_action: Action::Deny,
            conntrack,
            ..Default::default()
        }),
    )
}

/// The five functions plus a forwarder: firewall (conntrack), SNAT, LB, rate limiter (per flow,
/// never limiting), monitor (by class, a sample every 3 packets), forwarder (TX, MACs, TTL).
fn five_function_chain() -> ChainConfig {
    ChainConfig {
        functions: vec![
            firewall(
                vec![rule(Action::Allow, Some("10.0.1.0/24"), Some(80))],
                true,
            ),
            FunctionConfig::new(
                "nat",
                FunctionKind::Nat(snat_config("10.0.1.0/24", "10.0.0.1", 20000, 20999)),
            ),
            FunctionConfig::new(
                "lb",
                FunctionKind::LoadBalancer(lb_config(
                    "10.0.0.100",
                    None,
                    &["10.0.2.1", "10.0.2.2"],
                )),
            ),
            FunctionConfig::new(
                "rl",
                FunctionKind::RateLimiter(RateLimiterConfig {
                    key: RateLimitKey::Flow,
                    packets_per_sec: Some(100_000_000),
                    burst_packets: 1_000_000,
                    ..Default::default()
                }),
            ),
            FunctionConfig::new(
                "mon",
                FunctionKind::Monitor(MonitorConfig {
                    sample_rate: 3,
                    ..Default::default()
                }),
            ),
            FunctionConfig::new(
                "fwd",
                FunctionKind::Forwarder(ForwarderConfig {
                    mode: ForwardMode::Tx,
                    src_mac: Some([0x02, 0, 0, 0, 0, 0xaa]),
                    dst_mac: Some([0x02, 0, 0, 0, 0, 0xbb]),
                    decrement_ttl: true,
                }),
            ),
        ],
        latency_sample_rate: 4,
        ..Default::default()
    }
}

#[test]
fn established_flows_take_the_fast_path_with_the_slow_paths_bytes_and_counters() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let t = Twin::new(hook, &five_function_chain());
        let v = verdicts(hook);
        // the client's SYN opens conntrack, NAT and LB state: slow
        let (r, out) = t.send(&tcp("10.0.1.10", 5555, "10.0.0.100", 80, 0x02));
        assert_eq!(r, v.tx, "{hook:?}: SYN forwarded");
        verify_checksums(&out).expect("SYN checksums");
        let (src, sport, dst, dport) = ends(&out);
        assert_eq!(src, [10, 0, 0, 1], "{hook:?}: SNAT");
        assert!(dst == [10, 0, 2, 1] || dst == [10, 0, 2, 2]);
        assert_eq!(dport, 8080);
        assert_eq!(t.fast_packets(), 0);

        // the backend's replies come back to the SNAT address and run the chain in reverse
        let backend = format!("{}.{}.{}.{}", dst[0], dst[1], dst[2], dst[3]);
        let (r, back) = t.send(&tcp(&backend, 8080, "10.0.0.1", sport, 0x12));
        assert_eq!(r, v.tx, "{hook:?}: SYN-ACK");
        assert_eq!(ends(&back), ([10, 0, 0, 100], 80, [10, 0, 1, 10], 5555));
        for i in 0..20u8 {
            let (r, out) = t.send(&tcp("10.0.1.10", 5555, "10.0.0.100", 80, 0x10 | (i & 8)));
            assert_eq!(r, v.tx);
            verify_checksums(&out).expect("established checksums");
            assert_eq!(
                ends(&out),
                (src, sport, dst, dport),
                "{hook:?}: same translation"
            );
            assert_eq!(out[14 + 8], 63, "{hook:?}: TTL decremented once");
            assert_eq!(&out[..12], &[2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 0xaa]);
            let (r, back) = t.send(&tcp(&backend, 8080, "10.0.0.1", sport, 0x10));
            assert_eq!(r, v.tx);
            verify_checksums(&back).expect("reply checksums");
            assert_eq!(ends(&back), ([10, 0, 0, 100], 80, [10, 0, 1, 10], 5555));
        }
        let fast = t.fast_packets();
        assert!(
            fast >= 36,
            "{hook:?}: only {fast} of 40 established packets took the fast path"
        );
        t.same_counters();

        // UDP through the same chain (DNAT-less SNAT + LB on port 80), with and without checksum
        for i in 0..10u8 {
            let (r, out) = t.send(&udp("10.0.1.20", 4000, "10.0.0.100", 80, i));
            assert_eq!(r, v.tx);
            verify_checksums(&out).expect("udp checksums");
            let (r, out) = t.send(&no_udp_checksum(udp(
                "10.0.1.21",
                4001,
                "10.0.0.100",
                80,
                i,
            )));
            assert_eq!(r, v.tx);
            let ihl = usize::from(out[14] & 0xf) * 4;
            assert_eq!(
                &out[14 + ihl + 6..14 + ihl + 8],
                &[0, 0],
                "a zero UDP checksum stays zero"
            );
        }
        assert!(
            t.fast_packets() >= fast + 16,
            "{hook:?}: UDP took the fast path"
        );
        // a packet the firewall denies, repeatedly: a cached drop counts like the slow one
        for _ in 0..5 {
            let (r, _) = t.send(&tcp("10.0.9.9", 7, "10.0.0.100", 80, 0x10));
            assert_eq!(r, v.drop, "{hook:?}: control: denied flows stay denied");
        }
        t.same_counters();
        let fw = t
            .fast
            .function_stats(t.fast_chain.instances[0])
            .expect("fw");
        assert_eq!(fw.dropped[reason::FW_DEFAULT], 5);
    }
}

#[test]
fn tcp_fin_and_rst_take_the_slow_path() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let t = Twin::new(hook, &five_function_chain());
        t.send(&tcp("10.0.1.10", 6000, "10.0.0.100", 80, 0x02));
        for _ in 0..4 {
            t.send(&tcp("10.0.1.10", 6000, "10.0.0.100", 80, 0x10));
        }
        let before = t.fast_packets();
        assert!(before >= 2, "{hook:?}: the ACKs took the fast path");
        // FIN goes slow and forgets the flow's entry: the next ACK goes slow too (and records)
        t.send(&tcp("10.0.1.10", 6000, "10.0.0.100", 80, 0x11));
        assert_eq!(t.fast_packets(), before, "{hook:?}: FIN took the slow path");
        t.send(&tcp("10.0.1.10", 6000, "10.0.0.100", 80, 0x10));
        assert_eq!(
            t.fast_packets(),
            before,
            "{hook:?}: the entry was forgotten"
        );
        t.send(&tcp("10.0.1.10", 6000, "10.0.0.100", 80, 0x10));
        assert_eq!(t.fast_packets(), before + 1, "{hook:?}: recorded again");
        t.send(&tcp("10.0.1.10", 6000, "10.0.0.100", 80, 0x14));
        assert_eq!(
            t.fast_packets(),
            before + 1,
            "{hook:?}: RST took the slow path"
        );
        t.same_counters();
    }
}

#[test]
fn a_rule_change_that_denies_the_flow_drops_its_next_packet() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        for conntrack in [false, true] {
            let allow = firewall(
                vec![rule(Action::Allow, Some("10.0.1.0/24"), None)],
                conntrack,
            );
            let mon = FunctionConfig::new(
                "mon",
                FunctionKind::Monitor(MonitorConfig {
                    count_by: CountBy::DestinationPort,
                    ..Default::default()
                }),
            );
            let mut t = Twin::new(
                hook,
                &ChainConfig {
                    functions: vec![allow, mon.clone()],
                    ..Default::default()
                },
            );
            let v = verdicts(hook);
            let f = udp("10.0.1.5", 1000, "10.9.9.9", 53, 1);
            for _ in 0..5 {
                assert_eq!(t.send(&f).0, v.pass, "{hook:?}: control: the flow passes");
            }
            let fast = t.fast_packets();
            assert!(fast >= 3, "{hook:?} conntrack {conntrack}: fast {fast}");
            // update in place: the next packet must meet the new rules
            let deny = FirewallConfig {
                rules: vec![rule(Action::Deny, Some("10.0.1.5/32"), None)],
                default_action: Action::Allow,
                conntrack,
                ..Default::default()
            };
            let fw = t.fast_chain.instances[0];
            let e0 = t.fast.fast_path_epoch().expect("epoch");
            t.slow.update_firewall(fw, &deny).expect("update slow");
            t.fast.update_firewall(fw, &deny).expect("update fast");
            assert_ne!(t.fast.fast_path_epoch().expect("epoch"), e0);
            for _ in 0..4 {
                assert_eq!(
                    t.send(&f).0,
                    v.drop,
                    "{hook:?} conntrack {conntrack}: denied now"
                );
            }
            // another source still passes
            assert_eq!(t.send(&udp("10.0.1.6", 1000, "10.9.9.9", 53, 1)).0, v.pass);
            t.same_counters();

            // a recomposition (new generation) also takes effect at once
            t.apply(&ChainConfig {
                functions: vec![firewall(vec![], conntrack), mon],
                ..Default::default()
            });
            assert_eq!(t.send(&udp("10.0.1.6", 1000, "10.9.9.9", 53, 1)).0, v.drop);
            t.same_counters();
        }
    }
}

#[test]
fn lb_backend_removal_and_nat_translations_match_the_slow_path() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let cfg = ChainConfig {
            functions: vec![
                FunctionConfig::new(
                    "nat",
                    FunctionKind::Nat(NatConfig {
                        rules: vec![NatRule::Dnat {
                            protocol: Some(UDP),
                            match_dst: ip("192.0.2.1"),
                            match_port: Some(53),
                            to_addr: ip("10.0.3.3"),
                            to_port: Some(5353),
                        }],
                        timeout: Duration::from_secs(60),
                    }),
                ),
                FunctionConfig::new(
                    "lb",
                    FunctionKind::LoadBalancer(lb_config(
                        "10.0.0.100",
                        None,
                        &["10.0.2.1", "10.0.2.2", "10.0.2.3"],
                    )),
                ),
            ],
            ..Default::default()
        };
        let t = Twin::new(hook, &cfg);
        let v = verdicts(hook);
        // many flows to the VIP, each established, then replies
        let mut chosen = Vec::new();
        for port in 3000..3012u16 {
            let src = "10.0.1.7";
            for i in 0..4u8 {
                let (r, out) = t.send(&tcp(src, port, "10.0.0.100", 80, 0x10 | (i & 8)));
                assert_eq!(r, v.pass);
                verify_checksums(&out).expect("checksums");
                if i == 0 {
                    chosen.push(ends(&out).2);
                }
            }
        }
        // DNAT and its replies
        for i in 0..6u8 {
            let (_, out) = t.send(&udp("10.0.1.8", 999, "192.0.2.1", 53, i));
            assert_eq!(ends(&out), ([10, 0, 1, 8], 999, [10, 0, 3, 3], 5353));
            let (_, back) = t.send(&udp("10.0.3.3", 5353, "10.0.1.8", 999, i));
            assert_eq!(ends(&back), ([192, 0, 2, 1], 53, [10, 0, 1, 8], 999));
        }
        let fast = t.fast_packets();
        assert!(fast > 30, "{hook:?}: fast {fast}");
        t.same_counters();

        // remove a backend: established flows keep theirs (affinity, as on the slow path), new
        // flows never pick the removed one
        let lb_inst = t.fast_chain.instances[1];
        let remaining = lb_config("10.0.0.100", None, &["10.0.2.1", "10.0.2.2"]);
        let mut te = t;
        te.slow
            .update_load_balancer(lb_inst, &remaining)
            .expect("lb slow");
        te.fast
            .update_load_balancer(lb_inst, &remaining)
            .expect("lb fast");
        for (k, port) in (3000..3012u16).enumerate() {
            let (_, out) = te.send(&tcp("10.0.1.7", port, "10.0.0.100", 80, 0x10));
            assert_eq!(ends(&out).2, chosen[k], "{hook:?}: affinity kept");
        }
        for port in 4000..4030u16 {
            let (_, out) = te.send(&tcp("10.0.1.7", port, "10.0.0.100", 80, 0x02));
            assert_ne!(
                ends(&out).2,
                [10, 0, 2, 3],
                "{hook:?}: removed backend chosen"
            );
        }
        te.same_counters();
    }
}

/// Live, through namespaces: a chain on the "pod's" eth0 ingress (firewall with conntrack allowing UDP to
/// 8080, a monitor); a client calls the pod's echo. The flow's packets take the fast path after its first
/// ones, every call is answered, the counters are the slow path's (one per packet per function), and after a
/// rule update that denies the port the next calls go unanswered.
fn live(hook: Hook, tag: &str) {
    let ns = Namespaces::new(&[&format!("hfastc{tag}"), &format!("hfastp{tag}")]);
    ns.link(0, "eth0", "10.95.0.1/24", 1, "eth0", "10.95.0.2/24");
    let (client, pod) = (ns.0[0].clone(), ns.0[1].clone());
    let addr = |s: &str| -> std::net::SocketAddr { s.parse().expect("addr") };
    let fw = |port: u16| FirewallConfig {
        rules: vec![allow_udp_to(port, 0)],
        default_action: Action::Deny,
        conntrack: true,
        ..Default::default()
    };
    let (to_engine, commands) = std::sync::mpsc::channel::<&'static str>();
    let (to_test, answers) = std::sync::mpsc::channel::<(u64, u64, u64, u64)>();
    let pod_ns = pod.clone();
    let engine = std::thread::spawn(move || {
        enter(&pod_ns);
        let mut e = Engine::load(hook).expect("load");
        let applied = e
            .apply(&ChainConfig {
                functions: vec![
                    FunctionConfig::new("fw", FunctionKind::Firewall(fw(8080))),
                    FunctionConfig::new("mon", FunctionKind::Monitor(MonitorConfig::default())),
                ],
                ..Default::default()
            })
            .expect("apply");
        e.attach("eth0").expect("attach");
        to_test.send((0, 0, 0, 0)).expect("ready");
        for cmd in commands {
            if cmd == "deny" {
                e.update_firewall(applied.instances[0], &fw(9999))
                    .expect("update");
            }
            let c = e.chain_counters(e.active_generation()).expect("c");
            let fw = e.function_stats(applied.instances[0]).expect("fw");
            let mon = e.function_stats(applied.instances[1]).expect("mon");
            to_test
                .send((
                    c.fast,
                    c.completed,
                    mon.packets_in,
                    fw.dropped[reason::FW_DEFAULT],
                ))
                .expect("answer");
        }
        e.detach().expect("detach");
    });
    answers
        .recv_timeout(Duration::from_secs(60))
        .expect("attached");
    let ask = |cmd: &'static str| {
        to_engine.send(cmd).expect("cmd");
        answers
            .recv_timeout(Duration::from_secs(30))
            .expect("stats")
    };
    let calls = |n: usize, wait_ms: u64| {
        udp_calls(
            &client,
            addr("10.95.0.1:6000"),
            addr("10.95.0.2:8080"),
            n,
            Duration::from_millis(wait_ms),
        )
    };
    let echo = udp_echo(&pod, addr("10.95.0.2:8080"), Duration::from_millis(2000));
    let n = 30;
    assert_eq!(calls(n, 500), n, "{hook:?}: control: every call answered");
    let (fast, completed, mon_in, _) = ask("stats");
    // other frames (neighbour discovery, ARP) may enter the chain too; the flow's own are most of them
    assert!(completed >= n as u64, "{hook:?}: {completed} completed");
    assert!(mon_in >= n as u64, "{hook:?}: the monitor counted {mon_in}");
    assert!(
        fast >= n as u64 - 5,
        "{hook:?}: only {fast} of {n} calls took the fast path"
    );
    // the rule update: the established flow is denied from its next packet on (the fast path kept
    // its result for up to a second: the epoch, not the lifetime, must end it)
    let (fast2, _, _, denied2) = ask("deny");
    assert_eq!(calls(3, 300), 0, "{hook:?}: denied after the update");
    let (fast3, _, _, denied3) = ask("stats");
    // (IPv6 neighbour discovery the default deny drops may add to the count)
    assert!(
        denied3 - denied2 >= 3,
        "{hook:?}: the firewall denied each call"
    );
    // the first denial re-checks the flow (slow), the second records the new verdict, the third may
    // take the fast path with it: never one of the old policy's passes
    assert!(fast3 <= fast2 + 1, "{hook:?}: {fast2} -> {fast3}");
    drop(to_engine);
    engine.join().expect("engine thread");
    assert_eq!(echo.join().expect("echo"), n);
}

hook_tests!(
    live: live_established_flow_takes_the_fast_path_xdp,
    live_established_flow_takes_the_fast_path_tc
);
