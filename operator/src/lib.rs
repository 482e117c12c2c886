//! The build-vnf operator: reconciles `VNFChain`s into cnf-dataplane pods, pushes live updates over gRPC,
//! rolls back failed generations and reports status that tells the truth.

pub mod certs;
pub mod controller;
pub mod copies;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod read;
pub mod render;
pub mod sidecar;
pub mod status;
pub mod webhook;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod scenarios;

/// Everything that can go wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed (adding/removing the finalizer, or the wrapped reconcile).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// An object lacks a field the operator needs.
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// A desired object could not be rendered.
    #[error("rendering: {0}")]
    Render(String),
    /// A certificate could not be issued or the CA is unusable (certs.rs).
    #[error("certificates: {0}")]
    Certs(#[from] certs::CertError),
    /// The VNFChain CRD is not installed in the cluster.
    #[error(
        "the VNFChain CRD (vnfchains.buildvnf.io) is not installed: run `kubectl apply -f crds/buildvnf.io_vnfchains.yaml` (or install the Helm chart) and start the operator again"
    )]
    CrdMissing,
}

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::MissingField(_) => "missing_field",
            Error::Render(_) => "render",
            Error::CrdMissing => "crd_missing",
            Error::Certs(_) => "certs",
        }
    }

    /// The reason the chain's `Degraded` condition and the Warning Event give for a failed reconcile: the
    /// API server's own reason for a refused request (`Forbidden`, `NotFound`, `Conflict`, `Invalid`, …),
    /// otherwise what failed (`ApiUnreachable`, `RenderFailed`, …). Always a valid condition reason.
    pub fn reason(&self) -> String {
        match self {
            Error::Kube(e) => kube_reason(e),
            Error::Finalizer(e) => match e.as_ref() {
                FinalizerError::ApplyFailed(inner) | FinalizerError::CleanupFailed(inner) => {
                    inner.reason()
                }
                FinalizerError::AddFinalizer(e) | FinalizerError::RemoveFinalizer(e) => {
                    kube_reason(e)
                }
                _ => "FinalizerFailed".into(),
            },
            Error::MissingField(_) => "MissingField".into(),
            Error::Render(_) => "RenderFailed".into(),
            Error::CrdMissing => "CrdMissing".into(),
            Error::Certs(certs::CertError::Kube(e)) => kube_reason(e),
            Error::Certs(_) => "CertificateFailed".into(),
        }
    }
}

use kube::runtime::finalizer::Error as FinalizerError;

fn kube_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            // A condition reason matches `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`.
            let valid = status
                .reason
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && status.reason.chars().all(|c| c.is_ascii_alphanumeric());
            if valid {
                status.reason.clone()
            } else {
                "ApiError".into()
            }
        }
        _ => "ApiUnreachable".into(),
    }
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
