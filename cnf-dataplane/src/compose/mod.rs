//! The composition of a data plane: the one place that loads the engine, attaches it, starts the
//! user-space tier and registers its sockets in the chain's XSKMAP.
//!
//! - [`start`] composes an engine-level [`Plan`] (a hook, interfaces, a [`ChainConfig`], tier workers)
//!   into a [`Running`] data plane: what `vnfctl bench` runs;
//! - [`Dataplane`] runs one VNFChain on top of it: validation, the spec mapping, generations, re-adoption
//!   of a kept chain, the control-plane allow: what the `cnf-dataplane` daemon (package
//!   `cnf-dataplane-daemon`, which adds the gRPC API, `/metrics` and TLS around it) and through it
//!   `vnfctl testbed` run.
//!
//! No server here: the library links neither a gRPC server nor an HTTP server nor prometheus.

pub mod control;
pub mod occupied;
pub mod offload;
mod run;

pub use run::{Plan, Running, start};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crds::{
    Hook as SpecHook, UserspaceBackend, VNFChain, VNFChainSpec, ValidChain, ValidSpec,
    ValidationErrors,
};
use dataplane_api::door::{Generations, Refusal, Step, spec_digest};

use crate::engine::pin::{DirLock, LockError};
use crate::engine::{AttachInfo, Engine, EngineError, FunctionStats};
use crate::spec::{self, ChainPlan, UserFunctionKind, UserspacePlan};
use crate::userspace::{CipherSpec, MacRewrite, TierConfig, UserTier, UserspaceError};

/// Why a chain was not applied. The previous generation (if any) keeps running in every case.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The spec fails the shared validation (one `path: message` per line).
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// The spec asks for something this data plane cannot run.
    #[error("{path}: {message}")]
    Unsupported {
        /// Spec field path.
        path: String,
        /// What is missing.
        message: String,
    },
    /// The generation rule refuses it (not positive, stale, another spec for a generation, detached):
    /// [`dataplane_api::door::Generations`].
    #[error("{0}")]
    Generation(#[from] Refusal),
    /// Interfaces or hook changed: that needs a new pod (the operator rolls the Deployment).
    #[error("{0} changed: this needs a restart of the data plane, not a live update")]
    NeedsRestart(&'static str),
    /// Loading or attaching failed (the verifier's reason, an attach error).
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// The user-space tier could not start (its sockets, its worker).
    #[error("user-space tier: {0}")]
    Userspace(#[from] UserspaceError),
    /// The daemon is stopping (SIGTERM) and accepts no more updates.
    #[error("the data plane is shutting down and accepts no updates")]
    ShuttingDown,
    /// An interface of the chain already runs a program that is not this chain's (another chain,
    /// another tool): the daemon refuses to attach beside it.
    #[error(
        "interface {iface} already carries {found}, which is not this chain's: refusing to attach \
         beside it (remove it, or stop the daemon that owns it)"
    )]
    Occupied {
        /// The interface.
        iface: String,
        /// What runs there.
        found: String,
    },
    /// Another daemon holds the pin directory.
    #[error("{0}")]
    PinDirBusy(#[from] LockError),
}

/// What happens to the chain when the daemon exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnExit {
    /// Detach the programs and remove the pins (the default).
    #[default]
    Detach,
    /// Leave the programs attached and their maps and links pinned, for the next daemon to
    /// re-adopt with no traffic interruption (also after a crash: the pins are made at attach time).
    Keep,
}

/// The default pin directory of chain `namespace`/`name` in this network namespace:
/// `/sys/fs/bpf/buildvnf/<namespace>/<chain>/netns-<inode>`. The network namespace tells the replicas
/// of a chain on one node apart (each pod has its own, kept across container restarts).
pub fn default_pin_dir(namespace: &str, name: &str) -> PathBuf {
    let ns = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    let dir = Path::new(crate::engine::pin::BPFFS_ROOT)
        .join("buildvnf")
        .join(ns)
        .join(name);
    match netns_id() {
        Some(id) => dir.join(format!("netns-{id}")),
        None => dir,
    }
}

/// The inode of this process's network namespace.
fn netns_id() -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

/// What the daemon stores with a kept chain, to re-adopt it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Owner {
    namespace: String,
    name: String,
    /// The network namespace the chain's interfaces are in (its inode).
    #[serde(default)]
    netns: Option<u64>,
    generation: i64,
    spec: VNFChainSpec,
    /// The generations applied (what a rollback may return to); absent in records of older daemons.
    #[serde(default)]
    generations: Option<Generations>,
    /// Counters of functions whose state went (a changed monitor, a removed function), by (name, type):
    /// added to the live ones so exported counters never go back.
    #[serde(default)]
    carried: Vec<(String, String, FunctionStats)>,
}

/// Where the daemon finds what the manifest only names.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// Directory with the keys of user-space functions: Secret `S`'s key `K` at `S/K`
    /// (the operator mounts them at [`crds::KEY_SECRETS_DIR`]).
    pub secrets_dir: PathBuf,
    /// Keep or detach the chain on exit.
    pub on_exit: OnExit,
    /// Where the chain's maps and links are pinned (bpffs); `None` = [`default_pin_dir`].
    pub pin_dir: Option<PathBuf>,
    /// The daemon's TCP listeners (gRPC, metrics): TCP to them on the pod's addresses passes every
    /// chain (see [`control`]).
    pub listeners: Vec<control::Listener>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            secrets_dir: PathBuf::from(crds::KEY_SECRETS_DIR),
            on_exit: OnExit::Detach,
            pin_dir: None,
            listeners: Vec::new(),
        }
    }
}

impl From<spec::SpecError> for ApplyError {
    fn from(e: spec::SpecError) -> Self {
        ApplyError::Unsupported {
            path: e.path.clone(),
            message: e.message.clone(),
        }
    }
}

/// One interface the chain is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// The hook in use (`xdp-native`, `xdp-generic`, `tc-ingress`).
    pub mode: &'static str,
    /// Why preferred hooks were not used.
    pub fallback_reason: String,
}

impl Attachment {
    fn from_info(info: AttachInfo, requested: SpecHook) -> Self {
        let mut reasons = info.fallback_reasons;
        let wanted = match requested {
            SpecHook::Xdp => Some("xdp-native"),
            SpecHook::XdpGeneric => Some("xdp-generic"),
            SpecHook::Tc => Some("tc-ingress"),
            SpecHook::Auto => None,
        };
        if let Some(w) = wanted
            && w != info.mode
        {
            reasons.push(format!("requested {w}, attached {}", info.mode));
        }
        Self {
            interface: info.iface,
            mode: info.mode,
            fallback_reason: reasons.join("; "),
        }
    }
}

/// A function of the running chain, as the engine knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningFunction {
    /// Name from the spec.
    pub name: String,
    /// Type from the spec (`firewall`, …).
    pub type_: String,
    /// Engine instance id.
    pub instance: u32,
}

/// The chain a daemon runs.
pub struct Dataplane {
    engine: Engine,
    namespace: String,
    name: String,
    /// The generation rule's memory: the running generation, the ones before it, detached or not.
    generations: Generations,
    spec: VNFChainSpec,
    functions: Vec<RunningFunction>,
    attachments: Vec<Attachment>,
    last_error: String,
    /// The user-space part of the chain and its workers (one per receive queue of the ingress).
    userspace: Option<UserspacePlan>,
    tiers: Vec<UserTier>,
    /// Set on SIGTERM: no more updates.
    stopping: bool,
    /// "re-adopted generation N from DIR" when the chain was re-adopted.
    adopted: Option<String>,
    /// Counters carried over from function state that went, by (name, type) (see [`Owner`]).
    carried: BTreeMap<(String, String), FunctionStats>,
    /// The daemon's TCP listeners, kept reachable through the chain.
    listeners: Vec<control::Listener>,
    /// The control-plane endpoints last written into the engine, and how each fared.
    control_written: Option<Vec<std::net::SocketAddr>>,
    control: Vec<control::Endpoint>,
    /// The owner lock of the pin directory, held for the daemon's life.
    _lock: Option<DirLock>,
}

/// Resolves an interface name to its index in this network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; if_nametoindex only reads it.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

fn interfaces(spec: &VNFChainSpec) -> Vec<String> {
    let i = &spec.interfaces;
    std::iter::once(i.ingress.as_str().to_owned())
        .chain(i.egress.as_ref().map(|e| e.as_str().to_owned()))
        .collect()
}

/// The engine's functions of `plan` with their instances; the user-space hand-off step is reported as
/// type `userspaceHandoff` under the name of the first user-space function.
fn running_functions(
    spec: &VNFChainSpec,
    plan: &ChainPlan,
    instances: &[u32],
) -> Vec<RunningFunction> {
    plan.kernel
        .functions
        .iter()
        .zip(instances)
        .map(|(f, i)| {
            let type_ = match f.kind {
                crate::engine::FunctionKind::UserspaceHandoff => "userspaceHandoff",
                _ => spec
                    .functions
                    .iter()
                    .find(|s| s.name.as_str() == f.name)
                    .map(|s| s.type_.as_str())
                    .unwrap_or("unknown"),
            };
            RunningFunction {
                name: f.name.clone(),
                type_: type_.to_owned(),
                instance: *i,
            }
        })
        .collect()
}

/// Reads the 32-byte key of a user-space function (a trailing newline, as `kubectl create secret
/// --from-file` may leave, is ignored).
fn read_key(dir: &Path, r: &crds::SecretKeyRef, path: &str) -> Result<[u8; 32], ApplyError> {
    let file = dir.join(&r.name).join(&r.key);
    let bad = |message: String| ApplyError::Unsupported {
        path: format!("{path}.payloadCipher.keySecretRef"),
        message,
    };
    let mut bytes =
        std::fs::read(&file).map_err(|e| bad(format!("key file {}: {e}", file.display())))?;
    if bytes.len() == 33 && bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        bad(format!(
            "key file {} holds {} bytes; the AEAD needs exactly 32",
            file.display(),
            bytes.len()
        ))
    })
}

/// The MAC address of `iface` (sysfs).
fn mac_of(iface: &str) -> Option<[u8; 6]> {
    netkit::mac::of_interface(iface).ok()
}

/// The user-space tier workers of `plan`: one per receive queue of the ingress interface, each fed by
/// the chain's XSKMAP (started by [`start`] / [`Running`]).
fn tier_configs(
    spec: &VNFChainSpec,
    plan: &UserspacePlan,
    opts: &StartOptions,
) -> Result<Vec<TierConfig>, ApplyError> {
    if spec.dataplane.userspace.backend != UserspaceBackend::Afxdp {
        // The chain hands frames to user space through its XSKMAP, which only AF_XDP sockets can
        // take; the DPDK back end runs as a tier of its own on an interface (userspace::dpdk).
        let message = if cfg!(feature = "dpdk") {
            "dpdk: the chain's hand-off (XSKMAP) feeds AF_XDP sockets only; the DPDK back end \
             runs as a standalone tier on an interface, not behind a chain (use afxdp)"
        } else {
            "dpdk: this cnf-dataplane was built without the cargo feature `dpdk` (use afxdp, or \
             build with --features dpdk)"
        };
        return Err(ApplyError::Unsupported {
            path: "spec.dataplane.userspace.backend".into(),
            message: message.into(),
        });
    }
    let mut functions = Vec::new();
    for f in &plan.functions {
        let UserFunctionKind::PayloadCipher(c) = &f.kind;
        functions.push(CipherSpec {
            algorithm: c.algorithm.into(),
            direction: c.direction.into(),
            key: read_key(&opts.secrets_dir, &c.key_secret_ref, &f.path)?,
        });
    }
    let ingress = spec.interfaces.ingress.as_str();
    let egress = plan.egress.interface.clone();
    let mac_rewrite = plan.egress.dst_mac.map(|dst| MacRewrite {
        src: mac_of(egress.as_deref().unwrap_or(ingress)).unwrap_or([0; 6]),
        dst,
    });
    let queues = crate::engine::diagnose::rx_queues(ingress).max(1);
    Ok((0..queues)
        .map(|q| {
            let mut cfg = TierConfig::new(ingress, q);
            cfg.egress = egress.clone();
            cfg.egress_queue_id = q;
            cfg.mac_rewrite = mac_rewrite;
            cfg.functions = functions.clone();
            cfg.polling = spec.dataplane.userspace.polling.into();
            cfg
        })
        .collect())
}

/// The engine-level [`Plan`] of a chain: its hook and interfaces, the kernel part, sidecar mode's egress,
/// the tier workers of its user-space part.
fn compose_plan(
    spec: &VNFChainSpec,
    plan: &ChainPlan,
    opts: &StartOptions,
    pins: Option<&Path>,
) -> Result<Plan, ApplyError> {
    Ok(Plan {
        hook: spec.dataplane.hook,
        interfaces: interfaces(spec),
        chain: plan.kernel.clone(),
        pins: pins.map(Path::to_path_buf),
        egress: spec
            .target
            .is_some()
            .then(|| spec.interfaces.ingress.as_str().to_owned()),
        fix_veth_checksums: true,
        tiers: match &plan.userspace {
            Some(u) => tier_configs(spec, u, opts)?,
            None => Vec::new(),
        },
    })
}

/// Refuses interfaces that already run an XDP or TC ingress program other than the one of this chain's
/// pinned link in `dir` (a kept chain this daemon re-adopts or takes over). A query that fails is
/// logged and does not refuse (the attach itself then reports what it meets).
fn refuse_foreign(ifaces: &[String], dir: &Path) -> Result<(), ApplyError> {
    for iface in ifaces {
        let Some(idx) = ifindex(iface) else {
            continue; // the attach names the missing interface
        };
        let ours = aya::programs::links::PinnedLink::from_pin(crate::engine::pin::path(
            dir,
            &crate::engine::pin::link_name(iface),
        ))
        .ok()
        .and_then(|l| aya::programs::links::FdLink::from(l).info().ok())
        .map(|i| i.program_id());
        let found = match occupied::programs_on(iface, idx) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("cannot tell which programs run on {iface}: {e}");
                continue;
            }
        };
        let foreign: Vec<String> = found
            .iter()
            .filter(|f| Some(f.id) != ours)
            .map(|f| f.to_string())
            .collect();
        if !foreign.is_empty() {
            return Err(ApplyError::Occupied {
                iface: iface.clone(),
                found: foreign.join(", "),
            });
        }
    }
    Ok(())
}

/// Sidecar mode (`spec.target`): the chain's ingress interface is the pod's own, so its TC egress also runs
/// the program that records the flows the pod opens, whose replies a stateful firewall then admits
/// (`engine/egress.rs`, docs/security.md). Dedicated chain pods attach nothing there.
fn sidecar_egress(engine: &mut Engine, spec: &VNFChainSpec) -> Result<(), EngineError> {
    if spec.target.is_some() {
        engine.attach_egress(spec.interfaces.ingress.as_str())?;
    }
    Ok(())
}

impl Dataplane {
    /// Validates `chain`, loads it and attaches it to its interfaces. Nothing stays attached on error.
    pub fn start(chain: &VNFChain) -> Result<Self, ApplyError> {
        Self::start_with(chain, &StartOptions::default())
    }

    /// [`Dataplane::start`] with explicit options. Chains with user-space functions also start their
    /// AF_XDP tier, fed by the chain's hand-off.
    ///
    /// With a chain kept in the pin directory (an earlier daemon's, see [`OnExit::Keep`]), the chain is
    /// re-adopted with no traffic interruption and, when the configured chain differs, moved to it
    /// with an atomic generation switch; when the kept chain is unusable the log says why and the
    /// chain is loaded afresh (taking over the kept links atomically).
    pub fn start_with(chain: &VNFChain, opts: &StartOptions) -> Result<Self, ApplyError> {
        let valid = crds::validate(chain).map_err(ApplyError::Invalid)?;
        let plan = spec::plan(valid.typed(), &ifindex)?;
        let namespace = chain.metadata.namespace.clone().unwrap_or_default();
        let name = chain.metadata.name.clone().unwrap_or_default();
        let dir = opts
            .pin_dir
            .clone()
            .unwrap_or_else(|| default_pin_dir(&namespace, &name));
        if opts.on_exit == OnExit::Keep
            && let Some(note) = crate::engine::pin::prepare_dir(&dir)?
        {
            log::warn!("{note}");
        }
        // the owner lock first: nothing in the pin directory is read before this daemon owns it
        let lock = if dir.is_dir() {
            Some(crate::engine::pin::lock_dir(&dir)?)
        } else {
            None
        };
        let kept_before = crate::engine::pin::is_bpffs(&dir)
            && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
        refuse_foreign(&interfaces(&chain.spec), &dir)?;
        if kept_before {
            match Self::adopt(chain, &plan, &dir, opts) {
                Ok(mut dp) => {
                    dp.finish_start(lock);
                    return Ok(dp);
                }
                Err(e) => log::warn!(
                    "cannot re-adopt the chain kept in {}: {e}; loading it afresh",
                    dir.display()
                ),
            }
        }
        // a daemon that detaches on exit pins nothing, unless it replaces a kept chain (its pins are
        // then this daemon's, removed on exit)
        let pins = (opts.on_exit == OnExit::Keep || kept_before).then_some(dir.as_path());
        // the engine detaches when dropped, so an error here leaves nothing attached
        let Running {
            tiers,
            engine,
            attachments,
        } = start(&compose_plan(&chain.spec, &plan, opts, pins)?)?;
        let instances = engine.active_instances().to_vec();
        let mut dp = Self {
            engine,
            namespace,
            name,
            generations: Generations::started(
                chain.metadata.generation.unwrap_or(1).max(1),
                spec_digest(&chain.spec),
            ),
            functions: running_functions(&chain.spec, &plan, &instances),
            spec: chain.spec.clone(),
            attachments,
            last_error: String::new(),
            userspace: plan.userspace,
            tiers,
            stopping: false,
            adopted: None,
            carried: BTreeMap::new(),
            listeners: opts.listeners.clone(),
            control_written: None,
            control: Vec::new(),
            _lock: None,
        };
        dp.save()?;
        if let Some(dir) = pins {
            dp.engine.remove_stale_links()?;
            log::info!("chain pinned in {}", dir.display());
        }
        dp.finish_start(lock);
        Ok(dp)
    }

    /// The last steps of a start: hold the pin directory's lock, open the control plane.
    fn finish_start(&mut self, lock: Option<DirLock>) {
        self._lock = lock;
        self.refresh_control_plane();
    }

    /// Writes the control-plane allow for the daemon's listeners on the addresses this network
    /// namespace has now (a no-op when they did not change), and logs what it covers and what not.
    pub fn refresh_control_plane(&mut self) {
        let now = control::current(&self.listeners);
        let addrs: Vec<std::net::SocketAddr> = now.iter().map(|(_, a, _)| *a).collect();
        if self.control_written.as_ref() == Some(&addrs) {
            return;
        }
        let written = self.engine.set_control_plane(&addrs);
        self.control = now
            .into_iter()
            .map(|(listener, addr, interface)| {
                let reason = match &written {
                    Err(e) => format!("the control-plane allow could not be written: {e}"),
                    Ok(plan) => plan
                        .left_out
                        .iter()
                        .find(|(a, _)| *a == addr)
                        .map(|(_, why)| why.clone())
                        .unwrap_or_default(),
                };
                control::Endpoint {
                    listener,
                    addr,
                    interface,
                    allowed: reason.is_empty(),
                    reason,
                }
            })
            .collect();
        let (ok, cut): (Vec<_>, Vec<_>) = self.control.iter().partition(|e| e.allowed);
        if !ok.is_empty() {
            let list: Vec<String> = ok
                .iter()
                .map(|e| format!("{} {} ({})", e.listener, e.addr, e.interface))
                .collect();
            log::info!(
                "control plane: TCP to {} always passes the chain",
                list.join(", ")
            );
        }
        for e in cut {
            log::warn!(
                "control plane: TCP to {} {} ({}) is NOT exempt from the chain: {}",
                e.listener,
                e.addr,
                e.interface,
                e.reason
            );
        }
        self.control_written = written.is_ok().then_some(addrs);
    }

    /// The daemon's control-plane endpoints and whether the chain lets each through.
    pub fn control_plane(&self) -> &[control::Endpoint] {
        &self.control
    }

    /// Re-adopts the chain kept in `dir`, then moves it to `chain` when that differs. An error
    /// leaves the kept chain running as it was.
    fn adopt(
        chain: &VNFChain,
        plan: &ChainPlan,
        dir: &Path,
        opts: &StartOptions,
    ) -> Result<Self, ApplyError> {
        let rec = Engine::read_record(dir)?;
        let unusable = |why: String| {
            ApplyError::Engine(EngineError::Pin {
                dir: dir.display().to_string(),
                why,
            })
        };
        let owner: Owner = serde_json::from_str(&rec.owner)
            .map_err(|e| unusable(format!("the daemon's part of the record: {e}")))?;
        let namespace = chain.metadata.namespace.clone().unwrap_or_default();
        let name = chain.metadata.name.clone().unwrap_or_default();
        if (owner.namespace.as_str(), owner.name.as_str()) != (namespace.as_str(), name.as_str()) {
            return Err(unusable(format!(
                "it holds chain {}/{}, this daemon runs {namespace}/{name}",
                owner.namespace, owner.name
            )));
        }
        if owner.netns != netns_id() {
            return Err(unusable(format!(
                "it was pinned from another network namespace (inode {:?}, this is {:?})",
                owner.netns,
                netns_id()
            )));
        }
        // what a live update cannot change is not adopted either (it needs a fresh start)
        if owner.spec.interfaces != chain.spec.interfaces {
            return Err(unusable("spec.interfaces changed".into()));
        }
        if owner.spec.dataplane.hook != chain.spec.dataplane.hook {
            return Err(unusable("spec.dataplane.hook changed".into()));
        }
        let kept_plan = spec::chain_plan(&owner.spec, &ifindex).map_err(|e| {
            unusable(format!(
                "the kept chain no longer maps: {}: {}",
                e.path, e.message
            ))
        })?;
        if kept_plan.userspace != plan.userspace
            || owner.spec.dataplane.userspace != chain.spec.dataplane.userspace
        {
            return Err(unusable("the user-space functions changed".into()));
        }
        let composed = compose_plan(&owner.spec, &kept_plan, opts, Some(dir))?;
        let (mut engine, infos) = Engine::adopt(dir, rec, &kept_plan.kernel)?;
        let attachments: Vec<Attachment> = infos
            .into_iter()
            .map(|i| Attachment::from_info(i, owner.spec.dataplane.hook))
            .collect();
        let tiers = match run::finish(&mut engine, &attachments, &composed) {
            Ok(t) => t,
            Err(e) => {
                // the kept chain stays as it was (its hand-off drops until a tier serves it)
                let _ = engine.keep();
                return Err(e);
            }
        };
        let instances = engine.active_instances().to_vec();
        let note = format!(
            "re-adopted generation {} from {}",
            owner.generation,
            dir.display()
        );
        log::info!("{note}");
        let mut dp = Self {
            engine,
            namespace,
            name,
            generations: owner.generations.unwrap_or_else(|| {
                Generations::started(owner.generation, spec_digest(&owner.spec))
            }),
            functions: running_functions(&owner.spec, &kept_plan, &instances),
            spec: owner.spec,
            attachments,
            last_error: String::new(),
            userspace: kept_plan.userspace,
            tiers,
            stopping: false,
            adopted: Some(note),
            carried: owner
                .carried
                .into_iter()
                .map(|(n, t, s)| ((n, t), s))
                .collect(),
            listeners: opts.listeners.clone(),
            control_written: None,
            control: Vec::new(),
            _lock: None,
        };
        dp.follow_configured(chain);
        dp.save()?;
        Ok(dp)
    }

    /// Moves a re-adopted chain to the configured `chain` by the generation rule: its
    /// `metadata.generation` (a rollback the operator wrote into the ConfigMap is a return to a generation
    /// this chain applied); a manifest without one (a laptop's file) is numbered by the daemon, the next
    /// generation when its spec differs. A refused move leaves the kept generation running (logged).
    fn follow_configured(&mut self, chain: &VNFChain) {
        let numbered = chain.metadata.generation.filter(|g| *g > 0);
        let digest = spec_digest(&chain.spec);
        if self.spec != chain.spec {
            let generation =
                numbered.unwrap_or_else(|| self.generations.highest().saturating_add(1));
            match self.apply(generation, &chain.spec) {
                Ok(_) => log::info!(
                    "moved the re-adopted chain to the configured one (generation {generation})"
                ),
                Err(e) => log::warn!(
                    "the configured chain was not applied over the re-adopted one: {e}; generation {} keeps running",
                    self.generation()
                ),
            }
        } else if let Some(g) = numbered.filter(|g| *g != self.generation()) {
            // the same spec under the configured number (nothing to load): the rule still decides
            match self.generations.check(g, &digest) {
                Ok(_) => self.generations.record(g, digest),
                Err(e) => log::warn!(
                    "the configured generation {g} is not taken over the re-adopted one: {e}; generation {} keeps running",
                    self.generation()
                ),
            }
        }
    }

    /// Writes the state record of a kept chain (a no-op otherwise).
    fn save(&mut self) -> Result<(), EngineError> {
        if self.engine.pin_dir().is_none() {
            return Ok(());
        }
        let owner = Owner {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            netns: netns_id(),
            generation: self.generation(),
            spec: self.spec.clone(),
            generations: Some(self.generations.clone()),
            carried: self
                .carried
                .iter()
                .map(|((n, t), s)| (n.clone(), t.clone(), s.clone()))
                .collect(),
        };
        let text = serde_json::to_string(&owner).map_err(|e| EngineError::Pin {
            dir: String::new(),
            why: format!("encoding the record: {e}"),
        })?;
        self.engine.save_record(&text)
    }

    /// "re-adopted generation N from DIR" when this daemon re-adopted a kept chain.
    pub fn adopted(&self) -> Option<&str> {
        self.adopted.as_deref()
    }

    /// Refuses every later update (SIGTERM: the daemon is going).
    pub fn stop_updates(&mut self) {
        self.stopping = true;
    }

    /// Leaves the chain running for the next daemon: programs attached, maps and links pinned.
    /// The user-space tier stops (its sockets belong to this process).
    pub fn keep(&mut self) -> Result<(), EngineError> {
        for tier in self.tiers.drain(..) {
            tier.stop();
        }
        self.engine.keep()?;
        self.attachments.clear();
        Ok(())
    }

    /// Applies a new generation atomically: validated, mapped, prepared beside the running one, switched in
    /// one step. Returns whether anything changed (false when this generation already runs).
    pub fn apply(&mut self, generation: i64, spec: &VNFChainSpec) -> Result<bool, ApplyError> {
        let result = self.try_apply(generation, spec, None);
        if let Err(e) = &result {
            self.last_error = e.to_string();
        }
        result
    }

    /// [`Dataplane::apply`] for a chain a door has already read and validated (the gRPC door's
    /// [`dataplane_api::door::read_request`]): the spec is not validated a second time.
    pub fn apply_valid(&mut self, generation: i64, chain: &ValidChain) -> Result<bool, ApplyError> {
        let result = self.try_apply(generation, chain.spec(), Some(chain.typed()));
        if let Err(e) = &result {
            self.last_error = e.to_string();
        }
        result
    }

    fn try_apply(
        &mut self,
        generation: i64,
        spec: &VNFChainSpec,
        valid: Option<&ValidSpec>,
    ) -> Result<bool, ApplyError> {
        if self.stopping {
            return Err(ApplyError::ShuttingDown);
        }
        // The generation rule (docs/architecture.md, "Generations"; dataplane_api::door): positive, a
        // generation names one spec, forward above every generation applied or back to one applied here.
        let digest = spec_digest(spec);
        let step = self.generations.check(generation, &digest)?;
        let validated;
        let valid = match valid {
            Some(valid) => valid,
            None => {
                validated = crds::validate_spec(spec).map_err(ApplyError::Invalid)?;
                &validated
            }
        };
        if step == Step::Unchanged {
            return Ok(false);
        }
        if spec.interfaces != self.spec.interfaces {
            return Err(ApplyError::NeedsRestart("spec.interfaces"));
        }
        if spec.dataplane.hook != self.spec.dataplane.hook {
            return Err(ApplyError::NeedsRestart("spec.dataplane.hook"));
        }
        let plan = spec::plan(valid, &ifindex)?;
        if plan.userspace != self.userspace
            || spec.dataplane.userspace != self.spec.dataplane.userspace
        {
            // the tier's sockets own their queues: new user-space functions need new workers
            return Err(ApplyError::NeedsRestart("the user-space functions"));
        }
        // the counters of every function as exported now: what a function whose state goes leaves behind
        let before: Vec<(String, String, u32, FunctionStats)> = self
            .functions
            .iter()
            .filter_map(|f| {
                let raw = self.engine.function_stats(f.instance).ok()?;
                Some((
                    f.name.clone(),
                    f.type_.clone(),
                    self.engine.state_id(f.instance),
                    raw,
                ))
            })
            .collect();
        let applied = self.engine.apply(&plan.kernel)?;
        if spec.target.is_some() != self.spec.target.is_some() {
            let egress = match spec.target {
                Some(_) => sidecar_egress(&mut self.engine, spec),
                None => self.engine.detach_egress(),
            };
            if let Err(e) = egress {
                log::warn!("sidecar mode's TC egress: {e}");
            }
        }
        self.generations.record(generation, digest);
        self.spec = spec.clone();
        self.functions = running_functions(spec, &plan, &applied.instances);
        for (name, type_, state, raw) in before {
            let continues = self.functions.iter().any(|f| {
                f.name == name && f.type_ == type_ && self.engine.state_id(f.instance) == state
            });
            if !continues {
                self.carried.entry((name, type_)).or_default().add(&raw);
            }
        }
        self.last_error.clear();
        log::info!(
            "chain generation {generation} active: {} function(s){}",
            self.functions.len(),
            if step == Step::Return {
                " (returned to a generation applied before)"
            } else {
                ""
            }
        );
        self.refresh_control_plane();
        if let Err(e) = self.save() {
            log::warn!("generation {generation} runs, but its state record was not written: {e}");
        }
        Ok(true)
    }

    /// Counters of the user-space tier: (ingress interface, queue, stats) per worker.
    pub fn userspace_stats(&self) -> Vec<(String, u32, crate::userspace::Stats)> {
        self.tiers
            .iter()
            .map(|t| {
                (
                    self.spec.interfaces.ingress.as_str().to_owned(),
                    t.queue_id(),
                    t.stats(),
                )
            })
            .collect()
    }

    /// Detaches from every interface; the daemon keeps answering with an empty attachment list.
    pub fn detach(&mut self) -> Result<(), EngineError> {
        for tier in self.tiers.drain(..) {
            let stats = tier.stop();
            log::info!(
                "user-space tier stopped: {} received, {} sent",
                stats.rx_packets,
                stats.tx_packets
            );
        }
        self.generations.detach();
        self.engine.detach()?;
        self.attachments.clear();
        Ok(())
    }

    /// `(namespace, name)` of the chain.
    pub fn chain(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }

    /// The generation running.
    pub fn generation(&self) -> i64 {
        self.generations.current()
    }

    /// Where the chain is attached.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// The last apply error, empty after a success.
    pub fn last_error(&self) -> &str {
        &self.last_error
    }

    /// Ready when attached to every interface of the chain.
    pub fn ready(&self) -> bool {
        let want = interfaces(&self.spec);
        want.iter()
            .all(|i| self.attachments.iter().any(|a| &a.interface == i))
    }

    /// Counters of every running function, by name.
    pub fn function_stats(&self) -> BTreeMap<String, (RunningFunction, FunctionStats)> {
        self.functions
            .iter()
            .filter_map(|f| {
                let mut s = self.engine.function_stats(f.instance).ok()?;
                if let Some(c) = self.carried.get(&(f.name.clone(), f.type_.clone())) {
                    s.add(c);
                }
                Some((f.name.clone(), (f.clone(), s)))
            })
            .collect()
    }

    /// Whole-chain counters over the chain's life (every generation; kept across re-adoptions, since
    /// they live in the pinned maps): they never go back. Read them after [`Dataplane::function_stats`]
    /// for a consistent pair (a function's counts are then at most the chain's).
    pub fn chain_counters(&self) -> Option<crate::engine::ChainCounters> {
        self.engine.chain_totals().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_bytes_from_the_secrets_dir_and_errors_name_the_field() {
        let dir = std::env::temp_dir().join(format!("vnfkey-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("s")).expect("dir");
        let r = |key: &str| crds::SecretKeyRef {
            name: "s".into(),
            key: key.into(),
        };
        std::fs::write(dir.join("s/exact"), [7u8; 32]).expect("write");
        std::fs::write(dir.join("s/newline"), b"0123456789abcdef0123456789abcdef\n")
            .expect("write");
        std::fs::write(dir.join("s/short"), [7u8; 31]).expect("write");
        assert_eq!(
            read_key(&dir, &r("exact"), "spec.functions[1]").expect("32 bytes"),
            [7u8; 32]
        );
        assert_eq!(
            &read_key(&dir, &r("newline"), "spec.functions[1]").expect("newline ignored"),
            b"0123456789abcdef0123456789abcdef"
        );
        for (key, why) in [("short", "holds 31 bytes"), ("missing", "No such file")] {
            let e = read_key(&dir, &r(key), "spec.functions[1]").expect_err(key);
            let text = e.to_string();
            assert!(
                text.starts_with("spec.functions[1].payloadCipher.keySecretRef: key file"),
                "{text}"
            );
            assert!(text.contains(why), "{text}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
