//! The compiled eBPF objects, embedded at build time by `build.rs`.

use aya::include_bytes_aligned;

/// XDP attach point (`ebpf/xdp_chain.c`).
pub static XDP_CHAIN: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_chain.o"));

/// TC attach point (`ebpf/tc_chain.c`).
pub static TC_CHAIN: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tc_chain.o"));

/// Reference programs of the chain benchmark (`ebpf/bench.c`): a bare one-hop
/// redirect and a counting sink.
pub static BENCH: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench.o"));
