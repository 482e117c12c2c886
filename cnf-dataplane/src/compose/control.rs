//! The daemon's own control plane, kept reachable through any chain: the TCP endpoints of its listeners
//! (gRPC, metrics — the kubelet's probes and the operator's calls) on the pod's addresses. The engine's
//! entry passes TCP to exactly these endpoints before the classifier (`ebpf/lib/control.h`).
//!
//! What is covered: every non-loopback address of this network namespace a listener accepts on (a
//! wildcard listener: every address of its family; `[::]` also IPv4 unless `net.ipv6.bindv6only`), with
//! the listener's port. Loopback is left out: its traffic never crosses the chain's interfaces. What is
//! reported instead of covered (GetStatus `control_plane`, and a log line): endpoints beyond the bounds
//! of the allow, endpoints the allow could not be written for, and addresses that appeared after it was
//! last written (written again at the next update).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A TCP listener of the daemon that must stay reachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// `grpc` or `metrics`.
    pub name: &'static str,
    /// The address it is bound to.
    pub addr: SocketAddr,
}

/// One endpoint of the control plane and whether the chain lets it through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The listener it belongs to.
    pub listener: &'static str,
    /// Address and port.
    pub addr: SocketAddr,
    /// The interface that carries the address.
    pub interface: String,
    /// True when TCP to it passes every chain.
    pub allowed: bool,
    /// Why not, when it is not.
    pub reason: String,
}

/// (interface, address) of every address of this network namespace.
pub fn local_addresses() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list this function frees below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let ip = match family {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        out.push((name, ip));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// True when an IPv6 wildcard listener takes IPv6 only (`net.ipv6.bindv6only`; std does not set
/// IPV6_V6ONLY, so the sysctl decides).
fn v6_only() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|s| s.trim() == "1")
}

/// The endpoints of `listeners` on `addrs` (see the module doc for what is covered).
pub fn endpoints(
    listeners: &[Listener],
    addrs: &[(String, IpAddr)],
    v6_only: bool,
) -> Vec<(&'static str, SocketAddr, String)> {
    let mut out = Vec::new();
    for l in listeners {
        for (iface, ip) in addrs {
            if ip.is_loopback() {
                continue;
            }
            let accepts = match l.addr.ip() {
                IpAddr::V4(a) if a.is_unspecified() => ip.is_ipv4(),
                IpAddr::V6(a) if a.is_unspecified() => ip.is_ipv6() || !v6_only,
                bound => bound == *ip,
            };
            let ep = SocketAddr::new(*ip, l.addr.port());
            if accepts && !out.iter().any(|(_, e, _)| *e == ep) {
                out.push((l.name, ep, iface.clone()));
            }
        }
    }
    out
}

/// The endpoints of `listeners` in this network namespace now.
pub fn current(listeners: &[Listener]) -> Vec<(&'static str, SocketAddr, String)> {
    endpoints(listeners, &local_addresses(), v6_only())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<(String, IpAddr)> {
        [
            ("lo", "127.0.0.1"),
            ("lo", "::1"),
            ("eth0", "10.0.0.5"),
            ("eth0", "fd00::5"),
            ("net1", "192.168.7.1"),
        ]
        .iter()
        .map(|(i, a)| (i.to_string(), a.parse().expect("ip")))
        .collect()
    }

    fn l(name: &'static str, a: &str) -> Listener {
        Listener {
            name,
            addr: a.parse().expect("listener"),
        }
    }

    #[test]
    fn wildcards_cover_every_non_loopback_address_of_their_family() {
        let e = endpoints(
            &[l("metrics", "0.0.0.0:9090"), l("grpc", "[::]:50051")],
            &addrs(),
            false,
        );
        let got: Vec<String> = e.iter().map(|(n, a, i)| format!("{n} {a} {i}")).collect();
        assert_eq!(
            got,
            [
                "metrics 10.0.0.5:9090 eth0",
                "metrics 192.168.7.1:9090 net1",
                "grpc 10.0.0.5:50051 eth0",
                "grpc [fd00::5]:50051 eth0",
                "grpc 192.168.7.1:50051 net1",
            ]
        );
        let v6 = endpoints(&[l("grpc", "[::]:50051")], &addrs(), true);
        assert_eq!(v6.len(), 1, "bindv6only: IPv6 only");
    }

    #[test]
    fn a_bound_listener_covers_its_address_only_and_loopback_is_never_covered() {
        let e = endpoints(&[l("grpc", "10.0.0.5:50051")], &addrs(), false);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].1, "10.0.0.5:50051".parse().expect("ep"));
        assert!(endpoints(&[l("metrics", "127.0.0.1:9090")], &addrs(), false).is_empty());
    }
}
