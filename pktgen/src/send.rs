//! The sender: paced streams over one connected socket per flow — UDP with `sendmmsg`
//! batches (optionally with an RTT collector that receives the reflector's echoes on the same
//! sockets), or TCP with length-prefixed records (see [`crate::tcp`]).
//!
//! Flow `i` uses source port `src_port + i` (or an ephemeral port when `src_port` is 0) and
//! stream id `stream_base + i`, with its own sequence numbers starting at 0. Packet `n` of the
//! run goes to flow `n % flows`. Every packet of a flow's batch is stamped with the same
//! `tx_ns`, read immediately before that batch's `sendmmsg`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::clock::{monotonic_ns, wait_until};
use crate::error::{Error, io_err};
use crate::mmsg::{Batch, SendOutcome, set_rcvbuf, socket_drops};
use crate::pacing::{Pattern, Schedule};
use crate::payload::{Header, stamp_tx_ns};
use crate::recv::{POLL, SLOT};
use crate::sizes::{SizeSpec, udp_payload_len};
use crate::stats::{DEFAULT_WINDOW, Interval, RxStats, RxSummary};

const SECOND_NS: u64 = 1_000_000_000;
/// Remaining wait below which the sender busy-waits instead of sleeping.
const SPIN_NS: u64 = 20_000;

/// Transport protocol of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Proto {
    /// One datagram per packet.
    #[default]
    Udp,
    /// One length-prefixed record per packet on a TCP stream per flow ([`crate::tcp`]).
    Tcp,
}

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Destination (receiver or reflector).
    pub dst: SocketAddr,
    /// UDP or TCP.
    pub proto: Proto,
    /// Source address to bind (`None`: the unspecified address of the destination's family).
    pub src_ip: Option<IpAddr>,
    /// First source port; flow `i` binds `src_port + i`. 0 means ephemeral ports.
    pub src_port: u16,
    /// Number of flows (sockets / streams).
    pub flows: u32,
    /// Stream id of flow 0.
    pub stream_base: u32,
    /// Inter-departure process.
    pub pattern: Pattern,
    /// Packets per second (all flows together); ignored for [`Pattern::Unlimited`].
    pub rate_pps: f64,
    /// RNG seed for Poisson/Pareto.
    pub seed: u64,
    /// Packet sizes (IP length).
    pub sizes: SizeSpec,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Most packets per `sendmmsg` (per flow).
    pub batch: usize,
    /// Receive echoes from a reflector and measure RTT.
    pub rtt: bool,
    /// After the last packet, how long to wait for outstanding echoes.
    pub rtt_grace: Duration,
}

impl SendConfig {
    /// Defaults: one flow, ephemeral port, constant 1000 pps, 64-byte packets, batch 32, no
    /// stop condition (set `count` or `duration`), no RTT.
    pub fn new(dst: SocketAddr) -> Self {
        Self {
            dst,
            proto: Proto::Udp,
            src_ip: None,
            src_port: 0,
            flows: 1,
            stream_base: 0,
            pattern: Pattern::Constant,
            rate_pps: 1000.0,
            seed: 1,
            sizes: SizeSpec::Fixed(64),
            count: None,
            duration: None,
            batch: 32,
            rtt: false,
            rtt_grace: Duration::from_millis(500),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.flows == 0 {
            return Err(Error::Config("flows must be at least 1".into()));
        }
        if self.batch == 0 {
            return Err(Error::Config("batch must be at least 1".into()));
        }
        if self.src_port != 0 && u32::from(self.src_port) + self.flows - 1 > u32::from(u16::MAX) {
            return Err(Error::Config(format!(
                "source ports {}..{} exceed 65535",
                self.src_port,
                u32::from(self.src_port) + self.flows
            )));
        }
        if self.proto == Proto::Tcp {
            if self.rtt {
                return Err(Error::Config("RTT measurement needs UDP".into()));
            }
            if self.src_port != 0 || self.src_ip.is_some() {
                return Err(Error::Config(
                    "TCP flows use ephemeral source addresses; drop the source port/address".into(),
                ));
            }
        }
        if self.count.is_none() && self.duration.is_none() {
            return Err(Error::Config("set a packet count or a duration".into()));
        }
        if let Some(ip) = self.src_ip
            && ip.is_ipv4() != self.dst.is_ipv4()
        {
            return Err(Error::Config(format!(
                "source {ip} and destination {} are different address families",
                self.dst
            )));
        }
        Ok(())
    }
}

/// Once-per-second sender progress.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SendProgress {
    /// Seconds since start.
    pub elapsed_secs: f64,
    /// Length of the interval, seconds (about 1).
    pub interval_secs: f64,
    /// Packets sent in the interval.
    pub packets: u64,
    /// Payload bytes sent in the interval.
    pub bytes: u64,
    /// Packets sent so far.
    pub total: u64,
    /// RTT statistics of the interval, when measuring RTT.
    pub rtt: Option<Interval>,
}

/// What the sender did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SendSummary {
    /// Packets handed to the kernel.
    pub sent: u64,
    /// UDP payload bytes of those packets.
    pub bytes: u64,
    /// Packets given up on after transient send errors.
    pub dropped: u64,
    /// Transient send errors.
    pub send_errors: u64,
    /// Seconds from start to the last send.
    pub elapsed_secs: f64,
    /// `sent / elapsed_secs`.
    pub pps: f64,
    /// Payload megabits per second.
    pub payload_mbps: f64,
    /// Packets per flow.
    pub per_flow: Vec<u64>,
    /// Mean lateness of departures versus the schedule, ns (0 when unpaced).
    pub mean_lateness_ns: f64,
    /// Worst lateness, ns.
    pub max_lateness_ns: u64,
    /// RTT statistics (latency = round-trip time) when `rtt` was set.
    pub rtt: Option<RxSummary>,
}

enum Conn {
    Udp(UdpSocket),
    Tcp { stream: TcpStream, frame: Vec<u8> },
}

struct Flow {
    conn: Conn,
    batch: Batch,
    pending: usize,
    next_seq: u64,
    stream_id: u32,
    sent: u64,
}

fn open_flows(cfg: &SendConfig) -> Result<Vec<Flow>, Error> {
    let ip = cfg.src_ip.unwrap_or(match cfg.dst {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let slot = udp_payload_len(cfg.sizes.max_ip_size(), cfg.dst.is_ipv6());
    (0..cfg.flows)
        .map(|i| {
            let port = if cfg.src_port == 0 {
                0
            } else {
                (u32::from(cfg.src_port) + i) as u16
            };
            let conn = match cfg.proto {
                Proto::Udp => {
                    let local = SocketAddr::new(ip, port);
                    let sock = UdpSocket::bind(local).map_err(io_err(format!("bind {local}")))?;
                    sock.connect(cfg.dst)
                        .map_err(io_err(format!("connect {}", cfg.dst)))?;
                    Conn::Udp(sock)
                }
                Proto::Tcp => {
                    let stream = TcpStream::connect(cfg.dst)
                        .map_err(io_err(format!("TCP connect {}", cfg.dst)))?;
                    // Records are latency probes: do not let Nagle hold them back.
                    stream.set_nodelay(true).map_err(io_err("TCP_NODELAY"))?;
                    Conn::Tcp {
                        stream,
                        frame: Vec::new(),
                    }
                }
            };
            Ok(Flow {
                conn,
                batch: Batch::new(cfg.batch, slot),
                pending: 0,
                next_seq: 0,
                stream_id: cfg.stream_base.wrapping_add(i),
                sent: 0,
            })
        })
        .collect()
}

/// Sets this thread's timer slack to 1 µs so short sleeps wake close to their deadline.
pub(crate) fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long argument and only affects the calling
    // thread; failure is harmless (the default 50 µs slack stays).
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

/// Collects echoes on (duplicates of) the flow sockets and records RTTs.
fn spawn_rtt_collector(
    flows: &[Flow],
    batch: usize,
    stop: Arc<AtomicBool>,
    unique: Arc<AtomicU64>,
    intervals: Arc<std::sync::Mutex<Option<Interval>>>,
) -> Result<std::thread::JoinHandle<Result<RxSummary, Error>>, Error> {
    let socks = flows
        .iter()
        .map(|f| {
            let Conn::Udp(sock) = &f.conn else {
                return Err(Error::Config("RTT measurement needs UDP".into()));
            };
            let s = sock.try_clone().map_err(io_err("dup socket"))?;
            set_rcvbuf(&s, 8 << 20).map_err(io_err("SO_RCVBUF"))?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut stats = RxStats::new(DEFAULT_WINDOW)?;
    Ok(std::thread::spawn(move || {
        let mut b = Batch::new(batch, SLOT);
        let mut pfds: Vec<libc::pollfd> = socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut next_report = monotonic_ns() + SECOND_NS;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `pfds` is a live, correctly sized array of pollfd for sockets owned by
            // `socks`, which outlives the call.
            let r = unsafe {
                libc::poll(
                    pfds.as_mut_ptr(),
                    pfds.len() as libc::nfds_t,
                    POLL.as_millis() as libc::c_int,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(io_err("poll")(e));
            }
            for (i, pfd) in pfds.iter().enumerate() {
                if pfd.revents & (libc::POLLIN | libc::POLLERR) == 0 {
                    continue;
                }
                let s = &socks[i];
                loop {
                    let n = match b.recv_nowait(s, false) {
                        Ok(n) => n,
                        // ICMP errors (e.g. reflector not up yet) surface here: skip them.
                        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => 0,
                        Err(e) => return Err(io_err("recvmmsg")(e)),
                    };
                    if n == 0 {
                        break;
                    }
                    let now = monotonic_ns();
                    for j in 0..n {
                        let _ = stats.record_payload(b.datagram(j), now);
                    }
                }
            }
            unique.store(stats.unique(), Ordering::Relaxed);
            let now = monotonic_ns();
            if now >= next_report {
                next_report = now + SECOND_NS;
                if let Ok(mut slot) = intervals.lock() {
                    *slot = Some(stats.take_interval());
                }
            }
        }
        let mut sum = stats.summary();
        sum.socket_drops = socks
            .iter()
            .map(|s| socket_drops(s).map(u64::from))
            .sum::<std::io::Result<u64>>()
            .map_err(io_err("SO_MEMINFO"))?;
        Ok(sum)
    }))
}

/// Stamps the transmit time into `f`'s pending packets and sends them (one `sendmmsg`, or one TCP write of
/// their records).
fn send_pending(f: &mut Flow) -> Result<SendOutcome, Error> {
    let tx = monotonic_ns();
    for slot in 0..f.pending {
        stamp_tx_ns(f.batch.buf_mut(slot), tx)
            .map_err(|e| Error::Config(format!("payload slot too small: {e}")))?;
    }
    match &mut f.conn {
        Conn::Udp(sock) => f
            .batch
            .send(sock, f.pending, false)
            .map_err(io_err("sendmmsg")),
        Conn::Tcp { stream, frame } => {
            frame.clear();
            let mut out = SendOutcome::default();
            for slot in 0..f.pending {
                let d = f.batch.datagram(slot);
                crate::tcp::push_record(frame, d)?;
                out.bytes += d.len() as u64;
            }
            stream.write_all(frame).map_err(io_err("TCP write"))?;
            out.sent = f.pending;
            Ok(out)
        }
    }
}

type RttHandle = std::thread::JoinHandle<Result<RxSummary, Error>>;

/// Stops the RTT collector, after waiting (until `grace`'s end time, unless `stop` is set) for the echoes of
/// `grace`'s count of packets when the run went well.
fn finish_rtt(
    collector: Option<RttHandle>,
    rtt_stop: &AtomicBool,
    grace: Option<(u64, u64, &AtomicU64)>,
    stop: &AtomicBool,
) -> Result<Option<RxSummary>, Error> {
    let Some(handle) = collector else {
        return Ok(None);
    };
    if let Some((grace_end, sent, unique)) = grace {
        while unique.load(Ordering::Relaxed) < sent
            && monotonic_ns() < grace_end
            && !stop.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    rtt_stop.store(true, Ordering::Relaxed);
    Ok(Some(
        handle
            .join()
            .map_err(|_| Error::Thread("RTT collector"))??,
    ))
}

/// Runs the sender until its count or duration is reached (or `stop` is set), calling
/// `progress` about once per second.
pub fn run_sender(
    cfg: &SendConfig,
    stop: &AtomicBool,
    mut progress: impl FnMut(&SendProgress),
) -> Result<SendSummary, Error> {
    cfg.validate()?;
    let mut flows = open_flows(cfg)?;
    let mut sched = Schedule::new(cfg.pattern, cfg.rate_pps, cfg.seed)?;

    let rtt_stop = Arc::new(AtomicBool::new(false));
    let rtt_unique = Arc::new(AtomicU64::new(0));
    let rtt_interval = Arc::new(std::sync::Mutex::new(None));
    let collector = if cfg.rtt {
        Some(spawn_rtt_collector(
            &flows,
            cfg.batch,
            rtt_stop.clone(),
            rtt_unique.clone(),
            rtt_interval.clone(),
        )?)
    } else {
        None
    };

    tighten_timer_slack();
    let mut run = SendLoop::start(cfg, &mut sched);
    let result = run.run(
        cfg,
        &mut flows,
        &mut sched,
        stop,
        &rtt_interval,
        &mut progress,
    );

    let rtt = finish_rtt(
        collector,
        &rtt_stop,
        result.is_ok().then(|| {
            let grace_end = monotonic_ns() + cfg.rtt_grace.as_nanos() as u64;
            (grace_end, run.sent, rtt_unique.as_ref())
        }),
        stop,
    )?;
    result?;
    let elapsed = run.last_send.saturating_sub(run.start) as f64 / 1e9;
    Ok(SendSummary::new(
        SendCounts {
            sent: run.sent,
            bytes: run.bytes,
            dropped: run.dropped,
            send_errors: run.errors,
            departures: run.n,
            lateness_sum_ns: run.lateness_sum,
            max_lateness_ns: run.max_lateness,
            per_flow: flows.iter().map(|f| f.sent).collect(),
        },
        elapsed,
        rtt,
    ))
}

/// What a sending run counted (the socket sender's and the AF_XDP sender's), from which
/// [`SendSummary::new`] derives the rates.
#[derive(Debug, Clone, Default)]
pub struct SendCounts {
    /// Packets sent.
    pub sent: u64,
    /// UDP payload bytes.
    pub bytes: u64,
    /// Packets given up on.
    pub dropped: u64,
    /// Transient send errors.
    pub send_errors: u64,
    /// Departures the lateness was summed over.
    pub departures: u64,
    /// Sum of the lateness of the departures versus the schedule, ns (0 when unpaced).
    pub lateness_sum_ns: u128,
    /// Worst lateness, ns.
    pub max_lateness_ns: u64,
    /// Packets per flow.
    pub per_flow: Vec<u64>,
}

impl SendSummary {
    /// The summary of a run that counted `c` over `elapsed_secs` (packet and payload rates, mean
    /// lateness; all 0 for an empty run).
    pub fn new(c: SendCounts, elapsed_secs: f64, rtt: Option<RxSummary>) -> Self {
        let per_second = |x: f64| {
            if elapsed_secs > 0.0 {
                x / elapsed_secs
            } else {
                0.0
            }
        };
        SendSummary {
            sent: c.sent,
            bytes: c.bytes,
            dropped: c.dropped,
            send_errors: c.send_errors,
            elapsed_secs,
            pps: per_second(c.sent as f64),
            payload_mbps: per_second(c.bytes as f64 * 8.0) / 1e6,
            per_flow: c.per_flow,
            mean_lateness_ns: if c.departures == 0 {
                0.0
            } else {
                c.lateness_sum_ns as f64 / c.departures as f64
            },
            max_lateness_ns: c.max_lateness_ns,
            rtt,
        }
    }
}

/// The state of [`run_sender`]'s loop: the schedule's position, the counters and the progress interval.
struct SendLoop {
    start: u64,
    end: Option<u64>,
    limit: u64,
    paced: bool,
    ipv6: bool,
    /// Packets scheduled so far.
    n: u64,
    /// Departure time of packet `n`.
    due: u64,
    sent: u64,
    bytes: u64,
    dropped: u64,
    errors: u64,
    lateness_sum: u128,
    max_lateness: u64,
    last_send: u64,
    next_report: u64,
    last_report: u64,
    /// Packets and bytes since the last progress report.
    iv_packets: u64,
    iv_bytes: u64,
}

impl SendLoop {
    /// Starts the clock: the first departure is due one schedule step from now.
    fn start(cfg: &SendConfig, sched: &mut Schedule) -> Self {
        let start = monotonic_ns();
        SendLoop {
            start,
            end: cfg
                .duration
                .map(|d| start.saturating_add(d.as_nanos() as u64)),
            limit: cfg.count.unwrap_or(u64::MAX),
            paced: cfg.pattern != Pattern::Unlimited,
            ipv6: cfg.dst.is_ipv6(),
            n: 0,
            due: start + sched.next_departure(),
            sent: 0,
            bytes: 0,
            dropped: 0,
            errors: 0,
            lateness_sum: 0,
            max_lateness: 0,
            last_send: start,
            next_report: start + SECOND_NS,
            last_report: start,
            iv_packets: 0,
            iv_bytes: 0,
        }
    }

    /// Sends until the count, the end time or `stop`.
    fn run(
        &mut self,
        cfg: &SendConfig,
        flows: &mut [Flow],
        sched: &mut Schedule,
        stop: &AtomicBool,
        rtt_interval: &std::sync::Mutex<Option<Interval>>,
        progress: &mut impl FnMut(&SendProgress),
    ) -> Result<(), Error> {
        while self.n < self.limit && !stop.load(Ordering::Relaxed) {
            let now = monotonic_ns();
            // Stop at the end time, and do not start packets that are due after it.
            if self.end.is_some_and(|e| now >= e || self.due >= e) {
                break;
            }
            if self.due > now {
                wait_until(self.due.min(self.next_report), SPIN_NS);
            } else {
                self.fill(cfg, flows, sched, now)?;
                self.flush(flows)?;
                self.last_send = monotonic_ns();
            }
            let now = monotonic_ns();
            if now >= self.next_report {
                self.report(now, rtt_interval, progress);
            }
        }
        Ok(())
    }

    /// Fills each flow's batch with the packets that are due at `now`, up to `batch` per flow.
    fn fill(
        &mut self,
        cfg: &SendConfig,
        flows: &mut [Flow],
        sched: &mut Schedule,
        now: u64,
    ) -> Result<(), Error> {
        let nflows = flows.len() as u64;
        while self.n < self.limit && self.due <= now && self.end.is_none_or(|e| self.due < e) {
            let f = &mut flows[(self.n % nflows) as usize];
            if f.pending == f.batch.capacity() {
                break;
            }
            let len = udp_payload_len(cfg.sizes.ip_size(self.n), self.ipv6);
            let slot = f.pending;
            let h = Header::new(f.stream_id, f.next_seq + slot as u64, 0);
            h.encode(f.batch.buf_mut(slot))
                .map_err(|e| Error::Config(format!("payload slot too small: {e}")))?;
            f.batch.set_len(slot, len);
            f.pending += 1;
            if self.paced {
                let late = now - self.due;
                self.lateness_sum += u128::from(late);
                self.max_lateness = self.max_lateness.max(late);
            }
            self.n += 1;
            self.due = self.start + sched.next_departure();
        }
        Ok(())
    }

    /// Sends every flow's pending batch.
    fn flush(&mut self, flows: &mut [Flow]) -> Result<(), Error> {
        for f in flows.iter_mut().filter(|f| f.pending > 0) {
            let out = send_pending(f)?;
            // Dropped packets keep their sequence numbers: the receiver sees them as lost.
            f.next_seq += f.pending as u64;
            f.sent += out.sent as u64;
            self.sent += out.sent as u64;
            self.dropped += out.dropped as u64;
            self.errors += out.errors as u64;
            self.bytes += out.bytes;
            self.iv_bytes += out.bytes;
            self.iv_packets += out.sent as u64;
            f.pending = 0;
        }
        Ok(())
    }

    /// Reports the interval that ends at `now` and starts the next.
    fn report(
        &mut self,
        now: u64,
        rtt_interval: &std::sync::Mutex<Option<Interval>>,
        progress: &mut impl FnMut(&SendProgress),
    ) {
        let rtt = rtt_interval.lock().ok().and_then(|mut s| s.take());
        progress(&SendProgress {
            elapsed_secs: (now - self.start) as f64 / 1e9,
            interval_secs: (now - self.last_report) as f64 / 1e9,
            packets: self.iv_packets,
            bytes: self.iv_bytes,
            total: self.sent,
            rtt,
        });
        self.iv_packets = 0;
        self.iv_bytes = 0;
        self.last_report = now;
        self.next_report = now + SECOND_NS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SendConfig {
        let mut c = SendConfig::new("127.0.0.1:9".parse().expect("addr"));
        c.count = Some(1);
        c
    }

    #[test]
    fn unpaced_run_stops_at_its_duration_over_loopback() {
        use crate::recv::{Receiver, RecvConfig};
        let rx = Receiver::bind(RecvConfig::new("127.0.0.1:0".parse().expect("addr")))
            .expect("bind receiver");
        let mut c = SendConfig::new(rx.local_addr().expect("addr"));
        c.pattern = Pattern::Unlimited;
        c.duration = Some(Duration::from_millis(300));
        c.flows = 2;
        let stop = Arc::new(AtomicBool::new(false));
        let rx_stop = stop.clone();
        let receiver = std::thread::spawn(move || rx.run(&rx_stop, |_| {}));
        let t0 = std::time::Instant::now();
        let s = run_sender(&c, &AtomicBool::new(false), |_| {}).expect("send");
        let took = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        let r = receiver.join().expect("join").expect("receive");
        assert!(
            took < Duration::from_secs(3),
            "unpaced sender ignored its duration: {took:?}"
        );
        assert!(s.elapsed_secs >= 0.25 && s.elapsed_secs < 3.0, "{s:?}");
        assert!(s.sent > 0 && s.per_flow.iter().sum::<u64>() == s.sent);
        assert_eq!((s.mean_lateness_ns, s.max_lateness_ns), (0.0, 0));
        // The receiver may drop under an unpaced flood, but never invents packets.
        assert!(r.unique <= s.sent && r.unique > 0, "{r:?}");
        assert_eq!((r.duplicates, r.foreign), (0, 0));
        assert_eq!(r.streams.len(), 2);
    }

    #[test]
    fn validation_rejects_inconsistent_settings() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.flows = 0;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.batch = 0;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.src_port = 65_535;
        c.flows = 2;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.count = None;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.src_ip = Some("::1".parse().expect("ip"));
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.proto = Proto::Tcp;
        assert!(c.validate().is_ok());
        c.rtt = true;
        assert!(c.validate().is_err());
        c.rtt = false;
        c.src_port = 40_000;
        assert!(c.validate().is_err());
    }
}
