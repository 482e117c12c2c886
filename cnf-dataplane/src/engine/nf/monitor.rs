//! The monitor (`ebpf/nf/monitor.h`): per-class or keyed (destination port, DSCP) counters and
//! sampled packet metadata on a ring buffer.

use std::collections::BTreeMap;

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf};

use super::NetworkFunction;
use crate::engine::abi::{self, MonCfg, MonCounter, MonKey, MonSample};
use crate::engine::config::{CountBy, FunctionKind};
use crate::engine::error::{EngineError, Result};
use crate::engine::maps::{ignore_missing, map_bundle};

map_bundle! {
    /// The monitor: its maps (it keeps nothing else).
    pub(crate) struct Monitor {
        cfg: Array<MapData, MonCfg> = CFG("vnf_mon_cfg"),
        classes: PerCpuArray<MapData, MonCounter> = CLASSES("vnf_mon_classes"),
        keyed: PerCpuHashMap<MapData, MonKey, MonCounter> = KEYED("vnf_mon_keyed"),
        samples: RingBuf<MapData> = SAMPLES("vnf_samples"),
    }
}

impl NetworkFunction for Monitor {
    const KIND: u32 = abi::kind::MONITOR;
    const PROGRAM: &'static str = "vnf_monitor";
    type Maps = Self;
    type Prepared = MonCfg;

    fn new(maps: Self) -> Self {
        maps
    }

    fn prepare(kind: &FunctionKind) -> Option<Result<MonCfg>> {
        let FunctionKind::Monitor(c) = kind else {
            return None;
        };
        Some(Ok(MonCfg {
            sample_rate: c.sample_rate,
            count_by: match c.count_by {
                CountBy::Protocol => abi::mon_by::CLASS,
                CountBy::DestinationPort => abi::mon_by::DPORT,
                CountBy::Dscp => abi::mon_by::DSCP,
            },
            _pad: [0; 3],
        }))
    }

    /// What the counters' keys mean: a monitor that counts by something else starts afresh.
    fn state_class(cfg: &MonCfg) -> u32 {
        u32::from(cfg.count_by)
    }

    fn write(&mut self, inst: u32, cfg: &MonCfg, _nr_cpus: usize) -> Result<()> {
        self.cfg
            .set(inst, cfg, 0)
            .map_err(EngineError::map(Self::CFG))
    }

    /// Zeroed class counters.
    fn reset_state(&mut self, state: u32, nr_cpus: usize) -> Result<()> {
        for c in 0..abi::MON_CLASSES {
            self.classes
                .set(
                    state * abi::MON_CLASSES + c,
                    PerCpuValues::try_from(vec![MonCounter::default(); nr_cpus])?,
                    0,
                )
                .map_err(EngineError::map(Self::CLASSES))?;
        }
        Ok(())
    }

    /// Drops the keyed counters.
    fn purge_state(&mut self, state: u32) -> Result<()> {
        let keys: Vec<MonKey> = self
            .keyed
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == state)
            .collect();
        for k in keys {
            ignore_missing(self.keyed.remove(&k), Self::KEYED)?;
        }
        Ok(())
    }
}

impl Monitor {
    /// Keyed counters of state id `state`, summed over CPUs.
    pub(crate) fn keyed(&self, state: u32) -> Result<BTreeMap<u32, MonCounter>> {
        let mut out = BTreeMap::new();
        for item in self.keyed.iter() {
            let (k, per_cpu) = item.map_err(EngineError::map(Self::KEYED))?;
            if k.instance != state {
                continue;
            }
            let e: &mut MonCounter = out.entry(k.value).or_default();
            for v in per_cpu.iter() {
                e.packets += v.packets;
                e.bytes += v.bytes;
            }
        }
        Ok(out)
    }

    /// Per-class counters of state id `state` (index = `abi::mon::*`), summed over CPUs.
    pub(crate) fn classes(&self, state: u32) -> Result<Vec<MonCounter>> {
        (0..abi::MON_CLASSES)
            .map(|c| {
                self.classes
                    .get(&(state * abi::MON_CLASSES + c), 0)
                    .map(|v| {
                        v.iter().fold(MonCounter::default(), |a, b| MonCounter {
                            packets: a.packets + b.packets,
                            bytes: a.bytes + b.bytes,
                        })
                    })
                    .map_err(EngineError::map(Self::CLASSES))
            })
            .collect()
    }

    /// Drains the sample ring buffer.
    pub(crate) fn drain_samples(&mut self) -> Vec<MonSample> {
        let mut out = Vec::new();
        while let Some(item) = self.samples.next() {
            if let Some(s) = MonSample::from_bytes(&item) {
                out.push(s);
            }
        }
        out
    }
}
