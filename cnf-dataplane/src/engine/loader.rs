//! Loads an attach point, composes chains into maps with atomic generation switches, reads telemetry.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::lpm_trie::Key;
use aya::maps::{
    Array, DevMap, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues,
    ProgramArray, RingBuf,
};
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramFd, SchedClassifier, TestRun, TestRunOptions, Xdp, XdpMode};
use log::{debug, info};

use super::abi::{
    self, ChainStats, Classifier, CtKey, CtVal, FnStats, FwCfg, FwRule, FwdCfg, GenCfg,
    InstanceCfg, LbBackend, LbCfg, Lpm4Data, Lpm6Data, MonCfg, MonCounter, MonSample, NatCfg,
    NatKey, NatVal, RlCfg, RlKey, RlState, Slot,
};
use super::config::{
    ChainConfig, ClassifierConfig, ForwardMode, ForwarderConfig, FunctionConfig, FunctionKind,
    IpCidr, LbConfig, NatConfig, NatRule, RateLimitKey, RateLimiterConfig,
};
use super::error::{EngineError, Result};
use super::firewall::{self, CompiledFirewall, PrefixBitmaps};
use super::maglev;
use super::objects;
use super::testrun::TestRunner;

/// Name of the entry (classifier) program in both attach points.
const ENTRY: &str = "vnf_entry";
/// Function programs, loaded into every engine.
const FUNCTION_PROGRAMS: &[&str] = &[
    "vnf_firewall",
    "vnf_forwarder",
    "vnf_monitor",
    "vnf_ratelimit",
    "vnf_nat",
    "vnf_lb",
];
/// Time to let in-flight packets of a retired generation drain before its
/// slots are rewritten (an RCU grace period is far shorter).
const GENERATION_GRACE: Duration = Duration::from_millis(50);

/// Which kernel hook the engine's programs are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP (native or generic).
    Xdp,
    /// TC clsact ingress.
    Tc,
}

/// Result of [`Engine::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedChain {
    /// The generation that is now active.
    pub generation: u32,
    /// Instance id of each function, in chain order.
    pub instances: Vec<u32>,
}

/// Where and how the entry program got attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachInfo {
    /// Interface name.
    pub iface: String,
    /// Hook in use.
    pub hook: Hook,
    /// "xdp-native", "xdp-generic" or "tc-ingress".
    pub mode: &'static str,
    /// Why earlier, preferred modes were not used.
    pub fallback_reasons: Vec<String>,
}

/// Output of one `BPF_PROG_TEST_RUN` of the entry program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// Program return value (XDP_* or TC_ACT_*).
    pub retval: u32,
    /// The packet after the chain.
    pub data: Vec<u8>,
    /// Average run time per repetition, as measured by the kernel.
    pub duration: Duration,
}

/// Per-function counters summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionStats {
    /// Packets that entered the function.
    pub packets_in: u64,
    /// Bytes that entered the function.
    pub bytes_in: u64,
    /// Packets passed on (or forwarded).
    pub passed: u64,
    /// Function specific (conntrack hits, samples emitted).
    pub aux: u64,
    /// Drops by reason (index = `abi::reason::*`).
    pub dropped: [u64; abi::NR_REASONS],
    /// log2 ns latency histogram (bucket i = [2^i, 2^(i+1)) ns).
    pub latency_hist: [u64; abi::HIST_BUCKETS],
}

impl FunctionStats {
    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Chain counters of one generation summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainCounters {
    /// Packets that matched the classifier.
    pub classified: u64,
    /// Packets that bypassed the chain.
    pub bypassed: u64,
    /// Packets that left the chain with a verdict.
    pub completed: u64,
    /// Failed tail calls.
    pub broken: u64,
    /// Sampled entry-to-verdict latency, log2 ns buckets.
    pub latency_hist: [u64; abi::HIST_BUCKETS],
}

#[derive(Clone, Debug, Default)]
struct FwKeys {
    v4: Vec<(u32, Lpm4Data, bool)>,
    v6: Vec<(u32, Lpm6Data, bool)>,
}

struct Maps {
    active_gen: Array<MapData, u32>,
    gen_cfg: Array<MapData, GenCfg>,
    slots: Array<MapData, Slot>,
    progs: ProgramArray<MapData>,
    instances: Array<MapData, InstanceCfg>,
    stats: PerCpuArray<MapData, FnStats>,
    chain_stats: PerCpuArray<MapData, ChainStats>,
    fw_cfg: Array<MapData, FwCfg>,
    fw_rules: Array<MapData, FwRule>,
    fw_hits: PerCpuArray<MapData, u64>,
    fw_src4: LpmTrie<MapData, Lpm4Data, u64>,
    fw_dst4: LpmTrie<MapData, Lpm4Data, u64>,
    fw_src6: LpmTrie<MapData, Lpm6Data, u64>,
    fw_dst6: LpmTrie<MapData, Lpm6Data, u64>,
    ct: BpfHashMap<MapData, CtKey, CtVal>,
    fwd_cfg: Array<MapData, FwdCfg>,
    devmap: Option<DevMap<MapData>>,
    mon_cfg: Array<MapData, MonCfg>,
    mon_classes: PerCpuArray<MapData, MonCounter>,
    samples: RingBuf<MapData>,
    rl_cfg: Array<MapData, RlCfg>,
    rl_buckets: BpfHashMap<MapData, RlKey, RlState>,
    nat_cfg: Array<MapData, NatCfg>,
    nat_ct: BpfHashMap<MapData, NatKey, NatVal>,
    lb_cfg: Array<MapData, LbCfg>,
    lb_backends: Array<MapData, LbBackend>,
    lb_maglev: Array<MapData, u32>,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| EngineError::Missing(format!("map {name}")))?;
    T::try_from(map).map_err(EngineError::map(name))
}

impl Maps {
    fn take_all(ebpf: &mut Ebpf, hook: Hook) -> Result<Self> {
        Ok(Self {
            active_gen: take(ebpf, "vnf_active_gen")?,
            gen_cfg: take(ebpf, "vnf_gen_cfg")?,
            slots: take(ebpf, "vnf_slots")?,
            progs: take(ebpf, "vnf_progs")?,
            instances: take(ebpf, "vnf_instances")?,
            stats: take(ebpf, "vnf_stats")?,
            chain_stats: take(ebpf, "vnf_chain_stats")?,
            fw_cfg: take(ebpf, "vnf_fw_cfg")?,
            fw_rules: take(ebpf, "vnf_fw_rules")?,
            fw_hits: take(ebpf, "vnf_fw_hits")?,
            fw_src4: take(ebpf, "vnf_fw_src4")?,
            fw_dst4: take(ebpf, "vnf_fw_dst4")?,
            fw_src6: take(ebpf, "vnf_fw_src6")?,
            fw_dst6: take(ebpf, "vnf_fw_dst6")?,
            ct: take(ebpf, "vnf_ct")?,
            fwd_cfg: take(ebpf, "vnf_fwd_cfg")?,
            devmap: match hook {
                Hook::Xdp => Some(take(ebpf, "vnf_devmap")?),
                Hook::Tc => None,
            },
            mon_cfg: take(ebpf, "vnf_mon_cfg")?,
            mon_classes: take(ebpf, "vnf_mon_classes")?,
            samples: take(ebpf, "vnf_samples")?,
            rl_cfg: take(ebpf, "vnf_rl_cfg")?,
            rl_buckets: take(ebpf, "vnf_rl_buckets")?,
            nat_cfg: take(ebpf, "vnf_nat_cfg")?,
            nat_ct: take(ebpf, "vnf_nat_ct")?,
            lb_cfg: take(ebpf, "vnf_lb_cfg")?,
            lb_backends: take(ebpf, "vnf_lb_backends")?,
            lb_maglev: take(ebpf, "vnf_lb_maglev")?,
        })
    }
}

#[derive(Debug)]
enum Link {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
}

/// A loaded attach point (XDP or TC) with its maps and chain state.
pub struct Engine {
    ebpf: Ebpf,
    hook: Hook,
    maps: Maps,
    prog_fds: HashMap<&'static str, ProgramFd>,
    nr_cpus: usize,
    active: u32,
    /// Instance ids used by each generation.
    generations: [Vec<u32>; 2],
    /// Kinds of live instances.
    live: HashMap<u32, u32>,
    free_ids: BTreeSet<u32>,
    fw_keys: HashMap<u32, FwKeys>,
    last_flip: Option<Instant>,
    /// Attachments, by interface name.
    links: Vec<(String, Link)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("hook", &self.hook)
            .field("active", &self.active)
            .field("generations", &self.generations)
            .finish_non_exhaustive()
    }
}

fn cidr_fields(c: &IpCidr) -> (u8, [u8; 16]) {
    (c.prefix_len(), c.masked_bytes())
}

fn classifier_abi(c: &ClassifierConfig) -> Result<Classifier> {
    let mut out = Classifier::default();
    let mut family = c.family;
    for cidr in [c.src, c.dst].into_iter().flatten() {
        match family {
            Some(f) if f != cidr.family() => {
                return Err(EngineError::Config(format!(
                    "classifier prefix {cidr} does not match IP family {f}"
                )));
            }
            _ => family = Some(cidr.family()),
        }
    }
    if let Some(f) = family {
        if f != 4 && f != 6 {
            return Err(EngineError::Config(format!(
                "IP family must be 4 or 6, got {f}"
            )));
        }
        out.fields |= abi::cls::FAMILY;
        out.family = f;
    }
    if let Some(p) = c.protocol {
        out.fields |= abi::cls::PROTO;
        out.proto = p;
    }
    if let Some(src) = &c.src {
        out.fields |= abi::cls::SRC;
        (out.src_plen, out.src) = cidr_fields(src);
    }
    if let Some(dst) = &c.dst {
        out.fields |= abi::cls::DST;
        (out.dst_plen, out.dst) = cidr_fields(dst);
    }
    if let Some(r) = c.src_ports {
        out.fields |= abi::cls::SPORT;
        (out.sport_lo, out.sport_hi) = (r.lo, r.hi);
    }
    if let Some(r) = c.dst_ports {
        out.fields |= abi::cls::DPORT;
        (out.dport_lo, out.dport_hi) = (r.lo, r.hi);
    }
    if (c.src_ports.is_some() || c.dst_ports.is_some())
        && !matches!(c.protocol, None | Some(6) | Some(17))
    {
        return Err(EngineError::Config(
            "classifier port ranges need protocol TCP (6) or UDP (17)".into(),
        ));
    }
    Ok(out)
}

fn forwarder_abi(c: &ForwarderConfig) -> Result<FwdCfg> {
    let mut out = FwdCfg::default();
    (out.mode, out.ifindex) = match c.mode {
        ForwardMode::Pass => (abi::fwd::PASS, 0),
        ForwardMode::Tx => (abi::fwd::TX, 0),
        ForwardMode::Redirect { ifindex: 0 } => {
            return Err(EngineError::Config(
                "redirect needs a non-zero ifindex".into(),
            ));
        }
        ForwardMode::Redirect { ifindex } => (abi::fwd::REDIRECT, ifindex),
        ForwardMode::Drop => (abi::fwd::DROP, 0),
    };
    if let Some(m) = c.src_mac {
        out.flags |= abi::fwd::F_SMAC;
        out.smac = m;
    }
    if let Some(m) = c.dst_mac {
        out.flags |= abi::fwd::F_DMAC;
        out.dmac = m;
    }
    if c.decrement_ttl {
        out.flags |= abi::fwd::F_DEC_TTL;
    }
    Ok(out)
}

const NS_PER_SEC: u64 = 1_000_000_000;

fn ratelimit_abi(c: &RateLimiterConfig) -> Result<RlCfg> {
    let bad = |m: &str| Err(EngineError::Config(format!("rate limiter: {m}")));
    if c.packets_per_sec.is_none() && c.bytes_per_sec.is_none() {
        return bad("set packets_per_sec and/or bytes_per_sec");
    }
    let mut out = RlCfg {
        key_mode: match c.key {
            RateLimitKey::Global => abi::rl::KEY_GLOBAL,
            RateLimitKey::SourceIp => abi::rl::KEY_SRC,
            RateLimitKey::Flow => abi::rl::KEY_FLOW,
        },
        ..Default::default()
    };
    if let Some(pps) = c.packets_per_sec {
        if pps == 0 || pps > NS_PER_SEC {
            return bad("packets_per_sec must be in 1..=1e9");
        }
        if c.burst_packets == 0 {
            return bad("burst_packets must be at least 1");
        }
        out.pps = pps;
        out.pkt_tau_ns = c
            .burst_packets
            .checked_mul(NS_PER_SEC / pps)
            .ok_or_else(|| EngineError::Config("rate limiter: packet burst too large".into()))?;
    }
    if let Some(bps) = c.bytes_per_sec {
        if bps == 0 {
            return bad("bytes_per_sec must be positive");
        }
        if c.burst_bytes < 64 {
            return bad("burst_bytes must be at least 64");
        }
        out.bps = bps;
        let tau = u128::from(c.burst_bytes) * u128::from(NS_PER_SEC) / u128::from(bps);
        out.byte_tau_ns = u64::try_from(tau)
            .map_err(|_| EngineError::Config("rate limiter: byte burst too large".into()))?;
    }
    Ok(out)
}

fn nat_abi(c: &NatConfig) -> Result<NatCfg> {
    let same_family = |a: IpAddr, b: IpAddr| a.is_ipv4() == b.is_ipv4();
    let mut out = NatCfg {
        timeout_ns: u64::try_from(c.timeout.as_nanos()).unwrap_or(u64::MAX),
        ..Default::default()
    };
    match &c.rule {
        NatRule::Snat {
            match_src,
            to_addr,
            ports,
        } => {
            if !same_family(match_src.addr(), *to_addr) {
                return Err(EngineError::Config(format!(
                    "SNAT {match_src} -> {to_addr}: address families differ"
                )));
            }
            if ports.lo == 0 {
                return Err(EngineError::Config(
                    "SNAT port pool must not include port 0".into(),
                ));
            }
            out.mode = abi::nat::SNAT;
            out.family = match_src.family();
            out.match_plen = match_src.prefix_len();
            out.match_addr = match_src.masked_bytes();
            out.nat_addr = Engine::addr_bytes(*to_addr);
            (out.port_lo, out.port_hi) = (ports.lo, ports.hi);
        }
        NatRule::Dnat {
            match_dst,
            match_port,
            to_addr,
            to_port,
        } => {
            if !same_family(*match_dst, *to_addr) {
                return Err(EngineError::Config(format!(
                    "DNAT {match_dst} -> {to_addr}: address families differ"
                )));
            }
            if *match_port == Some(0) || *to_port == Some(0) {
                return Err(EngineError::Config("DNAT ports must be non-zero".into()));
            }
            out.mode = abi::nat::DNAT;
            out.family = if match_dst.is_ipv4() { 4 } else { 6 };
            out.match_addr = Engine::addr_bytes(*match_dst);
            out.nat_addr = Engine::addr_bytes(*to_addr);
            out.match_port = match_port.unwrap_or(0);
            out.port_lo = to_port.unwrap_or(0);
        }
    }
    Ok(out)
}

/// Per-kind, validated map values of one function.
enum Prepared {
    Firewall(CompiledFirewall),
    Forwarder(FwdCfg),
    Monitor(MonCfg),
    RateLimiter(RlCfg),
    Nat(NatCfg),
    Lb(PreparedLb),
}

/// Validated load-balancer state: config, backends, Maglev table.
struct PreparedLb {
    cfg: LbCfg,
    backends: Vec<LbBackend>,
    table: Vec<u32>,
}

fn lb_abi(c: &LbConfig) -> Result<PreparedLb> {
    let max = abi::LB_MAX_BACKENDS as usize;
    if c.backends.is_empty() || c.backends.len() > max {
        return Err(EngineError::Config(format!(
            "load balancer needs 1..={max} backends, got {}",
            c.backends.len()
        )));
    }
    if !matches!(c.protocol, None | Some(6) | Some(17)) {
        return Err(EngineError::Config(
            "load balancer protocol must be TCP (6) or UDP (17)".into(),
        ));
    }
    if c.port == Some(0) {
        return Err(EngineError::Config(
            "load balancer port must be non-zero".into(),
        ));
    }
    let mut backends = Vec::with_capacity(c.backends.len());
    let mut ids = Vec::with_capacity(c.backends.len());
    for b in &c.backends {
        if b.addr.is_ipv4() != c.vip.is_ipv4() {
            return Err(EngineError::Config(format!(
                "backend {} and VIP {} are of different IP families",
                b.addr, c.vip
            )));
        }
        if b.port == Some(0) {
            return Err(EngineError::Config(format!(
                "backend {}: port must be non-zero",
                b.addr
            )));
        }
        let addr = Engine::addr_bytes(b.addr);
        let port = b.port.unwrap_or(0);
        let mut id = addr.to_vec();
        id.extend_from_slice(&port.to_be_bytes());
        ids.push(id);
        backends.push(LbBackend {
            addr,
            port,
            _pad: [0; 2],
        });
    }
    let table = maglev::populate(&ids, abi::LB_TABLE as usize)?;
    Ok(PreparedLb {
        cfg: LbCfg {
            family: if c.vip.is_ipv4() { 4 } else { 6 },
            proto: c.protocol.unwrap_or(0),
            vip_port: c.port.unwrap_or(0),
            nr_backends: backends.len() as u32,
            affinity_timeout_ns: u64::try_from(c.affinity_timeout.as_nanos()).unwrap_or(u64::MAX),
            vip: Engine::addr_bytes(c.vip),
        },
        backends,
        table,
    })
}

fn prepare(f: &FunctionConfig) -> Result<Prepared> {
    Ok(match &f.kind {
        FunctionKind::Firewall(c) => Prepared::Firewall(firewall::compile(c)?),
        FunctionKind::Forwarder(c) => Prepared::Forwarder(forwarder_abi(c)?),
        FunctionKind::Monitor(c) => Prepared::Monitor(MonCfg {
            sample_rate: c.sample_rate,
            _pad: 0,
        }),
        FunctionKind::RateLimiter(c) => Prepared::RateLimiter(ratelimit_abi(c)?),
        FunctionKind::Nat(c) => Prepared::Nat(nat_abi(c)?),
        FunctionKind::LoadBalancer(c) => Prepared::Lb(lb_abi(c)?),
    })
}

fn lpm4(inst: u32, c: &IpCidr) -> (u32, Lpm4Data) {
    let mut addr = [0u8; 4];
    addr.copy_from_slice(&c.masked_bytes()[..4]);
    (
        32 + u32::from(c.prefix_len()),
        Lpm4Data {
            instance_be: inst.to_be(),
            addr,
        },
    )
}

fn lpm6(inst: u32, c: &IpCidr) -> (u32, Lpm6Data) {
    (
        32 + u32::from(c.prefix_len()),
        Lpm6Data {
            instance_be: inst.to_be(),
            addr: c.masked_bytes(),
        },
    )
}

fn sum_hist(acc: &mut [u64; abi::HIST_BUCKETS], h: &[u64; abi::HIST_BUCKETS]) {
    for (a, b) in acc.iter_mut().zip(h) {
        *a += b;
    }
}

impl Engine {
    /// Loads the attach point for `hook`; the chain starts empty (all traffic bypasses).
    pub fn load(hook: Hook) -> Result<Self> {
        let bytes = match hook {
            Hook::Xdp => objects::XDP_CHAIN,
            Hook::Tc => objects::TC_CHAIN,
        };
        let mut ebpf = Ebpf::load(bytes)?;
        let mut prog_fds = HashMap::new();
        for &name in std::iter::once(&ENTRY).chain(FUNCTION_PROGRAMS) {
            let prog = ebpf
                .program_mut(name)
                .ok_or_else(|| EngineError::Missing(format!("program {name}")))?;
            let fd = match hook {
                Hook::Xdp => {
                    let p: &mut Xdp = prog.try_into().map_err(EngineError::prog(name))?;
                    p.load().map_err(EngineError::prog(name))?;
                    p.fd().map_err(EngineError::prog(name))?.try_clone()?
                }
                Hook::Tc => {
                    let p: &mut SchedClassifier =
                        prog.try_into().map_err(EngineError::prog(name))?;
                    p.load().map_err(EngineError::prog(name))?;
                    p.fd().map_err(EngineError::prog(name))?.try_clone()?
                }
            };
            prog_fds.insert(name, fd);
        }
        let maps = Maps::take_all(&mut ebpf, hook)?;
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, e)| EngineError::Io(e))?;
        info!("loaded {hook:?} attach point ({} programs)", prog_fds.len());
        Ok(Self {
            ebpf,
            hook,
            maps,
            prog_fds,
            nr_cpus,
            active: 0,
            generations: [Vec::new(), Vec::new()],
            live: HashMap::new(),
            free_ids: (1..abi::MAX_INSTANCES).collect(),
            fw_keys: HashMap::new(),
            last_flip: None,
            links: Vec::new(),
        })
    }

    /// The hook this engine was built for.
    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// The active generation.
    pub fn active_generation(&self) -> u32 {
        self.active
    }

    /// Instance ids of the active chain, in order.
    pub fn active_instances(&self) -> &[u32] {
        &self.generations[self.active as usize]
    }

    /// Installs `chain` into the inactive generation, then makes it active
    /// with a single map update.  Packets in flight finish in the old chain.
    pub fn apply(&mut self, chain: &ChainConfig) -> Result<AppliedChain> {
        if chain.functions.len() > abi::MAX_CHAIN as usize {
            return Err(EngineError::Config(format!(
                "chain has {} functions, at most {} are supported",
                chain.functions.len(),
                abi::MAX_CHAIN
            )));
        }
        // validate everything before touching a map
        let cls = classifier_abi(&chain.classifier)?;
        let prepared = chain
            .functions
            .iter()
            .map(prepare)
            .collect::<Result<Vec<_>>>()?;

        let target = 1 - self.active;
        if let Some(t) = self.last_flip {
            let since = t.elapsed();
            if since < GENERATION_GRACE {
                std::thread::sleep(GENERATION_GRACE - since);
            }
        }
        // retire the instances of the generation we are about to overwrite
        for inst in std::mem::take(&mut self.generations[target as usize]) {
            self.release_instance(inst)?;
        }
        if self.free_ids.len() < prepared.len() {
            return Err(EngineError::NoInstanceIds(abi::MAX_INSTANCES - 1));
        }

        let mut instances = Vec::with_capacity(prepared.len());
        for (pos, (f, p)) in chain.functions.iter().zip(&prepared).enumerate() {
            let inst = self
                .free_ids
                .pop_first()
                .ok_or(EngineError::NoInstanceIds(abi::MAX_INSTANCES - 1))?;
            self.generations[target as usize].push(inst);
            let kind = f.kind.abi_kind();
            self.live.insert(inst, kind);
            self.reset_counters(inst)?;
            self.write_function(inst, p)?;
            self.maps
                .instances
                .set(
                    inst,
                    InstanceCfg {
                        kind,
                        latency_sample_rate: f.latency_sample_rate,
                    },
                    0,
                )
                .map_err(EngineError::map("vnf_instances"))?;
            let slot = target * abi::MAX_CHAIN + pos as u32;
            self.maps
                .slots
                .set(
                    slot,
                    Slot {
                        instance: inst,
                        kind,
                    },
                    0,
                )
                .map_err(EngineError::map("vnf_slots"))?;
            let name = f.kind.program_name();
            let fd = self
                .prog_fds
                .get(name)
                .ok_or_else(|| EngineError::Missing(format!("program {name}")))?;
            self.maps
                .progs
                .set(slot, fd, 0)
                .map_err(EngineError::map("vnf_progs"))?;
            debug!(
                "gen {target} pos {pos}: {} = instance {inst} ({name})",
                f.name
            );
            instances.push(inst);
        }
        for pos in prepared.len() as u32..abi::MAX_CHAIN {
            let slot = target * abi::MAX_CHAIN + pos;
            self.maps
                .slots
                .set(slot, Slot::default(), 0)
                .map_err(EngineError::map("vnf_slots"))?;
            match self.maps.progs.clear_index(&slot) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(EngineError::map("vnf_progs")(e)),
            }
        }
        let gen_cfg = GenCfg {
            chain_len: prepared.len() as u32,
            latency_sample_rate: chain.latency_sample_rate,
            cls,
        };
        self.maps
            .gen_cfg
            .set(target, gen_cfg, 0)
            .map_err(EngineError::map("vnf_gen_cfg"))?;
        let mut zero = vec![ChainStats::default(); self.nr_cpus];
        zero.shrink_to_fit();
        self.maps
            .chain_stats
            .set(target, PerCpuValues::try_from(zero)?, 0)
            .map_err(EngineError::map("vnf_chain_stats"))?;

        // the switch: one word
        self.maps
            .active_gen
            .set(0, target, 0)
            .map_err(EngineError::map("vnf_active_gen"))?;
        self.active = target;
        self.last_flip = Some(Instant::now());
        info!(
            "chain generation {target} active: {} functions",
            instances.len()
        );
        Ok(AppliedChain {
            generation: target,
            instances,
        })
    }

    fn write_function(&mut self, inst: u32, p: &Prepared) -> Result<()> {
        match p {
            Prepared::Firewall(fw) => self.write_firewall(inst, fw),
            Prepared::Forwarder(cfg) => {
                if cfg.mode == abi::fwd::REDIRECT
                    && let Some(devmap) = self.maps.devmap.as_mut()
                {
                    devmap.set(inst, cfg.ifindex, None, 0).map_err(|e| {
                        EngineError::Config(format!(
                            "devmap entry for ifindex {}: {e}",
                            cfg.ifindex
                        ))
                    })?;
                }
                self.maps
                    .fwd_cfg
                    .set(inst, cfg, 0)
                    .map_err(EngineError::map("vnf_fwd_cfg"))
            }
            Prepared::Monitor(cfg) => self
                .maps
                .mon_cfg
                .set(inst, cfg, 0)
                .map_err(EngineError::map("vnf_mon_cfg")),
            Prepared::RateLimiter(cfg) => self
                .maps
                .rl_cfg
                .set(inst, cfg, 0)
                .map_err(EngineError::map("vnf_rl_cfg")),
            Prepared::Nat(cfg) => self
                .maps
                .nat_cfg
                .set(inst, cfg, 0)
                .map_err(EngineError::map("vnf_nat_cfg")),
            Prepared::Lb(lb) => self.write_lb(inst, lb),
        }
    }

    fn write_firewall(&mut self, inst: u32, fw: &CompiledFirewall) -> Result<()> {
        let base = inst * abi::FW_MAX_RULES;
        for i in 0..abi::FW_MAX_RULES {
            let rule = fw.rules.get(i as usize).copied().unwrap_or_default();
            self.maps
                .fw_rules
                .set(base + i, rule, 0)
                .map_err(EngineError::map("vnf_fw_rules"))?;
        }
        let mut keys = FwKeys::default();
        let put4 = |trie: &mut LpmTrie<MapData, Lpm4Data, u64>,
                    list: &PrefixBitmaps,
                    dst: bool,
                    keys: &mut FwKeys,
                    name|
         -> Result<()> {
            for (c, bits) in list {
                let (plen, data) = lpm4(inst, c);
                trie.insert(&Key::new(plen, data), bits, 0)
                    .map_err(EngineError::map(name))?;
                keys.v4.push((plen, data, dst));
            }
            Ok(())
        };
        put4(
            &mut self.maps.fw_src4,
            &fw.src4,
            false,
            &mut keys,
            "vnf_fw_src4",
        )?;
        put4(
            &mut self.maps.fw_dst4,
            &fw.dst4,
            true,
            &mut keys,
            "vnf_fw_dst4",
        )?;
        let put6 = |trie: &mut LpmTrie<MapData, Lpm6Data, u64>,
                    list: &PrefixBitmaps,
                    dst: bool,
                    keys: &mut FwKeys,
                    name|
         -> Result<()> {
            for (c, bits) in list {
                let (plen, data) = lpm6(inst, c);
                trie.insert(&Key::new(plen, data), bits, 0)
                    .map_err(EngineError::map(name))?;
                keys.v6.push((plen, data, dst));
            }
            Ok(())
        };
        put6(
            &mut self.maps.fw_src6,
            &fw.src6,
            false,
            &mut keys,
            "vnf_fw_src6",
        )?;
        put6(
            &mut self.maps.fw_dst6,
            &fw.dst6,
            true,
            &mut keys,
            "vnf_fw_dst6",
        )?;

        // remove prefixes of the previous rule set that are not in the new one
        if let Some(old) = self.fw_keys.remove(&inst) {
            for (plen, data, dst) in old.v4 {
                if !keys.v4.contains(&(plen, data, dst)) {
                    let trie = if dst {
                        &mut self.maps.fw_dst4
                    } else {
                        &mut self.maps.fw_src4
                    };
                    ignore_missing(trie.remove(&Key::new(plen, data)), "vnf_fw_lpm4")?;
                }
            }
            for (plen, data, dst) in old.v6 {
                if !keys.v6.contains(&(plen, data, dst)) {
                    let trie = if dst {
                        &mut self.maps.fw_dst6
                    } else {
                        &mut self.maps.fw_src6
                    };
                    ignore_missing(trie.remove(&Key::new(plen, data)), "vnf_fw_lpm6")?;
                }
            }
        }
        self.fw_keys.insert(inst, keys);
        self.maps
            .fw_cfg
            .set(inst, fw.cfg, 0)
            .map_err(EngineError::map("vnf_fw_cfg"))
    }

    /// Writes backends, then the Maglev table, then the config: every state
    /// in between only maps table slots to valid backends.
    fn write_lb(&mut self, inst: u32, lb: &PreparedLb) -> Result<()> {
        let base = inst * abi::LB_MAX_BACKENDS;
        for (i, b) in lb.backends.iter().enumerate() {
            self.maps
                .lb_backends
                .set(base + i as u32, b, 0)
                .map_err(EngineError::map("vnf_lb_backends"))?;
        }
        let tbase = inst * abi::LB_TABLE;
        for (slot, b) in lb.table.iter().enumerate() {
            self.maps
                .lb_maglev
                .set(tbase + slot as u32, b, 0)
                .map_err(EngineError::map("vnf_lb_maglev"))?;
        }
        self.maps
            .lb_cfg
            .set(inst, lb.cfg, 0)
            .map_err(EngineError::map("vnf_lb_cfg"))
    }

    /// Replaces the backends of a live load-balancer instance in place.
    /// Established flows keep their backend (affinity); new flows use the
    /// new Maglev table.
    pub fn update_load_balancer(&mut self, instance: u32, lb: &LbConfig) -> Result<()> {
        if self.live.get(&instance) != Some(&abi::kind::LB) {
            return Err(EngineError::UnknownInstance(instance));
        }
        let prepared = lb_abi(lb)?;
        self.write_lb(instance, &prepared)
    }

    /// Replaces the rules of a live firewall instance in place (map updates
    /// only; packets see either the old or the new entry of each prefix).
    /// Use [`Engine::apply`] for an atomic switch.
    pub fn update_firewall(
        &mut self,
        instance: u32,
        fw: &super::config::FirewallConfig,
    ) -> Result<()> {
        if self.live.get(&instance) != Some(&abi::kind::FIREWALL) {
            return Err(EngineError::UnknownInstance(instance));
        }
        let compiled = firewall::compile(fw)?;
        self.write_firewall(instance, &compiled)
    }

    fn reset_counters(&mut self, inst: u32) -> Result<()> {
        let n = self.nr_cpus;
        self.maps
            .stats
            .set(
                inst,
                PerCpuValues::try_from(vec![FnStats::default(); n])?,
                0,
            )
            .map_err(EngineError::map("vnf_stats"))?;
        for i in 0..abi::FW_MAX_RULES {
            self.maps
                .fw_hits
                .set(
                    inst * abi::FW_MAX_RULES + i,
                    PerCpuValues::try_from(vec![0u64; n])?,
                    0,
                )
                .map_err(EngineError::map("vnf_fw_hits"))?;
        }
        for c in 0..abi::MON_CLASSES {
            self.maps
                .mon_classes
                .set(
                    inst * abi::MON_CLASSES + c,
                    PerCpuValues::try_from(vec![MonCounter::default(); n])?,
                    0,
                )
                .map_err(EngineError::map("vnf_mon_classes"))?;
        }
        Ok(())
    }

    /// Frees an instance id and removes all of its state.
    fn release_instance(&mut self, inst: u32) -> Result<()> {
        self.live.remove(&inst);
        self.maps
            .instances
            .set(inst, InstanceCfg::default(), 0)
            .map_err(EngineError::map("vnf_instances"))?;
        if let Some(old) = self.fw_keys.remove(&inst) {
            for (plen, data, dst) in old.v4 {
                let trie = if dst {
                    &mut self.maps.fw_dst4
                } else {
                    &mut self.maps.fw_src4
                };
                ignore_missing(trie.remove(&Key::new(plen, data)), "vnf_fw_lpm4")?;
            }
            for (plen, data, dst) in old.v6 {
                let trie = if dst {
                    &mut self.maps.fw_dst6
                } else {
                    &mut self.maps.fw_src6
                };
                ignore_missing(trie.remove(&Key::new(plen, data)), "vnf_fw_lpm6")?;
            }
        }
        let ct_keys: Vec<CtKey> = self
            .maps
            .ct
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == inst)
            .collect();
        for k in ct_keys {
            ignore_missing(self.maps.ct.remove(&k), "vnf_ct")?;
        }
        let rl_keys: Vec<RlKey> = self
            .maps
            .rl_buckets
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == inst)
            .collect();
        for k in rl_keys {
            ignore_missing(self.maps.rl_buckets.remove(&k), "vnf_rl_buckets")?;
        }
        let nat_keys: Vec<NatKey> = self
            .maps
            .nat_ct
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == inst)
            .collect();
        for k in nat_keys {
            ignore_missing(self.maps.nat_ct.remove(&k), "vnf_nat_ct")?;
        }
        self.free_ids.insert(inst);
        Ok(())
    }

    /// Counters of one function instance, summed over CPUs.
    pub fn function_stats(&self, instance: u32) -> Result<FunctionStats> {
        let per_cpu = self
            .maps
            .stats
            .get(&instance, 0)
            .map_err(EngineError::map("vnf_stats"))?;
        let mut s = FunctionStats::default();
        for v in per_cpu.iter() {
            s.packets_in += v.pkts_in;
            s.bytes_in += v.bytes_in;
            s.passed += v.passed;
            s.aux += v.aux;
            for (a, b) in s.dropped.iter_mut().zip(&v.dropped) {
                *a += b;
            }
            sum_hist(&mut s.latency_hist, &v.latency_hist);
        }
        Ok(s)
    }

    /// Chain counters of a generation, summed over CPUs.
    pub fn chain_counters(&self, generation: u32) -> Result<ChainCounters> {
        let per_cpu = self
            .maps
            .chain_stats
            .get(&(generation & 1), 0)
            .map_err(EngineError::map("vnf_chain_stats"))?;
        let mut c = ChainCounters::default();
        for v in per_cpu.iter() {
            c.classified += v.classified;
            c.bypassed += v.bypassed;
            c.completed += v.completed;
            c.broken += v.broken;
            sum_hist(&mut c.latency_hist, &v.latency_hist);
        }
        Ok(c)
    }

    /// Hit counters of a firewall instance's rules, in priority order.
    pub fn firewall_rule_hits(&self, instance: u32) -> Result<Vec<u64>> {
        let n = self
            .maps
            .fw_cfg
            .get(&instance, 0)
            .map_err(EngineError::map("vnf_fw_cfg"))?
            .nr_rules;
        (0..n.min(abi::FW_MAX_RULES))
            .map(|i| {
                self.maps
                    .fw_hits
                    .get(&(instance * abi::FW_MAX_RULES + i), 0)
                    .map(|v| v.iter().sum())
                    .map_err(EngineError::map("vnf_fw_hits"))
            })
            .collect()
    }

    /// Per-class counters of a monitor instance (index = `abi::mon::*`).
    pub fn monitor_classes(&self, instance: u32) -> Result<Vec<MonCounter>> {
        (0..abi::MON_CLASSES)
            .map(|c| {
                self.maps
                    .mon_classes
                    .get(&(instance * abi::MON_CLASSES + c), 0)
                    .map(|v| {
                        v.iter().fold(MonCounter::default(), |a, b| MonCounter {
                            packets: a.packets + b.packets,
                            bytes: a.bytes + b.bytes,
                        })
                    })
                    .map_err(EngineError::map("vnf_mon_classes"))
            })
            .collect()
    }

    /// Drains the monitor ring buffer.
    pub fn drain_samples(&mut self) -> Vec<MonSample> {
        let mut out = Vec::new();
        while let Some(item) = self.maps.samples.next() {
            if let Some(s) = MonSample::from_bytes(&item) {
                out.push(s);
            }
        }
        out
    }

    /// Translation entries (one per flow direction) of a NAT instance.
    pub fn nat_entries(&self, instance: u32) -> usize {
        self.maps
            .nat_ct
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == instance)
            .count()
    }

    /// Number of tracked connections of a firewall instance.
    pub fn conntrack_entries(&self, instance: u32) -> usize {
        self.maps
            .ct
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == instance)
            .count()
    }

    /// Runs the entry program once per repetition on `packet` with
    /// `BPF_PROG_TEST_RUN` (tail calls included) and returns the last result.
    pub fn test_run(&self, packet: &[u8], repeat: u32) -> Result<TestRunOutcome> {
        let mut out = vec![0u8; packet.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            repeat: repeat.max(1),
            ..TestRunOptions::default()
        };
        let prog = self
            .ebpf
            .program(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?;
        let res = match self.hook {
            Hook::Xdp => {
                let p: &Xdp = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                p.test_run(opts).map_err(EngineError::prog(ENTRY))?
            }
            Hook::Tc => {
                let p: &SchedClassifier = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                p.test_run(opts).map_err(EngineError::prog(ENTRY))?
            }
        };
        out.truncate(res.data_size_out as usize);
        Ok(TestRunOutcome {
            retval: res.return_value,
            data: out,
            duration: res.duration,
        })
    }

    /// A thread-safe runner for the entry program (see [`TestRunner`]).
    pub fn test_runner(&self) -> Result<TestRunner> {
        let fd = self
            .prog_fds
            .get(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?
            .as_fd()
            .try_clone_to_owned()?;
        Ok(TestRunner::new(fd))
    }

    /// Attaches the entry program to `iface`: XDP native, else XDP generic
    /// (XDP engine), or TC clsact ingress (TC engine).  One engine may be
    /// attached to several interfaces; they then share chain and state (both
    /// directions of a NAT/LB flow must pass the same engine).
    pub fn attach(&mut self, iface: &str) -> Result<AttachInfo> {
        if self.links.iter().any(|(name, _)| name == iface) {
            return Err(EngineError::Config(format!("already attached to {iface}")));
        }
        let prog = self
            .ebpf
            .program_mut(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?;
        let mut reasons = Vec::new();
        match self.hook {
            Hook::Xdp => {
                let p: &mut Xdp = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                for (mode, label) in [
                    (XdpMode::Driver, "xdp-native"),
                    (XdpMode::Skb, "xdp-generic"),
                ] {
                    match p.attach(iface, mode) {
                        Ok(id) => {
                            self.links.push((iface.to_string(), Link::Xdp(id)));
                            return Ok(AttachInfo {
                                iface: iface.into(),
                                hook: Hook::Xdp,
                                mode: label,
                                fallback_reasons: reasons,
                            });
                        }
                        Err(e) => reasons.push(format!("{label}: {}", error_chain(&e))),
                    }
                }
            }
            Hook::Tc => {
                let p: &mut SchedClassifier = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                if let Err(e) = tc::qdisc_add_clsact(iface) {
                    debug!("clsact on {iface}: {e} (may already exist)");
                }
                match p.attach(iface, TcAttachType::Ingress) {
                    Ok(id) => {
                        self.links.push((iface.to_string(), Link::Tc(id)));
                        return Ok(AttachInfo {
                            iface: iface.into(),
                            hook: Hook::Tc,
                            mode: "tc-ingress",
                            fallback_reasons: reasons,
                        });
                    }
                    Err(e) => reasons.push(format!("tc-ingress: {}", error_chain(&e))),
                }
            }
        }
        Err(EngineError::Attach {
            iface: iface.into(),
            reasons: reasons.join("; "),
        })
    }

    /// Interfaces the engine is attached to.
    pub fn attached_interfaces(&self) -> Vec<&str> {
        self.links.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Detaches the entry program from every interface (also happens when
    /// the engine is dropped).
    pub fn detach(&mut self) -> Result<()> {
        while let Some((_, link)) = self.links.pop() {
            let prog = self
                .ebpf
                .program_mut(ENTRY)
                .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?;
            match link {
                Link::Xdp(id) => {
                    let p: &mut Xdp = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                    p.detach(id).map_err(EngineError::prog(ENTRY))?;
                }
                Link::Tc(id) => {
                    let p: &mut SchedClassifier =
                        prog.try_into().map_err(EngineError::prog(ENTRY))?;
                    p.detach(id).map_err(EngineError::prog(ENTRY))?;
                }
            }
        }
        Ok(())
    }

    /// Loads the XDP engine and attaches it (native, then generic); if XDP
    /// cannot attach, loads the TC engine instead.  The reasons for every
    /// rejected mode are recorded in the returned [`AttachInfo`].
    pub fn load_and_attach(iface: &str) -> Result<(Self, AttachInfo)> {
        let mut reasons = Vec::new();
        match Self::load(Hook::Xdp) {
            Ok(mut e) => match e.attach(iface) {
                Ok(info) => return Ok((e, info)),
                Err(err) => reasons.push(err.to_string()),
            },
            Err(err) => reasons.push(format!("xdp load: {err}")),
        }
        let mut e = Self::load(Hook::Tc)?;
        let mut info = match e.attach(iface) {
            Ok(info) => info,
            Err(EngineError::Attach { reasons: tc, .. }) => {
                reasons.push(tc);
                return Err(EngineError::Attach {
                    iface: iface.into(),
                    reasons: reasons.join("; "),
                });
            }
            Err(other) => return Err(other),
        };
        reasons.append(&mut info.fallback_reasons);
        info.fallback_reasons = reasons;
        Ok((e, info))
    }

    /// Bytes of an address as stored in tuples (IPv4 in the first four).
    pub fn addr_bytes(addr: IpAddr) -> [u8; 16] {
        let mut out = [0u8; 16];
        match addr {
            IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
        }
        out
    }
}

fn ignore_missing(
    r: std::result::Result<(), aya::maps::MapError>,
    name: &'static str,
) -> Result<()> {
    match r {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(e) => Err(EngineError::map(name)(e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::PortRange;

    #[test]
    fn classifier_encoding() {
        let c = ClassifierConfig {
            protocol: Some(17),
            dst: Some("10.0.0.0/8".parse().expect("cidr")),
            dst_ports: Some(PortRange::new(53, 53).expect("range")),
            ..Default::default()
        };
        let a = classifier_abi(&c).expect("valid");
        assert_eq!(
            a.fields,
            abi::cls::FAMILY | abi::cls::PROTO | abi::cls::DST | abi::cls::DPORT
        );
        assert_eq!((a.family, a.proto, a.dst_plen, a.dst[0]), (4, 17, 8, 10));
        assert_eq!((a.dport_lo, a.dport_hi), (53, 53));
        let mixed = ClassifierConfig {
            family: Some(6),
            src: Some("10.0.0.0/8".parse().expect("cidr")),
            ..Default::default()
        };
        assert!(classifier_abi(&mixed).is_err());
        assert_eq!(
            classifier_abi(&ClassifierConfig::default())
                .expect("valid")
                .fields,
            0
        );
    }

    #[test]
    fn ratelimit_encoding() {
        let c = RateLimiterConfig {
            packets_per_sec: Some(1000),
            burst_packets: 10,
            bytes_per_sec: Some(1_000_000),
            burst_bytes: 15_000,
            ..Default::default()
        };
        let a = ratelimit_abi(&c).expect("valid");
        assert_eq!(a.pkt_tau_ns, 10 * 1_000_000);
        assert_eq!(a.byte_tau_ns, 15_000_000);
        assert!(ratelimit_abi(&RateLimiterConfig::default()).is_err());
        let no_burst = RateLimiterConfig {
            packets_per_sec: Some(5),
            ..Default::default()
        };
        assert!(ratelimit_abi(&no_burst).is_err());
    }
}
