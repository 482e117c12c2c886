//! Checksum offload on veth: the one NIC feature that breaks the chain's correctness, turned off at attach.
//!
//! A veth with transmit checksum offload on hands its peer packets whose TCP/UDP checksum holds only the
//! pseudo-header sum (`CHECKSUM_PARTIAL`): the "hardware" that would finish it never exists. XDP sees raw
//! bytes without that state, so a function that rewrites addresses or ports (NAT, LB) updates a checksum
//! that was never complete, and a packet sent on with `XDP_TX`/`XDP_REDIRECT` reaches its receiver with a
//! wrong checksum and is dropped there. The data plane therefore turns transmit checksum offload off (the
//! kernel then computes checksums in software, as `ethtool -K IF tx off` does) on every veth it attaches to,
//! logs what it changed and why, and keeps a record for `/metrics`. The peer end of a veth lives in another
//! namespace the data plane cannot reach; whoever creates the pair (the testbed, the CNI) turns it off
//! there. Physical NICs compute checksums themselves and are left alone.
//!
//! The settings are read and written with the `SIOCETHTOOL` ioctl (`ETHTOOL_GDRVINFO`, `ETHTOOL_GTXCSUM`,
//! `ETHTOOL_STXCSUM`, in `netkit::ethtool`) in the caller's network namespace; that needs `CAP_NET_ADMIN`
//! only for the write.

use std::sync::Mutex;

pub use netkit::ethtool::{driver, set_tx_checksum, tx_checksum};

/// The feature this module changes, as `ethtool -k` names it.
pub const TX_CHECKSUM: &str = "tx-checksumming";

/// Why reading or writing an offload setting failed (netkit's `SIOCETHTOOL` error).
pub use netkit::ethtool::EthtoolError as OffloadError;

/// One setting the data plane changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Interface name.
    pub interface: String,
    /// Its driver (`veth`).
    pub driver: String,
    /// The feature ([`TX_CHECKSUM`]).
    pub feature: &'static str,
}

impl Change {
    /// The log line for this change.
    pub fn message(&self) -> String {
        format!(
            "{}: turned {} off ({} driver): XDP cannot finish partial checksums, so NAT/LB rewrites and \
             XDP_TX/redirect would send packets with bad checksums; the veth peer in the other namespace \
             needs `ethtool -K <peer> tx off` too",
            self.interface, self.feature, self.driver
        )
    }
}

/// Changes made by this process, in order (interface settings are per network namespace, not per chain
/// generation, so the record is process-wide).
static CHANGES: Mutex<Vec<Change>> = Mutex::new(Vec::new());

/// Every change made so far by [`fix_veth_checksums`].
pub fn changes() -> Vec<Change> {
    CHANGES.lock().map(|c| c.clone()).unwrap_or_default()
}

/// True when a driver's transmit checksum offload breaks the chain (only veth; see the module docs).
pub fn needs_fix(driver: &str, tx_checksum_on: bool) -> bool {
    driver == "veth" && tx_checksum_on
}

/// Turns transmit checksum offload off on every veth among `ifaces` that has it on, logs each change (and
/// each failure, which does not stop the chain) and records it for [`changes`]. Returns what it changed.
pub fn fix_veth_checksums<'a>(ifaces: impl IntoIterator<Item = &'a str>) -> Vec<Change> {
    let mut made = Vec::new();
    for iface in ifaces {
        let state = driver(iface).and_then(|d| Ok((tx_checksum(iface)?, d)));
        let (on, driver) = match state {
            Ok(s) => s,
            Err(e) => {
                log::warn!("{iface}: cannot read checksum offload ({e}); left as it is");
                continue;
            }
        };
        if !needs_fix(&driver, on) {
            log::debug!(
                "{iface}: {driver}, {TX_CHECKSUM} {}",
                if on { "on" } else { "off" }
            );
            continue;
        }
        let change = Change {
            interface: iface.to_owned(),
            driver,
            feature: TX_CHECKSUM,
        };
        match set_tx_checksum(iface, false).and_then(|()| tx_checksum(iface)) {
            Ok(false) => {
                log::info!("{}", change.message());
                made.push(change);
            }
            Ok(true) => log::warn!(
                "{iface}: {TX_CHECKSUM} is still on after turning it off; rewritten packets may carry bad \
                 checksums"
            ),
            Err(e) => log::warn!(
                "{iface}: cannot turn {TX_CHECKSUM} off ({e}); rewritten packets may carry bad checksums"
            ),
        }
    }
    if let Ok(mut all) = CHANGES.lock() {
        all.extend(made.iter().cloned());
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_veth_with_tx_on_is_fixed() {
        assert!(needs_fix("veth", true));
        assert!(!needs_fix("veth", false));
        assert!(!needs_fix("virtio_net", true));
        assert!(!needs_fix("mlx5_core", true));
        assert!(!needs_fix("", true));
    }

    #[test]
    fn the_log_line_says_what_and_why() {
        let c = Change {
            interface: "cnf0".into(),
            driver: "veth".into(),
            feature: TX_CHECKSUM,
        };
        let m = c.message();
        assert!(
            m.starts_with("cnf0: turned tx-checksumming off (veth driver)"),
            "{m}"
        );
        assert!(m.contains("bad checksums"), "{m}");
    }

    #[test]
    fn a_missing_interface_is_an_error_not_a_panic() {
        // Needs no privilege: the lookup fails with ENODEV before any permission check.
        let e = tx_checksum("vnft-nonexist").expect_err("no such interface");
        assert!(matches!(e, OffloadError::Ioctl { .. }), "{e}");
        assert!(fix_veth_checksums(["vnft-nonexist"]).is_empty());
    }
}
