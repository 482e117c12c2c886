//! The sidecar daemon: owns the engine, applies chain generations atomically, and answers for what runs.
//!
//! One [`Dataplane`] per process. The gRPC service and the metrics endpoint share it behind a mutex;
//! every operation on it is short (map updates, counter reads), so the lock is never held across I/O.

pub mod caps;
pub mod grpc;
pub mod metrics;
pub mod offload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crds::{Hook as SpecHook, UserspaceBackend, VNFChain, VNFChainSpec, ValidationErrors};

use crate::engine::{AttachInfo, Engine, EngineError, FunctionStats, Hook, XdpAttach};
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
    /// A newer generation is already applied.
    #[error("generation {requested} is older than the applied generation {applied}")]
    Stale {
        /// The generation asked for.
        requested: i64,
        /// The generation running.
        applied: i64,
    },
    /// Interfaces or hook changed: that needs a new pod (the operator rolls the Deployment).
    #[error("{0} changed: this needs a restart of the data plane, not a live update")]
    NeedsRestart(&'static str),
    /// Loading or attaching failed (the verifier's reason, an attach error).
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// The user-space tier could not start (its sockets, its worker).
    #[error("user-space tier: {0}")]
    Userspace(#[from] UserspaceError),
}

/// Where the daemon finds what the manifest only names.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// Directory with the keys of user-space functions: Secret `S`'s key `K` at `S/K`
    /// (the operator mounts them at [`crds::KEY_SECRETS_DIR`]).
    pub secrets_dir: PathBuf,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            secrets_dir: PathBuf::from(crds::KEY_SECRETS_DIR),
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
    generation: i64,
    spec: VNFChainSpec,
    functions: Vec<RunningFunction>,
    attachments: Vec<Attachment>,
    last_error: String,
    /// The user-space part of the chain and its workers (one per receive queue of the ingress).
    userspace: Option<UserspacePlan>,
    tiers: Vec<UserTier>,
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
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    crate::userspace::frame::parse_mac(text.trim())
}

/// Starts one user-space tier worker per receive queue of the ingress interface and registers each
/// socket in the chain's XSKMAP. All or nothing: on error the workers already started stop.
fn start_tiers(
    engine: &mut Engine,
    spec: &VNFChainSpec,
    plan: &UserspacePlan,
    opts: &StartOptions,
) -> Result<Vec<UserTier>, ApplyError> {
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
    if engine.hook() != Hook::Xdp {
        return Err(ApplyError::Unsupported {
            path: "spec.dataplane.hook".into(),
            message:
                "user-space functions need XDP (the chain attached with TC, which cannot hand \
                      packets to AF_XDP sockets)"
                    .into(),
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
    let mut tiers = Vec::new();
    for q in 0..queues {
        let mut cfg = TierConfig::new(ingress, q);
        cfg.egress = egress.clone();
        cfg.egress_queue_id = q;
        cfg.mac_rewrite = mac_rewrite;
        cfg.functions = functions.clone();
        cfg.polling = spec.dataplane.userspace.polling.into();
        tiers.push(UserTier::start(cfg, |queue, fd| {
            engine.register_xsk(queue, fd)
        })?);
    }
    log::info!(
        "user-space tier: {} function(s) on {ingress}, {queues} queue(s), polling {:?}",
        plan.functions.len(),
        spec.dataplane.userspace.polling
    );
    Ok(tiers)
}

/// Loads the engine for `hook` and attaches it to every interface; `auto` falls back from XDP to TC when
/// XDP cannot attach to some interface (one engine serves all interfaces so NAT/LB see both directions).
fn load_attached(
    spec: &VNFChainSpec,
    config: &crate::engine::ChainConfig,
) -> Result<(Engine, Vec<Attachment>), EngineError> {
    let hook = spec.dataplane.hook;
    let ifaces = interfaces(spec);
    // a forced hook is exactly that hook (an error says why it is impossible); auto falls back
    let xdp_mode = match hook {
        SpecHook::Xdp => XdpAttach::Native,
        SpecHook::XdpGeneric => XdpAttach::Generic,
        SpecHook::Auto | SpecHook::Tc => XdpAttach::Auto,
    };
    let try_hook = |h: Hook| -> Result<(Engine, Vec<Attachment>), EngineError> {
        let mut engine = Engine::load(h)?;
        engine.apply(config)?;
        let mut out = Vec::new();
        for i in &ifaces {
            out.push(Attachment::from_info(
                engine.attach_with(i, xdp_mode)?,
                hook,
            ));
        }
        Ok((engine, out))
    };
    match hook {
        SpecHook::Tc => try_hook(Hook::Tc),
        SpecHook::Xdp | SpecHook::XdpGeneric => try_hook(Hook::Xdp),
        SpecHook::Auto => match try_hook(Hook::Xdp) {
            Ok(ok) => Ok(ok),
            Err(xdp) => {
                let (engine, mut atts) = try_hook(Hook::Tc)?;
                for a in &mut atts {
                    let why = format!("xdp: {xdp}");
                    a.fallback_reason = if a.fallback_reason.is_empty() {
                        why
                    } else {
                        format!("{why}; {}", a.fallback_reason)
                    };
                }
                Ok((engine, atts))
            }
        },
    }
}

impl Dataplane {
    /// Validates `chain`, loads it and attaches it to its interfaces. Nothing stays attached on error.
    pub fn start(chain: &VNFChain) -> Result<Self, ApplyError> {
        Self::start_with(chain, &StartOptions::default())
    }

    /// [`Dataplane::start`] with explicit options. Chains with user-space functions also start their
    /// AF_XDP tier, fed by the chain's hand-off.
    pub fn start_with(chain: &VNFChain, opts: &StartOptions) -> Result<Self, ApplyError> {
        crds::validate(chain).map_err(ApplyError::Invalid)?;
        let plan = spec::chain_plan(&chain.spec, &ifindex)?;
        let (mut engine, attachments) = load_attached(&chain.spec, &plan.kernel)?;
        offload::fix_veth_checksums(attachments.iter().map(|a| a.interface.as_str()));
        // the engine detaches when dropped, so an error here leaves nothing attached
        let tiers = match &plan.userspace {
            Some(u) => start_tiers(&mut engine, &chain.spec, u, opts)?,
            None => Vec::new(),
        };
        let instances = engine.active_instances().to_vec();
        Ok(Self {
            engine,
            namespace: chain.metadata.namespace.clone().unwrap_or_default(),
            name: chain.metadata.name.clone().unwrap_or_default(),
            generation: chain.metadata.generation.unwrap_or(1).max(1),
            functions: running_functions(&chain.spec, &plan, &instances),
            spec: chain.spec.clone(),
            attachments,
            last_error: String::new(),
            userspace: plan.userspace,
            tiers,
        })
    }

    /// Applies a new generation atomically: validated, mapped, prepared beside the running one, switched in
    /// one step. Returns whether anything changed (false when this generation already runs).
    pub fn apply(&mut self, generation: i64, spec: &VNFChainSpec) -> Result<bool, ApplyError> {
        let result = self.try_apply(generation, spec);
        if let Err(e) = &result {
            self.last_error = e.to_string();
        }
        result
    }

    fn try_apply(&mut self, generation: i64, spec: &VNFChainSpec) -> Result<bool, ApplyError> {
        if generation < self.generation {
            return Err(ApplyError::Stale {
                requested: generation,
                applied: self.generation,
            });
        }
        crds::validate_spec(spec).map_err(ApplyError::Invalid)?;
        if generation == self.generation && *spec == self.spec {
            return Ok(false);
        }
        if spec.interfaces != self.spec.interfaces {
            return Err(ApplyError::NeedsRestart("spec.interfaces"));
        }
        if spec.dataplane.hook != self.spec.dataplane.hook {
            return Err(ApplyError::NeedsRestart("spec.dataplane.hook"));
        }
        let plan = spec::chain_plan(spec, &ifindex)?;
        if plan.userspace != self.userspace
            || spec.dataplane.userspace != self.spec.dataplane.userspace
        {
            // the tier's sockets own their queues: new user-space functions need new workers
            return Err(ApplyError::NeedsRestart("the user-space functions"));
        }
        let applied = self.engine.apply(&plan.kernel)?;
        self.generation = generation;
        self.spec = spec.clone();
        self.functions = running_functions(spec, &plan, &applied.instances);
        self.last_error.clear();
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
        self.generation
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
                self.engine
                    .function_stats(f.instance)
                    .ok()
                    .map(|s| (f.name.clone(), (f.clone(), s)))
            })
            .collect()
    }

    /// Whole-chain counters of the active generation.
    pub fn chain_counters(&self) -> Option<crate::engine::ChainCounters> {
        self.engine
            .chain_counters(self.engine.active_generation())
            .ok()
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
