//! Per-packet cost of chains measured with BPF_PROG_TEST_RUN repeat (printed; verdicts asserted).

mod common;

use cnf_dataplane::engine::{
    Action, ChainConfig, FirewallConfig, FirewallRule, ForwardMode, ForwarderConfig,
    FunctionConfig, FunctionKind, Hook, MonitorConfig, PortRange, RateLimiterConfig,
};
use common::*;

fn full_firewall() -> FirewallConfig {
    // 64 rules, none of which matches the probe, so every candidate is scanned
    let rules = (0..64u16)
        .map(|i| FirewallRule {
            priority: u32::from(i),
            action: Action::Deny,
            protocol: Some(UDP),
            src: None,
            dst: None,
            src_ports: None,
            dst_ports: Some(PortRange::single(10_000 + i)),
        })
        .collect();
    FirewallConfig {
        rules,
        default_action: Action::Allow,
        ..Default::default()
    }
}

fn first_match_firewall() -> FirewallConfig {
    let mut fw = full_firewall();
    fw.rules[0].dst_ports = Some(PortRange::single(53));
    fw.rules[0].action = Action::Allow;
    fw.default_action = Action::Deny;
    fw
}

#[test]
fn ns_per_packet_of_typical_chains() {
    if !privileged() {
        return;
    }
    let probe = Pkt::udp("10.0.0.1", 1234, "10.0.0.2", 53).build();
    let chains: Vec<(&str, Vec<FunctionConfig>)> = vec![
        ("empty chain (bypass)", vec![]),
        (
            "forwarder",
            vec![FunctionConfig::new(
                "fwd",
                FunctionKind::Forwarder(ForwarderConfig::default()),
            )],
        ),
        (
            "firewall, 64 candidate rules",
            vec![FunctionConfig::new(
                "fw",
                FunctionKind::Firewall(full_firewall()),
            )],
        ),
        (
            "firewall, 64 rules, first candidate matches",
            vec![FunctionConfig::new(
                "fw",
                FunctionKind::Firewall(first_match_firewall()),
            )],
        ),
        (
            "monitor+ratelimit+firewall(64)+forwarder",
            vec![
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
                        packets_per_sec: Some(1_000_000_000),
                        burst_packets: 1_000_000,
                        ..Default::default()
                    }),
                ),
                FunctionConfig::new("fw", FunctionKind::Firewall(full_firewall())),
                FunctionConfig::new(
                    "fwd",
                    FunctionKind::Forwarder(ForwarderConfig {
                        mode: ForwardMode::Pass,
                        ..Default::default()
                    }),
                ),
            ],
        ),
    ];
    for hook in [Hook::Xdp, Hook::Tc] {
        let v = verdicts(hook);
        for (label, functions) in &chains {
            let mut e = load(hook);
            e.apply(&ChainConfig {
                functions: functions.clone(),
                ..Default::default()
            })
            .expect("apply");
            let out = e.test_run(&probe, 20_000).expect("run");
            assert_eq!(out.retval, v.pass, "{hook:?} {label}");
            let ns = out.duration.as_nanos();
            assert!(ns > 0, "kernel reported no duration");
            eprintln!("PERF {hook:?} {label}: {ns} ns/packet");
        }
    }
}
