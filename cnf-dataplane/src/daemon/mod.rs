//! The sidecar daemon: owns the engine, applies chain generations atomically, and answers for what runs.
//!
//! One [`Dataplane`] per process. The gRPC service and the metrics endpoint share it behind a mutex;
//! every operation on it is short (map updates, counter reads), so the lock is never held across I/O.

pub mod caps;
pub mod grpc;
pub mod metrics;
pub mod offload;

use std::collections::BTreeMap;

use crds::{Hook as SpecHook, VNFChain, VNFChainSpec, ValidationErrors};

use crate::engine::{AttachInfo, Engine, EngineError, FunctionStats, Hook, XdpAttach};
use crate::spec;

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

fn running_functions(spec: &VNFChainSpec, instances: &[u32]) -> Vec<RunningFunction> {
    spec.functions
        .iter()
        .zip(instances)
        .map(|(f, i)| RunningFunction {
            name: f.name.as_str().to_owned(),
            type_: f.type_.as_str().to_owned(),
            instance: *i,
        })
        .collect()
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
        crds::validate(chain).map_err(ApplyError::Invalid)?;
        let config = spec::chain_config(&chain.spec, &ifindex)?;
        let (engine, attachments) = load_attached(&chain.spec, &config)?;
        offload::fix_veth_checksums(attachments.iter().map(|a| a.interface.as_str()));
        let instances = engine.active_instances().to_vec();
        Ok(Self {
            engine,
            namespace: chain.metadata.namespace.clone().unwrap_or_default(),
            name: chain.metadata.name.clone().unwrap_or_default(),
            generation: chain.metadata.generation.unwrap_or(1).max(1),
            functions: running_functions(&chain.spec, &instances),
            spec: chain.spec.clone(),
            attachments,
            last_error: String::new(),
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
        let config = spec::chain_config(spec, &ifindex)?;
        let applied = self.engine.apply(&config)?;
        self.generation = generation;
        self.spec = spec.clone();
        self.functions = running_functions(spec, &applied.instances);
        self.last_error.clear();
        Ok(true)
    }

    /// Detaches from every interface; the daemon keeps answering with an empty attachment list.
    pub fn detach(&mut self) -> Result<(), EngineError> {
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
