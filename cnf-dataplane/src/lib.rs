//! cnf-dataplane: loads and drives the eBPF network-function chains of build-vnf.
//!
//! The [`engine`] module turns an engine-level [`engine::ChainConfig`] into
//! eBPF programs and map entries (XDP with TC fallback), switches chains
//! atomically, and reads counters and histograms back. The [`daemon`] module is the sidecar process
//! around it: gRPC control API, metrics, capability checks.

pub mod daemon;
pub mod engine;
pub mod spec;
pub mod userspace;
