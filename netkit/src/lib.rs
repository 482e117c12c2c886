//! Low-level network helpers that several build-vnf crates need, in one place: entering a network
//! namespace ([`ns`]), the Internet checksum ([`checksum`]), MAC addresses ([`mac`]) and the offload
//! features of an interface read through the `SIOCETHTOOL` ioctl ([`ethtool`]), so a distroless image
//! without the `ethtool` binary still sees them, and the memory area behind an AF_XDP UMEM ([`umem`]).

pub mod checksum;
pub mod ethtool;
pub mod mac;
pub mod ns;
pub mod umem;
