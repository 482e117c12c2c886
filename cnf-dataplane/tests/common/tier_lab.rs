//! The client → cnf → server namespace lab of the user-space tier tests (AF_XDP and DPDK back
//! ends) and their traffic helpers: distinct datagrams out, what the server got back, checks.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cnf_dataplane::userspace::redirect::XskRedirect;
use cnf_dataplane::userspace::{
    Aead, Algorithm, Backend, CipherSpec, Direction, DpdkDriver, DropReason, MacRewrite, Polling,
    Stats, TierConfig, UserTier, UserspaceError,
};

use testkit::{Namespaces, sh};

pub const KEY: [u8; 32] = *b"build-vnf user-space tier key!!!";

pub const C0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
pub const FI_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
pub const FE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
pub const S0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];

pub use netkit::mac::format as mac_str;

/// Runs `cmd` in namespace `ns` without its output, asserting success.
pub fn quiet(ns: &str, cmd: &[&str]) {
    let st = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("spawn");
    assert!(st.success(), "{ns}: {cmd:?} failed");
}

/// Runs `f` on a thread inside namespace `ns` (sockets and tier workers created there stay there).
pub use testkit::in_ns;

/// client (c0) ─ (fi) cnf (fe) ─ (s0) server, IPv4 10.1.0.0/24 + 10.2.0.0/24 and IPv6 fd01::/64 +
/// fd02::/64, fixed MACs, static neighbours (ARP/ND cannot cross the tier), no forwarding in cnf
/// (the only way from client to server is the tier).
pub struct Lab {
    pub ns: Namespaces,
}

impl Lab {
    pub fn new(tag: &str) -> Self {
        let ns = Namespaces::new(&[&format!("{tag}c"), &format!("{tag}f"), &format!("{tag}s")]);
        let (c, f, s) = (&ns.0[0], &ns.0[1], &ns.0[2]);
        for (a, a_dev, a_mac, b, b_dev, b_mac) in [
            (c, "c0", C0_MAC, f, "fi", FI_MAC),
            (f, "fe", FE_MAC, s, "s0", S0_MAC),
        ] {
            sh(
                None,
                &[
                    "ip",
                    "-n",
                    a,
                    "link",
                    "add",
                    a_dev,
                    "address",
                    &mac_str(a_mac),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    b_dev,
                    "address",
                    &mac_str(b_mac),
                    "netns",
                    b,
                ],
            );
        }
        for (n, dev, v4, v6) in [
            (c, "c0", "10.1.0.1/24", "fd01::1/64"),
            (f, "fi", "10.1.0.2/24", "fd01::2/64"),
            (f, "fe", "10.2.0.2/24", "fd02::2/64"),
            (s, "s0", "10.2.0.1/24", "fd02::1/64"),
        ] {
            sh(Some(n), &["ip", "addr", "add", v4, "dev", dev]);
            sh(
                Some(n),
                &["ip", "-6", "addr", "add", v6, "dev", dev, "nodad"],
            );
            sh(Some(n), &["ip", "link", "set", dev, "up"]);
            // the sender computes full checksums (offload leaves partial ones in redirected frames)
            quiet(n, &["ethtool", "-K", dev, "tx", "off"]);
        }
        for (n, dev, via4, via6, net4, net6, mac) in [
            (
                c,
                "c0",
                "10.1.0.2",
                "fd01::2",
                "10.2.0.0/24",
                "fd02::/64",
                FI_MAC,
            ),
            (
                s,
                "s0",
                "10.2.0.2",
                "fd02::2",
                "10.1.0.0/24",
                "fd01::/64",
                FE_MAC,
            ),
        ] {
            let m = mac_str(mac);
            sh(
                Some(n),
                &[
                    "ip",
                    "neigh",
                    "replace",
                    via4,
                    "lladdr",
                    &m,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
            sh(
                Some(n),
                &[
                    "ip",
                    "-6",
                    "neigh",
                    "replace",
                    via6,
                    "lladdr",
                    &m,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
            sh(Some(n), &["ip", "route", "add", net4, "via", via4]);
            sh(Some(n), &["ip", "-6", "route", "add", net6, "via", via6]);
        }
        sh(Some(f), &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        sh(
            Some(f),
            &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"],
        );
        Self { ns }
    }

    pub fn client(&self) -> &str {
        &self.ns.0[0]
    }
    pub fn cnf(&self) -> &str {
        &self.ns.0[1]
    }
    pub fn server(&self) -> &str {
        &self.ns.0[2]
    }

    /// Starts the redirect program on fi and a tier fi → fe with `functions`.
    pub fn start_tier(
        &self,
        functions: Vec<CipherSpec>,
        polling: Polling,
    ) -> (UserTier, XskRedirect) {
        in_ns(self.cnf(), || {
            let mut redirect = XskRedirect::attach("fi").expect("attach xsk_redirect to fi");
            let mut cfg = TierConfig::new("fi", 0);
            cfg.egress = Some("fe".into());
            cfg.mac_rewrite = Some(MacRewrite {
                src: FE_MAC,
                dst: S0_MAC,
            });
            cfg.functions = functions;
            cfg.polling = polling;
            let tier = UserTier::start(cfg, |q, fd| redirect.register(q, fd)).expect("start tier");
            (tier, redirect)
        })
    }
}

impl Lab {
    /// Starts a DPDK tier fi → fe (`driver` vdevs on both; no XDP program: the port takes the
    /// frames itself) with `functions`. Without the cargo feature `dpdk` this is the error that
    /// names the feature.
    pub fn start_dpdk_tier(
        &self,
        functions: Vec<CipherSpec>,
        polling: Polling,
        driver: DpdkDriver,
    ) -> Result<UserTier, UserspaceError> {
        in_ns(self.cnf(), || {
            let mut cfg = TierConfig::new("fi", 0);
            cfg.backend = Backend::Dpdk;
            cfg.dpdk_driver = driver;
            cfg.egress = Some("fe".into());
            cfg.mac_rewrite = Some(MacRewrite {
                src: FE_MAC,
                dst: S0_MAC,
            });
            cfg.functions = functions;
            cfg.polling = polling;
            UserTier::start(cfg, |_, _| -> Result<(), String> {
                panic!("the DPDK back end has no socket to register")
            })
        })
    }
}

pub fn spec(algorithm: Algorithm, direction: Direction) -> CipherSpec {
    CipherSpec {
        algorithm,
        direction,
        key: KEY,
    }
}

pub fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("build-vnf datagram {i:05} ").into_bytes();
    p.extend((0..(i % 200)).map(|j| (i + j) as u8));
    p
}

/// Sends `count` distinct datagrams from the client to `dst` and collects what the server gets.
pub fn exchange(lab: &Lab, dst: SocketAddr, count: usize) -> Vec<Vec<u8>> {
    let bind: SocketAddr = if dst.is_ipv4() {
        "0.0.0.0:0".parse().expect("addr")
    } else {
        "[::]:0".parse().expect("addr")
    };
    let server = in_ns(lab.server(), || {
        let s = UdpSocket::bind(dst).expect("bind server socket");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        s
    });
    let client = in_ns(lab.client(), || UdpSocket::bind(bind).expect("bind client"));
    let done = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let rx = sc.spawn(|| {
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut quiet = 0;
            while got.len() < count && Instant::now() < deadline {
                match server.recv(&mut buf) {
                    Ok(n) => {
                        quiet = 0;
                        got.push(buf[..n].to_vec());
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        // stop after ~1 s without traffic once the sender is done
                        if done.load(Relaxed) {
                            quiet += 1;
                            if quiet >= 3 {
                                break;
                            }
                        }
                    }
                    Err(e) => panic!("server recv: {e}"),
                }
            }
            got
        });
        for i in 0..count {
            client.send_to(&payload(i), dst).expect("client send");
            if i % 8 == 7 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        done.store(true, Relaxed);
        rx.join().expect("receiver")
    })
}

pub fn check_encrypted(got: &[Vec<u8>], count: usize, alg: Algorithm) {
    assert_eq!(got.len(), count, "server received {} of {count}", got.len());
    let aead = Aead::new(alg, &KEY);
    let mut nonces = std::collections::HashSet::new();
    for (i, wire) in got.iter().enumerate() {
        let pt = aead
            .open(wire)
            .unwrap_or_else(|_| panic!("datagram {i} does not open with the key"));
        assert_eq!(pt, payload(i), "datagram {i}");
        assert_ne!(&wire[12..12 + pt.len().min(20)], &pt[..pt.len().min(20)]);
        assert!(nonces.insert(wire[..12].to_vec()), "nonce reused at {i}");
    }
}

pub fn tier_stats_ok(stats: &Stats, count: usize) {
    assert_eq!(stats.tx_packets, count as u64, "{stats:?}");
    assert!(stats.rx_packets >= count as u64, "{stats:?}");
    assert_eq!(stats.dropped(DropReason::AuthFailed), 0);
    assert_eq!(stats.dropped(DropReason::TxRingFull), 0);
    assert_eq!(stats.latency.count(), count as u64);
    assert_eq!(stats.kernel_rx_dropped, 0, "{stats:?}");
    assert!(stats.cpu_ns > 0, "{stats:?}");
}

/// A decrypting tier fed 50 plaintext datagrams (`exchange`'s payloads 0..50): nothing passes; payloads
/// 0..=2 are shorter than nonce + tag, the rest fail authentication.
pub fn check_plaintext_refused(got: &[Vec<u8>], stats: &Stats) {
    assert!(got.is_empty(), "plaintext passed a decrypting tier");
    assert_eq!(stats.tx_packets, 0);
    assert_eq!(stats.dropped(DropReason::ShortPayload), 3, "{stats:?}");
    assert_eq!(stats.dropped(DropReason::AuthFailed), 47, "{stats:?}");
}
