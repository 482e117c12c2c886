//! Shared helpers for the privileged packet tests: root guard, packet builder, checksum checks.
#![allow(dead_code)]

use std::net::IpAddr;
use std::ops::Range;

use cnf_dataplane::engine::{Engine, Hook};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// True when the test may use BPF. Non-root: skip with a message, except
/// under `CI=true`, where a skip is a failure.
pub fn privileged() -> bool {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "privileged eBPF test cannot run as uid {euid} and CI=true forbids skipping"
    );
    eprintln!("SKIP: needs root for BPF_PROG_TEST_RUN (running as uid {euid})");
    false
}

pub fn load(hook: Hook) -> Engine {
    match Engine::load(hook) {
        Ok(e) => e,
        Err(e) => panic!("loading {hook:?} engine: {e}"),
    }
}

/// Verdict constants of a hook.
#[derive(Clone, Copy, Debug)]
pub struct Verdicts {
    pub pass: u32,
    pub drop: u32,
    pub tx: u32,
    pub redirect: u32,
}

pub fn verdicts(hook: Hook) -> Verdicts {
    match hook {
        Hook::Xdp => Verdicts {
            pass: XDP_PASS,
            drop: XDP_DROP,
            tx: XDP_TX,
            redirect: XDP_REDIRECT,
        },
        Hook::Tc => Verdicts {
            pass: TC_ACT_OK,
            drop: TC_ACT_SHOT,
            tx: TC_ACT_REDIRECT,
            redirect: TC_ACT_REDIRECT,
        },
    }
}

pub const HOOKS: [Hook; 2] = [Hook::Xdp, Hook::Tc];

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Layer 4 of a test packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 echo request (reply = false) or reply.
    Echo {
        id: u16,
        reply: bool,
    },
    /// Another protocol with an opaque payload.
    Other(u8),
}

/// Fragment position of an IPv4/IPv6 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    None,
    /// Offset 0, more fragments.
    First,
    /// Non-zero offset (in 8-byte units).
    Later(u16),
}

/// A test packet description.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class (DSCP << 2 | ECN).
    pub tos: u8,
    pub ip_options: Vec<u8>,
    /// IPv6 extension header types inserted before L4 (0, 43, 60).
    pub v6_ext: Vec<u8>,
    pub frag: Frag,
    pub l4: L4,
    pub payload: Vec<u8>,
}

impl Pkt {
    pub fn new(src: &str, dst: &str, l4: L4) -> Self {
        Self {
            dmac: [0x02, 0, 0, 0, 0, 0x02],
            smac: [0x02, 0, 0, 0, 0, 0x01],
            vlans: Vec::new(),
            src: ip(src),
            dst: ip(dst),
            ttl: 64,
            tos: 0,
            ip_options: Vec::new(),
            v6_ext: Vec::new(),
            frag: Frag::None,
            l4,
            payload: b"build-vnf test payload".to_vec(),
        }
    }

    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self::new(
            src,
            dst,
            L4::Tcp {
                sport,
                dport,
                flags: 0x02,
            },
        )
    }

    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self::new(src, dst, L4::Udp { sport, dport })
    }

    pub fn proto(&self) -> u8 {
        match (&self.l4, self.src.is_ipv4()) {
            (L4::Tcp { .. }, _) => TCP,
            (L4::Udp { .. }, _) => UDP,
            (L4::Echo { .. }, true) => ICMP,
            (L4::Echo { .. }, false) => ICMPV6,
            (L4::Other(p), _) => *p,
        }
    }

    fn l4_bytes(&self) -> Vec<u8> {
        let mut b = match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                h[4..8].copy_from_slice(&1u32.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = *flags;
                h[14..16].copy_from_slice(&65535u16.to_be_bytes());
                h
            }
            L4::Udp { sport, dport } => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sport.to_be_bytes());
                h[2..4].copy_from_slice(&dport.to_be_bytes());
                let len = (8 + self.payload.len()) as u16;
                h[4..6].copy_from_slice(&len.to_be_bytes());
                h
            }
            L4::Echo { id, reply } => {
                let t = match (self.src.is_ipv4(), reply) {
                    (true, false) => 8,
                    (true, true) => 0,
                    (false, false) => 128,
                    (false, true) => 129,
                };
                let mut h = vec![t, 0, 0, 0, 0, 0, 0, 1];
                h[4..6].copy_from_slice(&id.to_be_bytes());
                h
            }
            L4::Other(_) => Vec::new(),
        };
        b.extend_from_slice(&self.payload);
        let csum_off = match &self.l4 {
            L4::Tcp { .. } => Some(16),
            L4::Udp { .. } => Some(6),
            L4::Echo { .. } => Some(2),
            L4::Other(_) => None,
        };
        if let Some(off) = csum_off {
            let pseudo = !(self.src.is_ipv4() && self.proto() == ICMP);
            let c = l4_checksum(self.src, self.dst, self.proto(), &b, pseudo);
            let c = if c == 0 && self.proto() == UDP {
                0xffff
            } else {
                c
            };
            b[off..off + 2].copy_from_slice(&c.to_be_bytes());
        }
        b
    }

    pub fn build(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        let mut f = Vec::new();
        f.extend_from_slice(&self.dmac);
        f.extend_from_slice(&self.smac);
        let tpids: Vec<u16> = match self.vlans.len() {
            0 => vec![],
            1 => vec![0x8100],
            _ => vec![0x88a8, 0x8100],
        };
        for (tpid, vid) in tpids.iter().zip(&self.vlans) {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                assert!(self.ip_options.len().is_multiple_of(4) && self.ip_options.len() <= 40);
                let hlen = 20 + self.ip_options.len();
                let mut h = vec![0u8; hlen];
                h[0] = 0x40 | (hlen / 4) as u8;
                h[1] = self.tos;
                h[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
                let fo: u16 = match self.frag {
                    Frag::None => 0,
                    Frag::First => 0x2000,
                    Frag::Later(o) => o & 0x1fff,
                };
                h[6..8].copy_from_slice(&fo.to_be_bytes());
                h[8] = self.ttl;
                h[9] = self.proto();
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                h[20..].copy_from_slice(&self.ip_options);
                let c = checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut ext = Vec::new();
                let mut chain: Vec<u8> = self.v6_ext.clone();
                if self.frag != Frag::None {
                    chain.push(44);
                }
                let mut next_types: Vec<u8> = chain.iter().skip(1).copied().collect();
                next_types.push(self.proto());
                for (t, next) in chain.iter().zip(next_types) {
                    match t {
                        44 => {
                            let fo: u16 = match self.frag {
                                Frag::Later(o) => o << 3,
                                _ => 1,
                            };
                            ext.extend_from_slice(&[next, 0]);
                            ext.extend_from_slice(&fo.to_be_bytes());
                            ext.extend_from_slice(&7u32.to_be_bytes());
                        }
                        _ => {
                            // 16 bytes: hdrlen 1, PadN option filling the rest
                            ext.extend_from_slice(&[next, 1, 1, 12]);
                            ext.extend_from_slice(&[0u8; 12]);
                        }
                    }
                }
                let first = chain.first().copied().unwrap_or(self.proto());
                let mut h = vec![0u8; 40];
                h[0] = 0x60 | (self.tos >> 4);
                h[1] = self.tos << 4;
                h[4..6].copy_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
                h[6] = first;
                h[7] = self.ttl;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                f.extend_from_slice(&h);
                f.extend_from_slice(&ext);
            }
            _ => panic!("mixed address families"),
        }
        f.extend_from_slice(&l4);
        f
    }
}

/// Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum16(data, 0))
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// L4 checksum with (or, for ICMPv4, without) the pseudo-header.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8], pseudo: bool) -> u16 {
    let mut acc = 0;
    if pseudo {
        let (s, d) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (s.octets().to_vec(), d.octets().to_vec()),
            (IpAddr::V6(s), IpAddr::V6(d)) => (s.octets().to_vec(), d.octets().to_vec()),
            _ => panic!("mixed families"),
        };
        acc = sum16(&s, acc);
        acc = sum16(&d, acc);
        acc += u32::from(proto);
        acc += seg.len() as u32;
    }
    !fold(sum16(seg, acc))
}

/// Source, destination, protocol and byte range of a frame's L4 segment.
pub type Segment = (IpAddr, IpAddr, u8, Range<usize>);

/// The L4 segment of an IPv4/IPv6 frame (VLAN tags and IPv6 extension headers skipped): source,
/// destination, protocol and the byte range of the segment; `None` for other frames. Checks the IPv4
/// header checksum on the way.
pub fn l4_segment(frame: &[u8]) -> Result<Option<Segment>, String> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([frame[off], frame[off + 1]]);
    while et == 0x8100 || et == 0x88a8 {
        off += 4;
        et = u16::from_be_bytes([frame[off], frame[off + 1]]);
    }
    off += 2;
    Ok(Some(match et {
        0x0800 => {
            let hlen = usize::from(frame[off] & 0xf) * 4;
            let h = &frame[off..off + hlen];
            if checksum(h) != 0 {
                return Err(format!("bad IPv4 header checksum {:02x?}", &h[10..12]));
            }
            let tot = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let src = IpAddr::from([h[12], h[13], h[14], h[15]]);
            let dst = IpAddr::from([h[16], h[17], h[18], h[19]]);
            (src, dst, h[9], off + hlen..off + tot)
        }
        0x86dd => {
            let h = &frame[off..off + 40];
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&h[8..24]);
            d.copy_from_slice(&h[24..40]);
            let mut next = h[6];
            let mut pos = off + 40;
            let end = off + 40 + plen;
            while matches!(next, 0 | 43 | 44 | 60) {
                let len = if next == 44 {
                    8
                } else {
                    (usize::from(frame[pos + 1]) + 1) * 8
                };
                next = frame[pos];
                pos += len;
            }
            (IpAddr::from(s), IpAddr::from(d), next, pos..end)
        }
        _ => return Ok(None),
    }))
}

/// Re-parses a frame and checks the IPv4 header checksum and the TCP/UDP/ICMP checksum.
pub fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    let Some((src, dst, proto, seg)) = l4_segment(frame)? else {
        return Ok(());
    };
    let l4 = &frame[seg];
    let pseudo = proto != ICMP;
    let checked = match proto {
        TCP | ICMP | ICMPV6 => true,
        // a zero UDP checksum over IPv4 means "none"
        UDP => u16::from_be_bytes([l4[6], l4[7]]) != 0,
        _ => false,
    };
    if checked && l4_checksum(src, dst, proto, l4, pseudo) != 0 {
        return Err(format!("bad L4 checksum (proto {proto})"));
    }
    Ok(())
}

/// The TCP/UDP checksum field as a sender with transmit checksum offload leaves it
/// (`CHECKSUM_PARTIAL`): the folded pseudo-header sum, not complemented; with the byte range of the
/// field in the frame.
pub fn partial_checksum(frame: &[u8]) -> (u16, Range<usize>) {
    let (src, dst, proto, seg) = l4_segment(frame)
        .expect("valid IPv4 header")
        .expect("an IP frame");
    let at = seg.start
        + match proto {
            TCP => 16,
            UDP => 6,
            other => panic!("no TCP/UDP checksum in protocol {other}"),
        };
    let zeros = vec![0u8; seg.len()];
    (!l4_checksum(src, dst, proto, &zeros, true), at..at + 2)
}

/// `frame` with its TCP/UDP checksum replaced by the partial form of [`partial_checksum`].
pub fn with_partial_checksum(frame: &[u8]) -> Vec<u8> {
    let (value, at) = partial_checksum(frame);
    let mut out = frame.to_vec();
    out[at].copy_from_slice(&value.to_be_bytes());
    out
}

/// An ARP request frame.
pub fn arp_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    f
}

// ---- network namespaces for the live tests ----

/// Runs `cmd` (inside namespace `ns` when given), asserting success.
pub fn sh(ns: Option<&str>, cmd: &[&str]) {
    let mut c = match ns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.args(cmd);
            c
        }
        None => {
            let mut c = std::process::Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    };
    // quiet unless it fails (ethtool -K reports every feature it changed)
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{ns:?} {cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces deleted on drop.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    pub fn new(names: &[&str]) -> Self {
        let pid = std::process::id();
        let ns = Self(names.iter().map(|n| format!("vnft-{pid}-{n}")).collect());
        for n in &ns.0 {
            sh(None, &["ip", "netns", "add", n]);
            sh(Some(n), &["ip", "link", "set", "lo", "up"]);
        }
        ns
    }

    /// veth `a_dev` in namespace `a` <-> `b_dev` in `b`, addressed, up, checksum offload off (so receivers
    /// verify what the data plane rewrote).
    pub fn link(&self, a: usize, a_dev: &str, a_addr: &str, b: usize, b_dev: &str, b_addr: &str) {
        let (na, nb) = (&self.0[a], &self.0[b]);
        sh(
            None,
            &[
                "ip", "-n", na, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev,
                "netns", nb,
            ],
        );
        for (ns, dev, addr) in [(na, a_dev, a_addr), (nb, b_dev, b_addr)] {
            sh(Some(ns), &["ip", "addr", "add", addr, "dev", dev]);
            sh(Some(ns), &["ip", "link", "set", dev, "up"]);
            sh(Some(ns), &["ethtool", "-K", dev, "tx", "off"]);
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// (ifindex, MAC) of `dev` in namespace `ns`, from `ip -o link`.
pub fn link_info(ns: &str, dev: &str) -> (u32, [u8; 6]) {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", dev])
        .output()
        .expect("spawn ip");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let ifindex = line
        .split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("ifindex of {dev} in {ns}: {line}"));
    let mac = line
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("MAC of {dev} in {ns}: {line}"));
    let mut out = [0u8; 6];
    for (b, part) in out.iter_mut().zip(mac.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("hex");
    }
    (ifindex, out)
}

/// Sends `sig` to the child and waits for it to exit (at most 10 s, else the test fails).
pub fn signal_and_wait(child: &mut std::process::Child, sig: i32) -> std::process::ExitStatus {
    // SAFETY: kill() with the pid of our own child and a standard signal.
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemon did not stop on signal {sig}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("open netns");
    // SAFETY: setns only switches this thread's network namespace; the fd
    // refers to an open netns file for the duration of the call.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

// ---- random tests ----

/// xorshift64* — a deterministic generator for the differential tests (seeded, no dependency).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Waits until `child` (a daemon started with its stderr piped) has created `path`; panics with its
/// stderr when it exits first, or after 20 s.
pub fn wait_for_path(child: &mut std::process::Child, path: &std::path::Path) {
    use std::io::Read;
    let started = std::time::Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("daemon exited early with {status}: {err}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// ---- the daemon as a process ----

/// `GET /metrics` from `addr` inside namespace `ns` (HTTP/1.0, the whole body).
pub fn scrape_metrics(ns: &str, addr: &str) -> String {
    use std::io::{Read, Write};
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            let mut c = std::net::TcpStream::connect(addr).expect("metrics port");
            c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .expect("request");
            let mut body = String::new();
            c.read_to_string(&mut body).expect("response");
            body
        })
        .join()
        .expect("scrape thread")
    })
}

/// The value of the first metric line starting with `prefix` (name and labels).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// True when interface `dev` in namespace `ns` has an XDP program attached.
pub fn xdp_on(ns: &str, dev: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "link", "show", dev])
        .output()
        .expect("ip link show");
    out.stdout.windows(3).any(|w| w == b"xdp")
}

// ---- packet capture ----

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
