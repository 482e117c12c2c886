//! Shared helpers of cnf-dataplane's tests: everything of the `testkit` crate (root guard and skip rule,
//! namespaces, packet builder, checksum checks, capture, …) under the old `common::` path, plus what needs
//! the engine (hook verdicts, loading).
#![allow(dead_code)]

pub use testkit::*;

use std::time::Duration;

use cnf_dataplane::engine::{
    Action, Engine, FirewallConfig, FirewallRule, FunctionConfig, FunctionKind, Hook,
    LbBackendConfig, LbConfig, NatConfig, NatRule, PortRange,
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub fn load(hook: Hook) -> Engine {
    match Engine::load(hook) {
        Ok(e) => e,
        Err(e) => panic!("loading {hook:?} engine: {e}"),
    }
}

/// Verdict constants of a hook.
#[derive(Clone, Copy, Debug)]
pub struct Verdicts {
    pub pass: u32,
    pub drop: u32,
    pub tx: u32,
    pub redirect: u32,
}

pub fn verdicts(hook: Hook) -> Verdicts {
    match hook {
        Hook::Xdp => Verdicts {
            pass: XDP_PASS,
            drop: XDP_DROP,
            tx: XDP_TX,
            redirect: XDP_REDIRECT,
        },
        Hook::Tc => Verdicts {
            pass: TC_ACT_OK,
            drop: TC_ACT_SHOT,
            tx: TC_ACT_REDIRECT,
            redirect: TC_ACT_REDIRECT,
        },
    }
}

pub const HOOKS: [Hook; 2] = [Hook::Xdp, Hook::Tc];

/// A load balancer for `vip` port 80 (`protocol`: `None` for any) over `backends`, each on port
/// 8080 with weight 1.
pub fn lb_config(vip: &str, protocol: Option<u8>, backends: &[&str]) -> LbConfig {
    LbConfig {
        vip: ip(vip),
        port: Some(80),
        protocol,
        backends: backends
            .iter()
            .map(|b| LbBackendConfig {
                addr: ip(b),
                port: Some(8080),
                weight: 1,
            })
            .collect(),
        affinity_timeout: Duration::from_secs(60),
        table_size: 4093,
    }
}

/// SNAT of sources in `match_src` to `to_addr`, ports `lo..=hi`, 60 s idle timeout.
pub fn snat_config(match_src: &str, to_addr: &str, lo: u16, hi: u16) -> NatConfig {
    NatConfig {
        rules: vec![NatRule::Snat {
            match_src: vec![match_src.parse().expect("cidr")],
            to_addr: ip(to_addr),
            ports: PortRange::new(lo, hi).expect("range"),
        }],
        timeout: Duration::from_secs(60),
    }
}

/// A firewall rule allowing UDP to destination port `port`.
pub fn allow_udp_to(port: u16, priority: u32) -> FirewallRule {
    FirewallRule {
        priority,
        action: Action::Allow,
        protocol: Some(UDP),
        src: None,
        dst: None,
        src_ports: None,
        dst_ports: Some(PortRange::single(port)),
    }
}

/// A firewall "fw" that denies everything.
pub fn deny_all() -> FunctionConfig {
    FunctionConfig::new(
        "fw",
        FunctionKind::Firewall(FirewallConfig {
            default_action: Action::Deny,
            ..Default::default()
        }),
    )
}

/// Two `#[test]`s, `$xdp` and `$tc`, that run `$run(hook, tag)` on each hook when privileged
/// (`tag`, "x" or "t", keeps the two tests' namespace names apart).
#[allow(unused_macros)]
macro_rules! hook_tests {
    ($run:ident: $xdp:ident, $tc:ident) => {
        #[test]
        fn $xdp() {
            if !testkit::privileged() {
                return;
            }
            $run(cnf_dataplane::engine::Hook::Xdp, "x");
        }

        #[test]
        fn $tc() {
            if !testkit::privileged() {
                return;
            }
            $run(cnf_dataplane::engine::Hook::Tc, "t");
        }
    };
}
#[allow(unused_imports)]
pub(crate) use hook_tests;
