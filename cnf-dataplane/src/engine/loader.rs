//! Loads an attach point, composes chains into maps with atomic generation switches, reads telemetry.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::Key;
use aya::maps::{
    Array, DevMap, HashMap as BpfHashMap, IterableMap, LpmTrie, MapData, PerCpuArray,
    PerCpuHashMap, PerCpuValues, ProgramArray, RingBuf, XskMap,
};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::SchedClassifierLink;
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use aya::programs::xdp::XdpLink;
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramFd, SchedClassifier, TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use log::{debug, info};

use super::abi::{
    self, ChainStats, Classifier, CtKey, CtVal, FnStats, FwBm, FwCfg, FwPortSeg, FwdCfg, GenCfg,
    InstanceCfg, LbBackend, LbCfg, Lpm4Data, Lpm6Data, MonCfg, MonCounter, MonKey, MonSample,
    NatCfg, NatDnatKey, NatDnatVal, NatKey, NatVal, PortRangeAbi, RlCfg, RlKey, RlState, Slot,
};
use super::batch;
use super::config::{
    ChainConfig, ClassifierConfig, CountBy, ForwardMode, ForwarderConfig, FunctionConfig,
    FunctionKind, IpCidr, LbConfig, MAX_CLASSIFIER_CIDRS, MAX_DNAT, MAX_MAGLEV_TABLE, NatConfig,
    NatRule, PortRange, RateLimitKey, RateLimiterConfig,
};
use super::control::{self, ControlPlan, CtlCfg, CtlKey};
use super::error::{EngineError, Result};
use super::firewall::{self, CompiledFirewall};
use super::maglev;
use super::objects;
use super::pin::{self, RecordMap, pin_err};
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
    "vnf_userspace",
];
/// Time to let in-flight packets of a retired generation drain before its
/// slots are rewritten. A packet runs the whole chain inside one NAPI poll
/// (or one TC invocation), microseconds; an RCU grace period, after which no
/// CPU can still be inside the old generation, is a few milliseconds. Only
/// applies closer together than this wait.
const GENERATION_GRACE: Duration = Duration::from_millis(10);

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

/// Which XDP mode [`Engine::attach_with`] may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (driver) mode, else generic (skb) mode.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic mode only.
    Generic,
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
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    /// Adds `other`, field by field (a carried offset plus the live counters).
    pub fn add(&mut self, other: &FunctionStats) {
        self.packets_in += other.packets_in;
        self.bytes_in += other.bytes_in;
        self.passed += other.passed;
        self.aux += other.aux;
        for (a, b) in self.dropped.iter_mut().zip(&other.dropped) {
            *a += b;
        }
        sum_hist(&mut self.latency_hist, &other.latency_hist);
    }
}

/// Chain counters summed over CPUs: of one generation ([`Engine::chain_counters`]) or of the chain's
/// whole life ([`Engine::chain_totals`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Packets passed as the pod's own control-plane traffic before the classifier
    /// (`ebpf/lib/control.h`); not kept per generation, so only [`Engine::chain_totals`] fills it.
    #[serde(default)]
    pub control_plane: u64,
}

impl ChainCounters {
    /// `self - base`, field by field (saturating).
    fn since(&self, base: &ChainCounters) -> ChainCounters {
        let mut out = ChainCounters {
            classified: self.classified.saturating_sub(base.classified),
            bypassed: self.bypassed.saturating_sub(base.bypassed),
            completed: self.completed.saturating_sub(base.completed),
            broken: self.broken.saturating_sub(base.broken),
            latency_hist: [0; abi::HIST_BUCKETS],
            control_plane: self.control_plane.saturating_sub(base.control_plane),
        };
        for ((o, a), b) in out
            .latency_hist
            .iter_mut()
            .zip(&self.latency_hist)
            .zip(&base.latency_hist)
        {
            *o = a.saturating_sub(*b);
        }
        out
    }

    /// Adds `other`, field by field.
    fn add(&mut self, other: &ChainCounters) {
        self.classified += other.classified;
        self.bypassed += other.bypassed;
        self.completed += other.completed;
        self.broken += other.broken;
        self.control_plane += other.control_plane;
        sum_hist(&mut self.latency_hist, &other.latency_hist);
    }
}

/// Prefixes of one classifier generation, one firewall instance or one NAT instance's SNAT rule,
/// as written into their LPM tries (`bool` = destination trie).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct PrefixKeys {
    v4: Vec<(u32, Lpm4Data, bool)>,
    v6: Vec<(u32, Lpm6Data, bool)>,
}

struct Maps {
    active_gen: Array<MapData, u32>,
    gen_cfg: Array<MapData, GenCfg>,
    gen_flags: Array<MapData, u32>,
    slots: Array<MapData, Slot>,
    progs: ProgramArray<MapData>,
    instances: Array<MapData, InstanceCfg>,
    stats: PerCpuArray<MapData, FnStats>,
    chain_stats: PerCpuArray<MapData, ChainStats>,
    fw_cfg: Array<MapData, FwCfg>,
    fw_actions: Array<MapData, u32>,
    fw_hits: PerCpuArray<MapData, u64>,
    fw_words: Array<MapData, u64>,
    fw_proto: Array<MapData, FwBm>,
    fw_ports: Array<MapData, FwPortSeg>,
    fw_src4: LpmTrie<MapData, Lpm4Data, FwBm>,
    fw_dst4: LpmTrie<MapData, Lpm4Data, FwBm>,
    fw_src6: LpmTrie<MapData, Lpm6Data, FwBm>,
    fw_dst6: LpmTrie<MapData, Lpm6Data, FwBm>,
    ct: BpfHashMap<MapData, CtKey, CtVal>,
    fwd_cfg: Array<MapData, FwdCfg>,
    devmap: Option<DevMap<MapData>>,
    xsks: Option<XskMap<MapData>>,
    /// XDP: per-interface flags (key ifindex), [`abi::IF_F_XDP_GENERIC`].
    if_flags: Option<BpfHashMap<MapData, u32, u32>>,
    mon_cfg: Array<MapData, MonCfg>,
    mon_classes: PerCpuArray<MapData, MonCounter>,
    samples: RingBuf<MapData>,
    rl_cfg: Array<MapData, RlCfg>,
    rl_buckets: BpfHashMap<MapData, RlKey, RlState>,
    rl_global: Array<MapData, RlState>,
    nat_cfg: Array<MapData, NatCfg>,
    nat_ct: BpfHashMap<MapData, NatKey, NatVal>,
    lb_cfg: Array<MapData, LbCfg>,
    lb_backends: Array<MapData, LbBackend>,
    lb_maglev: Array<MapData, u32>,
    cls_src4: LpmTrie<MapData, Lpm4Data, u32>,
    cls_dst4: LpmTrie<MapData, Lpm4Data, u32>,
    cls_src6: LpmTrie<MapData, Lpm6Data, u32>,
    cls_dst6: LpmTrie<MapData, Lpm6Data, u32>,
    mon_keyed: PerCpuHashMap<MapData, MonKey, MonCounter>,
    nat_dnat: BpfHashMap<MapData, NatDnatKey, NatDnatVal>,
    nat_src4: LpmTrie<MapData, Lpm4Data, u32>,
    nat_src6: LpmTrie<MapData, Lpm6Data, u32>,
    /// The control-plane allow (`ebpf/lib/control.h`).
    ctl_cfg: Array<MapData, CtlCfg>,
    ctl_endpoints: BpfHashMap<MapData, CtlKey, u32>,
    ctl_stats: PerCpuArray<MapData, u64>,
}

/// Every map of an attach point (the XDP one has two more), as pinned in a kept chain's directory.
fn map_names(hook: Hook) -> Vec<&'static str> {
    let mut names = vec![
        "vnf_active_gen",
        "vnf_gen_cfg",
        "vnf_slots",
        "vnf_progs",
        "vnf_instances",
        "vnf_stats",
        "vnf_chain_stats",
        "vnf_fw_cfg",
        "vnf_fw_actions",
        "vnf_fw_hits",
        "vnf_fw_words",
        "vnf_fw_proto",
        "vnf_fw_ports",
        "vnf_fw_src4",
        "vnf_fw_dst4",
        "vnf_fw_src6",
        "vnf_fw_dst6",
        "vnf_ct",
        "vnf_fwd_cfg",
        "vnf_mon_cfg",
        "vnf_mon_classes",
        "vnf_samples",
        "vnf_rl_cfg",
        "vnf_rl_buckets",
        "vnf_rl_global",
        "vnf_nat_cfg",
        "vnf_nat_ct",
        "vnf_lb_cfg",
        "vnf_lb_backends",
        "vnf_lb_maglev",
        "vnf_cls_src4",
        "vnf_cls_dst4",
        "vnf_cls_src6",
        "vnf_cls_dst6",
        "vnf_mon_keyed",
        "vnf_nat_dnat",
        "vnf_nat_src4",
        "vnf_nat_src6",
        "vnf_gen_flags",
        "vnf_replies",
        // the first fragments seen: a re-adopted chain keeps passing the rest of their datagrams
        "vnf_frags",
        // fragments parked until their first fragment arrives (TC; ebpf/lib/fragpark.h)
        "vnf_frag_pend",
        "vnf_frag_park",
        "vnf_park_buf",
        // per-CPU state handed from one tail call to the next: while a re-adoption switches
        // programs, the old entry's packets continue in the new functions through these
        "vnf_scratch",
        "vnf_parsed",
        "vnf_ctl_cfg",
        "vnf_ctl_endpoints",
        "vnf_ctl_stats",
    ];
    if hook == Hook::Xdp {
        names.extend(["vnf_devmap", "vnf_xsks", "vnf_if_flags"]);
        names.push("vnf_frag_events"); // h-xdpfrag: first fragments with parked followers
    }
    names
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
            gen_flags: take(ebpf, "vnf_gen_flags")?,
            slots: take(ebpf, "vnf_slots")?,
            progs: take(ebpf, "vnf_progs")?,
            instances: take(ebpf, "vnf_instances")?,
            stats: take(ebpf, "vnf_stats")?,
            chain_stats: take(ebpf, "vnf_chain_stats")?,
            fw_cfg: take(ebpf, "vnf_fw_cfg")?,
            fw_actions: take(ebpf, "vnf_fw_actions")?,
            fw_hits: take(ebpf, "vnf_fw_hits")?,
            fw_words: take(ebpf, "vnf_fw_words")?,
            fw_proto: take(ebpf, "vnf_fw_proto")?,
            fw_ports: take(ebpf, "vnf_fw_ports")?,
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
            xsks: match hook {
                Hook::Xdp => Some(take(ebpf, "vnf_xsks")?),
                Hook::Tc => None,
            },
            if_flags: match hook {
                Hook::Xdp => Some(take(ebpf, "vnf_if_flags")?),
                Hook::Tc => None,
            },
            mon_cfg: take(ebpf, "vnf_mon_cfg")?,
            mon_classes: take(ebpf, "vnf_mon_classes")?,
            samples: take(ebpf, "vnf_samples")?,
            rl_cfg: take(ebpf, "vnf_rl_cfg")?,
            rl_buckets: take(ebpf, "vnf_rl_buckets")?,
            rl_global: take(ebpf, "vnf_rl_global")?,
            nat_cfg: take(ebpf, "vnf_nat_cfg")?,
            nat_ct: take(ebpf, "vnf_nat_ct")?,
            lb_cfg: take(ebpf, "vnf_lb_cfg")?,
            lb_backends: take(ebpf, "vnf_lb_backends")?,
            lb_maglev: take(ebpf, "vnf_lb_maglev")?,
            cls_src4: take(ebpf, "vnf_cls_src4")?,
            cls_dst4: take(ebpf, "vnf_cls_dst4")?,
            cls_src6: take(ebpf, "vnf_cls_src6")?,
            cls_dst6: take(ebpf, "vnf_cls_dst6")?,
            mon_keyed: take(ebpf, "vnf_mon_keyed")?,
            nat_dnat: take(ebpf, "vnf_nat_dnat")?,
            nat_src4: take(ebpf, "vnf_nat_src4")?,
            nat_src6: take(ebpf, "vnf_nat_src6")?,
            ctl_cfg: take(ebpf, "vnf_ctl_cfg")?,
            ctl_endpoints: take(ebpf, "vnf_ctl_endpoints")?,
            ctl_stats: take(ebpf, "vnf_ctl_stats")?,
        })
    }
}

#[derive(Debug)]
enum Link {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
    /// A link pinned in the kept chain's directory: it stays attached without this process.
    Pinned {
        link: FdLink,
        path: PathBuf,
    },
}

/// The pin directory of a kept chain (see [`Engine::load_kept`]).
struct Pins {
    dir: PathBuf,
    /// The state record.
    record: RecordMap,
    /// The program array of a chain this engine replaces (pins of an unusable record): held until
    /// the links run the new entry program, so the old chain keeps its tail calls until then.
    held: Option<MapData>,
    /// Whether dropping the engine without [`Engine::keep`] detaches and removes the pins (a failed
    /// start leaves nothing behind; an adoption that failed leaves the old chain running).
    armed: bool,
}

/// The engine's bookkeeping as written into a kept chain's state record.
#[derive(serde::Serialize, serde::Deserialize)]
struct EngineState {
    active: u32,
    generations: [Vec<u32>; 2],
    live: Vec<(u32, u32)>,
    names: Vec<(u32, String, u32)>,
    state_of: Vec<(u32, u32)>,
    state_refs: Vec<(u32, u32)>,
    free_ids: Vec<u32>,
    fw_keys: Vec<(u32, PrefixKeys)>,
    fw_priorities: Vec<(u32, Vec<u32>)>,
    fw_regions: Vec<(u32, [(u32, u32); 3])>,
    cls_keys: [PrefixKeys; 2],
    nat_keys: Vec<(u32, PrefixKeys, Vec<NatDnatKey>)>,
    lb_regions: Vec<(u32, (u32, u32))>,
    /// Raw counters of each generation's slot when it was last activated.
    #[serde(default)]
    gen_base: [ChainCounters; 2],
}

/// One kept attachment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct LinkRecord {
    iface: String,
    mode: String,
}

/// The state record of a kept chain, read with [`Engine::read_record`] and handed to
/// [`Engine::adopt`].
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PinnedRecord {
    build: String,
    hook: String,
    links: Vec<LinkRecord>,
    engine: EngineState,
    /// What the owner (the daemon) stored with the chain ([`Engine::save_record`]).
    pub owner: String,
}

impl PinnedRecord {
    /// The hook the kept chain runs on.
    pub fn hook(&self) -> Hook {
        if self.hook == "tc" {
            Hook::Tc
        } else {
            Hook::Xdp
        }
    }

    /// The kept chain's active generation (0 or 1).
    pub fn active_generation(&self) -> u32 {
        self.engine.active
    }
}

fn hook_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Xdp => "xdp",
        Hook::Tc => "tc",
    }
}

fn mode_label(mode: &str) -> Option<&'static str> {
    ["xdp-native", "xdp-generic", "tc-ingress"]
        .into_iter()
        .find(|m| *m == mode)
}

/// The program that runs function kind `kind`.
fn program_of_kind(kind: u32) -> Option<&'static str> {
    Some(match kind {
        abi::kind::FIREWALL => "vnf_firewall",
        abi::kind::FORWARDER => "vnf_forwarder",
        abi::kind::MONITOR => "vnf_monitor",
        abi::kind::RATELIMIT => "vnf_ratelimit",
        abi::kind::NAT => "vnf_nat",
        abi::kind::LB => "vnf_lb",
        abi::kind::USERSPACE => "vnf_userspace",
        _ => return None,
    })
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
    /// Name and state class of each live instance (a function keeping name, kind and
    /// state class keeps its state).
    names: HashMap<u32, (String, u32)>,
    /// State id of each live instance (see `state` in `struct vnf_instance_cfg`).
    state_of: HashMap<u32, u32>,
    /// Live instances using each state id; an id is free only when neither an
    /// instance nor a state holds it.
    state_refs: HashMap<u32, u32>,
    /// Configuration of each live instance (an unchanged function keeps its instance).
    fn_cfg: HashMap<u32, FunctionConfig>,
    free_ids: BTreeSet<u32>,
    fw_keys: HashMap<u32, PrefixKeys>,
    /// Rule priorities of each firewall instance, in evaluation order.
    fw_priorities: HashMap<u32, Vec<u32>>,
    /// Pool regions (offset, length) of each firewall instance: rules, words, port segments.
    fw_regions: HashMap<u32, [(u32, u32); 3]>,
    /// Classifier prefixes written for each generation.
    cls_keys: [PrefixKeys; 2],
    /// SNAT prefixes and DNAT keys written for each NAT instance.
    nat_keys: HashMap<u32, (PrefixKeys, Vec<NatDnatKey>)>,
    /// Maglev pool region (offset, size) of each load-balancer instance.
    lb_regions: HashMap<u32, (u32, u32)>,
    last_flip: Option<Instant>,
    /// Raw counters of each generation's slot when it was last activated: the kernel's chain counters
    /// are never zeroed (exported totals never go back), per-generation counts subtract this.
    gen_base: [ChainCounters; 2],
    /// Attachments, by interface name.
    links: Vec<(String, Link)>,
    /// Attach mode label of each attached interface.
    modes: Vec<(String, &'static str)>,
    /// Set when the chain is kept across restarts.
    pins: Option<Pins>,
    /// Last firewall policy version written (`vnf_fw_cfg.version`); every configuration written gets a
    /// higher one, so conntrack entries stamped under an earlier policy are re-checked.
    policy_version: u32,
    // h-egress: sidecar mode's TC egress attachments (engine/egress.rs)
    egress: super::egress::EgressLinks,
    // h-xdpfrag: replay of parked fragments on XDP, started by the first attachment (engine/fragreplay.rs)
    frag_replay: Option<super::fragreplay::FragReplay>,
}

// h-egress: what engine/egress.rs needs of the engine
impl Engine {
    pub(super) fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
    pub(super) fn egress_links(&self) -> &super::egress::EgressLinks {
        &self.egress
    }
    pub(super) fn egress_links_mut(&mut self) -> &mut super::egress::EgressLinks {
        &mut self.egress
    }
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

impl Drop for Engine {
    /// A kept engine that was neither kept nor detached (a failed start, a panic) detaches and
    /// removes its pins, so nothing half-made stays behind; an adoption that failed half-way is not
    /// armed and leaves the kept chain as it found it.
    fn drop(&mut self) {
        if self.pins.as_ref().is_some_and(|p| p.armed)
            && let Err(e) = self.detach()
        {
            log::warn!("removing the pins of a chain that did not start: {e}");
        }
    }
}

fn port_ranges(list: &[PortRange], what: &str) -> Result<(u8, [PortRangeAbi; abi::CLS_MAX_PORTS])> {
    let mut out = [PortRangeAbi::default(); abi::CLS_MAX_PORTS];
    if list.len() > abi::CLS_MAX_PORTS {
        return Err(EngineError::Config(format!(
            "classifier has {} {what} port ranges, at most {} are supported",
            list.len(),
            abi::CLS_MAX_PORTS
        )));
    }
    for (o, r) in out.iter_mut().zip(list) {
        if r.lo > r.hi {
            return Err(EngineError::Config(format!(
                "classifier {what} port range {}-{} is empty",
                r.lo, r.hi
            )));
        }
        *o = PortRangeAbi { lo: r.lo, hi: r.hi };
    }
    Ok((list.len() as u8, out))
}

/// Encodes a classifier: the `vnf_gen_cfg` part and the prefixes for the
/// generation's LPM tries (`bool` = destination).
fn classifier_abi(c: &ClassifierConfig) -> Result<(Classifier, Vec<(IpCidr, bool)>)> {
    let mut out = Classifier::default();
    if let Some(f) = c.family {
        if f != 4 && f != 6 {
            return Err(EngineError::Config(format!(
                "IP family must be 4 or 6, got {f}"
            )));
        }
        if let Some(cidr) = c.src.iter().chain(&c.dst).find(|x| x.family() != f) {
            return Err(EngineError::Config(format!(
                "classifier prefix {cidr} does not match IP family {f}"
            )));
        }
        out.fields |= abi::cls::FAMILY;
        out.family = f;
    }
    for (list, what) in [(&c.src, "source"), (&c.dst, "destination")] {
        if list.len() > MAX_CLASSIFIER_CIDRS {
            return Err(EngineError::Config(format!(
                "classifier has {} {what} prefixes, at most {MAX_CLASSIFIER_CIDRS} are supported",
                list.len()
            )));
        }
    }
    if let Some(p) = c.protocol {
        out.fields |= abi::cls::PROTO;
        out.proto = p;
    }
    if !c.src.is_empty() {
        out.fields |= abi::cls::SRC;
    }
    if !c.dst.is_empty() {
        out.fields |= abi::cls::DST;
    }
    if !c.src_ports.is_empty() {
        out.fields |= abi::cls::SPORT;
        (out.nr_sports, out.sports) = port_ranges(&c.src_ports, "source")?;
    }
    if !c.dst_ports.is_empty() {
        out.fields |= abi::cls::DPORT;
        (out.nr_dports, out.dports) = port_ranges(&c.dst_ports, "destination")?;
    }
    if (!c.src_ports.is_empty() || !c.dst_ports.is_empty())
        && !matches!(c.protocol, None | Some(6) | Some(17))
    {
        return Err(EngineError::Config(
            "classifier port ranges need protocol TCP (6) or UDP (17)".into(),
        ));
    }
    let prefixes = c
        .src
        .iter()
        .map(|p| (*p, false))
        .chain(c.dst.iter().map(|p| (*p, true)))
        .collect();
    Ok((out, prefixes))
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
    if c.packets_per_sec.is_none() && c.bits_per_sec.is_none() {
        return bad("set packets_per_sec and/or bits_per_sec");
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
        out.pkt_inc_ns = NS_PER_SEC / pps;
        out.pkt_tau_ns = c
            .burst_packets
            .checked_mul(out.pkt_inc_ns)
            .ok_or_else(|| EngineError::Config("rate limiter: packet burst too large".into()))?;
    }
    if let Some(bps) = c.bits_per_sec {
        if bps == 0 {
            return bad("bits_per_sec must be positive");
        }
        if c.burst_bytes < 64 {
            return bad("burst_bytes must be at least 64");
        }
        // the kernel multiplies instead of dividing per packet: ns per byte in 16.16 fixed
        // point (at least 1, i.e. rates up to 5e14 bit/s keep their meaning)
        let q16 = u128::from(8 * NS_PER_SEC) * 65_536 / u128::from(bps);
        out.byte_inc_q16 = u64::try_from(q16.max(1))
            .map_err(|_| EngineError::Config("rate limiter: bit rate too small".into()))?;
        let tau = u128::from(c.burst_bytes) * 8 * u128::from(NS_PER_SEC) / u128::from(bps);
        out.byte_tau_ns = u64::try_from(tau)
            .map_err(|_| EngineError::Config("rate limiter: byte burst too large".into()))?;
    }
    Ok(out)
}

/// Validated NAT state: config, SNAT source prefixes, DNAT mappings.
struct PreparedNat {
    cfg: NatCfg,
    snat_src: Vec<IpCidr>,
    dnat: Vec<(NatDnatKey, NatDnatVal)>,
}

fn nat_abi(c: &NatConfig) -> Result<PreparedNat> {
    let same_family = |a: IpAddr, b: IpAddr| a.is_ipv4() == b.is_ipv4();
    let family = |a: IpAddr| if a.is_ipv4() { 4 } else { 6 };
    let mut out = PreparedNat {
        cfg: NatCfg {
            timeout_ns: u64::try_from(c.timeout.as_nanos()).unwrap_or(u64::MAX),
            ..Default::default()
        },
        snat_src: Vec::new(),
        dnat: Vec::new(),
    };
    if c.rules.is_empty() {
        return Err(EngineError::Config("NAT needs at least one rule".into()));
    }
    for rule in &c.rules {
        match rule {
            NatRule::Snat {
                match_src,
                to_addr,
                ports,
            } => {
                if out.cfg.flags & abi::nat::F_SNAT != 0 {
                    return Err(EngineError::Config(
                        "NAT supports one SNAT rule per function".into(),
                    ));
                }
                if let Some(m) = match_src.iter().find(|m| !same_family(m.addr(), *to_addr)) {
                    return Err(EngineError::Config(format!(
                        "SNAT {m} -> {to_addr}: address families differ"
                    )));
                }
                if match_src.len() > MAX_CLASSIFIER_CIDRS {
                    return Err(EngineError::Config(format!(
                        "SNAT has {} source prefixes, at most {MAX_CLASSIFIER_CIDRS} are supported",
                        match_src.len()
                    )));
                }
                if ports.lo == 0 || ports.lo > ports.hi {
                    return Err(EngineError::Config(
                        "SNAT port pool must be a non-empty range without port 0".into(),
                    ));
                }
                out.cfg.flags |= abi::nat::F_SNAT;
                if match_src.is_empty() {
                    out.cfg.flags |= abi::nat::F_SNAT_ANY;
                }
                out.cfg.snat_family = family(*to_addr);
                out.cfg.snat_addr = Engine::addr_bytes(*to_addr);
                (out.cfg.port_lo, out.cfg.port_hi) = (ports.lo, ports.hi);
                out.snat_src.clone_from(match_src);
            }
            NatRule::Dnat {
                protocol,
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
                if !matches!(protocol, None | Some(6) | Some(17)) {
                    return Err(EngineError::Config(
                        "DNAT protocol must be TCP (6) or UDP (17)".into(),
                    ));
                }
                let key = NatDnatKey {
                    instance: 0,
                    proto: protocol.unwrap_or(0),
                    family: family(*match_dst),
                    port: match_port.unwrap_or(0),
                    addr: Engine::addr_bytes(*match_dst),
                };
                if out.dnat.iter().any(|(k, _)| *k == key) {
                    return Err(EngineError::Config(format!(
                        "two DNAT mappings for {match_dst} port {} protocol {}",
                        key.port, key.proto
                    )));
                }
                out.dnat.push((
                    key,
                    NatDnatVal {
                        addr: Engine::addr_bytes(*to_addr),
                        port: to_port.unwrap_or(0),
                        _pad: [0; 2],
                    },
                ));
            }
        }
    }
    if out.dnat.len() > MAX_DNAT {
        return Err(EngineError::Config(format!(
            "NAT has {} DNAT mappings, at most {MAX_DNAT} are supported",
            out.dnat.len()
        )));
    }
    out.cfg.nr_dnat = out.dnat.len() as u16;
    Ok(out)
}

/// Per-kind, validated map values of one function.
enum Prepared {
    Firewall(Box<CompiledFirewall>),
    Forwarder(FwdCfg),
    Monitor(MonCfg),
    RateLimiter(RlCfg),
    Nat(PreparedNat),
    Lb(PreparedLb),
    /// The hand-off needs no per-instance configuration.
    Userspace,
}

impl Prepared {
    /// State that a successor can inherit only when this value matches: a monitor that changes
    /// what it counts by starts with fresh counters (the keys would mean something else).
    fn state_class(&self) -> u32 {
        match self {
            Prepared::Monitor(cfg) => u32::from(cfg.count_by),
            _ => 0,
        }
    }
}

/// Validated load-balancer state: config (without its pool region), backends, Maglev table.
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
    if c.table_size > MAX_MAGLEV_TABLE || !maglev::is_prime(c.table_size) {
        return Err(EngineError::Config(format!(
            "Maglev table size {} must be a prime of at most {MAX_MAGLEV_TABLE}",
            c.table_size
        )));
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
        if b.weight == 0 {
            return Err(EngineError::Config(format!(
                "backend {}: weight must be positive",
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
    let weights: Vec<u32> = c.backends.iter().map(|b| b.weight).collect();
    let table = maglev::populate_weighted(&ids, &weights, c.table_size as usize)?;
    Ok(PreparedLb {
        cfg: LbCfg {
            family: if c.vip.is_ipv4() { 4 } else { 6 },
            proto: c.protocol.unwrap_or(0),
            vip_port: c.port.unwrap_or(0),
            nr_backends: backends.len() as u32,
            affinity_timeout_ns: u64::try_from(c.affinity_timeout.as_nanos()).unwrap_or(u64::MAX),
            vip: Engine::addr_bytes(c.vip),
            table_off: 0,
            table_size: c.table_size,
        },
        backends,
        table,
    })
}

fn prepare(f: &FunctionConfig) -> Result<Prepared> {
    Ok(match &f.kind {
        FunctionKind::Firewall(c) => Prepared::Firewall(Box::new(firewall::compile(c)?)),
        FunctionKind::Forwarder(c) => Prepared::Forwarder(forwarder_abi(c)?),
        FunctionKind::Monitor(c) => Prepared::Monitor(MonCfg {
            sample_rate: c.sample_rate,
            count_by: match c.count_by {
                CountBy::Protocol => abi::mon_by::CLASS,
                CountBy::DestinationPort => abi::mon_by::DPORT,
                CountBy::Dscp => abi::mon_by::DSCP,
            },
            _pad: [0; 3],
        }),
        FunctionKind::RateLimiter(c) => Prepared::RateLimiter(ratelimit_abi(c)?),
        FunctionKind::Nat(c) => Prepared::Nat(nat_abi(c)?),
        FunctionKind::LoadBalancer(c) => Prepared::Lb(lb_abi(c)?),
        FunctionKind::UserspaceHandoff => Prepared::Userspace,
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

/// Loads (verifies) one program of the attach point for `hook` and returns its fd.
fn load_program(
    hook: Hook,
    name: &'static str,
    prog: &mut aya::programs::Program,
) -> Result<ProgramFd> {
    match hook {
        Hook::Xdp => {
            let p: &mut Xdp = prog.try_into().map_err(EngineError::prog(name))?;
            p.load().map_err(EngineError::prog(name))?;
            Ok(p.fd().map_err(EngineError::prog(name))?.try_clone()?)
        }
        Hook::Tc => {
            let p: &mut SchedClassifier = prog.try_into().map_err(EngineError::prog(name))?;
            p.load().map_err(EngineError::prog(name))?;
            Ok(p.fd().map_err(EngineError::prog(name))?.try_clone()?)
        }
    }
}

impl Engine {
    /// Loads the attach point for `hook`; the chain starts empty (all traffic bypasses).
    pub fn load(hook: Hook) -> Result<Self> {
        Self::from_object(Ebpf::load(Self::object(hook))?, hook)
    }

    fn object(hook: Hook) -> &'static [u8] {
        match hook {
            Hook::Xdp => objects::XDP_CHAIN,
            Hook::Tc => objects::TC_CHAIN,
        }
    }

    /// Loads the programs of `ebpf` and takes its maps.
    fn from_object(mut ebpf: Ebpf, hook: Hook) -> Result<Self> {
        // the verifier is most of the load time: load the programs on every core at once
        let wanted: Vec<&'static str> = std::iter::once(ENTRY)
            .chain(FUNCTION_PROGRAMS.iter().copied())
            .collect();
        let mut progs: Vec<(&'static str, &mut aya::programs::Program)> = Vec::new();
        for (name, prog) in ebpf.programs_mut() {
            if let Some(&w) = wanted.iter().find(|w| **w == name) {
                progs.push((w, prog));
            }
        }
        if let Some(missing) = wanted.iter().find(|w| !progs.iter().any(|(n, _)| n == *w)) {
            return Err(EngineError::Missing(format!("program {missing}")));
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, progs.len());
        let mut groups: Vec<Vec<(&'static str, &mut aya::programs::Program)>> =
            (0..threads).map(|_| Vec::new()).collect();
        for (i, p) in progs.into_iter().enumerate() {
            groups[i % threads].push(p);
        }
        let loaded: Vec<Result<Vec<(&'static str, ProgramFd)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|group| {
                    scope.spawn(move || {
                        group
                            .into_iter()
                            .map(|(name, prog)| load_program(hook, name, prog).map(|fd| (name, fd)))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(EngineError::Missing(
                            "a program loader thread panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let mut prog_fds = HashMap::new();
        for group in loaded {
            prog_fds.extend(group?);
        }
        let maps = Maps::take_all(&mut ebpf, hook)?;
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, e)| EngineError::Io(e))?;
        // a re-adopted chain's pinned configurations hold the highest version any live conntrack
        // entry can carry (each state's newest configuration was written last): continue above it
        let policy_version = (0..abi::MAX_INSTANCES)
            .filter_map(|i| maps.fw_cfg.get(&i, 0).ok())
            .map(|c| c.version)
            .max()
            .unwrap_or(0);
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
            names: HashMap::new(),
            state_of: HashMap::new(),
            state_refs: HashMap::new(),
            fn_cfg: HashMap::new(),
            free_ids: (1..abi::MAX_INSTANCES).collect(),
            fw_keys: HashMap::new(),
            fw_priorities: HashMap::new(),
            fw_regions: HashMap::new(),
            cls_keys: Default::default(),
            nat_keys: HashMap::new(),
            lb_regions: HashMap::new(),
            last_flip: None,
            gen_base: Default::default(),
            links: Vec::new(),
            modes: Vec::new(),
            pins: None,
            policy_version,
            egress: Default::default(), // h-egress
            frag_replay: None,          // h-xdpfrag
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
        let (cls, cls_prefixes) = classifier_abi(&chain.classifier)?;
        chain.non_ip.check().map_err(EngineError::Config)?;
        let mut non_ip = [0u16; abi::NON_IP_MAX];
        non_ip[..chain.non_ip.allow.len()].copy_from_slice(&chain.non_ip.allow);
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
        // retire the instances of the generation we are about to overwrite (those the running
        // generation shares stay)
        let active = self.active as usize;
        for inst in std::mem::take(&mut self.generations[target as usize]) {
            if !self.generations[active].contains(&inst) {
                self.release_instance(inst)?;
            }
        }
        // a function whose configuration did not change keeps its running instance: nothing of
        // it is rewritten, only the new generation's slot points at it
        let mut unchanged = self.generations[active].clone();
        let reuse: Vec<Option<u32>> = chain
            .functions
            .iter()
            .map(|f| {
                let at = unchanged
                    .iter()
                    .position(|i| self.fn_cfg.get(i) == Some(f))?;
                Some(unchanged.swap_remove(at))
            })
            .collect();
        let fresh = reuse.iter().filter(|r| r.is_none()).count();
        if self.free_ids.len() < fresh {
            return Err(EngineError::NoInstanceIds(abi::MAX_INSTANCES - 1));
        }
        self.write_classifier_prefixes(target, &cls_prefixes)?;

        // functions of the running generation by (name, kind): their successors inherit
        // their state (flows, buckets, counters)
        let mut heirs: HashMap<(String, u32, u32), u32> = self.generations[self.active as usize]
            .iter()
            .filter_map(|i| {
                let (name, class) = self.names.get(i)?.clone();
                Some(((name, *self.live.get(i)?, class), self.state(*i)))
            })
            .collect();
        for inst in reuse.iter().flatten() {
            if let (Some((name, class)), Some(kind)) = (self.names.get(inst), self.live.get(inst)) {
                heirs.remove(&(name.clone(), *kind, *class));
            }
        }
        let mut instances = Vec::with_capacity(prepared.len());
        for (pos, ((f, p), reused)) in chain
            .functions
            .iter()
            .zip(&prepared)
            .zip(&reuse)
            .enumerate()
        {
            let kind = f.kind.abi_kind();
            if let Some(inst) = *reused {
                self.generations[target as usize].push(inst);
                self.set_slot(target, pos as u32, inst, kind, f.kind.program_name())?;
                debug!(
                    "gen {target} pos {pos}: {} = instance {inst} (unchanged)",
                    f.name
                );
                instances.push(inst);
                continue;
            }
            let inst = self
                .free_ids
                .pop_first()
                .ok_or(EngineError::NoInstanceIds(abi::MAX_INSTANCES - 1))?;
            self.generations[target as usize].push(inst);
            self.fn_cfg.insert(inst, f.clone());
            self.live.insert(inst, kind);
            let class = p.state_class();
            self.names.insert(inst, (f.name.clone(), class));
            let state = match heirs.remove(&(f.name.clone(), kind, class)) {
                Some(s) => s,
                None => {
                    self.reset_state(inst)?;
                    inst
                }
            };
            self.state_of.insert(inst, state);
            *self.state_refs.entry(state).or_default() += 1;
            self.write_function(inst, p)?;
            self.maps
                .instances
                .set(
                    inst,
                    InstanceCfg {
                        kind,
                        latency_sample_rate: f.latency_sample_rate,
                        state,
                        _pad: 0,
                    },
                    0,
                )
                .map_err(EngineError::map("vnf_instances"))?;
            let name = f.kind.program_name();
            self.set_slot(target, pos as u32, inst, kind, name)?;
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
        // one sampling decision per packet at the entry: the chain's rate, or (when only
        // functions ask for latency) the finest function rate
        let sample_rate = if chain.latency_sample_rate != 0 {
            chain.latency_sample_rate
        } else {
            chain
                .functions
                .iter()
                .map(|f| f.latency_sample_rate)
                .filter(|&r| r != 0)
                .min()
                .unwrap_or(0)
        };
        let gen_cfg = GenCfg {
            chain_len: prepared.len() as u32,
            latency_sample_rate: sample_rate,
            cls,
            non_ip,
            nr_non_ip: chain.non_ip.allow.len() as u32,
        };
        self.maps
            .gen_cfg
            .set(target, gen_cfg, 0)
            .map_err(EngineError::map("vnf_gen_cfg"))?;
        self.maps
            .gen_flags
            .set(target, gen_flags(&chain.functions), 0)
            .map_err(EngineError::map("vnf_gen_flags"))?;
        // the slot's counters are not zeroed (the chain's totals must never go back, see
        // `chain_totals`): the generation's own counts start from here
        self.gen_base[target as usize] = self.raw_chain_counters(target)?;

        // the switch: one word
        self.maps
            .active_gen
            .set(0, target, 0)
            .map_err(EngineError::map("vnf_active_gen"))?;
        self.active = target;
        self.last_flip = Some(Instant::now());
        debug!("slot set {target} active: {} functions", instances.len());
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
            Prepared::Nat(nat) => self.write_nat(inst, nat),
            Prepared::Lb(lb) => self.write_lb(inst, lb),
            Prepared::Userspace => Ok(()),
        }
    }

    /// Replaces the classifier prefixes of generation `generation` (which is inactive).
    fn write_classifier_prefixes(
        &mut self,
        generation: u32,
        list: &[(IpCidr, bool)],
    ) -> Result<()> {
        let g = (generation & 1) as usize;
        let old = std::mem::take(&mut self.cls_keys[g]);
        let m = &mut self.maps;
        remove_prefixes(
            old,
            [&mut m.cls_src4, &mut m.cls_dst4],
            [&mut m.cls_src6, &mut m.cls_dst6],
            ("vnf_cls_lpm4", "vnf_cls_lpm6"),
        )?;
        let mut keys = PrefixKeys::default();
        for (c, dst) in list {
            if c.family() == 4 {
                let (plen, data) = lpm4(generation, c);
                let trie = if *dst {
                    &mut self.maps.cls_dst4
                } else {
                    &mut self.maps.cls_src4
                };
                trie.insert(&Key::new(plen, data), 1, 0)
                    .map_err(EngineError::map("vnf_cls_lpm4"))?;
                keys.v4.push((plen, data, *dst));
            } else {
                let (plen, data) = lpm6(generation, c);
                let trie = if *dst {
                    &mut self.maps.cls_dst6
                } else {
                    &mut self.maps.cls_src6
                };
                trie.insert(&Key::new(plen, data), 1, 0)
                    .map_err(EngineError::map("vnf_cls_lpm6"))?;
                keys.v6.push((plen, data, *dst));
            }
        }
        self.cls_keys[g] = keys;
        Ok(())
    }

    /// Writes SNAT prefixes and DNAT mappings, then the config.
    fn write_nat(&mut self, inst: u32, nat: &PreparedNat) -> Result<()> {
        let mut prefixes = PrefixKeys::default();
        let mut dnat_keys = Vec::with_capacity(nat.dnat.len());
        // record before inserting so a failure half-way is still cleaned up on release
        self.nat_keys
            .insert(inst, (PrefixKeys::default(), Vec::new()));
        for c in &nat.snat_src {
            if c.family() == 4 {
                let (plen, data) = lpm4(inst, c);
                self.maps
                    .nat_src4
                    .insert(&Key::new(plen, data), 1, 0)
                    .map_err(EngineError::map("vnf_nat_src4"))?;
                prefixes.v4.push((plen, data, false));
            } else {
                let (plen, data) = lpm6(inst, c);
                self.maps
                    .nat_src6
                    .insert(&Key::new(plen, data), 1, 0)
                    .map_err(EngineError::map("vnf_nat_src6"))?;
                prefixes.v6.push((plen, data, false));
            }
            if let Some(e) = self.nat_keys.get_mut(&inst) {
                e.0 = prefixes.clone();
            }
        }
        for (k, v) in &nat.dnat {
            let key = NatDnatKey {
                instance: inst,
                ..*k
            };
            self.maps
                .nat_dnat
                .insert(key, v, 0)
                .map_err(EngineError::map("vnf_nat_dnat"))?;
            dnat_keys.push(key);
            if let Some(e) = self.nat_keys.get_mut(&inst) {
                e.1.clone_from(&dnat_keys);
            }
        }
        self.maps
            .nat_cfg
            .set(inst, nat.cfg, 0)
            .map_err(EngineError::map("vnf_nat_cfg"))
    }

    /// Removes the SNAT prefixes and DNAT mappings of a NAT instance.
    fn clear_nat(&mut self, inst: u32) -> Result<()> {
        let Some((prefixes, dnat)) = self.nat_keys.remove(&inst) else {
            return Ok(());
        };
        for (plen, data, _) in prefixes.v4 {
            ignore_missing(
                self.maps.nat_src4.remove(&Key::new(plen, data)),
                "vnf_nat_src4",
            )?;
        }
        for (plen, data, _) in prefixes.v6 {
            ignore_missing(
                self.maps.nat_src6.remove(&Key::new(plen, data)),
                "vnf_nat_src6",
            )?;
        }
        for k in dnat {
            ignore_missing(self.maps.nat_dnat.remove(&k), "vnf_nat_dnat")?;
        }
        Ok(())
    }

    /// First-fit region of `size` slots in the Maglev pool, not overlapping any live table.
    fn lb_alloc(&self, size: u32) -> Result<u32> {
        let mut used: Vec<(u32, u32)> = self.lb_regions.values().copied().collect();
        used.sort_unstable();
        let mut start = 0u32;
        for (off, len) in used {
            if off.saturating_sub(start) >= size {
                return Ok(start);
            }
            start = start.max(off + len);
        }
        if abi::LB_POOL - start >= size {
            return Ok(start);
        }
        Err(EngineError::Config(format!(
            "no room for a Maglev table of {size} slots: the pool of {} slots is taken by {} live tables",
            abi::LB_POOL,
            self.lb_regions.len()
        )))
    }

    /// Writes the rules, bitmaps and port segments of a firewall instance into
    /// fresh pool regions, then its protocol and prefix entries, then the
    /// config; frees the previous regions and removes stale prefixes last.
    fn write_firewall(&mut self, inst: u32, fw: &CompiledFirewall) -> Result<()> {
        let n = fw.actions.len() as u32;
        let nports = (fw.sports.len() + fw.dports.len()) as u32;
        let rule_off = self.fw_alloc(0, n, abi::FW_RULE_POOL, "rule")?;
        let word_off = self.fw_alloc(1, fw.words.len() as u32, abi::FW_WORD_POOL, "bitmap word")?;
        let port_off = self.fw_alloc(2, nports, abi::FW_PORT_POOL, "port segment")?;
        let rebase = |bm: &FwBm| FwBm {
            word_off: bm.word_off + word_off,
            ..*bm
        };
        // region writes are one batch call each (10,000 rules would be ~40,000 calls otherwise)
        batch::update_array(
            self.maps.fw_actions.map().fd(),
            "vnf_fw_actions",
            rule_off,
            &fw.actions,
        )?;
        let zero_hits = vec![0u64; fw.actions.len() * self.nr_cpus];
        batch::update_array_per_cpu(
            self.maps.fw_hits.map().fd(),
            "vnf_fw_hits",
            rule_off,
            &zero_hits,
            self.nr_cpus,
        )?;
        batch::update_array(
            self.maps.fw_words.map().fd(),
            "vnf_fw_words",
            word_off,
            &fw.words,
        )?;
        let segs: Vec<FwPortSeg> = fw
            .sports
            .iter()
            .chain(&fw.dports)
            .map(|seg| FwPortSeg {
                bm: rebase(&seg.bm),
                ..*seg
            })
            .collect();
        batch::update_array(
            self.maps.fw_ports.map().fd(),
            "vnf_fw_ports",
            port_off,
            &segs,
        )?;
        let protos: Vec<FwBm> = fw.proto.iter().map(rebase).collect();
        batch::update_array(
            self.maps.fw_proto.map().fd(),
            "vnf_fw_proto",
            inst * 256,
            &protos,
        )?;
        let mut keys = PrefixKeys::default();
        for (list, dst, name) in [
            (&fw.src4, false, "vnf_fw_src4"),
            (&fw.dst4, true, "vnf_fw_dst4"),
        ] {
            let trie = if dst {
                &mut self.maps.fw_dst4
            } else {
                &mut self.maps.fw_src4
            };
            for (c, bm) in list {
                let (plen, data) = lpm4(inst, c);
                trie.insert(&Key::new(plen, data), rebase(bm), 0)
                    .map_err(EngineError::map(name))?;
                keys.v4.push((plen, data, dst));
            }
        }
        for (list, dst, name) in [
            (&fw.src6, false, "vnf_fw_src6"),
            (&fw.dst6, true, "vnf_fw_dst6"),
        ] {
            let trie = if dst {
                &mut self.maps.fw_dst6
            } else {
                &mut self.maps.fw_src6
            };
            for (c, bm) in list {
                let (plen, data) = lpm6(inst, c);
                trie.insert(&Key::new(plen, data), rebase(bm), 0)
                    .map_err(EngineError::map(name))?;
                keys.v6.push((plen, data, dst));
            }
        }
        self.policy_version = self.policy_version.wrapping_add(1).max(1);
        let cfg = FwCfg {
            version: self.policy_version,
            rule_off,
            sport_off: port_off + fw.cfg.sport_off,
            dport_off: port_off + fw.cfg.dport_off,
            noport: rebase(&fw.cfg.noport),
            any: rebase(&fw.cfg.any),
            ..fw.cfg
        };
        self.maps
            .fw_cfg
            .set(inst, cfg, 0)
            .map_err(EngineError::map("vnf_fw_cfg"))?;
        self.fw_regions.insert(
            inst,
            [
                (rule_off, n),
                (word_off, fw.words.len() as u32),
                (port_off, nports),
            ],
        );

        // remove prefixes of the previous rule set that are not in the new one
        if let Some(old) = self.fw_keys.remove(&inst) {
            let new4: HashSet<_> = keys
                .v4
                .iter()
                .map(|(p, d, x)| (*p, d.addr, d.instance_be, *x))
                .collect();
            let new6: HashSet<_> = keys
                .v6
                .iter()
                .map(|(p, d, x)| (*p, d.addr, d.instance_be, *x))
                .collect();
            // Only the prefixes the new rule set no longer has.
            let mut stale = old;
            stale
                .v4
                .retain(|(p, d, x)| !new4.contains(&(*p, d.addr, d.instance_be, *x)));
            stale
                .v6
                .retain(|(p, d, x)| !new6.contains(&(*p, d.addr, d.instance_be, *x)));
            let m = &mut self.maps;
            remove_prefixes(
                stale,
                [&mut m.fw_src4, &mut m.fw_dst4],
                [&mut m.fw_src6, &mut m.fw_dst6],
                ("vnf_fw_lpm4", "vnf_fw_lpm6"),
            )?;
        }
        self.fw_keys.insert(inst, keys);
        self.fw_priorities.insert(inst, fw.priorities.clone());
        Ok(())
    }

    /// First-fit region of `size` entries of firewall pool `which` (0 rules,
    /// 1 words, 2 port segments) of `pool` entries, beside every live region.
    fn fw_alloc(&self, which: usize, size: u32, pool: u32, what: &str) -> Result<u32> {
        let mut used: Vec<(u32, u32)> = self.fw_regions.values().map(|r| r[which]).collect();
        used.sort_unstable();
        let mut start = 0u32;
        for (off, len) in used {
            if off.saturating_sub(start) >= size {
                return Ok(start);
            }
            start = start.max(off + len);
        }
        if pool - start >= size {
            return Ok(start);
        }
        Err(EngineError::Config(format!(
            "no room for {size} firewall {what} entries: the pool of {pool} is taken by {} live firewalls",
            self.fw_regions.len()
        )))
    }

    /// Writes backends, then the Maglev table into a fresh pool region, then
    /// the config, then frees the instance's previous region: every state in
    /// between only maps table slots to valid backends.
    fn write_lb(&mut self, inst: u32, lb: &PreparedLb) -> Result<()> {
        let base = inst * abi::LB_MAX_BACKENDS;
        for (i, b) in lb.backends.iter().enumerate() {
            self.maps
                .lb_backends
                .set(base + i as u32, b, 0)
                .map_err(EngineError::map("vnf_lb_backends"))?;
        }
        let size = lb.table.len() as u32;
        let off = self.lb_alloc(size)?;
        batch::update_array(
            self.maps.lb_maglev.map().fd(),
            "vnf_lb_maglev",
            off,
            &lb.table,
        )?;
        let cfg = LbCfg {
            table_off: off,
            table_size: size,
            ..lb.cfg
        };
        self.maps
            .lb_cfg
            .set(inst, cfg, 0)
            .map_err(EngineError::map("vnf_lb_cfg"))?;
        self.lb_regions.insert(inst, (off, size));
        Ok(())
    }

    /// Replaces the backends of a live load-balancer instance in place.
    /// Established flows keep their backend (affinity); new flows use the
    /// new Maglev table.  The new table is written beside the old one and
    /// switched to with one config update.
    /// Registers the AF_XDP socket `xsk` of the user-space tier for receive queue `queue`:
    /// from now on the chain's user-space hand-off sends that queue's packets to it.
    pub fn register_xsk(&mut self, queue: u32, xsk: impl AsFd) -> Result<()> {
        let map = self.xsk_map(queue)?;
        map.set(queue, xsk.as_fd(), 0)
            .map_err(EngineError::map("vnf_xsks"))
    }

    /// Removes the socket of `queue`; its packets are then dropped by the hand-off
    /// (reason `no_xsk`) instead of bypassing the user-space functions.
    pub fn unregister_xsk(&mut self, queue: u32) -> Result<()> {
        let map = self.xsk_map(queue)?;
        match map.unset(queue) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(e) => Err(EngineError::map("vnf_xsks")(e)),
        }
    }

    fn xsk_map(&mut self, queue: u32) -> Result<&mut XskMap<MapData>> {
        if queue >= abi::MAX_XSK_QUEUES {
            return Err(EngineError::Config(format!(
                "receive queue {queue}: the user-space tier serves queues 0..{}",
                abi::MAX_XSK_QUEUES
            )));
        }
        self.maps.xsks.as_mut().ok_or_else(|| {
            EngineError::Config(
                "the user-space hand-off needs XDP (TC cannot redirect to AF_XDP sockets)".into(),
            )
        })
    }

    pub fn update_load_balancer(&mut self, instance: u32, lb: &LbConfig) -> Result<()> {
        if self.live.get(&instance) != Some(&abi::kind::LB) {
            return Err(EngineError::UnknownInstance(instance));
        }
        let prepared = lb_abi(lb)?;
        self.write_lb(instance, &prepared)?;
        if let Some(c) = self.fn_cfg.get_mut(&instance) {
            c.kind = FunctionKind::LoadBalancer(lb.clone());
        }
        Ok(())
    }

    /// Replaces the rules of a live firewall instance in place (map updates
    /// only, hit counters restart at zero).  Not atomic: while the update is
    /// in flight a packet may combine dimension tables of the old and the new
    /// rule set and get the verdict of neither; the word pool must hold both
    /// rule sets for the moment.  Use [`Engine::apply`] for an atomic switch.
    pub fn update_firewall(
        &mut self,
        instance: u32,
        fw: &super::config::FirewallConfig,
    ) -> Result<()> {
        if self.live.get(&instance) != Some(&abi::kind::FIREWALL) {
            return Err(EngineError::UnknownInstance(instance));
        }
        let compiled = firewall::compile(fw)?;
        self.write_firewall(instance, &compiled)?;
        if let Some(c) = self.fn_cfg.get_mut(&instance) {
            c.kind = FunctionKind::Firewall(fw.clone());
        }
        Ok(())
    }

    /// Points slot `pos` of generation `generation` at instance `inst` running `program`.
    fn set_slot(
        &mut self,
        generation: u32,
        pos: u32,
        inst: u32,
        kind: u32,
        program: &str,
    ) -> Result<()> {
        let slot = generation * abi::MAX_CHAIN + pos;
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
        let fd = self
            .prog_fds
            .get(program)
            .ok_or_else(|| EngineError::Missing(format!("program {program}")))?;
        self.maps
            .progs
            .set(slot, fd, 0)
            .map_err(EngineError::map("vnf_progs"))
    }

    /// Fresh state for id `inst`: zeroed counters and a full global rate-limit bucket.
    fn reset_state(&mut self, inst: u32) -> Result<()> {
        self.maps
            .rl_global
            .set(inst, RlState::default(), 0)
            .map_err(EngineError::map("vnf_rl_global"))?;
        let n = self.nr_cpus;
        self.maps
            .stats
            .set(
                inst,
                PerCpuValues::try_from(vec![FnStats::default(); n])?,
                0,
            )
            .map_err(EngineError::map("vnf_stats"))?;
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

    /// Releases instance `inst` (its configuration), and its state when no
    /// other live instance inherited it.
    fn release_instance(&mut self, inst: u32) -> Result<()> {
        self.live.remove(&inst);
        self.names.remove(&inst);
        self.fn_cfg.remove(&inst);
        self.maps
            .instances
            .set(inst, InstanceCfg::default(), 0)
            .map_err(EngineError::map("vnf_instances"))?;
        self.fw_priorities.remove(&inst);
        self.fw_regions.remove(&inst);
        self.lb_regions.remove(&inst);
        self.clear_nat(inst)?;
        if let Some(old) = self.fw_keys.remove(&inst) {
            let m = &mut self.maps;
            remove_prefixes(
                old,
                [&mut m.fw_src4, &mut m.fw_dst4],
                [&mut m.fw_src6, &mut m.fw_dst6],
                ("vnf_fw_lpm4", "vnf_fw_lpm6"),
            )?;
        }
        let state = self.state_of.remove(&inst).unwrap_or(inst);
        let refs = self.state_refs.get(&state).copied().unwrap_or(1);
        if refs <= 1 {
            self.state_refs.remove(&state);
            self.purge_state(state)?;
            if !self.live.contains_key(&state) {
                self.free_ids.insert(state);
            }
        } else {
            self.state_refs.insert(state, refs - 1);
        }
        if inst != state && !self.state_refs.contains_key(&inst) {
            self.free_ids.insert(inst);
        }
        Ok(())
    }

    /// Drops the flows, buckets and keyed counters of state id `state`.
    fn purge_state(&mut self, state: u32) -> Result<()> {
        let mon_keys: Vec<MonKey> = self
            .maps
            .mon_keyed
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == state)
            .collect();
        for k in mon_keys {
            ignore_missing(self.maps.mon_keyed.remove(&k), "vnf_mon_keyed")?;
        }
        purge_instance(&mut self.maps.ct, state, "vnf_ct")?;
        purge_instance(&mut self.maps.rl_buckets, state, "vnf_rl_buckets")?;
        purge_instance(&mut self.maps.nat_ct, state, "vnf_nat_ct")?;
        Ok(())
    }

    /// State id of a live instance (its own id when it started fresh).
    fn state(&self, inst: u32) -> u32 {
        self.state_of.get(&inst).copied().unwrap_or(inst)
    }

    /// The state id whose counters (and flows, buckets) function instance `instance` uses: two
    /// instances with the same state id share their counters (a function that kept its name and type
    /// across an update).
    pub fn state_id(&self, instance: u32) -> u32 {
        self.state(instance)
    }

    /// Counters of one function instance, summed over CPUs.
    pub fn function_stats(&self, instance: u32) -> Result<FunctionStats> {
        let per_cpu = self
            .maps
            .stats
            .get(&self.state(instance), 0)
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

    /// Chain counters of a generation (slot set 0 or 1) since it was last activated, summed over CPUs.
    pub fn chain_counters(&self, generation: u32) -> Result<ChainCounters> {
        let g = generation & 1;
        Ok(self
            .raw_chain_counters(g)?
            .since(&self.gen_base[g as usize]))
    }

    /// The chain's counters over its whole life (both slot sets, every generation, and the control-plane
    /// passes), summed over CPUs. They live in the (pinned) maps and are never zeroed, so they only grow,
    /// across updates and re-adoptions.
    pub fn chain_totals(&self) -> Result<ChainCounters> {
        let mut c = self.raw_chain_counters(0)?;
        c.add(&self.raw_chain_counters(1)?);
        c.control_plane = self.control_plane_passes()?;
        Ok(c)
    }

    /// Packets passed as the pod's own control-plane traffic (`ebpf/lib/control.h`).
    pub fn control_plane_passes(&self) -> Result<u64> {
        let per_cpu = self
            .maps
            .ctl_stats
            .get(&0, 0)
            .map_err(EngineError::map("vnf_ctl_stats"))?;
        Ok(per_cpu.iter().sum())
    }

    /// Writes the control-plane allow: TCP to `endpoints` (the pod's addresses with the ports of the
    /// daemon's TCP listeners) passes every chain. Replaces what was there; endpoints beyond the bounds
    /// of `control.h` are left out and returned in the plan. New endpoints are in place before the port
    /// list changes, old ones go last, so an endpoint that stays never misses a packet.
    pub fn set_control_plane(&mut self, endpoints: &[std::net::SocketAddr]) -> Result<ControlPlan> {
        let plan = control::plan(endpoints);
        for k in &plan.keys {
            self.maps
                .ctl_endpoints
                .insert(k, 1, 0)
                .map_err(EngineError::map("vnf_ctl_endpoints"))?;
        }
        self.maps
            .ctl_cfg
            .set(0, plan.cfg, 0)
            .map_err(EngineError::map("vnf_ctl_cfg"))?;
        let stale: Vec<CtlKey> = self
            .maps
            .ctl_endpoints
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !plan.keys.contains(k))
            .collect();
        for k in stale {
            ignore_missing(self.maps.ctl_endpoints.remove(&k), "vnf_ctl_endpoints")?;
        }
        Ok(plan)
    }

    /// The raw (never zeroed) counters of slot set `g`, summed over CPUs.
    fn raw_chain_counters(&self, g: u32) -> Result<ChainCounters> {
        let per_cpu = self
            .maps
            .chain_stats
            .get(&g, 0)
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
        let cfg = self
            .maps
            .fw_cfg
            .get(&instance, 0)
            .map_err(EngineError::map("vnf_fw_cfg"))?;
        if self.live.get(&instance) != Some(&abi::kind::FIREWALL) {
            return Err(EngineError::UnknownInstance(instance));
        }
        (0..cfg.nr_rules.min(abi::FW_MAX_RULES))
            .map(|i| {
                self.maps
                    .fw_hits
                    .get(&(cfg.rule_off + i), 0)
                    .map(|v| v.iter().sum())
                    .map_err(EngineError::map("vnf_fw_hits"))
            })
            .collect()
    }

    /// Hit counters of a firewall instance summed per rule priority: every
    /// engine rule compiled from one API rule carries that rule's index as
    /// its priority, so this is the hit count of each API rule.
    pub fn firewall_hits_by_priority(&self, instance: u32) -> Result<BTreeMap<u32, u64>> {
        let hits = self.firewall_rule_hits(instance)?;
        let prios = self
            .fw_priorities
            .get(&instance)
            .ok_or(EngineError::UnknownInstance(instance))?;
        let mut out = BTreeMap::new();
        for (p, h) in prios.iter().zip(hits) {
            *out.entry(*p).or_insert(0) += h;
        }
        Ok(out)
    }

    /// Keyed counters of a monitor counting by destination port or DSCP:
    /// key -> counters summed over CPUs (keys `abi::mon_by::NO_PORT` /
    /// `abi::mon_by::NO_DSCP` count packets without a port / non-IP frames).
    pub fn monitor_keyed(&self, instance: u32) -> Result<BTreeMap<u32, MonCounter>> {
        let state = self.state(instance);
        let mut out = BTreeMap::new();
        for item in self.maps.mon_keyed.iter() {
            let (k, per_cpu) = item.map_err(EngineError::map("vnf_mon_keyed"))?;
            if k.instance != state {
                continue;
            }
            let e: &mut MonCounter = out.entry(k.value).or_default();
            for v in per_cpu.iter() {
                e.packets += v.packets;
                e.bytes += v.bytes;
            }
        }
        Ok(out)
    }

    /// Per-class counters of a monitor instance (index = `abi::mon::*`).
    pub fn monitor_classes(&self, instance: u32) -> Result<Vec<MonCounter>> {
        let state = self.state(instance);
        (0..abi::MON_CLASSES)
            .map(|c| {
                self.maps
                    .mon_classes
                    .get(&(state * abi::MON_CLASSES + c), 0)
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
        let state = self.state(instance);
        self.maps
            .nat_ct
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == state)
            .count()
    }

    /// Number of tracked connections of a firewall instance.
    pub fn conntrack_entries(&self, instance: u32) -> usize {
        let state = self.state(instance);
        self.maps
            .ct
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.instance == state)
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

    // h-xdpfrag: begin (engine/fragreplay.rs)
    /// Starts the replay of parked fragments of an XDP engine (once; a TC engine releases them itself).
    fn start_frag_replay(&mut self) -> Result<()> {
        if self.hook != Hook::Xdp || self.frag_replay.is_some() {
            return Ok(());
        }
        let entry = self
            .prog_fds
            .get(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?
            .as_fd();
        self.frag_replay = Some(super::fragreplay::FragReplay::start(&mut self.ebpf, entry)?);
        Ok(())
    }

    /// The replay of parked fragments (XDP engines once attached).
    pub fn frag_replay(&self) -> Option<&super::fragreplay::FragReplay> {
        self.frag_replay.as_ref()
    }
    // h-xdpfrag: end

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
        self.attach_with(iface, XdpAttach::Auto)
    }

    /// Like [`Engine::attach`], with the XDP mode forced (`Native` or `Generic`) or
    /// automatic; ignored by a TC engine. When native XDP is refused, the reason
    /// names what blocks it on this interface (see [`super::diagnose`]).
    pub fn attach_with(&mut self, iface: &str, xdp: XdpAttach) -> Result<AttachInfo> {
        if self.links.iter().any(|(name, _)| name == iface) {
            return Err(EngineError::Config(format!("already attached to {iface}")));
        }
        if let Some(pins) = &self.pins {
            let path = pin::path(&pins.dir, &pin::link_name(iface));
            if path.exists() {
                return self.take_over(iface, &path);
            }
        }
        let prog = self
            .ebpf
            .program_mut(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?;
        let mut reasons = Vec::new();
        match self.hook {
            Hook::Xdp => {
                let p: &mut Xdp = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                let modes: &[(XdpMode, &'static str)] = match xdp {
                    XdpAttach::Auto => &[
                        (XdpMode::Driver, "xdp-native"),
                        (XdpMode::Skb, "xdp-generic"),
                    ],
                    XdpAttach::Native => &[(XdpMode::Driver, "xdp-native")],
                    XdpAttach::Generic => &[(XdpMode::Skb, "xdp-generic")],
                };
                for &(mode, label) in modes {
                    // before the first packet: the entry reads it to finish partial checksums right
                    if let Some(flags) = self.maps.if_flags.as_mut() {
                        set_if_flags(flags, iface, mode == XdpMode::Skb)?;
                    }
                    match p.attach(iface, mode) {
                        Ok(id) => {
                            return self.attached(iface, Link::Xdp(id), label, reasons);
                        }
                        Err(e) => {
                            let mut why = format!("{label}: {}", error_chain(&e));
                            if mode == XdpMode::Driver {
                                let blockers = super::diagnose::native_xdp_blockers(iface);
                                if !blockers.is_empty() {
                                    why = format!("{why} ({blockers})");
                                }
                            }
                            reasons.push(why);
                        }
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
                        return self.attached(iface, Link::Tc(id), "tc-ingress", reasons);
                    }
                    Err(e) => reasons.push(format!("tc-ingress: {}", error_chain(&e))),
                }
            }
        }
        if let Some(flags) = self.maps.if_flags.as_mut() {
            set_if_flags(flags, iface, false)?;
        }
        Err(EngineError::Attach {
            iface: iface.into(),
            reasons: reasons.join("; "),
        })
    }

    /// Records a new attachment; a kept engine pins its link first (it then survives the process).
    fn attached(
        &mut self,
        iface: &str,
        link: Link,
        mode: &'static str,
        fallback_reasons: Vec<String>,
    ) -> Result<AttachInfo> {
        let link = self.pin_link(iface, link)?;
        self.start_frag_replay()?; // h-xdpfrag
        self.links.push((iface.to_string(), link));
        self.modes.push((iface.to_string(), mode));
        Ok(AttachInfo {
            iface: iface.into(),
            hook: self.hook,
            mode,
            fallback_reasons,
        })
    }

    /// Pins a link of a kept engine in its directory (a no-op for other engines).
    fn pin_link(&mut self, iface: &str, link: Link) -> Result<Link> {
        let Some(dir) = self.pins.as_ref().map(|p| p.dir.clone()) else {
            return Ok(link);
        };
        let prog = self
            .ebpf
            .program_mut(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?;
        let not_fd = |e: aya::programs::links::LinkError| {
            pin_err(
                &dir,
                format!("the attachment to {iface} is not a BPF link and cannot be kept: {e}"),
            )
        };
        let fd = match link {
            Link::Xdp(id) => {
                let p: &mut Xdp = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                FdLink::try_from(p.take_link(id).map_err(EngineError::prog(ENTRY))?)
                    .map_err(not_fd)?
            }
            Link::Tc(id) => {
                let p: &mut SchedClassifier = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                FdLink::try_from(p.take_link(id).map_err(EngineError::prog(ENTRY))?)
                    .map_err(not_fd)?
            }
            pinned @ Link::Pinned { .. } => return Ok(pinned),
        };
        let path = pin::path(&dir, &pin::link_name(iface));
        let pinned = fd
            .pin(&path)
            .map_err(|e| pin_err(&dir, format!("pinning the link to {iface}: {e}")))?;
        Ok(Link::Pinned {
            link: FdLink::from(pinned),
            path,
        })
    }

    /// Makes the pinned link at `path` (left by an earlier process) run this engine's entry program:
    /// one atomic link update, so the interface never runs without a chain.
    fn replace_in_link(&mut self, iface: &str, path: &Path) -> Result<Link> {
        let dir = self
            .pins
            .as_ref()
            .map(|p| p.dir.clone())
            .unwrap_or_default();
        let bad = |what: String| pin_err(&dir, format!("link to {iface}: {what}"));
        let fd: FdLink = PinnedLink::from_pin(path)
            .map_err(|e| bad(format!("opening {}: {e}", path.display())))?
            .into();
        let prog = self
            .ebpf
            .program_mut(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?;
        let fd = match self.hook {
            Hook::Xdp => {
                let p: &mut Xdp = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                let link =
                    XdpLink::try_from(fd).map_err(|e| bad(format!("not an XDP link: {e}")))?;
                let id = p
                    .attach_to_link(link)
                    .map_err(|e| bad(format!("replacing its program: {}", error_chain(&e))))?;
                FdLink::try_from(p.take_link(id).map_err(EngineError::prog(ENTRY))?)
                    .map_err(|e| bad(e.to_string()))?
            }
            Hook::Tc => {
                let p: &mut SchedClassifier = prog.try_into().map_err(EngineError::prog(ENTRY))?;
                let link = SchedClassifierLink::try_from(fd)
                    .map_err(|e| bad(format!("not a TC link: {e}")))?;
                let id = p
                    .attach_to_link(link)
                    .map_err(|e| bad(format!("replacing its program: {}", error_chain(&e))))?;
                FdLink::try_from(p.take_link(id).map_err(EngineError::prog(ENTRY))?)
                    .map_err(|e| bad(e.to_string()))?
            }
        };
        Ok(Link::Pinned {
            link: fd,
            path: path.to_path_buf(),
        })
    }

    /// Attaches by taking over the kept link on `iface` that an earlier process left (its state record
    /// was unusable, so this engine starts afresh): the link's program is replaced atomically.
    fn take_over(&mut self, iface: &str, path: &Path) -> Result<AttachInfo> {
        let link = self.replace_in_link(iface, path)?;
        self.start_frag_replay()?; // h-xdpfrag
        let mode = match self.hook {
            Hook::Tc => "tc-ingress",
            Hook::Xdp if super::diagnose::native_xdp_blockers(iface).is_empty() => "xdp-native",
            Hook::Xdp => "xdp-generic",
        };
        self.links.push((iface.to_string(), link));
        self.modes.push((iface.to_string(), mode));
        Ok(AttachInfo {
            iface: iface.into(),
            hook: self.hook,
            mode,
            fallback_reasons: vec![format!(
                "took over the link kept in {} (its program replaced atomically)",
                path.display()
            )],
        })
    }

    /// Loads the attach point for `hook` as a kept chain: its maps are pinned in `dir` (a bpffs
    /// directory, see [`pin::prepare_dir`]) with a state record, and every attachment is pinned there
    /// when made, so the chain keeps running when the process ends, even by SIGKILL. Pins already in
    /// `dir` (a chain that could not be re-adopted) are replaced; a link kept there is taken over by
    /// [`Engine::attach`] with an atomic program replacement.
    pub fn load_kept(hook: Hook, dir: &Path) -> Result<Self> {
        // hold the old chain's program array while its pins go: its tail calls keep working until
        // the links run the new entry program
        std::fs::create_dir_all(dir)
            .map_err(|e| pin_err(dir, format!("creating the directory: {e}")))?;
        let held = MapData::from_pin(pin::path(dir, "vnf_progs")).ok();
        pin::remove_all_but_links(dir)?;
        let ebpf = Ebpf::load(Self::object(hook))?;
        let names = map_names(hook);
        // every map must be shared with the next process (global data sections start with '.')
        if let Some((other, _)) = ebpf
            .maps()
            .find(|(n, _)| !n.starts_with('.') && !names.contains(n))
        {
            return Err(pin_err(
                dir,
                format!("map {other} is not in the engine's list of pinned maps"),
            ));
        }
        for name in names {
            let map = ebpf
                .map(name)
                .ok_or_else(|| EngineError::Missing(format!("map {name}")))?;
            map.pin(pin::path(dir, name))
                .map_err(|e| pin_err(dir, format!("pinning {name}: {e}")))?;
        }
        let record = RecordMap::create(dir)?;
        let mut e = Self::from_object(ebpf, hook)?;
        e.pins = Some(Pins {
            dir: dir.to_path_buf(),
            record,
            held,
            armed: true,
        });
        Ok(e)
    }

    /// Reads the state record of the chain kept in `dir`; an error says why it cannot be adopted
    /// (no record, unreadable, another build of the eBPF objects).
    pub fn read_record(dir: &Path) -> Result<PinnedRecord> {
        let text = RecordMap::open(dir)?.read()?;
        let rec: PinnedRecord = serde_json::from_str(&text)
            .map_err(|e| pin_err(dir, format!("state record unreadable: {e}")))?;
        let build = pin::build_id();
        if rec.build != build {
            return Err(pin_err(
                dir,
                format!(
                    "pinned by another build of the eBPF objects ({}, this is {build})",
                    rec.build
                ),
            ));
        }
        Ok(rec)
    }

    /// Re-adopts the chain kept in `dir`: loads the programs against the pinned maps (counters,
    /// flows, buckets continue), points the tail calls of both generations at them and replaces the
    /// program of each pinned link atomically; traffic never stops. `active` is the configuration
    /// of the record's active generation (from what the owner stored), so unchanged functions keep
    /// their instances on the next [`Engine::apply`]. All or nothing: on error the kept chain runs
    /// on untouched (the caller may then start afresh with [`Engine::load_kept`]).
    pub fn adopt(
        dir: &Path,
        rec: PinnedRecord,
        active: &ChainConfig,
    ) -> Result<(Self, Vec<AttachInfo>)> {
        let hook = rec.hook();
        let names = map_names(hook);
        let paths: Vec<PathBuf> = names.iter().map(|n| pin::path(dir, n)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.exists()) {
            return Err(pin_err(
                dir,
                format!("missing pinned map {}", missing.display()),
            ));
        }
        for l in &rec.links {
            let path = pin::path(dir, &pin::link_name(&l.iface));
            if !path.exists() {
                return Err(pin_err(
                    dir,
                    format!("missing pinned link {}", path.display()),
                ));
            }
        }
        let st = &rec.engine;
        let act = st.active as usize;
        if act > 1 || st.generations[act].len() != active.functions.len() {
            return Err(pin_err(
                dir,
                "the state record's active generation does not match the chain stored with it",
            ));
        }
        let mut loader = EbpfLoader::new();
        for (name, path) in names.iter().zip(&paths) {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader.load(Self::object(hook))?;
        let mut e = Self::from_object(ebpf, hook)?;
        let running = e
            .maps
            .active_gen
            .get(&0, 0)
            .map_err(EngineError::map("vnf_active_gen"))?;
        if running != st.active {
            return Err(pin_err(
                dir,
                format!(
                    "the maps run generation {running}, the record says {} (an apply was cut short)",
                    st.active
                ),
            ));
        }
        for (pos, inst) in st.generations[act].iter().enumerate() {
            let slot = e
                .maps
                .slots
                .get(&(st.active * abi::MAX_CHAIN + pos as u32), 0)
                .map_err(EngineError::map("vnf_slots"))?;
            if slot.instance != *inst {
                return Err(pin_err(
                    dir,
                    format!(
                        "slot {pos} runs instance {}, the record says {inst}",
                        slot.instance
                    ),
                ));
            }
        }
        e.restore(&rec.engine);
        for (inst, f) in rec.engine.generations[act].iter().zip(&active.functions) {
            e.fn_cfg.insert(*inst, f.clone());
        }
        // the new function programs serve both generations' slots (the old entry program, still
        // attached, tail-calls into them too: same build, same maps)
        for g in 0..2u32 {
            for (pos, inst) in e.generations[g as usize].clone().into_iter().enumerate() {
                let Some(&kind) = e.live.get(&inst) else {
                    continue;
                };
                let prog = program_of_kind(kind).ok_or_else(|| {
                    pin_err(dir, format!("instance {inst} has unknown kind {kind}"))
                })?;
                e.set_slot(g, pos as u32, inst, kind, prog)?;
            }
        }
        let record = RecordMap::open(dir)?;
        e.pins = Some(Pins {
            dir: dir.to_path_buf(),
            record,
            held: None,
            armed: false,
        });
        let mut infos = Vec::new();
        for l in &rec.links {
            let path = pin::path(dir, &pin::link_name(&l.iface));
            let link = e.replace_in_link(&l.iface, &path)?;
            e.start_frag_replay()?; // h-xdpfrag
            let mode = mode_label(&l.mode).unwrap_or("xdp-native");
            e.links.push((l.iface.clone(), link));
            e.modes.push((l.iface.clone(), mode));
            infos.push(AttachInfo {
                iface: l.iface.clone(),
                hook,
                mode,
                fallback_reasons: Vec::new(),
            });
        }
        if let Some(p) = e.pins.as_mut() {
            p.armed = true;
        }
        info!(
            "re-adopted the {hook:?} chain pinned in {} (active slot set {})",
            dir.display(),
            st.active
        );
        Ok((e, infos))
    }

    fn restore(&mut self, st: &EngineState) {
        self.active = st.active;
        self.generations = st.generations.clone();
        self.live = st.live.iter().copied().collect();
        self.names = st
            .names
            .iter()
            .map(|(i, n, c)| (*i, (n.clone(), *c)))
            .collect();
        self.state_of = st.state_of.iter().copied().collect();
        self.state_refs = st.state_refs.iter().copied().collect();
        self.free_ids = st.free_ids.iter().copied().collect();
        self.fw_keys = st.fw_keys.iter().cloned().collect();
        self.fw_priorities = st.fw_priorities.iter().cloned().collect();
        self.fw_regions = st.fw_regions.iter().copied().collect();
        self.cls_keys = st.cls_keys.clone();
        self.nat_keys = st
            .nat_keys
            .iter()
            .map(|(i, p, d)| (*i, (p.clone(), d.clone())))
            .collect();
        self.lb_regions = st.lb_regions.iter().copied().collect();
        self.gen_base = st.gen_base.clone();
    }

    fn state_record(&self) -> EngineState {
        fn sorted<K: Ord + Copy, V: Clone>(m: &HashMap<K, V>) -> Vec<(K, V)> {
            let mut v: Vec<(K, V)> = m.iter().map(|(k, v)| (*k, v.clone())).collect();
            v.sort_by_key(|(k, _)| *k);
            v
        }
        EngineState {
            active: self.active,
            generations: self.generations.clone(),
            live: sorted(&self.live),
            names: sorted(&self.names)
                .into_iter()
                .map(|(i, (n, c))| (i, n, c))
                .collect(),
            state_of: sorted(&self.state_of),
            state_refs: sorted(&self.state_refs),
            free_ids: self.free_ids.iter().copied().collect(),
            fw_keys: sorted(&self.fw_keys),
            fw_priorities: sorted(&self.fw_priorities),
            fw_regions: sorted(&self.fw_regions),
            cls_keys: self.cls_keys.clone(),
            nat_keys: sorted(&self.nat_keys)
                .into_iter()
                .map(|(i, (p, d))| (i, p, d))
                .collect(),
            lb_regions: sorted(&self.lb_regions),
            gen_base: self.gen_base.clone(),
        }
    }

    /// Writes the state record of a kept engine, with `owner`'s data (what the daemon needs to
    /// re-adopt: its spec and generation). Call after every change (apply, attach). A no-op for
    /// engines that are not kept.
    pub fn save_record(&mut self, owner: &str) -> Result<()> {
        let state = self.state_record();
        let links = self
            .modes
            .iter()
            .map(|(iface, mode)| LinkRecord {
                iface: iface.clone(),
                mode: (*mode).to_string(),
            })
            .collect();
        let hook = hook_name(self.hook);
        let Some(pins) = self.pins.as_mut() else {
            return Ok(());
        };
        let rec = PinnedRecord {
            build: pin::build_id(),
            hook: hook.into(),
            links,
            engine: state,
            owner: owner.into(),
        };
        let text = serde_json::to_string(&rec)
            .map_err(|e| pin_err(&pins.dir, format!("encoding the state record: {e}")))?;
        pins.record.write(&text)?;
        // every link now runs this engine's programs: the replaced chain may go
        pins.held = None;
        Ok(())
    }

    /// Removes the kept links of interfaces this engine is not attached to (a chain that moved to
    /// other interfaces): their programs detach.
    pub fn remove_stale_links(&mut self) -> Result<()> {
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        let ours: HashSet<String> = self
            .links
            .iter()
            .map(|(iface, _)| pin::link_name(iface))
            .collect();
        let Ok(entries) = std::fs::read_dir(&pins.dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("link_") && !ours.contains(&name) {
                info!("detaching the kept {name}: the chain no longer uses that interface");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// The pin directory of a kept engine.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(|p| p.dir.as_path())
    }

    /// Lets go of a kept chain without detaching it: the programs stay attached and the maps pinned
    /// for the next process to re-adopt. Fails for an engine that is not kept (nothing would survive).
    pub fn keep(&mut self) -> Result<()> {
        let Some(pins) = self.pins.as_mut() else {
            return Err(EngineError::Config(
                "the chain is not pinned, so it cannot be kept".into(),
            ));
        };
        pins.armed = false;
        if self
            .links
            .iter()
            .any(|(_, l)| !matches!(l, Link::Pinned { .. }))
        {
            return Err(EngineError::Config(
                "an attachment is not pinned, so it cannot be kept".into(),
            ));
        }
        // closing the link fds leaves the links: their pins hold them
        self.links.clear();
        self.modes.clear();
        Ok(())
    }

    /// Interfaces the engine is attached to.
    pub fn attached_interfaces(&self) -> Vec<&str> {
        self.links.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Detaches the entry program from every interface (also happens when
    /// the engine is dropped).
    pub fn detach(&mut self) -> Result<()> {
        self.detach_egress()?; // h-egress: sidecar mode's TC egress goes too
        self.modes.clear();
        while let Some((_, link)) = self.links.pop() {
            if let Link::Pinned { link, path } = link {
                // unpinned and closed: the link goes and the program with it
                std::fs::remove_file(&path).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(EngineError::Io(e))
                    }
                })?;
                drop(link);
                continue;
            }
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
                Link::Pinned { .. } => {}
            }
        }
        // a kept engine owns its pins: they go with the attachments
        if let Some(pins) = self.pins.take() {
            drop(pins.record);
            pin::remove_all(&pins.dir)?;
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

/// `vnf_gen_flags` of a chain: replies run it in reverse order when it translates (NAT, LB) and has more
/// than one function before its terminal one (forwarder, user-space hand-off), so each function undoes
/// its own work in the opposite order.
fn gen_flags(functions: &[FunctionConfig]) -> u32 {
    let body = match functions.last().map(|f| &f.kind) {
        Some(FunctionKind::Forwarder(_) | FunctionKind::UserspaceHandoff) => {
            &functions[..functions.len() - 1]
        }
        _ => functions,
    };
    let translates = body
        .iter()
        .any(|f| matches!(f.kind, FunctionKind::Nat(_) | FunctionKind::LoadBalancer(_)));
    if translates && body.len() > 1 {
        abi::GEN_F_REVERSE_REPLIES
    } else {
        0
    }
}

/// Records whether the entry runs in generic XDP mode on `iface` (`vnf_if_flags`); no entry means native.
fn set_if_flags(
    flags: &mut BpfHashMap<MapData, u32, u32>,
    iface: &str,
    generic: bool,
) -> Result<()> {
    let Some(ifindex) = crate::daemon::ifindex(iface) else {
        return Ok(()); // attach reports the missing interface
    };
    if generic {
        flags
            .insert(ifindex, abi::IF_F_XDP_GENERIC, 0)
            .map_err(EngineError::map("vnf_if_flags"))
    } else if flags.get(&ifindex, 0).is_ok() {
        flags
            .remove(&ifindex)
            .map_err(EngineError::map("vnf_if_flags"))
    } else {
        Ok(())
    }
}

/// Removes recorded prefix keys from the `[source, destination]` LPM tries of each address family.
fn remove_prefixes<V: aya::Pod>(
    keys: PrefixKeys,
    tries4: [&mut LpmTrie<MapData, Lpm4Data, V>; 2],
    tries6: [&mut LpmTrie<MapData, Lpm6Data, V>; 2],
    (name4, name6): (&'static str, &'static str),
) -> Result<()> {
    let [src4, dst4] = tries4;
    let [src6, dst6] = tries6;
    for (plen, data, dst) in keys.v4 {
        let trie = if dst { &mut *dst4 } else { &mut *src4 };
        ignore_missing(trie.remove(&Key::new(plen, data)), name4)?;
    }
    for (plen, data, dst) in keys.v6 {
        let trie = if dst { &mut *dst6 } else { &mut *src6 };
        ignore_missing(trie.remove(&Key::new(plen, data)), name6)?;
    }
    Ok(())
}

/// Keys of the state maps that hold entries of many function instances.
trait InstanceKey {
    /// The function instance the entry belongs to.
    fn instance(&self) -> u32;
}

impl InstanceKey for CtKey {
    fn instance(&self) -> u32 {
        self.instance
    }
}

impl InstanceKey for RlKey {
    fn instance(&self) -> u32 {
        self.instance
    }
}

impl InstanceKey for NatKey {
    fn instance(&self) -> u32 {
        self.instance
    }
}

/// Removes every entry of instance `inst` from a per-instance state map (conntrack, buckets, NAT).
fn purge_instance<K, V>(
    map: &mut BpfHashMap<MapData, K, V>,
    inst: u32,
    name: &'static str,
) -> Result<()>
where
    K: aya::Pod + InstanceKey,
    V: aya::Pod,
{
    let keys: Vec<K> = map
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| k.instance() == inst)
        .collect();
    for k in keys {
        ignore_missing(map.remove(&k), name)?;
    }
    Ok(())
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
            dst: vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "2001:db8::/32".parse().expect("cidr"),
            ],
            dst_ports: vec![
                PortRange::new(53, 53).expect("range"),
                PortRange::new(5000, 5010).expect("range"),
            ],
            ..Default::default()
        };
        let (a, prefixes) = classifier_abi(&c).expect("valid");
        assert_eq!(a.fields, abi::cls::PROTO | abi::cls::DST | abi::cls::DPORT);
        assert_eq!((a.proto, a.nr_dports, a.nr_sports), (17, 2, 0));
        assert_eq!((a.dports[0].lo, a.dports[0].hi), (53, 53));
        assert_eq!((a.dports[1].lo, a.dports[1].hi), (5000, 5010));
        assert_eq!(prefixes.len(), 2);
        assert!(prefixes.iter().all(|(_, dst)| *dst));
        let mixed = ClassifierConfig {
            family: Some(6),
            src: vec!["10.0.0.0/8".parse().expect("cidr")],
            ..Default::default()
        };
        assert!(classifier_abi(&mixed).is_err());
        let too_many = ClassifierConfig {
            protocol: Some(6),
            src_ports: vec![PortRange::single(1); abi::CLS_MAX_PORTS + 1],
            ..Default::default()
        };
        assert!(classifier_abi(&too_many).is_err());
        assert_eq!(
            classifier_abi(&ClassifierConfig::default())
                .expect("valid")
                .0
                .fields,
            0
        );
    }

    #[test]
    fn ratelimit_encoding() {
        let c = RateLimiterConfig {
            packets_per_sec: Some(1000),
            burst_packets: 10,
            bits_per_sec: Some(8_000_000),
            burst_bytes: 15_000,
            ..Default::default()
        };
        let a = ratelimit_abi(&c).expect("valid");
        assert_eq!(a.pkt_tau_ns, 10 * 1_000_000);
        // 15 000 bytes at 1 MB/s
        assert_eq!(a.byte_tau_ns, 15_000_000);
        assert_eq!(a.pkt_inc_ns, 1_000_000);
        // 1 µs per byte at 8 Mbit/s, in 16.16 fixed point
        assert_eq!(a.byte_inc_q16, 1_000 << 16);
        assert!(ratelimit_abi(&RateLimiterConfig::default()).is_err());
        let no_burst = RateLimiterConfig {
            packets_per_sec: Some(5),
            ..Default::default()
        };
        assert!(ratelimit_abi(&no_burst).is_err());
    }
}
