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
//! `ETHTOOL_STXCSUM`) in the caller's network namespace; that needs `CAP_NET_ADMIN` only for the write.

use std::ffi::c_char;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// `ETHTOOL_GDRVINFO`: driver name and version.
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
/// `ETHTOOL_GTXCSUM`: is transmit checksum offload on?
const ETHTOOL_GTXCSUM: u32 = 0x0000_0016;
/// `ETHTOOL_STXCSUM`: turn transmit checksum offload on or off.
const ETHTOOL_STXCSUM: u32 = 0x0000_0017;

/// The feature this module changes, as `ethtool -k` names it.
pub const TX_CHECKSUM: &str = "tx-checksumming";

/// Why reading or writing an offload setting failed.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// The name cannot be an interface name (empty, too long, contains NUL).
    #[error("{0:?} is not a valid interface name")]
    BadName(String),
    /// No socket for the ioctl.
    #[error("socket for SIOCETHTOOL: {0}")]
    Socket(#[source] io::Error),
    /// The ioctl failed (no such device, operation not supported, not permitted).
    #[error("{op} on {iface}: {source}")]
    Ioctl {
        /// The ethtool command.
        op: &'static str,
        /// Interface name.
        iface: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

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

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_drvinfo` (196 bytes).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [c_char; 32],
    version: [c_char; 32],
    fw_version: [c_char; 32],
    bus_info: [c_char; 32],
    erom_version: [c_char; 32],
    reserved2: [c_char; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `ifr_name` for `iface`: at most 15 bytes, no NUL, NUL-terminated.
fn ifr_name(iface: &str) -> Result<[c_char; libc::IFNAMSIZ], OffloadError> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(OffloadError::BadName(iface.to_owned()));
    }
    let mut name = [0 as c_char; libc::IFNAMSIZ];
    for (d, s) in name.iter_mut().zip(bytes) {
        *d = *s as c_char;
    }
    Ok(name)
}

/// A NUL-terminated C string field as text.
fn c_field(field: &[c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn control_socket() -> Result<OwnedFd, OffloadError> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(OffloadError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a freshly created, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one `SIOCETHTOOL` command on `iface` with `data` as the command buffer.
fn ethtool<T>(iface: &str, op: &'static str, data: &mut T) -> Result<(), OffloadError> {
    let sock = control_socket()?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_name = ifr_name(iface)?;
    ifr.ifr_ifru.ifru_data = (data as *mut T).cast::<c_char>();
    // SAFETY: SIOCETHTOOL reads `ifr` and the command buffer it points to; both are valid, properly sized
    // (T is the repr(C) struct the command expects) and live for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if rc < 0 {
        return Err(OffloadError::Ioctl {
            op,
            iface: iface.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The driver of `iface` (`veth`, `virtio_net`, …), as `ethtool -i` reports it.
pub fn driver(iface: &str) -> Result<String, OffloadError> {
    // SAFETY: the struct is plain old data; all-zero is a valid value.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ethtool(iface, "ETHTOOL_GDRVINFO", &mut info)?;
    Ok(c_field(&info.driver))
}

/// Whether transmit checksum offload is on for `iface`.
pub fn tx_checksum(iface: &str) -> Result<bool, OffloadError> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GTXCSUM,
        data: 0,
    };
    ethtool(iface, "ETHTOOL_GTXCSUM", &mut v)?;
    Ok(v.data != 0)
}

/// Turns transmit checksum offload of `iface` on or off.
pub fn set_tx_checksum(iface: &str, on: bool) -> Result<(), OffloadError> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    ethtool(iface, "ETHTOOL_STXCSUM", &mut v)
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
    fn ethtool_structs_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<EthtoolValue>(), 8);
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(std::mem::offset_of!(EthtoolDrvinfo, driver), 4);
        assert_eq!(std::mem::offset_of!(EthtoolDrvinfo, n_priv_flags), 176);
    }

    #[test]
    fn interface_names_are_checked_and_nul_terminated() {
        let n = ifr_name("cnf0").expect("valid");
        assert_eq!(c_field(&n), "cnf0");
        assert_eq!(n[4], 0);
        let longest = "a".repeat(libc::IFNAMSIZ - 1);
        assert_eq!(c_field(&ifr_name(&longest).expect("15 bytes")), longest);
        for bad in ["", "sixteen-bytes-xx", "a\0b"] {
            assert!(
                matches!(ifr_name(bad), Err(OffloadError::BadName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn driver_name_stops_at_nul() {
        let mut f = [0 as c_char; 32];
        for (d, s) in f.iter_mut().zip(b"veth\0junk") {
            *d = *s as c_char;
        }
        assert_eq!(c_field(&f), "veth");
        let full = [b'x' as c_char; 32];
        assert_eq!(c_field(&full).len(), 32);
    }

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
