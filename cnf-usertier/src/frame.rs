//! Frame processing of the user-space tier, as pure functions on byte buffers: parse
//! Ethernet (up to two VLAN tags) / IPv4 / IPv6 / UDP, seal or open the UDP payload, fix every
//! length and checksum, rewrite MAC addresses.
//!
//! Only unfragmented UDP is processed. Everything else that reaches the tier is dropped with a
//! counted reason (`not_ip`, `not_udp` — TCP included, since growing a TCP segment would break
//! its sequence space —, `fragment`, `malformed`): a payload cipher must not let plaintext
//! through by accident.

use super::cipher::{Aead, Direction, NONCE_LEN, NonceSeq, OVERHEAD, TAG_LEN};
use netkit::checksum::{finish, sum as sum16};

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
const UDP_HLEN: usize = 8;

/// Why the tier dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not IPv4/IPv6 (after VLAN tags).
    NotIp,
    /// IP but not UDP (TCP, ICMP, …).
    NotUdp,
    /// An IP fragment (the payload spans several packets).
    Fragment,
    /// Truncated or inconsistent headers/lengths.
    Malformed,
    /// The sealed frame would exceed the MTU or the UMEM frame.
    TooBig,
    /// Decrypt: payload shorter than nonce + tag.
    ShortPayload,
    /// Decrypt: authentication failed.
    AuthFailed,
    /// Encrypt: the socket's nonce sequence is spent.
    NonceExhausted,
    /// The TX ring had no room.
    TxRingFull,
}

impl DropReason {
    /// Every reason, in [`DropReason::index`] order.
    pub const ALL: [DropReason; 9] = [
        DropReason::NotIp,
        DropReason::NotUdp,
        DropReason::Fragment,
        DropReason::Malformed,
        DropReason::TooBig,
        DropReason::ShortPayload,
        DropReason::AuthFailed,
        DropReason::NonceExhausted,
        DropReason::TxRingFull,
    ];

    /// Metric label of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotIp => "not_ip",
            DropReason::NotUdp => "not_udp",
            DropReason::Fragment => "fragment",
            DropReason::Malformed => "malformed",
            DropReason::TooBig => "too_big",
            DropReason::ShortPayload => "short_payload",
            DropReason::AuthFailed => "auth_failed",
            DropReason::NonceExhausted => "nonce_exhausted",
            DropReason::TxRingFull => "tx_ring_full",
        }
    }

    /// Position in [`DropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Offsets of a parsed UDP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpFrame {
    /// Start of the IP header.
    pub l3: usize,
    /// IPv6 (else IPv4).
    pub ipv6: bool,
    /// Start of the UDP header.
    pub l4: usize,
    /// End of the IP packet (Ethernet padding excluded).
    pub end: usize,
}

impl UdpFrame {
    /// Start of the UDP payload.
    pub fn payload(&self) -> usize {
        self.l4 + UDP_HLEN
    }

    /// Length of the IP packet.
    pub fn ip_len(&self) -> usize {
        self.end - self.l3
    }
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// Parses `frame` down to UDP.
pub fn parse_udp(frame: &[u8]) -> Result<UdpFrame, DropReason> {
    let mut off = 12;
    let mut et = be16(frame, off).ok_or(DropReason::Malformed)?;
    for _ in 0..2 {
        if et != ETH_P_8021Q && et != ETH_P_8021AD {
            break;
        }
        off += 4;
        et = be16(frame, off).ok_or(DropReason::Malformed)?;
    }
    let l3 = off + 2;
    let (l4, end) = match et {
        ETH_P_IPV4 => {
            let h = frame.get(l3..l3 + 20).ok_or(DropReason::Malformed)?;
            if h[0] >> 4 != 4 {
                return Err(DropReason::Malformed);
            }
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if ihl < 20 || total < ihl || l3 + total > frame.len() {
                return Err(DropReason::Malformed);
            }
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if frag & 0x3fff != 0 {
                return Err(DropReason::Fragment);
            }
            if h[9] != IPPROTO_UDP {
                return Err(DropReason::NotUdp);
            }
            (l3 + ihl, l3 + total)
        }
        ETH_P_IPV6 => {
            let h = frame.get(l3..l3 + 40).ok_or(DropReason::Malformed)?;
            if h[0] >> 4 != 6 {
                return Err(DropReason::Malformed);
            }
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let end = l3 + 40 + plen;
            if end > frame.len() {
                return Err(DropReason::Malformed);
            }
            let mut next = h[6];
            let mut pos = l3 + 40;
            for _ in 0..8 {
                match next {
                    // hop-by-hop, routing, destination options
                    0 | 43 | 60 => {
                        let e = frame.get(pos..pos + 2).ok_or(DropReason::Malformed)?;
                        next = e[0];
                        pos += (usize::from(e[1]) + 1) * 8;
                    }
                    44 => return Err(DropReason::Fragment),
                    _ => break,
                }
            }
            if next != IPPROTO_UDP {
                return Err(if matches!(next, 0 | 43 | 60) {
                    DropReason::Malformed
                } else {
                    DropReason::NotUdp
                });
            }
            (pos, end)
        }
        _ => return Err(DropReason::NotIp),
    };
    if l4 + UDP_HLEN > end {
        return Err(DropReason::Malformed);
    }
    let ulen = usize::from(be16(frame, l4 + 4).ok_or(DropReason::Malformed)?);
    if ulen != end - l4 {
        return Err(DropReason::Malformed);
    }
    Ok(UdpFrame {
        l3,
        ipv6: et == ETH_P_IPV6,
        l4,
        end,
    })
}

/// Internet checksum (RFC 1071) of `data` (netkit's).
pub use netkit::checksum::checksum;

/// Recomputes the IPv4 header checksum of the header at `l3`.
fn fix_ipv4_header(frame: &mut [u8], l3: usize) {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let c = checksum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the UDP checksum (pseudo-header included) of a parsed frame.
pub fn fix_udp_checksum(frame: &mut [u8], f: &UdpFrame) {
    frame[f.l4 + 6] = 0;
    frame[f.l4 + 7] = 0;
    let seg_len = (f.end - f.l4) as u64;
    let mut acc = if f.ipv6 {
        sum16(&frame[f.l3 + 8..f.l3 + 40], 0)
    } else {
        sum16(&frame[f.l3 + 12..f.l3 + 20], 0)
    };
    acc += u64::from(IPPROTO_UDP) + seg_len;
    let mut c = finish(sum16(&frame[f.l4..f.end], acc));
    if c == 0 {
        // 0 means "no checksum" (IPv4) / is forbidden (IPv6)
        c = 0xffff;
    }
    frame[f.l4 + 6..f.l4 + 8].copy_from_slice(&c.to_be_bytes());
}

/// Adds `delta` to the IP and UDP length fields of a parsed frame (the parse stays about the
/// old lengths) and returns the frame with the new lengths.
fn set_lengths(frame: &mut [u8], f: &UdpFrame, new_payload: usize) -> UdpFrame {
    let end = f.payload() + new_payload;
    let ulen = (end - f.l4) as u16;
    frame[f.l4 + 4..f.l4 + 6].copy_from_slice(&ulen.to_be_bytes());
    if f.ipv6 {
        let plen = (end - f.l3 - 40) as u16;
        frame[f.l3 + 4..f.l3 + 6].copy_from_slice(&plen.to_be_bytes());
    } else {
        let total = (end - f.l3) as u16;
        frame[f.l3 + 2..f.l3 + 4].copy_from_slice(&total.to_be_bytes());
        fix_ipv4_header(frame, f.l3);
    }
    UdpFrame { end, ..*f }
}

/// One payload-cipher function of the tier: a keyed AEAD, a direction and (for encryption) the
/// nonce sequence of this socket.
#[derive(Debug)]
pub struct CipherFn {
    aead: Aead,
    direction: Direction,
    nonces: NonceSeq,
}

impl CipherFn {
    /// A function with its own nonce sequence.
    pub fn new(aead: Aead, direction: Direction, nonces: NonceSeq) -> Self {
        Self {
            aead,
            direction,
            nonces,
        }
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Applies the function to the frame in `buf[..len]`; `buf` is all the room the frame may
    /// grow into. `mtu` bounds the IP packet length. Returns the new frame length.
    pub fn apply(&mut self, buf: &mut [u8], len: usize, mtu: usize) -> Result<usize, DropReason> {
        let frame = buf.get(..len).ok_or(DropReason::Malformed)?;
        let f = parse_udp(frame)?;
        let p = f.payload();
        let n = f.end - p;
        match self.direction {
            Direction::Encrypt => {
                let new_end = f.end + OVERHEAD;
                if f.ip_len() + OVERHEAD > mtu.min(usize::from(u16::MAX)) || new_end > buf.len() {
                    return Err(DropReason::TooBig);
                }
                let nonce = self.nonces.next_nonce().ok_or(DropReason::NonceExhausted)?;
                buf.copy_within(p..p + n, p + NONCE_LEN);
                buf[p..p + NONCE_LEN].copy_from_slice(&nonce);
                let ct = p + NONCE_LEN;
                let tag = self
                    .aead
                    .seal_in_place(&nonce, &mut buf[ct..ct + n])
                    .ok_or(DropReason::TooBig)?;
                buf[ct + n..ct + n + TAG_LEN].copy_from_slice(&tag);
                let nf = set_lengths(buf, &f, n + OVERHEAD);
                fix_udp_checksum(buf, &nf);
                Ok(nf.end)
            }
            Direction::Decrypt => {
                if n < OVERHEAD {
                    return Err(DropReason::ShortPayload);
                }
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&buf[p..p + NONCE_LEN]);
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(&buf[f.end - TAG_LEN..f.end]);
                let ct = p + NONCE_LEN;
                let m = n - OVERHEAD;
                self.aead
                    .open_in_place(&nonce, &mut buf[ct..ct + m], &tag)
                    .map_err(|_| DropReason::AuthFailed)?;
                buf.copy_within(ct..ct + m, p);
                let nf = set_lengths(buf, &f, m);
                fix_udp_checksum(buf, &nf);
                Ok(nf.end)
            }
        }
    }
}

/// Source and destination MAC addresses written into every frame the tier sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacRewrite {
    /// New source MAC (the egress interface's).
    pub src: [u8; 6],
    /// New destination MAC (the next hop's).
    pub dst: [u8; 6],
}

impl MacRewrite {
    /// Writes the addresses into `frame` (at least an Ethernet header long).
    pub fn apply(&self, frame: &mut [u8]) {
        if frame.len() >= ETH_HLEN {
            frame[..6].copy_from_slice(&self.dst);
            frame[6..12].copy_from_slice(&self.src);
        }
    }
}

/// Runs `functions` in order over the frame in `buf[..len]`, then the MAC rewrite; returns the
/// new length.
pub fn process(
    functions: &mut [CipherFn],
    mac: Option<&MacRewrite>,
    buf: &mut [u8],
    len: usize,
    mtu: usize,
) -> Result<usize, DropReason> {
    let mut len = len;
    for f in functions.iter_mut() {
        len = f.apply(buf, len, mtu)?;
    }
    if functions.is_empty() {
        // a tier without functions still only forwards what it understands
        parse_udp(buf.get(..len).ok_or(DropReason::Malformed)?)?;
    }
    if let Some(m) = mac {
        m.apply(&mut buf[..len]);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::super::cipher::Algorithm;
    use super::*;

    const KEY: [u8; 32] = [0x42; 32];

    /// Builds Ethernet/[VLAN…]/IP/UDP with an independent, straightforward implementation.
    fn build(v6: bool, vlans: &[u16], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let tpids: &[u16] = if vlans.len() > 1 {
            &[0x88a8, 0x8100]
        } else {
            &[0x8100]
        };
        for (t, v) in tpids.iter().zip(vlans) {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
        }
        let udp_len = 8 + payload.len();
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&5000u16.to_be_bytes());
        udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(payload);
        let (src, dst): (Vec<u8>, Vec<u8>) = if v6 {
            (
                [0xfd, 1]
                    .iter()
                    .chain(&[0u8; 13])
                    .chain(&[1])
                    .copied()
                    .collect(),
                [0xfd, 2]
                    .iter()
                    .chain(&[0u8; 13])
                    .chain(&[1])
                    .copied()
                    .collect(),
            )
        } else {
            (vec![10, 1, 0, 1], vec![10, 2, 0, 1])
        };
        let c = reference_udp_checksum(&src, &dst, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        if v6 {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(udp_len as u16).to_be_bytes());
            h.extend_from_slice(&[17, 64]);
            h.extend_from_slice(&src);
            h.extend_from_slice(&dst);
            f.extend_from_slice(&h);
        } else {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
            h.extend_from_slice(&src);
            h.extend_from_slice(&dst);
            let c = reference_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&h);
        }
        f.extend_from_slice(&udp);
        f
    }

    /// Bytewise RFC 1071, independent of `sum16`.
    fn reference_checksum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for (i, b) in data.iter().enumerate() {
            s += if i % 2 == 0 {
                u32::from(*b) << 8
            } else {
                u32::from(*b)
            };
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    fn reference_udp_checksum(src: &[u8], dst: &[u8], udp: &[u8]) -> u16 {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(src);
        pseudo.extend_from_slice(dst);
        if src.len() == 16 {
            pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
        } else {
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        }
        pseudo.extend_from_slice(udp);
        let c = reference_checksum(&pseudo);
        if c == 0 { 0xffff } else { c }
    }

    /// Verifies the IPv4 header checksum and the UDP checksum of `frame` independently.
    fn verify(frame: &[u8]) {
        let f = parse_udp(frame).unwrap();
        let (src, dst) = if f.ipv6 {
            (&frame[f.l3 + 8..f.l3 + 24], &frame[f.l3 + 24..f.l3 + 40])
        } else {
            let ihl = usize::from(frame[f.l3] & 0xf) * 4;
            assert_eq!(
                reference_checksum(&frame[f.l3..f.l3 + ihl]),
                0,
                "IPv4 header checksum"
            );
            (&frame[f.l3 + 12..f.l3 + 16], &frame[f.l3 + 16..f.l3 + 20])
        };
        let mut udp = frame[f.l4..f.end].to_vec();
        let got = u16::from_be_bytes([udp[6], udp[7]]);
        udp[6] = 0;
        udp[7] = 0;
        assert_eq!(got, reference_udp_checksum(src, dst, &udp), "UDP checksum");
    }

    fn tier(alg: Algorithm, dir: Direction) -> CipherFn {
        CipherFn::new(
            Aead::new(alg, &KEY),
            dir,
            NonceSeq::random().expect("random"),
        )
    }

    fn room(frame: &[u8]) -> Vec<u8> {
        let mut b = frame.to_vec();
        b.resize(2048, 0xee);
        b
    }

    #[test]
    fn encrypt_decrypt_round_trip_all_shapes() {
        for alg in [Algorithm::ChaCha20Poly1305, Algorithm::Aes256Gcm] {
            for v6 in [false, true] {
                for vlans in [&[][..], &[7], &[100, 200]] {
                    for plen in [0usize, 1, 17, 1000] {
                        let payload: Vec<u8> = (0..plen).map(|i| (i * 7) as u8).collect();
                        let orig = build(v6, vlans, &payload);
                        verify(&orig);
                        let mut buf = room(&orig);
                        let mut enc = tier(alg, Direction::Encrypt);
                        let n = enc.apply(&mut buf, orig.len(), 1500).unwrap();
                        assert_eq!(n, orig.len() + OVERHEAD);
                        verify(&buf[..n]);
                        let f = parse_udp(&buf[..n]).unwrap();
                        let wire = &buf[f.payload()..f.end];
                        // decrypts with the plain AEAD to the original payload
                        assert_eq!(Aead::new(alg, &KEY).open(wire).unwrap(), payload);
                        let mut dec = tier(alg, Direction::Decrypt);
                        let m = dec.apply(&mut buf, n, 1500).unwrap();
                        assert_eq!(&buf[..m], &orig[..], "{alg:?} v6={v6} {vlans:?} {plen}");
                    }
                }
            }
        }
    }

    #[test]
    fn nonces_differ_per_packet() {
        let orig = build(false, &[], b"same");
        let mut enc = tier(Algorithm::ChaCha20Poly1305, Direction::Encrypt);
        let mut a = room(&orig);
        let mut b = room(&orig);
        let na = enc.apply(&mut a, orig.len(), 1500).unwrap();
        let nb = enc.apply(&mut b, orig.len(), 1500).unwrap();
        assert_ne!(&a[..na], &b[..nb]);
    }

    #[test]
    fn tampered_ciphertext_rejected() {
        let orig = build(true, &[5], b"do not touch");
        let mut buf = room(&orig);
        let n = tier(Algorithm::Aes256Gcm, Direction::Encrypt)
            .apply(&mut buf, orig.len(), 1500)
            .unwrap();
        let p = parse_udp(&buf[..n]).unwrap().payload();
        for i in p..n {
            let mut t = buf.clone();
            t[i] ^= 0x80;
            assert_eq!(
                tier(Algorithm::Aes256Gcm, Direction::Decrypt).apply(&mut t, n, 1500),
                Err(DropReason::AuthFailed),
                "flip at {i}"
            );
        }
        // wrong algorithm
        assert_eq!(
            tier(Algorithm::ChaCha20Poly1305, Direction::Decrypt).apply(&mut buf, n, 1500),
            Err(DropReason::AuthFailed)
        );
    }

    #[test]
    fn too_big_and_too_short() {
        let orig = build(false, &[], &[1u8; 1472]);
        let mut buf = room(&orig);
        let mut enc = tier(Algorithm::ChaCha20Poly1305, Direction::Encrypt);
        assert_eq!(
            enc.apply(&mut buf, orig.len(), 1500),
            Err(DropReason::TooBig)
        );
        assert_eq!(buf[..orig.len()], orig[..], "dropped frame left untouched");
        // exactly fits the MTU
        let fits = build(false, &[], &[1u8; 1472 - OVERHEAD]);
        let mut buf = room(&fits);
        assert_eq!(enc.apply(&mut buf, fits.len(), 1500), Ok(1514));
        // no room in the UMEM frame
        let small = build(false, &[], b"abc");
        let mut tight_small = small.clone();
        assert_eq!(
            enc.apply(&mut tight_small, small.len(), 9000),
            Err(DropReason::TooBig)
        );
        // decrypt of a payload shorter than nonce + tag
        let short = build(false, &[], &[0u8; OVERHEAD - 1]);
        let mut buf = room(&short);
        assert_eq!(
            tier(Algorithm::ChaCha20Poly1305, Direction::Decrypt).apply(
                &mut buf,
                short.len(),
                1500
            ),
            Err(DropReason::ShortPayload)
        );
    }

    #[test]
    fn non_udp_and_malformed() {
        let mut enc = tier(Algorithm::ChaCha20Poly1305, Direction::Encrypt);
        // TCP
        let mut tcp = build(false, &[], b"xxxxxxxxxxxx");
        tcp[14 + 9] = 6;
        assert_eq!(parse_udp(&tcp), Err(DropReason::NotUdp));
        let l = tcp.len();
        assert_eq!(enc.apply(&mut tcp, l, 1500), Err(DropReason::NotUdp));
        // ICMPv6
        let mut icmp6 = build(true, &[], b"x");
        icmp6[14 + 6] = 58;
        assert_eq!(parse_udp(&icmp6), Err(DropReason::NotUdp));
        // ARP
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(parse_udp(&arp), Err(DropReason::NotIp));
        // fragments
        let mut frag = build(false, &[], b"x");
        frag[14 + 6] = 0x20; // MF
        assert_eq!(parse_udp(&frag), Err(DropReason::Fragment));
        let mut later = build(false, &[], b"x");
        later[14 + 7] = 0x10;
        assert_eq!(parse_udp(&later), Err(DropReason::Fragment));
        let mut v6frag = build(true, &[], b"x");
        v6frag[14 + 6] = 44;
        assert_eq!(parse_udp(&v6frag), Err(DropReason::Fragment));
        // every truncation of a valid frame is malformed (never a panic)
        for v6 in [false, true] {
            let ok = build(v6, &[9], b"payload!");
            for cut in 0..ok.len() {
                assert!(parse_udp(&ok[..cut]).is_err(), "cut {cut}");
                let mut b = ok[..cut].to_vec();
                assert!(enc.apply(&mut b, cut, 1500).is_err());
            }
        }
        // UDP length disagreeing with the IP length
        let mut bad = build(false, &[], b"abcd");
        bad[14 + 20 + 5] += 1;
        assert_eq!(parse_udp(&bad), Err(DropReason::Malformed));
        // Ethernet padding is ignored and removed
        let mut padded = build(false, &[], b"ab");
        let orig_len = padded.len();
        padded.resize(60, 0);
        let mut buf = room(&padded);
        let n = enc.apply(&mut buf, 60, 1500).unwrap();
        assert_eq!(n, orig_len + OVERHEAD);
        verify(&buf[..n]);
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        // insert an 8-byte destination-options header before UDP
        let f = build(true, &[], b"ext");
        let l3 = 14;
        let mut g = f[..l3 + 40].to_vec();
        g[l3 + 6] = 60;
        let plen = u16::from_be_bytes([g[l3 + 4], g[l3 + 5]]) + 8;
        g[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        g.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        g.extend_from_slice(&f[l3 + 40..]);
        let p = parse_udp(&g).unwrap();
        assert_eq!(p.l4, l3 + 48);
        let mut buf = room(&g);
        let n = tier(Algorithm::Aes256Gcm, Direction::Encrypt)
            .apply(&mut buf, g.len(), 1500)
            .unwrap();
        verify(&buf[..n]);
        assert_eq!(u16::from_be_bytes([buf[l3 + 4], buf[l3 + 5]]), plen + 28);
    }

    #[test]
    fn pipeline_and_mac_rewrite() {
        let orig = build(false, &[], b"through the pipeline");
        let mut fns = vec![
            tier(Algorithm::ChaCha20Poly1305, Direction::Encrypt),
            tier(Algorithm::ChaCha20Poly1305, Direction::Decrypt),
        ];
        let mac = MacRewrite {
            src: [2, 0, 0, 0, 0, 0xaa],
            dst: [2, 0, 0, 0, 0, 0xbb],
        };
        let mut buf = room(&orig);
        let n = process(&mut fns, Some(&mac), &mut buf, orig.len(), 1500).unwrap();
        assert_eq!(&buf[..6], &mac.dst);
        assert_eq!(&buf[6..12], &mac.src);
        assert_eq!(&buf[12..n], &orig[12..]);
        assert_eq!(
            process(&mut [], None, &mut arp_like(), 42, 1500),
            Err(DropReason::NotIp)
        );
    }

    fn arp_like() -> Vec<u8> {
        let mut a = vec![0xff; 12];
        a.extend_from_slice(&[0x08, 0x06]);
        a.resize(64, 0);
        a
    }

    #[test]
    fn checksum_matches_reference_on_odd_lengths() {
        for len in 0..40 {
            let d: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(checksum(&d), reference_checksum(&d), "len {len}");
        }
        let ff = vec![0xffu8; 1000];
        assert_eq!(checksum(&ff), reference_checksum(&ff));
    }
}
