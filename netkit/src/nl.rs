//! A synchronous rtnetlink (`NETLINK_ROUTE`) socket: one request, one acknowledgement, no async runtime.
//!
//! The socket belongs to the network namespace its creating thread was in ([`Netlink::open_in`] enters
//! the namespace only for the `socket(2)` call), so every request on it acts in that namespace whatever
//! thread sends it later. Messages are built by hand from the kernel's UAPI layouts
//! (`include/uapi/linux/{netlink,rtnetlink,if_link,if_addr,neighbour}.h`), the same requests `ip(8)`
//! sends; the operations live in [`crate::link`], [`crate::addr`], [`crate::route`] and [`crate::neigh`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::ns::{NsError, NsGuard};

/// Why a netlink request failed; every variant names what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("opening a netlink socket{}: {source}", in_ns(.ns))]
    Socket {
        ns: Option<String>,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ns(#[from] NsError),
    /// The kernel refused (or the socket failed on) the request described by `what`.
    #[error("{what}{}: {source}", in_ns(.ns))]
    Request {
        what: String,
        ns: Option<String>,
        source: std::io::Error,
    },
    #[error("no link named {name}{}", in_ns(.ns))]
    NoLink { name: String, ns: Option<String> },
    #[error("{what}: malformed netlink answer ({detail})")]
    Malformed { what: String, detail: &'static str },
    #[error("link name {0:?} is empty or longer than 15 bytes")]
    BadName(String),
}

fn in_ns(ns: &Option<String>) -> String {
    ns.as_ref()
        .map(|n| format!(" in namespace {n}"))
        .unwrap_or_default()
}

pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_REPLACE: u16 = 0x100;
/// NLM_F_ROOT | NLM_F_MATCH: every object of the kind.
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const HDR: usize = 16;

/// A netlink message under construction: header, fixed family header, attributes.
pub(crate) struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    /// `ty` with `flags` (NLM_F_REQUEST and NLM_F_ACK are added) and the family header bytes `fixed`.
    pub(crate) fn new(ty: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut buf = vec![0u8; HDR];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(fixed);
        buf.resize(align4(buf.len()), 0);
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub(crate) fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A NUL-terminated string attribute.
    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    /// Opens a nested attribute; close it with [`Msg::end`].
    pub(crate) fn begin(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.attr(ty | NLA_F_NESTED, &[])
    }

    /// Raw bytes inside the current nest (a nested family header, as VETH_INFO_PEER carries).
    pub(crate) fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub(crate) fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nests.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }
}

/// The attributes of one answer message, as (type without flag bits, payload); a truncated or
/// zero-length attribute ends the walk.
pub fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    out
}

/// A `NETLINK_ROUTE` socket bound to one network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    ns: Option<String>,
}

impl Netlink {
    /// A socket in the calling thread's namespace.
    pub fn open() -> Result<Self, NlError> {
        Self::socket(None)
    }

    /// A socket in the named namespace (`/run/netns/<ns>`); the calling thread only visits it.
    pub fn open_in(ns: &str) -> Result<Self, NlError> {
        let _guard = NsGuard::enter(ns)?;
        Self::socket(Some(ns.to_owned()))
    }

    fn socket(ns: Option<String>) -> Result<Self, NlError> {
        // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(NlError::Socket {
                ns,
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, seq: 1, ns })
    }

    /// The namespace the socket acts in (None: the one of the thread that opened it).
    pub fn namespace(&self) -> Option<&str> {
        self.ns.as_deref()
    }

    pub(crate) fn err(&self, what: impl Into<String>, source: std::io::Error) -> NlError {
        NlError::Request {
            what: what.into(),
            ns: self.ns.clone(),
            source,
        }
    }

    fn send(&mut self, msg: &mut Msg, what: &str) -> Result<u32, NlError> {
        self.seq = self.seq.wrapping_add(1);
        let len = msg.buf.len() as u32;
        msg.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        msg.buf[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // SAFETY: zeroed sockaddr_nl is a valid "to the kernel" address; the buffer outlives the call.
        let rc = unsafe {
            let mut to: libc::sockaddr_nl = std::mem::zeroed();
            to.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.buf.as_ptr().cast(),
                msg.buf.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(self.err(what, std::io::Error::last_os_error()));
        }
        Ok(self.seq)
    }

    /// Sends `msg` and collects the answers to it until the acknowledgement (or the end of a dump):
    /// each answer as (message type, payload after the netlink header).
    pub(crate) fn request(
        &mut self,
        mut msg: Msg,
        what: &str,
    ) -> Result<Vec<(u16, Vec<u8>)>, NlError> {
        let seq = self.send(&mut msg, what)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is a writable buffer of the length passed.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.err(what, e));
            }
            let mut b = &buf[..n as usize];
            while b.len() >= HDR {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < HDR || len > b.len() {
                    return Err(NlError::Malformed {
                        what: what.to_owned(),
                        detail: "message length",
                    });
                }
                let payload = &b[HDR..len];
                b = &b[align4(len).min(b.len())..];
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                            .ok_or_else(|| NlError::Malformed {
                                what: what.to_owned(),
                                detail: "short error message",
                            })?;
                        return if code == 0 {
                            Ok(out)
                        } else {
                            Err(self.err(what, std::io::Error::from_raw_os_error(-code)))
                        };
                    }
                    NLMSG_DONE => return Ok(out),
                    _ => out.push((ty, payload.to_vec())),
                }
            }
        }
    }

    /// A read-only request of message type `ty` with the fixed header `fixed` (e.g. an `ifinfomsg`), a
    /// dump when `dump`: the (type, payload) of every answer; `what` names it in errors. For readers that
    /// parse answers netkit has no typed call for (with [`attrs`]).
    pub fn query(
        &mut self,
        ty: u16,
        dump: bool,
        fixed: &[u8],
        what: &str,
    ) -> Result<Vec<(u16, Vec<u8>)>, NlError> {
        let flags = if dump { NLM_F_DUMP } else { 0 };
        self.request(Msg::new(ty, flags, fixed), what)
    }

    /// Sends a request that only expects an acknowledgement.
    pub(crate) fn ack(&mut self, msg: Msg, what: &str) -> Result<(), NlError> {
        self.request(msg, what).map(|_| ())
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

    #[test]
    fn messages_have_aligned_attributes_and_nests_carry_their_length() {
        let mut m = Msg::new(16, NLM_F_CREATE, &[0u8; 16]);
        m.attr_str(3, "ab"); // 4 + 3 bytes, padded to 8
        m.begin(18).attr_str(1, "veth").end();
        let b = &m.buf;
        assert_eq!(b.len() % 4, 0);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 16);
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        assert_eq!(flags, NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK);
        let body = &b[HDR + 16..];
        let got = attrs(body);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (3, &b"ab\0"[..]));
        // the nest: flag bit stripped when parsed, its length is its header and the padded inner attribute (4 + 12)
        assert_eq!(got[1].0, 18);
        assert_eq!(u16::from_ne_bytes([body[8], body[9]]), 4 + 12);
        assert_eq!(
            u16::from_ne_bytes([body[10], body[11]]) & NLA_F_NESTED,
            NLA_F_NESTED
        );
        assert_eq!(attrs(got[1].1), vec![(1, &b"veth\0"[..])]);
    }

    #[test]
    fn truncated_or_lying_attributes_stop_the_parse_without_panicking() {
        assert!(attrs(&[]).is_empty());
        assert!(attrs(&[8, 0, 1]).is_empty());
        // claims 200 bytes, has 8
        assert!(attrs(&[200, 0, 1, 0, 1, 2, 3, 4]).is_empty());
        // claims less than its own header
        assert!(attrs(&[2, 0, 1, 0]).is_empty());
        // a good one, then garbage
        let got = attrs(&[5, 0, 7, 0, 9, 0, 0, 0, 0xff]);
        assert_eq!(got, vec![(7, &[9u8][..])]);
    }
}
