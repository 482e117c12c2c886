//! Differential test: the eBPF firewall against a small Rust reference model on 100,000 random
//! packets over random rule sets of up to 64 rules, and on large random rule sets of up to 10,000
//! rules (seeded xorshift, reproducible).

mod common;

use std::collections::HashMap;
use std::net::IpAddr;

use cnf_dataplane::engine::{
    Action, ChainConfig, FirewallConfig, FirewallRule, FunctionConfig, FunctionKind, Hook, IpCidr,
    PortRange,
};
use common::*;

const PORTS: [u16; 10] = [0, 1, 22, 53, 80, 443, 1024, 8080, 65534, 65535];

struct Anchors {
    v4: Vec<[u8; 4]>,
    v6: Vec<[u8; 16]>,
}

fn anchors(rng: &mut Rng) -> Anchors {
    let v4 = (0..6)
        .map(|_| {
            let mut a = [10, 0, 0, 0];
            a[1] = rng.below(4) as u8;
            a[2] = rng.below(256) as u8;
            a[3] = rng.below(256) as u8;
            a
        })
        .collect();
    let v6 = (0..6)
        .map(|_| {
            let mut a = [0u8; 16];
            a[0..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[5] = rng.below(4) as u8;
            for b in &mut a[6..] {
                *b = rng.below(256) as u8;
            }
            a
        })
        .collect();
    Anchors { v4, v6 }
}

/// An address near an anchor: a random suffix of its bits is randomised.
fn near(rng: &mut Rng, a: &Anchors, family: u8) -> IpAddr {
    let (mut bytes, bits) = if family == 4 {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&rng.pick(&a.v4));
        (b, 32)
    } else {
        (rng.pick(&a.v6), 128)
    };
    let keep = rng.below(bits + 1) as usize;
    for bit in keep..bits as usize {
        if rng.chance(50) {
            bytes[bit / 8] ^= 0x80 >> (bit % 8);
        }
    }
    if family == 4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(bytes)
    }
}

fn random_cidr(rng: &mut Rng, a: &Anchors, family: u8) -> IpCidr {
    let lens: &[u8] = if family == 4 {
        &[0, 8, 14, 16, 22, 24, 28, 31, 32]
    } else {
        &[0, 16, 32, 44, 48, 64, 100, 127, 128]
    };
    let addr = near(rng, a, family);
    IpCidr::new(addr, rng.pick(lens)).expect("valid prefix")
}

fn random_ports(rng: &mut Rng) -> Option<PortRange> {
    if rng.chance(50) {
        return None;
    }
    let x = rng.pick(&PORTS);
    let y = rng.pick(&PORTS);
    Some(PortRange::new(x.min(y), x.max(y)).expect("ordered"))
}

fn random_rules(rng: &mut Rng, a: &Anchors) -> FirewallConfig {
    let n = 1 + rng.below(64) as usize;
    random_rules_n(rng, a, n, false)
}

/// `n` random rules; `specific` rules always name a source prefix of at least /14 (or /44), so that in large
/// sets no early catch-all decides every packet.
fn random_rules_n(rng: &mut Rng, a: &Anchors, n: usize, specific: bool) -> FirewallConfig {
    let rules = (0..n)
        .map(|_| {
            let family = if specific {
                rng.pick(&[4u8, 6])
            } else {
                rng.pick(&[0u8, 4, 6])
            };
            let protocol = rng.pick(&[
                None,
                Some(TCP),
                Some(UDP),
                Some(ICMP),
                Some(ICMPV6),
                Some(47),
            ]);
            let ports_ok = matches!(protocol, None | Some(TCP) | Some(UDP));
            FirewallRule {
                priority: rng.below(100 + n as u64 / 2) as u32,
                action: if rng.chance(50) {
                    Action::Allow
                } else {
                    Action::Deny
                },
                protocol,
                src: if specific {
                    Some(loop {
                        let c = random_cidr(rng, a, family);
                        if c.prefix_len() >= 14 {
                            break c;
                        }
                    })
                } else {
                    (family != 0 && rng.chance(70)).then(|| random_cidr(rng, a, family))
                },
                dst: (family != 0 && rng.chance(70)).then(|| random_cidr(rng, a, family)),
                src_ports: if ports_ok { random_ports(rng) } else { None },
                dst_ports: if ports_ok { random_ports(rng) } else { None },
            }
        })
        .collect();
    FirewallConfig {
        rules,
        default_action: if rng.chance(50) {
            Action::Allow
        } else {
            Action::Deny
        },
        ..Default::default()
    }
}

fn random_packet(rng: &mut Rng, a: &Anchors) -> Pkt {
    let family = rng.pick(&[4u8, 6]);
    let src = near(rng, a, family).to_string();
    let dst = near(rng, a, family).to_string();
    let port = |rng: &mut Rng| {
        let p = rng.pick(&PORTS);
        match rng.below(3) {
            0 => p.saturating_sub(1),
            1 => p,
            _ => p.saturating_add(1),
        }
    };
    let l4 = match rng.below(5) {
        0 | 1 => L4::Tcp {
            sport: port(rng),
            dport: port(rng),
            flags: 0x10,
        },
        2 => L4::Udp {
            sport: port(rng),
            dport: port(rng),
        },
        3 => L4::Echo {
            id: rng.below(65536) as u16,
            reply: rng.chance(50),
        },
        _ => L4::Other(47),
    };
    let mut p = Pkt::new(&src, &dst, l4);
    p.frag = match rng.below(10) {
        0 => Frag::First,
        1 => Frag::Later(1 + rng.below(100) as u16),
        _ => Frag::None,
    };
    if rng.chance(10) {
        p.vlans = vec![42];
    }
    p
}

/// First fragments seen, recorded as the data plane records them (docs/security.md, "Fragments"):
/// key (source, destination, IPv4 protocol; `Pkt` gives every datagram the same id), value the
/// datagram's protocol, ports (if TCP/UDP) and L4 header length.
#[derive(Default)]
struct Frags(HashMap<FragKey, FragRecord>);

/// (source, destination, IPv4 protocol or 0).
type FragKey = (IpAddr, IpAddr, u8);
/// (protocol, TCP/UDP ports, L4 header length).
type FragRecord = (u8, Option<(u16, u16)>, u16);

impl Frags {
    /// The flow the firewall judges for `p` (protocol and ports), or `None` when the contract drops
    /// the fragment whatever the rules (first fragment unknown, or overlapping its L4 header).
    fn flow(&mut self, p: &Pkt) -> Option<(u8, Option<(u16, u16)>)> {
        let proto = p.proto();
        let (ports, hlen) = match p.l4 {
            L4::Tcp { sport, dport, .. } => (Some((sport, dport)), 20),
            L4::Udp { sport, dport } => (Some((sport, dport)), 8),
            L4::Echo { .. } => (None, 8),
            L4::Other(_) => (None, 0),
        };
        let key = (p.src, p.dst, if p.src.is_ipv4() { proto } else { 0 });
        match p.frag {
            Frag::None => Some((proto, ports)),
            Frag::First => {
                self.0.insert(key, (proto, ports, hlen));
                Some((proto, ports))
            }
            Frag::Later(off8) => {
                let (proto, ports, hlen) = *self.0.get(&key)?;
                (off8 * 8 >= hlen).then_some((proto, ports))
            }
        }
    }
}

/// The reference model: first rule in stable priority order that matches.
fn reference(fw: &FirewallConfig, frags: &mut Frags, p: &Pkt) -> Action {
    let mut rules: Vec<&FirewallRule> = fw.rules.iter().collect();
    rules.sort_by_key(|r| r.priority);
    reference_sorted(&rules, fw.default_action, frags, p)
}

/// The reference model over rules already in evaluation order.
fn reference_sorted(
    rules: &[&FirewallRule],
    default_action: Action,
    frags: &mut Frags,
    p: &Pkt,
) -> Action {
    let Some((proto, ports)) = frags.flow(p) else {
        return Action::Deny;
    };
    for r in rules.iter().copied() {
        let addr_ok = |c: &Option<IpCidr>, addr: IpAddr| c.is_none_or(|c| c.contains(addr));
        if !addr_ok(&r.src, p.src) || !addr_ok(&r.dst, p.dst) {
            continue;
        }
        if r.protocol.is_some_and(|want| want != proto) {
            continue;
        }
        if r.src_ports.is_some() || r.dst_ports.is_some() {
            let Some((sport, dport)) = ports else {
                continue;
            };
            if !r.src_ports.is_none_or(|pr| pr.contains(sport))
                || !r.dst_ports.is_none_or(|pr| pr.contains(dport))
            {
                continue;
            }
        }
        return r.action;
    }
    default_action
}

fn differential(hook: Hook, rule_sets: usize, packets_per_set: usize, seed: u64) {
    let v = verdicts(hook);
    let mut rng = Rng(seed);
    let mut e = load(hook);
    let a = anchors(&mut rng);
    let first = random_rules(&mut rng, &a);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new(
                "fw",
                FunctionKind::Firewall(first.clone()),
            )],
            ..Default::default()
        })
        .expect("apply");
    let inst = applied.instances[0];
    let mut fw = first;
    let mut frags = Frags::default();
    let (mut allowed, mut denied) = (0u64, 0u64);
    for set in 0..rule_sets {
        if set > 0 {
            fw = random_rules(&mut rng, &a);
            e.update_firewall(inst, &fw).expect("update");
        }
        for _ in 0..packets_per_set {
            let p = random_packet(&mut rng, &a);
            let want = reference(&fw, &mut frags, &p);
            let got = e.test_run(&p.build(), 1).expect("run").retval;
            let want_code = match want {
                Action::Allow => v.pass,
                Action::Deny => v.drop,
            };
            if want == Action::Allow {
                allowed += 1;
            } else {
                denied += 1;
            }
            assert_eq!(
                got, want_code,
                "{hook:?} seed {seed:#x} rule set {set}: packet {p:?}\nrules {fw:#?}"
            );
        }
    }
    // the generator must exercise both outcomes substantially
    let total = allowed + denied;
    assert!(
        allowed * 5 > total && denied * 5 > total,
        "allowed {allowed}, denied {denied}"
    );
    eprintln!("{hook:?}: {total} packets agree with the reference model ({allowed} allowed)");
}

#[test]
fn xdp_firewall_matches_reference_model_on_100k_packets() {
    if !privileged() {
        return;
    }
    differential(Hook::Xdp, 200, 500, 0x5eed_f00d_cafe_0001);
}

#[test]
fn tc_firewall_matches_reference_model() {
    if !privileged() {
        return;
    }
    differential(Hook::Tc, 40, 500, 0x5eed_f00d_cafe_0002);
}

/// Large random rule sets (fresh engine per set, XDP and TC): the bit-vector classifier must agree with the
/// reference model at every size up to the maximum.
#[test]
fn large_random_rule_sets_match_reference_model() {
    if !privileged() {
        return;
    }
    for (hook, seed) in [
        (Hook::Xdp, 0x5eed_f00d_cafe_0003u64),
        (Hook::Tc, 0x5eed_f00d_cafe_0004),
    ] {
        let v = verdicts(hook);
        let mut rng = Rng(seed);
        let a = anchors(&mut rng);
        for n in [65usize, 700, 3000, 10_000] {
            let fw = random_rules_n(&mut rng, &a, n, true);
            let mut sorted: Vec<&FirewallRule> = fw.rules.iter().collect();
            sorted.sort_by_key(|r| r.priority);
            let mut e = load(hook);
            let mut frags = Frags::default();
            e.apply(&ChainConfig {
                functions: vec![FunctionConfig::new(
                    "fw",
                    FunctionKind::Firewall(fw.clone()),
                )],
                ..Default::default()
            })
            .expect("apply");
            let mut allowed = 0;
            let packets = 1500;
            for _ in 0..packets {
                let p = random_packet(&mut rng, &a);
                let want = match reference_sorted(&sorted, fw.default_action, &mut frags, &p) {
                    Action::Allow => {
                        allowed += 1;
                        v.pass
                    }
                    Action::Deny => v.drop,
                };
                let got = e.test_run(&p.build(), 1).expect("run").retval;
                assert_eq!(got, want, "{hook:?} seed {seed:#x} {n} rules: packet {p:?}");
            }
            assert!(
                allowed > 0 && allowed < packets,
                "{hook:?} {n} rules: {allowed}/{packets} allowed"
            );
            eprintln!("{hook:?}: {n} random rules, {packets} packets agree ({allowed} allowed)");
        }
    }
}
