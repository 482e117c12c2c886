//! Checksum offload at attach: on a veth created with transmit checksum offload on (the kernel default),
//! the data plane's fix turns it off, reads back off through `ETHTOOL_GTXCSUM`, records the change, and
//! leaves the peer and non-veth interfaces alone.

mod common;

use cnf_dataplane::compose::offload;
use common::{Namespaces, in_ns, sh};

#[test]
fn veth_tx_checksum_offload_is_turned_off_and_read_back() {
    if !common::privileged() {
        return;
    }
    let namespaces = Namespaces::new(&["ocnf", "opeer"]);
    let (cnf, peer) = (namespaces.0[0].as_str(), namespaces.0[1].as_str());
    // A veth pair without Namespaces::link (which turns offload off itself).
    sh(
        None,
        &[
            "ip", "-n", cnf, "link", "add", "ocnf0", "type", "veth", "peer", "name", "opeer0",
            "netns", peer,
        ],
    );
    sh(Some(cnf), &["ip", "link", "set", "ocnf0", "up"]);

    let (before, driver, made, after, lo_before, lo_after) = in_ns(cnf, || {
        let before = offload::tx_checksum("ocnf0").expect("read tx-checksumming");
        let driver = offload::driver("ocnf0").expect("driver");
        let lo_before = offload::tx_checksum("lo").ok();
        let made = offload::fix_veth_checksums(["ocnf0", "lo"]);
        let after = offload::tx_checksum("ocnf0").expect("read back");
        (
            before,
            driver,
            made,
            after,
            lo_before,
            offload::tx_checksum("lo").ok(),
        )
    });
    assert_eq!(driver, "veth");
    assert!(before, "a new veth starts with tx checksum offload on");
    assert!(!after, "ETHTOOL_GTXCSUM reads off after the fix");
    assert_eq!(
        made,
        vec![offload::Change {
            interface: "ocnf0".into(),
            driver: "veth".into(),
            feature: offload::TX_CHECKSUM,
        }],
        "only the veth changed"
    );
    assert_eq!(lo_before, lo_after, "loopback untouched");
    assert!(offload::changes().contains(&made[0]), "recorded");

    // The peer in the other namespace is not ours to change; the fix again is a no-op.
    let peer_on = in_ns(peer, || offload::tx_checksum("opeer0").expect("peer"));
    assert!(peer_on, "peer left as it was");
    let again = in_ns(cnf, || offload::fix_veth_checksums(["ocnf0"]));
    assert!(again.is_empty(), "already off: nothing to change");

    // Turning it back on through the same ioctl proves the read-back is not a constant.
    let restored = in_ns(cnf, || {
        offload::set_tx_checksum("ocnf0", true).expect("set on");
        offload::tx_checksum("ocnf0").expect("read")
    });
    assert!(restored);
}
