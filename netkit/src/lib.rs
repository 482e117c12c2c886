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

#[cfg(test)]
mod testing {
    /// The frame of the privileged unit tests: unless testkit's rule skips `test` (not root, or a tool of
    /// `tools` missing), runs `f` on a thread of its own with the name of a fresh namespace `nk-PID-TAG`
    /// (`f` may move the thread into it), deletes the namespace, then passes on a panic of `f`.
    pub(crate) fn with_namespace(
        test: &str,
        tools: &[&str],
        tag: &str,
        f: impl FnOnce(&str) + Send + 'static,
    ) {
        if !testkit::root_and_tools(test, tools) {
            return;
        }
        let ns = format!("nk-{}-{tag}", std::process::id());
        crate::netns::add(&ns).expect("netns add");
        let outcome = std::thread::spawn({
            let ns = ns.clone();
            move || f(&ns)
        })
        .join();
        let _ = crate::netns::del(&ns);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}
