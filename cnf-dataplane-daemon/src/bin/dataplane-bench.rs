//! `dataplane-bench`: measures the cnf-dataplane daemon itself (not the packet path) in a namespace testbed:
//! idle RSS with the five-function edge chain attached, start→attached time, ApplyChain latency over the
//! Unix-socket gRPC (rule-only and composition changes) and `/metrics` scrape time, beside the targets.
//!
//! Run as root after building the daemon: `cargo build --release -p cnf-dataplane-daemon && cargo run
//! --release -p cnf-dataplane-daemon --bin dataplane-bench [-- --json]`. Everything it creates (two network namespaces, a
//! veth pair inside them, a temporary directory, the daemon) is removed at the end, on error and on Ctrl-C.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use dataplane_api::dataplane_client::DataplaneClient;
use dataplane_api::{ApplyChainRequest, ChainRef, GetStatusRequest, Hook};
use tonic::transport::{Channel, Endpoint};

/// The chain measured: the project's edge chain (firewall → NAT → LB → rate limiter → monitor).
const EDGE_CHAIN: &str = include_str!("../../../examples/edge-chain.yaml");
/// Interface of the CNF namespace the chain attaches to (a veth this tool creates).
const IFACE: &str = "cnf0";
/// Metrics address inside the CNF namespace.
const METRICS: &str = "127.0.0.1:9090";

#[derive(Parser)]
#[command(
    name = "dataplane-bench",
    about = "Measures the cnf-dataplane daemon: RSS, start time, ApplyChain and scrape latency"
)]
struct Flags {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Daemon starts to time (best and median are reported).
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// ApplyChain calls per kind of change.
    #[arg(long, default_value_t = 50)]
    applies: usize,
    /// Pause between ApplyChain calls: the engine waits out a 50 ms grace period before it rewrites the
    /// generation retired by the previous apply, so back-to-back calls would measure that wait.
    #[arg(long, default_value_t = 100)]
    apply_gap_ms: u64,
    /// /metrics scrapes.
    #[arg(long, default_value_t = 100)]
    scrapes: usize,
    /// The daemon binary (default: `cnf-dataplane` next to this binary).
    #[arg(long)]
    daemon: Option<PathBuf>,
}

/// Namespaces, temporary directory and daemon pid, removed by [`Testbed::cleanup`] (on drop and on signals).
#[derive(Clone)]
struct Testbed {
    namespaces: Vec<String>,
    dir: PathBuf,
    daemon_pid: Arc<AtomicU32>,
}

impl Testbed {
    fn create() -> anyhow::Result<Self> {
        let pid = std::process::id();
        let bed = Self {
            namespaces: vec![format!("vnfb-{pid}-cnf"), format!("vnfb-{pid}-cli")],
            dir: std::env::temp_dir().join(format!("vnfbench-{pid}")),
            daemon_pid: Arc::new(AtomicU32::new(0)),
        };
        std::fs::create_dir_all(&bed.dir).context("temporary directory")?;
        let (cnf, cli) = (&bed.namespaces[0], &bed.namespaces[1]);
        for ns in &bed.namespaces {
            netkit::netns::add(ns)?;
            netkit::Netlink::open_in(ns)?.set_up("lo", true)?;
        }
        netkit::Netlink::open_in(cnf)?.add_veth(
            netkit::VethEnd::new(IFACE),
            netkit::VethEnd::new("cli0").ns(cli),
        )?;
        for (ns, dev, addr) in [(cnf, IFACE, [10, 0, 1, 254]), (cli, "cli0", [10, 0, 1, 1])] {
            let mut nl = netkit::Netlink::open_in(ns)?;
            nl.add_addr(dev, std::net::IpAddr::from(addr), 24, false)?;
            nl.set_up(dev, true)?;
        }
        Ok(bed)
    }

    fn cnf(&self) -> &str {
        &self.namespaces[0]
    }

    fn cleanup(&self) {
        let pid = self.daemon_pid.swap(0, Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: kill() with the pid of our own daemon child and a standard signal.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        for ns in &self.namespaces {
            let _ = netkit::netns::del(ns);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Moves this thread (and the threads it creates later) into network namespace `ns`.
fn enter(ns: &str) -> anyhow::Result<()> {
    Ok(netkit::ns::enter(ns)?)
}

/// A daemon process, stopped with SIGTERM (SIGKILL after 5 s) when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
    pid: Arc<AtomicU32>,
}

impl Daemon {
    fn spawn(bin: &Path, bed: &Testbed, config: &Path, tag: &str) -> anyhow::Result<Self> {
        let log = bed.dir.join(format!("daemon-{tag}.log"));
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(config)
            .arg("--grpc-socket")
            .arg(bed.dir.join("dp.sock"))
            .args(["--metrics-listen", METRICS])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("daemon log")?);
        // as `ip netns exec` does: in the namespace, with its own /sys
        let child = netkit::netns::spawn(bed.cnf(), &mut cmd)
            .with_context(|| format!("starting {}", bin.display()))?;
        bed.daemon_pid.store(child.id(), Ordering::SeqCst);
        Ok(Self {
            child,
            log,
            pid: bed.daemon_pid.clone(),
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails with the daemon's log when it has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!("the daemon exited with {st}:\n{}", self.log());
        }
        Ok(())
    }

    /// VmRSS in KiB.
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        parse_vm_rss(&status).context("no VmRSS in /proc/PID/status")
    }

    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill() with the pid of our own child and a standard signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("the daemon did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.pid.store(0, Ordering::SeqCst);
    }
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The daemon's own "N ms from start to attached" from its log.
fn reported_ms(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("ms from start to attached"))?;
    let (_, tail) = line.rsplit_once('(')?;
    tail.split_whitespace().next()?.parse().ok()
}

/// One plain HTTP/1.0 GET in this thread's namespace: (status code, body length).
fn http_get(path: &str) -> std::io::Result<(u16, usize)> {
    let mut c = TcpStream::connect(METRICS)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut resp = Vec::new();
    c.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Ok((code, body))
}

/// Waits for `/readyz` to answer 200; the time it took from `since`.
fn wait_ready(daemon: &mut Daemon, since: Instant) -> anyhow::Result<Duration> {
    loop {
        if matches!(http_get("/readyz"), Ok((200, _))) {
            return Ok(since.elapsed());
        }
        daemon.check_alive()?;
        ensure!(
            since.elapsed() < Duration::from_secs(30),
            "not ready after 30 s:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Statistics of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stats {
    best: f64,
    median: f64,
    p99: f64,
    n: usize,
}

/// Nearest-rank percentiles of `samples`.
fn stats(samples: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if ms.is_empty() {
            return f64::NAN;
        }
        let rank = (q * ms.len() as f64).ceil().max(1.0) as usize;
        ms[rank.min(ms.len()) - 1]
    };
    Stats {
        best: ms.first().copied().unwrap_or(f64::NAN),
        median: at(0.5),
        p99: at(0.99),
        n: ms.len(),
    }
}

/// The edge chain on this testbed's interface.
fn edge_manifest() -> anyhow::Result<String> {
    let from = "ingress: eth0";
    ensure!(
        EDGE_CHAIN.matches(from).count() == 1,
        "examples/edge-chain.yaml no longer has exactly one `{from}`"
    );
    Ok(EDGE_CHAIN.replace(from, &format!("ingress: {IFACE}")))
}

/// Spec JSON of `manifest` after replacing `from` (which must occur once) with `to`.
fn variant(manifest: &str, from: &str, to: &str) -> anyhow::Result<String> {
    ensure!(
        manifest.matches(from).count() == 1,
        "edge chain: expected one {from:?}"
    );
    spec_json(&manifest.replace(from, to))
}

fn spec_json(manifest: &str) -> anyhow::Result<String> {
    let chain = crds::manifest::parse_single_chain(manifest)
        .map_err(|e| anyhow::anyhow!("edge chain variant: {e}"))?;
    crds::validate(&chain).map_err(|e| anyhow::anyhow!("edge chain variant: {e}"))?;
    Ok(serde_json::to_string(&chain.spec)?)
}

/// The three specs ApplyChain alternates between: the chain, one firewall rule more, the monitor removed.
struct Variants {
    base: String,
    one_rule_more: String,
    without_monitor: String,
}

fn variants(manifest: &str) -> anyhow::Result<Variants> {
    let icmp = "          - action: allow\n            protocol: icmp\n";
    let extra_rule = format!(
        "{icmp}          - action: deny\n            protocol: udp\n            destinationPorts: [{{from: 7777}}]\n"
    );
    let start = manifest
        .find("    - name: mon\n")
        .context("edge chain: no monitor `mon`")?;
    let end = manifest[start..]
        .find("  interfaces:")
        .context("edge chain: no interfaces after the monitor")?;
    let monitor = &manifest[start..start + end];
    Ok(Variants {
        base: spec_json(manifest)?,
        one_rule_more: variant(manifest, icmp, &extra_rule)?,
        without_monitor: variant(manifest, monitor, "")?,
    })
}

struct Client {
    rt: tokio::runtime::Runtime,
    grpc: DataplaneClient<Channel>,
    chain: ChainRef,
    generation: i64,
}

impl Client {
    fn connect(sock: &Path, chain: ChainRef) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let endpoint = Endpoint::from_shared(format!("unix://{}", sock.display()))?;
        let channel = rt
            .block_on(endpoint.connect())
            .context("connecting to the daemon's socket")?;
        let mut grpc = DataplaneClient::new(channel);
        let status = rt
            .block_on(grpc.get_status(GetStatusRequest {}))?
            .into_inner();
        Ok(Self {
            rt,
            grpc,
            chain,
            generation: status.applied_generation,
        })
    }

    /// The attachment's hook name, from GetStatus.
    fn hook(&mut self) -> anyhow::Result<String> {
        let status = self
            .rt
            .block_on(self.grpc.get_status(GetStatusRequest {}))?
            .into_inner();
        let a = status
            .attachments
            .first()
            .context("GetStatus: not attached")?;
        Ok(match Hook::try_from(a.hook) {
            Ok(Hook::Xdp) => "xdp-native",
            Ok(Hook::XdpGeneric) => "xdp-generic",
            Ok(Hook::Tc) => "tc-ingress",
            _ => "none",
        }
        .to_owned())
    }

    /// One ApplyChain of `spec_json` as the next generation; its round-trip time.
    fn apply(&mut self, spec_json: &str) -> anyhow::Result<Duration> {
        self.generation += 1;
        let req = ApplyChainRequest {
            chain: Some(self.chain.clone()),
            generation: self.generation,
            spec_json: spec_json.to_owned(),
        };
        let t = Instant::now();
        let resp = self.rt.block_on(self.grpc.apply_chain(req));
        let took = t.elapsed();
        let resp = resp.context("ApplyChain")?.into_inner();
        ensure!(
            resp.changed && resp.applied_generation == self.generation,
            "ApplyChain generation {} did not change the chain",
            self.generation
        );
        Ok(took)
    }

    /// `n` applies `gap` apart, alternating between `a` and `b` (starting with `a`; the chain runs `b`).
    fn alternate(
        &mut self,
        a: &str,
        b: &str,
        n: usize,
        gap: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        (0..n)
            .map(|i| {
                std::thread::sleep(gap);
                self.apply(if i % 2 == 0 { a } else { b })
            })
            .collect()
    }
}

struct Report {
    hook: String,
    rss_kib: u64,
    start: Stats,
    start_reported_ms: Vec<u64>,
    rule_only: Stats,
    composition: Stats,
    scrape: Stats,
    scrape_bytes: usize,
    apply_gap_ms: u64,
}

/// (label, measured text, target text, the number compared, target value).
fn rows(r: &Report) -> Vec<(String, String, &'static str, f64, f64)> {
    let mib = r.rss_kib as f64 / 1024.0;
    vec![
        (
            "idle RSS after attach (VmRSS)".into(),
            format!("{mib:.1} MiB"),
            "<= 30 MiB",
            mib,
            30.0,
        ),
        (
            format!("start -> attached, best / median of {}", r.start.n),
            format!("{:.0} / {:.0} ms", r.start.best, r.start.median),
            "<= 150 ms",
            r.start.median,
            150.0,
        ),
        (
            format!("ApplyChain rule-only, median / p99 of {}", r.rule_only.n),
            format!("{:.2} / {:.2} ms", r.rule_only.median, r.rule_only.p99),
            "<= 1 ms",
            r.rule_only.median,
            1.0,
        ),
        (
            format!(
                "ApplyChain composition, median / p99 of {}",
                r.composition.n
            ),
            format!("{:.2} / {:.2} ms", r.composition.median, r.composition.p99),
            "<= 10 ms",
            r.composition.median,
            10.0,
        ),
        (
            format!("/metrics scrape, median / p99 of {}", r.scrape.n),
            format!("{:.2} / {:.2} ms", r.scrape.median, r.scrape.p99),
            "<= 5 ms",
            r.scrape.median,
            5.0,
        ),
    ]
}

fn print_table(r: &Report) {
    println!(
        "cnf-dataplane daemon, examples/edge-chain.yaml (fw -> nat -> lb -> rl -> mon) on a veth in a \
         network namespace, hook {}, {} CPUs",
        r.hook,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<44} {:>18}  {:<10} median within target",
        "measure", "value", "target"
    );
    for (label, value, target, x, limit) in rows(r) {
        let ok = if x <= limit { "yes" } else { "NO" };
        println!("{label:<44} {value:>18}  {target:<10} {ok}");
    }
    println!(
        "(start: spawn to /readyz 200, includes exec and BPF verification; the daemon's own log says {:?} ms \
         from start to attached. ApplyChain: round trip over the Unix socket, calls {} ms apart. scrape: {} \
         bytes of text, connect to last byte.)",
        r.start_reported_ms, r.apply_gap_ms, r.scrape_bytes
    );
}

fn json(r: &Report) -> serde_json::Value {
    let s = |s: &Stats| serde_json::json!({"best_ms": s.best, "median_ms": s.median, "p99_ms": s.p99, "n": s.n});
    serde_json::json!({
        "chain": "examples/edge-chain.yaml",
        "hook": r.hook,
        "idle_rss_kib": r.rss_kib,
        "start_to_attached": s(&r.start),
        "start_to_attached_daemon_reported_ms": r.start_reported_ms,
        "apply_rule_only": s(&r.rule_only),
        "apply_composition": s(&r.composition),
        "scrape": s(&r.scrape),
        "scrape_bytes": r.scrape_bytes,
        "apply_gap_ms": r.apply_gap_ms,
        "targets": {"idle_rss_mib": 30, "start_ms": 150, "apply_rule_only_ms": 1, "apply_composition_ms": 10, "scrape_ms": 5},
    })
}

fn daemon_binary(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this binary")?;
    let bin = flag.unwrap_or_else(|| me.with_file_name("cnf-dataplane"));
    ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build --release -p cnf-dataplane-daemon) or pass --daemon",
        bin.display()
    );
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(d), Some(m)) = (modified(&bin), modified(&me))
        && d < m
    {
        eprintln!(
            "warning: {} is older than this benchmark; `cargo build --release -p cnf-dataplane-daemon` if the \
             sources changed",
            bin.display()
        );
    }
    Ok(bin)
}

/// Removes the testbed when SIGINT or SIGTERM arrives, then exits.
fn cleanup_on_signal(bed: Testbed) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        });
        eprintln!("interrupted: removing the testbed");
        bed.cleanup();
        std::process::exit(130);
    });
    Ok(())
}

fn bench(flags: &Flags, bed: &Testbed, bin: &Path) -> anyhow::Result<Report> {
    let manifest = edge_manifest()?;
    let config = bed.dir.join("edge.yaml");
    std::fs::write(&config, &manifest)?;
    let specs = variants(&manifest)?;
    let chain = crds::manifest::parse_single_chain(&manifest)
        .map_err(|e| anyhow::anyhow!("edge chain: {e}"))?;
    let chain_ref = ChainRef {
        namespace: chain.metadata.namespace.clone().unwrap_or_default(),
        name: chain.metadata.name.clone().unwrap_or_default(),
    };
    // This thread talks HTTP to the daemon inside the CNF namespace (the Unix socket is a file path).
    enter(bed.cnf())?;

    // (b) start -> attached, a fresh daemon each time.
    let mut starts = Vec::new();
    let mut reported = Vec::new();
    for i in 0..flags.starts.max(1) {
        let t = Instant::now();
        let mut d = Daemon::spawn(bin, bed, &config, &format!("start{i}"))?;
        starts.push(wait_ready(&mut d, t)?);
        reported.extend(reported_ms(&d.log()));
        d.stop()?;
    }

    // (a) idle RSS, (c) ApplyChain and (d) scrapes on one more daemon.
    let mut daemon = Daemon::spawn(bin, bed, &config, "main")?;
    wait_ready(&mut daemon, Instant::now())?;
    let sock = bed.dir.join("dp.sock");
    let mut client = Client::connect(&sock, chain_ref)?;
    let hook = client.hook()?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_kib = daemon.rss_kib()?;

    let gap = Duration::from_millis(flags.apply_gap_ms);
    let rule_only = client.alternate(&specs.one_rule_more, &specs.base, flags.applies, gap)?;
    if flags.applies % 2 == 1 {
        std::thread::sleep(gap);
        client.apply(&specs.base)?;
    }
    let composition = client.alternate(&specs.without_monitor, &specs.base, flags.applies, gap)?;
    daemon.check_alive()?;

    let mut scrapes = Vec::new();
    let mut scrape_bytes = 0;
    for _ in 0..flags.scrapes.max(1) {
        let t = Instant::now();
        let (code, len) = http_get("/metrics").context("scraping /metrics")?;
        scrapes.push(t.elapsed());
        ensure!(code == 200, "/metrics answered {code}");
        scrape_bytes = len;
    }
    daemon.stop()?;
    Ok(Report {
        hook,
        rss_kib,
        start: stats(&starts),
        start_reported_ms: reported,
        rule_only: stats(&rule_only),
        composition: stats(&composition),
        scrape: stats(&scrapes),
        scrape_bytes,
        apply_gap_ms: flags.apply_gap_ms,
    })
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    // SAFETY: geteuid() has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces, eBPF): run it from a root shell or with sudo -E");
    }
    let bin = daemon_binary(flags.daemon.clone())?;
    let bed = Testbed::create()?;
    cleanup_on_signal(bed.clone())?;
    let report = bench(&flags, &bed, &bin)?;
    if flags.json {
        println!("{}", serde_json::to_string_pretty(&json(&report))?);
    } else {
        print_table(&report);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = stats(&d);
        assert_eq!((s.best, s.median, s.p99, s.n), (1.0, 50.0, 99.0, 100));
        let one = stats(&[Duration::from_micros(1500)]);
        assert_eq!((one.best, one.median, one.p99), (1.5, 1.5, 1.5));
        assert!(stats(&[]).median.is_nan());
    }

    #[test]
    fn vm_rss_and_reported_start_are_parsed() {
        let status =
            "Name:\tcnf-dataplane\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let log = "[INFO] attached to cnf0 with xdp-native\n[INFO] chain default/edge generation 1 running \
                   (87 ms from start to attached)\n";
        assert_eq!(reported_ms(log), Some(87));
        assert_eq!(reported_ms("nothing"), None);
    }

    #[test]
    fn the_edge_chain_variants_are_valid_and_differ_as_intended() {
        let m = edge_manifest().expect("edge chain");
        assert!(m.contains("ingress: cnf0"));
        let v = variants(&m).expect("variants");
        let spec = |j: &str| -> serde_json::Value { serde_json::from_str(j).expect("json") };
        let (base, rule, nomon) = (
            spec(&v.base),
            spec(&v.one_rule_more),
            spec(&v.without_monitor),
        );
        let rules = |s: &serde_json::Value| {
            s["functions"][0]["firewall"]["rules"]
                .as_array()
                .map(Vec::len)
        };
        let functions = |s: &serde_json::Value| s["functions"].as_array().map(Vec::len);
        assert_eq!(functions(&base), Some(5));
        assert_eq!(rules(&rule), rules(&base).map(|n| n + 1));
        assert_eq!(functions(&rule), Some(5));
        assert_eq!(functions(&nomon), Some(4));
        assert_eq!(rules(&nomon), rules(&base));
    }
}
