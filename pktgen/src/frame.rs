//! Ethernet/IP/UDP test frames for the generators that write whole frames (live frames and
//! AF_XDP): building a template per (flow, size), and stamping sequence number and transmit
//! time into a copy with the UDP checksum updated incrementally (RFC 1624 style: the template's
//! checksum sum is kept and only the two changed header fields are added).

use std::net::{IpAddr, SocketAddr};

use crate::error::Error;
use crate::payload::{HEADER_LEN, Header};
use crate::sizes::{IPV4_HEADER, IPV6_HEADER, UDP_HEADER};

/// Ethernet header length.
pub const ETH_HEADER: usize = 14;

/// Parses `aa:bb:cc:dd:ee:ff` (netkit's parser; surrounding white space ignored).
pub fn parse_mac(s: &str) -> Result<[u8; 6], Error> {
    netkit::mac::parse(s.trim()).map_err(|e| Error::Config(e.to_string()))
}

/// The MAC address of interface `name`, from `/sys/class/net/NAME/address`.
pub fn interface_mac(name: &str) -> Result<[u8; 6], Error> {
    use netkit::mac::InterfaceMacError;
    netkit::mac::of_interface(name).map_err(|e| match e {
        InterfaceMacError::Read { path, source } => crate::error::io_err(path)(source),
        InterfaceMacError::Bad(bad) => Error::Config(bad.to_string()),
    })
}

/// Unfolded one's-complement sum of `data` as big-endian 16-bit words (odd tail zero-padded).
pub fn ones_sum(data: &[u8]) -> u64 {
    netkit::checksum::sum(data, 0)
}

/// Folds a one's-complement sum to 16 bits and complements it; the RFC 1071 Internet checksum.
pub use netkit::checksum::{checksum as inet_checksum, finish as fold};

/// Whether the UDP checksum is computed (AF_XDP, and anything a receiver verifies) or left 0
/// ("none", legal for IPv4 only; used by live frames, whose payload the kernel rewrites).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpChecksum {
    /// Checksum 0.
    None,
    /// A correct checksum (over the pseudo header, the UDP header and the payload).
    Full,
}

/// Where a frame goes: link-layer and transport endpoints (both addresses of one family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC (the next hop's).
    pub dst_mac: [u8; 6],
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
}

/// Offset of the pktgen header in a frame of this family.
pub fn payload_offset(ipv6: bool) -> usize {
    ETH_HEADER + if ipv6 { IPV6_HEADER } else { IPV4_HEADER } + UDP_HEADER
}

/// One prepared frame with sequence 0 and timestamp 0, plus what is needed to stamp copies.
#[derive(Debug, Clone)]
pub struct Template {
    frame: Vec<u8>,
    payload_off: usize,
    /// One's-complement sum over pseudo header + UDP (checksum field 0, seq and tx 0);
    /// `None` when the checksum is left 0.
    csum_base: Option<u64>,
}

impl Template {
    /// Builds the frame: Ethernet, IPv4 (DF, TTL 64, header checksum) or IPv6 (hop limit 64),
    /// UDP, the pktgen header (`stream_id`, sequence 0, timestamp 0) and zero filler, for an
    /// IP packet of `ip_size` bytes (raised to fit the header).
    pub fn new(
        ep: &Endpoints,
        stream_id: u32,
        ip_size: usize,
        csum: UdpChecksum,
    ) -> Result<Self, Error> {
        let (src_ip, dst_ip) = (ep.src.ip(), ep.dst.ip());
        let ipv6 = match (src_ip, dst_ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => {
                return Err(Error::Config(format!(
                    "source {} and destination {} are different address families",
                    ep.src, ep.dst
                )));
            }
        };
        if ipv6 && csum == UdpChecksum::None {
            return Err(Error::Config(
                "IPv6 UDP needs a checksum (RFC 8200 section 8.1)".into(),
            ));
        }
        let ip_hdr = if ipv6 { IPV6_HEADER } else { IPV4_HEADER };
        let ip_len = ip_size.max(ip_hdr + UDP_HEADER + HEADER_LEN);
        let ip_len16 = u16::try_from(ip_len)
            .map_err(|_| Error::Config(format!("IP size {ip_len} too large")))?;
        let udp_len = ip_len16 - ip_hdr as u16;
        let mut f = vec![0u8; ETH_HEADER + ip_len];
        f[0..6].copy_from_slice(&ep.dst_mac);
        f[6..12].copy_from_slice(&ep.src_mac);
        let ethertype: u16 = if ipv6 { 0x86dd } else { 0x0800 };
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        let mut pseudo = Vec::with_capacity(40);
        match (src_ip, dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ip = &mut f[ETH_HEADER..ETH_HEADER + IPV4_HEADER];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&ip_len16.to_be_bytes());
                ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
                ip[8] = 64;
                ip[9] = 17; // UDP
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let c = inet_checksum(ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, 17]);
                pseudo.extend_from_slice(&udp_len.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ip = &mut f[ETH_HEADER..ETH_HEADER + IPV6_HEADER];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
                ip[6] = 17; // next header: UDP
                ip[7] = 64; // hop limit
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
            }
            _ => {
                return Err(Error::Config(format!(
                    "source {} and destination {} are different address families",
                    ep.src, ep.dst
                )));
            }
        }
        let udp_off = ETH_HEADER + ip_hdr;
        let payload_off = udp_off + UDP_HEADER;
        {
            let udp = &mut f[udp_off..payload_off];
            udp[0..2].copy_from_slice(&ep.src.port().to_be_bytes());
            udp[2..4].copy_from_slice(&ep.dst.port().to_be_bytes());
            udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        }
        Header::new(stream_id, 0, 0)
            .encode(&mut f[payload_off..])
            .map_err(|e| Error::Config(e.to_string()))?;
        let csum_base = match csum {
            UdpChecksum::None => None,
            UdpChecksum::Full => Some(ones_sum(&pseudo) + ones_sum(&f[udp_off..])),
        };
        let mut t = Self {
            frame: f,
            payload_off,
            csum_base,
        };
        let c = t.checksum(0, 0);
        t.frame[payload_off - 2..payload_off].copy_from_slice(&c.to_be_bytes());
        Ok(t)
    }

    /// The template frame (sequence 0, timestamp 0).
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Frame length in bytes (Ethernet header included).
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Whether the frame is empty (never: a template holds at least the headers).
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// UDP payload length.
    pub fn payload_len(&self) -> usize {
        self.frame.len() - self.payload_off
    }

    /// Offset of the pktgen header.
    pub fn payload_offset(&self) -> usize {
        self.payload_off
    }

    fn checksum(&self, seq: u64, tx_ns: u64) -> u16 {
        let Some(base) = self.csum_base else {
            return 0;
        };
        // The header sits at an even offset of the UDP datagram, so its fields' bytes form
        // whole 16-bit words of the checksum.
        let sum = base + ones_sum(&seq.to_le_bytes()) + ones_sum(&tx_ns.to_le_bytes());
        match fold(sum) {
            0 => 0xffff, // a computed 0 is sent as all ones (0 means "no checksum")
            c => c,
        }
    }

    /// Copies the frame into `out` (at least [`len`](Self::len) bytes) with `seq` and `tx_ns`
    /// written into the pktgen header and the UDP checksum updated. Returns the frame length.
    pub fn write(&self, out: &mut [u8], seq: u64, tx_ns: u64) -> Result<usize, Error> {
        let len = self.frame.len();
        let cap = out.len();
        let dst = out.get_mut(..len).ok_or_else(|| {
            Error::Config(format!(
                "frame of {len} bytes does not fit a {cap}-byte buffer"
            ))
        })?;
        dst.copy_from_slice(&self.frame);
        let p = self.payload_off;
        dst[p + 8..p + 16].copy_from_slice(&seq.to_le_bytes());
        dst[p + 16..p + 24].copy_from_slice(&tx_ns.to_le_bytes());
        if self.csum_base.is_some() {
            dst[p - 2..p].copy_from_slice(&self.checksum(seq, tx_ns).to_be_bytes());
        }
        Ok(len)
    }
}

/// Verifies the checksums of an Ethernet/IPv4-or-IPv6/UDP frame from scratch: the IPv4 header
/// checksum and the UDP checksum (0 is accepted for IPv4 only). Used by tests and as the
/// reference for [`Template::write`].
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Some(et) = frame.get(12..14) else {
        return false;
    };
    let (udp_off, mut sum) = match u16::from_be_bytes([et[0], et[1]]) {
        0x0800 => {
            let Some(ip) = frame.get(ETH_HEADER..ETH_HEADER + IPV4_HEADER) else {
                return false;
            };
            if inet_checksum(ip) != 0 {
                return false;
            }
            let udp_len = frame.len() - ETH_HEADER - IPV4_HEADER;
            let mut p = Vec::new();
            p.extend_from_slice(&ip[12..20]);
            p.extend_from_slice(&[0, 17]);
            p.extend_from_slice(&(udp_len as u16).to_be_bytes());
            let off = ETH_HEADER + IPV4_HEADER;
            if frame.get(off + 6..off + 8) == Some(&[0, 0]) {
                return true;
            }
            (off, ones_sum(&p))
        }
        0x86dd => {
            let Some(ip) = frame.get(ETH_HEADER..ETH_HEADER + IPV6_HEADER) else {
                return false;
            };
            let udp_len = frame.len() - ETH_HEADER - IPV6_HEADER;
            let mut p = Vec::new();
            p.extend_from_slice(&ip[8..40]);
            p.extend_from_slice(&(udp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
            let off = ETH_HEADER + IPV6_HEADER;
            if frame.get(off + 6..off + 8) == Some(&[0, 0]) {
                return false;
            }
            (off, ones_sum(&p))
        }
        _ => return false,
    };
    sum += ones_sum(&frame[udp_off..]);
    fold(sum) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(src: &str, dst: &str) -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: src.parse().expect("src"),
            dst: dst.parse().expect("dst"),
        }
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3 example bytes: sum 0xddf2, checksum 0x220d.
        assert_eq!(
            inet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("aa:BB:0c:00:01:ff").expect("ok"),
            [0xaa, 0xbb, 0x0c, 0, 1, 0xff]
        );
        assert!(parse_mac("aa:bb:cc:dd:ee").is_err());
        assert!(parse_mac("aa:bb:cc:dd:ee:zz").is_err());
    }

    #[test]
    fn stamped_frames_have_correct_checksums_in_both_families() {
        let mut buf = vec![0u8; 2048];
        for (e, size, off) in [
            (ep("192.0.2.1:4000", "192.0.2.2:9000"), 64, 42),
            (ep("192.0.2.1:4000", "192.0.2.2:9000"), 1500, 42),
            (ep("[2001:db8::1]:4000", "[2001:db8::2]:9000"), 64, 62),
            (ep("[2001:db8::1]:65535", "[2001:db8::2]:9000"), 577, 62),
        ] {
            let t = Template::new(&e, 3, size, UdpChecksum::Full).expect("template");
            assert_eq!(t.payload_offset(), off);
            assert!(checksums_ok(t.frame()), "template {size}");
            // Many (seq, tx) pairs, including ones whose words carry around the fold.
            for (seq, tx) in [
                (0u64, 0u64),
                (1, 2),
                (u64::MAX, u64::MAX),
                (0xffff, 0xffff_0000_ffff),
                (12345, 987_654_321_012),
            ] {
                let n = t.write(&mut buf, seq, tx).expect("fits");
                assert!(checksums_ok(&buf[..n]), "size {size} seq {seq} tx {tx}");
                let h = Header::decode(&buf[off..n]).expect("header");
                assert_eq!((h.stream_id, h.seq, h.tx_ns), (3, seq, tx));
            }
        }
    }

    #[test]
    fn sizes_are_raised_to_fit_and_families_must_match() {
        let t6 = Template::new(
            &ep("[2001:db8::1]:1", "[2001:db8::2]:2"),
            0,
            64,
            UdpChecksum::Full,
        )
        .expect("v6");
        assert_eq!(t6.len(), 14 + 72);
        assert_eq!(t6.payload_len(), 24);
        assert!(
            Template::new(
                &ep("192.0.2.1:1", "[2001:db8::2]:2"),
                0,
                64,
                UdpChecksum::Full
            )
            .is_err()
        );
        assert!(
            Template::new(
                &ep("[2001:db8::1]:1", "[2001:db8::2]:2"),
                0,
                64,
                UdpChecksum::None
            )
            .is_err()
        );
        let mut small = [0u8; 10];
        assert!(t6.write(&mut small, 0, 0).is_err());
    }

    #[test]
    fn checksum_verifier_rejects_corruption() {
        let t = Template::new(&ep("192.0.2.1:1", "192.0.2.2:2"), 0, 100, UdpChecksum::Full)
            .expect("v4");
        let mut f = t.frame().to_vec();
        assert!(checksums_ok(&f));
        f[80] ^= 1;
        assert!(!checksums_ok(&f));
    }
}
