//! The library's error type for the socket loops.

use thiserror::Error;

use crate::pacing::PacingError;
use crate::stats::StatsError;

/// Errors of the sender, receiver and reflector.
#[derive(Debug, Error)]
pub enum Error {
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Loading, attaching or reading an eBPF program or map (aya).
    #[error("{context}: {source}")]
    Bpf {
        /// What was being done.
        context: String,
        /// aya's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Inconsistent configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Bad pacing parameters.
    #[error(transparent)]
    Pacing(#[from] PacingError),
    /// Bad statistics parameters.
    #[error(transparent)]
    Stats(#[from] StatsError),
    /// A helper thread panicked.
    #[error("{0} thread panicked")]
    Thread(&'static str),
}

/// Wraps an `io::Error` with context.
pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Wraps an aya error with context.
pub fn bpf_err<E>(context: impl Into<String>) -> impl FnOnce(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let context = context.into();
    move |source| Error::Bpf {
        context,
        source: Box::new(source),
    }
}
