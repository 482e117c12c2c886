//! Attaching the entry program: XDP (native, else generic) or TC clsact ingress, pinned links of a
//! kept chain, taking over a kept link, detaching.
//!
//! Hooks beside the entry program (another attach type, another direction) go here: a `Hook`-like
//! choice in [`Engine::attach_with`], a [`Link`] variant, and its detach in [`Entry::detach`].

use std::path::{Path, PathBuf};

use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::tc::{self, SchedClassifierLink, SchedClassifierLinkId, TcAttachType};
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::{SchedClassifier, Xdp, XdpMode};
use log::debug;

use super::abi;
use super::error::{EngineError, Result};
use super::loader::{ENTRY, Engine, Hook};
use super::maps::ChainMaps;
use super::pin::{self, pin_err};

/// Which XDP mode [`Engine::attach_with`] may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (driver) mode, else generic (skb) mode.
    #[default]
    Auto,
    /// Native mode only.
    Native,
    /// Generic mode only.
    Generic,
}

/// Where and how the entry program got attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachInfo {
    /// Interface name.
    pub iface: String,
    /// Hook in use.
    pub hook: Hook,
    /// "xdp-native", "xdp-generic" or "tc-ingress".
    pub mode: &'static str,
    /// Why earlier, preferred modes were not used.
    pub fallback_reasons: Vec<String>,
}

/// One attachment of the entry program.
#[derive(Debug)]
pub(crate) enum Link {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
    /// A link pinned in the kept chain's directory: it stays attached without this process.
    Pinned {
        link: FdLink,
        path: PathBuf,
    },
}

/// The attach mode labels.
pub(crate) fn mode_label(mode: &str) -> Option<&'static str> {
    ["xdp-native", "xdp-generic", "tc-ingress"]
        .into_iter()
        .find(|m| *m == mode)
}

/// The entry program, typed by hook.
pub(crate) enum Entry<'a> {
    Xdp(&'a mut Xdp),
    Tc(&'a mut SchedClassifier),
}

impl<'a> Entry<'a> {
    /// The entry program of `ebpf`, an object for `hook`.
    pub(crate) fn of(ebpf: &'a mut Ebpf, hook: Hook) -> Result<Self> {
        let prog = ebpf
            .program_mut(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))?;
        Ok(match hook {
            Hook::Xdp => Entry::Xdp(prog.try_into().map_err(EngineError::prog(ENTRY))?),
            Hook::Tc => Entry::Tc(prog.try_into().map_err(EngineError::prog(ENTRY))?),
        })
    }

    /// Takes attachment `link` out of the program as an fd link (inner `Err`: not a BPF link).
    fn fd_link(&mut self, link: Link) -> Result<std::result::Result<FdLink, LinkError>> {
        let prog = EngineError::prog(ENTRY);
        Ok(match (self, link) {
            (Entry::Xdp(p), Link::Xdp(id)) => FdLink::try_from(p.take_link(id).map_err(prog)?),
            (Entry::Tc(p), Link::Tc(id)) => FdLink::try_from(p.take_link(id).map_err(prog)?),
            (_, other) => {
                return Err(EngineError::Config(format!(
                    "{other:?} is not an attachment of this engine's hook"
                )));
            }
        })
    }

    /// Makes the link `fd` run this program (one atomic update) and returns it as an fd link.
    fn replace_in(&mut self, fd: FdLink, bad: &dyn Fn(String) -> EngineError) -> Result<FdLink> {
        let replacing = |e: aya::programs::ProgramError| {
            bad(format!("replacing its program: {}", error_chain(&e)))
        };
        let taken = match self {
            Entry::Xdp(p) => {
                let link =
                    XdpLink::try_from(fd).map_err(|e| bad(format!("not an XDP link: {e}")))?;
                let id = p.attach_to_link(link).map_err(replacing)?;
                FdLink::try_from(p.take_link(id).map_err(EngineError::prog(ENTRY))?)
            }
            Entry::Tc(p) => {
                let link = SchedClassifierLink::try_from(fd)
                    .map_err(|e| bad(format!("not a TC link: {e}")))?;
                let id = p.attach_to_link(link).map_err(replacing)?;
                FdLink::try_from(p.take_link(id).map_err(EngineError::prog(ENTRY))?)
            }
        };
        taken.map_err(|e| bad(e.to_string()))
    }

    /// Detaches attachment `link` (a pinned one goes with its pin, see [`Engine::detach`]).
    fn detach(&mut self, link: Link) -> Result<()> {
        let prog = EngineError::prog(ENTRY);
        match (self, link) {
            (Entry::Xdp(p), Link::Xdp(id)) => p.detach(id).map_err(prog),
            (Entry::Tc(p), Link::Tc(id)) => p.detach(id).map_err(prog),
            _ => Ok(()),
        }
    }
}

impl Engine {
    /// Attaches the entry program to `iface`: XDP native, else XDP generic
    /// (XDP engine), or TC clsact ingress (TC engine).  One engine may be
    /// attached to several interfaces; they then share chain and state (both
    /// directions of a NAT/LB flow must pass the same engine).
    pub fn attach(&mut self, iface: &str) -> Result<AttachInfo> {
        self.attach_with(iface, XdpAttach::Auto)
    }

    /// Like [`Engine::attach`], with the XDP mode forced (`Native` or `Generic`) or
    /// automatic; ignored by a TC engine. When native XDP is refused, the reason
    /// names what blocks it on this interface (see [`super::diagnose`]).
    pub fn attach_with(&mut self, iface: &str, xdp: XdpAttach) -> Result<AttachInfo> {
        if self.links.iter().any(|(name, _)| name == iface) {
            return Err(EngineError::Config(format!("already attached to {iface}")));
        }
        if let Some(pins) = &self.pins {
            let path = pin::path(&pins.dir, &pin::link_name(iface));
            if path.exists() {
                return self.take_over(iface, &path);
            }
        }
        let mut reasons = Vec::new();
        let attached = match Entry::of(&mut self.ebpf, self.hook)? {
            Entry::Xdp(p) => attach_xdp(p, &mut self.maps, iface, xdp, &mut reasons)?,
            Entry::Tc(p) => {
                if let Err(e) = tc::qdisc_add_clsact(iface) {
                    debug!("clsact on {iface}: {e} (may already exist)");
                }
                match p.attach(iface, TcAttachType::Ingress) {
                    Ok(id) => Some((Link::Tc(id), "tc-ingress")),
                    Err(e) => {
                        reasons.push(format!("tc-ingress: {}", error_chain(&e)));
                        None
                    }
                }
            }
        };
        if let Some((link, mode)) = attached {
            return self.attached(iface, link, mode, reasons);
        }
        if let Some(flags) = self.maps.if_flags.as_mut() {
            set_if_flags(flags, iface, false)?;
        }
        Err(EngineError::Attach {
            iface: iface.into(),
            reasons: reasons.join("; "),
        })
    }

    /// Records a new attachment; a kept engine pins its link first (it then survives the process).
    fn attached(
        &mut self,
        iface: &str,
        link: Link,
        mode: &'static str,
        fallback_reasons: Vec<String>,
    ) -> Result<AttachInfo> {
        let link = self.pin_link(iface, link)?;
        self.record_link(iface, link, mode, fallback_reasons)
    }

    /// Adds an attachment to the engine's list; the first one of an XDP engine starts the replay of
    /// parked fragments ([`super::fragreplay`]).
    pub(super) fn record_link(
        &mut self,
        iface: &str,
        link: Link,
        mode: &'static str,
        fallback_reasons: Vec<String>,
    ) -> Result<AttachInfo> {
        self.links.push((iface.to_string(), link));
        self.modes.push((iface.to_string(), mode));
        self.start_frag_replay()?;
        Ok(AttachInfo {
            iface: iface.into(),
            hook: self.hook,
            mode,
            fallback_reasons,
        })
    }

    /// Pins a link of a kept engine in its directory (a no-op for other engines).
    fn pin_link(&mut self, iface: &str, link: Link) -> Result<Link> {
        let Some(dir) = self.pins.as_ref().map(|p| p.dir.clone()) else {
            return Ok(link);
        };
        if let Link::Pinned { .. } = link {
            return Ok(link);
        }
        let fd = Entry::of(&mut self.ebpf, self.hook)?
            .fd_link(link)?
            .map_err(|e| {
                pin_err(
                    &dir,
                    format!("the attachment to {iface} is not a BPF link and cannot be kept: {e}"),
                )
            })?;
        let path = pin::path(&dir, &pin::link_name(iface));
        let pinned = fd
            .pin(&path)
            .map_err(|e| pin_err(&dir, format!("pinning the link to {iface}: {e}")))?;
        Ok(Link::Pinned {
            link: FdLink::from(pinned),
            path,
        })
    }

    /// Makes the pinned link at `path` (left by an earlier process) run this engine's entry program:
    /// one atomic link update, so the interface never runs without a chain.
    pub(super) fn replace_in_link(&mut self, iface: &str, path: &Path) -> Result<Link> {
        let dir = self
            .pins
            .as_ref()
            .map(|p| p.dir.clone())
            .unwrap_or_default();
        let bad = |what: String| pin_err(&dir, format!("link to {iface}: {what}"));
        let fd: FdLink = PinnedLink::from_pin(path)
            .map_err(|e| bad(format!("opening {}: {e}", path.display())))?
            .into();
        let link = Entry::of(&mut self.ebpf, self.hook)?.replace_in(fd, &bad)?;
        Ok(Link::Pinned {
            link,
            path: path.to_path_buf(),
        })
    }

    /// Attaches by taking over the kept link on `iface` that an earlier process left (its state record
    /// was unusable, so this engine starts afresh): the link's program is replaced atomically.
    fn take_over(&mut self, iface: &str, path: &Path) -> Result<AttachInfo> {
        let link = self.replace_in_link(iface, path)?;
        let mode = match self.hook {
            Hook::Tc => "tc-ingress",
            Hook::Xdp if super::diagnose::native_xdp_blockers(iface).is_empty() => "xdp-native",
            Hook::Xdp => "xdp-generic",
        };
        let why = format!(
            "took over the link kept in {} (its program replaced atomically)",
            path.display()
        );
        self.record_link(iface, link, mode, vec![why])
    }

    /// Interfaces the engine is attached to.
    pub fn attached_interfaces(&self) -> Vec<&str> {
        self.links.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Detaches the entry program from every interface (also happens when
    /// the engine is dropped).
    pub fn detach(&mut self) -> Result<()> {
        // sidecar mode's TC egress goes too
        self.detach_egress()?;
        self.modes.clear();
        while let Some((_, link)) = self.links.pop() {
            if let Link::Pinned { link, path } = link {
                // unpinned and closed: the link goes and the program with it
                std::fs::remove_file(&path).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(EngineError::Io(e))
                    }
                })?;
                drop(link);
                continue;
            }
            Entry::of(&mut self.ebpf, self.hook)?.detach(link)?;
        }
        // a kept engine owns its pins: they go with the attachments
        if let Some(pins) = self.pins.take() {
            drop(pins.record);
            pin::remove_all(&pins.dir)?;
        }
        Ok(())
    }

    /// Loads the XDP engine and attaches it (native, then generic); if XDP
    /// cannot attach, loads the TC engine instead.  The reasons for every
    /// rejected mode are recorded in the returned [`AttachInfo`].
    pub fn load_and_attach(iface: &str) -> Result<(Self, AttachInfo)> {
        let mut reasons = Vec::new();
        match Self::load(Hook::Xdp) {
            Ok(mut e) => match e.attach(iface) {
                Ok(info) => return Ok((e, info)),
                Err(err) => reasons.push(err.to_string()),
            },
            Err(err) => reasons.push(format!("xdp load: {err}")),
        }
        let mut e = Self::load(Hook::Tc)?;
        let mut info = match e.attach(iface) {
            Ok(info) => info,
            Err(EngineError::Attach { reasons: tc, .. }) => {
                reasons.push(tc);
                return Err(EngineError::Attach {
                    iface: iface.into(),
                    reasons: reasons.join("; "),
                });
            }
            Err(other) => return Err(other),
        };
        reasons.append(&mut info.fallback_reasons);
        info.fallback_reasons = reasons;
        Ok((e, info))
    }
}

/// Tries the XDP modes `xdp` allows, in order; the first that attaches wins, the others' reasons
/// go to `reasons`.
fn attach_xdp(
    p: &mut Xdp,
    maps: &mut ChainMaps,
    iface: &str,
    xdp: XdpAttach,
    reasons: &mut Vec<String>,
) -> Result<Option<(Link, &'static str)>> {
    let modes: &[(XdpMode, &'static str)] = match xdp {
        XdpAttach::Auto => &[
            (XdpMode::Driver, "xdp-native"),
            (XdpMode::Skb, "xdp-generic"),
        ],
        XdpAttach::Native => &[(XdpMode::Driver, "xdp-native")],
        XdpAttach::Generic => &[(XdpMode::Skb, "xdp-generic")],
    };
    for &(mode, label) in modes {
        // before the first packet: the entry reads it to finish partial checksums right
        if let Some(flags) = maps.if_flags.as_mut() {
            set_if_flags(flags, iface, mode == XdpMode::Skb)?;
        }
        match p.attach(iface, mode) {
            Ok(id) => return Ok(Some((Link::Xdp(id), label))),
            Err(e) => {
                let mut why = format!("{label}: {}", error_chain(&e));
                if mode == XdpMode::Driver {
                    let blockers = super::diagnose::native_xdp_blockers(iface);
                    if !blockers.is_empty() {
                        why = format!("{why} ({blockers})");
                    }
                }
                reasons.push(why);
            }
        }
    }
    Ok(None)
}

/// Records whether the entry runs in generic XDP mode on `iface` (`vnf_if_flags`); no entry means native.
fn set_if_flags(
    flags: &mut BpfHashMap<MapData, u32, u32>,
    iface: &str,
    generic: bool,
) -> Result<()> {
    let Some(ifindex) = crate::compose::ifindex(iface) else {
        return Ok(()); // attach reports the missing interface
    };
    if generic {
        flags
            .insert(ifindex, abi::IF_F_XDP_GENERIC, 0)
            .map_err(EngineError::map(ChainMaps::IF_FLAGS))
    } else if flags.get(&ifindex, 0).is_ok() {
        flags
            .remove(&ifindex)
            .map_err(EngineError::map(ChainMaps::IF_FLAGS))
    } else {
        Ok(())
    }
}

/// An error with its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
