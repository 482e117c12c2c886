//! Loads an attach point and composes chains: generations, slots, function instances and state ids,
//! with atomic generation switches.
//!
//! What each network function writes is in `nf/<function>.rs`; attaching (and the hooks beside the
//! entry program) in `attach.rs`; keeping and re-adopting a chain in `pin.rs`; counters in
//! `telemetry.rs`.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use aya::maps::PerCpuValues;
use aya::programs::{ProgramFd, SchedClassifier, Xdp};
use aya::{Ebpf, EbpfLoader};
use log::{debug, info};

use super::abi::{self, FnStats, GenCfg, InstanceCfg, Slot};
use super::attach::Link;
use super::classifier;
use super::config::{ChainConfig, FunctionConfig, FunctionKind, LbConfig};
use super::error::{EngineError, Result};
use super::maps::{Bundle, ChainMaps, PrefixKeys, ignore_missing};
use super::nf::{self, Functions, NetworkFunction, Prepared};
use super::objects;
use super::pin::Pins;

pub use super::attach::{AttachInfo, XdpAttach};
pub use super::pin::PinnedRecord;
pub use super::telemetry::{ChainCounters, FunctionStats};
pub use super::testrun::TestRunOutcome;

/// Name of the entry (classifier) program in both attach points.
pub(crate) const ENTRY: &str = "vnf_entry";
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

/// A loaded attach point (XDP or TC) with its maps and chain state.
pub struct Engine {
    pub(super) ebpf: Ebpf,
    pub(super) hook: Hook,
    /// The chain's own maps.
    pub(super) maps: ChainMaps,
    /// Every network function's maps and bookkeeping.
    pub(super) nf: Functions,
    pub(super) prog_fds: HashMap<&'static str, ProgramFd>,
    pub(super) nr_cpus: usize,
    pub(super) active: u32,
    /// Instance ids used by each generation.
    pub(super) generations: [Vec<u32>; 2],
    /// Kinds of live instances.
    pub(super) live: HashMap<u32, u32>,
    /// Name and state class of each live instance (a function keeping name, kind and
    /// state class keeps its state).
    pub(super) names: HashMap<u32, (String, u32)>,
    /// State id of each live instance (see `state` in `struct vnf_instance_cfg`).
    pub(super) state_of: HashMap<u32, u32>,
    /// Live instances using each state id; an id is free only when neither an
    /// instance nor a state holds it.
    pub(super) state_refs: HashMap<u32, u32>,
    /// Configuration of each live instance (an unchanged function keeps its instance).
    pub(super) fn_cfg: HashMap<u32, FunctionConfig>,
    pub(super) free_ids: BTreeSet<u32>,
    /// Classifier prefixes written for each generation.
    pub(super) cls_keys: [PrefixKeys; 2],
    /// Per generation, the slots from this position on are empty (a loaded or re-adopted chain's
    /// maps count as written throughout).
    pub(super) slots_used: [u32; 2],
    pub(super) last_flip: Option<Instant>,
    /// Raw counters of each generation's slot when it was last activated: the kernel's chain counters
    /// are never zeroed (exported totals never go back), per-generation counts subtract this.
    pub(super) gen_base: [ChainCounters; 2],
    /// Attachments, by interface name.
    pub(super) links: Vec<(String, Link)>,
    /// Attach mode label of each attached interface.
    pub(super) modes: Vec<(String, &'static str)>,
    /// Set when the chain is kept across restarts.
    pub(super) pins: Option<Pins>,
    /// Sidecar mode's TC egress attachments ([`super::egress`]).
    pub(super) egress: super::egress::EgressLinks,
    /// The replay of parked fragments of an XDP engine, started by its first attachment
    /// ([`super::fragreplay`]).
    pub(super) frag_replay: Option<super::fragreplay::FragReplay>,
    /// Established flows take the fast path (`ebpf/lib/fastpath.h`); on by default, off only to
    /// compare both paths ([`Engine::set_fast_path`]).
    pub(super) fast_path: bool,
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

/// A chain checked whole and encoded, before any map is touched.
struct Composed {
    cls: abi::Classifier,
    cls_prefixes: Vec<(super::config::IpCidr, bool)>,
    steps: Vec<Step>,
}

/// What becomes of one function of a chain being applied.
enum Step {
    /// The running instance with the same configuration serves it (nothing is encoded or written).
    Reuse(u32),
    /// A new instance, with its encoded configuration.
    Fresh(Prepared),
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

/// Every program of the attach point: the entry program and every function's. Another entry program
/// (a second hook of the same object) joins here and is attached in `attach.rs`; its maps go into a
/// bundle of `maps.rs` (or `PINNED_ONLY`).
fn all_programs() -> impl Iterator<Item = &'static str> {
    std::iter::once(ENTRY).chain(nf::PROGRAMS.iter().copied())
}

/// Loads the programs `wanted` of `ebpf`, on every core at once (the verifier is most of the load
/// time).
///
/// The loader threads take the next program from one queue in `wanted`'s order (the entry program
/// first), so a thread that verified a short program goes on with the next one instead of a fixed
/// share: the start takes about the verification time of the busier core, whatever order the object
/// lists its programs in.
fn load_programs(
    ebpf: &mut Ebpf,
    hook: Hook,
    wanted: &[&'static str],
) -> Result<HashMap<&'static str, ProgramFd>> {
    let mut progs: Vec<(&'static str, &mut aya::programs::Program)> = Vec::new();
    for (name, prog) in ebpf.programs_mut() {
        if let Some(&w) = wanted.iter().find(|w| **w == name) {
            progs.push((w, prog));
        }
    }
    if let Some(missing) = wanted.iter().find(|w| !progs.iter().any(|(n, _)| n == *w)) {
        return Err(EngineError::Missing(format!("program {missing}")));
    }
    progs.sort_by_key(|(name, _)| wanted.iter().position(|w| w == name));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, progs.len());
    // reversed: the threads pop from the end
    progs.reverse();
    let queue = std::sync::Mutex::new(progs);
    let next = || queue.lock().ok().and_then(|mut q| q.pop());
    let loaded: Vec<Result<Vec<(&'static str, ProgramFd)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some((name, prog)) = next() {
                        done.push((name, load_program(hook, name, prog)?));
                    }
                    Ok(done)
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
    Ok(prog_fds)
}

/// The object loader: without the kernel's BTF, which the engine's objects do not need (no CO-RE
/// relocations). `Ebpf::load` parses `/sys/kernel/btf/vmlinux` (megabytes) twice, a good part of the
/// daemon's start; `EbpfLoader::new` still parses it once.
pub(super) fn object_loader<'a>() -> EbpfLoader<'a> {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    loader
}

impl Engine {
    /// Loads the attach point for `hook`; the chain starts empty (all traffic bypasses).
    pub fn load(hook: Hook) -> Result<Self> {
        Self::from_object(object_loader().load(Self::object(hook))?, hook)
    }

    /// [`Engine::load`] that verifies no program yet: the first [`Engine::apply`] loads the entry
    /// program with the programs of its functions, and a later apply whose chain needs another
    /// program loads it before anything of the new generation is written (so before its switch).
    /// Attach only after an apply. Saves the start the verification of the programs the chain does
    /// not run (the forwarder's and the user-space hand-off's in the edge chain).
    pub fn load_lazily(hook: Hook) -> Result<Self> {
        Self::with_maps(object_loader().load(Self::object(hook))?, hook)
    }

    /// Loads the programs in `names` (and the entry program) that are not loaded yet, in parallel.
    fn load_missing(&mut self, names: impl IntoIterator<Item = &'static str>) -> Result<()> {
        let mut wanted: Vec<&'static str> = Vec::new();
        for name in std::iter::once(ENTRY).chain(names) {
            if !self.prog_fds.contains_key(name) && !wanted.contains(&name) {
                wanted.push(name);
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let fds = load_programs(&mut self.ebpf, self.hook, &wanted)?;
        self.prog_fds.extend(fds);
        info!(
            "loaded {} program(s) of the {:?} attach point: {}",
            wanted.len(),
            self.hook,
            wanted.join(", ")
        );
        Ok(())
    }

    pub(super) fn object(hook: Hook) -> &'static [u8] {
        match hook {
            Hook::Xdp => objects::XDP_CHAIN,
            Hook::Tc => objects::TC_CHAIN,
        }
    }

    /// Loads the programs of `ebpf` and takes its maps.
    pub(super) fn from_object(ebpf: Ebpf, hook: Hook) -> Result<Self> {
        let mut engine = Self::with_maps(ebpf, hook)?;
        engine.load_missing(all_programs())?;
        Ok(engine)
    }

    /// Takes the maps of `ebpf`; no program is loaded yet.
    fn with_maps(mut ebpf: Ebpf, hook: Hook) -> Result<Self> {
        let maps = ChainMaps::take(&mut ebpf, hook)?;
        let nf = Functions::take(&mut ebpf, hook)?;
        let nr_cpus = aya::util::nr_cpus().map_err(|(_, e)| EngineError::Io(e))?;
        Ok(Self {
            ebpf,
            hook,
            maps,
            nf,
            prog_fds: HashMap::new(),
            nr_cpus,
            active: 0,
            generations: [Vec::new(), Vec::new()],
            live: HashMap::new(),
            names: HashMap::new(),
            state_of: HashMap::new(),
            state_refs: HashMap::new(),
            fn_cfg: HashMap::new(),
            free_ids: (1..abi::MAX_INSTANCES).collect(),
            cls_keys: Default::default(),
            slots_used: [abi::MAX_CHAIN; 2],
            last_flip: None,
            gen_base: Default::default(),
            links: Vec::new(),
            modes: Vec::new(),
            pins: None,
            egress: Default::default(),
            frag_replay: None,
            fast_path: true,
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
        // a function whose configuration did not change keeps its running instance: nothing of
        // it is encoded again or rewritten, only the new generation's slot points at it
        let reuse = self.reusable(&chain.functions);
        // validate everything before touching a map
        let composed = Self::compose(chain, &reuse)?;
        // the programs of new functions are verified before anything is written
        self.load_missing(composed.steps.iter().filter_map(|s| match s {
            Step::Fresh(p) => Some(p.program()),
            Step::Reuse(_) => None,
        }))?;
        let target = 1 - self.active;
        self.retire(target)?;
        let fresh = reuse.iter().filter(|r| r.is_none()).count();
        if self.free_ids.len() < fresh {
            return Err(EngineError::NoInstanceIds(abi::MAX_INSTANCES - 1));
        }
        self.write_classifier_prefixes(target, &composed.cls_prefixes)?;
        let mut heirs = self.heirs(&reuse);
        let mut instances = Vec::with_capacity(composed.steps.len());
        for (pos, (f, step)) in chain.functions.iter().zip(&composed.steps).enumerate() {
            let (inst, kind, program, how) = match step {
                Step::Reuse(inst) => {
                    self.generations[target as usize].push(*inst);
                    let kind = self.live.get(inst).copied().unwrap_or_default();
                    let program = nf::program_of_kind(kind).ok_or_else(|| {
                        EngineError::Missing(format!("program of instance {inst} (kind {kind})"))
                    })?;
                    (*inst, kind, program, "unchanged")
                }
                Step::Fresh(p) => {
                    let inst = self.new_instance(target, f, p, &mut heirs)?;
                    (inst, p.kind(), p.program(), p.program())
                }
            };
            self.set_slot(target, pos as u32, inst, kind, program)?;
            debug!(
                "gen {target} pos {pos}: {} = instance {inst} ({how})",
                f.name
            );
            instances.push(inst);
        }
        self.clear_slots(target, composed.steps.len() as u32)?;
        self.switch_to(target, chain, composed)?;
        // after the switch: a result cached from here on was decided by the new generation
        self.bump_fast_path_epoch()?;
        debug!("slot set {target} active: {} functions", instances.len());
        Ok(AppliedChain {
            generation: target,
            instances,
        })
    }

    /// Checks and encodes a whole chain (classifier, non-IP list, every function but those `reuse`
    /// names a running instance for: their configuration was checked and encoded when they started).
    fn compose(chain: &ChainConfig, reuse: &[Option<u32>]) -> Result<Composed> {
        if chain.functions.len() > abi::MAX_CHAIN as usize {
            return Err(EngineError::Config(format!(
                "chain has {} functions, at most {} are supported",
                chain.functions.len(),
                abi::MAX_CHAIN
            )));
        }
        let (cls, cls_prefixes) = classifier::encode(&chain.classifier)?;
        chain.non_ip.check().map_err(EngineError::Config)?;
        let steps = chain
            .functions
            .iter()
            .zip(reuse)
            .map(|(f, reused)| match reused {
                Some(inst) => Ok(Step::Reuse(*inst)),
                None => nf::prepare(&f.kind).map(Step::Fresh),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Composed {
            cls,
            cls_prefixes,
            steps,
        })
    }

    /// Waits out the grace period of the last switch, then releases the instances of generation
    /// `target` that the running generation does not share.
    fn retire(&mut self, target: u32) -> Result<()> {
        if let Some(t) = self.last_flip {
            let since = t.elapsed();
            if since < GENERATION_GRACE {
                std::thread::sleep(GENERATION_GRACE - since);
            }
        }
        let active = self.active as usize;
        for inst in std::mem::take(&mut self.generations[target as usize]) {
            if !self.generations[active].contains(&inst) {
                self.release_instance(inst)?;
            }
        }
        Ok(())
    }

    /// For each function, the running instance with the same configuration, if any.
    fn reusable(&self, functions: &[FunctionConfig]) -> Vec<Option<u32>> {
        let mut unchanged = self.generations[self.active as usize].clone();
        functions
            .iter()
            .map(|f| {
                let at = unchanged
                    .iter()
                    .position(|i| self.fn_cfg.get(i) == Some(f))?;
                Some(unchanged.swap_remove(at))
            })
            .collect()
    }

    /// Functions of the running generation by (name, kind, state class) and their state ids: their
    /// successors inherit their state (flows, buckets, counters). Reused instances keep their own.
    fn heirs(&self, reuse: &[Option<u32>]) -> HashMap<(String, u32, u32), u32> {
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
        heirs
    }

    /// Takes a free instance id for `f` in generation `target` (recorded there first, so a failure
    /// half-way is released with the generation), gives it its predecessor's state (or fresh state)
    /// and writes its configuration.
    fn new_instance(
        &mut self,
        target: u32,
        f: &FunctionConfig,
        p: &Prepared,
        heirs: &mut HashMap<(String, u32, u32), u32>,
    ) -> Result<u32> {
        let inst = self
            .free_ids
            .pop_first()
            .ok_or(EngineError::NoInstanceIds(abi::MAX_INSTANCES - 1))?;
        self.generations[target as usize].push(inst);
        let kind = p.kind();
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
        self.nf.write(inst, p, self.nr_cpus)?;
        let cfg = InstanceCfg {
            kind,
            latency_sample_rate: f.latency_sample_rate,
            state,
            _pad: 0,
        };
        self.maps
            .instances
            .set(inst, cfg, 0)
            .map_err(EngineError::map(ChainMaps::INSTANCES))?;
        Ok(inst)
    }

    /// Empties the slots of generation `target` from position `from` on (up to the last one written
    /// there: the rest are empty already).
    fn clear_slots(&mut self, target: u32, from: u32) -> Result<()> {
        let used = std::mem::replace(&mut self.slots_used[target as usize], from);
        for pos in from..used.max(from) {
            let slot = target * abi::MAX_CHAIN + pos;
            self.maps
                .slots
                .set(slot, Slot::default(), 0)
                .map_err(EngineError::map(ChainMaps::SLOTS))?;
            ignore_missing(self.maps.progs.clear_index(&slot), ChainMaps::PROGS)?;
        }
        Ok(())
    }

    /// Writes generation `target`'s configuration and flags, then makes it the active one: the
    /// switch is one word.
    fn switch_to(&mut self, target: u32, chain: &ChainConfig, c: Composed) -> Result<()> {
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
        let mut non_ip = [0u16; abi::NON_IP_MAX];
        non_ip[..chain.non_ip.allow.len()].copy_from_slice(&chain.non_ip.allow);
        let gen_cfg = GenCfg {
            chain_len: c.steps.len() as u32,
            latency_sample_rate: sample_rate,
            cls: c.cls,
            non_ip,
            nr_non_ip: chain.non_ip.allow.len() as u32,
        };
        self.maps
            .gen_cfg
            .set(target, gen_cfg, 0)
            .map_err(EngineError::map(ChainMaps::GEN_CFG))?;
        self.maps
            .gen_flags
            .set(target, gen_flags(&chain.functions, self.fast_path), 0)
            .map_err(EngineError::map(ChainMaps::GEN_FLAGS))?;
        // the slot's counters are not zeroed (the chain's totals must never go back, see
        // `chain_totals`): the generation's own counts start from here
        self.gen_base[target as usize] = self.raw_chain_counters(target)?;
        self.maps
            .active_gen
            .set(0, target, 0)
            .map_err(EngineError::map(ChainMaps::ACTIVE_GEN))?;
        self.active = target;
        self.last_flip = Some(Instant::now());
        Ok(())
    }

    /// Whether established flows take the fast path (the default).
    pub fn fast_path(&self) -> bool {
        self.fast_path
    }

    /// Turns the fast path for established flows on or off, for the active generation at once and
    /// for every generation applied later. Off, every packet runs the whole chain: the reference
    /// the fast path is compared against (`tests/fastpath_differential.rs`).
    pub fn set_fast_path(&mut self, on: bool) -> Result<()> {
        self.fast_path = on;
        let functions: Vec<FunctionConfig> = self.generations[self.active as usize]
            .iter()
            .filter_map(|i| self.fn_cfg.get(i).cloned())
            .collect();
        self.maps
            .gen_flags
            .set(self.active, gen_flags(&functions, on), 0)
            .map_err(EngineError::map(ChainMaps::GEN_FLAGS))?;
        // results cached before the fast path was turned off are not reused when it comes back
        self.bump_fast_path_epoch()
    }

    /// Invalidates every result the fast path cached (`ebpf/lib/fastpath.h`): called after every
    /// change that can alter a decision (a generation switch, rule or backend updates, state
    /// resets and purges, set_fast_path, adoption). Written after the change, so a packet that
    /// read the new epoch runs under the new configuration.
    pub(super) fn bump_fast_path_epoch(&mut self) -> Result<()> {
        let e = self
            .maps
            .fp_epoch
            .get(&0, 0)
            .map_err(EngineError::map(ChainMaps::FP_EPOCH))?;
        self.maps
            .fp_epoch
            .set(0, e.wrapping_add(1), 0)
            .map_err(EngineError::map(ChainMaps::FP_EPOCH))
    }

    /// The fast path's policy epoch (`vnf_fp_epoch[0]`): changes with every change that
    /// invalidates cached results.
    pub fn fast_path_epoch(&self) -> Result<u32> {
        self.maps
            .fp_epoch
            .get(&0, 0)
            .map_err(EngineError::map(ChainMaps::FP_EPOCH))
    }

    /// Registers the AF_XDP socket `xsk` of the user-space tier for receive queue `queue`:
    /// from now on the chain's user-space hand-off sends that queue's packets to it.
    pub fn register_xsk(&mut self, queue: u32, xsk: impl AsFd) -> Result<()> {
        self.nf.userspace.register(queue, xsk)
    }

    /// Removes the socket of `queue`; its packets are then dropped by the hand-off
    /// (reason `no_xsk`) instead of bypassing the user-space functions.
    pub fn unregister_xsk(&mut self, queue: u32) -> Result<()> {
        self.nf.userspace.unregister(queue)
    }

    /// Replaces the backends of a live load-balancer instance in place.
    /// Established flows keep their backend (affinity); new flows use the
    /// new Maglev table.  The new table is written beside the old one and
    /// switched to with one config update.
    pub fn update_load_balancer(&mut self, instance: u32, lb: &LbConfig) -> Result<()> {
        if self.live.get(&instance) != Some(&abi::kind::LB) {
            return Err(EngineError::UnknownInstance(instance));
        }
        let prepared = nf::lb::encode(lb)?;
        self.nf.lb.write(instance, &prepared, self.nr_cpus)?;
        if let Some(c) = self.fn_cfg.get_mut(&instance) {
            c.kind = FunctionKind::LoadBalancer(lb.clone());
        }
        self.bump_fast_path_epoch()
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
        let compiled = Box::new(super::firewall::compile(fw)?);
        self.nf.firewall.write(instance, &compiled, self.nr_cpus)?;
        if let Some(c) = self.fn_cfg.get_mut(&instance) {
            c.kind = FunctionKind::Firewall(fw.clone());
        }
        self.bump_fast_path_epoch()
    }

    /// Points slot `pos` of generation `generation` at instance `inst` running `program`.
    pub(super) fn set_slot(
        &mut self,
        generation: u32,
        pos: u32,
        inst: u32,
        kind: u32,
        program: &str,
    ) -> Result<()> {
        let slot = generation * abi::MAX_CHAIN + pos;
        let used = &mut self.slots_used[generation as usize];
        *used = (*used).max(pos + 1);
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
            .map_err(EngineError::map(ChainMaps::SLOTS))?;
        let fd = self
            .prog_fds
            .get(program)
            .ok_or_else(|| EngineError::Missing(format!("program {program}")))?;
        self.maps
            .progs
            .set(slot, fd, 0)
            .map_err(EngineError::map(ChainMaps::PROGS))
    }

    /// Fresh state for id `inst`: zeroed counters, and each function's fresh state (a full global
    /// rate-limit bucket, zeroed monitor classes).
    fn reset_state(&mut self, inst: u32) -> Result<()> {
        let n = self.nr_cpus;
        self.maps
            .stats
            .set(
                inst,
                PerCpuValues::try_from(vec![FnStats::default(); n])?,
                0,
            )
            .map_err(EngineError::map(ChainMaps::STATS))?;
        self.nf.reset_state(inst, n)?;
        self.bump_fast_path_epoch()
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
            .map_err(EngineError::map(ChainMaps::INSTANCES))?;
        self.nf.release(inst)?;
        let state = self.state_of.remove(&inst).unwrap_or(inst);
        let refs = self.state_refs.get(&state).copied().unwrap_or(1);
        if refs <= 1 {
            self.state_refs.remove(&state);
            self.nf.purge_state(state)?;
            self.bump_fast_path_epoch()?;
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

    /// State id of a live instance (its own id when it started fresh).
    pub(super) fn state(&self, inst: u32) -> u32 {
        self.state_of.get(&inst).copied().unwrap_or(inst)
    }

    /// The state id whose counters (and flows, buckets) function instance `instance` uses: two
    /// instances with the same state id share their counters (a function that kept its name and type
    /// across an update).
    pub fn state_id(&self, instance: u32) -> u32 {
        self.state(instance)
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
fn gen_flags(functions: &[FunctionConfig], fast_path: bool) -> u32 {
    let fast = if fast_path { abi::GEN_F_FAST_PATH } else { 0 };
    let body = match functions.last().map(|f| &f.kind) {
        Some(FunctionKind::Forwarder(_) | FunctionKind::UserspaceHandoff) => {
            &functions[..functions.len() - 1]
        }
        _ => functions,
    };
    let translates = body
        .iter()
        .any(|f| matches!(f.kind, FunctionKind::Nat(_) | FunctionKind::LoadBalancer(_)));
    fast | if translates && body.len() > 1 {
        abi::GEN_F_REVERSE_REPLIES
    } else {
        0
    }
}
