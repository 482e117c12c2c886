//! Firewall packet tests (XDP and TC): rule order, CIDR/protocol/ports, v4/v6, VLAN, IP options,
//! fragments, malformed frames, rule hits, conntrack and in-place rule updates. The attacks on the
//! parser have their own tests: `tests/failclosed.rs` and `tests/adversarial.rs`.

mod common;

use std::time::Duration;

use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{
    Action, ChainConfig, Engine, FirewallConfig, FirewallRule, FunctionConfig, FunctionKind, Hook,
    PortRange,
};
use common::*;

fn rule(priority: u32, action: Action) -> FirewallRule {
    FirewallRule {
        priority,
        action,
        protocol: None,
        src: None,
        dst: None,
        src_ports: None,
        dst_ports: None,
    }
}

fn cidr(s: &str) -> Option<cnf_dataplane::engine::IpCidr> {
    Some(s.parse().expect("cidr"))
}

fn setup(hook: Hook, fw: FirewallConfig) -> (Engine, u32) {
    let mut e = load(hook);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new("fw", FunctionKind::Firewall(fw))],
            ..Default::default()
        })
        .expect("apply");
    (e, applied.instances[0])
}

fn verdict(e: &Engine, p: &Pkt) -> u32 {
    let frame = p.build();
    let out = e.test_run(&frame, 1).expect("run");
    assert_eq!(out.data, frame, "firewall must not modify packets");
    out.retval
}

/// The ruleset used by most tests (default deny).
fn ruleset() -> FirewallConfig {
    let mut r0 = rule(10, Action::Deny); // block one host inside the allowed net
    r0.src = cidr("10.1.2.3/32");
    let mut r1 = rule(20, Action::Allow); // web from 10.0.0.0/8 to 192.0.2.0/24
    r1.src = cidr("10.0.0.0/8");
    r1.dst = cidr("192.0.2.0/24");
    r1.protocol = Some(TCP);
    r1.dst_ports = Some(PortRange::new(80, 443).expect("range"));
    let mut r2 = rule(30, Action::Allow); // DNS anywhere
    r2.protocol = Some(UDP);
    r2.dst_ports = Some(PortRange::single(53));
    let mut r3 = rule(40, Action::Allow); // ICMP from 10/8
    r3.src = cidr("10.0.0.0/8");
    r3.protocol = Some(ICMP);
    let mut r4 = rule(50, Action::Allow); // IPv6 2001:db8:1::/48 -> anything
    r4.src = cidr("2001:db8:1::/48");
    FirewallConfig {
        rules: vec![r3, r1, r4, r0, r2], // order given must not matter
        default_action: Action::Deny,
        ..Default::default()
    }
}

#[test]
fn rules_match_by_priority_cidr_protocol_and_ports() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, inst) = setup(hook, ruleset());
        let cases = [
            (Pkt::tcp("10.9.9.9", 40000, "192.0.2.7", 80), v.pass),
            (Pkt::tcp("10.9.9.9", 40000, "192.0.2.7", 443), v.pass),
            (Pkt::tcp("10.9.9.9", 40000, "192.0.2.7", 444), v.drop),
            (Pkt::tcp("10.9.9.9", 40000, "192.0.3.7", 80), v.drop),
            (Pkt::udp("10.9.9.9", 40000, "192.0.2.7", 80), v.drop),
            (Pkt::tcp("10.1.2.3", 40000, "192.0.2.7", 80), v.drop), // rule 10 wins
            (Pkt::udp("203.0.113.5", 1234, "198.51.100.1", 53), v.pass),
            (Pkt::udp("2001:db8:9::1", 1234, "2001:db8::53", 53), v.pass),
            (
                Pkt::new(
                    "10.0.0.1",
                    "192.0.2.1",
                    L4::Echo {
                        id: 1,
                        reply: false,
                    },
                ),
                v.pass,
            ),
            (
                Pkt::new(
                    "11.0.0.1",
                    "192.0.2.1",
                    L4::Echo {
                        id: 1,
                        reply: false,
                    },
                ),
                v.drop,
            ),
            (
                Pkt::tcp("2001:db8:1:ffff::1", 1, "2001:db8:2::1", 22),
                v.pass,
            ),
            (Pkt::tcp("2001:db8:2::1", 1, "2001:db8:1::1", 22), v.drop),
            (
                Pkt::new("2001:db8:1::5", "2001:db8::1", L4::Other(47)),
                v.pass,
            ),
        ];
        for (p, want) in &cases {
            assert_eq!(verdict(&e, p), *want, "{hook:?}: {p:?}");
        }
        // hits in priority order: 10, 20, 30, 40, 50
        let hits = e.firewall_rule_hits(inst).expect("hits");
        assert_eq!(hits, vec![1, 2, 2, 1, 2], "{hook:?}");
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.packets_in, cases.len() as u64);
        assert_eq!(s.dropped[reason::FW_RULE], 1);
        assert_eq!(s.dropped[reason::FW_DEFAULT], 5);
        assert_eq!(s.passed, 7);
    }
}

#[test]
fn parses_vlan_options_and_ipv6_extension_headers() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, _) = setup(hook, ruleset());
        let mut p = Pkt::tcp("10.9.9.9", 40000, "192.0.2.7", 80);
        for vlans in [vec![100], vec![100, 200]] {
            p.vlans = vlans;
            assert_eq!(verdict(&e, &p), v.pass, "{hook:?} vlans {:?}", p.vlans);
        }
        let mut blocked = p.clone();
        if let L4::Tcp { dport, .. } = &mut blocked.l4 {
            *dport = 8080;
        }
        assert_eq!(
            verdict(&e, &blocked),
            v.drop,
            "{hook:?} double tagged, wrong port"
        );
        // IPv4 options (NOP NOP NOP EOL + record route 8 bytes) shift L4
        let mut opt = Pkt::tcp("10.9.9.9", 40000, "192.0.2.7", 80);
        opt.ip_options = vec![1, 1, 1, 0];
        assert_eq!(verdict(&e, &opt), v.pass, "{hook:?} options");
        opt.ip_options = vec![7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        if let L4::Tcp { dport, .. } = &mut opt.l4 {
            *dport = 22;
        }
        assert_eq!(verdict(&e, &opt), v.drop, "{hook:?} options, port 22");
        // IPv6: hop-by-hop + destination options before UDP/53
        let mut ext = Pkt::udp("2001:db8:9::1", 1234, "2001:db8::53", 53);
        ext.v6_ext = vec![0, 60];
        assert_eq!(verdict(&e, &ext), v.pass, "{hook:?} v6 ext");
        ext.l4 = L4::Udp {
            sport: 1234,
            dport: 54,
        };
        assert_eq!(verdict(&e, &ext), v.drop, "{hook:?} v6 ext port 54");
        ext.v6_ext = vec![0, 43, 60, 60, 43, 60, 43, 60];
        assert_eq!(verdict(&e, &ext), v.drop, "{hook:?} 8 ext headers, port 54");
        ext.l4 = L4::Udp {
            sport: 1234,
            dport: 53,
        };
        assert_eq!(verdict(&e, &ext), v.pass, "{hook:?} 8 ext headers, port 53");
        ext.v6_ext.push(60);
        assert_eq!(
            verdict(&e, &ext),
            v.drop,
            "{hook:?} 9 ext headers: over the bound"
        );
    }
}

/// Non-first fragments take the ports (and so the verdict) of their datagram's first fragment, and are
/// dropped when it was not seen (docs/security.md; the attacks: `tests/failclosed.rs`).
#[test]
fn later_fragments_take_the_ports_of_their_first() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, inst) = setup(hook, ruleset());
        for src in ["10.9.9.9", "2001:db8:9::1"] {
            let dst = if src.contains(':') {
                "2001:db8::2"
            } else {
                "192.0.2.7"
            };
            let mut p = Pkt::udp(src, 1000, dst, 53);
            p.frag = Frag::Later(100);
            assert_eq!(
                verdict(&e, &p),
                v.drop,
                "{hook:?} later fragment {src} before its first"
            );
            p.frag = Frag::First;
            assert_eq!(verdict(&e, &p), v.pass, "{hook:?} first fragment {src}");
            p.frag = Frag::Later(100);
            assert_eq!(
                verdict(&e, &p),
                v.pass,
                "{hook:?} later fragment {src}: the ports of its first"
            );
        }
        // a port-less allow rule does not cover a fragment of an unknown datagram
        let mut p = Pkt::udp("2001:db8:1::9", 1000, "2001:db8::3", 9);
        p.frag = Frag::Later(3);
        assert_eq!(verdict(&e, &p), v.drop, "{hook:?} unknown datagram");
        let s = e.function_stats(inst).expect("stats");
        // parked until their first fragment comes (never on loopback, where PROG_TEST_RUN runs;
        // docs/security.md section 4)
        assert_eq!(s.dropped[reason::FRAG_PARKED], 3, "{hook:?}");
    }
}

#[test]
fn malformed_frames_are_dropped_and_non_ip_passes() {
    if !privileged() {
        return;
    }
    let allow_all = FirewallConfig {
        default_action: Action::Allow,
        ..Default::default()
    };
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, inst) = setup(hook, allow_all.clone());
        let good = Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 2).build();
        assert_eq!(e.test_run(&good, 1).expect("run").retval, v.pass);
        let mut bad: Vec<Vec<u8>> = Vec::new();
        bad.push(good[..14 + 10].to_vec()); // truncated IPv4 header
        bad.push(good[..14 + 20 + 10].to_vec()); // truncated TCP header (tot_len too)
        let mut ihl = good.clone();
        ihl[14] = 0x44; // IHL 4
        bad.push(ihl);
        let mut ver = good.clone();
        ver[14] = 0x55; // version 5
        bad.push(ver);
        let mut tot = good.clone();
        tot[16] = 0x0f; // tot_len larger than the frame
        bad.push(tot);
        let mut doff = good.clone();
        doff[14 + 20 + 12] = 0x20; // TCP data offset 2
        bad.push(doff);
        let v6 = Pkt::udp("2001:db8::1", 1, "2001:db8::2", 2).build();
        bad.push(v6[..14 + 30].to_vec()); // truncated IPv6 header
        bad.push(v6[..14 + 40 + 4].to_vec()); // truncated UDP
        let mut vlan = Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 2);
        vlan.vlans = vec![5];
        bad.push(vlan.build()[..16].to_vec()); // truncated VLAN tag
        // The kernel's skb test runner refuses to build an skb whose IPv4/IPv6
        // header is shorter than the fixed header (frames 0 and 6), so TC can
        // only be fed the others; XDP sees all of them.
        let refused_by_skb_runner = [0usize, 6];
        let mut ran = 0u64;
        for (i, frame) in bad.iter().enumerate() {
            let res = e.test_run(frame, 1);
            if hook == Hook::Tc && refused_by_skb_runner.contains(&i) {
                assert!(res.is_err(), "skb runner accepted frame {i}; test it");
                continue;
            }
            let out = res.unwrap_or_else(|err| panic!("{hook:?} bad frame {i}: {err}"));
            ran += 1;
            assert_eq!(out.retval, v.drop, "{hook:?} bad frame {i}");
        }
        assert_eq!(e.test_run(&arp_frame(), 1).expect("run").retval, v.pass);
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.dropped[reason::MALFORMED], ran, "{hook:?}");
        assert_eq!(s.passed, 2);
    }
}

#[test]
fn conntrack_lets_replies_of_allowed_flows_pass() {
    if !privileged() {
        return;
    }
    let mut out = rule(1, Action::Allow);
    out.src = cidr("10.0.0.0/24");
    out.protocol = Some(TCP);
    out.dst_ports = Some(PortRange::single(80));
    let mut ping = rule(2, Action::Allow);
    ping.src = cidr("10.0.0.0/24");
    ping.protocol = Some(ICMP);
    let fw = FirewallConfig {
        rules: vec![out, ping],
        default_action: Action::Deny,
        conntrack: true,
        conntrack_timeout: Duration::from_secs(60),
    };
    for hook in HOOKS {
        let v = verdicts(hook);
        let (mut e, inst) = setup(hook, fw.clone());
        let request = Pkt::tcp("10.0.0.5", 40000, "198.51.100.1", 80);
        let reply = Pkt::tcp("198.51.100.1", 80, "10.0.0.5", 40000);
        let other_reply = Pkt::tcp("198.51.100.1", 80, "10.0.0.5", 40001);
        assert_eq!(verdict(&e, &reply), v.drop, "{hook:?} reply before request");
        assert_eq!(verdict(&e, &request), v.pass);
        assert_eq!(verdict(&e, &reply), v.pass, "{hook:?} reply after request");
        assert_eq!(verdict(&e, &other_reply), v.drop, "{hook:?} unrelated flow");
        let echo = Pkt::new(
            "10.0.0.5",
            "198.51.100.1",
            L4::Echo {
                id: 9,
                reply: false,
            },
        );
        let echo_reply = Pkt::new("198.51.100.1", "10.0.0.5", L4::Echo { id: 9, reply: true });
        assert_eq!(verdict(&e, &echo_reply), v.drop);
        assert_eq!(verdict(&e, &echo), v.pass);
        assert_eq!(verdict(&e, &echo_reply), v.pass, "{hook:?} echo reply");
        assert_eq!(e.conntrack_entries(inst), 2);
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.aux, 2, "conntrack hits");

        // the same function (name and kind) with a changed configuration gets a new instance
        // in the new generation, and keeps its connections
        let mut changed = fw.clone();
        changed.conntrack_timeout += Duration::from_secs(1);
        let apply = |e: &mut Engine, name: &str| {
            e.apply(&ChainConfig {
                functions: vec![FunctionConfig::new(
                    name,
                    FunctionKind::Firewall(changed.clone()),
                )],
                ..Default::default()
            })
            .expect("apply")
        };
        let updated = apply(&mut e, "fw");
        assert_ne!(updated.instances[0], inst);
        assert_eq!(
            verdict(&e, &reply),
            v.pass,
            "{hook:?} reply of a connection from before the update"
        );
        assert_eq!(e.conntrack_entries(updated.instances[0]), 2);
        // a function under another name starts without connections; the old ones are
        // purged once no generation holds them any more
        let renamed = apply(&mut e, "fw-new");
        assert_eq!(verdict(&e, &reply), v.drop, "{hook:?} renamed function");
        assert_eq!(e.conntrack_entries(renamed.instances[0]), 0);
        apply(&mut e, "fw-new");
        assert_eq!(
            e.conntrack_entries(inst),
            0,
            "{hook:?} old connections purged"
        );
    }
}

#[test]
fn conntrack_entries_expire() {
    if !privileged() {
        return;
    }
    let mut out = rule(1, Action::Allow);
    out.src = cidr("10.0.0.0/24");
    let fw = FirewallConfig {
        rules: vec![out],
        default_action: Action::Deny,
        conntrack: true,
        conntrack_timeout: Duration::from_millis(300),
    };
    let (e, _) = setup(Hook::Xdp, fw);
    let request = Pkt::udp("10.0.0.5", 5000, "198.51.100.1", 53);
    let reply = Pkt::udp("198.51.100.1", 53, "10.0.0.5", 5000);
    assert_eq!(verdict(&e, &request), XDP_PASS);
    assert_eq!(verdict(&e, &reply), XDP_PASS);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(verdict(&e, &reply), XDP_DROP, "expired flow");
}

#[test]
fn rules_update_in_place() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (mut e, inst) = setup(hook, ruleset());
        let web = Pkt::tcp("10.9.9.9", 40000, "192.0.2.7", 80);
        let dns = Pkt::udp("203.0.113.5", 1234, "198.51.100.1", 53);
        assert_eq!(verdict(&e, &web), v.pass);
        let mut only_dns = FirewallConfig {
            rules: vec![rule(5, Action::Allow)],
            default_action: Action::Deny,
            ..Default::default()
        };
        only_dns.rules[0].protocol = Some(UDP);
        only_dns.rules[0].dst = cidr("198.51.100.0/24");
        e.update_firewall(inst, &only_dns).expect("update");
        assert_eq!(verdict(&e, &web), v.drop, "{hook:?} old rule removed");
        assert_eq!(verdict(&e, &dns), v.pass);
        assert_eq!(
            verdict(&e, &Pkt::udp("203.0.113.5", 1, "198.51.101.1", 53)),
            v.drop
        );
        assert!(
            e.update_firewall(inst + 1, &only_dns).is_err(),
            "unknown instance"
        );
    }
}
