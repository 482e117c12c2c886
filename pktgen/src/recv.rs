//! The receiver (statistics from arriving pktgen packets) and the reflector (echoes every
//! datagram back to its sender unchanged, so the sender can compute RTT).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::clock::monotonic_ns;
use crate::error::{Error, io_err};
use crate::mmsg::{Batch, set_rcvbuf, socket_drops};
use crate::stats::{DEFAULT_WINDOW, Interval, RxStats, RxSummary};

/// Receive slot size: the largest UDP datagram, so nothing is truncated.
pub const SLOT: usize = 65_536;
/// How often the loops wake up to check stop conditions when no traffic arrives.
pub const POLL: Duration = Duration::from_millis(50);
/// After the stop flag is set, how long the loops keep draining queued datagrams at most.
pub const DRAIN: Duration = Duration::from_secs(1);
const SECOND_NS: u64 = 1_000_000_000;

/// When a receiver or reflector stops (whichever comes first; all `None` means "until the stop
/// flag is set").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StopWhen {
    /// After this many datagrams.
    pub count: Option<u64>,
    /// After this long since starting.
    pub duration: Option<Duration>,
    /// After this long without traffic, once the first datagram has arrived.
    pub idle: Option<Duration>,
}

impl StopWhen {
    pub(crate) fn reached(&self, packets: u64, start: u64, last_rx: Option<u64>, now: u64) -> bool {
        self.count.is_some_and(|c| packets >= c)
            || self
                .duration
                .is_some_and(|d| now.saturating_sub(start) >= d.as_nanos() as u64)
            || matches!((self.idle, last_rx), (Some(i), Some(l)) if now.saturating_sub(l) >= i.as_nanos() as u64)
    }
}

/// True once `stop` is set and the socket is drained (a receive came back empty) or
/// [`DRAIN`] has passed since the flag was first seen, so queued datagrams are still counted.
pub(crate) fn drained(
    stop: &AtomicBool,
    since: &mut Option<u64>,
    received: usize,
    now: u64,
) -> bool {
    if !stop.load(Ordering::Relaxed) {
        return false;
    }
    let first = *since.get_or_insert(now);
    received == 0 || now.saturating_sub(first) >= DRAIN.as_nanos() as u64
}

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct RecvConfig {
    /// Address to bind, e.g. `0.0.0.0:9000` or `[::]:9000`.
    pub bind: SocketAddr,
    /// Datagrams per `recvmmsg`.
    pub batch: usize,
    /// Socket receive buffer, bytes.
    pub rcvbuf: usize,
    /// Sequence window per stream (power of two >= 64).
    pub window: u64,
    /// Stop conditions.
    pub stop: StopWhen,
}

impl RecvConfig {
    /// Defaults: batch 64, 8 MiB receive buffer, 65536-packet window, no stop condition.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            batch: 64,
            rcvbuf: 8 << 20,
            window: DEFAULT_WINDOW,
            stop: StopWhen::default(),
        }
    }
}

fn bind_udp(addr: SocketAddr, rcvbuf: usize) -> Result<UdpSocket, Error> {
    let sock = UdpSocket::bind(addr).map_err(io_err(format!("bind {addr}")))?;
    set_rcvbuf(&sock, rcvbuf).map_err(io_err("SO_RCVBUF"))?;
    sock.set_read_timeout(Some(POLL))
        .map_err(io_err("SO_RCVTIMEO"))?;
    Ok(sock)
}

/// A bound receiver, ready to [`run`](Receiver::run).
pub struct Receiver {
    sock: UdpSocket,
    cfg: RecvConfig,
}

impl Receiver {
    /// Binds the socket (so a sender may start as soon as this returns).
    pub fn bind(cfg: RecvConfig) -> Result<Self, Error> {
        if cfg.batch == 0 {
            return Err(Error::Config("batch must be at least 1".into()));
        }
        Ok(Self {
            sock: bind_udp(cfg.bind, cfg.rcvbuf)?,
            cfg,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.sock.local_addr().map_err(io_err("getsockname"))
    }

    /// Receives until a stop condition or `stop` is set, calling `progress` about once per
    /// second with the interval's statistics, and returns the summary.
    pub fn run(
        self,
        stop: &AtomicBool,
        mut progress: impl FnMut(&Interval),
    ) -> Result<RxSummary, Error> {
        let mut stats = RxStats::new(self.cfg.window)?;
        let mut batch = Batch::new(self.cfg.batch, SLOT);
        let start = monotonic_ns();
        let mut next_report = start + SECOND_NS;
        let mut last_rx = None;
        let mut stopping_since = None;
        loop {
            let n = batch.recv(&self.sock, false).map_err(io_err("recvmmsg"))?;
            let now = monotonic_ns();
            for i in 0..n {
                // Foreign datagrams are counted inside `stats` and otherwise ignored.
                let _ = stats.record_payload(batch.datagram(i), now);
            }
            if n > 0 {
                last_rx = Some(now);
            }
            if now >= next_report {
                progress(&stats.take_interval());
                next_report = now + SECOND_NS;
            }
            if drained(stop, &mut stopping_since, n, now)
                || self.cfg.stop.reached(stats.packets(), start, last_rx, now)
            {
                break;
            }
        }
        let mut sum = stats.summary();
        sum.socket_drops = socket_drops(&self.sock)
            .map(u64::from)
            .map_err(io_err("SO_MEMINFO"))?;
        Ok(sum)
    }
}

/// Reflector settings.
#[derive(Debug, Clone)]
pub struct ReflectConfig {
    /// Address to bind.
    pub bind: SocketAddr,
    /// Datagrams per batch.
    pub batch: usize,
    /// Socket receive buffer, bytes.
    pub rcvbuf: usize,
    /// Stop conditions.
    pub stop: StopWhen,
}

impl ReflectConfig {
    /// Defaults: batch 64, 8 MiB receive buffer, no stop condition.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            batch: 64,
            rcvbuf: 8 << 20,
            stop: StopWhen::default(),
        }
    }
}

/// What the reflector did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReflectSummary {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams echoed back.
    pub reflected: u64,
    /// Datagrams that could not be echoed.
    pub dropped: u64,
    /// Datagrams the kernel dropped at the reflector's socket (receive buffer full).
    pub socket_drops: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Seconds run.
    pub elapsed_secs: f64,
}

/// A bound reflector.
pub struct Reflector {
    sock: UdpSocket,
    cfg: ReflectConfig,
}

impl Reflector {
    /// Binds the socket.
    pub fn bind(cfg: ReflectConfig) -> Result<Self, Error> {
        if cfg.batch == 0 {
            return Err(Error::Config("batch must be at least 1".into()));
        }
        Ok(Self {
            sock: bind_udp(cfg.bind, cfg.rcvbuf)?,
            cfg,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.sock.local_addr().map_err(io_err("getsockname"))
    }

    /// Echoes datagrams back unchanged until a stop condition or `stop`; `progress` gets the
    /// running totals about once per second.
    pub fn run(
        self,
        stop: &AtomicBool,
        mut progress: impl FnMut(&ReflectSummary),
    ) -> Result<ReflectSummary, Error> {
        let mut batch = Batch::new(self.cfg.batch, SLOT);
        let mut sum = ReflectSummary::default();
        let start = monotonic_ns();
        let mut next_report = start + SECOND_NS;
        let mut last_rx = None;
        let mut stopping_since = None;
        loop {
            let n = batch.recv(&self.sock, true).map_err(io_err("recvmmsg"))?;
            let now = monotonic_ns();
            if n > 0 {
                last_rx = Some(now);
                sum.received += n as u64;
                sum.bytes += (0..n).map(|i| batch.datagram(i).len() as u64).sum::<u64>();
                let out = batch
                    .send(&self.sock, n, true)
                    .map_err(io_err("sendmmsg"))?;
                sum.reflected += out.sent as u64;
                sum.dropped += out.dropped as u64;
            }
            sum.elapsed_secs = now.saturating_sub(start) as f64 / 1e9;
            if now >= next_report {
                progress(&sum);
                next_report = now + SECOND_NS;
            }
            if drained(stop, &mut stopping_since, n, now)
                || self.cfg.stop.reached(sum.received, start, last_rx, now)
            {
                break;
            }
        }
        sum.socket_drops = socket_drops(&self.sock)
            .map(u64::from)
            .map_err(io_err("SO_MEMINFO"))?;
        Ok(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_conditions() {
        let s = StopWhen {
            count: Some(10),
            duration: Some(Duration::from_secs(2)),
            idle: Some(Duration::from_millis(100)),
        };
        assert!(!s.reached(9, 0, None, 1_000_000_000));
        assert!(s.reached(10, 0, None, 0));
        assert!(s.reached(0, 0, None, 2_000_000_000));
        assert!(!s.reached(1, 0, Some(950_000_000), 1_000_000_000));
        assert!(s.reached(1, 0, Some(900_000_000), 1_000_000_000));
        assert!(!StopWhen::default().reached(u64::MAX, 0, Some(0), u64::MAX));
    }

    #[test]
    fn stopping_drains_queued_datagrams_first() {
        let stop = AtomicBool::new(false);
        let mut since = None;
        assert!(!drained(&stop, &mut since, 0, 0));
        stop.store(true, Ordering::Relaxed);
        assert!(!drained(&stop, &mut since, 64, 10));
        assert!(!drained(&stop, &mut since, 64, 500_000_000));
        assert!(drained(&stop, &mut since, 0, 500_000_001));
        assert!(drained(&stop, &mut since, 64, 10 + DRAIN.as_nanos() as u64));
    }
}
