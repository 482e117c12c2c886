//! Shared helpers of cnf-dataplane's tests: everything of the `testkit` crate (root guard and skip rule,
//! namespaces, packet builder, checksum checks, capture, …) under the old `common::` path, plus what needs
//! the engine (hook verdicts, loading).
#![allow(dead_code)]

pub use testkit::*;

use cnf_dataplane::engine::{Engine, Hook};

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
