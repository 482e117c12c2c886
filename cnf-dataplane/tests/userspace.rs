//! Live tests of the user-space tier: client → cnf → server network namespaces; in cnf the
//! `xsk_redirect` program feeds an AF_XDP socket on the ingress veth, the tier seals (or opens)
//! UDP payloads and sends the frames out of the egress veth; the server's UDP socket receives
//! them — the kernel drops frames with a bad UDP checksum, so arrival proves the checksum — and
//! the test opens every payload with the key. The polling-policy benchmark is the `tier-bench`
//! example.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use cnf_dataplane::userspace::redirect::XskRedirect;
use cnf_dataplane::userspace::{
    Aead, Algorithm, Direction, MacRewrite, Polling, TierConfig, UserTier,
};
use common::{Capture, privileged};
#[path = "common/tier_lab.rs"]
mod tier_lab;
use tier_lab::*;

fn encrypt_v4(tag: &str, polling: Polling) {
    if !privileged() {
        return;
    }
    let lab = Lab::new(tag);
    let (tier, _redirect) = lab.start_tier(
        vec![spec(Algorithm::ChaCha20Poly1305, Direction::Encrypt)],
        polling,
    );
    let got = exchange(&lab, "10.2.0.1:9000".parse().expect("addr"), 300);
    // an idle spell, so adaptive backs off to sleeping and wakeup waits in poll(2)
    std::thread::sleep(Duration::from_millis(300));
    let stats = tier.stop();
    eprintln!("{polling:?}: {stats:?}");
    check_encrypted(&got, 300, Algorithm::ChaCha20Poly1305);
    tier_stats_ok(&stats, 300);
    assert!(!stats.zero_copy, "veth has no zero-copy AF_XDP");
    match polling {
        Polling::Wakeup => assert!(stats.polls > 0, "wakeup never polled: {stats:?}"),
        Polling::Adaptive => assert!(stats.sleeps > 0, "adaptive never slept: {stats:?}"),
        Polling::BusyPoll => assert_eq!(stats.polls + stats.sleeps, 0),
    }
}

#[test]
fn encrypt_ipv4_busy_poll() {
    encrypt_v4("ub", Polling::BusyPoll);
}

#[test]
fn encrypt_ipv4_adaptive() {
    encrypt_v4("ua", Polling::Adaptive);
}

#[test]
fn encrypt_ipv4_wakeup() {
    encrypt_v4("uw", Polling::Wakeup);
}

#[test]
fn encrypt_ipv6_aes_gcm() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("u6");
    let (tier, _redirect) = lab.start_tier(
        vec![spec(Algorithm::Aes256Gcm, Direction::Encrypt)],
        Polling::Adaptive,
    );
    let got = exchange(&lab, "[fd02::1]:9000".parse().expect("addr"), 200);
    let stats = tier.stop();
    check_encrypted(&got, 200, Algorithm::Aes256Gcm);
    tier_stats_ok(&stats, 200);
}

/// Encrypt then decrypt in one tier: the server gets the plaintext back (both directions'
/// length and checksum fixes are exercised on the wire).
#[test]
fn encrypt_then_decrypt_restores_plaintext() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("ud");
    for (alg, dst) in [
        (Algorithm::ChaCha20Poly1305, "10.2.0.1:9001"),
        (Algorithm::Aes256Gcm, "[fd02::1]:9002"),
    ] {
        let (tier, redirect) = lab.start_tier(
            vec![spec(alg, Direction::Encrypt), spec(alg, Direction::Decrypt)],
            Polling::Wakeup,
        );
        let got = exchange(&lab, dst.parse().expect("addr"), 150);
        let stats = tier.stop();
        drop(redirect);
        assert_eq!(got.len(), 150, "{alg:?}: {stats:?}");
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &payload(i), "{alg:?} datagram {i}");
        }
        tier_stats_ok(&stats, 150);
    }
}

/// A decrypting tier fed plaintext drops every datagram as unauthenticated; nothing reaches the
/// server.
#[test]
fn decrypt_drops_unauthenticated() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("ux");
    let (tier, _redirect) = lab.start_tier(
        vec![spec(Algorithm::ChaCha20Poly1305, Direction::Decrypt)],
        Polling::BusyPoll,
    );
    let got = exchange(&lab, "10.2.0.1:9000".parse().expect("addr"), 50);
    let stats = tier.stop();
    check_plaintext_refused(&got, &stats);
}

/// One-armed: the tier sends sealed frames back out of the ingress socket, with the MAC rewrite
/// pointing at the client; a packet socket on the client's veth sees them come back with valid
/// checksums and payloads that open with the key.
#[test]
fn one_armed_reflects_sealed_frames() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("u1");
    let (tier, _redirect) = in_ns(lab.cnf(), || {
        let mut redirect = XskRedirect::attach("fi").expect("attach xsk_redirect to fi");
        let mut cfg = TierConfig::new("fi", 0);
        cfg.mac_rewrite = Some(MacRewrite {
            src: FI_MAC,
            dst: C0_MAC,
        });
        cfg.functions = vec![spec(Algorithm::Aes256Gcm, Direction::Encrypt)];
        cfg.polling = Polling::Wakeup;
        let tier = UserTier::start(cfg, |q, fd| redirect.register(q, fd)).expect("start tier");
        (tier, redirect)
    });
    let count = 40;
    let frames = in_ns(lab.client(), || {
        let cap = Capture::open("c0");
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..count {
            sock.send_to(&payload(i), "10.2.0.1:9000").expect("send");
        }
        // reflected frames: from the tier's MAC, to the client's
        cap.collect(count, |f| {
            f.len() > 14 && f[..6] == C0_MAC && f[6..12] == FI_MAC
        })
    });
    let stats = tier.stop();
    assert_eq!(frames.len(), count, "{stats:?}");
    let aead = Aead::new(Algorithm::Aes256Gcm, &KEY);
    for (i, f) in frames.iter().enumerate() {
        common::verify_checksums(f).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        // IPv4 without options: the UDP payload starts at 14 + 20 + 8
        let ip_len = usize::from(u16::from_be_bytes([f[16], f[17]]));
        let wire = &f[42..14 + ip_len];
        assert_eq!(aead.open(wire).expect("opens"), payload(i), "frame {i}");
    }
    assert_eq!(stats.tx_packets, count as u64);
}

/// Registration errors come back from `start` and leave nothing running.
#[test]
fn register_failure_is_reported() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("ur");
    let err = in_ns(lab.cnf(), || {
        UserTier::start(TierConfig::new("fi", 0), |_, _| Err("map full"))
            .expect_err("start must fail")
    });
    assert!(err.to_string().contains("map full"), "{err}");
    let err = in_ns(lab.cnf(), || {
        UserTier::start(TierConfig::new("nosuchdev", 0), |_, _| Ok::<(), String>(()))
            .expect_err("start must fail")
    });
    assert!(err.to_string().contains("nosuchdev"), "{err}");
}

/// The chain's own hand-off feeds the tier: in cnf the eBPF chain (a firewall that drops one
/// port, a monitor, then the user-space hand-off) runs on fi; what the kernel functions pass
/// reaches the tier through the chain's XSKMAP, is sealed, and leaves through fe.
#[test]
fn chain_hands_off_to_the_tier_after_its_kernel_functions() {
    use cnf_dataplane::engine::{
        Action, ChainConfig, ClassifierConfig, Engine, FirewallConfig, FirewallRule,
        FunctionConfig, FunctionKind, Hook, MonitorConfig, PortRange, abi::reason,
    };
    if !privileged() {
        return;
    }
    let lab = Lab::new("uh");
    let (tier, engine, handoff, fw) = in_ns(lab.cnf(), || {
        let mut e = Engine::load(Hook::Xdp).expect("load");
        e.attach("fi").expect("attach the chain to fi");
        let applied = e
            .apply(&ChainConfig {
                // IPv4 UDP enters the chain; ARP, ND and the rest bypass it
                classifier: ClassifierConfig {
                    family: Some(4),
                    protocol: Some(17),
                    ..Default::default()
                },
                functions: vec![
                    FunctionConfig::new(
                        "fw",
                        FunctionKind::Firewall(FirewallConfig {
                            rules: vec![FirewallRule {
                                priority: 0,
                                action: Action::Deny,
                                protocol: Some(17),
                                src: None,
                                dst: None,
                                src_ports: None,
                                dst_ports: Some(PortRange::single(9001)),
                            }],
                            default_action: Action::Allow,
                            ..Default::default()
                        }),
                    ),
                    FunctionConfig::new("mon", FunctionKind::Monitor(MonitorConfig::default())),
                    FunctionConfig::new("seal", FunctionKind::UserspaceHandoff),
                ],
                ..Default::default()
            })
            .expect("apply");
        let mut cfg = TierConfig::new("fi", 0);
        cfg.egress = Some("fe".into());
        cfg.mac_rewrite = Some(MacRewrite {
            src: FE_MAC,
            dst: S0_MAC,
        });
        cfg.functions = vec![spec(Algorithm::ChaCha20Poly1305, Direction::Encrypt)];
        cfg.polling = Polling::Wakeup;
        let tier =
            UserTier::start(cfg, |q, fd| e.register_xsk(q, fd)).expect("start tier on the chain");
        (tier, e, applied.instances[2], applied.instances[0])
    });
    // denied by the kernel firewall: never reaches the tier
    let denied = exchange(&lab, "10.2.0.1:9001".parse().expect("addr"), 20);
    let got = exchange(&lab, "10.2.0.1:9000".parse().expect("addr"), 200);
    let stats = tier.stop();
    check_encrypted(&got, 200, Algorithm::ChaCha20Poly1305);
    assert!(denied.is_empty(), "denied datagrams got through");
    assert_eq!(stats.tx_packets, 200, "{stats:?}");
    let fw_stats = engine.function_stats(fw).expect("stats");
    assert_eq!(fw_stats.dropped[reason::FW_RULE], 20);
    let h = engine.function_stats(handoff).expect("stats");
    assert_eq!(h.packets_in, 200, "hand-off saw what the firewall passed");
    assert_eq!(h.passed, 200, "every packet went to the socket: {h:?}");
    // with the tier gone, the hand-off drops (counted) instead of bypassing the cipher
    let after = exchange(&lab, "10.2.0.1:9000".parse().expect("addr"), 10);
    assert!(after.is_empty(), "plaintext bypassed the stopped tier");
    let h = engine.function_stats(handoff).expect("stats");
    assert_eq!(h.dropped[reason::NO_XSK], 10, "{h:?}");
    drop(engine);
}
