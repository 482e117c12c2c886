//! Addresses through rtnetlink: `ip addr add ADDR/PLEN dev DEV [nodad]`, `ip addr show|del|flush`.

use std::net::IpAddr;

use crate::nl::{Msg, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, Netlink, NlError, attrs};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
/// `RT_SCOPE_UNIVERSE`: what `ip addr` calls scope global.
pub const SCOPE_GLOBAL: u8 = 0;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
/// No duplicate address detection: the address is usable at once (IPv6).
pub const IFA_F_NODAD: u32 = 0x02;

pub(crate) fn family(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

pub(crate) fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Why a prefix length does not fit its family.
pub(crate) fn check_prefix(a: &IpAddr, plen: u8) -> Result<(), NlError> {
    let max = if a.is_ipv4() { 32 } else { 128 };
    if plen > max {
        return Err(NlError::Request {
            what: format!("prefix length /{plen} for {a}"),
            ns: None,
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    Ok(())
}

/// An address read back from a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub addr: IpAddr,
    pub plen: u8,
    /// `RT_SCOPE_*` (0 global, 253 link, 254 host).
    pub scope: u8,
}

fn ifaddrmsg(addr: &IpAddr, plen: u8, index: u32) -> [u8; 8] {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index
    let mut fixed = [0u8; 8];
    fixed[0] = family(addr);
    fixed[1] = plen;
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    fixed
}

impl Netlink {
    /// The addresses of link `dev` (`ip addr show dev DEV`), both families.
    pub fn addrs(&mut self, dev: &str) -> Result<Vec<Addr>, NlError> {
        let index = self.index(dev)?;
        let m = Msg::new(RTM_GETADDR, NLM_F_DUMP, &[0u8; 8]);
        let what = format!("listing the addresses of link {dev}");
        let mut out = Vec::new();
        for (ty, p) in self.request(m, &what)? {
            if ty != RTM_NEWADDR || p.len() < 8 {
                continue;
            }
            if u32::from_ne_bytes([p[4], p[5], p[6], p[7]]) != index {
                continue;
            }
            let (fam, plen, scope) = (p[0], p[1], p[3]);
            let find = |want: u16| {
                attrs(&p[8..])
                    .into_iter()
                    .find(|(t, _)| *t == want)
                    .map(|(_, v)| v.to_vec())
            };
            let Some(raw) = find(IFA_LOCAL).or_else(|| find(IFA_ADDRESS)) else {
                continue;
            };
            let addr = match (i32::from(fam), raw.len()) {
                (libc::AF_INET, 4) => {
                    IpAddr::from(<[u8; 4]>::try_from(raw.as_slice()).unwrap_or_default())
                }
                (libc::AF_INET6, 16) => {
                    IpAddr::from(<[u8; 16]>::try_from(raw.as_slice()).unwrap_or_default())
                }
                _ => continue,
            };
            out.push(Addr { addr, plen, scope });
        }
        Ok(out)
    }

    /// `ip addr del ADDR/PLEN dev DEV`.
    pub fn del_addr(&mut self, dev: &str, addr: IpAddr, plen: u8) -> Result<(), NlError> {
        check_prefix(&addr, plen)?;
        let index = self.index(dev)?;
        let mut m = Msg::new(RTM_DELADDR, 0, &ifaddrmsg(&addr, plen, index));
        let o = octets(&addr);
        m.attr(IFA_LOCAL, &o);
        self.ack(
            m,
            &format!("deleting address {addr}/{plen} from link {dev}"),
        )
    }

    /// `ip addr flush dev DEV scope global`: deletes the global addresses of `dev`, returns how many.
    pub fn flush_global_addrs(&mut self, dev: &str) -> Result<usize, NlError> {
        let global: Vec<Addr> = self
            .addrs(dev)?
            .into_iter()
            .filter(|a| a.scope == SCOPE_GLOBAL)
            .collect();
        for a in &global {
            self.del_addr(dev, a.addr, a.plen)?;
        }
        Ok(global.len())
    }

    /// `ip addr add ADDR/PLEN dev DEV` (with `nodad` when `nodad`; IPv4 ignores it).
    pub fn add_addr(
        &mut self,
        dev: &str,
        addr: IpAddr,
        plen: u8,
        nodad: bool,
    ) -> Result<(), NlError> {
        check_prefix(&addr, plen)?;
        let index = self.index(dev)?;
        let mut m = Msg::new(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            &ifaddrmsg(&addr, plen, index),
        );
        let o = octets(&addr);
        m.attr(IFA_LOCAL, &o).attr(IFA_ADDRESS, &o);
        if nodad && addr.is_ipv6() {
            m.attr_u32(IFA_FLAGS, IFA_F_NODAD);
        }
        self.ack(m, &format!("adding address {addr}/{plen} to link {dev}"))
    }
}
