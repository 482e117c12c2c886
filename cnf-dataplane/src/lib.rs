//! cnf-dataplane: loads and drives the eBPF network-function chains of build-vnf (a library with no
//! server in it: the `cnf-dataplane` daemon binary is package `cnf-dataplane-daemon`).
//!
//! - [`engine`] turns an engine-level [`engine::ChainConfig`] into eBPF programs and map entries (XDP with
//!   TC fallback), switches chains atomically, and reads counters and histograms back;
//! - [`spec`] maps a VNFChain spec onto the engine and the user-space tier;
//! - [`userspace`] is the user-space tier (AF_XDP, optionally DPDK): the payload cipher (crate
//!   `cnf-usertier`, re-exported);
//! - [`compose`] is the one composition of them: [`compose::start`] loads, attaches, starts the tier and
//!   registers its sockets; [`compose::Dataplane`] runs a VNFChain on it (generations, re-adoption).

pub mod compose;
pub mod engine;
pub mod spec;
pub use cnf_usertier as userspace;
