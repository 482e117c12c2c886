//! Differential tests of the stateless functions besides the firewall (which has its own): the eBPF
//! monitor (all three counting modes at once) and forwarder (MAC rewrite, TTL/hop-limit decrement) each
//! against a small Rust reference model on 100,000 random frames under XDP and 20,000 under TC: TCP, UDP,
//! ICMP echo and other protocols over IPv4 and IPv6, 0–2 VLAN tags, IPv4 options, IPv6 extension headers,
//! fragments, random DSCP and TTL, ARP, and frames cut inside their IP (XDP) or TCP/UDP headers (seeded,
//! reproducible).

mod common;

use std::collections::BTreeMap;

use cnf_dataplane::engine::abi::{mon, mon_by, reason};
use cnf_dataplane::engine::{
    ChainConfig, CountBy, ForwardMode, ForwarderConfig, FunctionConfig, FunctionKind, Hook,
    MonitorConfig,
};
use common::*;

/// What the model says one frame is.
struct Expect {
    class: u8,
    dport: u32,
    dscp: u32,
    /// The packet it was built from (`None`: ARP).
    pkt: Option<Pkt>,
    /// Cut inside a header.
    truncated: bool,
}

/// A random frame and what the reference model expects the monitor to count it as. `cut_l3`: frames
/// may also be cut inside the IP header (`BPF_PROG_TEST_RUN` refuses such skbs for TC, so only XDP).
fn random_frame(rng: &mut Rng, cut_l3: bool) -> (Vec<u8>, Expect) {
    if rng.chance(3) {
        return (
            arp_frame(),
            Expect {
                class: mon::NON_IP,
                dport: mon_by::NO_PORT,
                dscp: mon_by::NO_DSCP,
                pkt: None,
                truncated: false,
            },
        );
    }
    let v6 = rng.chance(40);
    let (src, dst) = if v6 {
        ("2001:db8::1", "2001:db8::2")
    } else {
        ("10.0.0.1", "10.0.0.2")
    };
    let sport = rng.below(65536) as u16;
    let dport = rng.below(65536) as u16;
    let l4 = match rng.below(4) {
        0 => L4::Tcp {
            sport,
            dport,
            flags: rng.below(256) as u8,
        },
        1 => L4::Udp { sport, dport },
        2 => L4::Echo {
            id: sport,
            reply: rng.chance(50),
        },
        _ => L4::Other(if rng.chance(50) { 47 } else { 132 }),
    };
    let mut p = Pkt::new(src, dst, l4.clone());
    for _ in 0..rng.below(3) {
        p.vlans.push(rng.below(4095) as u16 + 1);
    }
    p.tos = rng.below(256) as u8;
    p.ttl = [0, 1, 2, 64, 255][rng.below(5) as usize];
    if v6 {
        for _ in 0..rng.below(3) {
            p.v6_ext.push([0u8, 43, 60][rng.below(3) as usize]);
        }
        // a hop-by-hop header is only valid first
        if let Some(i) = p.v6_ext.iter().skip(1).position(|&h| h == 0) {
            p.v6_ext[i + 1] = 60;
        }
    } else if rng.chance(20) {
        p.ip_options = vec![1; 4 * (1 + rng.below(3) as usize)];
    }
    p.frag = match rng.below(10) {
        0 => Frag::First,
        1 => Frag::Later(1 + rng.below(100) as u16),
        _ => Frag::None,
    };
    let mut frame = p.build();
    let l3 = 14 + 4 * p.vlans.len();
    let dscp = u32::from(p.tos >> 2);
    let later = matches!(p.frag, Frag::Later(_));
    let has_ports = !later && matches!(l4, L4::Tcp { .. } | L4::Udp { .. });
    let mut expect = Expect {
        class: if later {
            mon::FRAGMENT
        } else {
            match l4 {
                L4::Tcp { .. } => mon::TCP,
                L4::Udp { .. } => mon::UDP,
                L4::Echo { .. } => mon::ICMP,
                L4::Other(_) if v6 => mon::OTHER_V6,
                L4::Other(_) => mon::OTHER_V4,
            }
        },
        dport: if has_ports {
            u32::from(dport)
        } else {
            mon_by::NO_PORT
        },
        dscp,
        pkt: Some(p.clone()),
        truncated: false,
    };
    // one frame in ten is cut inside its IP header, or inside its TCP/UDP header: malformed
    if rng.chance(10) && (cut_l3 || has_ports) {
        let ip_len = if v6 { 40 } else { 20 + p.ip_options.len() };
        let cut = if has_ports && (!cut_l3 || rng.chance(50)) {
            let l4_off =
                frame.len() - p.payload.len() - if matches!(l4, L4::Tcp { .. }) { 20 } else { 8 };
            l4_off + 1 + rng.below(7) as usize
        } else {
            l3 + 1 + rng.below(ip_len as u64 - 1) as usize
        };
        frame.truncate(cut);
        expect = Expect {
            class: mon::MALFORMED,
            dport: mon_by::NO_PORT,
            dscp: mon_by::NO_DSCP,
            pkt: Some(p.clone()),
            truncated: true,
        };
    }
    (frame, expect)
}

fn monitor_differential(hook: Hook, packets: usize, seed: u64) {
    let v = verdicts(hook);
    let mut e = load(hook);
    let monitor = |name: &str, count_by| {
        FunctionConfig::new(
            name,
            FunctionKind::Monitor(MonitorConfig {
                sample_rate: 0,
                count_by,
            }),
        )
    };
    let applied = e
        .apply(&ChainConfig {
            functions: vec![
                monitor("classes", CountBy::Protocol),
                monitor("ports", CountBy::DestinationPort),
                monitor("dscp", CountBy::Dscp),
            ],
            ..Default::default()
        })
        .expect("apply");
    let (classes, ports, dscps) = (
        applied.instances[0],
        applied.instances[1],
        applied.instances[2],
    );
    let mut rng = Rng(seed);
    let mut want_classes = [0u64; mon::MALFORMED as usize + 1];
    let mut want_ports: BTreeMap<u32, u64> = BTreeMap::new();
    let mut want_dscp: BTreeMap<u32, u64> = BTreeMap::new();
    for i in 0..packets {
        let (frame, expect) = random_frame(&mut rng, hook == Hook::Xdp);
        let out = e.test_run(&frame, 1).unwrap_or_else(|err| {
            panic!(
                "{hook:?} packet {i} ({} bytes) {frame:02x?}: {err}",
                frame.len()
            )
        });
        assert_eq!(
            out.retval, v.pass,
            "{hook:?} packet {i}: the monitor passes everything"
        );
        assert_eq!(out.data, frame, "{hook:?} packet {i}: and changes nothing");
        want_classes[expect.class as usize] += 1;
        *want_ports.entry(expect.dport).or_default() += 1;
        *want_dscp.entry(expect.dscp).or_default() += 1;
    }
    let got_classes: Vec<u64> = e
        .monitor_classes(classes)
        .expect("classes")
        .iter()
        .map(|c| c.packets)
        .collect();
    assert_eq!(got_classes, want_classes, "{hook:?}: per-class counts");
    let keyed = |inst| -> BTreeMap<u32, u64> {
        e.monitor_keyed(inst)
            .expect("keyed")
            .into_iter()
            .map(|(k, c)| (k, c.packets))
            .collect()
    };
    assert_eq!(
        keyed(ports),
        want_ports,
        "{hook:?}: per-destination-port counts"
    );
    assert_eq!(keyed(dscps), want_dscp, "{hook:?}: per-DSCP counts");
    // every class occurred, so the comparison covered each branch of the model
    assert!(want_classes.iter().all(|&n| n > 0), "{want_classes:?}");
}

#[test]
fn xdp_monitor_matches_reference_model_on_100k_packets() {
    if !privileged() {
        return;
    }
    monitor_differential(Hook::Xdp, 100_000, 0x5eed_0001);
}

#[test]
fn tc_monitor_matches_reference_model() {
    if !privileged() {
        return;
    }
    monitor_differential(Hook::Tc, 20_000, 0x5eed_0002);
}

const SMAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const DMAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x02];

/// The forwarder's verdict and output frame per the model: MACs rewritten; for IP, TTL / hop limit
/// decremented with the IPv4 checksum updated, and a packet at TTL <= 1 or with a truncated header
/// dropped with its reason.
fn forwarder_model(frame: &[u8], e: &Expect) -> Result<Vec<u8>, usize> {
    match &e.pkt {
        None => {
            let mut out = frame.to_vec();
            out[..6].copy_from_slice(&DMAC);
            out[6..12].copy_from_slice(&SMAC);
            Ok(out)
        }
        Some(_) if e.truncated => Err(reason::MALFORMED),
        Some(p) if p.ttl <= 1 => Err(reason::TTL_EXCEEDED),
        Some(p) => {
            let mut q = p.clone();
            q.ttl -= 1;
            q.dmac = DMAC;
            q.smac = SMAC;
            Ok(q.build())
        }
    }
}

fn forwarder_differential(hook: Hook, packets: usize, seed: u64) {
    let v = verdicts(hook);
    let mut e = load(hook);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new(
                "fwd",
                FunctionKind::Forwarder(ForwarderConfig {
                    mode: ForwardMode::Tx,
                    src_mac: Some(SMAC),
                    dst_mac: Some(DMAC),
                    decrement_ttl: true,
                }),
            )],
            ..Default::default()
        })
        .expect("apply");
    let mut rng = Rng(seed);
    let mut drops = [0u64; cnf_dataplane::engine::abi::NR_REASONS];
    for i in 0..packets {
        let (frame, expect) = random_frame(&mut rng, hook == Hook::Xdp);
        let out = e
            .test_run(&frame, 1)
            .unwrap_or_else(|err| panic!("{hook:?} packet {i}: {err}"));
        match forwarder_model(&frame, &expect) {
            Ok(want) => {
                assert_eq!(out.retval, v.tx, "{hook:?} packet {i} {:?}", expect.pkt);
                assert_eq!(out.data, want, "{hook:?} packet {i} {:?}", expect.pkt);
            }
            Err(why) => {
                assert_eq!(out.retval, v.drop, "{hook:?} packet {i} {:?}", expect.pkt);
                drops[why] += 1;
            }
        }
    }
    let stats = e.function_stats(applied.instances[0]).expect("stats");
    assert_eq!(&stats.dropped[..], &drops[..], "{hook:?}: drops by reason");
    assert!(
        drops[reason::TTL_EXCEEDED] > 0 && stats.passed > 0,
        "{stats:?}"
    );
}

#[test]
fn xdp_forwarder_matches_reference_model_on_100k_packets() {
    if !privileged() {
        return;
    }
    forwarder_differential(Hook::Xdp, 100_000, 0x5eed_0003);
}

#[test]
fn tc_forwarder_matches_reference_model() {
    if !privileged() {
        return;
    }
    forwarder_differential(Hook::Tc, 20_000, 0x5eed_0004);
}
