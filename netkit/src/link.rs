//! Links through rtnetlink: veth pairs (either end in any namespace), bridges and their ports, up/down,
//! MTU, MAC address, moving to another namespace, deletion, and reading one back — what `ip link` does.

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::nl::{Msg, NLM_F_CREATE, NLM_F_EXCL, Netlink, NlError, attrs};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_XDP: u16 = 43;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_NUM_TX_QUEUES: u16 = 31;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFF_UP: u32 = 1;

/// `struct ifinfomsg`: family, type, index, flags, change mask.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

fn check_name(name: &str) -> Result<(), NlError> {
    if name.is_empty() || name.len() > 15 {
        return Err(NlError::BadName(name.to_owned()));
    }
    Ok(())
}

fn open_ns(ns: &str) -> Result<File, NlError> {
    let path = crate::ns::path(ns);
    File::open(&path).map_err(|source| crate::ns::NsError::Open { path, source }.into())
}

/// One end of a veth pair: its name, optional MAC address and optional namespace (by name; None: the
/// socket's namespace).
#[derive(Debug, Clone, Copy)]
pub struct VethEnd<'a> {
    pub name: &'a str,
    pub mac: Option<[u8; 6]>,
    pub ns: Option<&'a str>,
    /// Transmit and receive queues (None: the kernel's default, one each).
    pub queues: Option<u32>,
}

impl<'a> VethEnd<'a> {
    /// An end called `name`, in the socket's namespace, with a kernel-chosen MAC address.
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            mac: None,
            ns: None,
            queues: None,
        }
    }
    /// `numtxqueues N numrxqueues N`: a veth end with `n` queues each way (a veth picks the
    /// receive queue of its peer by the sending CPU, so one queue per CPU spreads the load).
    pub fn queues(mut self, n: u32) -> Self {
        self.queues = Some(n);
        self
    }
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = Some(mac);
        self
    }
    pub fn ns(mut self, ns: &'a str) -> Self {
        self.ns = Some(ns);
        self
    }
}

/// What [`Netlink::link`] reads back about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Index of the bridge (or bond) it is a port of.
    pub master: Option<u32>,
    /// An XDP program is attached (any mode).
    pub xdp: bool,
}

fn u32_of(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(0..4)?.try_into().ok()?))
}

impl Netlink {
    /// Reads link `name`, or None when there is none (ENODEV).
    pub fn find_link(&mut self, name: &str) -> Result<Option<Link>, NlError> {
        check_name(name)?;
        let mut m = Msg::new(RTM_GETLINK, 0, &ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name);
        let what = format!("reading link {name}");
        let answers = match self.request(m, &what) {
            Ok(a) => a,
            Err(NlError::Request { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let malformed = |detail| NlError::Malformed {
            what: what.clone(),
            detail,
        };
        let (_, p) = answers
            .into_iter()
            .find(|(ty, _)| *ty == RTM_NEWLINK)
            .ok_or_else(|| malformed("no RTM_NEWLINK"))?;
        if p.len() < 16 {
            return Err(malformed("short ifinfomsg"));
        }
        let index = u32_of(&p[4..8]).ok_or_else(|| malformed("index"))?;
        let flags = u32_of(&p[8..12]).ok_or_else(|| malformed("flags"))?;
        let mut link = Link {
            index,
            name: name.to_owned(),
            mac: None,
            mtu: 0,
            up: flags & IFF_UP != 0,
            master: None,
            xdp: false,
        };
        for (ty, v) in attrs(&p[16..]) {
            match ty {
                IFLA_ADDRESS => link.mac = v.try_into().ok(),
                IFLA_MTU => link.mtu = u32_of(v).unwrap_or(0),
                IFLA_MASTER => link.master = u32_of(v),
                IFLA_XDP => {
                    link.xdp = attrs(v)
                        .iter()
                        .any(|(t, d)| *t == IFLA_XDP_ATTACHED && d.first().is_some_and(|&m| m != 0))
                }
                _ => {}
            }
        }
        Ok(Some(link))
    }

    /// Reads link `name`; its absence is an error naming it.
    pub fn link(&mut self, name: &str) -> Result<Link, NlError> {
        self.find_link(name)?.ok_or_else(|| NlError::NoLink {
            name: name.to_owned(),
            ns: self.namespace().map(str::to_owned),
        })
    }

    /// The interface index of `name`.
    pub fn index(&mut self, name: &str) -> Result<u32, NlError> {
        self.link(name).map(|l| l.index)
    }

    /// `ip link add A [address M] [netns X] type veth peer name B [address M] [netns Y]`.
    pub fn add_veth(&mut self, a: VethEnd<'_>, b: VethEnd<'_>) -> Result<(), NlError> {
        check_name(a.name)?;
        check_name(b.name)?;
        let fa = a.ns.map(open_ns).transpose()?;
        let fb = b.ns.map(open_ns).transpose()?;
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, a.name);
        if let Some(mac) = a.mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        if let Some(f) = &fa {
            m.attr_u32(IFLA_NET_NS_FD, f.as_raw_fd() as u32);
        }
        if let Some(q) = a.queues {
            m.attr_u32(IFLA_NUM_TX_QUEUES, q);
            m.attr_u32(IFLA_NUM_RX_QUEUES, q);
        }
        m.begin(IFLA_LINKINFO).attr_str(IFLA_INFO_KIND, "veth");
        m.begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER);
        m.raw(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, b.name);
        if let Some(mac) = b.mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        if let Some(f) = &fb {
            m.attr_u32(IFLA_NET_NS_FD, f.as_raw_fd() as u32);
        }
        if let Some(q) = b.queues {
            m.attr_u32(IFLA_NUM_TX_QUEUES, q);
            m.attr_u32(IFLA_NUM_RX_QUEUES, q);
        }
        m.end().end().end();
        let at = |e: &VethEnd<'_>| e.ns.map(|n| format!(" (in {n})")).unwrap_or_default();
        self.ack(
            m,
            &format!(
                "creating veth {}{} <-> {}{}",
                a.name,
                at(&a),
                b.name,
                at(&b)
            ),
        )
    }

    /// `ip link add NAME type bridge`.
    pub fn add_bridge(&mut self, name: &str) -> Result<(), NlError> {
        check_name(name)?;
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name);
        m.begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end();
        self.ack(m, &format!("creating bridge {name}"))
    }

    fn change(
        &mut self,
        dev: &str,
        flags: u32,
        change: u32,
        what: String,
        set: impl FnOnce(&mut Msg),
    ) -> Result<(), NlError> {
        let index = self.index(dev)?;
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, flags, change));
        set(&mut m);
        self.ack(m, &what)
    }

    /// `ip link set DEV up|down`.
    pub fn set_up(&mut self, dev: &str, up: bool) -> Result<(), NlError> {
        let what = format!("setting link {dev} {}", if up { "up" } else { "down" });
        self.change(dev, if up { IFF_UP } else { 0 }, IFF_UP, what, |_| {})
    }

    /// `ip link set DEV mtu N`.
    pub fn set_mtu(&mut self, dev: &str, mtu: u32) -> Result<(), NlError> {
        self.change(dev, 0, 0, format!("setting MTU {mtu} on link {dev}"), |m| {
            m.attr_u32(IFLA_MTU, mtu);
        })
    }

    /// `ip link set DEV address MAC`.
    pub fn set_mac(&mut self, dev: &str, mac: [u8; 6]) -> Result<(), NlError> {
        let what = format!("setting MAC {} on link {dev}", crate::mac::format(mac));
        self.change(dev, 0, 0, what, |m| {
            m.attr(IFLA_ADDRESS, &mac);
        })
    }

    /// `ip link set DEV master BRIDGE`.
    pub fn set_master(&mut self, dev: &str, bridge: &str) -> Result<(), NlError> {
        let master = self.index(bridge)?;
        self.change(
            dev,
            0,
            0,
            format!("enslaving link {dev} to bridge {bridge}"),
            |m| {
                m.attr_u32(IFLA_MASTER, master);
            },
        )
    }

    /// `ip link set DEV netns NS`.
    pub fn set_netns(&mut self, dev: &str, ns: &str) -> Result<(), NlError> {
        let f = open_ns(ns)?;
        self.change(
            dev,
            0,
            0,
            format!("moving link {dev} to namespace {ns}"),
            |m| {
                m.attr_u32(IFLA_NET_NS_FD, f.as_raw_fd() as u32);
            },
        )
    }

    /// `ip link set DEV xdp off`: detaches the XDP program of the default mode (fd -1).
    pub fn detach_xdp(&mut self, dev: &str) -> Result<(), NlError> {
        self.change(dev, 0, 0, format!("detaching XDP from link {dev}"), |m| {
            m.begin(IFLA_XDP)
                .attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes())
                .end();
        })
    }

    /// `ip link del DEV` (a veth takes its peer with it).
    pub fn del_link(&mut self, dev: &str) -> Result<(), NlError> {
        let index = self.index(dev)?;
        let m = Msg::new(RTM_DELLINK, 0, &ifinfomsg(index, 0, 0));
        self.ack(m, &format!("deleting link {dev}"))
    }
}
