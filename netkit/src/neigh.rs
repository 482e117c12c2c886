//! Neighbours through rtnetlink: `ip neigh replace ADDR lladdr MAC dev DEV nud permanent`.

use std::net::IpAddr;

use crate::addr::{family, octets};
use crate::nl::{Msg, NLM_F_CREATE, NLM_F_REPLACE, Netlink, NlError};

const RTM_NEWNEIGH: u16 = 28;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;

impl Netlink {
    /// A permanent neighbour entry (created, or replacing one there), so no ARP/NDP is needed.
    pub fn replace_neigh(&mut self, dev: &str, addr: IpAddr, mac: [u8; 6]) -> Result<(), NlError> {
        let index = self.index(dev)?;
        // struct ndmsg: family, pad1, pad2, ifindex, state, flags, type
        let mut fixed = [0u8; 12];
        fixed[0] = family(&addr);
        fixed[4..8].copy_from_slice(&index.to_ne_bytes());
        fixed[8..10].copy_from_slice(&NUD_PERMANENT.to_ne_bytes());
        let mut m = Msg::new(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &fixed);
        m.attr(NDA_DST, &octets(&addr)).attr(NDA_LLADDR, &mac);
        let what = format!(
            "adding neighbour {addr} lladdr {} on link {dev}",
            crate::mac::format(mac)
        );
        self.ack(m, &what)
    }
}
