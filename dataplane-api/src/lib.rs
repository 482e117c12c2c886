//! The gRPC contract between the build-vnf operator and the cnf-dataplane sidecar (generated from `proto/`,
//! feature `grpc`, on by default), and the rules every door shares ([`door`], [`identity`]).

/// `buildvnf.dataplane.v1`.
#[cfg(feature = "grpc")]
#[allow(clippy::all, missing_docs)] // generated code
pub mod v1 {
    tonic::include_proto!("buildvnf.dataplane.v1");
}

#[cfg(feature = "grpc")]
pub use v1::*;

pub mod door;
pub mod identity;
#[cfg(feature = "grpc")]
pub mod unix;
