//! Firewall at scale: 64, 1,000 and 10,000 rules — verdicts and hit counters asserted, per-packet cost
//! measured with BPF_PROG_TEST_RUN and printed (`PERF ...` lines; not asserted as a timing).

mod common;

use std::time::Duration;

use cnf_dataplane::engine::{
    Action, ChainConfig, Engine, FirewallConfig, FirewallRule, FunctionConfig, FunctionKind, Hook,
    IpCidr, PortRange,
};
use common::*;

/// Rule `i` denies TCP to port 22 from host 10.i/32 (i < 65536); everything else is allowed.
fn host_rules(n: u32) -> FirewallConfig {
    let rules = (0..n)
        .map(|i| FirewallRule {
            priority: i,
            action: Action::Deny,
            protocol: Some(TCP),
            src: Some(IpCidr::new(ip(&host(i)), 32).expect("prefix")),
            dst: None,
            src_ports: None,
            dst_ports: Some(PortRange::single(22)),
        })
        .collect();
    FirewallConfig {
        rules,
        default_action: Action::Allow,
        ..Default::default()
    }
}

fn host(i: u32) -> String {
    format!("10.{}.{}.1", i >> 8, i & 255)
}

/// Adversarial for the aggregates: even rules name source A and port 1, odd rules source B and port 2, so
/// for a packet from A to port 2 every word is a candidate in every dimension but no rule matches.
fn interleaved_rules(n: u32) -> FirewallConfig {
    let rules = (0..n)
        .map(|i| FirewallRule {
            priority: i,
            action: Action::Deny,
            protocol: Some(UDP),
            src: Some(if i % 2 == 0 {
                "10.0.0.0/24".parse().expect("cidr")
            } else {
                "10.0.1.0/24".parse().expect("cidr")
            }),
            dst: None,
            src_ports: None,
            dst_ports: Some(PortRange::single(if i % 2 == 0 { 1 } else { 2 })),
        })
        .collect();
    FirewallConfig {
        rules,
        default_action: Action::Allow,
        ..Default::default()
    }
}

fn setup(hook: Hook, fw: &FirewallConfig) -> (Engine, u32) {
    let mut e = load(hook);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new(
                "fw",
                FunctionKind::Firewall(fw.clone()),
            )],
            ..Default::default()
        })
        .expect("apply");
    (e, applied.instances[0])
}

fn ns_per_packet(e: &Engine, p: &Pkt, want: u32, label: &str) -> u128 {
    let out = e.test_run(&p.build(), 20_000).expect("run");
    assert_eq!(out.retval, want, "{label}");
    assert!(out.duration > Duration::ZERO, "kernel reported no duration");
    out.duration.as_nanos()
}

#[test]
fn ten_thousand_rules_first_match_wins_and_cost_stays_flat() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        for n in [64u32, 1000, 10_000] {
            let (e, inst) = setup(hook, &host_rules(n));
            // verdicts: the last rule, a middle one, a miss by port and by source
            let last = Pkt::tcp(&host(n - 1), 999, "192.0.2.1", 22);
            let middle = Pkt::tcp(&host(n / 2), 999, "192.0.2.1", 22);
            assert_eq!(e.test_run(&last.build(), 1).expect("run").retval, v.drop);
            assert_eq!(e.test_run(&middle.build(), 1).expect("run").retval, v.drop);
            let other_port = Pkt::tcp(&host(n - 1), 999, "192.0.2.1", 23);
            let other_host = Pkt::tcp("10.255.255.9", 999, "192.0.2.1", 22);
            let v6 = Pkt::tcp("2001:db8::1", 999, "2001:db8::2", 22);
            for p in [&other_port, &other_host, &v6] {
                assert_eq!(
                    e.test_run(&p.build(), 1).expect("run").retval,
                    v.pass,
                    "{p:?}"
                );
            }
            let hits = e.firewall_rule_hits(inst).expect("hits");
            assert_eq!(hits.len(), n as usize);
            assert_eq!((hits[n as usize - 1], hits[n as usize / 2]), (1, 1));
            assert_eq!(hits.iter().sum::<u64>(), 2);

            let hit = ns_per_packet(&e, &last, v.drop, "last rule");
            let miss = ns_per_packet(&e, &other_host, v.pass, "no rule");
            eprintln!(
                "PERF {hook:?} firewall {n:>5} host rules: last rule matches {hit} ns/packet, no match {miss} ns/packet"
            );

            let (e, _) = setup(hook, &interleaved_rules(n));
            let worst = Pkt::udp("10.0.0.7", 999, "192.0.2.1", 2);
            let match_even = Pkt::udp("10.0.0.7", 999, "192.0.2.1", 1);
            assert_eq!(
                e.test_run(&match_even.build(), 1).expect("run").retval,
                v.drop
            );
            let ns = ns_per_packet(&e, &worst, v.pass, "interleaved");
            eprintln!(
                "PERF {hook:?} firewall {n:>5} interleaved rules, every word a false candidate: {ns} ns/packet"
            );
        }
    }
}

#[test]
fn more_rules_than_supported_are_refused() {
    if !privileged() {
        return;
    }
    let mut e = load(Hook::Xdp);
    let fw = host_rules(cnf_dataplane::engine::abi::FW_MAX_RULES + 1);
    let err = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new("fw", FunctionKind::Firewall(fw))],
            ..Default::default()
        })
        .expect_err("too many rules");
    assert!(err.to_string().contains("at most 10240"), "{err}");
}
