//! Frames built to break the parser, and the Rust reference model of the fail-closed contract.
//!
//! The model is written from `docs/security.md`, not from the C: it parses the raw bytes of a frame
//! (VLAN tags up to 4, IPv4 with options and fragments, IPv6 with up to 8 extension headers, TCP/UDP/
//! ICMP lengths checked against the IP payload), keeps its own record of first fragments keyed like
//! RFC 791 / RFC 8200 reassembly (source, destination, id, and for IPv4 the protocol), and then applies
//! the entry classifier and an ordered firewall (first matching rule by priority, else the default;
//! ARP passes a firewall, the default `spec.nonIp`; other non-IP frames are dropped). It models the policy of one
//! firewall without conntrack, behind an optional classifier; the stateful cases (conntrack,
//! tightening) have their own named tests in `tests/failclosed.rs`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;

use cnf_dataplane::engine::{Action, ClassifierConfig, FirewallConfig, FirewallRule};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const HOPOPTS: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const ESP: u8 = 50;
pub const AH: u8 = 51;
pub const NO_NEXT: u8 = 59;
pub const DSTOPTS: u8 = 60;

/// The non-IP EtherTypes a filtering chain passes when `spec.nonIp` is not set: ARP.
pub const DEFAULT_NON_IP: [u16; 1] = [0x0806];

/// Parser bounds of the contract (`VNF_MAX_VLAN`, `VNF_MAX_EXT` in `ebpf/lib/parse.h`).
pub const MAX_VLAN: usize = 4;
pub const MAX_EXT: usize = 8;

// ---- frame building ----

/// Ethernet header with `tags` (TPID, TCI) in front of `ethertype`.
pub fn eth(tags: &[(u16, u16)], ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 header (with `options`, a multiple of 4 bytes) over `payload`; `frag` is the flags/offset field.
pub fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    frag: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let hlen = 20 + options.len();
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    h[20..].copy_from_slice(options);
    let c = testkit::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// IPv6 header over `payload` (which starts with the header of type `next`).
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// One IPv6 extension header of type `kind` followed by `next` (AH: 12 bytes, others: `units` x 8).
pub fn ext_header(kind: u8, next: u8, units: u8) -> Vec<u8> {
    if kind == AH {
        let mut h = vec![next, 1, 0, 0];
        h.extend_from_slice(&[0u8; 8]);
        return h;
    }
    let len = (usize::from(units) + 1) * 8;
    let mut h = vec![0u8; len];
    h[0] = next;
    h[1] = units;
    h[2] = 1; // PadN over the rest
    h[3] = (len - 4) as u8;
    h
}

/// An IPv6 chain of extension headers `kinds` ending in upper-layer `proto`, then `l4`.
pub fn ext_chain(kinds: &[u8], proto: u8, l4: &[u8]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(proto);
        out.extend_from_slice(&ext_header(*k, next, 0));
    }
    out.extend_from_slice(l4);
    (kinds.first().copied().unwrap_or(proto), out)
}

/// IPv6 fragment header.
pub fn frag6(next: u8, off8: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((off8 << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

/// TCP header (data offset `doff` words; options zero) plus `payload`.
pub fn tcp(sport: u16, dport: u16, doff: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let hl = usize::from(doff.max(5)) * 4;
    let mut h = vec![0u8; hl];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = doff << 4;
    h[13] = flags;
    h.extend_from_slice(payload);
    h
}

/// UDP header with length `len` (None: the true length) plus `payload`.
pub fn udp(sport: u16, dport: u16, len: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    let l = len.unwrap_or((8 + payload.len()) as u16);
    h[4..6].copy_from_slice(&l.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// ICMP/ICMPv6 header of `kind` with identifier `id`, plus `payload`.
pub fn icmp(kind: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![kind, 0, 0, 0, 0, 0, 0, 1];
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// Pads a frame with zeros to the 60-byte Ethernet minimum (link padding, not payload).
pub fn pad60(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An ARP request, an LLDP frame and an 802.3 (length field) frame.
pub fn arp(tags: &[(u16, u16)]) -> Vec<u8> {
    let mut f = eth(tags, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    pad60(f)
}

pub fn lldp() -> Vec<u8> {
    let mut f = eth(&[], 0x88cc);
    f.extend_from_slice(&[0x02, 0x07, 0x04, 2, 0, 0, 0, 0, 1, 0, 0]);
    pad60(f)
}

/// `l4` (the whole L4 segment of protocol `proto`) cut into IPv4 fragments with payloads of
/// `sizes` bytes (multiples of 8 except the last; the remainder goes in a last fragment).
pub fn fragments4(
    tags: &[(u16, u16)],
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    l4: &[u8],
    sizes: &[usize],
) -> Vec<Vec<u8>> {
    split(l4, sizes)
        .into_iter()
        .map(|(off, more, part)| {
            let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
            let mut f = eth(tags, 0x0800);
            f.extend_from_slice(&ipv4(src, dst, proto, id, fo, &[], part));
            pad60(f)
        })
        .collect()
}

/// The IPv6 equivalent: `unfrag` extension header kinds before the fragment header.
pub fn fragments6(
    tags: &[(u16, u16)],
    (src, dst): ([u8; 16], [u8; 16]),
    unfrag: &[u8],
    proto: u8,
    id: u32,
    l4: &[u8],
    sizes: &[usize],
) -> Vec<Vec<u8>> {
    split(l4, sizes)
        .into_iter()
        .map(|(off, more, part)| {
            let mut body = frag6(proto, (off / 8) as u16, more, id);
            body.extend_from_slice(part);
            let (first, payload) = ext_chain(unfrag, FRAGMENT, &body);
            let mut f = eth(tags, 0x86dd);
            f.extend_from_slice(&ipv6(src, dst, first, &payload));
            pad60(f)
        })
        .collect()
}

fn split<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<(usize, bool, &'a [u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    for s in sizes {
        if off + s >= data.len() {
            break;
        }
        out.push((off, true, &data[off..off + s]));
        off += s;
    }
    out.push((off, false, &data[off..]));
    out
}

// ---- the reference model ----

/// Why the contract refuses a packet it cannot fully parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    EncapDepth,
    ExtDepth,
    TinyFragment,
    FragmentUnknown,
}

/// The flow tuple the contract derives (ports only when `ports`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub ports: bool,
}

/// What the parser makes of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    Ip(Flow),
    NonIp(u16),
    Refused(Refused),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frag {
    None,
    First,
    Later,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

#[derive(Clone, Copy, Debug)]
struct FragRec {
    flow: Flow,
    l4_hlen: usize,
}

/// Intermediate result of the IP layer.
struct Ip {
    flow: Flow,
    frag: Frag,
    off8: u16,
    id: u32,
    l4_hlen: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The contract's L4 step on `l4` (the bytes of the IP payload from the L4 header on).
fn l4(ip: &mut Ip, l4: &[u8], v4: bool) -> Result<(), Refused> {
    let short = if ip.frag == Frag::First {
        Refused::TinyFragment
    } else {
        Refused::Malformed
    };
    let proto = ip.flow.proto;
    match proto {
        TCP => {
            if l4.len() < 20 {
                return Err(short);
            }
            let doff = usize::from(l4[12] >> 4);
            if doff < 5 {
                return Err(Refused::Malformed);
            }
            if doff * 4 > l4.len() {
                return Err(short);
            }
            ip.l4_hlen = doff * 4;
        }
        UDP => {
            if l4.len() < 8 {
                return Err(short);
            }
            let ulen = usize::from(be16(l4, 4));
            if ulen < 8 || (ip.frag == Frag::None && ulen > l4.len()) {
                return Err(Refused::Malformed);
            }
            ip.l4_hlen = 8;
        }
        ICMP | ICMPV6 => {
            if l4.len() < 8 {
                return Err(short);
            }
            if (proto == ICMP) != v4 {
                return Ok(()); // ICMP in the wrong family: a protocol without ports
            }
            let echo = if v4 { [0u8, 8] } else { [128, 129] };
            if echo.contains(&l4[0]) {
                ip.flow.sport = be16(l4, 4);
                ip.flow.dport = ip.flow.sport;
            }
            ip.l4_hlen = 8;
            ip.flow.ports = true;
            return Ok(());
        }
        _ => return Ok(()),
    }
    ip.flow.sport = be16(l4, 0);
    ip.flow.dport = be16(l4, 2);
    ip.flow.ports = true;
    Ok(())
}

fn parse_v4(b: &[u8]) -> Result<Ip, Refused> {
    if b.len() < 20 || b[0] >> 4 != 4 || b[0] & 0xf < 5 {
        return Err(Refused::Malformed);
    }
    let hlen = usize::from(b[0] & 0xf) * 4;
    let tot = usize::from(be16(b, 2));
    if tot < hlen || tot > b.len() {
        return Err(Refused::Malformed);
    }
    let mut src = [0u8; 4];
    let mut dst = [0u8; 4];
    src.copy_from_slice(&b[12..16]);
    dst.copy_from_slice(&b[16..20]);
    let fo = be16(b, 6);
    let mut ip = Ip {
        flow: Flow {
            src: src.into(),
            dst: dst.into(),
            proto: b[9],
            sport: 0,
            dport: 0,
            ports: false,
        },
        frag: Frag::None,
        off8: fo & 0x1fff,
        id: u32::from(be16(b, 4)),
        l4_hlen: 0,
    };
    if fo & 0x3fff != 0 {
        ip.frag = if fo & 0x1fff != 0 {
            Frag::Later
        } else {
            Frag::First
        };
        if usize::from(ip.off8) * 8 + (tot - hlen) > 0xffff {
            return Err(Refused::Malformed);
        }
        if ip.frag == Frag::Later {
            return Ok(ip);
        }
    }
    l4(&mut ip, &b[hlen..tot], true)?;
    Ok(ip)
}

fn parse_v6(b: &[u8]) -> Result<Ip, Refused> {
    if b.len() < 40 || b[0] >> 4 != 6 {
        return Err(Refused::Malformed);
    }
    let end = 40 + usize::from(be16(b, 4));
    if end > b.len() {
        return Err(Refused::Malformed);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&b[8..24]);
    dst.copy_from_slice(&b[24..40]);
    let mut ip = Ip {
        flow: Flow {
            src: src.into(),
            dst: dst.into(),
            proto: 0,
            sport: 0,
            dport: 0,
            ports: false,
        },
        frag: Frag::None,
        off8: 0,
        id: 0,
        l4_hlen: 0,
    };
    let mut next = b[6];
    let mut pos = 40;
    let cut = |ip: &Ip| {
        if ip.frag == Frag::First {
            Refused::TinyFragment
        } else {
            Refused::Malformed
        }
    };
    for _ in 0..MAX_EXT {
        match next {
            HOPOPTS | ROUTING | DSTOPTS | AH => {
                if end - pos < 2 {
                    return Err(cut(&ip));
                }
                let hl = if next == AH {
                    (usize::from(b[pos + 1]) + 2) * 4
                } else {
                    (usize::from(b[pos + 1]) + 1) * 8
                };
                if hl > end - pos {
                    return Err(cut(&ip));
                }
                next = b[pos];
                pos += hl;
            }
            FRAGMENT => {
                if end - pos < 8 || ip.frag != Frag::None {
                    return Err(Refused::Malformed);
                }
                let fo = be16(b, pos + 2);
                next = b[pos];
                ip.id = u32::from_be_bytes([b[pos + 4], b[pos + 5], b[pos + 6], b[pos + 7]]);
                pos += 8;
                if fo & 0xfff9 == 0 {
                    continue; // atomic fragment (RFC 6946)
                }
                ip.frag = if fo & 0xfff8 != 0 {
                    Frag::Later
                } else {
                    Frag::First
                };
                ip.off8 = fo >> 3;
                if usize::from(ip.off8) * 8 + (end - pos) > 0xffff {
                    return Err(Refused::Malformed);
                }
                if ip.frag == Frag::Later {
                    ip.flow.proto = next;
                    return Ok(ip);
                }
            }
            _ => {
                ip.flow.proto = next;
                l4(&mut ip, &b[pos..end], false)?;
                return Ok(ip);
            }
        }
    }
    if matches!(next, HOPOPTS | ROUTING | DSTOPTS | AH | FRAGMENT) {
        return Err(Refused::ExtDepth);
    }
    ip.flow.proto = next;
    l4(&mut ip, &b[pos..end], false)?;
    Ok(ip)
}

/// Bounds of fragment parking (`VNF_PARK_MAX`, `VNF_PARK_PER_DGRAM`, `VNF_PARK_BYTES` in
/// `ebpf/include/vnf_shared.h`; docs/security.md section 4).
pub const PARK_MAX: usize = 1024;
pub const PARK_PER_DGRAM: usize = 8;
pub const PARK_BYTES: usize = 1536;

/// Frames parked per datagram: (index of the frame, its bytes).
type Parked = HashMap<FragKey, Vec<(usize, Vec<u8>)>>;

/// The reference model: the contract's parser with its fragment records.
#[derive(Default)]
pub struct Model {
    frags: HashMap<FragKey, FragRec>,
    /// `Some` when fragments that overtake their first one are parked (TC on a live interface).
    parked: Option<Parked>,
    nr_parked: usize,
}

impl Model {
    /// A model of a live TC chain: a fragment whose first fragment was not seen is parked (within the
    /// bounds) and replayed through the chain when its first fragment arrives. The model assumes no
    /// parked frame expires (1 s) before its first fragment comes, and that orphans stay parked for
    /// the whole run: runs shorter than the timeout with fewer orphans than `PARK_MAX`, or bounds
    /// reached by design.
    pub fn parking() -> Self {
        Self {
            parked: Some(HashMap::new()),
            ..Self::default()
        }
    }

    /// Parses frame `idx` as a live chain's entry does: its own parse, then the (index, parse) of the
    /// parked frames its arrival released (a first fragment releases its datagram's).
    pub fn parse_live(&mut self, idx: usize, f: &[u8]) -> (Parse, Vec<(usize, Parse)>) {
        let (parse, frag) = self.parse_keyed(f);
        let Some((key, kind)) = frag else {
            return (parse, Vec::new());
        };
        let nr = self.nr_parked;
        let Some(parked) = self.parked.as_mut() else {
            return (parse, Vec::new());
        };
        match (parse, kind) {
            (Parse::Refused(Refused::FragmentUnknown), _) => {
                let list = parked.entry(key).or_default();
                if nr < PARK_MAX && list.len() < PARK_PER_DGRAM && f.len() <= PARK_BYTES {
                    list.push((idx, f.to_vec()));
                    self.nr_parked += 1;
                }
                (parse, Vec::new())
            }
            (Parse::Ip(_), Frag::First) => {
                let released = parked.remove(&key).unwrap_or_default();
                self.nr_parked -= released.len();
                let replayed = released
                    .into_iter()
                    .map(|(i, bytes)| (i, self.parse(&bytes)))
                    .collect();
                (parse, replayed)
            }
            _ => (parse, Vec::new()),
        }
    }

    /// Frames parked now (the orphans, at the end of a run).
    pub fn parked_now(&self) -> usize {
        self.nr_parked
    }

    /// Parses one frame as the chain's entry does (first fragments are recorded, later ones resolved).
    pub fn parse(&mut self, f: &[u8]) -> Parse {
        self.parse_keyed(f).0
    }

    /// `parse`, with the datagram key and kind of a fragment whose IP header parsed.
    fn parse_keyed(&mut self, f: &[u8]) -> (Parse, Option<(FragKey, Frag)>) {
        if f.len() < 14 {
            return (Parse::Refused(Refused::Malformed), None);
        }
        let mut et = be16(f, 12);
        let mut pos = 14;
        let vlan = |t: u16| matches!(t, 0x8100 | 0x88a8 | 0x9100);
        for _ in 0..MAX_VLAN {
            if !vlan(et) {
                break;
            }
            if f.len() < pos + 4 {
                return (Parse::Refused(Refused::Malformed), None);
            }
            et = be16(f, pos + 2);
            pos += 4;
        }
        if vlan(et) {
            return (Parse::Refused(Refused::EncapDepth), None);
        }
        let ip = match et {
            0x0800 => parse_v4(&f[pos..]),
            0x86dd => parse_v6(&f[pos..]),
            other => return (Parse::NonIp(other), None),
        };
        let mut ip = match ip {
            Ok(ip) => ip,
            Err(r) => return (Parse::Refused(r), None),
        };
        if ip.frag == Frag::None {
            return (Parse::Ip(ip.flow), None);
        }
        let key = FragKey {
            src: ip.flow.src,
            dst: ip.flow.dst,
            id: ip.id,
            proto: if ip.flow.src.is_ipv4() {
                ip.flow.proto
            } else {
                0
            },
        };
        if ip.frag == Frag::First {
            self.frags.insert(
                key,
                FragRec {
                    flow: ip.flow,
                    l4_hlen: ip.l4_hlen,
                },
            );
            return (Parse::Ip(ip.flow), Some((key, Frag::First)));
        }
        let Some(rec) = self.frags.get(&key) else {
            return (
                Parse::Refused(Refused::FragmentUnknown),
                Some((key, Frag::Later)),
            );
        };
        if usize::from(ip.off8) * 8 < rec.l4_hlen {
            return (
                Parse::Refused(Refused::TinyFragment),
                Some((key, Frag::Later)),
            );
        }
        ip.flow.proto = rec.flow.proto;
        ip.flow.sport = rec.flow.sport;
        ip.flow.dport = rec.flow.dport;
        ip.flow.ports = rec.flow.ports;
        (Parse::Ip(ip.flow), Some((key, Frag::Later)))
    }
}

fn tcp_udp(f: &Flow) -> bool {
    f.ports && (f.proto == TCP || f.proto == UDP)
}

/// Does a fully parsed flow match the classifier?
/// A classifier that selects traffic to 192.0.2.0/24 and 2001:db8:2::/48.
pub fn to_servers() -> ClassifierConfig {
    ClassifierConfig {
        dst: vec![
            "192.0.2.0/24".parse().expect("cidr"),
            "2001:db8:2::/48".parse().expect("cidr"),
        ],
        ..Default::default()
    }
}

fn classified(c: &ClassifierConfig, f: &Flow) -> bool {
    let fam = if f.src.is_ipv4() { 4 } else { 6 };
    let any_in = |l: &[cnf_dataplane::engine::IpCidr], a: IpAddr| {
        l.is_empty() || l.iter().any(|c| c.contains(a))
    };
    let ports_in = |l: &[cnf_dataplane::engine::PortRange], p: u16| {
        l.is_empty() || l.iter().any(|r| r.contains(p))
    };
    if c.family.is_some_and(|x| x != fam) || c.protocol.is_some_and(|x| x != f.proto) {
        return false;
    }
    if !any_in(&c.src, f.src) || !any_in(&c.dst, f.dst) {
        return false;
    }
    if !c.src_ports.is_empty() || !c.dst_ports.is_empty() {
        return tcp_udp(f) && ports_in(&c.src_ports, f.sport) && ports_in(&c.dst_ports, f.dport);
    }
    true
}

/// The firewall's verdict on a fully parsed flow: first rule by priority that matches.
fn judge(fw: &FirewallConfig, f: &Flow) -> Action {
    let mut rules: Vec<&FirewallRule> = fw.rules.iter().collect();
    rules.sort_by_key(|r| r.priority);
    for r in rules {
        if r.src.is_some_and(|c| !c.contains(f.src)) || r.dst.is_some_and(|c| !c.contains(f.dst)) {
            continue;
        }
        if r.protocol.is_some_and(|p| p != f.proto) {
            continue;
        }
        if (r.src_ports.is_some() || r.dst_ports.is_some())
            && !(tcp_udp(f)
                && r.src_ports.is_none_or(|p| p.contains(f.sport))
                && r.dst_ports.is_none_or(|p| p.contains(f.dport)))
        {
            continue;
        }
        return r.action;
    }
    fw.default_action
}

/// The contract's verdict for a chain of one firewall behind `cls` (`None`: no classifier).
pub fn verdict(parse: Parse, cls: Option<&ClassifierConfig>, fw: &FirewallConfig) -> Action {
    if let Some(c) = cls {
        match parse {
            // an allowed non-IP frame is provably outside an IP classifier; others enter the chain
            Parse::NonIp(t) if DEFAULT_NON_IP.contains(&t) => return Action::Allow,
            Parse::Ip(f) if !classified(c, &f) => return Action::Allow,
            _ => {}
        }
    }
    match parse {
        // spec.nonIp.allow: default [arp]; other non-IP frames are dropped whatever the default
        Parse::NonIp(t) if DEFAULT_NON_IP.contains(&t) => Action::Allow,
        Parse::NonIp(_) => Action::Deny,
        Parse::Refused(_) => Action::Deny,
        Parse::Ip(f) => judge(fw, &f),
    }
}
