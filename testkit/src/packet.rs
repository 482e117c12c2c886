//! Test packets: a builder for Ethernet/VLAN/IPv4/IPv6/TCP/UDP/ICMP frames with valid checksums, and the
//! checkers that re-parse a frame and verify its IPv4 header and L4 checksums.

use std::net::IpAddr;
use std::ops::Range;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

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

pub use netkit::checksum::checksum;

/// L4 checksum with (or, for ICMPv4, without) the pseudo-header.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8], pseudo: bool) -> u16 {
    use netkit::checksum::{finish, pseudo_header_sum, sum};
    let acc = if pseudo {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo_header_sum(&s.octets(), &d.octets(), proto, seg.len())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                pseudo_header_sum(&s.octets(), &d.octets(), proto, seg.len())
            }
            _ => panic!("mixed families"),
        }
    } else {
        0
    };
    finish(sum(seg, acc))
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
