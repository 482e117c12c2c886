//! Dev-only helpers shared by build-vnf's tests and benches (never a dependency of a shipped crate):
//! the skip rule ([`skip`]), network namespaces ([`netns`]), the cnf-dataplane daemon as a process
//! ([`daemon`]), packet builders and checksum checkers ([`packet`]), a packet capture ([`capture`]), a seeded
//! generator ([`rng`]) and shared chain fixtures ([`fixtures`]).
//!
//! Everything is re-exported at the root, so `use testkit::*` (or a test's `mod common` re-exporting it)
//! keeps the short names.

pub mod capture;
pub mod daemon;
pub mod fixtures;
pub mod netns;
pub mod packet;
pub mod process;
pub mod rng;
pub mod skip;
pub mod udp;

pub use capture::*;
pub use netns::*;
pub use packet::*;
pub use process::*;
pub use rng::*;
pub use skip::{can_run_netns_tests, privileged, root_and_tools, skip, tool};
pub use udp::{udp_calls, udp_echo};
