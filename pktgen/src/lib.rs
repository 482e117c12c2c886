//! `pktgen`: a UDP packet generator, receiver and reflector that measures what a chain of
//! network functions does to traffic — loss, reordering, duplicates, one-way latency and RTT.
//!
//! The pieces are small and separately testable:
//! - [`payload`]: the on-wire test header (magic, stream id, sequence number, tx timestamp);
//! - [`stats`]: per-stream receiver bookkeeping and latency histograms (pure logic);
//! - [`pacing`]: departure schedules (constant, on/off, Poisson, Pareto);
//! - [`sizes`]: packet sizes (fixed, sweep, IMIX);
//! - [`mmsg`]: batched `sendmmsg`/`recvmmsg` I/O;
//! - [`send`]: the paced multi-flow sender (with optional RTT collection);
//! - [`recv`]: the receiver and the reflector;
//! - [`serve`]: the testbed's server listeners (UDP echo, a tiny HTTP server);
//! - [`tcp`]: TCP stream mode (length-prefixed records) and its receiver;
//! - [`xdp_live`]: the fast path, `BPF_PROG_TEST_RUN` live frames with per-frame seq/timestamp;
//! - [`xdp_cps`]: new-flow live frames (a new UDP 5-tuple per frame) and the sink that checks their
//!   translation;
//! - [`xdp_sink`]: the XDP sink receiver (per-CPU and per-stream counters);
//!   both XDP programs are C in `ebpf/` (`pktgen_live.c`, `pktgen_sink.c`), loaded with aya;
//! - [`xsk`]: the AF_XDP transmit generator (paced, flows, sizes, IPv4/IPv6);
//! - [`frame`]: Ethernet/IP/UDP test frames with incrementally updated checksums;
//! - [`error`]: the library error type;
//! - [`netns`]: network-namespace/veth helpers used by the real-packet tests;
//! - [`clock`]: the shared `CLOCK_MONOTONIC` clock.

pub mod clock;
pub mod error;
pub mod frame;
pub mod mmsg;
pub mod netns;
pub mod pacing;
pub mod payload;
pub mod recv;
pub mod send;
pub mod serve;
pub mod sizes;
pub mod stats;
pub mod tcp;
pub mod xdp_cps;
pub mod xdp_live;
pub mod xdp_sink;
pub mod xsk;
