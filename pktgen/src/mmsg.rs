//! Batched datagram I/O with `sendmmsg(2)` / `recvmmsg(2)`: one system call per batch.
//!
//! A [`Batch`] owns `n` fixed-size buffers plus the `iovec`/`mmsghdr`/`sockaddr_storage` arrays
//! that point into them. Those pointers are rebuilt right before every call, so moving the
//! `Batch` never leaves a dangling pointer behind.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// What a [`Batch::send`] managed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Datagrams handed to the kernel.
    pub sent: usize,
    /// Datagrams given up on after repeated transient errors (e.g. `ECONNREFUSED` from an
    /// earlier ICMP port-unreachable, or `ENOBUFS`).
    pub dropped: usize,
    /// Transient errors seen.
    pub errors: usize,
    /// Bytes of the datagrams sent.
    pub bytes: u64,
}

/// `n` datagram buffers of `slot` bytes each, with per-datagram lengths and peer addresses.
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

fn zeroed_hdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data (pointers, lengths, flags); all-zero is valid (null
    // pointers with zero lengths).
    unsafe { std::mem::zeroed() }
}

const TRANSIENT_RETRIES: usize = 3;

impl Batch {
    /// `n` buffers of `slot` bytes.
    pub fn new(n: usize, slot: usize) -> Self {
        let n = n.max(1);
        Self {
            bufs: (0..n).map(|_| vec![0u8; slot]).collect(),
            lens: vec![0; n],
            addrs: vec![zeroed_storage(); n],
            addr_lens: vec![0; n],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                n
            ],
            hdrs: (0..n).map(|_| zeroed_hdr()).collect(),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Mutable access to slot `i`'s whole buffer.
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }

    /// Slot `i`'s datagram (its first `len(i)` bytes).
    pub fn datagram(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i].min(self.bufs[i].len())]
    }

    /// Sets the datagram length of slot `i` (clamped to the slot size).
    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(self.bufs[i].len());
    }

    /// Rebuilds the iovec/mmsghdr arrays for slots `0..n`, with or without peer addresses.
    fn prepare(&mut self, n: usize, with_addrs: bool, for_recv: bool) {
        for i in 0..n {
            let len = if for_recv {
                self.bufs[i].len()
            } else {
                self.lens[i]
            };
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: len,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            if with_addrs {
                if for_recv {
                    self.addr_lens[i] =
                        std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                }
                h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = self.addr_lens[i];
            } else {
                h.msg_hdr.msg_name = std::ptr::null_mut();
                h.msg_hdr.msg_namelen = 0;
            }
        }
    }

    /// Sends slots `0..n` on `fd` (to each slot's recorded peer address when `to_peers`,
    /// otherwise to the connected peer). Blocks while the socket buffer is full; retries short
    /// writes, `EINTR`, and a few transient errors before dropping the rest.
    pub fn send(&mut self, fd: &impl AsRawFd, n: usize, to_peers: bool) -> io::Result<SendOutcome> {
        let n = n.min(self.capacity());
        self.prepare(n, to_peers, false);
        let raw: RawFd = fd.as_raw_fd();
        let mut out = SendOutcome::default();
        let mut retries = 0;
        while out.sent + out.dropped < n {
            let start = out.sent + out.dropped;
            // SAFETY: `hdrs[start..n]` are initialised mmsghdrs whose iovecs and names point
            // into `self.bufs`/`self.addrs`, which are alive and not moved for the duration of
            // the call; `n - start` does not exceed the array length.
            let r = unsafe {
                libc::sendmmsg(
                    raw,
                    self.hdrs[start..n].as_mut_ptr(),
                    (n - start) as libc::c_uint,
                    0,
                )
            };
            if r >= 0 {
                out.bytes += self.lens[start..start + r as usize]
                    .iter()
                    .map(|&l| l as u64)
                    .sum::<u64>();
                out.sent += r as usize;
                retries = 0;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECONNREFUSED | libc::ENOBUFS | libc::EAGAIN | libc::EHOSTUNREACH) => {
                    out.errors += 1;
                    retries += 1;
                    if retries > TRANSIENT_RETRIES {
                        out.dropped += 1;
                        retries = 0;
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
                _ => return Err(err),
            }
        }
        Ok(out)
    }

    /// Receives up to `capacity()` datagrams: blocks (up to the socket's receive timeout) for
    /// the first, then takes whatever else is queued. Returns how many arrived; 0 on timeout or
    /// `EINTR`. Records lengths, and peer addresses when `with_addrs`.
    pub fn recv(&mut self, fd: &impl AsRawFd, with_addrs: bool) -> io::Result<usize> {
        self.recv_flags(fd, with_addrs, libc::MSG_WAITFORONE)
    }

    /// Like [`recv`](Self::recv) but never blocks (`MSG_DONTWAIT`), without touching the
    /// socket's `O_NONBLOCK` flag (which a `dup`ed descriptor would share with its original).
    pub fn recv_nowait(&mut self, fd: &impl AsRawFd, with_addrs: bool) -> io::Result<usize> {
        self.recv_flags(fd, with_addrs, libc::MSG_DONTWAIT)
    }

    fn recv_flags(
        &mut self,
        fd: &impl AsRawFd,
        with_addrs: bool,
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let n = self.capacity();
        self.prepare(n, with_addrs, true);
        // SAFETY: `hdrs[..n]` are initialised and point into buffers/addresses owned by `self`
        // that stay alive and unmoved during the call; a null timeout means "no recvmmsg
        // timeout" (the socket's SO_RCVTIMEO still bounds the wait for the first datagram).
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(err),
            };
        }
        let got = r as usize;
        for i in 0..got {
            self.lens[i] = (self.hdrs[i].msg_len as usize).min(self.bufs[i].len());
            if with_addrs {
                self.addr_lens[i] = self.hdrs[i].msg_hdr.msg_namelen;
            }
        }
        Ok(got)
    }
}

/// Sets `SO_RCVBUF` to `bytes`, forcing past `rmem_max` when privileged (`SO_RCVBUFFORCE`).
pub fn set_rcvbuf(fd: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `v` is a live c_int and the length passed is its size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}

/// Datagrams the kernel dropped at this socket because its receive buffer was full
/// (`SO_MEMINFO`'s `SK_MEMINFO_DROPS`). The counter is 32-bit and wraps.
pub fn socket_drops(fd: &impl AsRawFd) -> io::Result<u32> {
    let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call, and `len` is a
    // valid in/out length.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info[libc::SK_MEMINFO_DROPS as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn batches_round_trip_over_loopback_with_peer_addresses() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        tx.connect(rx.local_addr().expect("addr")).expect("connect");
        let mut out = Batch::new(8, 128);
        for i in 0..8 {
            out.buf_mut(i)[0] = i as u8;
            out.set_len(i, 10 + i);
        }
        let o = out.send(&tx, 8, false).expect("send");
        assert_eq!(
            o,
            SendOutcome {
                sent: 8,
                dropped: 0,
                errors: 0,
                bytes: (10..18).sum()
            }
        );
        let mut inb = Batch::new(16, 128);
        let mut got = Vec::new();
        while got.len() < 8 {
            let n = inb.recv(&rx, true).expect("recv");
            assert!(n > 0, "timed out after {} datagrams", got.len());
            for i in 0..n {
                got.push((inb.datagram(i)[0], inb.datagram(i).len()));
            }
            // Echo the first batch back to its sender using the recorded peer addresses.
            if got.len() == n {
                inb.send(&rx, n, true).expect("echo");
            }
        }
        let want: Vec<(u8, usize)> = (0..8u8).map(|i| (i, 10 + i as usize)).collect();
        assert_eq!(got, want);
        tx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut back = [0u8; 128];
        let n = tx.recv(&mut back).expect("echo arrives");
        assert_eq!((n, back[0]), (10, 0));
    }

    #[test]
    fn socket_drops_counts_overflowing_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
        // Tiny buffer (the kernel rounds it up to its minimum), never read.
        let v: libc::c_int = 1;
        // SAFETY: `v` is a live c_int and the length passed is its size.
        let r = unsafe {
            libc::setsockopt(
                rx.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        assert_eq!(socket_drops(&rx).expect("meminfo"), 0);
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
        let dst = rx.local_addr().expect("addr");
        for _ in 0..200 {
            tx.send_to(&[0u8; 512], dst).expect("send");
        }
        let drops = socket_drops(&rx).expect("meminfo");
        assert!(drops > 100, "only {drops} drops");
        let mut buf = [0u8; 1024];
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut queued = 0;
        while rx.recv(&mut buf).is_ok() {
            queued += 1;
        }
        assert_eq!(queued + drops, 200);
    }

    #[test]
    fn recv_times_out_with_zero() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        assert_eq!(Batch::new(4, 64).recv(&rx, false).expect("no error"), 0);
    }
}
