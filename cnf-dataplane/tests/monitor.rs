//! Monitor packet tests: per-class counters for every traffic class and sampled ring-buffer metadata.

mod common;

use cnf_dataplane::engine::abi::mon;
use cnf_dataplane::engine::{
    ChainConfig, Engine, FunctionConfig, FunctionKind, Hook, MonitorConfig,
};
use common::*;

fn setup(hook: Hook, sample_rate: u32) -> (Engine, u32) {
    let mut e = load(hook);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new(
                "mon",
                FunctionKind::Monitor(MonitorConfig {
                    sample_rate,
                    ..Default::default()
                }),
            )],
            ..Default::default()
        })
        .expect("apply");
    (e, applied.instances[0])
}

#[test]
fn counts_every_class_and_passes_untouched() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (mut e, inst) = setup(hook, 0);
        let mut later = Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2);
        later.frag = Frag::Later(10);
        let truncated_tcp = Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 2).build()[..14 + 20 + 8].to_vec();
        let frames: Vec<(Vec<u8>, u8)> = vec![
            (Pkt::tcp("10.0.0.1", 1, "10.0.0.2", 2).build(), mon::TCP),
            (
                Pkt::tcp("2001:db8::1", 1, "2001:db8::2", 2).build(),
                mon::TCP,
            ),
            (Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2).build(), mon::UDP),
            (
                Pkt::new(
                    "10.0.0.1",
                    "10.0.0.2",
                    L4::Echo {
                        id: 1,
                        reply: false,
                    },
                )
                .build(),
                mon::ICMP,
            ),
            (
                Pkt::new(
                    "2001:db8::1",
                    "2001:db8::2",
                    L4::Echo { id: 1, reply: true },
                )
                .build(),
                mon::ICMP,
            ),
            (
                Pkt::new("10.0.0.1", "10.0.0.2", L4::Other(47)).build(),
                mon::OTHER_V4,
            ),
            (
                Pkt::new("2001:db8::1", "2001:db8::2", L4::Other(132)).build(),
                mon::OTHER_V6,
            ),
            (later.build(), mon::FRAGMENT),
            (arp_frame(), mon::NON_IP),
            (truncated_tcp, mon::MALFORMED),
        ];
        let mut want = vec![(0u64, 0u64); 8];
        for (f, class) in &frames {
            let out = e.test_run(f, 1).expect("run");
            assert_eq!(
                (out.retval, &out.data),
                (v.pass, f),
                "{hook:?} class {class}"
            );
            want[usize::from(*class)].0 += 1;
            want[usize::from(*class)].1 += f.len() as u64;
        }
        let got: Vec<(u64, u64)> = e
            .monitor_classes(inst)
            .expect("classes")
            .iter()
            .map(|c| (c.packets, c.bytes))
            .collect();
        assert_eq!(got, want, "{hook:?}");
        assert!(e.drain_samples().is_empty(), "sampling is off");
    }
}

#[test]
fn samples_metadata_to_the_ring_buffer() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let (mut e, inst) = setup(hook, 1);
        let mut p = Pkt::tcp("10.1.2.3", 4321, "192.0.2.9", 443);
        p.l4 = L4::Tcp {
            sport: 4321,
            dport: 443,
            flags: 0x12,
        };
        let frame = p.build();
        e.test_run(&frame, 1).expect("run");
        let v6 = Pkt::udp("2001:db8::7", 5353, "2001:db8::8", 53).build();
        e.test_run(&v6, 1).expect("run");
        let samples = e.drain_samples();
        assert_eq!(samples.len(), 2, "{hook:?}");
        let s = samples[0];
        assert_eq!(s.instance, inst);
        assert_eq!(s.pkt_len as usize, frame.len());
        assert_eq!(s.class, mon::TCP);
        assert_eq!(s.tcp_flags, 0x12);
        assert_eq!(
            (s.t.family, s.t.proto, s.t.sport, s.t.dport),
            (4, TCP, 4321, 443)
        );
        assert_eq!(&s.t.saddr[..4], &[10, 1, 2, 3]);
        assert_eq!(&s.t.daddr[..4], &[192, 0, 2, 9]);
        assert!(s.ts_ns > 0);
        let s6 = samples[1];
        assert_eq!(
            (s6.t.family, s6.t.proto, s6.t.sport, s6.t.dport),
            (6, UDP, 5353, 53)
        );
        assert_eq!(s6.t.saddr, Engine::addr_bytes(ip("2001:db8::7")));
        assert_eq!(e.function_stats(inst).expect("stats").aux, 2);
    }
}

#[test]
fn sample_rate_is_one_in_n() {
    if !privileged() {
        return;
    }
    let (mut e, inst) = setup(Hook::Xdp, 4);
    let frame = Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2).build();
    // one test run with repeat executes on a single CPU
    e.test_run(&frame, 100).expect("run");
    assert_eq!(e.function_stats(inst).expect("stats").packets_in, 100);
    assert_eq!(e.drain_samples().len(), 25);
}
