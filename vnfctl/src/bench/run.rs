//! The scenario runner: each scenario configured on one bed, the same traffic through each, numbers as ratios.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aya::Ebpf;
use aya::maps::PerCpuArray;
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

pub use super::bed::in_ns;
use super::bed::{Bed, CNF_IN, CNF_OUT, SRV_DEV, probe_flow, sh};
use super::peers::{Gap, KernelPeers, kernel_peers};
use super::traffic::{self, Blast, Layout};
use super::{BenchError, BpfError, cpu};
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
    /// The capped scenario's manifest (label, chain): a chain whose own policy caps the rate (the edge chain's
    /// 100 kpps per source), run on XDP beside the benchmark chain.
    pub capped: Option<(String, VNFChainSpec)>,
    /// Frames per run of the reference rows (chain-bench's method).
    pub ref_frames: u64,
    /// Runs of the reference rows, best kept.
    pub ref_runs: u32,
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
            capped: None,
            ref_frames: 4_000_000,
            ref_runs: 3,
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
            capped: None,
            ref_frames: 200_000,
            ref_runs: 1,
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
    /// The capped manifest's chain on XDP ([`Options::capped`], the edge chain by default): its rate limiter caps it.
    ChainCapped,
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
    pub const ALL: [Scenario; 11] = [
        Scenario::Ceiling,
        Scenario::ChainXdp,
        Scenario::ChainCapped,
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
            Scenario::ChainCapped => "chain-capped",
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

    /// Whether the middle box is the kernel's stack (skb path), which cannot share the generator's CPU: its
    /// softirq work is deferred to ksoftirqd, which the spinning generator starves. Such rows are measured with
    /// the middle box on its own CPU ([`Layout::Own`]).
    pub fn stack(self) -> bool {
        matches!(
            self,
            Scenario::ChainTc
                | Scenario::KernelForward
                | Scenario::KernelPeers
                | Scenario::Nftables
                | Scenario::Ipvs
                | Scenario::RateLimit
        )
    }

    /// The layout of the row's headline figure (`mpps`).
    pub fn layout(self) -> Layout {
        if self.stack() {
            Layout::Own
        } else {
            Layout::Shared
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
    /// Where the headline figure ran: `shared` (generator and middle box on one CPU) or `own` (kernel-stack rows:
    /// the middle box on a CPU of its own).
    pub layout: Layout,
    /// Throughput: the highest delivered rate of the unpaced run and the offered-load points, Mpps.
    pub mpps: f64,
    /// Unpaced, the middle box on its own CPU (threaded NAPI on CPU 1, the generator on CPU 0), Mpps.
    pub own_mpps: Option<f64>,
    /// Unpaced, both CPUs: a generator and a flow set per receive queue, Mpps.
    pub two_queue_mpps: Option<f64>,
    /// Delivered rate of the unpaced run alone (below `mpps` when overload collapses a path), Mpps.
    pub unpaced_mpps: f64,
    /// `(offered Mpps, delivered Mpps)` at fractions of the ceiling's unpaced rate at this size.
    pub sweep: Vec<(f64, f64)>,
    /// `mpps / ceiling's mpps` at this size.
    pub ratio_ceiling: Option<f64>,
    /// `own_mpps / kernel path's own_mpps` at this size (the kernel path: `kernel-peers`, else `kernel-forward`):
    /// each middle box with a CPU of its own.
    pub ratio_kernel: Option<f64>,
    /// `two_queue_mpps / ceiling's two_queue_mpps` at this size.
    pub ratio_ceiling_2q: Option<f64>,
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
    /// NAT's established-path hits and packets over the scenario (chain rows with a NAT): with every frame's
    /// headers restored from the template, every packet after a flow's first takes the established path.
    pub nat_established: Option<(u64, u64)>,
}

/// A measurement by chain-bench's live-frames method on the same bed in the same run, beside the suite's row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reference {
    /// What was measured.
    pub name: String,
    /// The suite's row it checks.
    pub row: &'static str,
    /// chain-bench's method: one `run_xdp_live` call of `ref_frames` frames, best of `ref_runs`, Mpps.
    pub mpps: f64,
    /// The suite's figure of the row (same layout), Mpps.
    pub suite_mpps: f64,
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
    /// chain-bench's method beside the suite's ceiling and plain-forwarding rows.
    pub references: Vec<Reference>,
    /// `/proc/loadavg` when the run started and ended.
    pub loadavg: (String, String),
    pub plots: Vec<plot::Written>,
    pub method: Vec<&'static str>,
    /// New flows per second through NAT + LB, chain vs nftables ([`super::cps`]).
    pub new_flows: super::cps::NewFlows,
    /// The round trip the chain adds over a bare redirect ([`super::rtt`]).
    pub rtt_added: super::rtt::RttAdded,
}

const METHOD: [&str; 7] = [
    "throughput: pktgen live frames (BPF_PROG_TEST_RUN, XDP_TX out of the generator's veth) into the CNF, one \
     call per point after an untimed warm-up and rate calibration (the best of 3 unpaced points is kept, 1 with \
     --quick, as chain-bench keeps its best); every frame's headers restored from the template (recycled pages \
     keep the receiver's rewrite), 16 flows (source ports) per generator, so stateful functions run their \
     established path; received = frames counted by an XDP sink on the server's veth; Mpps = received / seconds \
     of sending",
    "layouts: 1 CPU = the generator with the middle box inline in its softirq (chain-bench's method; the \
     headline of XDP rows); own CPU = the generator pinned to CPU 0, the middle box in its threaded NAPI poll \
     pinned to CPU 1 under SCHED_FIFO (the headline of kernel-stack rows, whose softirq work an unpaced generator \
     on the same CPU starves); 2 queues = a generator and a flow set pinned to each CPU, each on its own receive \
     queue; x kern compares own-CPU figures",
    "references: chain-bench's live-frames method (one run_xdp_live call, best of N) on the same bed in the same \
     run, beside the ceiling (1 CPU) and plain kernel forwarding (own CPU)",
    "offered-load sweep: the same generator in bursts paced to fractions of the ceiling's unpaced rate, in the \
     row's headline layout; Mpps is the highest delivered rate of the unpaced run and the sweep",
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
    /// The engine instance of the chain's NAT, if it has one.
    nat: Option<u32>,
}

impl Middle {
    /// NAT's `(established-path hits, packets in)` so far.
    fn nat_established(&self) -> Option<(u64, u64)> {
        let st = self
            .running
            .as_ref()?
            .engine
            .function_stats(self.nat?)
            .ok()?;
        Some((st.aux, st.packets_in))
    }
}

pub(crate) fn load_bench(prog: &str, iface: &str) -> Result<Ebpf, BenchError> {
    let mut bpf = Ebpf::load(objects::BENCH)
        .map_err(|e| BenchError::bpf("bench object")(BpfError::from(e)))?;
    let p: &mut Xdp = bpf
        .program_mut(prog)
        .ok_or_else(|| BenchError::bpf(prog)(BpfError::Missing))?
        .try_into()
        .map_err(|e| BenchError::bpf(prog)(BpfError::from(e)))?;
    p.load()
        .map_err(|e| BenchError::bpf(format!("load {prog}"))(BpfError::from(e)))?;
    p.attach(iface, XdpMode::Driver)
        .map_err(|e| BenchError::bpf(format!("attach {prog} to {iface}"))(BpfError::from(e)))?;
    Ok(bpf)
}

pub(crate) fn sink_count(sink: &Ebpf) -> Result<u64, BenchError> {
    let map = |e: aya::maps::MapError| BenchError::bpf("bench_count")(BpfError::from(e));
    let m: PerCpuArray<_, u64> = PerCpuArray::try_from(
        sink.map("bench_count")
            .ok_or_else(|| BenchError::bpf("bench_count")(BpfError::Missing))?,
    )
    .map_err(map)?;
    Ok(m.get(&0, 0).map_err(map)?.iter().sum())
}

/// The chain's engine configuration, with a redirecting forwarder to the server appended when it has none.
pub fn chain_for_bed(
    spec: &VNFChainSpec,
    bed: &Bed,
) -> Result<(ChainConfig, Vec<String>), BenchError> {
    let ifindex = bed.cnf_out_ifindex;
    let plan =
        cnf_dataplane::spec::chain_plan(spec, &|name: &str| (name == CNF_OUT).then_some(ifindex))
            .map_err(|e| BenchError::ChainPlan(Box::new(e)))?;
    if plan.userspace.is_some() {
        return Err(BenchError::UserspaceChain);
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
    std::fs::write(&path, script).map_err(|source| BenchError::SetupIo {
        context: path.display().to_string(),
        source,
    })?;
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
    capped: Option<&(String, VNFChainSpec)>,
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
            m.bpf = Some(super::cps::attach_redirect(bed)?);
        }
        Scenario::ChainXdp | Scenario::ChainTc | Scenario::ChainCapped => {
            let spec = match (sc, capped) {
                (Scenario::ChainCapped, Some((label, c))) => {
                    notes.push(format!(
                        "{label}: its rate limiter caps the run (the benchmark flow is the benchmark chain's)"
                    ));
                    c
                }
                _ => spec,
            };
            let (chain, n) = chain_for_bed(spec, bed)?;
            notes.extend(n);
            m.nat = chain
                .functions
                .iter()
                .position(|f| matches!(f.kind, FunctionKind::Nat(_)))
                .map(|i| i as u32);
            // the XDP scenario is native XDP, as the ceiling's redirect (a forced hook: no fallback)
            let hook = if sc == Scenario::ChainXdp {
                SpecHook::Xdp
            } else {
                SpecHook::Tc
            };
            let plan = Plan::new(hook, vec![CNF_IN.into()], chain);
            let running = in_ns(&bed.cnf_ns, || {
                compose::start(&plan).map_err(|e| BenchError::Chain(Box::new(e)))
            })?;
            // the position in the chain becomes the engine's instance id
            m.nat = m
                .nat
                .and_then(|i| running.engine.active_instances().get(i as usize).copied());
            m.running = Some(running);
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
                compose::start(&plan).map_err(|e| BenchError::Chain(Box::new(e)))
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
fn skip_reason(sc: Scenario, o: &Options, peers: &KernelPeers, caps: &Caps) -> Option<String> {
    match sc {
        Scenario::ChainCapped if o.capped.is_none() => {
            Some("no capped manifest (--capped FILE)".into())
        }
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

/// Socket traffic at a fixed rate from the generator to the service; one-way latency at the server.
fn latency(bed: &Bed, size: usize, o: &Options) -> Result<Latency, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let port = bed.flow.server.port();
    let srv_ns = bed.srv_ns.clone();
    let stop_rx = stop.clone();
    let rx = std::thread::spawn(move || -> Result<Histogram<u64>, BenchError> {
        enter(&srv_ns)?;
        let recv_err = |what: String| move |source| BenchError::Receiver { what, source };
        let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))
            .map_err(recv_err(format!("bind the server's UDP port {port}")))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(recv_err("set the read timeout".into()))?;
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
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
        pktgen::send::run_sender(&cfg, &never, |_| {}).map_err(BenchError::Sender)
    });
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let h = rx.join().map_err(|_| BenchError::Panicked {
        what: "latency receiver".into(),
    })??;
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

/// What every scenario of one run shares: the bed, the manifest, its peers and the rates measured so far.
struct Suite<'a> {
    o: &'a Options,
    spec: &'a VNFChainSpec,
    bed: Bed,
    peers: KernelPeers,
    caps: Caps,
    /// The ceiling's unpaced rate per size (the sweep's 100 %).
    ceiling_rates: Vec<(usize, f64)>,
    references: Vec<Reference>,
}

fn check_options(o: &Options) -> Result<(), BenchError> {
    if o.sizes.is_empty() {
        return Err(BenchError::NoSizes);
    }
    if let Some(s) = o.sizes.iter().find(|s| !(64..=1500).contains(*s)) {
        return Err(BenchError::SizeOutOfRange(*s));
    }
    std::fs::create_dir_all(&o.out).map_err(|source| BenchError::Output {
        path: o.out.clone(),
        source,
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Runs every scenario on `spec` and writes `bench.json`, `table.txt` and the plots into `o.out`.
pub fn run_suite(
    manifest: &str,
    spec: &VNFChainSpec,
    o: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Report, BenchError> {
    check_options(o)?;
    let load_start = loadavg();
    let flow = probe_flow(spec)?;
    let peers = kernel_peers(spec, CNF_IN)?;
    let bed = Bed::create(flow.clone())?;
    let caps = probe_caps(&bed);
    progress(&format!(
        "bed up: {} → {} (server {}), chosen by {}; load average {load_start}",
        flow.src, flow.dst, flow.server, flow.reason
    ));
    let mut suite = Suite {
        o,
        spec,
        bed,
        peers,
        caps,
        ceiling_rates: Vec::new(),
        references: Vec::new(),
    };
    let mut results: Vec<ScenarioResult> = Vec::new();
    for sc in Scenario::ALL {
        results.push(run_scenario(&mut suite, sc, &mut progress)?);
    }
    // further sections run here, on the same bed, before it goes: new flows per second, the RTT added
    let new_flows = super::cps::in_suite(
        &suite.bed,
        &super::cps::CpsOptions::for_suite(o.duration),
        &mut progress,
    );
    let rtt_added = super::rtt::in_suite(
        &suite.bed,
        chain_for_bed(spec, &suite.bed).map(|c| c.0),
        &super::rtt::RttOptions::for_suite(o.latency_pps, o.latency_duration),
        &mut progress,
    );
    suite.bed.reset_cnf();
    let Suite {
        bed,
        peers,
        caps,
        references,
        ..
    } = suite;
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
        references,
        loadavg: (load_start, loadavg()),
        plots: Vec::new(),
        method: METHOD.to_vec(),
        new_flows,
        rtt_added,
    };
    report.plots = write_plots(&report, &o.out)?;
    write(
        &o.out.join("bench.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    write(&o.out.join("table.txt"), &table(&report))?;
    Ok(report)
}

fn skipped(sc: Scenario, why: String) -> ScenarioResult {
    ScenarioResult {
        scenario: sc,
        name: sc.name(),
        skipped: Some(why),
        sizes: Vec::new(),
        notes: Vec::new(),
        nat_established: None,
    }
}

/// One scenario at every size (or why it is skipped).
fn run_scenario(
    suite: &mut Suite<'_>,
    sc: Scenario,
    progress: &mut impl FnMut(&str),
) -> Result<ScenarioResult, BenchError> {
    if let Some(reason) = skip_reason(sc, suite.o, &suite.peers, &suite.caps) {
        progress(&format!("{:<15} skipped: {reason}", sc.name()));
        return Ok(skipped(sc, reason));
    }
    let set = set_up(
        sc,
        suite.spec,
        suite.o.capped.as_ref(),
        &suite.bed,
        &suite.peers,
        &suite.caps,
    );
    let (middle, notes) = match set {
        Ok(x) => x,
        Err(e) if e.is_chain() => {
            progress(&format!("{:<15} skipped: {e}", sc.name()));
            return Ok(skipped(sc, e.to_string()));
        }
        Err(e) => return Err(e),
    };
    let mut r = ScenarioResult {
        scenario: sc,
        name: sc.name(),
        skipped: None,
        sizes: Vec::new(),
        notes,
        nat_established: None,
    };
    for &size in &suite.o.sizes {
        let z = measure(suite, sc, size, progress)?;
        r.sizes.push(z);
    }
    r.nat_established = middle.nat_established();
    if let Some((hits, pkts)) = r.nat_established {
        progress(&format!(
            "{:<15} NAT: {hits} of {pkts} packets on the established path",
            sc.name()
        ));
    }
    drop(middle);
    Ok(r)
}

/// The throughput figures of one scenario at one size, with the sink attached.
struct Rates {
    headline: Blast,
    /// `(delivered pps, CPU, received)` of the best of the unpaced run and the sweep.
    best: (f64, cpu::CpuDelta, u64),
    sweep: Vec<(f64, f64)>,
    own: Option<Blast>,
    two: Option<Blast>,
}

fn rates(
    suite: &mut Suite<'_>,
    sc: Scenario,
    size: usize,
    sink: &Ebpf,
) -> Result<Rates, BenchError> {
    let (bed, o) = (&suite.bed, suite.o);
    let layout = sc.layout();
    let stack = sc.stack();
    // best of `ref_runs`, as chain-bench keeps the best of its runs
    let mut headline = traffic::blast(bed, sink, size, o.duration, None, layout, stack)?;
    for _ in 1..o.ref_runs {
        let b = traffic::blast(bed, sink, size, o.duration, None, layout, stack)?;
        if b.delivered_pps() > headline.delivered_pps() {
            headline = b;
        }
    }
    if sc == Scenario::Ceiling {
        suite
            .ceiling_rates
            .push((size, headline.sent as f64 / headline.secs));
    }
    let top = suite
        .ceiling_rates
        .iter()
        .find(|c| c.0 == size)
        .map(|c| c.1);
    let mut sweep = Vec::new();
    let mut best = (headline.delivered_pps(), headline.cpu, headline.received);
    for &f in top.map(|_| o.sweep.as_slice()).unwrap_or_default() {
        let rate = top.map(|t| t * f);
        let p = traffic::blast(bed, sink, size, o.sweep_duration, rate, layout, stack)?;
        sweep.push((p.sent as f64 / p.secs / 1e6, p.delivered_pps() / 1e6));
        if p.delivered_pps() > best.0 {
            best = (p.delivered_pps(), p.cpu, p.received);
        }
    }
    let two_cpus = traffic::cpus() >= 2;
    let own = match layout {
        Layout::Own => Some(headline),
        _ if two_cpus => Some(traffic::blast(
            bed,
            sink,
            size,
            o.duration,
            None,
            Layout::Own,
            stack,
        )?),
        _ => None,
    };
    let two = if two_cpus {
        Some(traffic::blast(
            bed,
            sink,
            size,
            o.duration,
            None,
            Layout::TwoQueues,
            stack,
        )?)
    } else {
        None
    };
    Ok(Rates {
        headline,
        best,
        sweep,
        own,
        two,
    })
}

/// chain-bench's method beside the ceiling (1 CPU) and plain forwarding (own CPU), at the first size.
fn reference(
    suite: &mut Suite<'_>,
    sc: Scenario,
    size: usize,
    sink: &Ebpf,
    suite_mpps: f64,
    progress: &mut impl FnMut(&str),
) -> Result<(), BenchError> {
    let (name, layout) = match sc {
        Scenario::Ceiling => ("chain-bench's bare redirect (1 CPU)", Layout::Shared),
        Scenario::KernelForward => (
            "plain kernel forwarding, chain-bench's method (own CPU)",
            Layout::Own,
        ),
        _ => return Ok(()),
    };
    if size != 64 || (layout == Layout::Own && traffic::cpus() < 2) {
        return Ok(());
    }
    traffic::threaded_napi(&suite.bed, layout == Layout::Own, &[1])?;
    let r = traffic::reference(&suite.bed, sink, suite.o.ref_frames, suite.o.ref_runs);
    traffic::threaded_napi(&suite.bed, false, &[])?;
    let mpps = r? / 1e6;
    progress(&format!(
        "{:<15} reference: {name}: {mpps:.3} Mpps (the suite's: {suite_mpps:.3}, ratio {:.2})",
        sc.name(),
        suite_mpps / mpps
    ));
    suite.references.push(Reference {
        name: name.into(),
        row: sc.name(),
        mpps,
        suite_mpps,
    });
    Ok(())
}

/// One scenario at one size: throughput in every layout (sink attached), references, then latency (no sink).
fn measure(
    suite: &mut Suite<'_>,
    sc: Scenario,
    size: usize,
    progress: &mut impl FnMut(&str),
) -> Result<SizeResult, BenchError> {
    suite.bed.gro(&suite.bed.srv_ns, SRV_DEV, false)?;
    let sink = in_ns(&suite.bed.srv_ns, || load_bench("bench_sink", SRV_DEV))?;
    let r = rates(suite, sc, size, &sink)?;
    let mpps = r.best.0 / 1e6;
    let mpps_of = |b: &Blast| b.delivered_pps() / 1e6;
    let own_mpps = r.own.as_ref().map(mpps_of);
    let suite_ref = if sc.stack() {
        own_mpps.unwrap_or(mpps)
    } else {
        mpps_of(&r.headline)
    };
    reference(suite, sc, size, &sink, suite_ref, progress)?;
    drop(sink);
    // latency: no sink; GRO gives the server's veth NAPI, so redirects still land
    suite.bed.gro(&suite.bed.srv_ns, SRV_DEV, true)?;
    let lat = latency(&suite.bed, size, suite.o)?;
    let per = |j: u64| {
        if r.best.2 == 0 {
            0.0
        } else {
            j as f64 * cpu::NS_PER_TICK / r.best.2 as f64
        }
    };
    let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    let b = &r.headline;
    progress(&format!(
        "{:<15} {size:>5} B  {mpps:>7.3} Mpps ({})  own CPU {}  2 queues {}  sent {:>9} received {:>9}  \
         latency p50 {:>8.1} µs p99 {:>8.1} µs ({}/{} delivered)",
        sc.name(),
        if sc.stack() { "own CPU" } else { "1 CPU" },
        opt(own_mpps),
        opt(r.two.as_ref().map(mpps_of)),
        b.sent,
        b.received,
        lat.p50_us,
        lat.p99_us,
        lat.received,
        lat.sent
    ));
    Ok(SizeResult {
        size,
        sent: b.sent,
        received: b.received,
        secs: b.secs,
        layout: sc.layout(),
        mpps,
        own_mpps,
        two_queue_mpps: r.two.as_ref().map(mpps_of),
        ratio_ceiling: None,
        ratio_kernel: None,
        ratio_ceiling_2q: None,
        cpu_ns_per_pkt: per(r.best.1.busy),
        softirq_ns_per_pkt: per(r.best.1.softirq),
        unpaced_mpps: mpps_of(b),
        sweep: r.sweep,
        latency: Some(lat),
    })
}

fn write(path: &Path, s: &str) -> Result<(), BenchError> {
    std::fs::write(path, s).map_err(|source| BenchError::Output {
        path: path.to_path_buf(),
        source,
    })
}

/// Fills each row's ratios to the ceiling and to the kernel path at the same size.
pub fn fill_ratios(results: &mut [ScenarioResult]) {
    let rate = |results: &[ScenarioResult],
                sc: Scenario,
                size: usize,
                f: &dyn Fn(&SizeResult) -> Option<f64>| {
        results
            .iter()
            .find(|r| r.scenario == sc)
            .and_then(|r| r.sizes.iter().find(|s| s.size == size))
            .and_then(f)
            .filter(|m| *m > 0.0)
    };
    let snapshot = results.to_vec();
    let head = |z: &SizeResult| Some(z.mpps);
    let own = |z: &SizeResult| z.own_mpps;
    let two = |z: &SizeResult| z.two_queue_mpps;
    for r in results.iter_mut() {
        for s in &mut r.sizes {
            s.ratio_ceiling = rate(&snapshot, Scenario::Ceiling, s.size, &head).map(|c| s.mpps / c);
            s.ratio_kernel = rate(&snapshot, Scenario::KernelPeers, s.size, &own)
                .or_else(|| rate(&snapshot, Scenario::KernelForward, s.size, &own))
                .zip(s.own_mpps)
                .map(|(k, m)| m / k);
            s.ratio_ceiling_2q = rate(&snapshot, Scenario::Ceiling, s.size, &two)
                .zip(s.two_queue_mpps)
                .map(|(c, m)| m / c);
        }
    }
}

/// The text table.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "{:<15} {:>5} {:>8} {:>7} {:>8} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
        "scenario",
        "size",
        "Mpps",
        "x ceil",
        "own CPU",
        "x kern",
        "2 queues",
        "x ceil",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU ns",
        "softirq"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let opt3 = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
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
                "{:<15} {:>5} {:>8} {:>7} {:>8} {:>7} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>8.0} {:>8.0}\n",
                sc.name,
                z.size,
                format!("{:.3}{}", z.mpps, if z.layout == Layout::Own { "*" } else { "" }),
                opt(z.ratio_ceiling),
                opt3(z.own_mpps),
                opt(z.ratio_kernel),
                opt3(z.two_queue_mpps),
                opt(z.ratio_ceiling_2q),
                p50,
                p99,
                p999,
                z.cpu_ns_per_pkt,
                z.softirq_ns_per_pkt
            ));
        }
    }
    s.push_str(
        "\n* own CPU: a kernel-stack row's headline is its own-CPU figure (an unpaced generator on the same CPU \
         starves the stack's softirq work); x kern compares own-CPU figures\n",
    );
    for f in &r.references {
        s.push_str(&format!(
            "reference: {}: {:.3} Mpps; the suite's {}: {:.3} Mpps ({:.2}x)\n",
            f.name,
            f.mpps,
            f.row,
            f.suite_mpps,
            f.suite_mpps / f.mpps
        ));
    }
    for sc in &r.scenarios {
        if let Some((hits, pkts)) = sc.nat_established {
            s.push_str(&format!(
                "{}: NAT established path {hits} of {pkts} packets\n",
                sc.name
            ));
        }
    }
    s.push_str(&format!(
        "load average: {} at the start, {} at the end\n",
        r.loadavg.0, r.loadavg.1
    ));
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
    let mut w = Vec::new();
    if !cdf.is_empty() {
        w.push(plot::latency_cdf(
            &out.join("latency-cdf"),
            &format!("one-way latency, {size} B frames"),
            &cdf,
        )?);
    }
    if !pct.is_empty() {
        w.push(plot::percentiles(
            &out.join("latency-percentiles"),
            &format!("latency percentiles, {size} B frames"),
            &pct,
        )?);
    }
    if !tput.is_empty() {
        w.push(plot::throughput(
            &out.join("throughput"),
            &format!("delivered vs offered, {} B frames", r.sizes[0]),
            &tput,
        )?);
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sc: Scenario, mpps: f64, own: Option<f64>, two: Option<f64>) -> ScenarioResult {
        ScenarioResult {
            scenario: sc,
            name: sc.name(),
            skipped: None,
            sizes: vec![SizeResult {
                size: 64,
                sent: 1,
                received: 1,
                secs: 1.0,
                layout: sc.layout(),
                mpps,
                own_mpps: own,
                two_queue_mpps: two,
                unpaced_mpps: mpps,
                sweep: Vec::new(),
                ratio_ceiling: None,
                ratio_kernel: None,
                ratio_ceiling_2q: None,
                cpu_ns_per_pkt: 0.0,
                softirq_ns_per_pkt: 0.0,
                latency: None,
            }],
            notes: Vec::new(),
            nat_established: None,
        }
    }

    #[test]
    fn ratios_compare_like_with_like() {
        let mut r = vec![
            row(Scenario::Ceiling, 4.0, Some(6.0), Some(8.0)),
            row(Scenario::ChainXdp, 2.0, Some(3.0), Some(4.0)),
            row(Scenario::KernelForward, 0.5, Some(0.5), Some(0.9)),
            row(Scenario::KernelPeers, 0.4, Some(0.4), None),
        ];
        fill_ratios(&mut r);
        let z = &r[1].sizes[0];
        assert_eq!(
            z.ratio_ceiling,
            Some(0.5),
            "1 CPU against the ceiling's 1 CPU"
        );
        assert_eq!(
            z.ratio_kernel,
            Some(3.0 / 0.4),
            "own CPU against kernel-peers' own CPU"
        );
        assert_eq!(
            z.ratio_ceiling_2q,
            Some(0.5),
            "2 queues against the ceiling's"
        );
        assert_eq!(
            r[3].sizes[0].ratio_ceiling_2q, None,
            "no 2-queue figure, no ratio"
        );
        // without kernel-peers, the kernel path is plain forwarding
        r.remove(3);
        fill_ratios(&mut r);
        assert_eq!(r[1].sizes[0].ratio_kernel, Some(3.0 / 0.5));
        assert!(Scenario::KernelPeers.stack() && !Scenario::ChainXdp.stack());
        assert_eq!(Scenario::Nftables.layout(), Layout::Own);
        assert_eq!(Scenario::Ceiling.layout(), Layout::Shared);
    }
}
