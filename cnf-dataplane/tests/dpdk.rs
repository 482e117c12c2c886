//! Live tests of the DPDK back end of the user-space tier (cargo feature `dpdk`): client → cnf →
//! server network namespaces; in cnf a DPDK `net_af_packet` port on the ingress veth takes the
//! client's frames, the tier seals (or opens) the UDP payloads and a second port sends them out of
//! the egress veth. The server's UDP socket receives them — the kernel drops datagrams with a bad
//! IP or UDP checksum or inconsistent lengths, so arrival proves them — and the test opens every
//! payload with the Rust cipher.
#![cfg(feature = "dpdk")]

mod common;

use std::time::Duration;

use cnf_dataplane::userspace::{Aead, Algorithm, Direction, DpdkDriver, Polling};
use common::{Capture, enter, privileged, verify_checksums};
#[path = "common/tier_lab.rs"]
mod tier_lab;
use tier_lab::*;

fn encrypt(tag: &str, dst: &str, alg: Algorithm, polling: Polling, count: usize) {
    if !privileged() {
        return;
    }
    let lab = Lab::new(tag);
    let tier = lab
        .start_dpdk_tier(
            vec![spec(alg, Direction::Encrypt)],
            polling,
            DpdkDriver::AfPacket,
        )
        .expect("start the DPDK tier");
    assert_eq!(
        tier.xsk_fd(),
        None,
        "the DPDK back end has no AF_XDP socket"
    );
    let got = exchange(&lab, dst.parse().expect("addr"), count);
    // an idle spell, so adaptive backs off to sleeping
    std::thread::sleep(Duration::from_millis(300));
    let stats = tier.stop();
    eprintln!("{polling:?}: {stats:?}");
    check_encrypted(&got, count, alg);
    tier_stats_ok(&stats, count);
    assert!(!stats.zero_copy);
    assert_eq!(stats.polls, 0, "DPDK never waits in poll(2)");
    match polling {
        Polling::Adaptive => assert!(stats.sleeps > 0, "adaptive never slept: {stats:?}"),
        _ => assert_eq!(stats.sleeps, 0, "busy-poll slept: {stats:?}"),
    }
}

#[test]
fn encrypt_ipv4_chacha_adaptive() {
    encrypt(
        "da",
        "10.2.0.1:9000",
        Algorithm::ChaCha20Poly1305,
        Polling::Adaptive,
        300,
    );
}

/// IPv6: the UDP checksum is mandatory there, so the server's kernel verifies every one.
#[test]
fn encrypt_ipv6_aes_gcm_busy_poll() {
    encrypt(
        "db",
        "[fd02::1]:9000",
        Algorithm::Aes256Gcm,
        Polling::BusyPoll,
        200,
    );
}

/// The sealed frames on the wire, checked field by field: captured on the server's veth, every
/// IPv4 frame has total length = frame − Ethernet header, UDP length = IP payload, a correct IPv4
/// header checksum and a correct, non-zero UDP checksum, the rewritten MACs, and a payload that
/// opens to what the client sent.
#[test]
fn sealed_frames_have_correct_lengths_and_checksums() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("dw");
    let tier = lab
        .start_dpdk_tier(
            vec![spec(Algorithm::ChaCha20Poly1305, Direction::Encrypt)],
            Polling::Adaptive,
            DpdkDriver::AfPacket,
        )
        .expect("start the DPDK tier");
    let count = 60;
    let cap = in_ns(lab.server(), || Capture::open("s0"));
    let got = exchange(&lab, "10.2.0.1:9000".parse().expect("addr"), count);
    let stats = tier.stop();
    check_encrypted(&got, count, Algorithm::ChaCha20Poly1305);
    let udp_to_9000 = |f: &[u8]| {
        f.len() > 42
            && f[12..14] == [0x08, 0x00]
            && f[23] == 17
            && f[36..38] == 9000u16.to_be_bytes()
    };
    let frames = cap.collect(count, udp_to_9000);
    assert_eq!(
        frames.len(),
        count,
        "captured {} of {count}: {stats:?}",
        frames.len()
    );
    let aead = Aead::new(Algorithm::ChaCha20Poly1305, &KEY);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(&f[..6], &S0_MAC, "frame {i}: destination MAC");
        assert_eq!(&f[6..12], &FE_MAC, "frame {i}: source MAC");
        let ip_len = usize::from(u16::from_be_bytes([f[16], f[17]]));
        assert_eq!(ip_len, f.len() - 14, "frame {i}: IPv4 total length");
        let udp_len = usize::from(u16::from_be_bytes([f[38], f[39]]));
        assert_eq!(udp_len, ip_len - 20, "frame {i}: UDP length");
        assert_ne!(
            u16::from_be_bytes([f[40], f[41]]),
            0,
            "frame {i}: UDP checksum"
        );
        verify_checksums(f).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        let pt = aead.open(&f[42..]).expect("sealed payload opens");
        assert_eq!(pt, payload(i), "frame {i}");
        assert_eq!(
            udp_len,
            8 + payload(i).len() + 28,
            "frame {i}: grew by nonce + tag"
        );
    }
}

/// Encrypt then decrypt in one tier: the server gets the plaintext back (both directions' length
/// and checksum fixes on the wire).
#[test]
fn encrypt_then_decrypt_restores_plaintext() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("dd");
    for (alg, dst) in [
        (Algorithm::ChaCha20Poly1305, "10.2.0.1:9001"),
        (Algorithm::Aes256Gcm, "[fd02::1]:9002"),
    ] {
        let tier = lab
            .start_dpdk_tier(
                vec![spec(alg, Direction::Encrypt), spec(alg, Direction::Decrypt)],
                Polling::Adaptive,
                DpdkDriver::AfPacket,
            )
            .expect("start the DPDK tier");
        let got = exchange(&lab, dst.parse().expect("addr"), 150);
        let stats = tier.stop();
        assert_eq!(got.len(), 150, "{alg:?}: {stats:?}");
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g, &payload(i), "{alg:?} datagram {i}");
        }
        tier_stats_ok(&stats, 150);
    }
}

/// A decrypting tier fed plaintext drops everything, counted by reason; nothing reaches the server.
#[test]
fn decrypt_drops_unauthenticated() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("dx");
    let tier = lab
        .start_dpdk_tier(
            vec![spec(Algorithm::ChaCha20Poly1305, Direction::Decrypt)],
            Polling::Adaptive,
            DpdkDriver::AfPacket,
        )
        .expect("start the DPDK tier");
    let got = exchange(&lab, "10.2.0.1:9000".parse().expect("addr"), 50);
    let stats = tier.stop();
    check_plaintext_refused(&got, &stats);
}

/// Bad configurations are refused with the field named, before any port opens.
#[test]
fn poll_mode_only_and_bad_interface_are_errors() {
    if !privileged() {
        return;
    }
    let lab = Lab::new("de");
    let e = lab
        .start_dpdk_tier(vec![], Polling::Wakeup, DpdkDriver::AfPacket)
        .expect_err("wakeup on DPDK");
    assert!(e.to_string().contains("polling wakeup"), "{e}");
    let e = std::thread::scope(|s| {
        s.spawn(|| {
            enter(lab.cnf());
            let mut cfg = cnf_dataplane::userspace::TierConfig::new("nosuchif0", 0);
            cfg.backend = cnf_dataplane::userspace::Backend::Dpdk;
            cnf_dataplane::userspace::UserTier::start(cfg, |_, _| Ok::<(), String>(()))
                .expect_err("missing interface")
        })
        .join()
        .expect("thread")
    });
    assert!(e.to_string().contains("nosuchif0"), "{e}");
}
