//! The compiled eBPF objects (`ebpf/`, built and embedded by the `buildvnf-ebpf` crate).

pub use buildvnf_ebpf::{BENCH, TC_CHAIN, XDP_CHAIN};
