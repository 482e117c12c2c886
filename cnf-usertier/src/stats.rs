//! Counters of the user-space tier: shared atomics the worker updates, and the [`Stats`] snapshot
//! the daemon exports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::frame::DropReason;
use super::poll::Polling;

/// Sub-buckets per power of two in the latency histogram (relative error ≤ 1/8).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Values below this are their own bucket.
const LINEAR: u64 = 2 * SUB as u64;
/// Number of buckets: covers up to 2^40 ns (~18 min).
pub const LATENCY_BUCKETS: usize = LINEAR as usize + (40 - SUB_BITS as usize - 1) * SUB;

/// Bucket of a latency of `ns` nanoseconds (log-linear: 8 buckets per power of two).
pub fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let k = 63 - ns.leading_zeros(); // ns >= 2^(SUB_BITS+1), so k >= SUB_BITS + 1
    let sub = ((ns >> (k - SUB_BITS)) as usize) & (SUB - 1);
    let idx = LINEAR as usize + (k - SUB_BITS - 1) as usize * SUB + sub;
    idx.min(LATENCY_BUCKETS - 1)
}

/// Largest value (inclusive) that falls into bucket `idx`.
pub fn bucket_upper(idx: usize) -> u64 {
    if idx < LINEAR as usize {
        return idx as u64;
    }
    let rel = idx - LINEAR as usize;
    let k = (rel / SUB) as u32 + SUB_BITS + 1;
    let sub = (rel % SUB) as u64;
    let lo = (1u64 << k) + (sub << (k - SUB_BITS));
    lo + (1u64 << (k - SUB_BITS)) - 1
}

/// The shared counters of one tier worker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub dropped: [AtomicU64; DropReason::ALL.len()],
    pub fill_depth: AtomicU64,
    pub rx_depth: AtomicU64,
    pub tx_kicks: AtomicU64,
    pub polls: AtomicU64,
    pub sleeps: AtomicU64,
    pub kernel_rx_dropped: AtomicU64,
    pub kernel_rx_ring_full: AtomicU64,
    pub kernel_fill_empty: AtomicU64,
    pub final_cpu_ns: AtomicU64,
    pub finished: AtomicBool,
    pub latency: Box<[AtomicU64]>,
    pub latency_sum_ns: AtomicU64,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            dropped: std::array::from_fn(|_| AtomicU64::new(0)),
            fill_depth: AtomicU64::new(0),
            rx_depth: AtomicU64::new(0),
            tx_kicks: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            kernel_rx_dropped: AtomicU64::new(0),
            kernel_rx_ring_full: AtomicU64::new(0),
            kernel_fill_empty: AtomicU64::new(0),
            final_cpu_ns: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            latency: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            latency_sum_ns: AtomicU64::new(0),
        }
    }

    pub fn drop(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Relaxed);
    }

    /// Records `n` packets that each took `ns`.
    pub fn latency(&self, ns: u64, n: u64) {
        self.latency[bucket_of(ns)].fetch_add(n, Relaxed);
        self.latency_sum_ns.fetch_add(ns * n, Relaxed);
    }

    pub fn snapshot(&self, polling: Polling, zero_copy: bool, cpu_ns: u64) -> Stats {
        Stats {
            polling,
            zero_copy,
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (*r, self.dropped[r.index()].load(Relaxed)))
                .collect(),
            fill_ring_depth: self.fill_depth.load(Relaxed),
            rx_ring_depth: self.rx_depth.load(Relaxed),
            tx_kicks: self.tx_kicks.load(Relaxed),
            polls: self.polls.load(Relaxed),
            sleeps: self.sleeps.load(Relaxed),
            kernel_rx_dropped: self.kernel_rx_dropped.load(Relaxed),
            kernel_rx_ring_full: self.kernel_rx_ring_full.load(Relaxed),
            kernel_fill_ring_empty: self.kernel_fill_empty.load(Relaxed),
            cpu_ns,
            latency: LatencyHistogram {
                buckets: self.latency.iter().map(|b| b.load(Relaxed)).collect(),
                sum_ns: self.latency_sum_ns.load(Relaxed),
            },
        }
    }
}

/// Per-packet rx→tx latency of the tier: from the moment the worker took the frame off the RX
/// ring to the moment its TX descriptor was handed to the kernel (after the `sendto` kick).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Counts per log-linear bucket (see [`bucket_upper`]).
    pub buckets: Vec<u64>,
    /// Sum of all latencies.
    pub sum_ns: u64,
}

impl LatencyHistogram {
    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Upper bound of the bucket holding quantile `q` (0..=1), or `None` without samples.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_upper(i));
            }
        }
        None
    }

    /// Mean latency.
    pub fn mean_ns(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum_ns as f64 / n as f64)
    }

    /// The samples gained since `earlier`.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        LatencyHistogram {
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
        }
    }
}

/// A snapshot of one tier worker's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// The polling policy.
    pub polling: Polling,
    /// Whether the socket runs in zero-copy mode (else copy mode).
    pub zero_copy: bool,
    /// Frames taken off the RX ring.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames handed to the TX ring.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Drops per reason (every reason listed, zero included).
    pub dropped: Vec<(DropReason, u64)>,
    /// Frames waiting in the fill ring for the kernel (last seen).
    pub fill_ring_depth: u64,
    /// Frames waiting in the RX ring for the worker (last seen).
    pub rx_ring_depth: u64,
    /// `sendto` kicks of the TX ring.
    pub tx_kicks: u64,
    /// `poll(2)` waits (wakeup policy).
    pub polls: u64,
    /// Sleeps (adaptive policy).
    pub sleeps: u64,
    /// Frames the kernel dropped for this socket (`XDP_STATISTICS`).
    pub kernel_rx_dropped: u64,
    /// Frames the kernel dropped because the RX ring was full.
    pub kernel_rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub kernel_fill_ring_empty: u64,
    /// CPU time of the worker thread.
    pub cpu_ns: u64,
    /// rx→tx latency.
    pub latency: LatencyHistogram,
}

impl Stats {
    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }

    /// Drops for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 20, (1 << 20) + 12345, 1 << 35, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b >= last || v > 5000, "monotonic at {v}");
            if v <= 5000 {
                last = b;
            }
            if b < LATENCY_BUCKETS - 1 {
                assert!(bucket_upper(b) >= v, "{v} above its bucket {b}");
                assert!(
                    b == 0 || bucket_upper(b - 1) < v,
                    "{v} below its bucket {b}"
                );
                // relative error at most 1/8
                assert!((bucket_upper(b) - v) * 8 <= v.max(LINEAR), "{v}");
            }
        }
        assert_eq!(bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn quantiles() {
        let s = Shared::new();
        s.latency(1000, 98);
        s.latency(50_000, 2);
        let snap = s.snapshot(Polling::BusyPoll, false, 0);
        let h = &snap.latency;
        assert_eq!(h.count(), 100);
        let p50 = h.quantile_ns(0.5).unwrap();
        assert!((1000..1125).contains(&p50), "{p50}");
        let p99 = h.quantile_ns(0.99).unwrap();
        assert!((50_000..56_250).contains(&p99), "{p99}");
        assert_eq!(h.mean_ns(), Some(1980.0));
        assert_eq!(LatencyHistogram::default().quantile_ns(0.5), None);
        let d = h.since(&LatencyHistogram::default());
        assert_eq!(d.count(), 100);
        assert_eq!(h.since(h).count(), 0);
    }

    #[test]
    fn drops_by_reason() {
        let s = Shared::new();
        s.drop(DropReason::AuthFailed, 3);
        s.drop(DropReason::NotUdp, 1);
        let snap = s.snapshot(Polling::Wakeup, false, 5);
        assert_eq!(snap.dropped(DropReason::AuthFailed), 3);
        assert_eq!(snap.dropped_total(), 4);
        assert_eq!(snap.dropped.len(), DropReason::ALL.len());
        assert_eq!(snap.cpu_ns, 5);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
