//! Forwarder packet tests (XDP and TC): MAC rewrite, TTL/hop-limit decrement with checksum, verdicts.

mod common;

use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{
    ChainConfig, Engine, ForwardMode, ForwarderConfig, FunctionConfig, FunctionKind, Hook,
};
use common::*;

const SMAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
const DMAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02];

fn setup(hook: Hook, cfg: ForwarderConfig) -> (Engine, u32) {
    let mut e = load(hook);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new("fwd", FunctionKind::Forwarder(cfg))],
            ..Default::default()
        })
        .expect("apply");
    (e, applied.instances[0])
}

#[test]
fn rewrites_macs_decrements_ttl_and_keeps_checksums_valid() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, inst) = setup(
            hook,
            ForwarderConfig {
                mode: ForwardMode::Tx,
                src_mac: Some(SMAC),
                dst_mac: Some(DMAC),
                decrement_ttl: true,
            },
        );
        let mut pkts = vec![
            Pkt::tcp("10.0.0.1", 1234, "10.0.0.2", 80),
            Pkt::udp("10.0.0.1", 1234, "10.0.0.2", 53),
            Pkt::udp("2001:db8::1", 1234, "2001:db8::2", 53),
            Pkt::new(
                "10.0.0.1",
                "10.0.0.2",
                L4::Echo {
                    id: 3,
                    reply: false,
                },
            ),
        ];
        let mut opt = Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 2);
        opt.ip_options = vec![1, 1, 1, 0];
        opt.vlans = vec![7, 8];
        opt.ttl = 200;
        pkts.push(opt);
        for p in &pkts {
            let input = p.build();
            let out = e.test_run(&input, 1).expect("run");
            assert_eq!(out.retval, v.tx, "{hook:?} {p:?}");
            assert_eq!(out.data.len(), input.len());
            assert_eq!(&out.data[0..6], &DMAC);
            assert_eq!(&out.data[6..12], &SMAC);
            let mut expected = p.clone();
            expected.dmac = DMAC;
            expected.smac = SMAC;
            expected.ttl = p.ttl - 1;
            assert_eq!(
                out.data,
                expected.build(),
                "{hook:?} {p:?}: only MACs and TTL change"
            );
            verify_checksums(&out.data).unwrap_or_else(|err| panic!("{hook:?} {p:?}: {err}"));
        }
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.passed, pkts.len() as u64);
    }
}

#[test]
fn ttl_expiry_drops_and_non_ip_is_forwarded() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, inst) = setup(
            hook,
            ForwarderConfig {
                mode: ForwardMode::Pass,
                decrement_ttl: true,
                ..Default::default()
            },
        );
        for src in ["10.0.0.1", "2001:db8::1"] {
            let dst = if src.contains(':') {
                "2001:db8::2"
            } else {
                "10.0.0.2"
            };
            let mut p = Pkt::udp(src, 1, dst, 2);
            p.ttl = 1;
            assert_eq!(
                e.test_run(&p.build(), 1).expect("run").retval,
                v.drop,
                "{hook:?} {src}"
            );
            p.ttl = 2;
            let out = e.test_run(&p.build(), 1).expect("run");
            assert_eq!(out.retval, v.pass);
            let mut expected = p.clone();
            expected.ttl = 1;
            assert_eq!(out.data, expected.build());
        }
        let arp = arp_frame();
        let out = e.test_run(&arp, 1).expect("run");
        assert_eq!((out.retval, out.data), (v.pass, arp));
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.dropped[reason::TTL_EXCEEDED], 2);
    }
}

#[test]
fn redirect_and_drop_modes() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        // ifindex 1 is the loopback device of the test's network namespace
        let (e, _) = setup(
            hook,
            ForwarderConfig {
                mode: ForwardMode::Redirect { ifindex: 1 },
                dst_mac: Some(DMAC),
                ..Default::default()
            },
        );
        let p = Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 2);
        let out = e.test_run(&p.build(), 1).expect("run");
        assert_eq!(out.retval, v.redirect, "{hook:?}");
        assert_eq!(&out.data[0..6], &DMAC);

        let (e, inst) = setup(
            hook,
            ForwarderConfig {
                mode: ForwardMode::Drop,
                ..Default::default()
            },
        );
        assert_eq!(e.test_run(&p.build(), 1).expect("run").retval, v.drop);
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.dropped[reason::FWD_DROP], 1);
    }
    let mut e = load(Hook::Xdp);
    let bad = ChainConfig {
        functions: vec![FunctionConfig::new(
            "fwd",
            FunctionKind::Forwarder(ForwarderConfig {
                mode: ForwardMode::Redirect { ifindex: 0 },
                ..Default::default()
            }),
        )],
        ..Default::default()
    };
    assert!(e.apply(&bad).is_err(), "ifindex 0 must be rejected");
}
