//! cnf-usertier, the user-space tier: "advanced" network functions (the payload cipher) on AF_XDP sockets.
//! A crate of its own with no dependency on the engine (cnf-dataplane re-exports it as
//! `cnf_dataplane::userspace`).
//!
//! - [`cipher`]: the AEADs (ChaCha20-Poly1305, AES-256-GCM) and the per-socket nonce sequence;
//! - [`frame`]: parsing Ethernet/VLAN/IPv4/IPv6/UDP and sealing/opening payloads in place, with
//!   every length and checksum fixed (pure functions, unit-tested);
//! - [`poll`]: the polling policies (busyPoll, adaptive, wakeup) as a backoff state machine;
//! - [`stats`]: the counters and the rx→tx latency histogram ([`Stats`]);
//! - [`xsk`]: UMEM, rings and the worker thread ([`UserTier`]);
//! - `dpdk` (cargo feature `dpdk`): the same worker on DPDK ports over virtual devices
//!   ([`Backend::Dpdk`]), started through the same [`UserTier::start`];
//! - [`redirect`]: the standalone XDP program that feeds the sockets when no chain does.
//!
//! The tier does not own the XSKMAP that feeds it: [`UserTier::start`] hands the socket's fd to a
//! callback, which registers it in the chain's map (or a [`redirect::XskRedirect`]'s).

pub mod cipher;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod frame;
pub mod poll;
pub mod redirect;
pub mod stats;
pub mod xsk;

pub use cipher::{Aead, Algorithm, Direction};
pub use frame::{DropReason, MacRewrite};
pub use poll::{AdaptiveTuning, Polling};
pub use stats::{LatencyHistogram, Stats};
pub use xsk::{Backend, CipherSpec, DpdkDriver, TierConfig, UserTier};

/// Errors of the user-space tier.
#[derive(Debug, thiserror::Error)]
pub enum UserspaceError {
    /// A configuration value is out of range.
    #[error("user-space tier configuration: {0}")]
    Config(String),
    /// The interface does not exist (in this network namespace).
    #[error("interface {iface}: {source}")]
    Interface {
        /// The interface.
        iface: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An AF_XDP socket operation failed.
    #[error("AF_XDP {op} on {iface} queue {queue}: {source}")]
    Xsk {
        /// What failed.
        op: &'static str,
        /// The interface.
        iface: String,
        /// The queue.
        queue: u32,
        /// The cause.
        source: std::io::Error,
    },
    /// The UMEM memory could not be mapped.
    #[error("UMEM memory: {0}")]
    Umem(std::io::Error),
    /// The registration callback refused the socket.
    #[error("registering the socket of queue {queue} in the XSKMAP: {msg}")]
    Register {
        /// The queue.
        queue: u32,
        /// The callback's error.
        msg: String,
    },
    /// The OS random source failed.
    #[error("random nonce prefix: {0}")]
    Random(String),
    /// The worker thread could not be started or died.
    #[error("tier worker thread: {0}")]
    Thread(std::io::Error),
    /// A DPDK call failed (EAL, mempool, port).
    #[error("DPDK back end: {0}")]
    Dpdk(String),
    /// Loading or attaching the redirect program failed.
    #[error("xsk redirect program: {0}")]
    Bpf(String),
}
