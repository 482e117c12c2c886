//! Routes through rtnetlink, in the main table: `ip route add {default|DST/PLEN} [via GW] [dev DEV] [onlink]`.

use std::net::IpAddr;

use crate::addr::{check_prefix, family, octets};
use crate::nl::{Msg, NLM_F_CREATE, NLM_F_EXCL, Netlink, NlError};

const RTM_NEWROUTE: u16 = 24;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTNH_F_ONLINK: u32 = 4;

/// A unicast route. `dst` None is the default route of `family_v6`'s family.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub dst: Option<(IpAddr, u8)>,
    pub via: Option<IpAddr>,
    pub dev: Option<&'a str>,
    /// The gateway is on the link even if no prefix says so (`onlink`).
    pub onlink: bool,
}

impl<'a> Route<'a> {
    /// `default via GW`.
    pub fn default_via(gw: IpAddr) -> Self {
        Self {
            dst: None,
            via: Some(gw),
            dev: None,
            onlink: false,
        }
    }
    /// `DST/PLEN` (no gateway yet).
    pub fn to(dst: IpAddr, plen: u8) -> Self {
        Self {
            dst: Some((dst, plen)),
            via: None,
            dev: None,
            onlink: false,
        }
    }
    pub fn via(mut self, gw: IpAddr) -> Self {
        self.via = Some(gw);
        self
    }
    pub fn dev(mut self, dev: &'a str) -> Self {
        self.dev = Some(dev);
        self
    }
    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }
    fn describe(&self) -> String {
        let mut s = match self.dst {
            Some((d, p)) => format!("route {d}/{p}"),
            None => "default route".to_owned(),
        };
        if let Some(g) = self.via {
            s += &format!(" via {g}");
        }
        if let Some(d) = self.dev {
            s += &format!(" dev {d}");
        }
        if self.onlink {
            s += " onlink";
        }
        s
    }
}

impl Netlink {
    /// `ip route add ...` in the main table.
    pub fn add_route(&mut self, r: &Route<'_>) -> Result<(), NlError> {
        let what = format!("adding {}", r.describe());
        let fam_addr = match (r.dst, r.via) {
            (Some((d, p)), gw) => {
                check_prefix(&d, p)?;
                if gw.is_some_and(|g| g.is_ipv4() != d.is_ipv4()) {
                    return Err(self.err(what, std::io::Error::from_raw_os_error(libc::EINVAL)));
                }
                d
            }
            (None, Some(g)) => g,
            (None, None) => {
                return Err(self.err(what, std::io::Error::from_raw_os_error(libc::EINVAL)));
            }
        };
        let oif = r.dev.map(|d| self.index(d)).transpose()?;
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
        let mut fixed = [0u8; 12];
        fixed[0] = family(&fam_addr);
        fixed[1] = r.dst.map_or(0, |(_, p)| p);
        fixed[4] = RT_TABLE_MAIN;
        fixed[5] = RTPROT_BOOT;
        // as ip(8): a route without a gateway is on the link
        fixed[6] = if r.via.is_none() {
            RT_SCOPE_LINK
        } else {
            RT_SCOPE_UNIVERSE
        };
        fixed[7] = RTN_UNICAST;
        if r.onlink {
            fixed[8..12].copy_from_slice(&RTNH_F_ONLINK.to_ne_bytes());
        }
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &fixed);
        if let Some((d, _)) = r.dst {
            m.attr(RTA_DST, &octets(&d));
        }
        if let Some(g) = r.via {
            m.attr(RTA_GATEWAY, &octets(&g));
        }
        if let Some(i) = oif {
            m.attr_u32(RTA_OIF, i);
        }
        self.ack(m, &what)
    }
}
