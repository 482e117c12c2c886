//! Chain tests: classifier bypass, generation switch, multi-function chains, chain telemetry.

mod common;

use std::net::IpAddr;

use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{
    Action, ChainConfig, ClassifierConfig, Engine, FirewallConfig, ForwarderConfig, FunctionConfig,
    FunctionKind, Hook, MonitorConfig, PortRange, RateLimiterConfig,
};
use common::*;

fn firewall(default_action: Action) -> FunctionConfig {
    FunctionConfig::new(
        "fw",
        FunctionKind::Firewall(FirewallConfig {
            default_action,
            ..Default::default()
        }),
    )
}

fn chain(functions: Vec<FunctionConfig>) -> ChainConfig {
    ChainConfig {
        functions,
        ..Default::default()
    }
}

fn run(e: &Engine, frame: &[u8]) -> u32 {
    e.test_run(frame, 1).expect("test run").retval
}

#[test]
fn builder_produces_valid_checksums() {
    let mut pkts = vec![
        Pkt::tcp("10.0.0.1", 1234, "10.0.0.2", 80),
        Pkt::udp("2001:db8::1", 53, "2001:db8::2", 5353),
        Pkt::new(
            "10.0.0.1",
            "10.0.0.2",
            L4::Echo {
                id: 7,
                reply: false,
            },
        ),
        Pkt::new(
            "2001:db8::1",
            "2001:db8::2",
            L4::Echo { id: 7, reply: true },
        ),
    ];
    let mut opt = Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 2);
    opt.ip_options = vec![1, 1, 1, 0];
    opt.vlans = vec![10, 20];
    pkts.push(opt);
    let mut ext = Pkt::udp("2001:db8::1", 1, "2001:db8::2", 2);
    ext.v6_ext = vec![0, 60];
    pkts.push(ext);
    for p in pkts {
        let f = p.build();
        verify_checksums(&f).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let mut broken = f.clone();
        let last = broken.len() - 1;
        broken[last] ^= 0x55;
        assert!(
            verify_checksums(&broken).is_err(),
            "corruption not detected: {p:?}"
        );
    }
}

#[test]
fn empty_engine_passes_everything_untouched() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let e = load(hook);
        let v = verdicts(hook);
        for frame in [Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 2).build(), arp_frame()] {
            let out = e.test_run(&frame, 1).expect("run");
            assert_eq!(out.retval, v.pass, "{hook:?}");
            assert_eq!(out.data, frame, "{hook:?}: frame modified");
        }
    }
}

#[test]
fn classifier_selects_traffic_and_the_rest_bypasses() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let mut e = load(hook);
        let v = verdicts(hook);
        let mut cfg = chain(vec![firewall(Action::Deny)]);
        cfg.classifier = ClassifierConfig {
            protocol: Some(UDP),
            dst: vec!["10.0.0.0/8".parse().expect("cidr")],
            dst_ports: vec![PortRange::new(53, 60).expect("range")],
            ..Default::default()
        };
        let applied = e.apply(&cfg).expect("apply");
        let in_chain = [
            Pkt::udp("192.0.2.1", 999, "10.1.2.3", 53),
            Pkt::udp("192.0.2.1", 999, "10.255.0.1", 60),
        ];
        let bypass = [
            Pkt::udp("192.0.2.1", 999, "10.1.2.3", 61),
            Pkt::udp("192.0.2.1", 999, "11.1.2.3", 53),
            Pkt::tcp("192.0.2.1", 999, "10.1.2.3", 53),
            Pkt::udp("2001:db8::1", 999, "2001:db8::2", 53),
        ];
        for p in &in_chain {
            assert_eq!(run(&e, &p.build()), v.drop, "{hook:?} {p:?}");
        }
        for p in &bypass {
            let f = p.build();
            let out = e.test_run(&f, 1).expect("run");
            assert_eq!(out.retval, v.pass, "{hook:?} {p:?}");
            assert_eq!(out.data, f);
        }
        assert_eq!(run(&e, &arp_frame()), v.pass);
        let c = e.chain_counters(applied.generation).expect("counters");
        assert_eq!(c.classified, 2, "{hook:?}");
        assert_eq!(c.bypassed, 5, "{hook:?}");
        assert_eq!(c.completed, 2);
        assert_eq!(c.broken, 0);
        let s = e.function_stats(applied.instances[0]).expect("stats");
        assert_eq!(s.packets_in, 2);
        assert_eq!(s.dropped[reason::FW_DEFAULT], 2);
    }
}

#[test]
fn generation_switch_is_atomic_and_recycles_instances() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let mut e = load(hook);
        let v = verdicts(hook);
        let frame = Pkt::tcp("10.0.0.1", 1000, "10.0.0.2", 80).build();

        let a = e
            .apply(&chain(vec![firewall(Action::Deny)]))
            .expect("apply a");
        assert_eq!(run(&e, &frame), v.drop);
        let b = e
            .apply(&chain(vec![firewall(Action::Allow)]))
            .expect("apply b");
        assert_ne!(a.generation, b.generation, "generation must flip");
        assert_ne!(
            a.instances, b.instances,
            "new generation gets new instances"
        );
        assert_eq!(run(&e, &frame), v.pass);
        assert_eq!(e.function_stats(b.instances[0]).expect("stats").passed, 1);
        // the old generation is untouched until the next apply
        assert_eq!(
            e.function_stats(a.instances[0])
                .expect("stats")
                .dropped_total(),
            1
        );
        assert_eq!(e.chain_counters(a.generation).expect("c").completed, 1);

        // b's "fw" inherited a's state: a's instance id stays taken while that state lives
        let renamed = |name: &str, action| FunctionConfig {
            name: name.into(),
            ..firewall(action)
        };
        // a third chain of new functions starts fresh, in generation a
        let c = e
            .apply(&chain(vec![
                renamed("deny", Action::Deny),
                renamed("allow", Action::Allow),
            ]))
            .expect("apply c");
        assert_eq!(c.generation, a.generation);
        assert!(!c.instances.contains(&a.instances[0]), "{c:?} {a:?}");
        for inst in &c.instances {
            assert_eq!(e.function_stats(*inst).expect("stats").packets_in, 0);
        }
        assert_eq!(e.chain_counters(c.generation).expect("c").completed, 0);
        assert_eq!(run(&e, &frame), v.drop);
        // retiring b frees that state, and the id is recycled with zeroed counters
        let d = e
            .apply(&chain(vec![renamed("other", Action::Allow)]))
            .expect("apply d");
        assert!(d.instances.contains(&a.instances[0]), "{d:?} {a:?}");
        assert_eq!(
            e.function_stats(d.instances[0]).expect("stats").packets_in,
            0
        );

        // an empty chain disables processing
        e.apply(&ChainConfig::default()).expect("apply empty");
        let out = e.test_run(&frame, 1).expect("run");
        assert_eq!((out.retval, out.data), (v.pass, frame.clone()));
    }
}

#[test]
fn multi_function_chain_runs_every_function_in_order() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let mut e = load(hook);
        let v = verdicts(hook);
        let mut cfg = chain(vec![
            FunctionConfig::new(
                "mon",
                FunctionKind::Monitor(MonitorConfig {
                    sample_rate: 0,
                    ..Default::default()
                }),
            ),
            FunctionConfig::new(
                "rl",
                FunctionKind::RateLimiter(RateLimiterConfig {
                    packets_per_sec: Some(1_000_000),
                    burst_packets: 1_000,
                    ..Default::default()
                }),
            ),
            firewall(Action::Allow),
            FunctionConfig::new(
                "mon2",
                FunctionKind::Monitor(MonitorConfig {
                    sample_rate: 0,
                    ..Default::default()
                }),
            ),
        ]);
        cfg.latency_sample_rate = 1;
        for f in &mut cfg.functions {
            f.latency_sample_rate = 1;
        }
        let applied = e.apply(&cfg).expect("apply");
        let frame = Pkt::udp("10.0.0.1", 5, "10.0.0.2", 6).build();
        for _ in 0..10 {
            assert_eq!(run(&e, &frame), v.pass);
        }
        let c = e.chain_counters(applied.generation).expect("c");
        assert_eq!(c.completed, 10);
        assert_eq!(c.latency_hist.iter().sum::<u64>(), 10);
        // the established flow took the fast path after its first packets: those are timed as a
        // whole, the slow-path packets function by function (docs/architecture.md, "Fast path")
        assert!(c.fast > 0 && c.fast < 10, "{hook:?}: {} fast", c.fast);
        assert_eq!(c.fast_hist.iter().sum::<u64>(), c.fast);
        for inst in &applied.instances {
            let s = e.function_stats(*inst).expect("stats");
            assert_eq!(
                (s.packets_in, s.passed),
                (10, 10),
                "{hook:?} instance {inst}"
            );
            assert_eq!(s.bytes_in, 10 * frame.len() as u64);
            assert_eq!(
                s.latency_hist.iter().sum::<u64>(),
                10 - c.fast,
                "sampled every slow-path packet"
            );
        }

        // a drop in the middle stops the chain
        let mut cfg2 = cfg.clone();
        cfg2.functions[2] = firewall(Action::Deny);
        let applied = e.apply(&cfg2).expect("apply");
        assert_eq!(run(&e, &frame), v.drop);
        // the functions kept their names, so their counters carried over the update
        let last = e.function_stats(applied.instances[3]).expect("stats");
        assert_eq!(last.packets_in, 10, "function after a drop must not run");
        let first = e.function_stats(applied.instances[0]).expect("stats");
        assert_eq!(first.packets_in, 11);
    }
}

#[test]
fn invalid_chains_are_rejected_without_touching_the_active_one() {
    if !privileged() {
        return;
    }
    let mut e = load(Hook::Xdp);
    let applied = e
        .apply(&chain(vec![firewall(Action::Deny)]))
        .expect("apply");
    let too_long = chain((0..17).map(|_| firewall(Action::Allow)).collect());
    assert!(e.apply(&too_long).is_err());
    let bad_rl = chain(vec![FunctionConfig::new(
        "rl",
        FunctionKind::RateLimiter(RateLimiterConfig::default()),
    )]);
    assert!(e.apply(&bad_rl).is_err());
    assert_eq!(e.active_generation(), applied.generation);
    assert_eq!(e.active_instances(), applied.instances.as_slice());
    let frame = Pkt::tcp("10.0.0.1", 1000, "10.0.0.2", 80).build();
    assert_eq!(run(&e, &frame), XDP_DROP);
}

#[test]
fn packets_never_mix_generations_during_a_switch() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    if !privileged() {
        return;
    }
    // A = [allow, forwarder smac=0A], B = [deny, forwarder smac=0B]. A packet
    // that started in A and continued in B would pass with smac 0B.
    let gen_chain = |action, mac: u8| {
        chain(vec![
            firewall(action),
            FunctionConfig::new(
                "fwd",
                FunctionKind::Forwarder(ForwarderConfig {
                    src_mac: Some([0x02, 0, 0, 0, 0, mac]),
                    ..Default::default()
                }),
            ),
        ])
    };
    let (a, b) = (
        gen_chain(Action::Allow, 0x0a),
        gen_chain(Action::Deny, 0x0b),
    );
    let frame = Pkt::udp("10.0.0.1", 5, "10.0.0.2", 6).build();
    let mut e = load(Hook::Xdp);
    e.apply(&a).expect("apply a");
    let runner = e.test_runner().expect("runner");
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let wait_for = |n: u64| {
        while sent.load(Ordering::Relaxed) < n {
            std::thread::yield_now();
        }
    };
    let (passed_a, dropped, mixed) = std::thread::scope(|s| {
        let t = s.spawn(|| {
            let (mut passed_a, mut dropped, mut mixed) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let out = runner.run(&frame, 1).expect("run");
                match (out.retval, out.data[11]) {
                    (XDP_PASS, 0x0a) => passed_a += 1,
                    (XDP_DROP, _) => dropped += 1,
                    _ => mixed += 1,
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            (passed_a, dropped, mixed)
        });
        for flip in 0..40u64 {
            wait_for((flip + 1) * 200);
            e.apply(if flip % 2 == 0 { &b } else { &a }).expect("apply");
        }
        wait_for(41 * 200);
        stop.store(true, Ordering::Relaxed);
        t.join().expect("runner thread")
    });
    assert_eq!(mixed, 0, "packets ran functions of two generations");
    assert!(passed_a > 0 && dropped > 0, "both generations saw traffic");
}

/// The edge chain's stateful core: a stateful firewall that admits TCP to port 80 from the clients,
/// SNAT of the clients, and a load balancer for the VIP.
fn edge_core() -> Vec<FunctionConfig> {
    use cnf_dataplane::engine::{FirewallRule, PortRange};
    vec![
        FunctionConfig::new(
            "fw",
            FunctionKind::Firewall(FirewallConfig {
                rules: vec![FirewallRule {
                    priority: 0,
                    action: Action::Allow,
                    protocol: Some(TCP),
                    src: Some("10.0.1.0/24".parse().expect("cidr")),
                    dst: None,
                    src_ports: None,
                    dst_ports: Some(PortRange::new(80, 80).expect("range")),
                }],
                default_action: Action::Deny,
                conntrack: true,
                ..Default::default()
            }),
        ),
        FunctionConfig::new(
            "nat",
            FunctionKind::Nat(snat_config("10.0.1.0/24", "10.0.0.1", 20000, 20999)),
        ),
        FunctionConfig::new(
            "lb",
            FunctionKind::LoadBalancer(lb_config(
                "10.0.0.100",
                Some(TCP),
                &["10.0.2.1", "10.0.2.2"],
            )),
        ),
        FunctionConfig::new("mon", FunctionKind::Monitor(MonitorConfig::default())),
    ]
}

/// (source, source port, destination, destination port) of an untagged IPv4 TCP frame.
fn tcp_ends(f: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let h = &f[14..];
    let l4 = &h[usize::from(h[0] & 0xf) * 4..];
    (
        IpAddr::from([h[12], h[13], h[14], h[15]]),
        u16::from_be_bytes([l4[0], l4[1]]),
        IpAddr::from([h[16], h[17], h[18], h[19]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

#[test]
fn replies_undo_the_translations_in_reverse_order() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let mut e = load(hook);
        e.apply(&chain(edge_core())).expect("apply");
        let pass = verdicts(hook).pass;
        for (i, client_port) in [5555u16, 5556, 5557].into_iter().enumerate() {
            // client -> VIP: the firewall admits it, NAT moves the source, the LB picks a backend
            let syn = Pkt::tcp("10.0.1.10", client_port, "10.0.0.100", 80).build();
            let out = e.test_run(&syn, 1).expect("run");
            assert_eq!(out.retval, pass, "{hook:?}: SYN passes");
            verify_checksums(&out.data).expect("valid checksums");
            let (src, sport, dst, dport) = tcp_ends(&out.data);
            assert_eq!(src, ip("10.0.0.1"), "{hook:?}: SNAT");
            assert!((20000..=20999).contains(&sport), "{hook:?}: SNAT port");
            assert!(dst == ip("10.0.2.1") || dst == ip("10.0.2.2"), "{hook:?}");
            assert_eq!(dport, 8080);

            // the backend's SYN-ACK comes back to the SNAT address: it must meet the LB first, then
            // NAT, then the firewall's conntrack, and reach the client from the VIP
            let mut reply = Pkt::tcp(&dst.to_string(), dport, "10.0.0.1", sport);
            reply.l4 = L4::Tcp {
                sport: dport,
                dport: sport,
                flags: 0x12,
            };
            let back = e.test_run(&reply.build(), 1).expect("run reply");
            assert_eq!(back.retval, pass, "{hook:?}: the reply passes the firewall");
            verify_checksums(&back.data).expect("valid reply checksums");
            assert_eq!(
                tcp_ends(&back.data),
                (ip("10.0.0.100"), 80, ip("10.0.1.10"), client_port),
                "{hook:?}: reply {i} restored to VIP -> client"
            );
        }
        // a packet from a backend that belongs to no flow is still the firewall's to judge
        let stray = Pkt::tcp("10.0.2.1", 8080, "10.0.0.1", 20001).build();
        assert_eq!(
            run(&e, &stray),
            verdicts(hook).drop,
            "{hook:?}: stray reply"
        );
    }
}
