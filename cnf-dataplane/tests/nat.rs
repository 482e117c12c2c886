//! NAT packet tests (XDP and TC): SNAT and DNAT for TCP/UDP over IPv4/IPv6, reply translation,
//! checksum validity, port-pool exhaustion, untranslated traffic.

mod common;

use std::time::Duration;

use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{
    ChainConfig, Engine, FunctionConfig, FunctionKind, Hook, NatConfig, NatRule, PortRange,
};
use common::*;

fn setup(hook: Hook, rule: NatRule) -> (Engine, u32) {
    let mut e = load(hook);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new(
                "nat",
                FunctionKind::Nat(NatConfig {
                    rules: vec![rule],
                    timeout: Duration::from_secs(60),
                }),
            )],
            ..Default::default()
        })
        .expect("apply");
    (e, applied.instances[0])
}

fn ports(p: &Pkt) -> (u16, u16) {
    match p.l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
        _ => (0, 0),
    }
}

fn with_ports(p: &Pkt, sport: u16, dport: u16) -> Pkt {
    let mut q = p.clone();
    q.l4 = match p.l4 {
        L4::Tcp { flags, .. } => L4::Tcp {
            sport,
            dport,
            flags,
        },
        L4::Udp { .. } => L4::Udp { sport, dport },
        ref other => other.clone(),
    };
    q
}

/// Runs `p`, expects a pass, valid checksums, and returns the output frame.
fn through(e: &Engine, hook: Hook, p: &Pkt) -> Vec<u8> {
    let out = e.test_run(&p.build(), 1).expect("run");
    assert_eq!(out.retval, verdicts(hook).pass, "{hook:?} {p:?}");
    verify_checksums(&out.data).unwrap_or_else(|err| panic!("{hook:?} {p:?}: {err}"));
    out.data
}

/// Source port of an untagged IPv4/IPv6 TCP/UDP frame.
fn frame_sport(f: &[u8]) -> u16 {
    let l4 = if f[12..14] == [0x08, 0x00] {
        14 + 20
    } else {
        14 + 40
    };
    u16::from_be_bytes([f[l4], f[l4 + 1]])
}

#[test]
fn snat_translates_flows_and_their_replies() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        for (inside, nat_ip, server) in [
            ("10.0.0.5", "203.0.113.1", "198.51.100.1"),
            ("2001:db8:a::5", "2001:db8:ff::1", "2001:db8:b::1"),
        ] {
            let match_src = if inside.contains(':') {
                "2001:db8:a::/48"
            } else {
                "10.0.0.0/24"
            };
            let (e, inst) = setup(
                hook,
                NatRule::Snat {
                    match_src: vec![match_src.parse().expect("cidr")],
                    to_addr: ip(nat_ip),
                    ports: PortRange::new(40000, 40009).expect("range"),
                },
            );
            for (i, request) in [
                Pkt::tcp(inside, 1234, server, 80),
                Pkt::udp(inside, 5353, server, 53),
            ]
            .into_iter()
            .enumerate()
            {
                let out = through(&e, hook, &request);
                let port = frame_sport(&out);
                assert!((40000..=40009).contains(&port), "{hook:?} port {port}");
                let mut want = with_ports(&request, port, ports(&request).1);
                want.src = ip(nat_ip);
                assert_eq!(
                    out,
                    want.build(),
                    "{hook:?} {request:?}: only source changes"
                );
                // stable for the flow
                assert_eq!(through(&e, hook, &request), out);

                let mut reply = with_ports(&request, ports(&request).1, port);
                reply.src = ip(server);
                reply.dst = ip(nat_ip);
                let back = through(&e, hook, &reply);
                let mut want_back = with_ports(&request, ports(&request).1, ports(&request).0);
                want_back.src = ip(server);
                want_back.dst = ip(inside);
                assert_eq!(back, want_back.build(), "{hook:?} reply translated back");
                assert_eq!(e.nat_entries(inst), 2 * (i + 1));
            }
            // other sources are not translated
            let outside = if inside.contains(':') {
                "2001:db8:c::5"
            } else {
                "10.0.1.5"
            };
            let other = Pkt::tcp(outside, 1234, server, 80);
            assert_eq!(through(&e, hook, &other), other.build());
        }
    }
}

#[test]
fn dnat_translates_destination_and_replies() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let (e, inst) = setup(
            hook,
            NatRule::Dnat {
                protocol: None,
                match_dst: ip("192.0.2.10"),
                match_port: Some(80),
                to_addr: ip("10.0.0.20"),
                to_port: Some(8080),
            },
        );
        let request = Pkt::tcp("198.51.100.7", 5555, "192.0.2.10", 80);
        let out = through(&e, hook, &request);
        let mut want = with_ports(&request, 5555, 8080);
        want.dst = ip("10.0.0.20");
        assert_eq!(out, want.build(), "{hook:?}");
        let reply = Pkt::tcp("10.0.0.20", 8080, "198.51.100.7", 5555);
        let back = through(&e, hook, &reply);
        assert_eq!(
            back,
            Pkt::tcp("192.0.2.10", 80, "198.51.100.7", 5555).build()
        );
        // another port of the same address is not translated
        let other = Pkt::tcp("198.51.100.7", 5555, "192.0.2.10", 81);
        assert_eq!(through(&e, hook, &other), other.build());
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.aux, 1, "one packet hit an existing translation");
    }
}

#[test]
fn zero_udp_checksum_stays_zero() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let (e, _) = setup(
            hook,
            NatRule::Snat {
                match_src: vec!["10.0.0.0/24".parse().expect("cidr")],
                to_addr: ip("203.0.113.1"),
                ports: PortRange::new(40000, 40000).expect("range"),
            },
        );
        let mut frame = Pkt::udp("10.0.0.5", 1000, "198.51.100.1", 53).build();
        frame[14 + 20 + 6] = 0;
        frame[14 + 20 + 7] = 0;
        let out = e.test_run(&frame, 1).expect("run");
        assert_eq!(out.retval, verdicts(hook).pass);
        assert_eq!(&out.data[14 + 12..14 + 16], &[203, 0, 113, 1]);
        assert_eq!(frame_sport(&out.data), 40000);
        assert_eq!(&out.data[14 + 20 + 6..14 + 20 + 8], &[0, 0], "{hook:?}");
        verify_checksums(&out.data).expect("IPv4 header checksum");
    }
}

#[test]
fn exhausted_port_pool_drops_and_other_traffic_is_untouched() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, inst) = setup(
            hook,
            NatRule::Snat {
                match_src: vec!["10.0.0.0/24".parse().expect("cidr")],
                to_addr: ip("203.0.113.1"),
                ports: PortRange::new(50000, 50000).expect("range"),
            },
        );
        let a = Pkt::tcp("10.0.0.5", 1000, "198.51.100.1", 80);
        let b = Pkt::tcp("10.0.0.6", 1000, "198.51.100.1", 80);
        let c = Pkt::tcp("10.0.0.6", 1000, "198.51.100.2", 80);
        through(&e, hook, &a);
        let out = e.test_run(&b.build(), 1).expect("run");
        assert_eq!(
            out.retval, v.drop,
            "{hook:?}: only port is taken for this server"
        );
        through(&e, hook, &c);
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.dropped[reason::NAT_EXHAUSTED], 1);

        let echo = Pkt::new(
            "10.0.0.5",
            "198.51.100.1",
            L4::Echo {
                id: 1,
                reply: false,
            },
        );
        let mut frag = Pkt::udp("10.0.0.5", 1, "198.51.100.1", 2);
        frag.frag = Frag::Later(20);
        for p in [echo, frag] {
            let f = p.build();
            let out = e.test_run(&f, 1).expect("run");
            assert_eq!(
                (out.retval, out.data),
                (v.pass, f),
                "{hook:?} untranslated {p:?}"
            );
        }
    }
}

#[test]
fn invalid_nat_rules_are_rejected() {
    if !privileged() {
        return;
    }
    let mut e = load(Hook::Xdp);
    for rule in [
        NatRule::Snat {
            match_src: vec!["10.0.0.0/8".parse().expect("cidr")],
            to_addr: ip("2001:db8::1"),
            ports: PortRange::new(1000, 2000).expect("range"),
        },
        NatRule::Snat {
            match_src: vec!["10.0.0.0/8".parse().expect("cidr")],
            to_addr: ip("192.0.2.1"),
            ports: PortRange::new(0, 10).expect("range"),
        },
        NatRule::Dnat {
            protocol: None,
            match_dst: ip("192.0.2.1"),
            match_port: Some(0),
            to_addr: ip("10.0.0.1"),
            to_port: None,
        },
    ] {
        let cfg = ChainConfig {
            functions: vec![FunctionConfig::new(
                "nat",
                FunctionKind::Nat(NatConfig {
                    rules: vec![rule.clone()],
                    timeout: Duration::from_secs(1),
                }),
            )],
            ..Default::default()
        };
        assert!(e.apply(&cfg).is_err(), "{rule:?} accepted");
    }
}

/// The SNAT function `name`; `timeout` stands for "some configuration change".
fn nat_fn(name: &str, timeout: u64) -> FunctionConfig {
    FunctionConfig::new(
        name,
        FunctionKind::Nat(NatConfig {
            rules: vec![NatRule::Snat {
                match_src: vec!["10.0.0.0/24".parse().expect("cidr")],
                to_addr: ip("203.0.113.1"),
                ports: PortRange::new(40000, 40009).expect("range"),
            }],
            timeout: Duration::from_secs(timeout),
        }),
    )
}

fn monitor_fn() -> FunctionConfig {
    FunctionConfig::new(
        "mon",
        FunctionKind::Monitor(cnf_dataplane::engine::MonitorConfig::default()),
    )
}

#[test]
fn translations_and_counters_survive_chain_updates_of_the_same_function() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let mut e = load(hook);
        let chain = |functions| ChainConfig {
            functions,
            ..Default::default()
        };
        let first = e.apply(&chain(vec![nat_fn("nat", 60)])).expect("apply");
        let request = Pkt::udp("10.0.0.5", 5353, "198.51.100.1", 53);
        let port = frame_sport(&through(&e, hook, &request));

        // an update that inserts a function in front and changes the NAT's configuration
        // gives it a new instance, which inherits the state of "nat"
        let second = e
            .apply(&chain(vec![monitor_fn(), nat_fn("nat", 61)]))
            .expect("apply");
        assert_ne!(second.instances[1], first.instances[0], "new instance");
        let mut reply = with_ports(&request, 53, port);
        reply.src = ip("198.51.100.1");
        reply.dst = ip("203.0.113.1");
        let mut want = with_ports(&request, 53, 5353);
        want.src = ip("198.51.100.1");
        want.dst = ip("10.0.0.5");
        assert_eq!(
            through(&e, hook, &reply),
            want.build(),
            "{hook:?}: the reply of a flow from before the update is translated back"
        );
        let stats = e.function_stats(second.instances[1]).expect("stats");
        assert_eq!(stats.packets_in, 2, "{hook:?}: counters continue");
        assert_eq!(e.nat_entries(second.instances[1]), 2);

        // an unchanged function keeps its very instance
        let third = e.apply(&chain(vec![nat_fn("nat", 61)])).expect("apply");
        assert_eq!(third.instances[0], second.instances[1], "{hook:?}");
        // another change retires every instance that ever held the state; it still lives
        let fourth = e
            .apply(&chain(vec![nat_fn("nat", 62), monitor_fn()]))
            .expect("apply");
        assert!(!fourth.instances.contains(&first.instances[0]));
        assert_eq!(through(&e, hook, &reply), want.build(), "{hook:?}");
        assert_eq!(
            e.function_stats(fourth.instances[0])
                .expect("stats")
                .packets_in,
            3
        );

        // a function under another name starts fresh, and the old state is purged once
        // no generation holds it
        let fresh = e.apply(&chain(vec![nat_fn("nat2", 62)])).expect("apply");
        assert_eq!(e.nat_entries(fresh.instances[0]), 0);
        assert_eq!(
            e.function_stats(fresh.instances[0])
                .expect("stats")
                .packets_in,
            0
        );
        assert_eq!(
            through(&e, hook, &reply),
            reply.build(),
            "{hook:?}: a new NAT has no translation for the old flow"
        );
        let last = e.apply(&chain(vec![monitor_fn()])).expect("apply");
        assert_eq!(last.instances.len(), 1);
        assert_eq!(
            e.nat_entries(fourth.instances[0]),
            0,
            "{hook:?}: retired state is purged"
        );
    }
}
