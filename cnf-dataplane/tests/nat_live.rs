//! Live NAT through a router namespace: client -> router (XDP engine on both veths, SNAT) ->
//! server over real TCP; the server must see the translated address and the client its reply.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use cnf_dataplane::engine::{
    ChainConfig, Engine, FunctionConfig, FunctionKind, Hook, NatConfig, NatRule, PortRange,
};
use common::*;

#[test]
fn snat_router_translates_real_tcp_connections() {
    if !privileged() {
        return;
    }
    let pid = std::process::id();
    let (c, r, s) = (
        format!("vnft-{pid}-nc"),
        format!("vnft-{pid}-nr"),
        format!("vnft-{pid}-ns"),
    );
    let guard = Namespaces(vec![c.clone(), r.clone(), s.clone()]);
    for ns in &guard.0 {
        sh(None, &["ip", "netns", "add", ns]);
        sh(Some(ns), &["ip", "link", "set", "lo", "up"]);
    }
    sh(
        None,
        &[
            "ip", "-n", &c, "link", "add", "vc", "type", "veth", "peer", "name", "rc", "netns", &r,
        ],
    );
    sh(
        None,
        &[
            "ip", "-n", &s, "link", "add", "vs", "type", "veth", "peer", "name", "rs", "netns", &r,
        ],
    );
    for (ns, dev, addr) in [
        (&c, "vc", "10.98.1.2/24"),
        (&r, "rc", "10.98.1.1/24"),
        (&r, "rs", "10.98.2.1/24"),
        (&s, "vs", "10.98.2.2/24"),
    ] {
        sh(Some(ns), &["ip", "addr", "add", addr, "dev", dev]);
        sh(Some(ns), &["ip", "link", "set", dev, "up"]);
        // full checksums on the wire, so the receiver really verifies what
        // the NAT rewrote (CHECKSUM_PARTIAL skbs would be trusted unchecked)
        sh(Some(ns), &["ethtool", "-K", dev, "tx", "off"]);
    }
    sh(
        Some(&c),
        &["ip", "route", "add", "default", "via", "10.98.1.1"],
    );
    sh(
        Some(&s),
        &["ip", "route", "add", "10.98.9.0/24", "via", "10.98.2.1"],
    );
    for key in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ] {
        sh(Some(&r), &["sysctl", "-q", "-w", key]);
    }

    std::thread::scope(|scope| {
        // router: engine on both interfaces, SNAT 10.98.1.0/24 -> 10.98.9.1
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let router = scope.spawn(move || {
            enter(&r);
            let mut e = Engine::load(Hook::Xdp).expect("load");
            for dev in ["rc", "rs"] {
                let info = e.attach(dev).expect("attach");
                assert_eq!(info.mode, "xdp-native", "{info:?}");
            }
            let applied = e
                .apply(&ChainConfig {
                    functions: vec![FunctionConfig::new(
                        "snat",
                        FunctionKind::Nat(NatConfig {
                            rules: vec![NatRule::Snat {
                                match_src: vec!["10.98.1.0/24".parse().expect("cidr")],
                                to_addr: ip("10.98.9.1"),
                                ports: PortRange::new(41000, 41099).expect("range"),
                            }],
                            timeout: Duration::from_secs(30),
                        }),
                    )],
                    ..Default::default()
                })
                .expect("apply");
            ready_tx.send(()).expect("ready");
            done_rx.recv().expect("done");
            let inst = applied.instances[0];
            let stats = e.function_stats(inst).expect("stats");
            let entries = e.nat_entries(inst);
            e.detach().expect("detach");
            (stats, entries)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("router ready");

        // The client may only connect once the server listens, or it races into a refused connection.
        let (listening_tx, listening_rx) = std::sync::mpsc::channel::<()>();
        let server_ns = &s;
        let server = scope.spawn(move || {
            enter(server_ns);
            let l = TcpListener::bind("10.98.2.2:8080").expect("bind");
            listening_tx.send(()).expect("listening");
            l.set_nonblocking(true).expect("nonblocking");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match l.accept() {
                    Ok((mut conn, peer)) => {
                        conn.set_nonblocking(false).expect("blocking");
                        conn.set_read_timeout(Some(Duration::from_secs(5)))
                            .expect("timeout");
                        let mut buf = [0u8; 5];
                        conn.read_exact(&mut buf).expect("read request");
                        assert_eq!(&buf, b"hello");
                        conn.write_all(b"world").expect("write reply");
                        return peer;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(
                            Instant::now() < deadline,
                            "no connection reached the server"
                        );
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        listening_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server listening");
        let client = scope.spawn(|| {
            enter(&c);
            let addr: SocketAddr = "10.98.2.2:8080".parse().expect("addr");
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .expect("connect through NAT");
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            conn.write_all(b"hello").expect("write");
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf)
                .expect("read reply through reverse NAT");
            buf
        });
        let reply = client.join().expect("client");
        let peer = server.join().expect("server");
        done_tx.send(()).expect("done");
        let (stats, entries) = router.join().expect("router");

        assert_eq!(&reply, b"world");
        assert_eq!(
            peer.ip(),
            ip("10.98.9.1"),
            "server must see the SNAT address"
        );
        assert!(
            (41000..=41099).contains(&peer.port()),
            "port {} outside the pool",
            peer.port()
        );
        assert_eq!(entries, 2, "one flow, two directions");
        assert!(
            stats.aux >= 4,
            "packets of both directions used the translation: {stats:?}"
        );
        assert_eq!(stats.dropped_total(), 0);
    });
    drop(guard);
}
