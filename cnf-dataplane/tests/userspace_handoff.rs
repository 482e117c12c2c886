//! The user-space hand-off step of a chain: kernel functions before it run, and a packet whose
//! receive queue has no AF_XDP socket is dropped with reason `no_xsk` (counted) rather than
//! slipping past the user-space functions; TC cannot hand off at all and says so.

mod common;

use cnf_dataplane::engine::abi::reason;
use cnf_dataplane::engine::{
    ChainConfig, FunctionConfig, FunctionKind, Hook, MonitorConfig, XdpAttach,
};
use common::*;

fn chain() -> ChainConfig {
    ChainConfig {
        functions: vec![
            FunctionConfig::new("mon", FunctionKind::Monitor(MonitorConfig::default())),
            FunctionConfig::new("seal", FunctionKind::UserspaceHandoff),
        ],
        ..Default::default()
    }
}

#[test]
fn without_a_socket_the_handoff_drops_and_counts_no_xsk() {
    if !privileged() {
        return;
    }
    for hook in HOOKS {
        let v = verdicts(hook);
        let mut e = load(hook);
        let applied = e.apply(&chain()).expect("apply");
        let (mon, seal) = (applied.instances[0], applied.instances[1]);
        let out = e
            .test_run(&Pkt::udp("10.0.0.1", 1000, "10.0.0.2", 2000).build(), 1)
            .expect("run");
        assert_eq!(out.retval, v.drop, "{hook:?}");
        let m = e.function_stats(mon).expect("stats");
        assert_eq!(
            (m.packets_in, m.passed),
            (1, 1),
            "{hook:?}: monitor ran first"
        );
        let s = e.function_stats(seal).expect("stats");
        assert_eq!(s.packets_in, 1, "{hook:?}");
        assert_eq!(s.dropped[reason::NO_XSK], 1, "{hook:?}: {s:?}");
        assert_eq!(s.dropped_total(), 1, "{hook:?}");
    }
}

#[test]
fn sockets_register_only_on_xdp_and_only_for_served_queues() {
    if !privileged() {
        return;
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut tc = load(Hook::Tc);
    let err = tc.register_xsk(0, &sock).expect_err("TC has no XSKMAP");
    assert!(err.to_string().contains("needs XDP"), "{err}");
    let mut xdp = load(Hook::Xdp);
    let err = xdp.register_xsk(64, &sock).expect_err("queue out of range");
    assert!(err.to_string().contains("queues 0..64"), "{err}");
    // a UDP socket is not an AF_XDP socket: the kernel refuses it
    assert!(xdp.register_xsk(0, &sock).is_err());
    // removing a socket that was never there is fine
    xdp.unregister_xsk(3).expect("unregister");
}

#[test]
fn forced_xdp_modes_attach_exactly_that_mode() {
    if !privileged() {
        return;
    }
    let ns = Namespaces::new(&["hm"]);
    let n = ns.0[0].clone();
    sh(
        Some(&n),
        &[
            "ip", "link", "add", "hm0", "type", "veth", "peer", "name", "hm1",
        ],
    );
    sh(Some(&n), &["ip", "link", "set", "hm0", "up"]);
    sh(Some(&n), &["ip", "link", "set", "hm1", "up"]);
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(&n);
            let mut e = load(Hook::Xdp);
            let info = e.attach_with("hm0", XdpAttach::Generic).expect("generic");
            assert_eq!(info.mode, "xdp-generic");
            assert!(info.fallback_reasons.is_empty(), "{info:?}");
            let info = e.attach_with("hm1", XdpAttach::Native).expect("native");
            assert_eq!(info.mode, "xdp-native");
            let err = e
                .attach_with("nonexistent0", XdpAttach::Native)
                .expect_err("no such interface");
            assert!(err.to_string().contains("xdp-native"), "{err}");
            assert!(
                !err.to_string().contains("xdp-generic"),
                "a forced mode must not fall back: {err}"
            );
            e.detach().expect("detach");
        })
        .join()
        .expect("thread");
    });
    drop(ns);
}
