//! Drives pktgen traffic through a testbed that is up (allowed and denied clients to the chain's UDP service),
//! with live progress, and turns the result and the data plane's histograms into a report and plots.
//!
//! The receiver is written here, not taken from pktgen's CLI: it keeps the whole HDR histogram of one-way
//! latency (pktgen's summary keeps only percentiles), which the CDF plot needs. It decodes pktgen's payload and
//! counts with pktgen's `RxStats`, so loss, reordering and duplicates mean the same as in `pktgen recv`.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use pktgen::clock::monotonic_ns;
use pktgen::payload::Header;
use pktgen::send::{SendConfig, SendSummary, run_sender};
use pktgen::stats::{LatencySummary, RxStats, RxSummary};
use serde::Serialize;

use super::{Testbed, TestbedError, metrics};
use crate::plot;

/// What to send.
#[derive(Clone, Debug)]
pub struct TrafficOptions {
    /// Packets per second from the allowed client.
    pub rate_pps: f64,
    /// Packets per second from the denied client (if the testbed has one).
    pub denied_rate_pps: f64,
    /// How long.
    pub duration: Duration,
    /// Flows (source ports) of the allowed client.
    pub flows: u32,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        Self {
            rate_pps: 10_000.0,
            denied_rate_pps: 2_000.0,
            duration: Duration::from_secs(3),
            flows: 4,
        }
    }
}

/// What a traffic run measured.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficResult {
    /// The service the traffic went to, as `proto address:port`.
    pub service: String,
    /// The server that received it.
    pub target: SocketAddr,
    /// The allowed client's sender.
    pub sent: SendSummary,
    /// The denied client's sender, if any.
    pub denied_sent: Option<SendSummary>,
    /// What the server received (pktgen's accounting).
    pub received: RxSummary,
    /// One-way latency CDF points `(µs, fraction)` from the full histogram.
    pub cdf_us: Vec<(f64, f64)>,
    /// `(percentile, µs)` of one-way latency.
    pub percentiles_us: Vec<(f64, f64)>,
}

fn traffic_err(message: impl Into<String>) -> TestbedError {
    TestbedError::Dataplane {
        message: message.into(),
        log: String::new(),
    }
}

/// Sends UDP from the allowed (and the denied) client to the testbed's first UDP service, receives it on the
/// service's target server, and calls `progress` once per second with a line to print.
pub fn run(
    tb: &Testbed,
    opts: &TrafficOptions,
    mut progress: impl FnMut(&str),
) -> Result<TrafficResult, TestbedError> {
    let svc = tb
        .services()
        .iter()
        .find(|s| s.protocol == "udp")
        .cloned()
        .ok_or_else(|| {
            traffic_err(
                "the chain offers no UDP service (NAT DNAT or UDP load balancer) to send to",
            )
        })?;
    let (taddr, tport) = svc.targets[0];
    let server = tb
        .server(taddr)
        .ok_or_else(|| traffic_err(format!("no server namespace holds {taddr}")))?
        .netns
        .clone();
    let target = SocketAddr::new(taddr, tport);
    let dst = SocketAddr::new(svc.address, svc.port);

    let stop_rx = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = {
        let (stop_rx, received) = (stop_rx.clone(), received.clone());
        pktgen::netns::spawn_in(
            &server,
            move || -> Result<(RxSummary, Histogram<u64>), String> {
                receive(target, &stop_rx, &received, ready_tx)
            },
        )
    };
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(traffic_err(format!("receiver on {target}: {e}"))),
        Err(_) => return Err(traffic_err(format!("receiver on {target} did not start"))),
    }

    let denied = tb.denied_client().map(|d| {
        let mut cfg = SendConfig::new(dst);
        cfg.rate_pps = opts.denied_rate_pps;
        cfg.duration = Some(opts.duration);
        let ns = d.netns.clone();
        pktgen::netns::spawn_in(&ns, move || {
            run_sender(&cfg, &AtomicBool::new(false), |_| {}).map_err(|e| e.to_string())
        })
    });
    let mut cfg = SendConfig::new(dst);
    cfg.rate_pps = opts.rate_pps;
    cfg.duration = Some(opts.duration);
    cfg.flows = opts.flows;
    let client = tb.client().netns.clone();
    let (prog_tx, prog_rx) = std::sync::mpsc::channel::<(f64, u64, u64)>();
    let sender = pktgen::netns::spawn_in(&client, move || {
        run_sender(&cfg, &AtomicBool::new(false), |p| {
            let _ = prog_tx.send((p.elapsed_secs, p.packets, p.total));
        })
        .map_err(|e| e.to_string())
    });
    for (t, pps, total) in prog_rx {
        let got = received.load(Ordering::Relaxed);
        progress(&format!(
            "[{t:4.1}s] client sends {pps:>6} pps to {dst} (total {total}); server {target} has {got}"
        ));
    }
    let sent = sender
        .join()
        .map_err(|_| traffic_err("the sender thread panicked"))??
        .map_err(|e| traffic_err(format!("sender: {e}")))?;
    let denied_sent = match denied {
        Some(h) => Some(
            h.join()
                .map_err(|_| traffic_err("the denied sender panicked"))??
                .map_err(|e| traffic_err(format!("denied sender: {e}")))?,
        ),
        None => None,
    };
    // let the last packets arrive: until nothing came for 200 ms (at most 3 s)
    let mut last = received.load(Ordering::Relaxed);
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(200));
        let now = received.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    stop_rx.store(true, Ordering::Relaxed);
    let (summary, hist) = rx
        .join()
        .map_err(|_| traffic_err("the receiver thread panicked"))??
        .map_err(|e| traffic_err(format!("receiver: {e}")))?;
    Ok(TrafficResult {
        service: format!("{} {}", svc.protocol, dst),
        target,
        sent,
        denied_sent,
        received: summary,
        cdf_us: plot::cdf_from_histogram(&hist),
        percentiles_us: plot::percentiles_from_histogram(&hist),
    })
}

fn receive(
    bind: SocketAddr,
    stop: &AtomicBool,
    received: &AtomicU64,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<(RxSummary, Histogram<u64>), String> {
    let setup = || -> Result<(UdpSocket, RxStats, Histogram<u64>), String> {
        let s = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
        // room for bursts while this thread is descheduled (as `pktgen recv` does)
        pktgen::mmsg::set_rcvbuf(&s, 8 << 20).map_err(|e| format!("SO_RCVBUF: {e}"))?;
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let stats = RxStats::new(pktgen::stats::DEFAULT_WINDOW).map_err(|e| e.to_string())?;
        let h = Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
        Ok((s, stats, h))
    };
    let (sock, mut stats, mut hist) = match setup() {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let now = monotonic_ns();
                if let Ok(h) = Header::decode(&buf[..n]) {
                    stats.record(&h, n, now);
                    let _ = hist.record(now.saturating_sub(h.tx_ns).max(1));
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    Ok((stats.summary(), hist))
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn latency_line(l: &LatencySummary) -> String {
    format!(
        "p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        us(l.p50_ns),
        us(l.p90_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns)
    )
}

/// The end-to-end lines of the report.
pub fn summary_lines(r: &TrafficResult) -> Vec<String> {
    let rx = &r.received;
    let mut v = vec![
        format!(
            "{}: sent {} at {:.0} pps, {} received on {}, lost {}, reordered {}, duplicates {}",
            r.service,
            r.sent.sent,
            r.sent.pps,
            rx.unique,
            r.target,
            rx.lost,
            rx.reordered,
            rx.duplicates
        ),
        format!(
            "one-way latency: {}; jitter (RFC 3550) {:.1} us",
            latency_line(&rx.latency),
            rx.jitter_rfc3550_ns / 1000.0
        ),
    ];
    if let Some(d) = &r.denied_sent {
        v.push(format!(
            "denied client: sent {} (the firewall should drop every one)",
            d.sent
        ));
    }
    v
}

/// Writes the latency CDF and the percentile plot (end to end, and each function's kernel histogram) into
/// `dir` as `STEM-latency-cdf.{png,svg}` and `STEM-percentiles.{png,svg}`, and the numbers as `STEM.json`.
pub fn write_results(
    dir: &Path,
    stem: &str,
    r: &TrafficResult,
    metrics_text: &str,
) -> Result<Vec<PathBuf>, TestbedError> {
    std::fs::create_dir_all(dir).map_err(|source| TestbedError::Io {
        context: format!("create {}", dir.display()),
        source,
    })?;
    let functions = metrics::functions(&metrics::parse(metrics_text));
    let mut cdf = vec![plot::CdfSeries {
        name: "end to end (pktgen, one-way)".into(),
        points: r.cdf_us.clone(),
    }];
    let mut pct = vec![plot::PercentileSeries {
        name: "end to end (pktgen, one-way)".into(),
        points: r.percentiles_us.clone(),
    }];
    for f in &functions {
        let total = f.buckets.last().map_or(0, |b| b.1);
        if total == 0 {
            continue;
        }
        // from the last empty bucket to the first full one
        let mut points: Vec<(f64, f64)> = Vec::new();
        for (le, c) in f.buckets.iter().filter(|(le, _)| le.is_finite()) {
            let q = *c as f64 / total as f64;
            if q == 0.0 {
                points.clear();
            }
            points.push((le * 1e6, q));
            if q >= 1.0 {
                break;
            }
        }
        cdf.push(plot::CdfSeries {
            name: format!("{} (kernel histogram)", f.name),
            points,
        });
        let points: Vec<(f64, f64)> = plot::PERCENTILES
            .iter()
            .filter_map(|p| f.quantile_ns(p / 100.0).map(|ns| (*p, ns / 1000.0)))
            .collect();
        pct.push(plot::PercentileSeries {
            name: format!("{} (kernel, bucket bound)", f.name),
            points,
        });
    }
    let plot_err = |e: plot::PlotError| TestbedError::Dataplane {
        message: format!("writing plots: {e}"),
        log: String::new(),
    };
    let a = plot::latency_cdf(
        &dir.join(format!("{stem}-latency-cdf")),
        &format!("{stem}: latency CDF"),
        &cdf,
    )
    .map_err(plot_err)?;
    let b = plot::percentiles(
        &dir.join(format!("{stem}-percentiles")),
        &format!("{stem}: latency percentiles"),
        &pct,
    )
    .map_err(plot_err)?;
    let json = dir.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(r).map_err(|e| traffic_err(e.to_string()))?;
    std::fs::write(&json, text).map_err(|source| TestbedError::Io {
        context: format!("write {}", json.display()),
        source,
    })?;
    Ok(vec![a.png, a.svg, b.png, b.svg, json])
}
