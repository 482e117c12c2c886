//! The forwarder (`ebpf/nf/forwarder.h`): MAC rewrite, TTL, and pass / TX / redirect / drop; the
//! redirect target of an XDP chain sits in the devmap.

use aya::maps::{Array, DevMap, MapData};

use super::NetworkFunction;
use crate::engine::abi::{self, FwdCfg};
use crate::engine::config::{ForwardMode, ForwarderConfig, FunctionKind};
use crate::engine::error::{EngineError, Result};
use crate::engine::maps::map_bundle;

map_bundle! {
    /// The forwarder: its maps (it keeps nothing else).
    pub(crate) struct Forwarder {
        cfg: Array<MapData, FwdCfg> = CFG("vnf_fwd_cfg"),
    }
    xdp {
        /// Redirect targets, by instance.
        devmap: DevMap<MapData> = DEVMAP("vnf_devmap"),
    }
}

impl NetworkFunction for Forwarder {
    const KIND: u32 = abi::kind::FORWARDER;
    const PROGRAM: &'static str = "vnf_forwarder";
    type Maps = Self;
    type Prepared = FwdCfg;

    fn new(maps: Self) -> Self {
        maps
    }

    fn prepare(kind: &FunctionKind) -> Option<Result<FwdCfg>> {
        match kind {
            FunctionKind::Forwarder(c) => Some(encode(c)),
            _ => None,
        }
    }

    fn write(&mut self, inst: u32, cfg: &FwdCfg, _nr_cpus: usize) -> Result<()> {
        if cfg.mode == abi::fwd::REDIRECT
            && let Some(devmap) = self.devmap.as_mut()
        {
            devmap.set(inst, cfg.ifindex, None, 0).map_err(|e| {
                EngineError::Config(format!("devmap entry for ifindex {}: {e}", cfg.ifindex))
            })?;
        }
        self.cfg
            .set(inst, cfg, 0)
            .map_err(EngineError::map(Self::CFG))
    }
}

fn encode(c: &ForwarderConfig) -> Result<FwdCfg> {
    let mut out = FwdCfg::default();
    (out.mode, out.ifindex) = match c.mode {
        ForwardMode::Pass => (abi::fwd::PASS, 0),
        ForwardMode::Tx => (abi::fwd::TX, 0),
        ForwardMode::Redirect { ifindex: 0 } => {
            return Err(EngineError::Config(
                "redirect needs a non-zero ifindex".into(),
            ));
        }
        ForwardMode::Redirect { ifindex } => (abi::fwd::REDIRECT, ifindex),
        ForwardMode::Drop => (abi::fwd::DROP, 0),
    };
    if let Some(m) = c.src_mac {
        out.flags |= abi::fwd::F_SMAC;
        out.smac = m;
    }
    if let Some(m) = c.dst_mac {
        out.flags |= abi::fwd::F_DMAC;
        out.dmac = m;
    }
    if c.decrement_ttl {
        out.flags |= abi::fwd::F_DEC_TTL;
    }
    Ok(out)
}
