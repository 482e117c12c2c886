//! The Maglev load balancer (`ebpf/nf/lb.h`): backends per instance, Maglev tables in one shared
//! pool (the table itself is [`crate::engine::maglev`]).

use std::collections::HashMap;

use aya::maps::{Array, IterableMap, MapData};

use super::NetworkFunction;
use crate::engine::abi::{self, LbBackend, LbCfg};
use crate::engine::batch;
use crate::engine::config::{FunctionKind, LbConfig, MAX_MAGLEV_TABLE};
use crate::engine::error::{EngineError, Result};
use crate::engine::loader::Engine;
use crate::engine::maglev;
use crate::engine::maps::{first_fit, map_bundle};

map_bundle! {
    /// The load balancer's maps.
    pub(crate) struct LbMaps {
        cfg: Array<MapData, LbCfg> = CFG("vnf_lb_cfg"),
        backends: Array<MapData, LbBackend> = BACKENDS("vnf_lb_backends"),
        maglev: Array<MapData, u32> = MAGLEV("vnf_lb_maglev"),
    }
}

/// Validated load-balancer state: config (without its pool region), backends, Maglev table.
pub(crate) struct PreparedLb {
    cfg: LbCfg,
    backends: Vec<LbBackend>,
    table: Vec<u32>,
}

/// The load balancer's maps and the Maglev pool region (offset, size) of each instance.
pub(crate) struct LoadBalancer {
    pub(crate) maps: LbMaps,
    pub(crate) regions: HashMap<u32, (u32, u32)>,
}

impl NetworkFunction for LoadBalancer {
    const KIND: u32 = abi::kind::LB;
    const PROGRAM: &'static str = "vnf_lb";
    type Maps = LbMaps;
    type Prepared = PreparedLb;

    fn new(maps: LbMaps) -> Self {
        Self {
            maps,
            regions: HashMap::new(),
        }
    }

    fn prepare(kind: &FunctionKind) -> Option<Result<PreparedLb>> {
        match kind {
            FunctionKind::LoadBalancer(c) => Some(encode(c)),
            _ => None,
        }
    }

    /// Writes backends, then the Maglev table into a fresh pool region, then the config, then frees
    /// the instance's previous region: every state in between only maps table slots to valid
    /// backends.
    fn write(&mut self, inst: u32, lb: &PreparedLb, _nr_cpus: usize) -> Result<()> {
        let base = inst * abi::LB_MAX_BACKENDS;
        for (i, b) in lb.backends.iter().enumerate() {
            self.maps
                .backends
                .set(base + i as u32, b, 0)
                .map_err(EngineError::map(LbMaps::BACKENDS))?;
        }
        let size = lb.table.len() as u32;
        let off = self.alloc(size)?;
        batch::update_array(self.maps.maglev.map().fd(), LbMaps::MAGLEV, off, &lb.table)?;
        let cfg = LbCfg {
            table_off: off,
            table_size: size,
            ..lb.cfg
        };
        self.maps
            .cfg
            .set(inst, cfg, 0)
            .map_err(EngineError::map(LbMaps::CFG))?;
        self.regions.insert(inst, (off, size));
        Ok(())
    }

    fn release(&mut self, inst: u32) -> Result<()> {
        self.regions.remove(&inst);
        Ok(())
    }
}

impl LoadBalancer {
    /// First-fit region of `size` slots in the Maglev pool, not overlapping any live table.
    fn alloc(&self, size: u32) -> Result<u32> {
        let used = self.regions.values().copied().collect();
        first_fit(used, size, abi::LB_POOL).ok_or_else(|| {
            EngineError::Config(format!(
                "no room for a Maglev table of {size} slots: the pool of {} slots is taken by {} live tables",
                abi::LB_POOL,
                self.regions.len()
            ))
        })
    }
}

/// Validates a load-balancer configuration and computes its Maglev table.
pub(crate) fn encode(c: &LbConfig) -> Result<PreparedLb> {
    check(c)?;
    let mut backends = Vec::with_capacity(c.backends.len());
    let mut ids = Vec::with_capacity(c.backends.len());
    for b in &c.backends {
        let bad = |what: &str| Err(EngineError::Config(format!("backend {}: {what}", b.addr)));
        if b.addr.is_ipv4() != c.vip.is_ipv4() {
            return Err(EngineError::Config(format!(
                "backend {} and VIP {} are of different IP families",
                b.addr, c.vip
            )));
        }
        if b.port == Some(0) {
            return bad("port must be non-zero");
        }
        if b.weight == 0 {
            return bad("weight must be positive");
        }
        let addr = Engine::addr_bytes(b.addr);
        let port = b.port.unwrap_or(0);
        let mut id = addr.to_vec();
        id.extend_from_slice(&port.to_be_bytes());
        ids.push(id);
        backends.push(LbBackend {
            addr,
            port,
            _pad: [0; 2],
        });
    }
    let weights: Vec<u32> = c.backends.iter().map(|b| b.weight).collect();
    let table = maglev::populate_weighted(&ids, &weights, c.table_size as usize)?;
    Ok(PreparedLb {
        cfg: LbCfg {
            family: if c.vip.is_ipv4() { 4 } else { 6 },
            proto: c.protocol.unwrap_or(0),
            vip_port: c.port.unwrap_or(0),
            nr_backends: backends.len() as u32,
            affinity_timeout_ns: u64::try_from(c.affinity_timeout.as_nanos()).unwrap_or(u64::MAX),
            vip: Engine::addr_bytes(c.vip),
            table_off: 0,
            table_size: c.table_size,
        },
        backends,
        table,
    })
}

/// The checks of the whole configuration (backend count, protocol, port, table size).
fn check(c: &LbConfig) -> Result<()> {
    let max = abi::LB_MAX_BACKENDS as usize;
    let bad = |m: String| Err(EngineError::Config(m));
    if c.backends.is_empty() || c.backends.len() > max {
        return bad(format!(
            "load balancer needs 1..={max} backends, got {}",
            c.backends.len()
        ));
    }
    if !matches!(c.protocol, None | Some(6) | Some(17)) {
        return bad("load balancer protocol must be TCP (6) or UDP (17)".into());
    }
    if c.port == Some(0) {
        return bad("load balancer port must be non-zero".into());
    }
    if c.table_size > MAX_MAGLEV_TABLE || !maglev::is_prime(c.table_size) {
        return bad(format!(
            "Maglev table size {} must be a prime of at most {MAX_MAGLEV_TABLE}",
            c.table_size
        ));
    }
    Ok(())
}
