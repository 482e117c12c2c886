//! The gRPC contract between the build-vnf operator and the cnf-dataplane sidecar (generated from `proto/`).

/// `buildvnf.dataplane.v1`.
#[allow(clippy::all, missing_docs)] // generated code
pub mod v1 {
    tonic::include_proto!("buildvnf.dataplane.v1");
}

pub use v1::*;

pub mod door;
pub mod identity;
pub mod unix;
