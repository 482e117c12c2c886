//! The user-space hand-off (`ebpf/nf/userspace.h`): redirects to the AF_XDP socket registered for
//! the packet's receive queue (XDP only); no per-instance configuration.

use std::os::fd::AsFd;

use aya::maps::{MapData, XskMap};

use super::NetworkFunction;
use crate::engine::abi;
use crate::engine::config::FunctionKind;
use crate::engine::error::{EngineError, Result};
use crate::engine::maps::{ignore_missing, map_bundle};

map_bundle! {
    /// The hand-off: its maps (it keeps nothing else).
    pub(crate) struct Userspace {}
    xdp {
        /// AF_XDP sockets, by receive queue.
        xsks: XskMap<MapData> = XSKS("vnf_xsks"),
    }
}

impl NetworkFunction for Userspace {
    const KIND: u32 = abi::kind::USERSPACE;
    const PROGRAM: &'static str = "vnf_userspace";
    type Maps = Self;
    type Prepared = ();

    fn new(maps: Self) -> Self {
        maps
    }

    fn prepare(kind: &FunctionKind) -> Option<Result<()>> {
        matches!(kind, FunctionKind::UserspaceHandoff).then_some(Ok(()))
    }

    /// The hand-off needs no per-instance configuration.
    fn write(&mut self, _inst: u32, _: &(), _nr_cpus: usize) -> Result<()> {
        Ok(())
    }
}

impl Userspace {
    /// Registers socket `xsk` for receive queue `queue`.
    pub(crate) fn register(&mut self, queue: u32, xsk: impl AsFd) -> Result<()> {
        self.xsk_map(queue)?
            .set(queue, xsk.as_fd(), 0)
            .map_err(EngineError::map(Self::XSKS))
    }

    /// Removes the socket of `queue`.
    pub(crate) fn unregister(&mut self, queue: u32) -> Result<()> {
        let r = self.xsk_map(queue)?.unset(queue);
        ignore_missing(r, Self::XSKS)
    }

    fn xsk_map(&mut self, queue: u32) -> Result<&mut XskMap<MapData>> {
        if queue >= abi::MAX_XSK_QUEUES {
            return Err(EngineError::Config(format!(
                "receive queue {queue}: the user-space tier serves queues 0..{}",
                abi::MAX_XSK_QUEUES
            )));
        }
        self.xsks.as_mut().ok_or_else(|| {
            EngineError::Config(
                "the user-space hand-off needs XDP (TC cannot redirect to AF_XDP sockets)".into(),
            )
        })
    }
}
