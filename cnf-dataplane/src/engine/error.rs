//! Engine error type.

use thiserror::Error;

/// Everything the engine can fail with.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The chain or function configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The eBPF object failed to load (verifier, BTF, map creation).
    #[error("loading eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program could not be found, loaded, attached or run.
    #[error("eBPF program {name}: {source}")]
    Program {
        /// Program name.
        name: String,
        /// Underlying error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("eBPF map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Underlying error.
        #[source]
        source: aya::maps::MapError,
    },
    /// The object lacks a map or program the engine expects.
    #[error("eBPF object has no {0}")]
    Missing(String),
    /// No free function instance id.
    #[error("out of function instance ids (max {0})")]
    NoInstanceIds(u32),
    /// An unknown instance id was passed.
    #[error("unknown function instance {0}")]
    UnknownInstance(u32),
    /// Attaching failed on every hook.
    #[error("attach to {iface} failed: {reasons}")]
    Attach {
        /// Interface name.
        iface: String,
        /// Why each hook was rejected.
        reasons: String,
    },
    /// A pinned chain cannot be kept or re-adopted (bpffs missing, pieces missing, another build).
    #[error("pinned chain in {dir}: {why}")]
    Pin {
        /// The pin directory.
        dir: String,
        /// What is wrong.
        why: String,
    },
    /// An OS-level error (CPU count, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl EngineError {
    pub(crate) fn map(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Self {
        move |source| Self::Map { name, source }
    }

    pub(crate) fn prog(name: &str) -> impl FnOnce(aya::programs::ProgramError) -> Self + '_ {
        move |source| Self::Program {
            name: name.to_string(),
            source,
        }
    }
}

/// Engine result alias.
pub type Result<T> = std::result::Result<T, EngineError>;
