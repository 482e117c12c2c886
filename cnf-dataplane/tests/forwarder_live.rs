//! Live XDP forwarding: a router namespace with IP forwarding *disabled* redirects traffic between
//! two veths with the forwarder (devmap redirect, MAC rewrite, TTL decrement) in both directions.

mod common;

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use cnf_dataplane::engine::{
    ChainConfig, ClassifierConfig, Engine, ForwardMode, ForwarderConfig, FunctionConfig,
    FunctionKind, Hook,
};
use common::*;

fn ip_cmd(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("spawn ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, cmd: &[&str]) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .expect("spawn")
        .status
        .success()
}

fn forward_chain(ifindex: u32, smac: [u8; 6], dmac: [u8; 6]) -> ChainConfig {
    ChainConfig {
        // IPv4 only: ARP bypasses the chain and is answered by the router
        classifier: ClassifierConfig {
            family: Some(4),
            ..Default::default()
        },
        functions: vec![FunctionConfig::new(
            "fwd",
            FunctionKind::Forwarder(ForwarderConfig {
                mode: ForwardMode::Redirect { ifindex },
                src_mac: Some(smac),
                dst_mac: Some(dmac),
                decrement_ttl: true,
            }),
        )],
        ..Default::default()
    }
}

#[test]
fn router_without_ip_forwarding_redirects_with_xdp() {
    if !privileged() {
        return;
    }
    let pid = std::process::id();
    let (c, r, s) = (
        format!("vnft-{pid}-fc"),
        format!("vnft-{pid}-fr"),
        format!("vnft-{pid}-fs"),
    );
    let guard = Namespaces(vec![c.clone(), r.clone(), s.clone()]);
    for ns in &guard.0 {
        ip_cmd(&["netns", "add", ns]);
        ip_cmd(&["-n", ns, "link", "set", "lo", "up"]);
    }
    ip_cmd(&[
        "-n", &c, "link", "add", "vc", "type", "veth", "peer", "name", "rc", "netns", &r,
    ]);
    ip_cmd(&[
        "-n", &s, "link", "add", "vs", "type", "veth", "peer", "name", "rs", "netns", &r,
    ]);
    for (ns, dev, addr) in [
        (&c, "vc", "10.97.1.2/24"),
        (&r, "rc", "10.97.1.1/24"),
        (&r, "rs", "10.97.2.1/24"),
        (&s, "vs", "10.97.2.2/24"),
    ] {
        ip_cmd(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip_cmd(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip_cmd(&["-n", &c, "route", "add", "default", "via", "10.97.1.1"]);
    ip_cmd(&["-n", &s, "route", "add", "default", "via", "10.97.2.1"]);
    assert!(in_ns(&r, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]));
    assert!(
        !in_ns(&c, &["ping", "-c", "1", "-W", "1", "10.97.2.2"]),
        "router must not forward by itself"
    );

    let (rc_idx, rc_mac) = link_info(&r, "rc");
    let (rs_idx, rs_mac) = link_info(&r, "rs");
    let (_, vc_mac) = link_info(&c, "vc");
    let (_, vs_mac) = link_info(&s, "vs");

    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        // (namespace, interface, chain): two forwarding engines in the router;
        // the veth peers get an (empty-chain) XDP program, which a veth needs
        // to receive XDP_REDIRECTed frames
        let plans = vec![
            (r.clone(), "rc", Some(forward_chain(rs_idx, rs_mac, vs_mac))),
            (r.clone(), "rs", Some(forward_chain(rc_idx, rc_mac, vc_mac))),
            (c.clone(), "vc", None),
            (s.clone(), "vs", None),
        ];
        for (ns, dev, chain) in plans {
            let ready = ready_tx.clone();
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            stops.push(stop_tx);
            handles.push(scope.spawn(move || {
                enter(&ns);
                let mut e = Engine::load(Hook::Xdp).expect("load");
                let info = e.attach(dev).expect("attach");
                assert_eq!(info.mode, "xdp-native", "{info:?}");
                let inst = chain.map(|ch| e.apply(&ch).expect("apply").instances[0]);
                ready.send(()).expect("ready");
                stop_rx.recv().expect("stop");
                let passed = match inst {
                    Some(i) => e.function_stats(i).expect("stats").passed,
                    None => 0,
                };
                e.detach().expect("detach");
                passed
            }));
        }
        for _ in 0..4 {
            ready_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("engine ready");
        }
        let ok = in_ns(
            &c,
            &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.97.2.2"],
        );
        for stop in &stops {
            stop.send(()).expect("stop");
        }
        let passed: Vec<u64> = handles
            .into_iter()
            .map(|h| h.join().expect("engine"))
            .collect();
        assert!(
            ok,
            "ping through the XDP forwarder failed (redirected {passed:?})"
        );
        assert!(
            passed[0] >= 3 && passed[1] >= 3,
            "both directions redirected: {passed:?}"
        );
    });
    drop(guard);
}
