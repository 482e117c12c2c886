//! The composition API: an engine-level [`Plan`] in, a [`Running`] data plane out (loaded, attached, the
//! user-space tier started with its sockets in the chain's XSKMAP). [`super::Dataplane`] (the daemon) and
//! `vnfctl bench` both start their data planes here.

use std::path::PathBuf;

use crds::Hook as SpecHook;

use super::{ApplyError, Attachment, offload};
use crate::engine::{ChainConfig, Engine, EngineError, Hook, XdpAttach};
use crate::userspace::{TierConfig, UserTier};

/// What to run: the engine-level description of one data plane.
/// (No `Debug`: the tier configurations hold the cipher keys.)
#[derive(Clone)]
pub struct Plan {
    /// The hook: a forced one (`xdp`, `xdpGeneric`, `tc`) is exactly that hook, and an error says why
    /// it is impossible; `auto` falls back from XDP to TC when XDP cannot attach to some interface.
    pub hook: SpecHook,
    /// The interfaces the entry program attaches to (one engine serves all, so NAT and LB see both
    /// directions).
    pub interfaces: Vec<String>,
    /// The kernel part of the chain.
    pub chain: ChainConfig,
    /// A bpffs directory to pin the chain's maps and links in (a kept chain), or none.
    pub pins: Option<PathBuf>,
    /// Sidecar mode: the pod's own interface whose TC egress records the flows the pod opens.
    pub egress: Option<String>,
    /// Turn off TX checksum offload on veth interfaces of the chain (see [`super::offload`]).
    pub fix_veth_checksums: bool,
    /// One user-space tier worker per entry, each socket registered in the chain's XSKMAP (needs XDP).
    pub tiers: Vec<TierConfig>,
}

impl Plan {
    /// A plan of `chain` on `interfaces` with `hook`: no pins, no sidecar egress, offloads left alone,
    /// no user-space tier.
    pub fn new(hook: SpecHook, interfaces: Vec<String>, chain: ChainConfig) -> Self {
        Self {
            hook,
            interfaces,
            chain,
            pins: None,
            egress: None,
            fix_veth_checksums: false,
            tiers: Vec::new(),
        }
    }
}

/// A running data plane. Dropped, it stops the tier workers first (their sockets leave the XSKMAP) and
/// then detaches the engine.
pub struct Running {
    /// The user-space tier workers (declared first: dropped before the engine).
    pub tiers: Vec<UserTier>,
    /// The loaded, attached engine.
    pub engine: Engine,
    /// Where it is attached, with the hook each interface got.
    pub attachments: Vec<Attachment>,
}

/// Loads the engine for `plan.hook`, applies `plan.chain`, attaches it to every interface, then
/// [`finish`]es it. All or nothing: on error nothing stays attached.
pub fn start(plan: &Plan) -> Result<Running, ApplyError> {
    let (mut engine, attachments) = load_attached(plan)?;
    let tiers = finish(&mut engine, &attachments, plan)?;
    Ok(Running {
        tiers,
        engine,
        attachments,
    })
}

/// The steps after the engine is attached (a fresh engine or a re-adopted one): sidecar mode's egress,
/// the veth checksum fix, the user-space tier workers with their sockets registered in the chain's
/// XSKMAP. All or nothing for the workers: on error those already started stop.
pub(super) fn finish(
    engine: &mut Engine,
    attachments: &[Attachment],
    plan: &Plan,
) -> Result<Vec<UserTier>, ApplyError> {
    if let Some(iface) = &plan.egress {
        engine.attach_egress(iface)?;
    }
    if plan.fix_veth_checksums {
        offload::fix_veth_checksums(attachments.iter().map(|a| a.interface.as_str()));
    }
    if plan.tiers.is_empty() {
        return Ok(Vec::new());
    }
    if engine.hook() != Hook::Xdp {
        return Err(ApplyError::Unsupported {
            path: "spec.dataplane.hook".into(),
            message:
                "user-space functions need XDP (the chain attached with TC, which cannot hand \
                      packets to AF_XDP sockets)"
                    .into(),
        });
    }
    let mut tiers = Vec::with_capacity(plan.tiers.len());
    for cfg in &plan.tiers {
        tiers.push(UserTier::start(cfg.clone(), |queue, fd| {
            engine.register_xsk(queue, fd)
        })?);
    }
    if let Some(first) = plan.tiers.first() {
        log::info!(
            "user-space tier: {} function(s) on {}, {} queue(s), polling {:?}",
            first.functions.len(),
            first.ingress,
            plan.tiers.len(),
            first.polling
        );
    }
    Ok(tiers)
}

/// Loads the engine for the plan's hook and attaches it to every interface; `auto` falls back from XDP
/// to TC when XDP cannot attach to some interface.
fn load_attached(plan: &Plan) -> Result<(Engine, Vec<Attachment>), EngineError> {
    let hook = plan.hook;
    // a forced hook is exactly that hook (an error says why it is impossible); auto falls back
    let xdp_mode = match hook {
        SpecHook::Xdp => XdpAttach::Native,
        SpecHook::XdpGeneric => XdpAttach::Generic,
        SpecHook::Auto | SpecHook::Tc => XdpAttach::Auto,
    };
    let try_hook = |h: Hook| -> Result<(Engine, Vec<Attachment>), EngineError> {
        let mut engine = match &plan.pins {
            Some(dir) => Engine::load_kept(h, dir)?,
            // verifies only the programs the chain runs (the apply below loads them)
            None => Engine::load_lazily(h)?,
        };
        engine.apply(&plan.chain)?;
        let mut out = Vec::new();
        for i in &plan.interfaces {
            out.push(Attachment::from_info(
                engine.attach_with(i, xdp_mode)?,
                hook,
            ));
        }
        Ok((engine, out))
    };
    match hook {
        SpecHook::Tc => try_hook(Hook::Tc),
        SpecHook::Xdp | SpecHook::XdpGeneric => try_hook(Hook::Xdp),
        SpecHook::Auto => match try_hook(Hook::Xdp) {
            Ok(ok) => Ok(ok),
            Err(xdp) => {
                let (engine, mut atts) = try_hook(Hook::Tc)?;
                for a in &mut atts {
                    let why = format!("xdp: {xdp}");
                    a.fallback_reason = if a.fallback_reason.is_empty() {
                        why
                    } else {
                        format!("{why}; {}", a.fallback_reason)
                    };
                }
                Ok((engine, atts))
            }
        },
    }
}
