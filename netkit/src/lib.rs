//! Low-level network helpers that several build-vnf crates need, in one place: entering a network
//! namespace ([`ns`]) and creating named ones ([`netns`], as `ip netns add` does), links, addresses,
//! routes and neighbours over a synchronous rtnetlink socket ([`nl::Netlink`]; [`link`], [`addr`],
//! [`route`], [`neigh`]), the Internet checksum ([`checksum`]), MAC addresses ([`mac`]) and the offload
//! features of an interface read and set through the `SIOCETHTOOL` ioctl ([`ethtool`]) and kernel
//! parameters through `/proc/sys` ([`sysctl`]), so a distroless image without the `ethtool`, `ip` or
//! `sysctl` binaries still sees and sets them, and the memory area behind an AF_XDP UMEM
//! ([`umem`]).

pub mod addr;
pub mod checksum;
pub mod ethtool;
pub mod link;
pub mod mac;
pub mod neigh;
pub mod netns;
pub mod nl;
pub mod ns;
pub mod route;
pub mod sysctl;
pub mod umem;

pub use link::{Link, VethEnd};
pub use nl::{Netlink, NlError};
pub use route::Route;
