//! Packet tests of the list-valued configuration: classifier lists, SNAT + several DNAT mappings in one NAT,
//! weighted Maglev with a spec-sized table, monitor counting by DSCP / destination port, and the edge chain
//! mapped from its manifest by `spec::chain_config` (IPv4 and IPv6, XDP and TC).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use cnf_dataplane::engine::abi::{self, reason};
use cnf_dataplane::engine::{
    ChainConfig, ClassifierConfig, CountBy, Engine, FunctionConfig, FunctionKind, Hook,
    LbBackendConfig, LbConfig, MonitorConfig, NatConfig, NatRule, PortRange, maglev,
};
use common::*;

/// (source, source port, destination, destination port) of an untagged TCP/UDP frame.
fn fields(f: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let port = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    if f[12..14] == [0x08, 0x00] {
        let a = |at: usize| IpAddr::from([f[at], f[at + 1], f[at + 2], f[at + 3]]);
        (a(26), port(34), a(30), port(36))
    } else {
        let a = |at: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&f[at..at + 16]);
            IpAddr::from(b)
        };
        (a(22), port(54), a(38), port(56))
    }
}

fn run(e: &Engine, p: &Pkt) -> (u32, Vec<u8>) {
    let out = e.test_run(&p.build(), 1).expect("run");
    (out.retval, out.data)
}

fn cidr(s: &str) -> cnf_dataplane::engine::IpCidr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn classifier_lists_select_ipv4_and_ipv6_and_follow_generations() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let mut e = load(hook);
        let chain = |src: Vec<&str>| ChainConfig {
            classifier: ClassifierConfig {
                protocol: Some(UDP),
                src: src.into_iter().map(cidr).collect(),
                dst_ports: vec![
                    PortRange::single(53),
                    PortRange::new(5000, 5010).expect("range"),
                ],
                ..Default::default()
            },
            functions: vec![deny_all()],
            ..Default::default()
        };
        let applied = e
            .apply(&chain(vec!["10.1.0.0/16", "2001:db8:1::/48"]))
            .expect("apply");
        let inside = [
            Pkt::udp("10.1.2.3", 999, "192.0.2.1", 53),
            Pkt::udp("10.1.200.3", 999, "192.0.2.1", 5005),
            Pkt::udp("2001:db8:1::5", 999, "2001:db8:ff::1", 5010),
        ];
        let outside = [
            Pkt::udp("10.2.0.1", 999, "192.0.2.1", 53),
            Pkt::udp("10.1.2.3", 999, "192.0.2.1", 5011),
            Pkt::tcp("10.1.2.3", 999, "192.0.2.1", 53),
            Pkt::udp("2001:db8:2::1", 999, "2001:db8:ff::1", 53),
            Pkt::udp("2001:db8:1::5", 999, "2001:db8:ff::1", 54),
        ];
        for p in &inside {
            assert_eq!(
                run(&e, p).0,
                v.drop,
                "{hook:?} should enter the chain: {p:?}"
            );
        }
        for p in &outside {
            assert_eq!(run(&e, p).0, v.pass, "{hook:?} should bypass: {p:?}");
        }
        let c = e.chain_counters(applied.generation).expect("counters");
        assert_eq!((c.classified, c.bypassed), (3, 5), "{hook:?}");

        // the other generation gets its own prefixes ...
        e.apply(&chain(vec!["10.2.0.0/16"])).expect("apply");
        assert_eq!(run(&e, &outside[0]).0, v.drop, "{hook:?}");
        assert_eq!(run(&e, &inside[0]).0, v.pass, "{hook:?}");
        assert_eq!(run(&e, &inside[2]).0, v.pass, "{hook:?}");
        // ... and re-using the first generation drops its old prefixes
        e.apply(&chain(vec!["192.0.2.0/24"])).expect("apply");
        for p in inside.iter().chain(&outside) {
            assert_eq!(run(&e, p).0, v.pass, "{hook:?} stale prefix: {p:?}");
        }
        assert_eq!(
            run(&e, &Pkt::udp("192.0.2.9", 1, "10.0.0.1", 53)).0,
            v.drop,
            "{hook:?}"
        );
    }
}

#[test]
fn one_nat_does_snat_and_several_dnat_mappings() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let mut e = load(hook);
        let applied = e
            .apply(&ChainConfig {
                functions: vec![FunctionConfig::new(
                    "nat",
                    FunctionKind::Nat(NatConfig {
                        rules: vec![
                            NatRule::Snat {
                                match_src: vec![cidr("10.0.0.0/24"), cidr("10.0.5.0/24")],
                                to_addr: ip("203.0.113.1"),
                                ports: PortRange::new(40000, 40099).expect("range"),
                            },
                            NatRule::Dnat {
                                protocol: Some(TCP),
                                match_dst: ip("192.0.2.10"),
                                match_port: Some(80),
                                to_addr: ip("10.0.0.20"),
                                to_port: Some(8080),
                            },
                            NatRule::Dnat {
                                protocol: Some(UDP),
                                match_dst: ip("192.0.2.10"),
                                match_port: Some(53),
                                to_addr: ip("10.0.0.21"),
                                to_port: None,
                            },
                            NatRule::Dnat {
                                protocol: None,
                                match_dst: ip("2001:db8::10"),
                                match_port: Some(443),
                                to_addr: ip("2001:db8:2::5"),
                                to_port: Some(8443),
                            },
                        ],
                        timeout: Duration::from_secs(30),
                    }),
                )],
                ..Default::default()
            })
            .expect("apply");
        let inst = applied.instances[0];
        let through = |p: &Pkt| {
            let (rc, out) = run(&e, p);
            assert_eq!(rc, v.pass, "{hook:?} {p:?}");
            verify_checksums(&out).unwrap_or_else(|err| panic!("{hook:?} {p:?}: {err}"));
            fields(&out)
        };
        let client = ip("198.51.100.7");
        // DNAT mappings, by protocol and port, IPv4 and IPv6
        assert_eq!(
            through(&Pkt::tcp("198.51.100.7", 5555, "192.0.2.10", 80)),
            (client, 5555, ip("10.0.0.20"), 8080),
            "{hook:?}"
        );
        assert_eq!(
            through(&Pkt::udp("198.51.100.7", 5555, "192.0.2.10", 53)),
            (client, 5555, ip("10.0.0.21"), 53),
            "{hook:?}"
        );
        assert_eq!(
            through(&Pkt::tcp("2001:db8:c::7", 5555, "2001:db8::10", 443)),
            (ip("2001:db8:c::7"), 5555, ip("2001:db8:2::5"), 8443),
            "{hook:?}"
        );
        assert_eq!(
            through(&Pkt::udp("2001:db8:c::7", 5555, "2001:db8::10", 443)),
            (ip("2001:db8:c::7"), 5555, ip("2001:db8:2::5"), 8443),
            "{hook:?} protocol-less mapping covers UDP"
        );
        // the reply of a DNATed flow is translated back
        assert_eq!(
            through(&Pkt::tcp("10.0.0.20", 8080, "198.51.100.7", 5555)),
            (ip("192.0.2.10"), 80, client, 5555),
            "{hook:?}"
        );
        // unmapped port / protocol: untouched
        for p in [
            Pkt::tcp("198.51.100.7", 5555, "192.0.2.10", 81),
            Pkt::udp("198.51.100.7", 5555, "192.0.2.10", 80),
            Pkt::tcp("10.0.6.9", 1000, "198.51.100.1", 80),
        ] {
            let f = p.build();
            assert_eq!(e.test_run(&f, 1).expect("run").data, f, "{hook:?} {p:?}");
        }
        // SNAT, from the second of its source prefixes
        let (src, sport, dst, dport) = through(&Pkt::tcp("10.0.5.9", 1000, "198.51.100.1", 80));
        assert_eq!(
            (src, dst, dport),
            (ip("203.0.113.1"), ip("198.51.100.1"), 80),
            "{hook:?}"
        );
        assert!((40000..=40099).contains(&sport), "{hook:?} port {sport}");
        assert_eq!(
            through(&Pkt::tcp("198.51.100.1", 80, "203.0.113.1", sport)),
            (ip("198.51.100.1"), 80, ip("10.0.5.9"), 1000),
            "{hook:?} SNAT reply"
        );
        // five new flows, two entries each
        assert_eq!(e.nat_entries(inst), 10, "{hook:?}");
        // a new chain removes the mappings of the old instance along with it
        e.apply(&ChainConfig {
            functions: vec![deny_all()],
            ..Default::default()
        })
        .expect("apply");
        e.apply(&ChainConfig {
            functions: vec![deny_all()],
            ..Default::default()
        })
        .expect("apply");
        assert_eq!(e.nat_entries(inst), 0, "{hook:?}");
    }
}

#[test]
fn nat_rejects_two_snat_rules_and_duplicate_mappings() {
    if !privileged() {
        return;
    }
    let mut e = load(Hook::Xdp);
    let snat = NatRule::Snat {
        match_src: vec![],
        to_addr: ip("203.0.113.1"),
        ports: PortRange::new(1000, 2000).expect("range"),
    };
    let dnat = NatRule::Dnat {
        protocol: Some(TCP),
        match_dst: ip("192.0.2.1"),
        match_port: Some(80),
        to_addr: ip("10.0.0.1"),
        to_port: None,
    };
    for rules in [vec![snat.clone(), snat], vec![dnat.clone(), dnat], vec![]] {
        let cfg = ChainConfig {
            functions: vec![FunctionConfig::new(
                "nat",
                FunctionKind::Nat(NatConfig {
                    rules: rules.clone(),
                    timeout: Duration::from_secs(1),
                }),
            )],
            ..Default::default()
        };
        assert!(e.apply(&cfg).is_err(), "{rules:?} accepted");
    }
}

fn next_prime(mut n: u32) -> u32 {
    while !maglev::is_prime(n) {
        n += 1;
    }
    n
}

#[test]
fn weighted_maglev_with_a_spec_sized_table() {
    if !privileged() {
        return;
    }
    let backends = ["10.0.2.1", "10.0.2.2", "10.0.2.3"];
    let weights = [2u32, 1, 1];
    for hook in HOOKS {
        let mut cfg = LbConfig {
            vip: ip("10.0.0.100"),
            port: Some(80),
            protocol: Some(TCP),
            backends: backends
                .iter()
                .zip(weights)
                .map(|(b, weight)| LbBackendConfig {
                    addr: ip(b),
                    port: Some(8080),
                    weight,
                })
                .collect(),
            affinity_timeout: Duration::ZERO,
            table_size: 65_537,
        };
        let mut e = load(hook);
        let applied = e
            .apply(&ChainConfig {
                functions: vec![FunctionConfig::new(
                    "lb",
                    FunctionKind::LoadBalancer(cfg.clone()),
                )],
                ..Default::default()
            })
            .expect("apply");
        let inst = applied.instances[0];
        let flows = 2000u16;
        let mut chosen: HashMap<u16, IpAddr> = HashMap::new();
        let mut per_backend: BTreeMap<IpAddr, u32> = BTreeMap::new();
        for i in 0..flows {
            let client = format!("198.51.100.{}", 1 + i % 200);
            let (rc, out) = run(&e, &Pkt::tcp(&client, 10_000 + i, "10.0.0.100", 80));
            assert_eq!(rc, verdicts(hook).pass, "{hook:?}");
            let (_, _, dst, dport) = fields(&out);
            assert_eq!(dport, 8080);
            chosen.insert(i, dst);
            *per_backend.entry(dst).or_default() += 1;
        }
        let share =
            |b: &str| f64::from(per_backend.get(&ip(b)).copied().unwrap_or(0)) / f64::from(flows);
        for (b, w) in backends.iter().zip(weights) {
            let want = f64::from(w) / 4.0;
            assert!(
                (share(b) - want).abs() <= 0.1 * want + 0.02,
                "{hook:?}: backend {b} got {:.3}, weight share {want:.3} ({per_backend:?})",
                share(b)
            );
        }
        // a bigger table and new weights: established flows keep their backend
        cfg.table_size = next_prime(70_000);
        cfg.backends[0].weight = 1;
        e.update_load_balancer(inst, &cfg).expect("update");
        for i in (0..flows).step_by(10) {
            let client = format!("198.51.100.{}", 1 + i % 200);
            let (_, out) = run(&e, &Pkt::tcp(&client, 10_000 + i, "10.0.0.100", 80));
            assert_eq!(
                Some(&fields(&out).2),
                chosen.get(&i),
                "{hook:?} flow {i} moved"
            );
        }
        // tables that are not prime, or too big, are refused
        for size in [
            65_536,
            next_prime(cnf_dataplane::engine::MAX_MAGLEV_TABLE + 1),
        ] {
            let mut bad = cfg.clone();
            bad.table_size = size;
            assert!(
                e.update_load_balancer(inst, &bad).is_err(),
                "{hook:?} size {size} accepted"
            );
        }
    }
}

#[test]
fn monitor_counts_by_dscp_and_by_destination_port() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let mut e = load(hook);
        let apply = |e: &mut Engine, count_by| {
            e.apply(&ChainConfig {
                functions: vec![FunctionConfig::new(
                    "mon",
                    FunctionKind::Monitor(MonitorConfig {
                        sample_rate: 0,
                        count_by,
                    }),
                )],
                ..Default::default()
            })
            .expect("apply")
            .instances[0]
        };
        let inst = apply(&mut e, CountBy::Dscp);
        let mut ef = Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2);
        ef.tos = 46 << 2 | 1; // EF, with an ECN bit that must not count
        let mut af11 = Pkt::tcp("2001:db8::1", 1, "2001:db8::2", 80);
        af11.tos = 10 << 2;
        for p in [&ef, &ef, &ef, &af11, &af11] {
            assert_eq!(run(&e, p).0, verdicts(hook).pass, "{hook:?}");
        }
        e.test_run(&arp_frame(), 1).expect("run");
        let got: Vec<(u32, u64)> = e
            .monitor_keyed(inst)
            .expect("keyed")
            .into_iter()
            .map(|(k, c)| (k, c.packets))
            .collect();
        assert_eq!(
            got,
            vec![(10, 2), (46, 3), (abi::mon_by::NO_DSCP, 1)],
            "{hook:?}"
        );
        let bytes = e.monitor_keyed(inst).expect("keyed")[&46].bytes;
        assert_eq!(bytes, 3 * ef.build().len() as u64, "{hook:?}");

        let inst = apply(&mut e, CountBy::DestinationPort);
        for p in [
            Pkt::udp("10.0.0.1", 1, "10.0.0.2", 53),
            Pkt::udp("2001:db8::1", 1, "2001:db8::2", 53),
            Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 80),
            Pkt::new(
                "10.0.0.1",
                "10.0.0.2",
                L4::Echo {
                    id: 7,
                    reply: false,
                },
            ),
        ] {
            run(&e, &p);
        }
        let got: Vec<(u32, u64)> = e
            .monitor_keyed(inst)
            .expect("keyed")
            .into_iter()
            .map(|(k, c)| (k, c.packets))
            .collect();
        assert_eq!(
            got,
            vec![(53, 2), (80, 1), (abi::mon_by::NO_PORT, 1)],
            "{hook:?}"
        );
    }
}

#[test]
fn edge_chain_from_its_manifest() {
    if !privileged() {
        return;
    }
    let path = format!("{}/../examples/edge-chain.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("edge chain");
    let chain = crds::manifest::parse_single_chain(&text).expect("valid");
    let cfg = cnf_dataplane::spec::chain_config(&chain.spec, &|_| None).expect("maps");
    for hook in HOOKS {
        let v = verdicts(hook);
        let mut e = load(hook);
        let applied = e.apply(&cfg).expect("apply");
        let fw = applied.instances[0];
        // client → VIP: allowed by rule 1, SNATed, load-balanced to a backend on 8080
        let (rc, out) = run(&e, &Pkt::tcp("10.0.1.5", 1234, "10.0.0.100", 80));
        assert_eq!(rc, v.pass, "{hook:?}");
        verify_checksums(&out).unwrap_or_else(|err| panic!("{hook:?}: {err}"));
        let (src, sport, dst, dport) = fields(&out);
        assert_eq!(src, ip("10.0.0.1"), "{hook:?}");
        assert!((20000..=59999).contains(&sport), "{hook:?}");
        assert!(
            ["10.0.2.1", "10.0.2.2", "10.0.2.3"].map(ip).contains(&dst),
            "{hook:?} {dst}"
        );
        assert_eq!(dport, 8080, "{hook:?}");
        // IPv6 client in rule 1's second prefix, second port range
        let (rc, _) = run(
            &e,
            &Pkt::tcp("2001:db8:1::5", 1234, "2001:db8:100::1", 8080),
        );
        assert_eq!(rc, v.pass, "{hook:?}");
        // UDP 9999 to the DNAT address: rule 2, then DNAT
        let (rc, out) = run(&e, &Pkt::udp("10.0.3.3", 4000, "10.0.0.200", 9999));
        assert_eq!(rc, v.pass, "{hook:?}");
        assert_eq!(
            fields(&out),
            (ip("10.0.3.3"), 4000, ip("10.0.2.10"), 9999),
            "{hook:?}"
        );
        // ICMP: rule 3
        let echo = Pkt::new(
            "10.0.3.3",
            "10.0.0.9",
            L4::Echo {
                id: 1,
                reply: false,
            },
        );
        assert_eq!(run(&e, &echo).0, v.pass, "{hook:?}");
        // the blocked host (rule 0), then a port no rule allows (default deny)
        assert_eq!(
            run(&e, &Pkt::tcp("10.0.1.66", 1, "10.0.0.100", 80)).0,
            v.drop,
            "{hook:?}"
        );
        assert_eq!(
            run(&e, &Pkt::tcp("10.0.1.5", 1, "10.0.0.100", 22)).0,
            v.drop,
            "{hook:?}"
        );
        // outside the classifier: untouched
        let other = Pkt::tcp("10.0.1.66", 1, "192.0.2.1", 22).build();
        let out = e.test_run(&other, 1).expect("run");
        assert_eq!((out.retval, out.data), (v.pass, other), "{hook:?}");

        let hits = e.firewall_hits_by_priority(fw).expect("hits");
        assert_eq!(
            hits,
            BTreeMap::from([(0, 1), (1, 2), (2, 1), (3, 1)]),
            "{hook:?}"
        );
        let stats = e.function_stats(fw).expect("stats");
        assert_eq!(stats.dropped[reason::FW_RULE], 1, "{hook:?}");
        assert_eq!(stats.dropped[reason::FW_DEFAULT], 1, "{hook:?}");
    }
}
