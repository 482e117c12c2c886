//! Partial TCP/UDP checksums from senders with transmit checksum offload (`CHECKSUM_PARTIAL`) through
//! the XDP chain: completed when the packet leaves as a frame (XDP_TX/REDIRECT in native mode), kept
//! in partial form — for the translated addresses — where the kernel still finishes it (XDP_PASS,
//! generic mode). Packet-level with BPF_PROG_TEST_RUN, then live with real sockets whose veths keep
//! offload on (the kernel default), so the receiver verifies what the chain produced.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use cnf_dataplane::engine::{
    ChainConfig, ClassifierConfig, Engine, ForwardMode, ForwarderConfig, FunctionConfig,
    FunctionKind, Hook, NatConfig, NatRule, PortRange, XdpAttach,
};
use common::*;

/// Payload sizes around every step of the in-kernel summing (512-byte chunks, then 256 … 4, 2, 1).
const SIZES: [usize; 13] = [0, 1, 2, 3, 13, 255, 510, 511, 512, 513, 1000, 1025, 1400];

fn snat(family: u8) -> FunctionConfig {
    let (from, to) = if family == 4 {
        ("10.0.0.0/8", "203.0.113.1")
    } else {
        ("2001:db8:a::/48", "2001:db8:ff::1")
    };
    FunctionConfig::new(
        "snat",
        FunctionKind::Nat(NatConfig {
            rules: vec![NatRule::Snat {
                match_src: vec![from.parse().expect("cidr")],
                to_addr: ip(to),
                ports: PortRange::new(40000, 40999).expect("range"),
            }],
            timeout: Duration::from_secs(60),
        }),
    )
}

fn tx() -> FunctionConfig {
    FunctionConfig::new(
        "out",
        FunctionKind::Forwarder(ForwarderConfig {
            mode: ForwardMode::Tx,
            src_mac: None,
            dst_mac: None,
            decrement_ttl: false,
        }),
    )
}

fn engine(functions: Vec<FunctionConfig>) -> Engine {
    let mut e = load(Hook::Xdp);
    e.apply(&ChainConfig {
        functions,
        ..Default::default()
    })
    .expect("apply");
    e
}

fn packets(family: u8) -> Vec<Pkt> {
    let (src, dst) = if family == 4 {
        ("10.1.2.3", "198.51.100.7")
    } else {
        ("2001:db8:a::3", "2001:db8:b::7")
    };
    let mut out = Vec::new();
    for (i, size) in SIZES.iter().enumerate() {
        let sport = 1000 + i as u16;
        for mut p in [Pkt::udp(src, sport, dst, 53), Pkt::tcp(src, sport, dst, 80)] {
            p.payload = (0..*size).map(|b| (b * 7 + 3) as u8).collect();
            out.push(p);
        }
    }
    out
}

#[test]
fn partial_checksums_leave_complete_on_xdp_tx_after_snat() {
    if !privileged() {
        return;
    }
    for family in [4, 6] {
        let e = engine(vec![snat(family), tx()]);
        for p in packets(family) {
            let complete = p.build();
            let partial = with_partial_checksum(&complete);
            assert!(
                verify_checksums(&partial).is_err(),
                "the partial form does not verify on its own: {p:?}"
            );
            // the same flow, once complete and once partial: the chain must produce the same frame
            let want = e.test_run(&complete, 1).expect("run complete");
            let got = e.test_run(&partial, 1).expect("run partial");
            assert_eq!(want.retval, XDP_TX, "{p:?}");
            assert_eq!(got.retval, XDP_TX, "{p:?}");
            verify_checksums(&want.data).unwrap_or_else(|err| panic!("{p:?}: {err}"));
            verify_checksums(&got.data).unwrap_or_else(|err| panic!("{p:?}: {err}"));
            assert_ne!(want.data, complete, "SNAT rewrote the packet: {p:?}");
            assert_eq!(got.data, want.data, "partial in, complete out: {p:?}");
        }
    }
}

#[test]
fn partial_checksums_stay_partial_on_xdp_pass_for_the_translated_packet() {
    if !privileged() {
        return;
    }
    for family in [4, 6] {
        let e = engine(vec![snat(family)]);
        for p in packets(family) {
            let complete = p.build();
            let want = e.test_run(&complete, 1).expect("run complete");
            let got = e
                .test_run(&with_partial_checksum(&complete), 1)
                .expect("run");
            assert_eq!(got.retval, XDP_PASS, "{p:?}");
            verify_checksums(&want.data).unwrap_or_else(|err| panic!("{p:?}: {err}"));
            // the skb still says "finish me": the field must be the pseudo-header sum of the packet as
            // it leaves (translated source), everything else as for the complete packet
            let (value, at) = partial_checksum(&want.data);
            let mut expect = want.data.clone();
            expect[at].copy_from_slice(&value.to_be_bytes());
            assert_eq!(got.data, expect, "{p:?}");
        }
    }
}

#[test]
fn a_complete_checksum_that_equals_the_pseudo_header_sum_is_left_complete() {
    if !privileged() {
        return;
    }
    // Find a payload whose complete UDP checksum happens to equal the partial form.
    let mut p = Pkt::udp("10.1.2.3", 4444, "198.51.100.7", 53);
    let frame = (0..=0xffffu16)
        .find_map(|x| {
            p.payload = x.to_be_bytes().to_vec();
            p.payload.extend_from_slice(b"coincidence");
            let f = p.build();
            let (partial, at) = partial_checksum(&f);
            (f[at] == partial.to_be_bytes()).then_some(f)
        })
        .expect("some payload word makes the checksum equal the pseudo-header sum");
    verify_checksums(&frame).expect("a complete checksum");
    // Through SNAT and PASS it must stay a complete checksum of the translated packet (taken for
    // partial, it would be rewritten to the translated pseudo-header sum and fail).
    let e = engine(vec![snat(4)]);
    let out = e.test_run(&frame, 1).expect("run");
    assert_eq!(out.retval, XDP_PASS);
    verify_checksums(&out.data).expect("still complete after SNAT");
}

// ---- live: client (offload on) -> router (the chain) -> server ----

struct Lab {
    _guard: Namespaces,
    c: String,
    r: String,
    s: String,
}

/// client c (vc 10.96.1.2, transmit checksum offload left on) — (rc 10.96.1.1) router r
/// (rs 10.96.2.1) — (vs 10.96.2.2) server s. With `kernel_path` the router forwards with IP
/// forwarding and turns offload off on rs, so the kernel finishes checksums from the field.
fn lab(tag: &str, kernel_path: bool) -> Lab {
    let guard = Namespaces::new(&[&format!("{tag}c"), &format!("{tag}r"), &format!("{tag}s")]);
    let (c, r, s) = (guard.0[0].clone(), guard.0[1].clone(), guard.0[2].clone());
    for (a, a_dev, b, b_dev) in [(&c, "vc", &r, "rc"), (&s, "vs", &r, "rs")] {
        sh(
            None,
            &[
                "ip", "-n", a, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev,
                "netns", b,
            ],
        );
    }
    for (ns, dev, addr) in [
        (&c, "vc", "10.96.1.2/24"),
        (&r, "rc", "10.96.1.1/24"),
        (&r, "rs", "10.96.2.1/24"),
        (&s, "vs", "10.96.2.2/24"),
    ] {
        sh(Some(ns), &["ip", "addr", "add", addr, "dev", dev]);
        sh(Some(ns), &["ip", "link", "set", dev, "up"]);
    }
    // frames redirected into rs reach vs only with XDP or GRO on vs
    sh(Some(&s), &["ethtool", "-K", "vs", "gro", "on"]);
    sh(
        Some(&c),
        &["ip", "route", "add", "default", "via", "10.96.1.1"],
    );
    sh(
        Some(&s),
        &["ip", "route", "add", "default", "via", "10.96.2.1"],
    );
    sh(
        Some(&r),
        &[
            "sysctl",
            "-q",
            "-w",
            if kernel_path {
                "net.ipv4.ip_forward=1"
            } else {
                "net.ipv4.ip_forward=0"
            },
        ],
    );
    if kernel_path {
        sh(Some(&r), &["ethtool", "-K", "rs", "tx", "off"]);
    }
    Lab {
        _guard: guard,
        c,
        r,
        s,
    }
}

/// Sends one UDP datagram of every size from the client (offload on) to the server and returns the
/// datagrams the server received, with their source addresses.
fn udp_exchange(lab: &Lab) -> Vec<(Vec<u8>, SocketAddr)> {
    std::thread::scope(|scope| {
        let (bound_tx, bound_rx) = mpsc::channel();
        let server = scope.spawn(move || {
            enter(&lab.s);
            let sock = UdpSocket::bind("10.96.2.2:7000").expect("bind");
            sock.set_read_timeout(Some(Duration::from_millis(800)))
                .expect("timeout");
            bound_tx.send(()).expect("bound");
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                got.push((buf[..n].to_vec(), from));
            }
            got
        });
        bound_rx.recv().expect("server bound");
        let client = scope.spawn(move || {
            enter(&lab.c);
            let sock = UdpSocket::bind("10.96.1.2:0").expect("bind");
            for size in SIZES.iter().filter(|s| **s > 0) {
                let payload: Vec<u8> = (0..*size).map(|b| (b * 13 + 1) as u8).collect();
                sock.send_to(&payload, "10.96.2.2:7000").expect("send");
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        client.join().expect("client");
        server.join().expect("server")
    })
}

fn expected_datagrams() -> Vec<Vec<u8>> {
    SIZES
        .iter()
        .filter(|s| **s > 0)
        .map(|size| (0..*size).map(|b| (b * 13 + 1) as u8).collect())
        .collect()
}

/// Runs `f` with an XDP engine in `ns` attached to `devs` in `mode` with `chain`, and returns the
/// interface modes it got.
fn with_router<T>(
    ns: &str,
    devs: &[&str],
    mode: XdpAttach,
    chain: ChainConfig,
    f: impl FnOnce() -> T,
) -> (T, Vec<&'static str>) {
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let router = scope.spawn(move || {
            enter(ns);
            let mut e = Engine::load(Hook::Xdp).expect("load");
            let modes: Vec<&'static str> = devs
                .iter()
                .map(|d| e.attach_with(d, mode).expect("attach").mode)
                .collect();
            e.apply(&chain).expect("apply");
            ready_tx.send(()).expect("ready");
            done_rx.recv().expect("done");
            e.detach().expect("detach");
            modes
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("router ready");
        let out = f();
        done_tx.send(()).expect("done");
        (out, router.join().expect("router"))
    })
}

fn snat_and_redirect(lab: &Lab) -> ChainConfig {
    let (rs_idx, rs_mac) = link_info(&lab.r, "rs");
    let (_, vs_mac) = link_info(&lab.s, "vs");
    ChainConfig {
        // IPv4 only: ARP bypasses the chain and is answered by the router
        classifier: ClassifierConfig {
            family: Some(4),
            ..Default::default()
        },
        functions: vec![
            FunctionConfig::new(
                "snat",
                FunctionKind::Nat(NatConfig {
                    rules: vec![NatRule::Snat {
                        match_src: vec!["10.96.1.0/24".parse().expect("cidr")],
                        to_addr: ip("10.96.9.1"),
                        ports: PortRange::new(42000, 42999).expect("range"),
                    }],
                    timeout: Duration::from_secs(30),
                }),
            ),
            FunctionConfig::new(
                "out",
                FunctionKind::Forwarder(ForwarderConfig {
                    mode: ForwardMode::Redirect { ifindex: rs_idx },
                    src_mac: Some(rs_mac),
                    dst_mac: Some(vs_mac),
                    decrement_ttl: true,
                }),
            ),
        ],
        ..Default::default()
    }
}

/// Frames `dev` receives (in the calling thread's namespace) until the link is quiet, each with
/// whether the kernel marks it "checksum not ready" (an skb still `CHECKSUM_PARTIAL`). Sends on
/// `ready` once the socket listens.
fn capture(dev: &str, ready: mpsc::Sender<()>) -> Vec<(Vec<u8>, bool)> {
    let cap = Capture::open(dev);
    ready.send(()).expect("capture ready");
    let mut frames = Vec::new();
    let mut idle = 0;
    while idle < 8 {
        match cap.next() {
            Some(c) if !c.outgoing => {
                idle = 0;
                frames.push((c.frame, c.csum_not_ready));
            }
            Some(_) => {}
            None => idle += 1,
        }
    }
    frames
}

/// UDP frames to port 7000 among `frames`.
fn udp_7000(frames: Vec<(Vec<u8>, bool)>) -> Vec<(Vec<u8>, bool)> {
    frames
        .into_iter()
        .filter(|(f, _)| {
            f.len() > 14 + 20 + 8
                && f[12..14] == [0x08, 0x00]
                && f[23] == UDP
                && f[14 + 20 + 2..14 + 20 + 4] == 7000u16.to_be_bytes()
        })
        .collect()
}

fn assert_translated(got: &[(Vec<u8>, SocketAddr)], what: &str) {
    let payloads: Vec<Vec<u8>> = got.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        payloads,
        expected_datagrams(),
        "{what}: every datagram arrives intact (a bad checksum is dropped by the receiver)"
    );
    for (_, from) in got {
        assert_eq!(from.ip(), IpAddr::from([10, 96, 9, 1]), "{what}: SNAT");
    }
}

#[test]
fn offloaded_udp_is_redirected_with_valid_checksums_in_native_and_generic_mode() {
    if !privileged() {
        return;
    }
    for (tag, mode, label) in [
        ("pcn", XdpAttach::Native, "xdp-native"),
        ("pcg", XdpAttach::Generic, "xdp-generic"),
    ] {
        // generic mode keeps the skb: with offload off on rs the kernel finishes the checksum from
        // the field, so a wrong field would show
        let lab = lab(tag, false);
        if mode == XdpAttach::Generic {
            sh(Some(&lab.r), &["ethtool", "-K", "rs", "tx", "off"]);
        }
        let chain = snat_and_redirect(&lab);
        let ((got, frames), modes) = with_router(&lab.r, &["rc"], mode, chain, || {
            std::thread::scope(|scope| {
                let (ready_tx, ready_rx) = mpsc::channel();
                let s = &lab.s;
                let cap = scope.spawn(move || {
                    enter(s);
                    capture("vs", ready_tx)
                });
                ready_rx.recv().expect("capture ready");
                let got = udp_exchange(&lab);
                (got, udp_7000(cap.join().expect("capture")))
            })
        });
        assert_eq!(modes, vec![label]);
        assert_translated(&got, label);
        assert_eq!(
            frames.len(),
            expected_datagrams().len(),
            "{label}: captured"
        );
        for (frame, not_ready) in &frames {
            if mode == XdpAttach::Native {
                // left as an xdp_frame: no skb state, the checksum itself must be complete
                assert!(
                    !not_ready,
                    "{label}: a redirected frame has no partial state"
                );
                verify_checksums(frame).unwrap_or_else(|e| panic!("{label}: {e}"));
            } else {
                // the skb survived with "finish me": the field is the translated pseudo-header sum
                assert!(not_ready, "{label}: the skb keeps CHECKSUM_PARTIAL");
                let (value, at) = partial_checksum(frame);
                assert_eq!(frame[at].to_vec(), value.to_be_bytes().to_vec(), "{label}");
            }
        }
    }
}

#[test]
fn offloaded_udp_and_tcp_through_snat_and_kernel_forwarding_keep_valid_checksums() {
    if !privileged() {
        return;
    }
    let lab = &lab("pck", true);
    let chain = ChainConfig {
        classifier: ClassifierConfig {
            family: Some(4),
            ..Default::default()
        },
        functions: vec![snat_and_redirect(lab).functions.remove(0)],
        ..Default::default()
    };
    let ((got, echoed), modes) =
        with_router(&lab.r, &["rc", "rs"], XdpAttach::Native, chain, || {
            let got = udp_exchange(lab);
            // TCP both ways: requests through SNAT, replies through the reverse translation
            let echoed = std::thread::scope(|scope| {
                let (bound_tx, bound_rx) = mpsc::channel();
                let server = scope.spawn(move || {
                    enter(&lab.s);
                    let l = TcpListener::bind("10.96.2.2:7001").expect("bind");
                    l.set_nonblocking(true).expect("nonblocking");
                    bound_tx.send(()).expect("bound");
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    let (mut conn, peer) = loop {
                        match l.accept() {
                            Ok(c) => break c,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                assert!(
                                    std::time::Instant::now() < deadline,
                                    "no connection reached the server through SNAT"
                                );
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            Err(e) => panic!("accept: {e}"),
                        }
                    };
                    conn.set_nonblocking(false).expect("blocking");
                    conn.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    let mut buf = vec![0u8; 200_000];
                    conn.read_exact(&mut buf).expect("read");
                    conn.write_all(&buf).expect("echo");
                    peer
                });
                bound_rx.recv().expect("bound");
                let client = scope.spawn(move || {
                    enter(&lab.c);
                    let mut conn = TcpStream::connect_timeout(
                        &"10.96.2.2:7001".parse().expect("addr"),
                        Duration::from_secs(5),
                    )
                    .expect("connect through SNAT");
                    conn.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
                    conn.write_all(&data).expect("write");
                    let mut back = vec![0u8; data.len()];
                    conn.read_exact(&mut back).expect("read echo");
                    back == data
                });
                let ok = client.join().expect("client");
                let peer = server.join().expect("server");
                (ok, peer)
            });
            (got, echoed)
        });
    assert_eq!(modes, vec!["xdp-native", "xdp-native"]);
    assert_translated(&got, "kernel path");
    assert!(echoed.0, "200 kB echoed intact over TCP");
    assert_eq!(echoed.1.ip(), IpAddr::from([10, 96, 9, 1]), "TCP via SNAT");
}
