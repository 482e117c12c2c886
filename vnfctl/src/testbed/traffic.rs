//! Drives the planned flows (see [`super::flows`]) through a testbed that is up: every UDP flow with pktgen's
//! paced sender, every TCP flow as HTTP requests to the listeners; live progress of the main flow; the result
//! per flow ("expected → got"), the data plane's per-function numbers, plots and a JSON.
//!
//! The UDP receivers are written here, not taken from pktgen's CLI: they keep the whole HDR histogram of
//! one-way latency (pktgen's summary keeps only percentiles), which the plots need, and they tell flows apart
//! by pktgen's stream id (`flow id << 16 | n`). Each binds its target's exact address with `SO_REUSEADDR`, which
//! takes the datagrams from the server's wildcard echo listener while the run lasts (see `pktgen::serve`).
//! Datagrams whose payload is not pktgen's (a chain that encrypts them) count as delivered to the flow when
//! only one flow goes to that target.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pktgen::clock::monotonic_ns;
use pktgen::payload::Header;
use pktgen::send::{SendConfig, SendSummary, run_sender};
use pktgen::stats::{LatencySummary, RxStats, RxSummary};
use serde::Serialize;

use super::flows::{Expect, Flow, Proto};
use super::{Testbed, TestbedError, metrics};
use crate::plot;

/// Requests each TCP flow makes.
pub const TCP_REQUESTS: u64 = 4;
/// How long a TCP connect may take (under the kernel's first SYN retransmission, 1 s: one SYN per attempt).
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
/// pktgen's default IP packet size, which the senders use.
pub const PACKET_SIZE: u16 = 64;

/// What to send.
#[derive(Clone, Debug)]
pub struct TrafficOptions {
    /// Packets per second of the main flow (the allowed client's first allowed UDP flow).
    pub rate_pps: f64,
    /// Packets per second of every other UDP flow (the denied client's among them).
    pub denied_rate_pps: f64,
    /// How long.
    pub duration: Duration,
    /// Source ports (pktgen flows) of the main flow.
    pub flows: u32,
    /// Send the TCP flows too (off: UDP only, so kernel counters compare one to one with pktgen's).
    pub tcp: bool,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        Self {
            rate_pps: 10_000.0,
            denied_rate_pps: 2_000.0,
            duration: Duration::from_secs(3),
            flows: 4,
            tcp: true,
        }
    }
}

/// The settings of a run (in the JSON, so a result says what was run).
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// The testbed.
    pub testbed: String,
    /// The chain's name.
    pub chain: String,
    /// (interface, hook) of each attachment.
    pub hook: Vec<(String, String)>,
    /// Main flow rate, packets/s.
    pub rate_pps: f64,
    /// Every other UDP flow's rate, packets/s.
    pub other_rate_pps: f64,
    /// Seconds asked for.
    pub duration_s: f64,
    /// IP packet size, bytes.
    pub packet_size: u16,
    /// Source ports of the main flow.
    pub main_flow_ports: u32,
    /// Requests per TCP flow.
    pub tcp_requests: u64,
    /// vnfctl's version.
    pub version: String,
    /// The git commit of the working directory, when there is one.
    pub commit: Option<String>,
}

/// What one flow got.
#[derive(Clone, Debug, Serialize)]
pub struct FlowResult {
    /// The flow as planned.
    pub flow: Flow,
    /// Datagrams (UDP) or requests (TCP) sent.
    pub sent: u64,
    /// Datagrams received / replies from a target.
    pub delivered: u64,
    /// Whether that is what the flow expects.
    pub ok: bool,
    /// pktgen's sender summary (UDP).
    pub sender: Option<SendSummary>,
    /// pktgen's receiver accounting of this flow's datagrams (UDP).
    pub received: Option<RxSummary>,
    /// Datagrams that arrived without a pktgen header (the chain changed the payload).
    pub undecoded: u64,
    /// `(percentile, µs)` of one-way latency (UDP) or request time (TCP).
    pub percentiles_us: Vec<(f64, f64)>,
    /// Latency samples behind `percentiles_us`.
    pub samples: u64,
    /// One-way latency CDF points `(µs, fraction)`.
    #[serde(skip)]
    pub cdf_us: Vec<(f64, f64)>,
    /// Targets that answered (TCP).
    pub served_by: Vec<String>,
    /// Distinct errors of failed requests (TCP).
    pub errors: Vec<String>,
}

/// What a traffic run measured.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficResult {
    /// What was run.
    pub settings: Settings,
    /// Every flow, in plan order.
    pub flows: Vec<FlowResult>,
    /// Ctrl-C stopped the run early.
    pub interrupted: bool,
    /// Seconds the run took.
    pub elapsed_s: f64,
}

impl TrafficResult {
    /// The main flow's result.
    pub fn main(&self) -> Option<&FlowResult> {
        self.flows.iter().find(|f| f.flow.main)
    }

    /// Whether every flow met its expectation.
    pub fn all_ok(&self) -> bool {
        self.flows.iter().all(|f| f.ok)
    }
}

/// Why a traffic thread (a UDP receiver or sender, a TCP client) or writing the results failed.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// A latency histogram could not be made.
    #[error("latency histogram: {0}")]
    Histogram(#[source] hdrhistogram::CreationError),
    /// A socket could not be bound, or the sender failed.
    #[error(transparent)]
    Pktgen(#[from] pktgen::error::Error),
    /// The receive buffer could not be enlarged.
    #[error("SO_RCVBUF: {0}")]
    RcvBuf(#[source] std::io::Error),
    /// The receive timeout could not be set.
    #[error("SO_RCVTIMEO: {0}")]
    ReadTimeout(#[source] std::io::Error),
    /// Receiving failed.
    #[error("recv: {0}")]
    Recv(#[source] std::io::Error),
    /// The per-flow accounting could not be set up.
    #[error(transparent)]
    Stats(#[from] pktgen::stats::StatsError),
    /// The receiver's socket could not be set up (the error went to whoever waited for it to start).
    #[error("the receiver did not start")]
    NotStarted,
    /// The plots could not be written.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    /// The results could not be written as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Why one TCP request failed (recorded in the flow's `errors`).
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("{0}")]
    Timeout(#[source] std::io::Error),
    #[error("request: {0}")]
    Request(#[source] std::io::Error),
    #[error("reply: {0}")]
    Reply(#[source] std::io::Error),
}

fn traffic_err(message: impl Into<String>) -> TestbedError {
    TestbedError::Dataplane {
        message: message.into(),
        log: String::new(),
    }
}

/// Whether `delivered` of `sent` is what `expect` asks: everything (UDP: at least 95 %, a busy machine drops a
/// few from socket buffers and the user-space tier's rings; TCP: every request) or nothing.
pub fn meets(expect: Expect, proto: Proto, sent: u64, delivered: u64) -> bool {
    match (expect, proto) {
        (Expect::Dropped, _) => sent > 0 && delivered == 0,
        (Expect::Delivered, Proto::Tcp) => sent > 0 && delivered == sent,
        (Expect::Delivered, Proto::Udp) => sent > 0 && delivered * 100 >= sent * 95,
    }
}

fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Per-flow accounting inside one receiver.
struct FlowRx {
    stats: RxStats,
    hist: Histogram<u64>,
}

/// What a receiver hands back: per flow id, (summary, histogram), plus undecoded datagrams.
type RxOut = (BTreeMap<usize, (RxSummary, Histogram<u64>)>, u64);

fn new_hist() -> Result<Histogram<u64>, TrafficError> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(TrafficError::Histogram)
}

/// Receives on `bind` until `stop`; counts each flow (by stream id) into `counts[flow id]`.
fn receive(
    bind: SocketAddr,
    stop: &AtomicBool,
    counts: &[Arc<AtomicU64>],
    ready: std::sync::mpsc::Sender<Result<(), TrafficError>>,
) -> Result<RxOut, TrafficError> {
    let setup = || -> Result<UdpSocket, TrafficError> {
        let s = pktgen::serve::bind_udp_reuse(bind)?;
        // room for bursts while this thread is descheduled (as `pktgen recv` does)
        pktgen::mmsg::set_rcvbuf(&s, 8 << 20).map_err(TrafficError::RcvBuf)?;
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(TrafficError::ReadTimeout)?;
        Ok(s)
    };
    let sock = match setup() {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Err(TrafficError::NotStarted);
        }
    };
    let mut per: BTreeMap<usize, FlowRx> = BTreeMap::new();
    let mut undecoded = 0u64;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let now = monotonic_ns();
                let Ok(h) = Header::decode(&buf[..n]) else {
                    undecoded += 1;
                    continue;
                };
                let id = (h.stream_id >> 16) as usize;
                if id >= counts.len() {
                    undecoded += 1;
                    continue;
                }
                let e = match per.entry(id) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(FlowRx {
                        stats: RxStats::new(pktgen::stats::DEFAULT_WINDOW)?,
                        hist: new_hist()?,
                    }),
                };
                e.stats.record(&h, n, now);
                let _ = e.hist.record(now.saturating_sub(h.tx_ns).max(1));
                counts[id].fetch_add(1, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(TrafficError::Recv(e)),
        }
    }
    Ok((
        per.into_iter()
            .map(|(k, v)| (k, (v.stats.summary(), v.hist)))
            .collect(),
        undecoded,
    ))
}

/// What a TCP flow got: (requests, replies from a target, served-by, errors, request-time histogram).
type TcpOut = (u64, u64, Vec<String>, Vec<String>, Histogram<u64>);

fn tcp_flow(f: &Flow, stop: &AtomicBool) -> Result<TcpOut, TrafficError> {
    let mut hist = new_hist()?;
    let (mut sent, mut ok) = (0u64, 0u64);
    let mut served: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for _ in 0..TCP_REQUESTS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        sent += 1;
        let t0 = monotonic_ns();
        let r = (|| -> Result<String, RequestError> {
            let mut c = TcpStream::connect_timeout(&f.destination, TCP_CONNECT_TIMEOUT)
                .map_err(RequestError::Connect)?;
            c.set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(RequestError::Timeout)?;
            c.write_all(b"GET / HTTP/1.0\r\n\r\n")
                .map_err(RequestError::Request)?;
            let mut s = String::new();
            c.read_to_string(&mut s).map_err(RequestError::Reply)?;
            Ok(s)
        })();
        match r.map(|s| pktgen::serve::served_by(&s)) {
            Ok(Some(a)) if f.targets.iter().any(|(_, t)| *t == a) => {
                ok += 1;
                let _ = hist.record(monotonic_ns().saturating_sub(t0).max(1));
                if !served.contains(&a.to_string()) {
                    served.push(a.to_string());
                }
            }
            Ok(other) => {
                let e = format!("reply from an unexpected server: {other:?}");
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
            Err(e) => {
                // the flow's report lists the distinct failures as text
                let e = e.to_string();
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((sent, ok, served, errors, hist))
}

type Joined<T> =
    std::thread::JoinHandle<Result<Result<T, TrafficError>, pktgen::netns::NetnsError>>;

fn joined<T>(h: Joined<T>, what: &str) -> Result<T, TestbedError> {
    h.join()
        .map_err(|_| traffic_err(format!("the {what} thread panicked")))??
        .map_err(|source| TestbedError::Traffic {
            what: what.to_string(),
            source,
        })
}

/// Sends every planned flow at once for `opts.duration` and returns what each got. `progress` gets a line
/// about the main flow once per second and one when its sender is done. Ctrl-C (after
/// [`super::install_interrupt_handler`]) ends the run early with what was measured so far.
pub fn run(
    tb: &Testbed,
    opts: &TrafficOptions,
    mut progress: impl FnMut(&str),
) -> Result<TrafficResult, TestbedError> {
    let flows: Vec<Flow> = tb
        .flows()
        .iter()
        .filter(|f| opts.tcp || f.protocol == Proto::Udp)
        .cloned()
        .collect();
    if flows.is_empty() {
        return Err(traffic_err(
            "the plan has no flows (a testbed brought up by an older vnfctl: take it down and up again)",
        ));
    }
    let stop: &'static AtomicBool = &super::INTERRUPTED;
    let started = Instant::now();
    let n_ids = flows.iter().map(|f| f.id + 1).max().unwrap_or(0);
    let counts: Vec<Arc<AtomicU64>> = (0..n_ids).map(|_| Arc::new(AtomicU64::new(0))).collect();

    let stop_rx = Arc::new(AtomicBool::new(false));
    let receivers = start_receivers(&flows, &stop_rx, &counts)?;

    // TCP flows and the UDP senders; the main flow reports progress.
    let tcp: Vec<(usize, Joined<TcpOut>)> = flows
        .iter()
        .filter(|f| f.protocol == Proto::Tcp)
        .map(|f| {
            let fl = f.clone();
            (
                f.id,
                pktgen::netns::spawn_in(&f.client, move || tcp_flow(&fl, stop)),
            )
        })
        .collect();
    let (prog_tx, prog_rx) = std::sync::mpsc::channel::<String>();
    let senders = start_senders(&flows, opts, &counts, stop, &prog_tx);
    drop(prog_tx);
    for line in prog_rx {
        progress(&line);
    }
    let mut sent: BTreeMap<usize, SendSummary> = BTreeMap::new();
    for (id, h) in senders {
        sent.insert(id, joined(h, "sender")?);
    }
    if let Some(m) = flows.iter().find(|f| f.main)
        && let Some(s) = sent.get(&m.id)
    {
        progress(&format!(
            "[{:4.1}s] client done: sent {}; the server has {} so far (waiting for stragglers)",
            s.elapsed_secs,
            s.sent,
            counts[m.id].load(Ordering::Relaxed).min(s.sent)
        ));
    }
    let mut tcp_out: BTreeMap<usize, TcpOut> = BTreeMap::new();
    for (id, h) in tcp {
        tcp_out.insert(id, joined(h, "TCP client")?);
    }
    wait_for_stragglers(&counts);
    stop_rx.store(true, Ordering::Relaxed);
    let mut rx: BTreeMap<(String, SocketAddr), RxOut> = BTreeMap::new();
    for (k, h) in receivers {
        rx.insert(k, joined(h, "receiver")?);
    }
    let sharing = sharing(&flows);
    let results = flows
        .into_iter()
        .map(|f| assemble(f, &mut sent, &mut tcp_out, &mut rx, &sharing))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrafficResult {
        settings: settings(tb, opts),
        flows: results,
        interrupted: super::interrupted(),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

type Receivers = Vec<((String, SocketAddr), Joined<RxOut>)>;

/// One receiver per UDP target, each started (bound) before this returns.
fn start_receivers(
    flows: &[Flow],
    stop_rx: &Arc<AtomicBool>,
    counts: &[Arc<AtomicU64>],
) -> Result<Receivers, TestbedError> {
    let mut targets: Vec<(String, SocketAddr)> = Vec::new();
    for f in flows.iter().filter(|f| f.protocol == Proto::Udp) {
        for t in &f.targets {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
    }
    let mut receivers = Vec::new();
    for (ns, addr) in &targets {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_rx, counts, addr) = (stop_rx.clone(), counts.to_vec(), *addr);
        let h = pktgen::netns::spawn_in(ns, move || receive(addr, &stop_rx, &counts, ready_tx));
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(TestbedError::Traffic {
                    what: format!("receiver on {addr} in {ns}"),
                    source,
                });
            }
            Err(_) => {
                return Err(traffic_err(format!(
                    "receiver on {addr} in {ns} did not start"
                )));
            }
        }
        receivers.push(((ns.clone(), addr), h));
    }

    Ok(receivers)
}

/// The UDP senders, one per UDP flow; the main flow's sender sends a progress line to `prog_tx` once per second.
fn start_senders(
    flows: &[Flow],
    opts: &TrafficOptions,
    counts: &[Arc<AtomicU64>],
    stop: &'static AtomicBool,
    prog_tx: &std::sync::mpsc::Sender<String>,
) -> Vec<(usize, Joined<SendSummary>)> {
    let mut senders: Vec<(usize, Joined<SendSummary>)> = Vec::new();
    for f in flows.iter().filter(|f| f.protocol == Proto::Udp) {
        let mut cfg = SendConfig::new(f.destination);
        cfg.rate_pps = if f.main {
            opts.rate_pps
        } else {
            opts.denied_rate_pps
        };
        cfg.duration = Some(opts.duration);
        cfg.flows = if f.main { opts.flows.max(1) } else { 1 };
        cfg.stream_base = (f.id as u32) << 16;
        let (main, tx, got, dst) = (f.main, prog_tx.clone(), counts[f.id].clone(), f.destination);
        senders.push((
            f.id,
            pktgen::netns::spawn_in(&f.client, move || {
                run_sender(&cfg, stop, |p| {
                    if main {
                        // read after the sender counted: the server can never be ahead
                        let got = got.load(Ordering::Relaxed).min(p.total);
                        let _ = tx.send(format!(
                            "[{:4.1}s] client sends {:>6} pps to {dst} (total {}); the server has {got}",
                            p.elapsed_secs, p.packets, p.total
                        ));
                    }
                })
                .map_err(TrafficError::from)
            }),
        ));
    }
    senders
}

/// Lets the last packets arrive: until nothing came for 200 ms (at most 3 s).
fn wait_for_stragglers(counts: &[Arc<AtomicU64>]) {
    let total = || {
        counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let mut last = total();
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(200));
        if total() == last {
            break;
        }
        last = total();
    }
}

/// How many UDP flows send to each target.
fn sharing(flows: &[Flow]) -> BTreeMap<(String, SocketAddr), usize> {
    let mut sharing: BTreeMap<(String, SocketAddr), usize> = BTreeMap::new();
    for t in flows
        .iter()
        .filter(|f| f.protocol == Proto::Udp)
        .flat_map(|f| &f.targets)
    {
        *sharing.entry(t.clone()).or_default() += 1;
    }
    sharing
}

fn settings(tb: &Testbed, opts: &TrafficOptions) -> Settings {
    Settings {
        testbed: tb.name().to_string(),
        chain: crds::manifest::parse_single_chain(&tb.state().manifest)
            .ok()
            .and_then(|c| c.metadata.name)
            .unwrap_or_default(),
        hook: tb.attachments().to_vec(),
        rate_pps: opts.rate_pps,
        other_rate_pps: opts.denied_rate_pps,
        duration_s: opts.duration.as_secs_f64(),
        packet_size: PACKET_SIZE,
        main_flow_ports: opts.flows,
        tcp_requests: TCP_REQUESTS,
        version: env!("CARGO_PKG_VERSION").to_string(),
        commit: commit(),
    }
}

/// Puts one flow's numbers together from what the senders, TCP clients and receivers returned.
fn assemble(
    f: Flow,
    sent: &mut BTreeMap<usize, SendSummary>,
    tcp: &mut BTreeMap<usize, TcpOut>,
    rx: &mut BTreeMap<(String, SocketAddr), RxOut>,
    sharing: &BTreeMap<(String, SocketAddr), usize>,
) -> Result<FlowResult, TestbedError> {
    let mut r = FlowResult {
        ok: false,
        sent: 0,
        delivered: 0,
        sender: None,
        received: None,
        undecoded: 0,
        percentiles_us: Vec::new(),
        samples: 0,
        cdf_us: Vec::new(),
        served_by: Vec::new(),
        errors: Vec::new(),
        flow: f,
    };
    let f = &r.flow;
    match f.protocol {
        Proto::Tcp => {
            let (s, ok, served, errors, hist) = tcp
                .remove(&f.id)
                .ok_or_else(|| traffic_err("a TCP flow went missing"))?;
            (r.sent, r.delivered, r.served_by, r.errors) = (s, ok, served, errors);
            r.samples = hist.len();
            r.percentiles_us = plot::percentiles_from_histogram(&hist);
            r.cdf_us = plot::cdf_from_histogram(&hist);
        }
        Proto::Udp => {
            let s = sent
                .remove(&f.id)
                .ok_or_else(|| traffic_err("a UDP sender went missing"))?;
            r.sent = s.sent;
            r.sender = Some(s);
            let mut hist = new_hist().map_err(|source| TestbedError::Traffic {
                what: format!("flow {}", f.id),
                source,
            })?;
            for t in &f.targets {
                let Some((per, undecoded)) = rx.get_mut(t) else {
                    continue;
                };
                if let Some((summary, h)) = per.remove(&f.id) {
                    r.delivered += summary.unique;
                    let _ = hist.add(&h);
                    r.received = Some(summary);
                }
                // payloads the chain changed: this flow's only when it is the target's only flow
                if sharing.get(t) == Some(&1) && *undecoded > 0 {
                    r.undecoded += *undecoded;
                    r.delivered += *undecoded;
                    *undecoded = 0;
                }
            }
            r.samples = hist.len();
            r.percentiles_us = plot::percentiles_from_histogram(&hist);
            r.cdf_us = plot::cdf_from_histogram(&hist);
        }
    }
    r.ok = meets(r.flow.expect, r.flow.protocol, r.sent, r.delivered);
    Ok(r)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn latency_line(l: &LatencySummary) -> String {
    format!(
        "p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        us(l.p50_ns),
        us(l.p90_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns)
    )
}

/// One flow's lines: `✓ denied 10.0.1.66 → 10.0.0.200:9999 udp: sent 6000, delivered 0 (fw rule 0 denies)`,
/// then its details.
pub fn flow_lines(r: &FlowResult) -> Vec<String> {
    let f = &r.flow;
    let unit = match f.protocol {
        Proto::Udp => "",
        Proto::Tcp => " requests",
    };
    let verdict = match (r.ok, f.expect) {
        (true, _) => "✓".to_string(),
        (false, Expect::Delivered) => "✗ expected every one delivered".to_string(),
        (false, Expect::Dropped) => "✗ expected none delivered".to_string(),
    };
    let mut v = vec![format!(
        "{verdict} {}: sent {}{unit}, delivered {}  ({})",
        f.label(),
        r.sent,
        r.delivered,
        f.why
    )];
    if let Some(rx) = &r.received
        && rx.unique > 0
    {
        v.push(format!(
            "    lost {}, reordered {}, duplicates {}; one-way latency {}; jitter (RFC 3550) {:.1} µs",
            rx.lost,
            rx.reordered,
            rx.duplicates,
            latency_line(&rx.latency),
            rx.jitter_rfc3550_ns / 1000.0
        ));
    }
    if r.undecoded > 0 {
        v.push(format!(
            "    {} arrived with a payload that is no longer pktgen's (the chain rewrote it), so no latency",
            r.undecoded
        ));
    }
    if !r.served_by.is_empty() {
        v.push(format!("    answered by {}", r.served_by.join(", ")));
    }
    if !r.errors.is_empty() && f.expect == Expect::Delivered {
        v.push(format!("    errors: {}", r.errors.join("; ")));
    }
    v
}

/// The report's flow section: every flow's lines and a closing verdict.
pub fn summary_lines(r: &TrafficResult) -> Vec<String> {
    let mut v: Vec<String> = r.flows.iter().flat_map(flow_lines).collect();
    let bad = r.flows.iter().filter(|f| !f.ok).count();
    v.push(if bad == 0 {
        format!(
            "every flow got what the chain says ({} flows)",
            r.flows.len()
        )
    } else {
        format!(
            "{bad} of {} flows did not get what the chain says",
            r.flows.len()
        )
    });
    v
}

/// A function's numbers for the JSON.
#[derive(Debug, Serialize)]
struct FunctionJson {
    name: String,
    packets: u64,
    passed: u64,
    drops: BTreeMap<String, u64>,
    /// (upper bound in ns, cumulative count) of the kernel's log2 buckets.
    buckets_ns: Vec<(f64, u64)>,
    /// (percentile, upper bound in ns of the bucket holding it), where the samples support it.
    percentiles_ns: Vec<(f64, f64)>,
    samples: u64,
}

/// The per-function reports of a `/metrics` text in chain order (`order`; others after, as listed).
pub fn ordered_functions(metrics_text: &str, order: &[String]) -> Vec<metrics::FunctionReport> {
    let mut functions = metrics::functions(&metrics::parse(metrics_text));
    functions.sort_by_key(|f| {
        order
            .iter()
            .position(|o| *o == f.name)
            .unwrap_or(usize::MAX)
    });
    functions
}

/// Counters, drops, kernel buckets and the supported percentiles of each function, for JSON and YAML output.
pub fn functions_json(functions: &[metrics::FunctionReport]) -> serde_json::Value {
    let fj: Vec<FunctionJson> = functions
        .iter()
        .map(|f| {
            let samples = f.buckets.last().map_or(0, |b| b.1);
            FunctionJson {
                name: f.name.clone(),
                packets: f.packets,
                passed: f.passed,
                drops: f.drops.clone(),
                buckets_ns: f
                    .buckets
                    .iter()
                    .filter(|(le, _)| le.is_finite())
                    .map(|(le, c)| (le * 1e9, *c))
                    .collect(),
                percentiles_ns: plot::PERCENTILES
                    .iter()
                    .filter(|p| supported(**p, samples))
                    .filter_map(|p| f.quantile_ns(p / 100.0).map(|ns| (*p, ns)))
                    .collect(),
                samples,
            }
        })
        .collect();
    serde_json::to_value(fj).unwrap_or_default()
}

/// Percentiles that `samples` support: p needs at least 10 samples beyond it (1/(1−p) ≤ samples/10).
pub fn supported(p: f64, samples: u64) -> bool {
    p < 100.0 && (100.0 / (100.0 - p)) * 10.0 <= samples as f64
}

/// Writes the plots of the main flow against each function's kernel histogram into `dir`
/// (`STEM-percentiles.{png,svg}`, `STEM-ccdf.{png,svg}`) and everything as `STEM.json`: settings, flows,
/// per-function counters and percentiles, and the lines the terminal showed (`terminal`).
pub fn write_results(
    dir: &Path,
    stem: &str,
    r: &TrafficResult,
    metrics_text: &str,
    order: &[String],
    terminal: &[String],
) -> Result<Vec<PathBuf>, TestbedError> {
    std::fs::create_dir_all(dir).map_err(|source| TestbedError::Io {
        context: format!("create {}", dir.display()),
        source,
    })?;
    let functions = ordered_functions(metrics_text, order);
    let results = |source: TrafficError| TestbedError::Traffic {
        what: format!("writing the results into {}", dir.display()),
        source,
    };
    let mut files = plot::testbed_plots(dir, stem, r, &functions)
        .map_err(|e| results(TrafficError::Plot(e)))?;
    let fj = functions_json(&functions);
    let json = dir.join(format!("{stem}.json"));
    let doc = serde_json::json!({
        "settings": r.settings,
        "interrupted": r.interrupted,
        "elapsedSeconds": r.elapsed_s,
        "allFlowsOk": r.all_ok(),
        "flows": r.flows,
        "functions": fj,
        "terminal": terminal,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| results(TrafficError::Json(e)))?;
    std::fs::write(&json, text).map_err(|source| TestbedError::Io {
        context: format!("write {}", json.display()),
        source,
    })?;
    files.push(json);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_judged_as_documented() {
        assert!(meets(Expect::Dropped, Proto::Udp, 6000, 0));
        assert!(!meets(Expect::Dropped, Proto::Udp, 6000, 1));
        assert!(
            !meets(Expect::Dropped, Proto::Udp, 0, 0),
            "nothing sent proves nothing"
        );
        assert!(meets(Expect::Delivered, Proto::Udp, 1000, 950));
        assert!(!meets(Expect::Delivered, Proto::Udp, 1000, 949));
        assert!(!meets(Expect::Delivered, Proto::Udp, 0, 0));
        assert!(meets(Expect::Delivered, Proto::Tcp, 4, 4));
        assert!(!meets(Expect::Delivered, Proto::Tcp, 4, 3));
    }

    #[test]
    fn percentiles_need_samples_beyond_them() {
        assert!(supported(50.0, 20));
        assert!(!supported(99.0, 999));
        assert!(supported(99.0, 1000));
        assert!(!supported(99.99, 99_999));
        assert!(!supported(100.0, u64::MAX));
    }
}
