//! Which eBPF programs already run on an interface's receive path: the XDP program (any mode) and the
//! TC ingress programs (tcx links and `cls_bpf` filters on the clsact qdisc).
//!
//! A daemon refuses an interface that carries a program other than its own pinned chain's, instead of
//! attaching beside it (a busy XDP hook used to make `hook: auto` fall back to TC silently, and two chains
//! then ran on one interface, both reporting Ready). Read over rtnetlink with netkit's socket
//! (`RTM_GETLINK`'s `IFLA_XDP`, `RTM_GETTFILTER` on the clsact ingress parent, the way `ip link` and
//! `tc filter show` read them; layouts from uapi `linux/rtnetlink.h`, `linux/if_link.h`,
//! `linux/pkt_cls.h`, `linux/pkt_sched.h`) and `BPF_PROG_QUERY` for tcx (aya's `SchedClassifier::query_tcx`).

use std::io;

use aya::programs::SchedClassifier;
use aya::programs::tc::TcAttachType;

/// One program found on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Where: `xdp`, `tc ingress (tcx)` or `tc ingress (cls_bpf)`.
    pub hook: &'static str,
    /// The kernel's program id.
    pub id: u32,
    /// The program's name (as loaded; empty when unknown).
    pub name: String,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} program id {}", self.hook, self.id)?;
        if !self.name.is_empty() {
            write!(f, " ({})", self.name)?;
        }
        Ok(())
    }
}

// rtnetlink constants (uapi linux/rtnetlink.h, linux/if_link.h, linux/pkt_cls.h)
const RTM_GETLINK: u16 = 18;
const RTM_NEWLINK: u16 = 16;
const RTM_GETTFILTER: u16 = 46;
const RTM_NEWTFILTER: u16 = 44;
const IFINFOMSG_LEN: usize = 16;
const TCMSG_LEN: usize = 20;
const IFLA_XDP: u16 = 43;
/// IFLA_XDP_PROG_ID, _DRV_PROG_ID, _SKB_PROG_ID, _HW_PROG_ID.
const IFLA_XDP_IDS: [u16; 4] = [4, 5, 6, 7];
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
/// TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS).
const CLSACT_INGRESS: u32 = 0xffff_fff2;

/// Every program on `ifindex`/`iface`'s receive path.
pub fn programs_on(iface: &str, ifindex: u32) -> io::Result<Vec<Found>> {
    let mut out = Vec::new();
    for id in xdp_ids(ifindex)? {
        out.push(Found {
            hook: "xdp",
            id,
            name: prog_name(id),
        });
    }
    // tcx exists from Linux 6.6; older kernels answer EINVAL (nothing can be attached there either)
    match SchedClassifier::query_tcx(iface, TcAttachType::Ingress) {
        Ok((_, progs)) => out.extend(progs.iter().map(|p| Found {
            hook: "tc ingress (tcx)",
            id: p.id(),
            name: p.name_as_str().unwrap_or_default().to_string(),
        })),
        Err(e) => log::debug!("tcx query on {iface}: {e}"),
    }
    for (id, name) in cls_bpf_ids(ifindex)? {
        out.push(Found {
            hook: "tc ingress (cls_bpf)",
            id,
            name,
        });
    }
    Ok(out)
}

/// The name of program `id`, empty when it cannot be read.
fn prog_name(id: u32) -> String {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Ids of the XDP programs on `ifindex` (driver, generic, offloaded).
fn xdp_ids(ifindex: u32) -> io::Result<Vec<u32>> {
    let mut body = vec![0u8; IFINFOMSG_LEN];
    body[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    let mut ids = Vec::new();
    let answers = netkit::Netlink::open()
        .and_then(|mut nl| nl.query(RTM_GETLINK, false, &body, "reading the link's XDP programs"))
        .map_err(io_error)?;
    for (ty, payload) in answers {
        if ty != RTM_NEWLINK || payload.len() < IFINFOMSG_LEN {
            continue;
        }
        for (t, v) in netkit::nl::attrs(&payload[IFINFOMSG_LEN..]) {
            if t != IFLA_XDP {
                continue;
            }
            for (t, v) in netkit::nl::attrs(v) {
                if IFLA_XDP_IDS.contains(&t) && v.len() >= 4 {
                    let id = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
                    if id != 0 && !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
    }
    Ok(ids)
}

/// (id, name) of the `cls_bpf` filters on `ifindex`'s clsact ingress (none without a clsact qdisc).
fn cls_bpf_ids(ifindex: u32) -> io::Result<Vec<(u32, String)>> {
    let mut body = vec![0u8; TCMSG_LEN];
    body[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    body[12..16].copy_from_slice(&CLSACT_INGRESS.to_ne_bytes());
    let msgs = match netkit::Netlink::open()
        .and_then(|mut nl| {
            nl.query(
                RTM_GETTFILTER,
                true,
                &body,
                "reading the clsact ingress filters",
            )
        })
        .map_err(io_error)
    {
        Ok(m) => m,
        // no clsact qdisc on the interface: nothing attached there
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
            return Ok(vec![]);
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (ty, payload) in msgs {
        if ty != RTM_NEWTFILTER || payload.len() < TCMSG_LEN {
            continue;
        }
        let a = netkit::nl::attrs(&payload[TCMSG_LEN..]);
        let is_bpf = a
            .iter()
            .any(|(t, v)| *t == TCA_KIND && v.starts_with(b"bpf\0"));
        let Some((_, opts)) = a.iter().find(|(t, _)| *t == TCA_OPTIONS) else {
            continue;
        };
        if !is_bpf {
            continue;
        }
        let inner = netkit::nl::attrs(opts);
        let id = inner
            .iter()
            .find(|(t, v)| *t == TCA_BPF_ID && v.len() >= 4)
            .map(|(_, v)| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
        let name = inner
            .iter()
            .find(|(t, _)| *t == TCA_BPF_NAME)
            .map(|(_, v)| {
                String::from_utf8_lossy(v)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_default();
        if let Some(id) = id
            && !out.iter().any(|(i, _)| *i == id)
        {
            out.push((id, name));
        }
    }
    Ok(out)
}

/// The kernel's answer (an errno such as "no clsact qdisc" stays inspectable), else netkit's error.
fn io_error(e: netkit::NlError) -> io::Error {
    match e {
        netkit::NlError::Request { source, .. } => source,
        other => io::Error::other(other),
    }
}
