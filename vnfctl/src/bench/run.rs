//! The scenario runner: each scenario configured on one bed, the same traffic through each, numbers as ratios.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::{DevMap, PerCpuArray};
use aya::programs::Xdp;
use aya::programs::xdp::XdpMode;
use cnf_dataplane::compose::{self, Plan, Running};
use cnf_dataplane::engine::{
    ChainConfig, ForwardMode, ForwarderConfig, FunctionConfig, FunctionKind, objects,
};
use cnf_dataplane::userspace::{Algorithm, CipherSpec, Direction, MacRewrite, TierConfig};
use crds::Hook as SpecHook;
use crds::vnfchain::VNFChainSpec;
use hdrhistogram::Histogram;
use pktgen::netns::enter;
use pktgen::xdp_live::{XdpLiveConfig, run_xdp_live};

use super::bed::{Bed, CNF_IN, CNF_OUT, GEN_DEV, SRV_DEV, probe_flow, sh};
use super::peers::{Gap, KernelPeers, kernel_peers};
use super::{BenchError, cpu};
use crate::plot;

/// Smallest IP packet the socket sender can send (IPv4 + UDP + pktgen header).
const MIN_IP_SOCKET: usize = 20 + 8 + pktgen::payload::HEADER_LEN;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Frame sizes (Ethernet header included, no FCS), bytes.
    pub sizes: Vec<usize>,
    /// Seconds of unpaced traffic per scenario and size.
    pub duration: Duration,
    /// Seconds of paced traffic per offered-load point.
    pub sweep_duration: Duration,
    /// Offered loads of the sweep, as fractions of the ceiling's unpaced rate at the same size.
    pub sweep: Vec<f64>,
    /// Rate of the latency run, packets per second.
    pub latency_pps: f64,
    /// Length of the latency run per scenario and size.
    pub latency_duration: Duration,
    /// Results folder.
    pub out: PathBuf,
}

impl Options {
    /// The full run: `duration` seconds per point.
    pub fn full(out: PathBuf, sizes: Vec<usize>, duration: Duration) -> Self {
        Options {
            sizes,
            duration,
            sweep_duration: duration / 2,
            sweep: vec![0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0],
            latency_pps: 10_000.0,
            latency_duration: duration,
            out,
        }
    }

    /// A short run for CI: checks behaviour, not speed.
    pub fn quick(out: PathBuf, sizes: Vec<usize>) -> Self {
        Options {
            sizes,
            duration: Duration::from_millis(300),
            sweep_duration: Duration::from_millis(200),
            sweep: vec![0.1, 0.25, 1.0],
            latency_pps: 5_000.0,
            latency_duration: Duration::from_millis(400),
            out,
        }
    }
}

/// The scenarios, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Bare one-hop XDP redirect (`bench_redirect`): the ceiling.
    Ceiling,
    /// The manifest's chain on XDP (+ a redirecting forwarder if it has none).
    ChainXdp,
    /// The same chain on TC.
    ChainTc,
    /// Plain kernel forwarding, no rules.
    KernelForward,
    /// Every kernel peer at once: the kernel path of the whole chain.
    KernelPeers,
    /// nftables only (firewall + NAT).
    Nftables,
    /// IPVS only (load balancer).
    Ipvs,
    /// The rate limiter's kernel peer only: tc police, or nftables `limit` where the kernel lacks act_police.
    RateLimit,
    /// xdp-filter (firewall-only chains).
    XdpFilter,
    /// The user-space tier.
    Userspace,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::Ceiling,
        Scenario::ChainXdp,
        Scenario::ChainTc,
        Scenario::KernelForward,
        Scenario::KernelPeers,
        Scenario::Nftables,
        Scenario::Ipvs,
        Scenario::RateLimit,
        Scenario::XdpFilter,
        Scenario::Userspace,
    ];

    /// Short name (JSON, plots).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ceiling => "ceiling",
            Scenario::ChainXdp => "chain-xdp",
            Scenario::ChainTc => "chain-tc",
            Scenario::KernelForward => "kernel-forward",
            Scenario::KernelPeers => "kernel-peers",
            Scenario::Nftables => "nftables",
            Scenario::Ipvs => "ipvs",
            Scenario::RateLimit => "kernel-ratelimit",
            Scenario::XdpFilter => "xdp-filter",
            Scenario::Userspace => "userspace",
        }
    }
}

/// Latency of one scenario and size, µs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub sent: u64,
    pub received: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    /// `(µs, fraction)` CDF points (for the plot).
    pub cdf: Vec<(f64, f64)>,
    /// `(percentile, µs)` points (for the plot).
    pub percentiles: Vec<(f64, f64)>,
}

/// One scenario at one frame size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SizeResult {
    pub size: usize,
    pub sent: u64,
    pub received: u64,
    pub secs: f64,
    /// Throughput: the highest delivered rate of the unpaced run and the offered-load points, Mpps.
    pub mpps: f64,
    /// Delivered rate of the unpaced run alone (below `mpps` when overload collapses a path), Mpps.
    pub unpaced_mpps: f64,
    /// `(offered Mpps, delivered Mpps)` at fractions of the ceiling's unpaced rate at this size.
    pub sweep: Vec<(f64, f64)>,
    /// `mpps / ceiling's mpps` at this size.
    pub ratio_ceiling: Option<f64>,
    /// `mpps / kernel path's mpps` at this size (the kernel path: `kernel-peers`, else `kernel-forward`).
    pub ratio_kernel: Option<f64>,
    /// Busy CPU time of the whole machine during the run per received packet, ns (see `method`).
    pub cpu_ns_per_pkt: f64,
    /// The softirq part of it, ns.
    pub softirq_ns_per_pkt: f64,
    pub latency: Option<Latency>,
}

/// One scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub name: &'static str,
    /// Why it did not run (then `sizes` is empty).
    pub skipped: Option<String>,
    pub sizes: Vec<SizeResult>,
    /// What this scenario does differently from the manifest's chain.
    pub notes: Vec<String>,
}

/// The whole run (`bench.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub manifest: String,
    pub flow: super::bed::Flow,
    pub sizes: Vec<usize>,
    pub duration_secs: f64,
    pub gaps: Vec<Gap>,
    pub peers: KernelPeers,
    pub caps: Caps,
    pub scenarios: Vec<ScenarioResult>,
    pub plots: Vec<plot::Written>,
    pub method: Vec<&'static str>,
    /// New flows per second through NAT + LB, chain vs nftables ([`super::cps`]).
    pub new_flows: super::cps::NewFlows,
    /// The round trip the chain adds over a bare redirect ([`super::rtt`]).
    pub rtt_added: super::rtt::RttAdded,
}

const METHOD: [&str; 5] = [
    "throughput: pktgen live frames (BPF_PROG_TEST_RUN, XDP_TX out of the generator's veth) into the CNF; \
     received = frames counted by an XDP sink on the server's veth; Mpps = received / seconds of sending",
    "offered-load sweep: the same generator in chunks paced to fractions of the ceiling's unpaced rate; Mpps in \
     the table is the highest delivered rate of the unpaced run and the sweep (an unpaced generator on the same \
     CPU starves the kernel stack's softirq work, so unpaced alone understates the kernel paths)",
    "latency: pktgen's socket sender at a fixed rate to the service, a UDP socket on the server; one-way latency \
     = receive time - the CLOCK_MONOTONIC stamp in the payload (both ends on this machine)",
    "CPU per packet: busy jiffies of all CPUs from /proc/stat (user+nice+system+irq+softirq+steal) during the \
     unpaced run, divided by received packets; it includes the generator and the sink (the same in every \
     scenario), so differences between rows are the middle box's cost; softirq is the part in softirq context",
    "every scenario runs on the same bed and the same machine in one run; other load on the machine shows up in \
     every row alike",
];

/// What stays attached in the CNF namespace for one scenario (dropped = detached).
#[derive(Default)]
struct Middle {
    bpf: Option<Ebpf>,
    /// The chain (and its user-space tier) as the daemon composes it ([`compose::start`]).
    running: Option<Running>,
}

fn load_bench(prog: &str, iface: &str) -> Result<Ebpf, BenchError> {
    let mut bpf =
        Ebpf::load(objects::BENCH).map_err(|e| BenchError::Setup(format!("bench object: {e}")))?;
    let p: &mut Xdp = bpf
        .program_mut(prog)
        .ok_or_else(|| BenchError::Setup(format!("program {prog} missing")))?
        .try_into()
        .map_err(|e| BenchError::Setup(format!("{prog}: {e}")))?;
    p.load()
        .map_err(|e| BenchError::Setup(format!("load {prog}: {e}")))?;
    p.attach(iface, XdpMode::Driver)
        .map_err(|e| BenchError::Setup(format!("attach {prog} to {iface}: {e}")))?;
    Ok(bpf)
}

fn in_ns<T: Send>(
    ns: &str,
    f: impl FnOnce() -> Result<T, BenchError> + Send,
) -> Result<T, BenchError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns).map_err(|e| BenchError::Setup(e.to_string()))?;
            f()
        })
        .join()
        .map_err(|_| BenchError::Setup(format!("a thread in {ns} panicked")))?
    })
}

fn sink_count(sink: &Ebpf) -> Result<u64, BenchError> {
    let m: PerCpuArray<_, u64> = PerCpuArray::try_from(
        sink.map("bench_count")
            .ok_or_else(|| BenchError::Setup("bench_count map missing".into()))?,
    )
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(m.get(&0, 0)
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .iter()
        .sum())
}

/// The chain's engine configuration, with a redirecting forwarder to the server appended when it has none.
pub fn chain_for_bed(
    spec: &VNFChainSpec,
    bed: &Bed,
) -> Result<(ChainConfig, Vec<String>), BenchError> {
    let ifindex = bed.cnf_out_ifindex;
    let plan =
        cnf_dataplane::spec::chain_plan(spec, &|name: &str| (name == CNF_OUT).then_some(ifindex))
            .map_err(|e| BenchError::Chain(e.to_string()))?;
    if plan.userspace.is_some() {
        return Err(BenchError::Chain(
            "the chain has user-space functions; the suite measures kernel chains only (user-space tier: not \
             built into the suite yet)"
                .into(),
        ));
    }
    let mut chain = plan.kernel;
    let mut notes = Vec::new();
    let has_fwd = chain
        .functions
        .iter()
        .any(|f| matches!(f.kind, FunctionKind::Forwarder(_)));
    if !has_fwd {
        chain.functions.push(FunctionConfig::new(
            "bench-forwarder",
            FunctionKind::Forwarder(ForwarderConfig {
                mode: ForwardMode::Redirect { ifindex },
                dst_mac: Some(bed.srv_mac),
                ..Default::default()
            }),
        ));
        notes.push(
            "the manifest has no forwarder: a redirecting forwarder to the server's veth is appended (as the \
             ceiling redirects)"
                .into(),
        );
    }
    Ok((chain, notes))
}

fn run_cmds(ns: &str, cmds: &[Vec<String>]) -> Result<(), BenchError> {
    for c in cmds {
        let words: Vec<&str> = c.iter().map(String::as_str).collect();
        sh(ns, words[0], &words[1..])?;
    }
    Ok(())
}

fn apply_nft(ns: &str, script: &str) -> Result<(), BenchError> {
    let path = std::env::temp_dir().join(format!("vnfctl-bench-{}.nft", std::process::id()));
    std::fs::write(&path, script)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", path.display())))?;
    let r = sh(ns, "nft", &["-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    r.map(|_| ())
}

/// What this kernel offers the peers (probed in the CNF namespace).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Caps {
    /// Why IPVS cannot be used, if it cannot.
    pub no_ipvs: Option<String>,
    /// Why tc police cannot be used, if it cannot.
    pub no_tc_police: Option<String>,
}

/// Probes IPVS and tc police (matchall + act_police) in the bed's CNF namespace.
pub fn probe_caps(bed: &Bed) -> Caps {
    let c = &bed.cnf_ns;
    let no_ipvs = sh(c, "ipvsadm", &["-L", "-n"])
        .err()
        .map(|e| format!("this kernel has no IPVS (CONFIG_IP_VS): {e}"));
    let tc = sh(c, "tc", &["qdisc", "add", "dev", CNF_OUT, "clsact"]).and_then(|_| {
        sh(
            c,
            "tc",
            &[
                "filter",
                "add",
                "dev",
                CNF_OUT,
                "ingress",
                "matchall",
                "action",
                "police",
                "pkts_rate",
                "1000",
                "pkts_burst",
                "100",
                "conform-exceed",
                "drop/ok",
            ],
        )
    });
    let _ = sh(c, "tc", &["qdisc", "del", "dev", CNF_OUT, "clsact"]);
    Caps {
        no_ipvs,
        no_tc_police: tc.err().map(|e| {
            format!("this kernel has no tc matchall/police (CONFIG_NET_CLS_MATCHALL, CONFIG_NET_ACT_POLICE): {e}")
        }),
    }
}

/// Applies the kernel peers a scenario uses in the CNF namespace (see [`Scenario`]); returns notes on what was
/// left out or substituted because the kernel lacks it.
pub fn apply(
    bed: &Bed,
    peers: &KernelPeers,
    caps: &Caps,
    nft: bool,
    ipvs: bool,
    ratelimit: bool,
) -> Result<Vec<String>, BenchError> {
    let mut notes = Vec::new();
    if nft && let Some(s) = &peers.nft {
        apply_nft(&bed.cnf_ns, s)?;
    }
    if ipvs && !peers.ipvs.is_empty() {
        match &caps.no_ipvs {
            None => run_cmds(&bed.cnf_ns, &peers.ipvs)?,
            Some(why) => notes.push(format!("load balancer not applied: {why}")),
        }
    }
    if ratelimit && !peers.tc.is_empty() {
        match (&caps.no_tc_police, &peers.nft_ratelimit) {
            (None, _) => {
                run_cmds(&bed.cnf_ns, &peers.tc)?;
                notes.push("rate limiter: tc police".into());
            }
            (Some(why), Some(rl)) => {
                apply_nft(&bed.cnf_ns, rl)?;
                notes.push(format!(
                    "rate limiter: nftables limit instead of tc police, {why}"
                ));
            }
            (Some(why), None) => notes.push(format!("rate limiter not applied: {why}")),
        }
    }
    Ok(notes)
}

/// Runs the xdp-filter commands in one shell in `ns` (xdp-filter keeps its state in bpffs, which `ip netns exec`
/// does not carry from one command to the next).
fn apply_xdp_filter(ns: &str, cmds: &[Vec<String>]) -> Result<(), BenchError> {
    let mut script = String::from("mount -t bpf bpf /sys/fs/bpf && ");
    script.push_str(
        &cmds
            .iter()
            .map(|c| c.join(" "))
            .collect::<Vec<_>>()
            .join(" && "),
    );
    sh(ns, "sh", &["-c", &script])?;
    Ok(())
}

fn set_up(
    sc: Scenario,
    spec: &VNFChainSpec,
    bed: &Bed,
    peers: &KernelPeers,
    caps: &Caps,
) -> Result<(Middle, Vec<String>), BenchError> {
    bed.reset_cnf();
    let gro = !matches!(
        sc,
        Scenario::Ceiling | Scenario::ChainXdp | Scenario::XdpFilter | Scenario::Userspace
    );
    bed.gro(&bed.cnf_ns, CNF_IN, gro)?;
    let mut m = Middle::default();
    let mut notes = Vec::new();
    match sc {
        Scenario::Ceiling => {
            let out = bed.cnf_out_ifindex;
            m.bpf = Some(in_ns(&bed.cnf_ns, || {
                let mut bpf = load_bench("bench_redirect", CNF_IN)?;
                let mut port: DevMap<_> = DevMap::try_from(
                    bpf.map_mut("bench_port")
                        .ok_or_else(|| BenchError::Setup("bench_port map missing".into()))?,
                )
                .map_err(|e| BenchError::Setup(e.to_string()))?;
                port.set(0, out, None, 0)
                    .map_err(|e| BenchError::Setup(e.to_string()))?;
                Ok(bpf)
            })?);
        }
        Scenario::ChainXdp | Scenario::ChainTc => {
            let (chain, n) = chain_for_bed(spec, bed)?;
            notes = n;
            // the XDP scenario is native XDP, as the ceiling's redirect (a forced hook: no fallback)
            let hook = if sc == Scenario::ChainXdp {
                SpecHook::Xdp
            } else {
                SpecHook::Tc
            };
            let plan = Plan::new(hook, vec![CNF_IN.into()], chain);
            m.running = Some(in_ns(&bed.cnf_ns, || {
                compose::start(&plan).map_err(|e| BenchError::Chain(e.to_string()))
            })?);
        }
        Scenario::KernelForward => {}
        Scenario::KernelPeers => notes = apply(bed, peers, caps, true, true, true)?,
        Scenario::Nftables => notes = apply(bed, peers, caps, true, false, false)?,
        Scenario::Ipvs => notes = apply(bed, peers, caps, false, true, false)?,
        Scenario::RateLimit => notes = apply(bed, peers, caps, false, false, true)?,
        Scenario::XdpFilter => {
            let cmds = peers.xdp_filter.as_deref().unwrap_or_default();
            apply_xdp_filter(&bed.cnf_ns, cmds)?;
        }
        Scenario::Userspace => {
            // the classified traffic goes to the AF_XDP tier, which seals and opens the payload
            // (ChaCha20-Poly1305 both ways, so the receiver still reads pktgen's header) and sends it
            // out towards the server itself
            let (_, out_mac) = super::bed::link_info(&bed.cnf_ns, CNF_OUT)?;
            let mut cfg = TierConfig::new(CNF_IN, 0);
            cfg.egress = Some(CNF_OUT.into());
            cfg.mac_rewrite = Some(MacRewrite {
                src: out_mac,
                dst: bed.srv_mac,
            });
            cfg.functions = [Direction::Encrypt, Direction::Decrypt]
                .into_iter()
                .map(|direction| CipherSpec {
                    algorithm: Algorithm::ChaCha20Poly1305,
                    direction,
                    key: *b"vnfctl bench: user-space tier!!!",
                })
                .collect();
            let mut plan = Plan::new(
                SpecHook::Xdp,
                vec![CNF_IN.into()],
                ChainConfig {
                    functions: vec![FunctionConfig::new("tier", FunctionKind::UserspaceHandoff)],
                    ..Default::default()
                },
            );
            plan.tiers.push(cfg);
            m.running = Some(in_ns(&bed.cnf_ns, || {
                compose::start(&plan).map_err(|e| BenchError::Chain(e.to_string()))
            })?);
            notes.push(
                "user-space tier on AF_XDP (copy mode, adaptive polling): ChaCha20-Poly1305 seal then open of \
                 every payload, frames sent on by the tier"
                    .into(),
            );
        }
    }
    Ok((m, notes))
}

/// Why a scenario is not run for this manifest on this kernel, if it is not.
fn skip_reason(sc: Scenario, peers: &KernelPeers, caps: &Caps) -> Option<String> {
    match sc {
        Scenario::Nftables if peers.nft.is_none() => {
            Some("the chain has no firewall or NAT".into())
        }
        Scenario::Ipvs if peers.ipvs.is_empty() => Some("the chain has no load balancer".into()),
        Scenario::Ipvs if caps.no_ipvs.is_some() => caps.no_ipvs.clone(),
        Scenario::RateLimit if peers.tc.is_empty() => Some("the chain has no rate limiter".into()),
        Scenario::XdpFilter if peers.xdp_filter.is_none() => Some(
            "xdp-filter is the peer of firewall-only chains; this chain has other functions".into(),
        ),
        _ => None,
    }
}

struct Blast {
    sent: u64,
    received: u64,
    secs: f64,
    cpu: cpu::CpuDelta,
}

/// Sends live frames of `size` for `dur` (paced to `rate_pps` when given) and counts what the sink got.
fn blast(
    bed: &Bed,
    sink: &Ebpf,
    size: usize,
    dur: Duration,
    rate_pps: Option<f64>,
) -> Result<Blast, BenchError> {
    let before = sink_count(sink)?;
    let cpu0 = cpu::sample()?;
    let cfg = XdpLiveConfig {
        ifname: GEN_DEV.into(),
        src_mac: bed.gen_mac,
        dst_mac: bed.cnf_in_mac,
        src: bed.flow.src,
        dst: bed.flow.dst,
        stream_id: 1,
        ip_size: size - 14,
        count: 0,
        batch: 64,
    };
    let (sent, secs) = in_ns(&bed.gen_ns, || {
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < dur {
            let count = match rate_pps {
                None => 200_000,
                Some(r) => (r * 0.01).max(500.0) as u64,
            };
            let s = run_xdp_live(&XdpLiveConfig {
                count,
                ..cfg.clone()
            })
            .map_err(|e| BenchError::Traffic(e.to_string()))?;
            sent += s.sent;
            if let Some(r) = rate_pps {
                let due = Duration::from_secs_f64(sent as f64 / r);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        Ok((sent, start.elapsed().as_secs_f64()))
    })?;
    std::thread::sleep(Duration::from_millis(50));
    let cpu = cpu::sample()?.since(&cpu0);
    let received = sink_count(sink)? - before;
    Ok(Blast {
        sent,
        received,
        secs,
        cpu,
    })
}

/// Socket traffic at a fixed rate from the generator to the service; one-way latency at the server.
fn latency(bed: &Bed, size: usize, o: &Options) -> Result<Latency, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let port = bed.flow.server.port();
    let srv_ns = bed.srv_ns.clone();
    let stop_rx = stop.clone();
    let rx = std::thread::spawn(move || -> Result<Histogram<u64>, BenchError> {
        enter(&srv_ns).map_err(|e| BenchError::Setup(e.to_string()))?;
        let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))
            .map_err(|e| BenchError::Traffic(format!("bind the server's UDP port {port}: {e}")))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| BenchError::Traffic(e.to_string()))?;
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .map_err(|e| BenchError::Traffic(e.to_string()))?;
        let mut buf = [0u8; 2048];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let now = pktgen::clock::monotonic_ns();
                    if let Ok(hd) = pktgen::payload::Header::decode(&buf[..n]) {
                        let _ = h.record(now.saturating_sub(hd.tx_ns).max(1));
                    }
                }
                Err(_) if stop_rx.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        Ok(h)
    });
    std::thread::sleep(Duration::from_millis(50));
    let mut cfg = pktgen::send::SendConfig::new(SocketAddr::V4(bed.flow.dst));
    cfg.src_ip = Some((*bed.flow.src.ip()).into());
    cfg.src_port = bed.flow.src.port() + 1;
    cfg.rate_pps = o.latency_pps;
    cfg.duration = Some(o.latency_duration);
    cfg.sizes = pktgen::sizes::SizeSpec::Fixed((size - 14).max(MIN_IP_SOCKET));
    let never = AtomicBool::new(false);
    let sent = in_ns(&bed.gen_ns, || {
        pktgen::send::run_sender(&cfg, &never, |_| {})
            .map_err(|e| BenchError::Traffic(e.to_string()))
    });
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let h = rx
        .join()
        .map_err(|_| BenchError::Traffic("latency receiver panicked".into()))??;
    let sent = sent?;
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Latency {
        sent: sent.sent,
        received: h.len(),
        p50_us: us(0.5),
        p90_us: us(0.9),
        p99_us: us(0.99),
        p999_us: us(0.999),
        p9999_us: us(0.9999),
        max_us: h.max() as f64 / 1000.0,
        cdf: plot::cdf_from_histogram(&h),
        percentiles: plot::percentiles_from_histogram(&h),
    })
}

/// Runs every scenario on `spec` and writes `bench.json`, `table.txt` and the plots into `o.out`.
pub fn run_suite(
    manifest: &str,
    spec: &VNFChainSpec,
    o: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Report, BenchError> {
    if o.sizes.is_empty() {
        return Err(BenchError::Options("--sizes: at least one size".into()));
    }
    if let Some(s) = o.sizes.iter().find(|s| !(64..=1500).contains(*s)) {
        return Err(BenchError::Options(format!(
            "--sizes: {s} is outside 64..=1500 bytes (Ethernet frame, no FCS)"
        )));
    }
    std::fs::create_dir_all(&o.out)
        .map_err(|e| BenchError::Output(format!("{}: {e}", o.out.display())))?;
    let flow = probe_flow(spec)?;
    let peers = kernel_peers(spec, CNF_IN)?;
    let bed = Bed::create(flow.clone())?;
    let caps = probe_caps(&bed);
    progress(&format!(
        "bed up: {} → {} (server {}), chosen by {}",
        flow.src, flow.dst, flow.server, flow.reason
    ));
    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut ceiling_rates: Vec<(usize, f64)> = Vec::new();
    for sc in Scenario::ALL {
        if let Some(reason) = skip_reason(sc, &peers, &caps) {
            progress(&format!("{:<15} skipped: {reason}", sc.name()));
            results.push(ScenarioResult {
                scenario: sc,
                name: sc.name(),
                skipped: Some(reason),
                sizes: Vec::new(),
                notes: Vec::new(),
            });
            continue;
        }
        let (middle, notes) = match set_up(sc, spec, &bed, &peers, &caps) {
            Ok(x) => x,
            Err(e @ BenchError::Chain(_)) => {
                progress(&format!("{:<15} skipped: {e}", sc.name()));
                results.push(ScenarioResult {
                    scenario: sc,
                    name: sc.name(),
                    skipped: Some(e.to_string()),
                    sizes: Vec::new(),
                    notes: Vec::new(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut r = ScenarioResult {
            scenario: sc,
            name: sc.name(),
            skipped: None,
            sizes: Vec::new(),
            notes,
        };
        for &size in &o.sizes {
            // throughput: the sink on the server's veth; unpaced, then paced at fractions of the ceiling's rate
            bed.gro(&bed.srv_ns, SRV_DEV, false)?;
            let sink = in_ns(&bed.srv_ns, || load_bench("bench_sink", SRV_DEV))?;
            let unpaced = blast(&bed, &sink, size, o.duration, None)?;
            if sc == Scenario::Ceiling {
                ceiling_rates.push((size, unpaced.sent as f64 / unpaced.secs));
            }
            let top = ceiling_rates.iter().find(|c| c.0 == size).map(|c| c.1);
            let mut sweep = Vec::new();
            let mut best = (
                unpaced.received as f64 / unpaced.secs,
                unpaced.cpu,
                unpaced.received,
            );
            for &f in top.map(|_| o.sweep.as_slice()).unwrap_or_default() {
                let p = blast(&bed, &sink, size, o.sweep_duration, top.map(|t| t * f))?;
                let delivered = p.received as f64 / p.secs;
                sweep.push((p.sent as f64 / p.secs / 1e6, delivered / 1e6));
                if delivered > best.0 {
                    best = (delivered, p.cpu, p.received);
                }
            }
            let b = &unpaced;
            let mpps = best.0 / 1e6;
            drop(sink);
            // latency: no sink; GRO gives the server's veth NAPI, so redirects still land
            bed.gro(&bed.srv_ns, SRV_DEV, true)?;
            let lat = latency(&bed, size, o)?;
            let per = |j: u64| {
                if best.2 == 0 {
                    0.0
                } else {
                    j as f64 * cpu::NS_PER_TICK / best.2 as f64
                }
            };
            progress(&format!(
                "{:<15} {size:>5} B  {:>7.3} Mpps  sent {:>9} received {:>9}  latency p50 {:>8.1} µs p99 {:>8.1} µs ({}/{} delivered)",
                sc.name(),
                mpps,
                b.sent,
                b.received,
                lat.p50_us,
                lat.p99_us,
                lat.received,
                lat.sent
            ));
            r.sizes.push(SizeResult {
                size,
                sent: b.sent,
                received: b.received,
                secs: b.secs,
                mpps,
                ratio_ceiling: None,
                ratio_kernel: None,
                cpu_ns_per_pkt: per(best.1.busy),
                softirq_ns_per_pkt: per(best.1.softirq),
                unpaced_mpps: b.received as f64 / b.secs / 1e6,
                sweep,
                latency: Some(lat),
            });
        }
        drop(middle);
        results.push(r);
    }
    let new_flows = super::cps::in_suite(
        &bed,
        &super::cps::CpsOptions::for_suite(o.duration),
        &mut progress,
    );
    let rtt_added = super::rtt::in_suite(
        &bed,
        chain_for_bed(spec, &bed).map(|c| c.0),
        &super::rtt::RttOptions::for_suite(o.latency_pps, o.latency_duration),
        &mut progress,
    );
    bed.reset_cnf();
    drop(bed);
    fill_ratios(&mut results);
    let mut report = Report {
        manifest: manifest.to_string(),
        flow,
        sizes: o.sizes.clone(),
        duration_secs: o.duration.as_secs_f64(),
        gaps: peers.gaps.clone(),
        peers,
        caps,
        scenarios: results,
        plots: Vec::new(),
        method: METHOD.to_vec(),
        new_flows,
        rtt_added,
    };
    report.plots = write_plots(&report, &o.out)?;
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| BenchError::Output(e.to_string()))?;
    write(&o.out.join("bench.json"), &json)?;
    write(&o.out.join("table.txt"), &table(&report))?;
    Ok(report)
}

fn write(path: &Path, s: &str) -> Result<(), BenchError> {
    std::fs::write(path, s).map_err(|e| BenchError::Output(format!("{}: {e}", path.display())))
}

/// Fills each row's ratios to the ceiling and to the kernel path at the same size.
pub fn fill_ratios(results: &mut [ScenarioResult]) {
    let rate = |results: &[ScenarioResult], sc: Scenario, size: usize| {
        results
            .iter()
            .find(|r| r.scenario == sc)
            .and_then(|r| r.sizes.iter().find(|s| s.size == size))
            .map(|s| s.mpps)
            .filter(|m| *m > 0.0)
    };
    let snapshot = results.to_vec();
    for r in results.iter_mut() {
        for s in &mut r.sizes {
            s.ratio_ceiling = rate(&snapshot, Scenario::Ceiling, s.size).map(|c| s.mpps / c);
            s.ratio_kernel = rate(&snapshot, Scenario::KernelPeers, s.size)
                .or_else(|| rate(&snapshot, Scenario::KernelForward, s.size))
                .map(|k| s.mpps / k);
        }
    }
}

/// The text table.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "{:<15} {:>5} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
        "scenario",
        "size",
        "Mpps",
        "x ceil",
        "x kern",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU ns",
        "softirq"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for sc in &r.scenarios {
        if let Some(why) = &sc.skipped {
            s.push_str(&format!("{:<15} skipped: {why}\n", sc.name));
            continue;
        }
        for z in &sc.sizes {
            let (p50, p99, p999) = z
                .latency
                .as_ref()
                .map_or((f64::NAN, f64::NAN, f64::NAN), |l| {
                    (l.p50_us, l.p99_us, l.p999_us)
                });
            s.push_str(&format!(
                "{:<15} {:>5} {:>8.3} {:>7} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>8.0} {:>8.0}\n",
                sc.name,
                z.size,
                z.mpps,
                opt(z.ratio_ceiling),
                opt(z.ratio_kernel),
                p50,
                p99,
                p999,
                z.cpu_ns_per_pkt,
                z.softirq_ns_per_pkt
            ));
        }
    }
    s.push_str(&format!(
        "\n{}\n{}",
        super::cps::table(&r.new_flows),
        super::rtt::table(&r.rtt_added)
    ));
    s
}

fn write_plots(r: &Report, out: &Path) -> Result<Vec<plot::Written>, BenchError> {
    let size = if r.sizes.contains(&256) {
        256
    } else {
        r.sizes[0]
    };
    let ran: Vec<&ScenarioResult> = r.scenarios.iter().filter(|s| s.skipped.is_none()).collect();
    let lat = |s: &ScenarioResult| {
        s.sizes
            .iter()
            .find(|z| z.size == size)
            .and_then(|z| z.latency.clone())
    };
    let cdf: Vec<plot::CdfSeries> = ran
        .iter()
        .filter_map(|s| {
            lat(s)
                .filter(|l| !l.cdf.is_empty())
                .map(|l| plot::CdfSeries {
                    name: s.name.into(),
                    points: l.cdf,
                })
        })
        .collect();
    let pct: Vec<plot::PercentileSeries> = ran
        .iter()
        .filter_map(|s| {
            lat(s)
                .filter(|l| !l.percentiles.is_empty())
                .map(|l| plot::PercentileSeries {
                    name: s.name.into(),
                    points: l.percentiles,
                })
        })
        .collect();
    let tput: Vec<plot::ThroughputSeries> = ran
        .iter()
        .filter_map(|s| {
            let z = s.sizes.first().filter(|z| !z.sweep.is_empty())?;
            Some(plot::ThroughputSeries {
                name: s.name.into(),
                points: z.sweep.clone(),
            })
        })
        .collect();
    let e = |e: plot::PlotError| BenchError::Output(e.to_string());
    let mut w = Vec::new();
    if !cdf.is_empty() {
        w.push(
            plot::latency_cdf(
                &out.join("latency-cdf"),
                &format!("one-way latency, {size} B frames"),
                &cdf,
            )
            .map_err(e)?,
        );
    }
    if !pct.is_empty() {
        w.push(
            plot::percentiles(
                &out.join("latency-percentiles"),
                &format!("latency percentiles, {size} B frames"),
                &pct,
            )
            .map_err(e)?,
        );
    }
    if !tput.is_empty() {
        w.push(
            plot::throughput(
                &out.join("throughput"),
                &format!("delivered vs offered, {} B frames", r.sizes[0]),
                &tput,
            )
            .map_err(e)?,
        );
    }
    Ok(w)
}
