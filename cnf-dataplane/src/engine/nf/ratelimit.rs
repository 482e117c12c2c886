//! The token-bucket rate limiter (`ebpf/nf/ratelimit.h`): one global bucket per state id, or a
//! bucket per source address or flow.

use aya::maps::{Array, HashMap as BpfHashMap, MapData};

use super::NetworkFunction;
use crate::engine::abi::{self, RlCfg, RlKey, RlState};
use crate::engine::config::{FunctionKind, RateLimitKey, RateLimiterConfig};
use crate::engine::error::{EngineError, Result};
use crate::engine::maps::{self, map_bundle};

map_bundle! {
    /// The rate limiter: its maps (it keeps nothing else).
    pub(crate) struct RateLimiter {
        cfg: Array<MapData, RlCfg> = CFG("vnf_rl_cfg"),
        buckets: BpfHashMap<MapData, RlKey, RlState> = BUCKETS("vnf_rl_buckets"),
        global: Array<MapData, RlState> = GLOBAL("vnf_rl_global"),
    }
}

impl NetworkFunction for RateLimiter {
    const KIND: u32 = abi::kind::RATELIMIT;
    const PROGRAM: &'static str = "vnf_ratelimit";
    type Maps = Self;
    type Prepared = RlCfg;

    fn new(maps: Self) -> Self {
        maps
    }

    fn prepare(kind: &FunctionKind) -> Option<Result<RlCfg>> {
        match kind {
            FunctionKind::RateLimiter(c) => Some(encode(c)),
            _ => None,
        }
    }

    fn write(&mut self, inst: u32, cfg: &RlCfg, _nr_cpus: usize) -> Result<()> {
        self.cfg
            .set(inst, cfg, 0)
            .map_err(EngineError::map(Self::CFG))
    }

    /// A full global bucket.
    fn reset_state(&mut self, state: u32, _nr_cpus: usize) -> Result<()> {
        self.global
            .set(state, RlState::default(), 0)
            .map_err(EngineError::map(Self::GLOBAL))
    }

    fn purge_state(&mut self, state: u32) -> Result<()> {
        maps::purge_instance(&mut self.buckets, state, Self::BUCKETS)
    }
}

const NS_PER_SEC: u64 = 1_000_000_000;

/// Encodes rates and bursts as the kernel's per-packet arithmetic wants them.
pub(crate) fn encode(c: &RateLimiterConfig) -> Result<RlCfg> {
    let bad = |m: &str| Err(EngineError::Config(format!("rate limiter: {m}")));
    if c.packets_per_sec.is_none() && c.bits_per_sec.is_none() {
        return bad("set packets_per_sec and/or bits_per_sec");
    }
    let mut out = RlCfg {
        key_mode: match c.key {
            RateLimitKey::Global => abi::rl::KEY_GLOBAL,
            RateLimitKey::SourceIp => abi::rl::KEY_SRC,
            RateLimitKey::Flow => abi::rl::KEY_FLOW,
        },
        ..Default::default()
    };
    if let Some(pps) = c.packets_per_sec {
        if pps == 0 || pps > NS_PER_SEC {
            return bad("packets_per_sec must be in 1..=1e9");
        }
        if c.burst_packets == 0 {
            return bad("burst_packets must be at least 1");
        }
        out.pkt_inc_ns = NS_PER_SEC / pps;
        out.pkt_tau_ns = c
            .burst_packets
            .checked_mul(out.pkt_inc_ns)
            .ok_or_else(|| EngineError::Config("rate limiter: packet burst too large".into()))?;
    }
    if let Some(bps) = c.bits_per_sec {
        if bps == 0 {
            return bad("bits_per_sec must be positive");
        }
        if c.burst_bytes < 64 {
            return bad("burst_bytes must be at least 64");
        }
        // the kernel multiplies instead of dividing per packet: ns per byte in 16.16 fixed
        // point (at least 1, i.e. rates up to 5e14 bit/s keep their meaning)
        let q16 = u128::from(8 * NS_PER_SEC) * 65_536 / u128::from(bps);
        out.byte_inc_q16 = u64::try_from(q16.max(1))
            .map_err(|_| EngineError::Config("rate limiter: bit rate too small".into()))?;
        let tau = u128::from(c.burst_bytes) * 8 * u128::from(NS_PER_SEC) / u128::from(bps);
        out.byte_tau_ns = u64::try_from(tau)
            .map_err(|_| EngineError::Config("rate limiter: byte burst too large".into()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratelimit_encoding() {
        let c = RateLimiterConfig {
            packets_per_sec: Some(1000),
            burst_packets: 10,
            bits_per_sec: Some(8_000_000),
            burst_bytes: 15_000,
            ..Default::default()
        };
        let a = encode(&c).expect("valid");
        assert_eq!(a.pkt_tau_ns, 10 * 1_000_000);
        // 15 000 bytes at 1 MB/s
        assert_eq!(a.byte_tau_ns, 15_000_000);
        assert_eq!(a.pkt_inc_ns, 1_000_000);
        // 1 µs per byte at 8 Mbit/s, in 16.16 fixed point
        assert_eq!(a.byte_inc_q16, 1_000 << 16);
        assert!(encode(&RateLimiterConfig::default()).is_err());
        let no_burst = RateLimiterConfig {
            packets_per_sec: Some(5),
            ..Default::default()
        };
        assert!(encode(&no_burst).is_err());
    }
}
