//! `pktgen` command line: `send`, `recv`, `reflect`, `send-xdp`, `send-xsk` and `recv-xdp`, with live progress on stderr once per
//! second and a final summary (human-readable, or JSON on stdout with `--json`).

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pktgen::frame::{Endpoints, interface_mac};
use pktgen::pacing::Pattern;
use pktgen::recv::{Receiver, RecvConfig, ReflectConfig, Reflector, StopWhen};
use pktgen::send::SendSummary;
use pktgen::send::{Proto, SendConfig, SendProgress, run_sender};
use pktgen::sizes::SizeSpec;
use pktgen::stats::{LatencySummary, RxSummary};
use pktgen::tcp::TcpReceiver;
use pktgen::xdp_live::{XdpLiveConfig, parse_mac, run_xdp_live};
use pktgen::xdp_sink::{SinkAction, SinkConfig, XdpMode, run_sink};
use pktgen::xsk::{XskConfig, XskStats, run_xsk_sender};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "pktgen",
    version,
    about = "UDP packet generator, receiver and reflector for build-vnf chains"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send paced test packets to a receiver or reflector.
    Send(SendArgs),
    /// Receive test packets and report loss, reordering, duplicates, latency and jitter.
    Recv(RecvArgs),
    /// Echo every datagram back to its sender unchanged (for `send --rtt`).
    Reflect(ReflectArgs),
    /// Fast path: an unpaced burst of IPv4/UDP test frames from BPF_PROG_TEST_RUN live frames.
    SendXdp(SendXdpArgs),
    /// AF_XDP generator: paced IPv4/IPv6 UDP test frames from an AF_XDP socket (copy mode).
    ///
    /// Same pacing, flow, size and length flags as `send`; frames carry the pktgen header and
    /// correct IP/UDP checksums, so `recv` (or `recv-xdp`) on the far side measures them.
    SendXsk(SendXskArgs),
    /// XDP sink: count pktgen frames per CPU and per stream in XDP, drop (or pass) them.
    ///
    /// Reports packets, bytes and rate. Frames that are not pktgen's are counted as "other" and
    /// always passed. Without --count/--duration/--idle it runs until Ctrl-C.
    RecvXdp(RecvXdpArgs),
    /// Listeners for a test server: UDP echo and a tiny HTTP server (`served by ADDR:PORT`) on the wildcard
    /// address; prints `ready` on stdout once every socket is bound, then serves until killed.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// UDP port to echo on (repeat for more).
    #[arg(long)]
    udp: Vec<u16>,
    /// TCP port to answer HTTP on (repeat for more).
    #[arg(long)]
    tcp: Vec<u16>,
    /// Listen on IPv4 (0.0.0.0).
    #[arg(long)]
    ipv4: bool,
    /// Listen on IPv6 (::).
    #[arg(long)]
    ipv6: bool,
}

fn serve(a: ServeArgs) -> Result<()> {
    let l = pktgen::serve::Listeners::start(&pktgen::serve::ServeConfig {
        ipv4: a.ipv4,
        ipv6: a.ipv6,
        udp: a.udp,
        tcp: a.tcp,
    })
    .context("serve")?;
    eprintln!("listening: {}", l.describe().join(", "));
    println!("ready");
    l.run().context("serve")?;
    Ok(())
}

#[derive(Args)]
struct JsonQuiet {
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Suppress the once-per-second progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct SendXskArgs {
    /// Interface to transmit on.
    #[arg(long)]
    dev: String,
    /// Queue of --dev to bind the AF_XDP socket to.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Source address:port of flow 0 (flow i uses PORT+i); IPv4 or [IPv6].
    #[arg(long)]
    src: SocketAddr,
    /// Destination address:port (same family as --src).
    #[arg(long)]
    dst: SocketAddr,
    /// Destination MAC (the next hop), aa:bb:cc:dd:ee:ff.
    #[arg(long)]
    dst_mac: String,
    /// Source MAC (default: the interface's own, from /sys/class/net/DEV/address).
    #[arg(long)]
    src_mac: Option<String>,
    #[command(flatten)]
    traffic: Traffic,
    /// Most frames per TX-ring commit.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// TX/completion ring size (power of two, 64..=16384); the UMEM holds twice as many frames.
    #[arg(long, default_value_t = 2048)]
    ring_size: u32,
    #[command(flatten)]
    json_quiet: JsonQuiet,
}

#[derive(Clone, Copy, ValueEnum)]
enum XdpModeArg {
    /// Native (driver) XDP, else generic.
    Auto,
    /// Native only.
    Native,
    /// Generic (skb) only.
    Generic,
}

#[derive(Args)]
struct RecvXdpArgs {
    /// Interface to attach the sink to (no other XDP program may be attached).
    #[arg(long)]
    dev: String,
    /// Pass counted frames up the stack instead of dropping them.
    #[arg(long)]
    pass: bool,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    mode: XdpModeArg,
    /// Stop after this many pktgen frames.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many seconds without pktgen frames, once they have started.
    #[arg(long)]
    idle: Option<f64>,
    #[command(flatten)]
    json_quiet: JsonQuiet,
}

#[derive(Args)]
struct SendXdpArgs {
    /// Interface to transmit on (XDP_TX); on a veth the peer needs XDP or GRO enabled.
    #[arg(long)]
    dev: String,
    /// Source IPv4 address:port written into the frames.
    #[arg(long)]
    src: SocketAddrV4,
    /// Destination IPv4 address:port.
    #[arg(long)]
    dst: SocketAddrV4,
    /// Destination MAC (the next hop), aa:bb:cc:dd:ee:ff.
    #[arg(long)]
    dst_mac: String,
    /// Source MAC (default: the interface's own, from /sys/class/net/DEV/address).
    #[arg(long)]
    src_mac: Option<String>,
    /// Stream id written into every frame.
    #[arg(long, default_value_t = 0)]
    stream_id: u32,
    /// IP packet size, bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(52..=1500))]
    size: u16,
    /// Frames to send.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Frames per kernel batch (1..=256).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch: u32,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PatternArg {
    /// Evenly spaced packets.
    Constant,
    /// Constant rate during --on-ms, silent during --off-ms.
    Onoff,
    /// Exponential inter-arrival times.
    Poisson,
    /// Pareto inter-arrival times (heavy-tailed), shape --pareto-shape.
    Pareto,
}

#[derive(Args)]
struct Common {
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Suppress the once-per-second progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Datagrams per sendmmsg/recvmmsg call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
}

/// Pacing, flows, sizes and run length: shared by `send` and `send-xsk`.
#[derive(Args)]
struct Traffic {
    /// Number of flows (distinct source ports, one stream id each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    flows: u32,
    /// Stream id of the first flow.
    #[arg(long, default_value_t = 0)]
    stream_id: u32,
    /// Packets per second over all flows; 0 sends as fast as possible.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Inter-departure pattern.
    #[arg(long, value_enum, default_value_t = PatternArg::Constant)]
    pattern: PatternArg,
    /// On period for --pattern onoff, milliseconds.
    #[arg(long, default_value_t = 100)]
    on_ms: u64,
    /// Off period for --pattern onoff, milliseconds.
    #[arg(long, default_value_t = 100)]
    off_ms: u64,
    /// Shape for --pattern pareto (must be > 1).
    #[arg(long, default_value_t = 1.5)]
    pareto_shape: f64,
    /// RNG seed for Poisson/Pareto.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// IP packet size(s): a number, a sweep list like 64,512,1500, or imix (7:4:1 of 64/576/1500).
    #[arg(long, default_value = "64")]
    size: SizeSpec,
    /// For a sweep list: packets sent at each size before moving to the next.
    #[arg(long, default_value_t = 1000)]
    per_size: u64,
    /// Stop after this many packets.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds (default 10 when --count is not given).
    #[arg(long)]
    duration: Option<f64>,
}

#[derive(Args)]
struct SendArgs {
    /// Destination address:port (IPv4 or [IPv6]).
    #[arg(long)]
    dst: SocketAddr,
    /// Source address to bind.
    #[arg(long)]
    src: Option<IpAddr>,
    /// First source port (flow i uses PORT+i); 0 picks ephemeral ports.
    #[arg(long, default_value_t = 0)]
    src_port: u16,
    #[command(flatten)]
    traffic: Traffic,
    /// Receive the echoes of a `pktgen reflect` and report round-trip times.
    #[arg(long, conflicts_with = "tcp")]
    rtt: bool,
    /// TCP stream mode: one connection per flow, one length-prefixed record per packet.
    #[arg(long)]
    tcp: bool,
    /// With --rtt: seconds to wait for outstanding echoes after the last packet.
    #[arg(long, default_value_t = 0.5)]
    rtt_grace: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct Listen {
    /// Address:port to listen on.
    #[arg(long, default_value = "0.0.0.0:9000")]
    bind: SocketAddr,
    /// Stop after this many datagrams.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many seconds without traffic, once traffic has started.
    #[arg(long)]
    idle: Option<f64>,
    /// Socket receive buffer, bytes.
    #[arg(long, default_value_t = 8 << 20)]
    rcvbuf: usize,
}

#[derive(Args)]
struct RecvArgs {
    #[command(flatten)]
    listen: Listen,
    /// Sequence window per stream for reorder/duplicate detection (power of two >= 64).
    #[arg(long, default_value_t = 65_536)]
    window: u64,
    /// Accept TCP stream-mode senders (`send --tcp`) instead of UDP.
    #[arg(long)]
    tcp: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ReflectArgs {
    #[command(flatten)]
    listen: Listen,
    #[command(flatten)]
    common: Common,
}

fn secs(name: &str, v: Option<f64>) -> Result<Option<Duration>> {
    v.map(|s| {
        Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--{name} must be a positive number of seconds, got {s}"))
    })
    .transpose()
}

fn stop_when(l: &Listen) -> Result<StopWhen> {
    Ok(StopWhen {
        count: l.count,
        duration: secs("duration", l.duration)?,
        idle: secs("idle", l.idle)?,
    })
}

/// Stops the run cleanly on SIGINT/SIGTERM so the summary is still printed.
fn install_signal_stop() -> Arc<AtomicBool> {
    static STOP: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only performs an atomic store, which is async-signal-safe, and
        // has the signature signal(2) expects.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        while !STOP.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        f.store(true, Ordering::Relaxed);
    });
    flag
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn lat_line(l: &LatencySummary) -> String {
    format!(
        "p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us  (min {:.1}, mean {:.1}, stddev {:.1})",
        us(l.p50_ns),
        us(l.p90_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns),
        us(l.min_ns),
        l.mean_ns / 1000.0,
        l.stddev_ns / 1000.0
    )
}

fn print_rx(title: &str, s: &RxSummary) {
    eprintln!("{title}:");
    eprintln!(
        "  packets {}  unique {}  expected {}  lost {} ({:.4}%)  duplicates {}  reordered {} (max distance {})  out-of-window {}  foreign {}",
        s.packets,
        s.unique,
        s.expected,
        s.lost,
        s.loss_ratio * 100.0,
        s.duplicates,
        s.reordered,
        s.max_reorder_distance,
        s.out_of_window,
        s.foreign
    );
    eprintln!("  latency {}", lat_line(&s.latency));
    eprintln!(
        "  jitter: RFC 3550 {:.1} us (max over streams), mean |D| {:.1} us; streams {}; active {:.2} s",
        s.jitter_rfc3550_ns / 1000.0,
        s.ipdv_mean_abs_ns / 1000.0,
        s.streams.len(),
        s.active_secs
    );
    if s.socket_drops > 0 {
        eprintln!(
            "  warning: {} datagrams were dropped at the receiving socket (buffer full): that part of the loss is the receiver's, not the path's (raise --rcvbuf or --batch)",
            s.socket_drops
        );
    }
    if s.clock_anomalies > 0 {
        eprintln!(
            "  warning: {} packets arrived before they were sent (clock misuse?)",
            s.clock_anomalies
        );
    }
}

fn emit_json(v: &impl Serialize) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).context("encode JSON")?
    );
    Ok(())
}

impl Traffic {
    fn pattern(&self) -> Result<Pattern> {
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            bail!(
                "--rate must be a non-negative number of packets per second, got {}",
                self.rate
            );
        }
        Ok(match self.pattern {
            _ if self.rate == 0.0 => Pattern::Unlimited,
            PatternArg::Constant => Pattern::Constant,
            PatternArg::Onoff => Pattern::OnOff {
                on_ns: self.on_ms.saturating_mul(1_000_000),
                off_ns: self.off_ms.saturating_mul(1_000_000),
            },
            PatternArg::Poisson => Pattern::Poisson,
            PatternArg::Pareto => Pattern::Pareto {
                shape: self.pareto_shape,
            },
        })
    }

    /// `(count, duration)`, with 10 s when neither is given.
    fn length(&self) -> Result<(Option<u64>, Option<Duration>)> {
        let duration = secs("duration", self.duration)?;
        Ok(match (self.count, duration) {
            (None, None) => (None, Some(Duration::from_secs(10))),
            other => other,
        })
    }
}

fn send_progress_line(p: &SendProgress) -> String {
    let secs = p.interval_secs.max(1e-9);
    format!(
        "[{:6.1}s] sent {:>10.0} pps  {:>8.2} Mbit/s payload  total {}",
        p.elapsed_secs,
        p.packets as f64 / secs,
        p.bytes as f64 * 8.0 / 1e6 / secs,
        p.total
    )
}

fn print_send_summary(sum: &SendSummary) {
    eprintln!(
        "sent {} packets ({} bytes payload) in {:.3} s: {:.0} pps, {:.2} Mbit/s payload; dropped {}, send errors {}; lateness mean {:.1} us max {:.1} us",
        sum.sent,
        sum.bytes,
        sum.elapsed_secs,
        sum.pps,
        sum.payload_mbps,
        sum.dropped,
        sum.send_errors,
        sum.mean_lateness_ns / 1000.0,
        us(sum.max_lateness_ns)
    );
}

fn send(a: SendArgs) -> Result<()> {
    let t = &a.traffic;
    let mut cfg = SendConfig::new(a.dst);
    cfg.proto = if a.tcp { Proto::Tcp } else { Proto::Udp };
    cfg.src_ip = a.src;
    cfg.src_port = a.src_port;
    cfg.flows = t.flows;
    cfg.stream_base = t.stream_id;
    cfg.pattern = t.pattern()?;
    cfg.rate_pps = t.rate;
    cfg.seed = t.seed;
    cfg.sizes = t.size.clone().with_per_size(t.per_size);
    (cfg.count, cfg.duration) = t.length()?;
    cfg.batch = a.common.batch as usize;
    cfg.rtt = a.rtt;
    cfg.rtt_grace = secs("rtt-grace", Some(a.rtt_grace))?.unwrap_or_default();
    let stop = install_signal_stop();
    let quiet = a.common.quiet;
    let sum = run_sender(&cfg, &stop, |p: &SendProgress| {
        if quiet {
            return;
        }
        let mut line = send_progress_line(p);
        if let Some(r) = &p.rtt {
            line += &format!(
                "  | echoes {}  rtt p50 {:.1} us  p99 {:.1} us",
                r.packets,
                us(r.latency.p50_ns),
                us(r.latency.p99_ns)
            );
        }
        eprintln!("{line}");
    })
    .context("sender failed")?;
    if a.common.json {
        return emit_json(&sum);
    }
    print_send_summary(&sum);
    if let Some(r) = &sum.rtt {
        print_rx("round trip (latency = RTT)", r);
    }
    Ok(())
}

fn send_xsk(a: SendXskArgs) -> Result<()> {
    let t = &a.traffic;
    let src_mac = match &a.src_mac {
        Some(m) => parse_mac(m).context("--src-mac")?,
        None => interface_mac(&a.dev)
            .with_context(|| format!("cannot read the MAC of {}; pass --src-mac", a.dev))?,
    };
    if a.src.is_ipv4() != a.dst.is_ipv4() {
        bail!(
            "--src {} and --dst {} are different address families",
            a.src,
            a.dst
        );
    }
    let ep = Endpoints {
        src_mac,
        dst_mac: parse_mac(&a.dst_mac).context("--dst-mac")?,
        src: a.src,
        dst: a.dst,
    };
    let mut cfg = XskConfig::new(&a.dev, ep);
    cfg.queue_id = a.queue;
    cfg.flows = t.flows;
    cfg.stream_base = t.stream_id;
    cfg.pattern = t.pattern()?;
    cfg.rate_pps = t.rate;
    cfg.seed = t.seed;
    cfg.sizes = t.size.clone().with_per_size(t.per_size);
    (cfg.count, cfg.duration) = t.length()?;
    cfg.batch = a.batch;
    cfg.ring_size = a.ring_size;
    let stop = install_signal_stop();
    let quiet = a.json_quiet.quiet;
    let (sum, xs) = run_xsk_sender(&cfg, &stop, |p| {
        if !quiet {
            eprintln!("{}", send_progress_line(p));
        }
    })
    .context("AF_XDP sender failed")?;
    if a.json_quiet.json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            send: &'a SendSummary,
            xsk: &'a XskStats,
        }
        return emit_json(&Out {
            send: &sum,
            xsk: &xs,
        });
    }
    print_send_summary(&sum);
    eprintln!(
        "AF_XDP: {} kicks, {} invalid descriptors, TX ring found empty {} times",
        xs.kicks, xs.tx_invalid_descs, xs.tx_ring_empty_descs
    );
    Ok(())
}

fn recv_xdp(a: RecvXdpArgs) -> Result<()> {
    let cfg = SinkConfig {
        ifname: a.dev,
        action: if a.pass {
            SinkAction::Pass
        } else {
            SinkAction::Drop
        },
        mode: match a.mode {
            XdpModeArg::Auto => None,
            XdpModeArg::Native => Some(XdpMode::Native),
            XdpModeArg::Generic => Some(XdpMode::Generic),
        },
        stop: StopWhen {
            count: a.count,
            duration: secs("duration", a.duration)?,
            idle: secs("idle", a.idle)?,
        },
    };
    let stop = install_signal_stop();
    let quiet = a.json_quiet.quiet;
    let sum = run_sink(&cfg, &stop, |p| {
        if !quiet {
            eprintln!(
                "[{:6.1}s] sink {:>10.0} pps  {:>8.2} Mbit/s  total {}",
                p.elapsed_secs,
                p.pps,
                p.bytes as f64 * 8.0 / 1e6,
                p.total
            );
        }
    })
    .context("XDP sink failed")?;
    if a.json_quiet.json {
        return emit_json(&sum);
    }
    eprintln!(
        "XDP sink on {} ({:?}, {:?}): {} pktgen frames, {} bytes, {:.0} pps, {:.2} Mbit/s over {:.3} s active; {} other frames passed",
        sum.dev,
        sum.mode,
        sum.action,
        sum.packets,
        sum.bytes,
        sum.pps,
        sum.mbps,
        sum.active_secs,
        sum.other_packets
    );
    let cpus: Vec<String> = sum
        .per_cpu
        .iter()
        .enumerate()
        .filter(|(_, c)| c.packets > 0)
        .map(|(i, c)| format!("cpu{i} {}", c.packets))
        .collect();
    eprintln!("  per CPU: {}", cpus.join(", "));
    for s in &sum.streams {
        eprintln!(
            "  stream {}: {} frames, {} bytes",
            s.stream_id, s.count.packets, s.count.bytes
        );
    }
    if sum.streams_untracked > 0 {
        eprintln!(
            "  {} frames of streams beyond the first {} are in the totals only",
            sum.streams_untracked,
            pktgen::xdp_sink::MAX_STREAMS
        );
    }
    Ok(())
}

fn recv(a: RecvArgs) -> Result<()> {
    let mut cfg = RecvConfig::new(a.listen.bind);
    cfg.batch = a.common.batch as usize;
    cfg.rcvbuf = a.listen.rcvbuf;
    cfg.window = a.window;
    cfg.stop = stop_when(&a.listen)?;
    let stop = install_signal_stop();
    let quiet = a.common.quiet;
    let report = |iv: &pktgen::stats::Interval| {
        if !quiet {
            eprintln!(
                "recv {:>10} pps  {:>8.2} Mbit/s  lost {}  p50 {:.1} us  p99 {:.1} us",
                iv.packets,
                iv.bytes as f64 * 8.0 / 1e6,
                iv.lost_total,
                us(iv.latency.p50_ns),
                us(iv.latency.p99_ns)
            );
        }
    };
    let sum = if a.tcp {
        let rx = TcpReceiver::bind(cfg).context("TCP receiver setup")?;
        if !quiet {
            eprintln!("listening on {} (TCP)", rx.local_addr()?);
        }
        rx.run(&stop, report)
    } else {
        let rx = Receiver::bind(cfg).context("receiver setup")?;
        if !quiet {
            eprintln!("listening on {}", rx.local_addr()?);
        }
        rx.run(&stop, report)
    }
    .context("receiver failed")?;
    if a.common.json {
        return emit_json(&sum);
    }
    print_rx("received (latency = one-way)", &sum);
    Ok(())
}

fn reflect(a: ReflectArgs) -> Result<()> {
    let mut cfg = ReflectConfig::new(a.listen.bind);
    cfg.batch = a.common.batch as usize;
    cfg.rcvbuf = a.listen.rcvbuf;
    cfg.stop = stop_when(&a.listen)?;
    let r = Reflector::bind(cfg).context("reflector setup")?;
    if !a.common.quiet {
        eprintln!("reflecting on {}", r.local_addr()?);
    }
    let stop = install_signal_stop();
    let quiet = a.common.quiet;
    let mut last = 0u64;
    let sum = r
        .run(&stop, |s| {
            if !quiet {
                eprintln!(
                    "reflect {:>10} pps  total {}  dropped {}",
                    s.reflected - last,
                    s.reflected,
                    s.dropped
                );
            }
            last = s.reflected;
        })
        .context("reflector failed")?;
    if a.common.json {
        return emit_json(&sum);
    }
    eprintln!(
        "reflected {} of {} datagrams ({} bytes) in {:.2} s; dropped {}, socket drops {}",
        sum.reflected, sum.received, sum.bytes, sum.elapsed_secs, sum.dropped, sum.socket_drops
    );
    Ok(())
}

fn send_xdp(a: SendXdpArgs) -> Result<()> {
    let src_mac = match &a.src_mac {
        Some(m) => m.clone(),
        None => std::fs::read_to_string(format!("/sys/class/net/{}/address", a.dev))
            .with_context(|| format!("cannot read the MAC of {}; pass --src-mac", a.dev))?,
    };
    let cfg = XdpLiveConfig {
        ifname: a.dev,
        src_mac: parse_mac(&src_mac)?,
        dst_mac: parse_mac(&a.dst_mac)?,
        src: a.src,
        dst: a.dst,
        stream_id: a.stream_id,
        ip_size: usize::from(a.size),
        count: a.count,
        batch: a.batch,
    };
    let sum = run_xdp_live(&cfg).context("live-frames sender failed")?;
    if a.json {
        return emit_json(&sum);
    }
    eprintln!(
        "sent {} frames in {:.3} s: {:.0} pps",
        sum.sent, sum.elapsed_secs, sum.pps
    );
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Send(a) => send(a),
        Cmd::Recv(a) => recv(a),
        Cmd::Reflect(a) => reflect(a),
        Cmd::SendXdp(a) => send_xdp(a),
        Cmd::SendXsk(a) => send_xsk(a),
        Cmd::RecvXdp(a) => recv_xdp(a),
        Cmd::Serve(a) => serve(a),
    }
}
