//! The control-plane allow of `ebpf/lib/control.h`: TCP to the daemon's own endpoints (an address of the
//! pod and the port of one of its TCP listeners) passes the entry before the classifier, so a chain never
//! cuts the kubelet's probes or the operator's gRPC. This module mirrors the C structs and turns a list of
//! endpoints into the map contents.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use aya::Pod;

use super::error::{EngineError, Result};
use super::loader::Engine;
use super::maps::{ChainMaps, ignore_missing};

/// Distinct listener ports the entry checks (`VNF_CTL_MAX_PORTS`).
pub const MAX_PORTS: usize = 4;
/// (address, port) endpoints at most (`VNF_CTL_MAX_ENDPOINTS`).
pub const MAX_ENDPOINTS: usize = 64;

/// `struct vnf_ctl_cfg`: the ports of the endpoints, host order, 0 = unused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtlCfg {
    pub ports: [u16; MAX_PORTS],
}

/// `struct vnf_ctl_key`: one endpoint (address in network order, IPv4 in the first 4 bytes; port in
/// host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtlKey {
    pub family: u8,
    pub _pad: u8,
    pub port: u16,
    pub addr: [u8; 16],
}

// SAFETY: both are plain `repr(C)` structs of integers with explicit padding fields (no implicit holes),
// valid for every bit pattern.
unsafe impl Pod for CtlCfg {}
// SAFETY: see above.
unsafe impl Pod for CtlKey {}

impl CtlKey {
    /// The key of TCP endpoint `ep`.
    pub fn of(ep: SocketAddr) -> Self {
        let (family, addr) = match ep.ip() {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (4, b)
            }
            IpAddr::V6(a) => (6, a.octets()),
        };
        Self {
            family,
            _pad: 0,
            port: ep.port(),
            addr,
        }
    }
}

/// What the entry gets for a set of endpoints: the config, the keys it holds, and the endpoints left
/// out (more than [`MAX_PORTS`] ports or [`MAX_ENDPOINTS`] endpoints), each with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlPlan {
    pub cfg: CtlCfg,
    pub keys: Vec<CtlKey>,
    pub left_out: Vec<(SocketAddr, String)>,
}

/// Plans the map contents for `endpoints` (duplicates ignored, order kept for the ports: the first
/// [`MAX_PORTS`] distinct ports are served).
pub fn plan(endpoints: &[SocketAddr]) -> ControlPlan {
    let mut out = ControlPlan::default();
    let mut ports: Vec<u16> = Vec::new();
    let mut seen = BTreeSet::new();
    for ep in endpoints {
        if !seen.insert(*ep) {
            continue;
        }
        if ep.port() == 0 {
            out.left_out.push((*ep, "port 0 is not a listener".into()));
            continue;
        }
        if !ports.contains(&ep.port()) {
            if ports.len() == MAX_PORTS {
                out.left_out.push((
                    *ep,
                    format!("the control-plane allow serves at most {MAX_PORTS} ports"),
                ));
                continue;
            }
            ports.push(ep.port());
        }
        if out.keys.len() == MAX_ENDPOINTS {
            out.left_out.push((
                *ep,
                format!("the control-plane allow holds at most {MAX_ENDPOINTS} endpoints"),
            ));
            continue;
        }
        out.keys.push(CtlKey::of(*ep));
    }
    for (slot, p) in out.cfg.ports.iter_mut().zip(&ports) {
        *slot = *p;
    }
    out
}

impl Engine {
    /// Writes the control-plane allow: TCP to `endpoints` (the pod's addresses with the ports of the
    /// daemon's TCP listeners) passes every chain. Replaces what was there; endpoints beyond the bounds
    /// of `control.h` are left out and returned in the plan. New endpoints are in place before the port
    /// list changes, old ones go last, so an endpoint that stays never misses a packet.
    pub fn set_control_plane(&mut self, endpoints: &[SocketAddr]) -> Result<ControlPlan> {
        let plan = plan(endpoints);
        let m = &mut self.maps;
        for k in &plan.keys {
            m.ctl_endpoints
                .insert(k, 1, 0)
                .map_err(EngineError::map(ChainMaps::CTL_ENDPOINTS))?;
        }
        m.ctl_cfg
            .set(0, plan.cfg, 0)
            .map_err(EngineError::map(ChainMaps::CTL_CFG))?;
        let stale: Vec<CtlKey> = m
            .ctl_endpoints
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !plan.keys.contains(k))
            .collect();
        for k in stale {
            ignore_missing(m.ctl_endpoints.remove(&k), ChainMaps::CTL_ENDPOINTS)?;
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layout_matches_control_h() {
        assert_eq!(size_of::<CtlCfg>(), 8);
        assert_eq!(size_of::<CtlKey>(), 20);
        assert_eq!(offset_of!(CtlKey, port), 2);
        assert_eq!(offset_of!(CtlKey, addr), 4);
    }

    fn ep(s: &str) -> SocketAddr {
        s.parse().expect("endpoint")
    }

    #[test]
    fn keys_encode_family_port_and_address() {
        let k = CtlKey::of(ep("10.1.2.3:9090"));
        assert_eq!((k.family, k.port), (4, 9090));
        assert_eq!(&k.addr[..4], &[10, 1, 2, 3]);
        assert!(k.addr[4..].iter().all(|b| *b == 0));
        let k = CtlKey::of(ep("[2001:db8::5]:50051"));
        assert_eq!((k.family, k.port), (6, 50051));
        assert_eq!(k.addr[0..2], [0x20, 0x01]);
        assert_eq!(k.addr[15], 5);
    }

    #[test]
    fn plan_bounds_ports_and_endpoints_and_says_what_it_left_out() {
        let p = plan(&[
            ep("10.0.0.1:9090"),
            ep("10.0.0.1:9090"),
            ep("10.0.0.1:50051"),
            ep("10.0.0.1:0"),
        ]);
        assert_eq!(p.cfg.ports, [9090, 50051, 0, 0]);
        assert_eq!(p.keys.len(), 2);
        assert_eq!(p.left_out.len(), 1);
        assert!(p.left_out[0].1.contains("port 0"), "{:?}", p.left_out);

        let many: Vec<SocketAddr> = (1..=6).map(|i| ep(&format!("10.0.0.1:{i}"))).collect();
        let p = plan(&many);
        assert_eq!(p.cfg.ports, [1, 2, 3, 4]);
        assert_eq!(p.keys.len(), 4);
        assert_eq!(p.left_out.len(), 2);
        assert!(p.left_out[0].1.contains("at most 4 ports"));

        let addrs: Vec<SocketAddr> = (0..70u8).map(|i| ep(&format!("10.0.{i}.1:9090"))).collect();
        let p = plan(&addrs);
        assert_eq!(p.keys.len(), MAX_ENDPOINTS);
        assert_eq!(p.left_out.len(), 70 - MAX_ENDPOINTS);
        assert!(p.left_out[0].1.contains("at most 64 endpoints"));
    }
}
