//! Sidecar mode's TC egress program (`ebpf/lib/egress.h`): on the pod's own interface, beside the chain
//! on ingress, `vnf_egress` records the flows the pod itself opens in the stateful firewalls' conntrack,
//! so their replies are admitted (and only their replies; docs/security.md).
//!
//! The program is part of both attach points' objects (it reads their maps: the active generation, the
//! slots, the firewall configurations, `vnf_ct`), so it follows the chain's generations and live updates
//! with no work here. It never drops or rewrites a packet.
//!
//! Its attachment is not pinned: a kept chain (`--on-exit keep`) keeps its ingress link and maps, and the
//! next daemon attaches egress again when it starts. In between, new flows the pod opens are not recorded
//! and their replies are dropped by a default-deny firewall (fail-closed); flows recorded before live on
//! in the pinned `vnf_ct`.

use aya::programs::SchedClassifier;
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use log::{debug, info};

use super::error::{EngineError, Result};
use super::loader::Engine;

/// Name of the TC egress program in both attach points' objects.
pub const EGRESS: &str = "vnf_egress";

/// The egress attachments of an engine, by interface.
#[derive(Debug, Default)]
pub struct EgressLinks {
    links: Vec<(String, SchedClassifierLinkId)>,
}

impl Engine {
    /// Attaches `vnf_egress` to the TC egress of `iface` (sidecar mode: the chain's interface is the pod's
    /// own). Loads the program on first use. Idempotent per interface.
    pub fn attach_egress(&mut self, iface: &str) -> Result<()> {
        if self.egress.links.iter().any(|(n, _)| n == iface) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let prog = self
            .ebpf
            .program_mut(EGRESS)
            .ok_or_else(|| EngineError::Missing(format!("program {EGRESS}")))?;
        let p: &mut SchedClassifier = prog.try_into().map_err(EngineError::prog(EGRESS))?;
        if p.fd().is_err() {
            p.load().map_err(EngineError::prog(EGRESS))?;
        }
        if let Err(e) = tc::qdisc_add_clsact(iface) {
            debug!("clsact on {iface}: {e} (may already exist)");
        }
        let id = p
            .attach(iface, TcAttachType::Egress)
            .map_err(|e| EngineError::Attach {
                iface: iface.into(),
                reasons: format!("tc-egress: {e}"),
            })?;
        self.egress.links.push((iface.to_string(), id));
        info!(
            "sidecar mode: TC egress on {iface} records the flows the pod opens (their replies pass a \
             stateful firewall) and translates the replies of translated flows ({} ms)",
            started.elapsed().as_millis()
        );
        Ok(())
    }

    /// Interfaces whose TC egress runs `vnf_egress`.
    pub fn egress_interfaces(&self) -> Vec<&str> {
        self.egress.links.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Detaches `vnf_egress` from every interface (also happens when the engine is dropped).
    pub fn detach_egress(&mut self) -> Result<()> {
        while let Some((iface, id)) = self.egress.links.pop() {
            let prog = self
                .ebpf
                .program_mut(EGRESS)
                .ok_or_else(|| EngineError::Missing(format!("program {EGRESS}")))?;
            let p: &mut SchedClassifier = prog.try_into().map_err(EngineError::prog(EGRESS))?;
            p.detach(id).map_err(EngineError::prog(EGRESS))?;
            debug!("detached the TC egress program from {iface}");
        }
        Ok(())
    }
}
