//! Receiver statistics: per-stream sequence tracking (loss, reordering, duplicates) with a
//! sliding bitmap window, one-way latency / RTT in an HDR histogram, and jitter.
//!
//! Definitions used throughout (all per stream, then summed):
//! - **expected** = `highest - lowest + 1` over the sequence numbers seen (wrap-around safe:
//!   distances are taken modulo 2^64 and read as signed). Packets lost *after* the last one
//!   received are invisible to a receiver alone; compare with the sender's count for those.
//! - **lost** = expected − unique packets received.
//! - **duplicate**: a sequence number already seen inside the window.
//! - **reordered**: a packet that arrives after a higher sequence number of its stream
//!   (RFC 4737 "reordered"); its distance behind the highest seen is tracked as well.
//! - **out_of_window**: a packet more than `window` sequence numbers behind the highest seen;
//!   the bitmap no longer covers it, so it is counted as a (very late) unique arrival.
//! - **jitter**: both the RFC 3550 §6.4.1 smoothed estimator `J += (|D| - J)/16` and the plain
//!   mean of `|D|`, where `D` is the change of transit time (rx − tx) between consecutive
//!   arrivals of a stream. The aggregate RFC 3550 value is the maximum over streams; the
//!   aggregate mean |D| is weighted by the number of differences.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;
use thiserror::Error;

use crate::payload::{Header, PayloadError};

/// Highest latency the histograms can hold: one hour in ns. Larger values are clamped.
pub const MAX_TRACKABLE_NS: u64 = 3_600_000_000_000;

/// Default sequence window per stream, in sequence numbers.
pub const DEFAULT_WINDOW: u64 = 1 << 16;

/// Errors building statistics objects.
#[derive(Debug, Error)]
pub enum StatsError {
    /// The window must be a power of two of at least 64.
    #[error("sequence window {0} must be a power of two >= 64")]
    BadWindow(u64),
    /// The histogram could not be created.
    #[error("histogram: {0}")]
    Histogram(String),
}

/// What one sequence number meant to a [`SeqTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The first packet of the stream.
    First,
    /// Exactly the next sequence number.
    InOrder,
    /// Ahead of the next expected one; `missing` numbers were skipped (maybe only delayed).
    Gap {
        /// How many sequence numbers were skipped.
        missing: u64,
    },
    /// Behind the highest seen and not seen before: a reordered packet.
    Late {
        /// How far behind the highest sequence number seen it was.
        distance: u64,
    },
    /// Already seen (inside the window).
    Duplicate,
    /// Too far behind to tell; counted as a unique late arrival.
    OutOfWindow,
}

/// Sliding-window bookkeeping of one stream's sequence numbers.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    bits: Vec<u64>,
    window: u64,
    started: bool,
    highest: u64,
    lowest: u64,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    out_of_window: u64,
    max_reorder_distance: u64,
}

impl SeqTracker {
    /// A tracker whose bitmap covers `window` sequence numbers (a power of two >= 64).
    pub fn new(window: u64) -> Result<Self, StatsError> {
        if window < 64 || !window.is_power_of_two() {
            return Err(StatsError::BadWindow(window));
        }
        let words = usize::try_from(window / 64).map_err(|_| StatsError::BadWindow(window))?;
        Ok(Self {
            bits: vec![0; words],
            window,
            started: false,
            highest: 0,
            lowest: 0,
            unique: 0,
            duplicates: 0,
            reordered: 0,
            out_of_window: 0,
            max_reorder_distance: 0,
        })
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let bit = seq & (self.window - 1);
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn test_and_set(&mut self, seq: u64) -> bool {
        let (w, m) = self.slot(seq);
        let was = self.bits[w] & m != 0;
        self.bits[w] |= m;
        was
    }

    fn clear(&mut self, seq: u64) {
        let (w, m) = self.slot(seq);
        self.bits[w] &= !m;
    }

    /// Records one arrival of `seq` and says what it was.
    pub fn observe(&mut self, seq: u64) -> SeqEvent {
        if !self.started {
            self.started = true;
            self.highest = seq;
            self.lowest = seq;
            self.unique = 1;
            self.test_and_set(seq);
            return SeqEvent::First;
        }
        let ahead = seq.wrapping_sub(self.highest) as i64;
        if ahead > 0 {
            let ahead = ahead as u64;
            if ahead >= self.window {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for s in 1..ahead {
                    self.clear(self.highest.wrapping_add(s));
                }
            }
            self.clear(seq);
            self.test_and_set(seq);
            self.highest = seq;
            self.unique += 1;
            return if ahead == 1 {
                SeqEvent::InOrder
            } else {
                SeqEvent::Gap { missing: ahead - 1 }
            };
        }
        if ahead == 0 {
            self.duplicates += 1;
            return SeqEvent::Duplicate;
        }
        let distance = self.highest.wrapping_sub(seq);
        // Behind the lowest seen so far: the stream started earlier than we thought.
        if (seq.wrapping_sub(self.lowest) as i64) < 0 {
            self.lowest = seq;
        }
        if distance >= self.window {
            self.out_of_window += 1;
            self.unique += 1;
            return SeqEvent::OutOfWindow;
        }
        if self.test_and_set(seq) {
            self.duplicates += 1;
            return SeqEvent::Duplicate;
        }
        self.unique += 1;
        self.reordered += 1;
        self.max_reorder_distance = self.max_reorder_distance.max(distance);
        SeqEvent::Late { distance }
    }

    /// `highest - lowest + 1`, or 0 before the first packet.
    pub fn expected(&self) -> u64 {
        if self.started {
            self.highest.wrapping_sub(self.lowest).saturating_add(1)
        } else {
            0
        }
    }

    /// Unique sequence numbers received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// `expected - unique` (never negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique)
    }

    /// Duplicates seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Late (reordered) arrivals inside the window.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Arrivals too far behind for the window.
    pub fn out_of_window(&self) -> u64 {
        self.out_of_window
    }

    /// Largest distance behind the highest sequence number of a late arrival.
    pub fn max_reorder_distance(&self) -> u64 {
        self.max_reorder_distance
    }

    /// Highest sequence number seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.started.then_some(self.highest)
    }
}

/// Jitter of one stream: RFC 3550 smoothed estimator plus mean |D|.
#[derive(Debug, Clone, Default)]
pub struct Jitter {
    last_transit: Option<i128>,
    rfc3550: f64,
    sum_abs_d: u128,
    n_d: u64,
}

impl Jitter {
    /// Feeds one arrival (`tx_ns`, `rx_ns`), in arrival order.
    pub fn observe(&mut self, tx_ns: u64, rx_ns: u64) {
        let transit = i128::from(rx_ns) - i128::from(tx_ns);
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).unsigned_abs();
            self.rfc3550 += (d as f64 - self.rfc3550) / 16.0;
            self.sum_abs_d += d;
            self.n_d += 1;
        }
        self.last_transit = Some(transit);
    }

    /// RFC 3550 §6.4.1 interarrival jitter, ns.
    pub fn rfc3550_ns(&self) -> f64 {
        self.rfc3550
    }

    /// Mean |D| (IPDV between consecutive arrivals), ns; 0 with fewer than two arrivals.
    pub fn mean_abs_d_ns(&self) -> f64 {
        if self.n_d == 0 {
            0.0
        } else {
            self.sum_abs_d as f64 / self.n_d as f64
        }
    }
}

/// Latency percentiles, ns.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Minimum.
    pub min_ns: u64,
    /// Mean.
    pub mean_ns: f64,
    /// Standard deviation.
    pub stddev_ns: f64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Maximum.
    pub max_ns: u64,
}

impl LatencySummary {
    /// Summarises a histogram (all zero when it is empty).
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean(),
            stddev_ns: h.stdev(),
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }
}

fn new_histogram() -> Result<Histogram<u64>, StatsError> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3)
        .map_err(|e| StatsError::Histogram(e.to_string()))
}

/// Everything known about one stream.
#[derive(Debug, Clone)]
pub struct StreamStats {
    /// Sequence bookkeeping.
    pub seq: SeqTracker,
    /// Jitter estimators.
    pub jitter: Jitter,
    /// Packets received, duplicates included.
    pub packets: u64,
}

/// Per-stream summary for reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamSummary {
    /// Stream id.
    pub stream_id: u32,
    /// Packets received (duplicates included).
    pub packets: u64,
    /// Unique sequence numbers received.
    pub unique: u64,
    /// Expected from the sequence range.
    pub expected: u64,
    /// Lost (expected − unique).
    pub lost: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Reordered (late) arrivals.
    pub reordered: u64,
    /// Largest reorder distance.
    pub max_reorder_distance: u64,
    /// Arrivals behind the window.
    pub out_of_window: u64,
    /// RFC 3550 jitter, ns.
    pub jitter_rfc3550_ns: f64,
    /// Mean |D|, ns.
    pub ipdv_mean_abs_ns: f64,
}

/// Whole-receiver summary, the `--json` output of `pktgen recv` (and of the RTT side of
/// `pktgen send --rtt`, where the latency is the round-trip time).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RxSummary {
    /// Packets received that carried a pktgen header (duplicates included).
    pub packets: u64,
    /// Payload bytes of those packets.
    pub bytes: u64,
    /// Datagrams without a valid pktgen header (ignored otherwise).
    pub foreign: u64,
    /// Datagrams the kernel dropped at the receiving socket(s) because the buffer was full
    /// (`SO_MEMINFO`). They are part of `lost`, but the loss happened at the receiver, not in
    /// the path being measured. Filled in by the socket loops; 0 from [`RxStats::summary`].
    pub socket_drops: u64,
    /// Unique sequence numbers, summed over streams.
    pub unique: u64,
    /// Expected packets from the sequence ranges, summed over streams.
    pub expected: u64,
    /// Lost, summed over streams.
    pub lost: u64,
    /// `lost / expected` (0 when nothing was expected).
    pub loss_ratio: f64,
    /// Duplicates, summed.
    pub duplicates: u64,
    /// Reordered arrivals, summed.
    pub reordered: u64,
    /// Out-of-window arrivals, summed.
    pub out_of_window: u64,
    /// Largest reorder distance over all streams.
    pub max_reorder_distance: u64,
    /// Arrivals whose rx timestamp was earlier than their tx timestamp (clock misuse).
    pub clock_anomalies: u64,
    /// Latency (one-way for `recv`, round trip for `send --rtt`) over all unique arrivals.
    pub latency: LatencySummary,
    /// RFC 3550 jitter: maximum over streams, ns.
    pub jitter_rfc3550_ns: f64,
    /// Mean |D| over all streams, ns.
    pub ipdv_mean_abs_ns: f64,
    /// Seconds from the first to the last packet received.
    pub active_secs: f64,
    /// Per-stream details, ordered by stream id.
    pub streams: Vec<StreamSummary>,
}

/// A once-per-interval view for live progress.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Interval {
    /// Packets received in the interval.
    pub packets: u64,
    /// Payload bytes received in the interval.
    pub bytes: u64,
    /// Total lost so far.
    pub lost_total: u64,
    /// Latency summary of the interval only.
    pub latency: LatencySummary,
}

/// Receiver statistics over all streams.
#[derive(Debug, Clone)]
pub struct RxStats {
    template: SeqTracker,
    streams: BTreeMap<u32, StreamStats>,
    latency: Histogram<u64>,
    interval_latency: Histogram<u64>,
    packets: u64,
    bytes: u64,
    interval_packets: u64,
    interval_bytes: u64,
    foreign: u64,
    clock_anomalies: u64,
    first_rx_ns: Option<u64>,
    last_rx_ns: u64,
}

impl RxStats {
    /// Statistics with a `window`-sized sequence bitmap per stream.
    pub fn new(window: u64) -> Result<Self, StatsError> {
        Ok(Self {
            template: SeqTracker::new(window)?,
            streams: BTreeMap::new(),
            latency: new_histogram()?,
            interval_latency: new_histogram()?,
            packets: 0,
            bytes: 0,
            interval_packets: 0,
            interval_bytes: 0,
            foreign: 0,
            clock_anomalies: 0,
            first_rx_ns: None,
            last_rx_ns: 0,
        })
    }

    /// Decodes `payload` and records it as received at `rx_ns`. Datagrams that are not pktgen
    /// packets are counted as foreign and returned as an error.
    pub fn record_payload(&mut self, payload: &[u8], rx_ns: u64) -> Result<SeqEvent, PayloadError> {
        match Header::decode(payload) {
            Ok(h) => Ok(self.record(&h, payload.len(), rx_ns)),
            Err(e) => {
                self.foreign += 1;
                Err(e)
            }
        }
    }

    /// Records one decoded header of a `len`-byte payload received at `rx_ns`.
    pub fn record(&mut self, h: &Header, len: usize, rx_ns: u64) -> SeqEvent {
        let template = &self.template;
        let stream = self
            .streams
            .entry(h.stream_id)
            .or_insert_with(|| StreamStats {
                seq: template.clone(),
                jitter: Jitter::default(),
                packets: 0,
            });
        stream.packets += 1;
        self.packets += 1;
        self.interval_packets += 1;
        self.bytes += len as u64;
        self.interval_bytes += len as u64;
        self.first_rx_ns.get_or_insert(rx_ns);
        self.last_rx_ns = self.last_rx_ns.max(rx_ns);
        let ev = stream.seq.observe(h.seq);
        if ev != SeqEvent::Duplicate {
            stream.jitter.observe(h.tx_ns, rx_ns);
            if rx_ns < h.tx_ns {
                self.clock_anomalies += 1;
            }
            let lat = rx_ns.saturating_sub(h.tx_ns).clamp(1, MAX_TRACKABLE_NS);
            // In range by construction, so recording cannot fail.
            let _ = self.latency.record(lat);
            let _ = self.interval_latency.record(lat);
        }
        ev
    }

    /// Counts one datagram or stream that was not pktgen traffic.
    pub fn count_foreign(&mut self) {
        self.foreign += 1;
    }

    /// Packets received so far (duplicates included).
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Unique packets so far, summed over streams.
    pub fn unique(&self) -> u64 {
        self.streams.values().map(|s| s.seq.unique()).sum()
    }

    /// Lost so far, summed over streams.
    pub fn lost(&self) -> u64 {
        self.streams.values().map(|s| s.seq.lost()).sum()
    }

    /// Per-stream state.
    pub fn streams(&self) -> &BTreeMap<u32, StreamStats> {
        &self.streams
    }

    /// Returns the counters and latency of the interval since the previous call, and resets them.
    pub fn take_interval(&mut self) -> Interval {
        let iv = Interval {
            packets: self.interval_packets,
            bytes: self.interval_bytes,
            lost_total: self.lost(),
            latency: LatencySummary::from_histogram(&self.interval_latency),
        };
        self.interval_packets = 0;
        self.interval_bytes = 0;
        self.interval_latency.reset();
        iv
    }

    /// The summary of everything recorded.
    pub fn summary(&self) -> RxSummary {
        let streams: Vec<StreamSummary> = self
            .streams
            .iter()
            .map(|(&id, s)| StreamSummary {
                stream_id: id,
                packets: s.packets,
                unique: s.seq.unique(),
                expected: s.seq.expected(),
                lost: s.seq.lost(),
                duplicates: s.seq.duplicates(),
                reordered: s.seq.reordered(),
                max_reorder_distance: s.seq.max_reorder_distance(),
                out_of_window: s.seq.out_of_window(),
                jitter_rfc3550_ns: s.jitter.rfc3550_ns(),
                ipdv_mean_abs_ns: s.jitter.mean_abs_d_ns(),
            })
            .collect();
        let expected: u64 = streams.iter().map(|s| s.expected).sum();
        let lost: u64 = streams.iter().map(|s| s.lost).sum();
        let (sum_d, n_d) = self.streams.values().fold((0u128, 0u64), |(a, n), s| {
            (a + s.jitter.sum_abs_d, n + s.jitter.n_d)
        });
        RxSummary {
            packets: self.packets,
            bytes: self.bytes,
            foreign: self.foreign,
            socket_drops: 0,
            unique: streams.iter().map(|s| s.unique).sum(),
            expected,
            lost,
            loss_ratio: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            duplicates: streams.iter().map(|s| s.duplicates).sum(),
            reordered: streams.iter().map(|s| s.reordered).sum(),
            out_of_window: streams.iter().map(|s| s.out_of_window).sum(),
            max_reorder_distance: streams
                .iter()
                .map(|s| s.max_reorder_distance)
                .max()
                .unwrap_or(0),
            clock_anomalies: self.clock_anomalies,
            latency: LatencySummary::from_histogram(&self.latency),
            jitter_rfc3550_ns: streams
                .iter()
                .map(|s| s.jitter_rfc3550_ns)
                .fold(0.0, f64::max),
            ipdv_mean_abs_ns: if n_d == 0 {
                0.0
            } else {
                sum_d as f64 / n_d as f64
            },
            active_secs: self
                .first_rx_ns
                .map(|f| self.last_rx_ns.saturating_sub(f) as f64 / 1e9)
                .unwrap_or(0.0),
            streams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut SeqTracker, seqs: &[u64]) -> Vec<SeqEvent> {
        seqs.iter().map(|&s| t.observe(s)).collect()
    }

    fn tracker() -> SeqTracker {
        SeqTracker::new(64).expect("valid window")
    }

    #[test]
    fn rejects_bad_windows() {
        assert!(SeqTracker::new(0).is_err());
        assert!(SeqTracker::new(32).is_err());
        assert!(SeqTracker::new(100).is_err());
        assert!(RxStats::new(1000).is_err());
        assert!(SeqTracker::new(128).is_ok());
    }

    #[test]
    fn in_order_stream_has_no_loss_reordering_or_duplicates() {
        let mut t = tracker();
        let seqs: Vec<u64> = (0..1000).collect();
        let ev = feed(&mut t, &seqs);
        assert_eq!(ev[0], SeqEvent::First);
        assert!(ev[1..].iter().all(|e| *e == SeqEvent::InOrder));
        assert_eq!((t.expected(), t.unique(), t.lost()), (1000, 1000, 0));
        assert_eq!(
            (t.duplicates(), t.reordered(), t.out_of_window()),
            (0, 0, 0)
        );
        assert_eq!(t.highest(), Some(999));
    }

    #[test]
    fn gaps_count_as_loss_until_the_missing_packets_arrive() {
        let mut t = tracker();
        let ev = feed(&mut t, &[0, 1, 5, 6]);
        assert_eq!(ev[2], SeqEvent::Gap { missing: 3 });
        assert_eq!((t.expected(), t.unique(), t.lost()), (7, 4, 3));
        // 3 turns up late: one fewer lost, one reordered.
        assert_eq!(t.observe(3), SeqEvent::Late { distance: 3 });
        assert_eq!(
            (t.lost(), t.reordered(), t.max_reorder_distance()),
            (2, 1, 3)
        );
    }

    #[test]
    fn swaps_are_reordering_not_loss() {
        let mut t = tracker();
        let ev = feed(&mut t, &[0, 2, 1, 3, 5, 4]);
        assert_eq!(ev[2], SeqEvent::Late { distance: 1 });
        assert_eq!(ev[5], SeqEvent::Late { distance: 1 });
        assert_eq!((t.expected(), t.unique(), t.lost()), (6, 6, 0));
        assert_eq!((t.reordered(), t.duplicates()), (2, 0));
    }

    #[test]
    fn duplicates_are_detected_at_the_head_and_inside_the_window() {
        let mut t = tracker();
        let ev = feed(&mut t, &[0, 1, 1, 2, 0, 2, 3]);
        assert_eq!(ev[2], SeqEvent::Duplicate);
        assert_eq!(ev[4], SeqEvent::Duplicate);
        assert_eq!(ev[5], SeqEvent::Duplicate);
        assert_eq!(
            (t.unique(), t.duplicates(), t.lost(), t.reordered()),
            (4, 3, 0, 0)
        );
    }

    #[test]
    fn window_slides_and_forgets_old_sequence_numbers() {
        let mut t = tracker();
        t.observe(0);
        // Jump ahead by more than the window: old bits must be cleared, not aliased.
        assert_eq!(t.observe(200), SeqEvent::Gap { missing: 199 });
        // 137 is 63 behind: inside the window and never seen, so late rather than a duplicate.
        assert_eq!(t.observe(137), SeqEvent::Late { distance: 63 });
        assert_eq!(t.observe(137), SeqEvent::Duplicate);
        // 64 behind is outside a 64-wide window.
        assert_eq!(t.observe(136), SeqEvent::OutOfWindow);
        assert_eq!(t.observe(0), SeqEvent::OutOfWindow);
        assert_eq!(t.out_of_window(), 2);
        // A small step ahead clears exactly the bits it passes over.
        assert_eq!(t.observe(202), SeqEvent::Gap { missing: 1 });
        assert_eq!(t.observe(201), SeqEvent::Late { distance: 1 });
        assert_eq!(t.observe(201), SeqEvent::Duplicate);
    }

    #[test]
    fn sequence_wrap_around_is_handled() {
        let mut t = tracker();
        let start = u64::MAX - 2;
        let seqs = [start, start + 1, start + 2, 0, 2, 1];
        let ev = feed(&mut t, &seqs);
        assert_eq!(ev[3], SeqEvent::InOrder);
        assert_eq!(ev[4], SeqEvent::Gap { missing: 1 });
        assert_eq!(ev[5], SeqEvent::Late { distance: 1 });
        assert_eq!(
            (t.expected(), t.unique(), t.lost(), t.reordered()),
            (6, 6, 0, 1)
        );
    }

    #[test]
    fn packets_before_the_first_seen_extend_the_expected_range() {
        let mut t = tracker();
        feed(&mut t, &[5, 6, 3]);
        assert_eq!((t.expected(), t.unique(), t.lost()), (4, 3, 1));
    }

    #[test]
    fn jitter_is_zero_for_constant_transit_and_follows_rfc3550() {
        let mut j = Jitter::default();
        for i in 0..10u64 {
            j.observe(i * 1000, i * 1000 + 500);
        }
        assert_eq!(j.rfc3550_ns(), 0.0);
        assert_eq!(j.mean_abs_d_ns(), 0.0);
        let mut j = Jitter::default();
        // Transit alternates 100, 300, 100: |D| = 200 twice.
        j.observe(0, 100);
        j.observe(1000, 1300);
        j.observe(2000, 2100);
        assert_eq!(j.mean_abs_d_ns(), 200.0);
        let j1 = 200.0 / 16.0;
        let j2 = j1 + (200.0 - j1) / 16.0;
        assert!((j.rfc3550_ns() - j2).abs() < 1e-9);
    }

    fn payload(stream: u32, seq: u64, tx: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        Header::new(stream, seq, tx).encode(&mut b).expect("fits");
        b
    }

    #[test]
    fn rx_stats_combine_streams_latency_and_foreign_packets() {
        let mut s = RxStats::new(DEFAULT_WINDOW).expect("valid");
        // Stream 1: seq 0..100, latency 1..=100 us. Stream 2: 0,1,3 (one lost), a duplicate.
        for i in 0..100u64 {
            let tx = 1_000_000 + i * 10_000;
            s.record_payload(&payload(1, i, tx), tx + (i + 1) * 1000)
                .expect("ours");
        }
        for (seq, lat) in [(0u64, 5000u64), (1, 5000), (3, 5000), (3, 5000)] {
            s.record_payload(&payload(2, seq, 10), 10 + lat)
                .expect("ours");
        }
        assert!(
            s.record_payload(b"not a pktgen packet at all, sorry", 1)
                .is_err()
        );
        let sum = s.summary();
        assert_eq!(sum.packets, 104);
        assert_eq!(sum.bytes, 104 * 64);
        assert_eq!(sum.foreign, 1);
        assert_eq!((sum.unique, sum.expected, sum.lost), (103, 104, 1));
        assert_eq!(sum.duplicates, 1);
        assert_eq!(sum.streams.len(), 2);
        assert_eq!(sum.streams[1].lost, 1);
        // Duplicates are not recorded as latency samples.
        assert_eq!(sum.latency.count, 103);
        let l = &sum.latency;
        assert!(l.min_ns >= 999 && l.min_ns <= 1001, "min {}", l.min_ns);
        assert!(
            l.max_ns >= 99_900 && l.max_ns <= 100_100,
            "max {}",
            l.max_ns
        );
        // 50th of 103 samples: 3 at 5 us plus 1..=100 us -> around 49-50 us.
        assert!(l.p50_ns >= 48_000 && l.p50_ns <= 51_000, "p50 {}", l.p50_ns);
        assert!(l.p50_ns <= l.p90_ns && l.p90_ns <= l.p99_ns && l.p99_ns <= l.p999_ns);
        assert!(l.p999_ns <= l.max_ns);
        assert!((sum.loss_ratio - 1.0 / 104.0).abs() < 1e-12);
        // Stream 1 transit grows by 1 us per packet: |D| = 1000 exactly.
        assert!((sum.streams[0].ipdv_mean_abs_ns - 1000.0).abs() < 1e-9);
        assert_eq!(sum.clock_anomalies, 0);
    }

    #[test]
    fn intervals_reset_but_totals_do_not() {
        let mut s = RxStats::new(DEFAULT_WINDOW).expect("valid");
        s.record_payload(&payload(1, 0, 0), 10_000).expect("ours");
        s.record_payload(&payload(1, 2, 0), 20_000).expect("ours");
        let a = s.take_interval();
        assert_eq!((a.packets, a.bytes, a.lost_total), (2, 128, 1));
        assert_eq!(a.latency.count, 2);
        let b = s.take_interval();
        assert_eq!((b.packets, b.latency.count, b.lost_total), (0, 0, 1));
        assert_eq!(s.summary().latency.count, 2);
    }

    #[test]
    fn receive_before_send_is_flagged_and_clamped() {
        let mut s = RxStats::new(DEFAULT_WINDOW).expect("valid");
        s.record_payload(&payload(1, 0, 5000), 1000).expect("ours");
        let sum = s.summary();
        assert_eq!(sum.clock_anomalies, 1);
        assert_eq!(sum.latency.min_ns, 1);
    }
}
