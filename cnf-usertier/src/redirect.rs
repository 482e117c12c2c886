//! The standalone redirect program (`ebpf/xsk_redirect.c`): every frame of an interface goes to
//! the AF_XDP socket registered for its receive queue. Used when the tier runs on its own (tests,
//! benchmarks); in a chain, the chain's XSKMAP hand-off takes its place.

use std::os::fd::AsFd;

use aya::Ebpf;
use aya::maps::XskMap;
use aya::programs::XdpMode;

use super::UserspaceError;

/// The compiled `ebpf/xsk_redirect.c`.
pub use buildvnf_ebpf::XSK_REDIRECT as XSK_REDIRECT_OBJ;

const PROGRAM: &str = "xsk_redirect";
const MAP: &str = "xsks";

/// The redirect program, loaded and attached to one interface; detached on drop.
pub struct XskRedirect {
    ebpf: Ebpf,
    mode: XdpMode,
}

impl std::fmt::Debug for XskRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskRedirect")
            .field("mode", &self.mode)
            .finish()
    }
}

fn bpf(what: &str, e: impl std::fmt::Display) -> UserspaceError {
    UserspaceError::Bpf(format!("{what}: {e}"))
}

impl XskRedirect {
    /// Loads the program and attaches it to `iface` (in the calling thread's network namespace),
    /// native XDP first, generic XDP as the fallback.
    pub fn attach(iface: &str) -> Result<Self, UserspaceError> {
        let mut ebpf =
            Ebpf::load(XSK_REDIRECT_OBJ).map_err(|e| bpf("loading xsk_redirect.o", e))?;
        let prog = buildvnf_ebpf::load_xdp(&mut ebpf, PROGRAM).map_err(|e| bpf("verifier", e))?;
        let mode = buildvnf_ebpf::attach_xdp(prog, iface, &[XdpMode::Driver, XdpMode::Skb])
            .map_err(|e| bpf(&format!("attaching to {iface}"), e))?;
        Ok(Self { ebpf, mode })
    }

    /// Whether the program runs as native (driver) XDP; else generic.
    pub fn native(&self) -> bool {
        self.mode == XdpMode::Driver
    }

    /// Puts AF_XDP socket `fd` into the slot of `queue`.
    pub fn register(&mut self, queue: u32, fd: impl AsFd) -> Result<(), UserspaceError> {
        let map = self
            .ebpf
            .map_mut(MAP)
            .ok_or_else(|| bpf(MAP, "map missing from the object"))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| bpf(MAP, e))?;
        xsks.set(queue, fd.as_fd(), 0).map_err(|e| bpf(MAP, e))
    }
}
