//! A packet socket that sees every frame of a device, with the kernel's checksum status.

/// One frame a [`Capture`] saw.
pub struct Captured {
    pub frame: Vec<u8>,
    /// The kernel marks the skb "checksum not ready" (`CHECKSUM_PARTIAL`, `TP_STATUS_CSUMNOTREADY`).
    pub csum_not_ready: bool,
    /// Sent by this host rather than received.
    pub outgoing: bool,
}

/// A packet socket on `dev` (in the calling thread's namespace) that sees every frame, with the
/// kernel's checksum status of each (`PACKET_AUXDATA`).
pub struct Capture(std::os::fd::OwnedFd);

impl Capture {
    /// Opens the socket; a receive that sees nothing for 200 ms ends.
    pub fn open(dev: &str) -> Self {
        use std::os::fd::FromRawFd;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh socket we own.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(dev).expect("name");
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(ifindex > 0, "no {dev}");
        // SAFETY: an all-zero sockaddr_ll is a valid value to fill in.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        let on: libc::c_int = 1;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: each pointer and length describes a live local of the right type.
        unsafe {
            let rc = libc::bind(
                fd,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            for (level, opt, val, len) in [
                (
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    (&raw const on).cast::<libc::c_void>(),
                    std::mem::size_of::<libc::c_int>(),
                ),
                (
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&raw const tv).cast(),
                    std::mem::size_of::<libc::timeval>(),
                ),
            ] {
                assert_eq!(libc::setsockopt(fd, level, opt, val, len as u32), 0);
            }
        }
        Self(owned)
    }

    /// The next frame, or `None` after 200 ms without one.
    #[allow(clippy::should_implement_trait)] // takes &self, with a timeout: not an Iterator
    pub fn next(&self) -> Option<Captured> {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 4096];
        let mut cmsg = [0u64; 16];
        // SAFETY: an all-zero sockaddr_ll / msghdr is a valid value to fill in.
        let (mut from, mut msg): (libc::sockaddr_ll, libc::msghdr) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        // SAFETY: msg points at the live buffers above for the duration of the call.
        let n = unsafe { libc::recvmsg(self.0.as_raw_fd(), &raw mut msg, 0) };
        if n < 0 {
            return None;
        }
        let mut csum_not_ready = false;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by msg.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    csum_not_ready = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
                }
                c = libc::CMSG_NXTHDR(&raw const msg, c);
            }
        }
        Some(Captured {
            frame: buf[..n as usize].to_vec(),
            csum_not_ready,
            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
        })
    }

    /// Frames received until `want` matched `keep` or ~1 s passed without a match.
    pub fn collect(&self, want: usize, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut idle = 0;
        while out.len() < want && idle < 5 {
            match self.next() {
                Some(c) if keep(&c.frame) => {
                    idle = 0;
                    out.push(c.frame);
                }
                Some(_) => {}
                None => idle += 1,
            }
        }
        out
    }
}
