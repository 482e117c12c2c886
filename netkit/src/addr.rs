//! Addresses through rtnetlink: `ip addr add ADDR/PLEN dev DEV [nodad]`.

use std::net::IpAddr;

use crate::nl::{Msg, NLM_F_CREATE, NLM_F_EXCL, Netlink, NlError};

const RTM_NEWADDR: u16 = 20;
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

impl Netlink {
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
        // struct ifaddrmsg: family, prefixlen, flags, scope, index
        let mut fixed = [0u8; 8];
        fixed[0] = family(&addr);
        fixed[1] = plen;
        fixed[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &fixed);
        let o = octets(&addr);
        m.attr(IFA_LOCAL, &o).attr(IFA_ADDRESS, &o);
        if nodad && addr.is_ipv6() {
            m.attr_u32(IFA_FLAGS, IFA_F_NODAD);
        }
        self.ack(m, &format!("adding address {addr}/{plen} to link {dev}"))
    }
}
