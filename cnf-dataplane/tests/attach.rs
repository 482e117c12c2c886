//! Live attach tests on a veth pair between two network namespaces created by the test:
//! XDP (native first) and TC ingress, with real ICMP traffic through the chain.

mod common;

use std::process::Command;

use cnf_dataplane::engine::{
    Action, AttachInfo, ChainConfig, Engine, FirewallConfig, FirewallRule, FunctionConfig,
    FunctionKind, Hook,
};
use common::*;

/// Two namespaces joined by veth `va` (ns a, 10.99.<n>.1) <-> `vb` (ns b, 10.99.<n>.2).
struct Testbed {
    a: String,
    b: String,
    subnet: u8,
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

impl Testbed {
    fn new(tag: &str, subnet: u8) -> Self {
        let pid = std::process::id();
        let t = Self {
            a: format!("vnft-{pid}-{tag}-a"),
            b: format!("vnft-{pid}-{tag}-b"),
            subnet,
        };
        ip(&["netns", "add", &t.a]);
        ip(&["netns", "add", &t.b]);
        ip(&[
            "-n", &t.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &t.b,
        ]);
        let addr_a = format!("10.99.{subnet}.1/24");
        let addr_b = format!("10.99.{subnet}.2/24");
        ip(&["-n", &t.a, "addr", "add", &addr_a, "dev", "va"]);
        ip(&["-n", &t.b, "addr", "add", &addr_b, "dev", "vb"]);
        for (ns, dev) in [(&t.a, "va"), (&t.b, "vb")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        t
    }

    /// One ping from ns b to a's address; true if answered.
    fn ping_a_from_b(&self) -> bool {
        let dst = format!("10.99.{}.1", self.subnet);
        Command::new("ip")
            .args(["netns", "exec", &self.b, "ping", "-c", "1", "-W", "1", &dst])
            .output()
            .expect("run ping")
            .status
            .success()
    }

    /// Runs `f` on a thread that has joined namespace a.
    fn in_a<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        common::in_ns(&self.a, f)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn icmp_firewall(action: Action) -> ChainConfig {
    ChainConfig {
        functions: vec![FunctionConfig::new(
            "fw",
            FunctionKind::Firewall(FirewallConfig {
                rules: vec![FirewallRule {
                    priority: 1,
                    action,
                    protocol: Some(ICMP),
                    src: Some("10.99.0.0/16".parse().expect("cidr")),
                    dst: None,
                    src_ports: None,
                    dst_ports: None,
                }],
                default_action: Action::Allow,
                ..Default::default()
            }),
        )],
        ..Default::default()
    }
}

/// Attach with `attach`, then check live traffic is dropped / passed by the chain.
fn live_chain(tb: &Testbed, attach: impl FnOnce() -> (Engine, AttachInfo) + Send) -> AttachInfo {
    assert!(tb.ping_a_from_b(), "testbed does not ping without a chain");
    tb.in_a(|| {
        let (mut e, info) = attach();
        let deny = e.apply(&icmp_firewall(Action::Deny)).expect("apply deny");
        assert!(!tb.ping_a_from_b(), "{info:?}: ICMP must be dropped");
        let s = e.function_stats(deny.instances[0]).expect("stats");
        assert!(s.dropped_total() >= 1, "{info:?}: drop not counted: {s:?}");
        let allow = e.apply(&icmp_firewall(Action::Allow)).expect("apply allow");
        assert!(
            tb.ping_a_from_b(),
            "{info:?}: ICMP must pass after re-composition"
        );
        let s = e.function_stats(allow.instances[0]).expect("stats");
        assert!(s.passed >= 1, "{info:?}: pass not counted: {s:?}");
        e.detach().expect("detach");
        info
    })
}

#[test]
fn xdp_native_attach_on_veth_filters_live_traffic() {
    if !privileged() {
        return;
    }
    let tb = Testbed::new("xdp", 1);
    let info = live_chain(&tb, || Engine::load_and_attach("va").expect("attach"));
    assert_eq!(info.hook, Hook::Xdp);
    assert_eq!(
        info.mode, "xdp-native",
        "veth supports native XDP: {info:?}"
    );
    assert!(info.fallback_reasons.is_empty());
    assert!(tb.ping_a_from_b(), "detached: traffic flows again");
}

#[test]
fn tc_attach_filters_live_traffic() {
    if !privileged() {
        return;
    }
    let tb = Testbed::new("tc", 2);
    let info = live_chain(&tb, || {
        let mut e = Engine::load(Hook::Tc).expect("load tc");
        let info = e.attach("va").expect("attach tc");
        (e, info)
    });
    assert_eq!((info.hook, info.mode), (Hook::Tc, "tc-ingress"));
    assert!(tb.ping_a_from_b(), "detached: traffic flows again");
}

#[test]
fn attach_to_missing_interface_reports_every_mode() {
    if !privileged() {
        return;
    }
    let tb = Testbed::new("miss", 3);
    tb.in_a(|| {
        let err = Engine::load_and_attach("does-not-exist").expect_err("must fail");
        let msg = err.to_string();
        for mode in ["xdp-native", "xdp-generic", "tc-ingress"] {
            assert!(msg.contains(mode), "{msg}");
        }
    });
}
