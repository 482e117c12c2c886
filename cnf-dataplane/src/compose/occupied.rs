//! Which eBPF programs already run on an interface's receive path: the XDP program (any mode) and the
//! TC ingress programs (tcx links and `cls_bpf` filters on the clsact qdisc).
//!
//! A daemon refuses an interface that carries a program other than its own pinned chain's, instead of
//! attaching beside it (a busy XDP hook used to make `hook: auto` fall back to TC silently, and two chains
//! then ran on one interface, both reporting Ready). Read over rtnetlink (`RTM_GETLINK`'s `IFLA_XDP`,
//! `RTM_GETTFILTER` on the clsact ingress parent, the way `ip link` and `tc filter show` read them; layouts
//! from uapi `linux/rtnetlink.h`, `linux/if_link.h`, `linux/pkt_cls.h`, `linux/pkt_sched.h`) and
//! `BPF_PROG_QUERY` for tcx (aya's `SchedClassifier::query_tcx`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

// rtnetlink constants (uapi linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/pkt_cls.h)
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
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
    for (ty, payload) in request(RTM_GETLINK, NLM_F_REQUEST, &body)? {
        if ty != RTM_NEWLINK || payload.len() < IFINFOMSG_LEN {
            continue;
        }
        for (t, v) in attrs(&payload[IFINFOMSG_LEN..]) {
            if t != IFLA_XDP {
                continue;
            }
            for (t, v) in attrs(v) {
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
    let msgs = match request(RTM_GETTFILTER, NLM_F_REQUEST | NLM_F_DUMP, &body) {
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
        let a = attrs(&payload[TCMSG_LEN..]);
        let is_bpf = a
            .iter()
            .any(|(t, v)| *t == TCA_KIND && v.starts_with(b"bpf\0"));
        let Some((_, opts)) = a.iter().find(|(t, _)| *t == TCA_OPTIONS) else {
            continue;
        };
        if !is_bpf {
            continue;
        }
        let inner = attrs(opts);
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

/// The (type, value) netlink attributes in `buf` (type without the nested/byte-order flags).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        let next = (len + 3) & !3;
        buf = buf.get(next..).unwrap_or_default();
    }
    out
}

/// Sends one rtnetlink request and returns the (type, payload) of every answer up to `NLMSG_DONE`
/// (dumps) or the first answer (single requests); an `NLMSG_ERROR` with an errno is that error.
fn request(ty: u16, flags: u16, body: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    msg.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    msg.extend_from_slice(body);
    // SAFETY: `msg` is a valid buffer of msg.len() bytes for the call; the kernel is the default peer.
    let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let dump = flags & NLM_F_DUMP != 0;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buf` is writable for buf.len() bytes during the call.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rest = &buf[..n as usize];
        while rest.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let mty = u16::from_ne_bytes([rest[4], rest[5]]);
            if len < NLMSG_HDRLEN || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated netlink message",
                ));
            }
            let payload = &rest[NLMSG_HDRLEN..len];
            match mty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let errno = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    return Ok(out); // an acknowledgement
                }
                _ => out.push((mty, payload.to_vec())),
            }
            rest = rest.get((len + 3) & !3..).unwrap_or_default();
        }
        if !dump && !out.is_empty() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_with_padding_and_bad_lengths_stop_the_walk() {
        // (len 8, type 4 | NLA_F_NESTED, u32 7), (len 5, type 1, "x" + 3 pad), (len 200: truncated)
        let mut buf = Vec::new();
        buf.extend_from_slice(&8u16.to_ne_bytes());
        buf.extend_from_slice(&(4u16 | 0x8000).to_ne_bytes());
        buf.extend_from_slice(&7u32.to_ne_bytes());
        buf.extend_from_slice(&5u16.to_ne_bytes());
        buf.extend_from_slice(&1u16.to_ne_bytes());
        buf.extend_from_slice(b"x\0\0\0");
        buf.extend_from_slice(&200u16.to_ne_bytes());
        buf.extend_from_slice(&2u16.to_ne_bytes());
        let a = attrs(&buf);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[0], (4, &7u32.to_ne_bytes()[..]));
        assert_eq!(a[1], (1, &b"x"[..]));
        assert!(attrs(&[1, 0]).is_empty());
        assert!(attrs(&[0, 0, 0, 0, 9, 9]).is_empty(), "a zero length stops");
    }
}
