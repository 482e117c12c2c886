//! Counters: the chain's (per generation and over its life), each function's, and the readers of
//! function-specific counters (firewall rule hits, monitor classes and keys, NAT and conntrack
//! entries), which read the maps of their function's room (`nf/<function>.rs`).

use std::collections::BTreeMap;

use super::abi::{self, FnStats, MonCounter, MonSample};
use super::error::{EngineError, Result};
use super::loader::Engine;
use super::maps::ChainMaps;

/// Per-function counters summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FunctionStats {
    /// Packets that entered the function.
    pub packets_in: u64,
    /// Bytes that entered the function.
    pub bytes_in: u64,
    /// Packets passed on (or forwarded).
    pub passed: u64,
    /// Function specific (conntrack hits, samples emitted).
    pub aux: u64,
    /// Drops by reason (index = `abi::reason::*`).
    pub dropped: [u64; abi::NR_REASONS],
    /// log2 ns latency histogram (bucket i = [2^i, 2^(i+1)) ns).
    pub latency_hist: [u64; abi::HIST_BUCKETS],
}

impl FunctionStats {
    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Adds `other`, field by field (a carried offset plus the live counters).
    pub fn add(&mut self, other: &FunctionStats) {
        self.packets_in += other.packets_in;
        self.bytes_in += other.bytes_in;
        self.passed += other.passed;
        self.aux += other.aux;
        for (a, b) in self.dropped.iter_mut().zip(&other.dropped) {
            *a += b;
        }
        sum_hist(&mut self.latency_hist, &other.latency_hist);
    }
}

impl From<&FnStats> for FunctionStats {
    /// One CPU's counters.
    fn from(v: &FnStats) -> Self {
        Self {
            packets_in: v.pkts_in,
            bytes_in: v.bytes_in,
            passed: v.passed,
            aux: v.aux,
            dropped: v.dropped,
            latency_hist: v.latency_hist,
        }
    }
}

/// Chain counters summed over CPUs: of one generation ([`Engine::chain_counters`]) or of the chain's
/// whole life ([`Engine::chain_totals`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainCounters {
    /// Packets that matched the classifier.
    pub classified: u64,
    /// Packets that bypassed the chain.
    pub bypassed: u64,
    /// Packets that left the chain with a verdict.
    pub completed: u64,
    /// Failed tail calls.
    pub broken: u64,
    /// Sampled entry-to-verdict latency of every completed packet (either path), log2 ns buckets.
    pub latency_hist: [u64; abi::HIST_BUCKETS],
    /// Of `completed`: packets of established flows that took the fast path
    /// (`ebpf/lib/fastpath.h`): one flow lookup and the recorded result, no tail call. The others
    /// ran the whole chain (the slow path), whose per-function latency the functions' histograms
    /// hold; fast-path packets are in no function's histogram, only in `fast_hist`.
    #[serde(default)]
    pub fast: u64,
    /// Sampled entry-to-verdict latency of the fast-path packets alone, log2 ns buckets.
    #[serde(default = "zero_hist")]
    pub fast_hist: [u64; abi::HIST_BUCKETS],
    /// Packets passed as the pod's own control-plane traffic before the classifier
    /// (`ebpf/lib/control.h`); not kept per generation, so only [`Engine::chain_totals`] fills it.
    #[serde(default)]
    pub control_plane: u64,
}

impl ChainCounters {
    /// `self - base`, field by field (saturating).
    pub(crate) fn since(&self, base: &ChainCounters) -> ChainCounters {
        let mut out = ChainCounters {
            classified: self.classified.saturating_sub(base.classified),
            bypassed: self.bypassed.saturating_sub(base.bypassed),
            completed: self.completed.saturating_sub(base.completed),
            broken: self.broken.saturating_sub(base.broken),
            latency_hist: [0; abi::HIST_BUCKETS],
            fast: self.fast.saturating_sub(base.fast),
            fast_hist: [0; abi::HIST_BUCKETS],
            control_plane: self.control_plane.saturating_sub(base.control_plane),
        };
        for ((o, a), b) in out
            .latency_hist
            .iter_mut()
            .zip(&self.latency_hist)
            .zip(&base.latency_hist)
        {
            *o = a.saturating_sub(*b);
        }
        for ((o, a), b) in out
            .fast_hist
            .iter_mut()
            .zip(&self.fast_hist)
            .zip(&base.fast_hist)
        {
            *o = a.saturating_sub(*b);
        }
        out
    }

    /// Adds `other`, field by field.
    pub(crate) fn add(&mut self, other: &ChainCounters) {
        self.classified += other.classified;
        self.bypassed += other.bypassed;
        self.completed += other.completed;
        self.broken += other.broken;
        self.control_plane += other.control_plane;
        self.fast += other.fast;
        sum_hist(&mut self.latency_hist, &other.latency_hist);
        sum_hist(&mut self.fast_hist, &other.fast_hist);
    }
}

/// An empty histogram (serde default of fields added later).
fn zero_hist() -> [u64; abi::HIST_BUCKETS] {
    [0; abi::HIST_BUCKETS]
}

/// Adds histogram `h` to `acc`, bucket by bucket.
pub(crate) fn sum_hist(acc: &mut [u64; abi::HIST_BUCKETS], h: &[u64; abi::HIST_BUCKETS]) {
    for (a, b) in acc.iter_mut().zip(h) {
        *a += b;
    }
}

impl Engine {
    /// Counters of one function instance, summed over CPUs.
    pub fn function_stats(&self, instance: u32) -> Result<FunctionStats> {
        let per_cpu = self
            .maps
            .stats
            .get(&self.state(instance), 0)
            .map_err(EngineError::map(ChainMaps::STATS))?;
        let mut s = FunctionStats::default();
        for v in per_cpu.iter() {
            s.add(&FunctionStats::from(v));
        }
        Ok(s)
    }

    /// Chain counters of a generation (slot set 0 or 1) since it was last activated, summed over CPUs.
    pub fn chain_counters(&self, generation: u32) -> Result<ChainCounters> {
        let g = generation & 1;
        Ok(self
            .raw_chain_counters(g)?
            .since(&self.gen_base[g as usize]))
    }

    /// The chain's counters over its whole life (both slot sets, every generation, and the control-plane
    /// passes), summed over CPUs. They live in the (pinned) maps and are never zeroed, so they only grow,
    /// across updates and re-adoptions.
    pub fn chain_totals(&self) -> Result<ChainCounters> {
        let mut c = self.raw_chain_counters(0)?;
        c.add(&self.raw_chain_counters(1)?);
        c.control_plane = self.control_plane_passes()?;
        Ok(c)
    }

    /// Packets passed as the pod's own control-plane traffic (`ebpf/lib/control.h`).
    pub fn control_plane_passes(&self) -> Result<u64> {
        let per_cpu = self
            .maps
            .ctl_stats
            .get(&0, 0)
            .map_err(EngineError::map(ChainMaps::CTL_STATS))?;
        Ok(per_cpu.iter().sum())
    }

    /// The raw (never zeroed) counters of slot set `g`, summed over CPUs.
    pub(super) fn raw_chain_counters(&self, g: u32) -> Result<ChainCounters> {
        let per_cpu = self
            .maps
            .chain_stats
            .get(&g, 0)
            .map_err(EngineError::map(ChainMaps::CHAIN_STATS))?;
        let mut c = ChainCounters::default();
        for v in per_cpu.iter() {
            c.classified += v.classified;
            c.bypassed += v.bypassed;
            c.completed += v.completed;
            c.broken += v.broken;
            c.fast += v.fast;
            sum_hist(&mut c.latency_hist, &v.latency_hist);
            sum_hist(&mut c.fast_hist, &v.fast_hist);
        }
        Ok(c)
    }

    /// Hit counters of a firewall instance's rules, in priority order.
    pub fn firewall_rule_hits(&self, instance: u32) -> Result<Vec<u64>> {
        let hits = self.nf.firewall.rule_hits(instance)?;
        if self.live.get(&instance) != Some(&abi::kind::FIREWALL) {
            return Err(EngineError::UnknownInstance(instance));
        }
        Ok(hits)
    }

    /// Hit counters of a firewall instance summed per rule priority: every
    /// engine rule compiled from one API rule carries that rule's index as
    /// its priority, so this is the hit count of each API rule.
    pub fn firewall_hits_by_priority(&self, instance: u32) -> Result<BTreeMap<u32, u64>> {
        let hits = self.firewall_rule_hits(instance)?;
        self.nf
            .firewall
            .hits_by_priority(instance, hits)
            .ok_or(EngineError::UnknownInstance(instance))
    }

    /// Keyed counters of a monitor counting by destination port or DSCP:
    /// key -> counters summed over CPUs (keys `abi::mon_by::NO_PORT` /
    /// `abi::mon_by::NO_DSCP` count packets without a port / non-IP frames).
    pub fn monitor_keyed(&self, instance: u32) -> Result<BTreeMap<u32, MonCounter>> {
        self.nf.monitor.keyed(self.state(instance))
    }

    /// Per-class counters of a monitor instance (index = `abi::mon::*`).
    pub fn monitor_classes(&self, instance: u32) -> Result<Vec<MonCounter>> {
        self.nf.monitor.classes(self.state(instance))
    }

    /// Drains the monitor ring buffer.
    pub fn drain_samples(&mut self) -> Vec<MonSample> {
        self.nf.monitor.drain_samples()
    }

    /// Translation entries (one per flow direction) of a NAT instance.
    pub fn nat_entries(&self, instance: u32) -> usize {
        self.nf.nat.entries(self.state(instance))
    }

    /// Number of tracked connections of a firewall instance.
    pub fn conntrack_entries(&self, instance: u32) -> usize {
        self.nf.firewall.conntrack_entries(self.state(instance))
    }
}
