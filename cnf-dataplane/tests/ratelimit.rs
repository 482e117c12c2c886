//! Rate limiter packet tests: packet and byte buckets, burst, refill, per-source and per-flow keys.

mod common;

use std::time::Duration;

use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{
    ChainConfig, Engine, FunctionConfig, FunctionKind, Hook, RateLimitKey, RateLimiterConfig,
};
use common::*;

fn setup(hook: Hook, cfg: RateLimiterConfig) -> (Engine, u32) {
    let mut e = load(hook);
    let applied = e
        .apply(&ChainConfig {
            functions: vec![FunctionConfig::new("rl", FunctionKind::RateLimiter(cfg))],
            ..Default::default()
        })
        .expect("apply");
    (e, applied.instances[0])
}

fn passes(e: &Engine, frame: &[u8], n: usize, pass: u32) -> usize {
    (0..n)
        .filter(|_| e.test_run(frame, 1).expect("run").retval == pass)
        .count()
}

#[test]
fn packet_bucket_allows_exactly_the_burst() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, inst) = setup(
            hook,
            RateLimiterConfig {
                packets_per_sec: Some(1),
                burst_packets: 5,
                ..Default::default()
            },
        );
        let frame = Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2).build();
        // 1 pps: no token is refilled while the test runs (well under 1 s)
        assert_eq!(passes(&e, &frame, 12, v.pass), 5, "{hook:?}");
        let other = Pkt::udp("10.0.0.9", 1, "10.0.0.2", 2).build();
        assert_eq!(
            passes(&e, &other, 3, v.pass),
            0,
            "{hook:?} global key shares the bucket"
        );
        let s = e.function_stats(inst).expect("stats");
        assert_eq!(s.dropped[reason::RATELIMIT], 10);
        assert_eq!(s.passed, 5);
    }
}

#[test]
fn tokens_refill_at_the_configured_rate() {
    if !privileged() {
        return;
    }
    let (e, _) = setup(
        Hook::Xdp,
        RateLimiterConfig {
            packets_per_sec: Some(10), // one token per 100 ms
            burst_packets: 1,
            ..Default::default()
        },
    );
    let frame = Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2).build();
    assert_eq!(passes(&e, &frame, 3, XDP_PASS), 1);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(passes(&e, &frame, 3, XDP_PASS), 1, "one token after 150 ms");
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(
        passes(&e, &frame, 3, XDP_PASS),
        1,
        "burst 1 caps the refill"
    );
}

#[test]
fn byte_bucket_limits_by_size() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, _) = setup(
            hook,
            RateLimiterConfig {
                bits_per_sec: Some(8),
                burst_bytes: 1000,
                ..Default::default()
            },
        );
        let mut small = Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2);
        small.payload = vec![0; 100 - 42]; // 100-byte frames
        let small = small.build();
        assert_eq!(small.len(), 100);
        assert_eq!(
            passes(&e, &small, 15, v.pass),
            10,
            "{hook:?}: 1000 bytes of burst"
        );

        let (e, _) = setup(
            hook,
            RateLimiterConfig {
                bits_per_sec: Some(8),
                burst_bytes: 1000,
                ..Default::default()
            },
        );
        let mut big = Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2);
        big.payload = vec![0; 400 - 42];
        assert_eq!(
            passes(&e, &big.build(), 5, v.pass),
            2,
            "{hook:?}: 400-byte frames"
        );
    }
}

#[test]
fn per_source_and_per_flow_keys_have_separate_buckets() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let (e, _) = setup(
            hook,
            RateLimiterConfig {
                key: RateLimitKey::SourceIp,
                packets_per_sec: Some(1),
                burst_packets: 2,
                ..Default::default()
            },
        );
        let a1 = Pkt::udp("10.0.0.1", 1, "10.0.0.2", 2).build();
        let a2 = Pkt::udp("10.0.0.1", 7, "10.0.0.3", 8).build();
        let b = Pkt::udp("2001:db8::1", 1, "2001:db8::2", 2).build();
        assert_eq!(passes(&e, &a1, 2, v.pass), 2);
        assert_eq!(
            passes(&e, &a2, 2, v.pass),
            0,
            "{hook:?} same source, other flow"
        );
        assert_eq!(passes(&e, &b, 3, v.pass), 2, "{hook:?} other source");

        let (e, _) = setup(
            hook,
            RateLimiterConfig {
                key: RateLimitKey::Flow,
                packets_per_sec: Some(1),
                burst_packets: 2,
                ..Default::default()
            },
        );
        assert_eq!(passes(&e, &a1, 3, v.pass), 2);
        assert_eq!(
            passes(&e, &a2, 3, v.pass),
            2,
            "{hook:?} other flow, own bucket"
        );
    }
}
