//! New flows per second: how fast the chain's NAT + load balancer (the engine on XDP) take on flows it has never
//! seen, against the kernel's nftables NAT on the same bed in the same run.
//!
//! A "connection" is a new UDP 5-tuple: the generator (`pktgen::xdp_cps`, live frames) gives every frame a
//! source address and port no earlier frame had, so every frame makes the middle box create state (UDP, not TCP:
//! a TCP handshake through real sockets would measure the generator's and server's socket stacks more than the
//! middle box; one UDP frame per flow is the state-creation cost alone, the same for the engine and conntrack).
//!
//! The measured chain is derived from the bed's addresses, not the manifest, so the figure is the same whatever
//! the manifest: NAT (SNAT of the client /24 to the CNF's egress address, ports 1024–65535) → load balancer (UDP
//! VIP = the bed's service address, [`BACKENDS`] Maglev backends in the server's /24, port kept) → a redirecting
//! forwarder. The kernel peer does the same translations: nftables `snat` in postrouting and a `jhash` `dnat` map
//! over the same backends in prerouting, then the kernel's own forwarding. Two references beside them: the bare
//! XDP redirect (the generator's and sink's ceiling) and plain kernel forwarding (no state).
//!
//! Every row counts at the server's veth only the frames that arrive translated as that path must translate them
//! (`cps_sink`), and the distinct source ports among them; the chain's NAT and LB counters (new flows = packets in
//! − established hits) and conntrack's count show the state was really created per frame. Tables fill: the
//! engine's translation table is an LRU of [`NAT_CT_CAPACITY`] entries (four per NAT + LB flow), so it evicts the
//! least recently used flows and keeps taking new ones; conntrack holds `nf_conntrack_max` entries (UDP
//! unreplied: 30 s), then evicts unreplied entries (`early_drop`) or drops the packet (`drop`). Both are
//! reported per row.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::DevMap;
use cnf_dataplane::compose::{self, ApplyError, Plan, Running};
use cnf_dataplane::engine::{
    ChainConfig, EngineError, ForwardMode, ForwarderConfig, FunctionConfig, FunctionKind, IpCidr,
    LbBackendConfig, LbConfig, NatConfig, NatRule, PortRange, abi,
};
use crds::Hook as SpecHook;
use pktgen::xdp_cps::{CpsConfig, CpsGenerator, CpsSink, FlowSpace, SinkCounts, SinkExpect};

pub(super) use super::bed::in_ns;
use super::bed::{Bed, CNF_IN, CNF_OUT, Flow, GEN_DEV, SRV_DEV, gateway_for, sh};
use super::{BenchError, BpfError};

/// The nftables table of the kernel peer (`ip` family).
pub const NFT_CPS_TABLE: &str = "buildvnf_bench_cps";
/// Load-balancer backends (addresses `.100`.. of the server's /24).
pub const BACKENDS: u32 = 8;
/// Entries of the engine's translation table `vnf_nat_ct` (`VNF_NAT_MAX` in `ebpf/include/vnf_shared.h`), shared
/// by NAT and LB: two per direction-pair and function, so four per NAT + LB flow.
pub const NAT_CT_CAPACITY: u64 = 65_536;
/// Translation entries one NAT + LB flow takes.
pub const ENTRIES_PER_FLOW: u64 = 4;
/// The SNAT port pool (the chain's and nftables').
pub const SNAT_PORTS: (u16, u16) = (1024, 65535);
/// Flows of the empty-table point: a quarter of what the engine's LRU holds for NAT + LB.
pub const EMPTY_TABLE_FLOWS: u64 = NAT_CT_CAPACITY / ENTRIES_PER_FLOW / 4;
/// Client source addresses the generator uses at most.
const MAX_HOSTS: u32 = 200;
/// Idle timeout of a translation, the kernel's UDP unreplied timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct CpsOptions {
    /// Seconds per offered-load point.
    pub duration: Duration,
    /// Rounds over all paths (the best round counts; paths alternate within a round).
    pub rounds: u32,
    /// Paced points as fractions of the ceiling's unpaced rate (beside the unpaced point).
    pub sweep: Vec<f64>,
}

impl CpsOptions {
    /// The full measurement.
    pub fn full(duration: Duration) -> Self {
        CpsOptions {
            duration,
            rounds: 2,
            sweep: vec![0.2, 0.5],
        }
    }

    /// The suite's choice for its `duration` per point: [`CpsOptions::quick`] for sub-second (CI) runs, else
    /// [`CpsOptions::full`] with a quarter of it (at least 0.5 s) per point.
    pub fn for_suite(duration: Duration) -> Self {
        if duration < Duration::from_secs(1) {
            Self::quick()
        } else {
            Self::full((duration / 4).max(Duration::from_millis(500)))
        }
    }

    /// A short run that checks behaviour, not speed.
    pub fn quick() -> Self {
        CpsOptions {
            duration: Duration::from_millis(300),
            rounds: 1,
            sweep: vec![0.25],
        }
    }
}

/// The addresses of the measurement on one bed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CpsPlan {
    /// The generator's sources.
    pub client_base: Ipv4Addr,
    /// Source addresses used.
    pub hosts: u32,
    /// First source port.
    pub port_lo: u16,
    /// Source ports per address.
    pub ports: u32,
    /// The client /24 the SNAT rule matches.
    pub client_net: Ipv4Addr,
    /// The VIP (the bed's service address and port).
    pub vip: SocketAddrV4,
    /// The SNAT address (the CNF's egress address).
    pub snat: Ipv4Addr,
    /// The backends (consecutive addresses).
    pub backends: Vec<Ipv4Addr>,
}

impl CpsPlan {
    /// The generator's flow space.
    pub fn flows(&self) -> FlowSpace {
        FlowSpace {
            src_base: self.client_base,
            hosts: self.hosts,
            port_lo: self.port_lo,
            ports: self.ports,
        }
    }
}

fn net24(a: Ipv4Addr) -> u32 {
    u32::from(a) & 0xffff_ff00
}

/// The measurement's addresses for a bed's flow (pure).
pub fn plan(flow: &Flow) -> Result<CpsPlan, BenchError> {
    let src = *flow.src.ip();
    let last = u32::from(src) & 0xff;
    // up to .252: .253/.254 may be the CNF's gateway address
    let hosts = MAX_HOSTS.min(253u32.saturating_sub(last));
    if hosts == 0 || last == 0 {
        return Err(BenchError::NoClientRoom { src });
    }
    let server = *flow.server.ip();
    let backends = (0..BACKENDS)
        .map(|i| Ipv4Addr::from(net24(server) | (100 + i)))
        .collect();
    Ok(CpsPlan {
        client_base: src,
        hosts,
        port_lo: 1024,
        ports: 64_512,
        client_net: Ipv4Addr::from(net24(src)),
        vip: flow.dst,
        snat: gateway_for(server),
        backends,
    })
}

/// The engine chain: NAT (SNAT) → load balancer → a forwarder redirecting to the server's veth.
pub fn chain(p: &CpsPlan, out_ifindex: u32, srv_mac: [u8; 6]) -> Result<ChainConfig, BenchError> {
    let e = |e: EngineError| BenchError::Chain(Box::new(ApplyError::from(e)));
    let nat = NatConfig {
        rules: vec![NatRule::Snat {
            match_src: vec![IpCidr::new(p.client_net.into(), 24).map_err(e)?],
            to_addr: p.snat.into(),
            ports: PortRange::new(SNAT_PORTS.0, SNAT_PORTS.1).map_err(e)?,
        }],
        timeout: TIMEOUT,
    };
    let lb = LbConfig {
        vip: (*p.vip.ip()).into(),
        port: Some(p.vip.port()),
        protocol: Some(17),
        backends: p
            .backends
            .iter()
            .map(|b| LbBackendConfig {
                addr: (*b).into(),
                port: None,
                weight: 1,
            })
            .collect(),
        affinity_timeout: TIMEOUT,
        table_size: 65_537,
    };
    Ok(ChainConfig {
        functions: vec![
            FunctionConfig::new("cps-nat", FunctionKind::Nat(nat)),
            FunctionConfig::new("cps-lb", FunctionKind::LoadBalancer(lb)),
            FunctionConfig::new(
                "cps-forwarder",
                FunctionKind::Forwarder(ForwarderConfig {
                    mode: ForwardMode::Redirect {
                        ifindex: out_ifindex,
                    },
                    dst_mac: Some(srv_mac),
                    ..Default::default()
                }),
            ),
        ],
        ..Default::default()
    })
}

/// The kernel peer: SNAT of the client /24 and a `jhash` DNAT map over the backends (pure).
pub fn nft_script(p: &CpsPlan) -> String {
    let map = p
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i} : {b}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "table ip {NFT_CPS_TABLE} {{\n\
         \x20 chain pre {{\n\
         \x20   type nat hook prerouting priority dstnat; policy accept;\n\
         \x20   ip daddr {vip} udp dport {vport} dnat ip to jhash ip saddr . udp sport mod {n} map {{ {map} }}\n\
         \x20 }}\n\
         \x20 chain post {{\n\
         \x20   type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   ip saddr {net}/24 meta l4proto udp snat ip to {snat}:{lo}-{hi}\n\
         \x20 }}\n\
         }}\n",
        vip = p.vip.ip(),
        vport = p.vip.port(),
        n = p.backends.len(),
        net = p.client_net,
        snat = p.snat,
        lo = SNAT_PORTS.0,
        hi = SNAT_PORTS.1,
    )
}

/// The paths measured, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpsPath {
    /// Bare XDP redirect: no state, the generator's and sink's limit.
    Ceiling,
    /// The engine on XDP: NAT + LB + forwarder.
    ChainNatLb,
    /// Kernel forwarding, no rules (no conntrack).
    KernelForward,
    /// nftables SNAT + DNAT (conntrack) and kernel forwarding.
    NftNat,
}

impl CpsPath {
    pub const ALL: [CpsPath; 4] = [
        CpsPath::Ceiling,
        CpsPath::ChainNatLb,
        CpsPath::KernelForward,
        CpsPath::NftNat,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            CpsPath::Ceiling => "ceiling",
            CpsPath::ChainNatLb => "chain-nat-lb",
            CpsPath::KernelForward => "kernel-forward",
            CpsPath::NftNat => "nft-nat",
        }
    }

    fn translates(self) -> bool {
        matches!(self, CpsPath::ChainNatLb | CpsPath::NftNat)
    }
}

/// Proof that the middle box created state for the flows of one point.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StateCheck {
    /// Flows the middle box created state for: the engine's NAT new flows (packets in − established hits), or
    /// conntrack entries added (count after a flush + early drops).
    pub created: u64,
    /// The LB's new flows (engine only).
    pub lb_created: Option<u64>,
    /// Table entries at the end of the point.
    pub entries: u64,
    /// Table capacity, entries.
    pub capacity: u64,
    /// Entries evicted to make room (conntrack `early_drop`; the engine's LRU does not count evictions, so it is
    /// estimated as entries before + created × entries per flow − entries after, when positive).
    pub evicted: u64,
    /// Packets dropped because state could not be created (engine: SNAT ports exhausted, no backend; conntrack:
    /// `drop` + `insert_failed`).
    pub failed: u64,
}

/// One offered-load point.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CpsPoint {
    /// The pacing target, new flows per second (None: unpaced).
    pub target: Option<f64>,
    /// A fixed [`EMPTY_TABLE_FLOWS`] flows into the freshly started path's empty tables (fewer than the engine's
    /// LRU holds): the cost of a new flow before the tables fill. Not counted in the row's CPS.
    pub empty_table: bool,
    /// What the generator achieved: frames sent per second of sending (below a high target: every paced chunk
    /// is one `BPF_PROG_TEST_RUN` call, whose set-up costs milliseconds).
    pub offered: f64,
    /// CPU time of the generator's thread while sending, s: the softirq work of the path runs inline in it (the
    /// kernel processes each flushed batch on the sending CPU before the next), unless the machine accounts
    /// softirq time separately.
    pub cpu_secs: f64,
    /// Frames sent (each a new flow).
    pub sent: u64,
    pub secs: f64,
    /// What the sink counted.
    pub sink: SinkCounts,
    /// Frames that arrived translated as expected, per second.
    pub cps: f64,
    pub state: Option<StateCheck>,
}

/// One path.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CpsRow {
    pub path: CpsPath,
    pub name: &'static str,
    /// The highest `cps` of all points and rounds.
    pub cps: f64,
    /// CPU time per new flow, ns: the lowest `cpu_secs / sent` of the points that delivered at least 99 % as
    /// expected (generator and sink included, as in every row; robust against other load on the machine).
    pub cpu_ns_per_flow: Option<f64>,
    /// `cpu_ns_per_flow` − the ceiling's: what the path itself costs per new flow, ns.
    pub path_ns_per_flow: Option<f64>,
    /// CPU time per new flow while the tables are still empty ([`EMPTY_TABLE_FLOWS`] flows), ns.
    pub empty_table_ns_per_flow: Option<f64>,
    /// The point it came from.
    pub best: Option<CpsPoint>,
    /// Every point of every round.
    pub points: Vec<CpsPoint>,
    /// Why it did not run.
    pub skipped: Option<String>,
}

/// The "new flows" table (`bench.json` → `new_flows`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewFlows {
    pub plan: Option<CpsPlan>,
    pub rows: Vec<CpsRow>,
    /// chain-nat-lb CPS / nft-nat CPS.
    pub ratio_chain_nft: Option<f64>,
    /// chain-nat-lb CPS / ceiling CPS.
    pub ratio_chain_ceiling: Option<f64>,
    /// nft-nat CPU ns per flow / chain-nat-lb's: the CPS ratio one dedicated core would see.
    pub ratio_chain_nft_cpu: Option<f64>,
    /// What fills and what happens then.
    pub tables: Vec<String>,
    /// `/proc/loadavg` before and after.
    pub load: Vec<String>,
    /// Why the whole measurement did not run.
    pub skipped: Option<String>,
    pub method: Vec<&'static str>,
}

const METHOD: [&str; 4] = [
    "new flows: pktgen_cps live frames (BPF_PROG_TEST_RUN, XDP_TX out of the generator's veth), every frame a new \
     UDP 5-tuple (source address and port from a flow counter, the whole header rewritten per frame); CPS = frames \
     that reached the server's veth translated as the path must translate them (cps_sink), per second of sending",
    "points: unpaced, then paced at fractions of the ceiling's unpaced rate (chunked calls); CPS is the best point \
     of the best round; paths alternate within each round",
    "state: the engine's NAT and LB counters (packets in − established hits = new flows) and the LRU's entries; \
     conntrack's count after a flush (ctnetlink) before each point, plus early_drop / drop / insert_failed from \
     /proc/net/stat/nf_conntrack",
    "chain-nat-lb: SNAT of the client /24 + Maglev LB over 8 backends + redirect; nft-nat: snat + jhash dnat map \
     over the same backends, kernel forwarding; both 30 s idle timeouts",
];

/// `(a / b)` when both are positive.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a > 0.0 && b > 0.0).then(|| a / b)
}

/// Rate of `n` events in `secs` (0 for an empty interval).
pub fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Why conntrack's counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CtStatError {
    /// `nf_conntrack_count` is not a number.
    #[error("nf_conntrack_count {text:?}: {source}")]
    Count {
        text: String,
        #[source]
        source: std::num::ParseIntError,
    },
    /// `/proc/net/stat/nf_conntrack` is empty.
    #[error("empty nf_conntrack statistics")]
    Empty,
    /// A CPU line has another number of columns than the header.
    #[error("nf_conntrack statistics: {values} columns under {names} names")]
    Columns { values: usize, names: usize },
    /// A value is not hexadecimal.
    #[error("nf_conntrack statistics: {name} = {value:?}: {source}")]
    Value {
        name: String,
        value: String,
        #[source]
        source: std::num::ParseIntError,
    },
}

/// `/proc/net/stat/nf_conntrack`: every column summed over the CPU lines (the header names them; values are
/// hex). `entries` repeats the global count on every line, so it is taken from the first line only.
pub fn parse_ct_stat(text: &str) -> Result<Vec<(String, u64)>, CtStatError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let names: Vec<&str> = lines
        .next()
        .ok_or(CtStatError::Empty)?
        .split_whitespace()
        .collect();
    let mut sums = vec![0u64; names.len()];
    for (row, line) in lines.enumerate() {
        let vals: Vec<&str> = line.split_whitespace().collect();
        if vals.len() != names.len() {
            return Err(CtStatError::Columns {
                values: vals.len(),
                names: names.len(),
            });
        }
        for ((s, v), name) in sums.iter_mut().zip(&vals).zip(&names) {
            let v = u64::from_str_radix(v, 16).map_err(|source| CtStatError::Value {
                name: (*name).into(),
                value: (*v).into(),
                source,
            })?;
            if *name == "entries" {
                if row == 0 {
                    *s = v;
                }
            } else {
                *s += v;
            }
        }
    }
    Ok(names.into_iter().map(String::from).zip(sums).collect())
}

fn stat(s: &[(String, u64)], name: &str) -> u64 {
    s.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
}

/// Empties the conntrack table of the calling thread's namespace (ctnetlink `IPCTNL_MSG_CT_DELETE` without
/// attributes).
fn flush_conntrack() -> Result<(), BenchError> {
    const NETLINK_NETFILTER: libc::c_int = 12;
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    let err = |what: &str| BenchError::SetupIo {
        context: format!("conntrack flush: {what}"),
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: socket(2) with constant arguments; the result is checked and closed through OwnedFd.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(err("socket"));
    }
    // SAFETY: fd is a fresh socket this function owns.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // nlmsghdr (16) + nfgenmsg (4)
    let mut msg = [0u8; 20];
    msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&(NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg[16] = libc::AF_INET as u8; // nfgen_family
    msg[17] = 0; // NFNETLINK_V0
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value (pid 0 = the kernel).
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    use std::os::fd::AsRawFd;
    // SAFETY: sendto with a live buffer and a live sockaddr_nl of the given sizes.
    let n = unsafe {
        libc::sendto(
            owned.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&to as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(err("send"));
    }
    let mut buf = [0u8; 256];
    // SAFETY: recv into a live buffer of its size.
    let n = unsafe { libc::recv(owned.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(err("receive"));
    }
    ack_error(&buf[..n as usize]).map_err(|source| BenchError::SetupIo {
        context: "conntrack flush: the kernel's answer".into(),
        source,
    })
}

/// The error of a netlink ACK (`NLMSG_ERROR` with errno 0 = success): the errno, or `InvalidData` for a reply
/// that is no ACK.
fn ack_error(b: &[u8]) -> std::io::Result<()> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    if b.len() < 20 {
        return Err(invalid(format!("short netlink reply ({} bytes)", b.len())));
    }
    let ty = u16::from_ne_bytes([b[4], b[5]]);
    if ty != libc::NLMSG_ERROR as u16 {
        return Err(invalid(format!("unexpected netlink message type {ty}")));
    }
    let errno = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
    if errno == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(-errno))
    }
}

/// What stays attached in the CNF namespace for one path (dropped = detached).
#[derive(Default)]
pub(super) struct Middle {
    pub(super) bpf: Option<Ebpf>,
    pub(super) running: Option<Running>,
}

/// The bare one-hop redirect `bench_redirect` on the CNF's ingress veth, to its egress veth: the ceiling of the
/// suite ([`super::run`]) and of the new-flows table.
pub(super) fn attach_redirect(bed: &Bed) -> Result<Ebpf, BenchError> {
    let out = bed.cnf_out_ifindex;
    in_ns(&bed.cnf_ns, || {
        let mut bpf = super::run::load_bench("bench_redirect", CNF_IN)?;
        let map = |e: aya::maps::MapError| BenchError::bpf("bench_port")(BpfError::from(e));
        let mut port: DevMap<_> = DevMap::try_from(
            bpf.map_mut("bench_port")
                .ok_or_else(|| BenchError::bpf("bench_port")(BpfError::Missing))?,
        )
        .map_err(map)?;
        port.set(0, out, None, 0)
            .map_err(|e| BenchError::bpf("bench_port")(BpfError::from(e)))?;
        Ok(bpf)
    })
}

/// `chain` on native XDP on the CNF's ingress veth.
pub(super) fn attach_chain(bed: &Bed, chain: ChainConfig) -> Result<Running, BenchError> {
    let plan = Plan::new(SpecHook::Xdp, vec![CNF_IN.into()], chain);
    in_ns(&bed.cnf_ns, || {
        compose::start(&plan).map_err(|e| BenchError::Chain(Box::new(e)))
    })
}

/// The engine's NAT and LB instances of a running CPS chain.
fn nat_lb(r: &Running) -> Result<(u32, u32), BenchError> {
    match r.engine.active_instances() {
        [nat, lb, ..] => Ok((*nat, *lb)),
        _ => Err(BenchError::NoNatLb),
    }
}

fn engine_counts(r: &Running) -> Result<(u64, u64, u64), BenchError> {
    let (nat, lb) = nat_lb(r)?;
    let e = |e: EngineError| BenchError::Chain(Box::new(ApplyError::from(e)));
    let n = r.engine.function_stats(nat).map_err(e)?;
    let l = r.engine.function_stats(lb).map_err(e)?;
    Ok((
        n.packets_in.saturating_sub(n.aux),
        l.packets_in.saturating_sub(l.aux),
        n.dropped[abi::reason::NAT_EXHAUSTED] + l.dropped[abi::reason::LB_NO_BACKEND],
    ))
}

fn ct_read(ns: &str) -> Result<(u64, Vec<(String, u64)>), BenchError> {
    let count = sh(ns, "cat", &["/proc/sys/net/netfilter/nf_conntrack_count"])?;
    let count = count
        .trim()
        .parse::<u64>()
        .map_err(|source| CtStatError::Count {
            text: count.clone(),
            source,
        })?;
    let st = sh(ns, "cat", &["/proc/net/stat/nf_conntrack"])?;
    Ok((count, parse_ct_stat(&st)?))
}

fn ct_max() -> u64 {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn sink_expect(p: &CpsPlan, path: CpsPath) -> SinkExpect {
    if path.translates() {
        SinkExpect {
            saddr: Some(p.snat),
            daddr_lo: p.backends[0],
            daddr_hi: p.backends[p.backends.len() - 1],
            dport: Some(p.vip.port()),
        }
    } else {
        SinkExpect {
            saddr: None,
            daddr_lo: *p.vip.ip(),
            daddr_hi: *p.vip.ip(),
            dport: Some(p.vip.port()),
        }
    }
}

/// Static neighbours for the backends (the sink's XDP program eats ARP) and no leftovers of another path.
fn prepare(bed: &Bed, p: &CpsPlan) -> Result<(), BenchError> {
    let mut n = netkit::Netlink::open_in(&bed.cnf_ns)?;
    for b in &p.backends {
        n.replace_neigh(CNF_OUT, (*b).into(), bed.srv_mac)?;
    }
    Ok(())
}

fn reset(bed: &Bed) {
    bed.reset_cnf();
    let _ = sh(
        &bed.cnf_ns,
        "nft",
        &["delete", "table", "ip", NFT_CPS_TABLE],
    );
}

fn set_up(bed: &Bed, p: &CpsPlan, path: CpsPath) -> Result<Middle, BenchError> {
    reset(bed);
    let xdp = matches!(path, CpsPath::Ceiling | CpsPath::ChainNatLb);
    bed.gro(&bed.cnf_ns, CNF_IN, !xdp)?;
    bed.gro(&bed.srv_ns, SRV_DEV, false)?;
    let mut m = Middle::default();
    match path {
        CpsPath::Ceiling => m.bpf = Some(attach_redirect(bed)?),
        CpsPath::ChainNatLb => {
            m.running = Some(attach_chain(
                bed,
                chain(p, bed.cnf_out_ifindex, bed.srv_mac)?,
            )?)
        }
        CpsPath::KernelForward => {}
        CpsPath::NftNat => {
            let path = std::env::temp_dir().join(format!("vnfctl-cps-{}.nft", std::process::id()));
            std::fs::write(&path, nft_script(p)).map_err(|source| BenchError::SetupIo {
                context: path.display().to_string(),
                source,
            })?;
            let r = sh(&bed.cnf_ns, "nft", &["-f", &path.to_string_lossy()]);
            let _ = std::fs::remove_file(&path);
            r?;
        }
    }
    Ok(m)
}

/// Sends for `dur`, unpaced or paced to `rate_pps` in chunks.
fn send(
    generator: &mut CpsGenerator,
    dur: Duration,
    rate_pps: Option<f64>,
    count: Option<u64>,
) -> Result<(u64, f64), BenchError> {
    let t = BenchError::Generator;
    let before = generator.flows_sent().map_err(t)?;
    let start = Instant::now();
    let mut sent = 0u64;
    if let Some(n) = count {
        generator.send(n).map_err(t)?;
        let secs = start.elapsed().as_secs_f64();
        return Ok((generator.flows_sent().map_err(t)? - before, secs));
    }
    while start.elapsed() < dur {
        let count = match rate_pps {
            None => 25_000,
            Some(r) => (r * 0.01).max(200.0) as u64,
        };
        generator.send(count).map_err(t)?;
        sent += count;
        if let Some(r) = rate_pps {
            let due = Duration::from_secs_f64(sent as f64 / r);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((generator.flows_sent().map_err(t)? - before, secs))
}

/// One path: every point (unpaced, then the sweep at fractions of `top`).
fn run_path(
    bed: &Bed,
    p: &CpsPlan,
    path: CpsPath,
    o: &CpsOptions,
    top: Option<f64>,
) -> Result<Vec<CpsPoint>, BenchError> {
    let m = set_up(bed, p, path)?;
    let expect = sink_expect(p, path);
    let sink = in_ns(&bed.srv_ns, || {
        CpsSink::attach(SRV_DEV, &expect).map_err(|source| BenchError::Helper {
            what: format!("cps_sink on {SRV_DEV}"),
            source,
        })
    })?;
    let gcfg = CpsConfig {
        ifname: GEN_DEV.into(),
        src_mac: bed.gen_mac,
        dst_mac: bed.cnf_in_mac,
        flows: p.flows(),
        dst: p.vip,
        ip_size: 50,
        batch: 64,
    };
    // (pacing target, fixed count): first, for the translating paths, EMPTY_TABLE_FLOWS flows into empty tables
    let mut offered: Vec<(Option<f64>, Option<u64>)> = Vec::new();
    if path.translates() {
        offered.push((None, Some(EMPTY_TABLE_FLOWS)));
    }
    offered.push((None, None));
    if let Some(t) = top {
        offered.extend(o.sweep.iter().map(|f| (Some(t * f), None)));
    }
    let points = in_ns(&bed.gen_ns, || {
        let mut generator = CpsGenerator::new(&gcfg).map_err(BenchError::Generator)?;
        let mut points = Vec::new();
        for (rate, count) in offered {
            if path == CpsPath::NftNat {
                in_ns(&bed.cnf_ns, flush_conntrack)?;
            }
            let ct0 = if path == CpsPath::NftNat {
                Some(ct_read(&bed.cnf_ns)?)
            } else {
                None
            };
            let e0 = match &m.running {
                Some(r) => {
                    let (nat, lb) = nat_lb(r)?;
                    let before = (r.engine.nat_entries(nat) + r.engine.nat_entries(lb)) as u64;
                    Some((engine_counts(r)?, before))
                }
                None => None,
            };
            let s0 = sink.counts().map_err(BenchError::SinkCounts)?;
            let cpu0 = thread_cpu_secs();
            let (sent, secs) = send(&mut generator, o.duration, rate, count)?;
            let cpu_secs = thread_cpu_secs() - cpu0;
            std::thread::sleep(Duration::from_millis(50));
            let s1 = sink.counts().map_err(BenchError::SinkCounts)?;
            let sink_d = SinkCounts {
                frames: s1.frames - s0.frames,
                expected: s1.expected - s0.expected,
                // the port bitmap is not reset between points: distinct ports seen so far on this path
                distinct_ports: s1.distinct_ports,
            };
            let state = match (&m.running, e0, &ct0) {
                (Some(r), Some((e0, entries0)), _) => {
                    let e1 = engine_counts(r)?;
                    let (nat, lb) = nat_lb(r)?;
                    let entries = (r.engine.nat_entries(nat) + r.engine.nat_entries(lb)) as u64;
                    let created = e1.0 - e0.0;
                    Some(StateCheck {
                        created,
                        lb_created: Some(e1.1 - e0.1),
                        entries,
                        capacity: NAT_CT_CAPACITY,
                        evicted: (entries0 + created * ENTRIES_PER_FLOW).saturating_sub(entries),
                        failed: e1.2 - e0.2,
                    })
                }
                (_, _, Some((c0, st0))) => {
                    let (c1, st1) = ct_read(&bed.cnf_ns)?;
                    let d = |n: &str| stat(&st1, n).saturating_sub(stat(st0, n));
                    Some(StateCheck {
                        created: c1.saturating_sub(*c0) + d("early_drop"),
                        lb_created: None,
                        entries: c1,
                        capacity: ct_max(),
                        evicted: d("early_drop"),
                        failed: d("drop") + d("insert_failed"),
                    })
                }
                _ => None,
            };
            points.push(CpsPoint {
                target: rate,
                empty_table: count.is_some(),
                offered: rate_of(sent, secs),
                cpu_secs,
                sent,
                secs,
                cps: rate_of(sink_d.expected, secs),
                sink: sink_d,
                state,
            });
        }
        Ok(points)
    });
    drop(sink);
    drop(m);
    reset(bed);
    points
}

/// CPU time of the calling thread, s.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn rate_of(n: u64, secs: f64) -> f64 {
    rate(n, secs)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// Whether `e` is the path's own failure (its chain, or a program, tool or table it needs: the path is skipped
/// with the reason) rather than the bed's traffic failing (the measurement stops).
fn path_unavailable(e: &BenchError) -> bool {
    e.is_chain()
        || matches!(
            e,
            BenchError::NoNatLb
                | BenchError::Netns(_)
                | BenchError::Namespace(_)
                | BenchError::Netlink(_)
                | BenchError::Ethtool(_)
                | BenchError::NoMac { .. }
                | BenchError::SetupIo { .. }
                | BenchError::Bpf { .. }
                | BenchError::Panicked { .. }
                | BenchError::Helper { .. }
        )
}

/// Measures every path on `bed` (see the module docs); the bed's CNF is left reset.
pub fn measure(
    bed: &Bed,
    o: &CpsOptions,
    mut progress: impl FnMut(&str),
) -> Result<NewFlows, BenchError> {
    let p = plan(&bed.flow)?;
    prepare(bed, &p)?;
    let mut rows: Vec<CpsRow> = CpsPath::ALL
        .iter()
        .map(|&path| CpsRow {
            path,
            name: path.name(),
            cps: 0.0,
            cpu_ns_per_flow: None,
            path_ns_per_flow: None,
            empty_table_ns_per_flow: None,
            best: None,
            points: Vec::new(),
            skipped: None,
        })
        .collect();
    let mut load = vec![loadavg()];
    let mut top: Option<f64> = None;
    for round in 0..o.rounds.max(1) {
        for row in rows.iter_mut() {
            if row.skipped.is_some() {
                continue;
            }
            let pts = match run_path(bed, &p, row.path, o, top) {
                Ok(pts) => pts,
                Err(e) if round == 0 && path_unavailable(&e) => {
                    progress(&format!("new flows {:<15} skipped: {e}", row.name));
                    row.skipped = Some(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            if row.path == CpsPath::Ceiling && top.is_none() {
                top = pts.first().map(|u| rate(u.sent, u.secs));
            }
            for pt in pts {
                let ns = pt.cpu_secs * 1e9 / pt.sent.max(1) as f64;
                if pt.empty_table {
                    if row.empty_table_ns_per_flow.is_none_or(|b| ns < b) {
                        row.empty_table_ns_per_flow = Some(ns);
                    }
                    row.points.push(pt);
                    continue;
                }
                if pt.sent > 0
                    && pt.sink.expected * 100 >= pt.sent * 99
                    && row.cpu_ns_per_flow.is_none_or(|b| ns < b)
                {
                    row.cpu_ns_per_flow = Some(ns);
                }
                if pt.cps > row.cps {
                    row.cps = pt.cps;
                    row.best = Some(pt.clone());
                }
                row.points.push(pt);
            }
            if let Some(b) = &row.best {
                progress(&format!(
                    "new flows {:<15} round {} best {:>9.0} CPS (offered {:.0}/s {}, {:.0} ns CPU per flow, {} of {} frames as expected, {} distinct ports)",
                    row.name,
                    round + 1,
                    row.cps,
                    b.offered,
                    b.target
                        .map_or("unpaced".into(), |r| format!("paced to {r:.0}/s")),
                    b.cpu_secs * 1e9 / b.sent.max(1) as f64,
                    b.sink.expected,
                    b.sent,
                    b.sink.distinct_ports
                ));
            }
        }
    }
    load.push(loadavg());
    let ns = |rows: &[CpsRow], path: CpsPath| {
        rows.iter()
            .find(|r| r.path == path)
            .and_then(|r| r.cpu_ns_per_flow)
    };
    let ceiling_ns = ns(&rows, CpsPath::Ceiling);
    for r in rows.iter_mut() {
        r.path_ns_per_flow = r.cpu_ns_per_flow.zip(ceiling_ns).map(|(a, c)| a - c);
    }
    let ratio_chain_nft_cpu = ns(&rows, CpsPath::NftNat)
        .zip(ns(&rows, CpsPath::ChainNatLb))
        .and_then(|(n, c)| ratio(n, c));
    let cps = |path: CpsPath| rows.iter().find(|r| r.path == path).map_or(0.0, |r| r.cps);
    let chain_cps = cps(CpsPath::ChainNatLb);
    let tables = tables(&rows, chain_cps);
    Ok(NewFlows {
        ratio_chain_nft: ratio(chain_cps, cps(CpsPath::NftNat)),
        ratio_chain_ceiling: ratio(chain_cps, cps(CpsPath::Ceiling)),
        ratio_chain_nft_cpu,
        plan: Some(p),
        rows,
        tables,
        load,
        skipped: None,
        method: METHOD.to_vec(),
    })
}

/// The notes on table capacity: how long a flow survives in the engine's LRU at the measured rate, and what
/// conntrack did.
fn tables(rows: &[CpsRow], chain_cps: f64) -> Vec<String> {
    let flows = NAT_CT_CAPACITY / ENTRIES_PER_FLOW;
    let mut t = vec![format!(
        "engine: vnf_nat_ct is an LRU hash of {NAT_CT_CAPACITY} entries shared by NAT and LB ({ENTRIES_PER_FLOW} per \
         NAT + LB flow: {flows} flows); when full it evicts the least recently used entries and keeps taking new \
         flows, but an idle flow loses its translation after {flows} newer flows{}; vnf_replies (one entry per new \
         flow, same size) evicts the same way; a new flow is refused (reason nat_exhausted, or lb_no_backend) when \
         SNAT finds no free port in its probes, which a full LRU makes occasionally happen",
        if chain_cps > 0.0 {
            format!(
                " ({:.0} ms at the measured {chain_cps:.0} CPS)",
                flows as f64 / chain_cps * 1e3
            )
        } else {
            String::new()
        }
    )];
    for r in rows {
        let Some(s) = r.best.as_ref().and_then(|b| b.state.as_ref()) else {
            continue;
        };
        t.push(format!(
            "{}: at the best point {} flows created, {} entries of {} at the end, {} evicted{}, {} packets refused; \
             CPU per new flow {} ns with the tables filled, {} ns into empty tables ({EMPTY_TABLE_FLOWS} flows)",
            r.name,
            s.created,
            s.entries,
            s.capacity,
            s.evicted,
            if r.path == CpsPath::ChainNatLb { " (estimated)" } else { " (early_drop)" },
            s.failed,
            r.cpu_ns_per_flow.map_or("-".into(), |v| format!("{v:.0}")),
            r.empty_table_ns_per_flow.map_or("-".into(), |v| format!("{v:.0}")),
        ));
    }
    t.push(
        "kernel: conntrack holds nf_conntrack_max entries per namespace (UDP unreplied: 30 s); when full it evicts \
         unreplied entries (early_drop) and drops the packet if it cannot (drop); counts are per point after a flush"
            .into(),
    );
    t
}

/// The measurement, or the reason it did not run, for the suite's report.
pub fn in_suite(bed: &Bed, o: &CpsOptions, mut progress: impl FnMut(&str)) -> NewFlows {
    match measure(bed, o, &mut progress) {
        Ok(n) => n,
        Err(e) => {
            reset(bed);
            progress(&format!("new flows: not measured: {e}"));
            NewFlows {
                plan: None,
                rows: Vec::new(),
                ratio_chain_nft: None,
                ratio_chain_ceiling: None,
                ratio_chain_nft_cpu: None,
                tables: Vec::new(),
                load: vec![loadavg()],
                skipped: Some(e.to_string()),
                method: METHOD.to_vec(),
            }
        }
    }
}

/// The text table.
pub fn table(n: &NewFlows) -> String {
    let mut s = String::from("new flows (UDP, a new 5-tuple per frame; NAT + LB)\n");
    if let Some(why) = &n.skipped {
        s.push_str(&format!("  not measured: {why}\n"));
        return s;
    }
    s.push_str(&format!(
        "{:<15} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9} {:>8}\n",
        "path",
        "CPS",
        "offered",
        "CPU ns/f",
        "path ns/f",
        "sent",
        "as expect",
        "created",
        "entries",
        "refused"
    ));
    for r in &n.rows {
        if let Some(why) = &r.skipped {
            s.push_str(&format!("{:<15} skipped: {why}\n", r.name));
            continue;
        }
        let Some(b) = &r.best else {
            s.push_str(&format!("{:<15} no point delivered\n", r.name));
            continue;
        };
        let (created, entries, refused) =
            b.state
                .as_ref()
                .map_or(("-".to_string(), "-".to_string(), "-".to_string()), |st| {
                    (
                        st.created.to_string(),
                        st.entries.to_string(),
                        st.failed.to_string(),
                    )
                });
        s.push_str(&format!(
            "{:<15} {:>10.0} {:>10.0} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9} {:>8}\n",
            r.name,
            r.cps,
            b.offered,
            r.cpu_ns_per_flow.map_or("-".into(), |v| format!("{v:.0}")),
            r.path_ns_per_flow.map_or("-".into(), |v| format!("{v:.0}")),
            b.sent,
            b.sink.expected,
            created,
            entries,
            refused
        ));
    }
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    s.push_str(&format!(
        "chain / nft: {}x (per CPU: {}x)   chain / ceiling: {}x   load: {}\n",
        opt(n.ratio_chain_nft),
        opt(n.ratio_chain_nft_cpu),
        opt(n.ratio_chain_ceiling),
        n.load.join(" → ")
    ));
    for t in &n.tables {
        s.push_str(&format!("  {t}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            src: "10.0.1.2:40000".parse().expect("addr"),
            dst: "10.0.0.200:9999".parse().expect("addr"),
            server: "10.0.2.10:9999".parse().expect("addr"),
            reason: "test".into(),
        }
    }

    #[test]
    fn plan_puts_clients_backends_and_snat_on_the_bed() {
        let p = plan(&flow()).expect("plan");
        assert_eq!(p.client_base, Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(p.hosts, 200);
        assert_eq!(p.client_net, Ipv4Addr::new(10, 0, 1, 0));
        assert_eq!(
            p.snat,
            Ipv4Addr::new(10, 0, 2, 254),
            "the CNF's egress address"
        );
        assert_eq!(p.backends.len(), BACKENDS as usize);
        assert_eq!(p.backends[0], Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!(p.backends[7], Ipv4Addr::new(10, 0, 2, 107));
        let f = p.flows();
        f.check().expect("valid flow space");
        assert!(
            f.len() > 10_000_000,
            "no tuple repeats within a run: {}",
            f.len()
        );
        // the last source stays below the CNF's gateway addresses
        assert_eq!(
            f.tuple(f.len() - 1),
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 201), 65535)
        );
        let mut high = flow();
        high.src = "10.0.1.250:1".parse().expect("addr");
        assert_eq!(plan(&high).expect("plan").hosts, 3);
        high.src = "10.0.1.253:1".parse().expect("addr");
        let e = plan(&high).expect_err("no room");
        assert!(matches!(e, BenchError::NoClientRoom { .. }), "{e}");
        assert!(
            !path_unavailable(&e),
            "a bed without room stops the measurement"
        );
    }

    #[test]
    fn nft_peer_translates_like_the_chain() {
        let p = plan(&flow()).expect("plan");
        let s = nft_script(&p);
        assert!(
            s.contains("ip daddr 10.0.0.200 udp dport 9999 dnat ip to jhash ip saddr . udp sport mod 8 map { 0 : 10.0.2.100, 1 : 10.0.2.101,"),
            "{s}"
        );
        assert!(s.contains("7 : 10.0.2.107 }"), "{s}");
        assert!(
            s.contains("ip saddr 10.0.1.0/24 meta l4proto udp snat ip to 10.0.2.254:1024-65535"),
            "{s}"
        );
        assert!(s.starts_with(&format!("table ip {NFT_CPS_TABLE} {{")));
        let c = chain(&p, 7, [2, 0, 0, 0, 0, 1]).expect("chain");
        assert_eq!(c.functions.len(), 3);
        match &c.functions[1].kind {
            FunctionKind::LoadBalancer(lb) => {
                assert_eq!(lb.backends.len(), 8);
                assert_eq!(lb.port, Some(9999));
                assert!(
                    lb.backends.iter().all(|b| b.port.is_none()),
                    "port kept, as nftables does"
                );
            }
            k => panic!("LB expected, got {k:?}"),
        }
    }

    #[test]
    fn conntrack_statistics_sum_cpus_but_not_entries() {
        let text = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
                    0000002a  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000003 00000010 00000000  00000000 00000000 00000000 00000000\n\
                    0000002a  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002 00000001 000000f0 00000000  00000000 00000000 00000000 00000000\n";
        let s = parse_ct_stat(text).expect("parses");
        assert_eq!(stat(&s, "entries"), 42);
        assert_eq!(stat(&s, "drop"), 4);
        assert_eq!(stat(&s, "early_drop"), 0x100);
        assert_eq!(stat(&s, "insert_failed"), 2);
        assert_eq!(stat(&s, "invalid"), 1);
        assert_eq!(stat(&s, "no such column"), 0);
        assert!(parse_ct_stat("").is_err());
        assert!(parse_ct_stat("a b\n1\n").is_err());
        let e = parse_ct_stat("a\nzz\n").expect_err("not hex");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the parse error is kept: {e}"
        );
        let e = BenchError::from(e);
        assert!(
            e.to_string()
                .starts_with("traffic: nf_conntrack statistics: a = \"zz\": "),
            "{e}"
        );
        assert!(!path_unavailable(&e));
        assert!(path_unavailable(&BenchError::NoNatLb));
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(rate(500, 0.5), 1000.0);
        assert_eq!(rate(5, 0.0), 0.0);
        assert_eq!(ratio(300.0, 100.0), Some(3.0));
        assert_eq!(ratio(300.0, 0.0), None);
        assert_eq!(ratio(0.0, 1.0), None);
    }

    #[test]
    fn netlink_acks_are_read() {
        let mut ok = [0u8; 36];
        ok[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        assert!(ack_error(&ok).is_ok());
        let mut bad = ok;
        bad[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            ack_error(&bad).err().and_then(|e| e.raw_os_error()),
            Some(libc::EPERM),
            "the errno is kept"
        );
        assert!(ack_error(&ok[..10]).is_err());
        let mut other = ok;
        other[4..6].copy_from_slice(&3u16.to_ne_bytes());
        assert!(ack_error(&other).is_err());
    }

    #[test]
    fn the_capacity_is_the_data_plane_s() {
        let h = include_str!("../../../ebpf/include/vnf_shared.h");
        assert!(
            h.contains(&format!("#define VNF_NAT_MAX {NAT_CT_CAPACITY}\n")),
            "VNF_NAT_MAX changed: update NAT_CT_CAPACITY"
        );
    }

    #[test]
    fn the_table_names_both_paths_and_the_ratio() {
        let pt = |cps: f64, st: Option<StateCheck>| CpsPoint {
            target: None,
            empty_table: false,
            offered: 1000.0,
            cpu_secs: 0.5,
            sent: 1000,
            secs: 1.0,
            sink: SinkCounts {
                frames: 1000,
                expected: cps as u64,
                distinct_ports: 900,
            },
            cps,
            state: st,
        };
        let row = |path: CpsPath, cps: f64, st: Option<StateCheck>| CpsRow {
            path,
            name: path.name(),
            cps,
            cpu_ns_per_flow: Some(1e9 / cps),
            path_ns_per_flow: None,
            empty_table_ns_per_flow: Some(5e8 / cps),
            best: Some(pt(cps, st.clone())),
            points: vec![pt(cps, st)],
            skipped: None,
        };
        let st = StateCheck {
            created: 1000,
            lb_created: Some(1000),
            entries: 4000,
            capacity: NAT_CT_CAPACITY,
            evicted: 0,
            failed: 0,
        };
        let rows = vec![
            row(CpsPath::ChainNatLb, 900.0, Some(st)),
            row(CpsPath::NftNat, 300.0, None),
        ];
        let n = NewFlows {
            plan: None,
            tables: tables(&rows, 900.0),
            rows,
            ratio_chain_nft: ratio(900.0, 300.0),
            ratio_chain_ceiling: None,
            ratio_chain_nft_cpu: Some(3.0),
            load: vec!["0.5".into()],
            skipped: None,
            method: METHOD.to_vec(),
        };
        let t = table(&n);
        assert!(t.contains("chain-nat-lb"), "{t}");
        assert!(t.contains("nft-nat"), "{t}");
        assert!(t.contains("chain / nft: 3.00x (per CPU: 3.00x)"), "{t}");
        assert!(
            t.contains(" 1111111 "),
            "CPU ns per flow of the chain row: {t}"
        );
        assert!(t.contains("16384 flows"), "{t}");
        assert!(t.contains("18204 ms at the measured 900 CPS"), "{t}");
    }
}
