//! Why native XDP is refused on an interface: the driver facts behind a fallback reason.
//!
//! The kernel answers a refused native attach with an errno (and at best a one-line extack
//! message). For virtio_net, the NIC of VMs, the usual causes are known and checkable from user
//! space: guest receive offloads the host implements (hardware GRO / LRO / guest checksum; the
//! driver refuses XDP while they are on), an MTU too large for single-page buffers, and too few
//! queue pairs for an XDP transmit queue per CPU (newer kernels then share queues under a lock,
//! which works but costs). [`native_xdp_blockers`] reads the interface's driver, MTU, queues and
//! offload settings and names what to change, so the attach report says "turn rx-gro-hw off"
//! instead of "EOPNOTSUPP".

use std::path::Path;

/// Facts about an interface that decide whether its driver accepts native XDP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// Kernel driver (`virtio_net`, `veth`, …), when the device has one in sysfs.
    pub driver: Option<String>,
    /// MTU in bytes.
    pub mtu: u32,
    /// Receive queues.
    pub rx_queues: u32,
    /// Online CPUs.
    pub cpus: u32,
    /// Offload features as `ethtool -k` names them (`rx-gro-hw`, `large-receive-offload`…), read
    /// with the SIOCETHTOOL ioctl; empty when it fails.
    pub features: Vec<(String, bool)>,
}

/// Largest MTU virtio_net accepts for XDP with 4 KiB pages (a page minus headroom, the
/// virtio header and skb_shared_info, as the driver computes it).
const VIRTIO_XDP_MAX_MTU: u32 = 3506;

/// What stops native XDP on an interface with these facts, one sentence per blocker, each naming
/// the setting to change. Empty when nothing known blocks it.
pub fn blockers(f: &LinkFacts) -> Vec<String> {
    let mut out = Vec::new();
    let on = |name: &str| f.features.iter().any(|(n, v)| n == name && *v);
    if f.driver.as_deref() == Some("virtio_net") {
        for (feature, what) in [
            ("rx-gro-hw", "hardware GRO"),
            ("large-receive-offload", "LRO"),
        ] {
            if on(feature) {
                out.push(format!(
                    "virtio_net refuses native XDP while the host implements {what} for the \
                     guest: run `ethtool -K IF {feature} off`"
                ));
            }
        }
        if f.mtu > VIRTIO_XDP_MAX_MTU {
            out.push(format!(
                "virtio_net needs an MTU of at most {VIRTIO_XDP_MAX_MTU} for native XDP \
                 (it is {})",
                f.mtu
            ));
        }
        if f.cpus > 0 && f.rx_queues < f.cpus.saturating_mul(2) {
            out.push(format!(
                "virtio_net has {} queue(s) for {} CPU(s): native XDP wants one extra transmit \
                 queue per CPU (give the VM at least {} queues, e.g. libvirt \
                 <driver queues='{}'/>, then `ethtool -L IF combined {}`); with fewer, newer \
                 kernels share queues under a lock",
                f.rx_queues,
                f.cpus,
                f.cpus * 2,
                f.cpus * 2,
                f.cpus
            ));
        }
    } else if on("large-receive-offload") {
        out.push("LRO is on: drivers refuse XDP with LRO (`ethtool -K IF lro off`)".into());
    }
    out
}

fn read_u32(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Receive queues of `iface` (its `queues/rx-*` in sysfs; 0 when unreadable).
pub fn rx_queues(iface: &str) -> u32 {
    std::fs::read_dir(Path::new("/sys/class/net").join(iface).join("queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(0)
}

/// Reads the facts of `iface` in the calling thread's network namespace (sysfs, and the offload
/// features through the SIOCETHTOOL ioctl; missing pieces stay empty).
pub fn link_facts(iface: &str) -> LinkFacts {
    let base = Path::new("/sys/class/net").join(iface);
    let driver = std::fs::read_link(base.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    // the SIOCETHTOOL ioctl, not the `ethtool` binary (the distroless image has none)
    let features = netkit::ethtool::features(iface).unwrap_or_default();
    LinkFacts {
        driver,
        mtu: read_u32(&base.join("mtu")),
        rx_queues: rx_queues(iface),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(0),
        features,
    }
}

/// The blockers of native XDP on `iface`, as one sentence (empty when none is known).
pub fn native_xdp_blockers(iface: &str) -> String {
    blockers(&link_facts(iface)).join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn virtio(features: &[(&str, bool)], mtu: u32, queues: u32) -> LinkFacts {
        LinkFacts {
            driver: Some("virtio_net".into()),
            mtu,
            rx_queues: queues,
            cpus: 2,
            features: features
                .iter()
                .map(|(n, v)| ((*n).to_string(), *v))
                .collect(),
        }
    }

    #[test]
    fn virtio_with_guest_offloads_names_the_ethtool_fix() {
        let b = blockers(&virtio(
            &[("rx-gro-hw", true), ("large-receive-offload", false)],
            1500,
            4,
        ));
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].contains("ethtool -K IF rx-gro-hw off"), "{b:?}");
    }

    #[test]
    fn virtio_with_one_queue_and_jumbo_mtu_reports_both() {
        let b = blockers(&virtio(&[("rx-gro-hw", false)], 9000, 1));
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(b[0].contains("MTU of at most 3506 for native XDP (it is 9000)"));
        assert!(b[1].contains("1 queue(s) for 2 CPU(s)"));
        assert!(b[1].contains("ethtool -L IF combined 2"));
    }

    #[test]
    fn a_ready_virtio_nic_and_a_veth_have_no_blockers() {
        assert!(blockers(&virtio(&[("rx-gro-hw", false)], 1500, 4)).is_empty());
        let veth = LinkFacts {
            driver: None,
            mtu: 1500,
            rx_queues: 1,
            cpus: 2,
            features: vec![("rx-gro-hw".into(), true)],
        };
        assert!(blockers(&veth).is_empty());
    }

    #[test]
    fn facts_of_loopback_are_read_from_sysfs() {
        let f = link_facts("lo");
        assert!(f.mtu > 0, "{f:?}");
        assert!(f.rx_queues >= 1, "{f:?}");
        assert!(f.driver.is_none(), "{f:?}");
        // the offload features come from the ioctl, with or without an `ethtool` binary
        assert!(
            f.features.iter().any(|(n, _)| n == "rx-checksumming"),
            "{f:?}"
        );
    }
}
