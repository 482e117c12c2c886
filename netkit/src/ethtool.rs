//! Interface settings through the `SIOCETHTOOL` ioctl in the calling thread's network namespace, without
//! the `ethtool` binary (a distroless image has none): the driver name (`ETHTOOL_GDRVINFO`), transmit
//! checksum offload (`ETHTOOL_GTXCSUM` / `ETHTOOL_STXCSUM`, the write needs `CAP_NET_ADMIN`), every
//! offload feature as `ethtool -k` lists it ([`features`]: `ETHTOOL_GSSET_INFO`, `ETHTOOL_GSTRINGS` and
//! `ETHTOOL_GFEATURES`, see include/uapi/linux/ethtool.h) and changing them as `ethtool -K` does
//! ([`set_features`]: `ETHTOOL_SFEATURES`).

use std::ffi::c_char;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const ETHTOOL_GTXCSUM: u32 = 0x0000_0016;
const ETHTOOL_STXCSUM: u32 = 0x0000_0017;
const ETHTOOL_GGRO: u32 = 0x0000_002b;
const ETHTOOL_SGRO: u32 = 0x0000_002c;
const ETHTOOL_GSTRINGS: u32 = 0x0000_001b;
const ETHTOOL_GSSET_INFO: u32 = 0x0000_0037;
const ETHTOOL_GFEATURES: u32 = 0x0000_003a;
const ETHTOOL_SFEATURES: u32 = 0x0000_003b;
/// `ETH_SS_FEATURES`: the string set of the netdev feature names.
const ETH_SS_FEATURES: u32 = 4;
/// `ETH_GSTRING_LEN`.
const GSTRING_LEN: usize = 32;

/// Why reading or writing an interface setting failed.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    /// The name cannot be an interface name (empty, too long, contains NUL).
    #[error("{0:?} is not a valid interface name")]
    BadName(String),
    /// No socket for the ioctl.
    #[error("socket for SIOCETHTOOL: {0}")]
    Socket(#[source] io::Error),
    /// No feature of the interface has that name (kernel or `ethtool -k` name).
    #[error("{iface} has no feature {name:?}")]
    UnknownFeature {
        /// Interface name.
        iface: String,
        /// The name asked for.
        name: String,
    },
    /// The driver cannot change the feature (`ethtool -k` prints `[fixed]`).
    #[error("{name} of {iface} is fixed")]
    Fixed {
        /// Interface name.
        iface: String,
        /// The name asked for.
        name: String,
    },
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

/// `struct ethtool_sset_info` with room for the one set asked for.
#[repr(C)]
struct EthtoolSsetInfo {
    cmd: u32,
    reserved: u32,
    sset_mask: u64,
    data: [u32; 1],
}

/// `ifr_name` for `iface`: at most 15 bytes, no NUL, NUL-terminated.
fn ifr_name(iface: &str) -> Result<[c_char; libc::IFNAMSIZ], EthtoolError> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(EthtoolError::BadName(iface.to_owned()));
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

fn control_socket() -> Result<OwnedFd, EthtoolError> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(EthtoolError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a freshly created, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one `SIOCETHTOOL` command on `iface` with the `len` bytes at `data` as the command buffer.
///
/// # Safety
/// `data` points to `len` writable bytes laid out as the command (`*data` is its `cmd`) expects, for the
/// whole call.
unsafe fn ioctl_raw(iface: &str, op: &'static str, data: *mut c_char) -> Result<(), EthtoolError> {
    let sock = control_socket()?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_name = ifr_name(iface)?;
    ifr.ifr_ifru.ifru_data = data;
    // SAFETY: SIOCETHTOOL reads `ifr` and the command buffer it points to, valid and sized for the command
    // by the caller's contract, for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if rc < 0 {
        return Err(EthtoolError::Ioctl {
            op,
            iface: iface.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// [`ioctl_raw`] with a `repr(C)` command struct `T`.
fn ioctl<T>(iface: &str, op: &'static str, data: &mut T) -> Result<(), EthtoolError> {
    // SAFETY: `data` is a live, exclusively borrowed `T`, the repr(C) struct of the command.
    unsafe { ioctl_raw(iface, op, (data as *mut T).cast::<c_char>()) }
}

/// The driver of `iface` (`veth`, `virtio_net`, …), as `ethtool -i` reports it.
pub fn driver(iface: &str) -> Result<String, EthtoolError> {
    // SAFETY: the struct is plain old data; all-zero is a valid value.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ioctl(iface, "ETHTOOL_GDRVINFO", &mut info)?;
    Ok(c_field(&info.driver))
}

/// Whether transmit checksum offload is on for `iface`.
pub fn tx_checksum(iface: &str) -> Result<bool, EthtoolError> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GTXCSUM,
        data: 0,
    };
    ioctl(iface, "ETHTOOL_GTXCSUM", &mut v)?;
    Ok(v.data != 0)
}

/// Turns transmit checksum offload of `iface` on or off.
pub fn set_tx_checksum(iface: &str, on: bool) -> Result<(), EthtoolError> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    ioctl(iface, "ETHTOOL_STXCSUM", &mut v)
}

/// Whether generic receive offload is on for `iface` (`ethtool -k IFACE | grep generic-receive`).
pub fn gro(iface: &str) -> Result<bool, EthtoolError> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GGRO,
        data: 0,
    };
    ioctl(iface, "ETHTOOL_GGRO", &mut v)?;
    Ok(v.data != 0)
}

/// Turns generic receive offload of `iface` on or off (`ethtool -K IFACE gro on|off`; on a veth
/// GRO gives the device NAPI, so it takes XDP redirects without a program of its own).
pub fn set_gro(iface: &str, on: bool) -> Result<(), EthtoolError> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: u32::from(on),
    };
    ioctl(iface, "ETHTOOL_SGRO", &mut v)
}

/// One netdev feature of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    /// The kernel's name (`rx-gro-hw`, `tx-checksum-ip-generic`, …).
    pub name: String,
    /// Active now.
    pub active: bool,
    /// The driver cannot change it (`ethtool -k` prints `[fixed]`).
    pub fixed: bool,
}

/// The kernel's names of the netdev features of `iface`, in bit order (an empty name: an unused bit).
fn feature_names(iface: &str) -> Result<Vec<String>, EthtoolError> {
    let mut info = EthtoolSsetInfo {
        cmd: ETHTOOL_GSSET_INFO,
        reserved: 0,
        sset_mask: 1 << ETH_SS_FEATURES,
        data: [0],
    };
    ioctl(iface, "ETHTOOL_GSSET_INFO", &mut info)?;
    let count = if info.sset_mask & (1 << ETH_SS_FEATURES) != 0 {
        info.data[0] as usize
    } else {
        0
    };
    // struct ethtool_gstrings: cmd, string_set, len, then len * ETH_GSTRING_LEN bytes.
    let mut strings = vec![0u32; 3 + count * GSTRING_LEN / 4];
    strings[0] = ETHTOOL_GSTRINGS;
    strings[1] = ETH_SS_FEATURES;
    strings[2] = count as u32;
    // SAFETY: the buffer is the ethtool_gstrings of `count` strings its header declares.
    unsafe { ioctl_raw(iface, "ETHTOOL_GSTRINGS", strings.as_mut_ptr().cast())? };
    Ok(strings[3..]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect::<Vec<u8>>()
        .chunks(GSTRING_LEN)
        .map(|s| {
            let end = s.iter().position(|b| *b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .collect())
}

/// The `{available, requested, active, never_changed}` words of feature bit `i` in the answer of
/// `ETHTOOL_GFEATURES` (after its two header words), and the bit's mask in them.
fn block(feats: &[u32], i: usize) -> (&[u32], u32) {
    let at = 2 + 4 * (i / 32);
    (&feats[at..at + 4], 1u32 << (i % 32))
}

/// The `ETHTOOL_GFEATURES` answer for `count` features: two header words, then 32 features a block.
fn feature_words(iface: &str, count: usize) -> Result<Vec<u32>, EthtoolError> {
    // struct ethtool_gfeatures: cmd, size, then `size` blocks of {available, requested, active,
    // never_changed}.
    let blocks = count.div_ceil(32);
    let mut feats = vec![0u32; 2 + 4 * blocks];
    feats[0] = ETHTOOL_GFEATURES;
    feats[1] = blocks as u32;
    // SAFETY: the buffer is the ethtool_gfeatures of `blocks` blocks its header declares.
    unsafe { ioctl_raw(iface, "ETHTOOL_GFEATURES", feats.as_mut_ptr().cast())? };
    Ok(feats)
}

/// The netdev features of `iface`, in the kernel's order, with their state.
pub fn netdev_features(iface: &str) -> Result<Vec<Feature>, EthtoolError> {
    let names = feature_names(iface)?;
    let feats = feature_words(iface, names.len())?;
    Ok(names
        .into_iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, name)| {
            let (block, bit) = block(&feats, i);
            Feature {
                name,
                active: block[2] & bit != 0,
                fixed: block[0] & bit == 0 || block[3] & bit != 0,
            }
        })
        .collect())
}

/// Turns features of `iface` on or off, as `ethtool -K IF NAME on|off …` does: each name is a kernel
/// feature (`rx-gro`, `tx-checksum-ip-generic`, …) or one of ethtool's legacy names
/// (`generic-receive-offload`, `tx-checksumming`, …), which changes every feature it covers that the
/// driver can change. Needs `CAP_NET_ADMIN`. The kernel may keep a feature off that another one it
/// needs is off for (no TSO without checksum offload): read [`features`] for what is active.
pub fn set_features(iface: &str, changes: &[(&str, bool)]) -> Result<(), EthtoolError> {
    let names = feature_names(iface)?;
    let feats = feature_words(iface, names.len())?;
    let blocks = names.len().div_ceil(32);
    // struct ethtool_sfeatures: cmd, size, then `size` blocks of {valid, requested}.
    let mut set = vec![0u32; 2 + 2 * blocks];
    set[0] = ETHTOOL_SFEATURES;
    set[1] = blocks as u32;
    for &(name, on) in changes {
        let legacy = LEGACY.iter().find(|(l, _)| *l == name);
        let patterns: &[&str] = legacy.map_or(std::slice::from_ref(&name), |(_, p)| p);
        let covered: Vec<usize> = (0..names.len())
            .filter(|&i| !names[i].is_empty() && patterns.iter().any(|p| covers(p, &names[i])))
            .collect();
        let problem = |unknown: bool| {
            let (iface, name) = (iface.to_owned(), name.to_owned());
            if unknown {
                EthtoolError::UnknownFeature { iface, name }
            } else {
                EthtoolError::Fixed { iface, name }
            }
        };
        if covered.is_empty() {
            return Err(problem(true));
        }
        let changeable: Vec<usize> = covered
            .into_iter()
            .filter(|&i| {
                let (block, bit) = block(&feats, i);
                block[0] & bit != 0 && block[3] & bit == 0
            })
            .collect();
        if changeable.is_empty() {
            return Err(problem(false));
        }
        for i in changeable {
            let (at, bit) = (2 + 2 * (i / 32), 1u32 << (i % 32));
            set[at] |= bit;
            if on {
                set[at + 1] |= bit;
            } else {
                set[at + 1] &= !bit;
            }
        }
    }
    // SAFETY: the buffer is the ethtool_sfeatures of `blocks` blocks its header declares.
    unsafe { ioctl_raw(iface, "ETHTOOL_SFEATURES", set.as_mut_ptr().cast()) }
}

/// ethtool's legacy names (`off_flag_def` in ethtool's source) and the kernel features each covers, by
/// exact name or by a pattern with one `*` (any run of characters).
const LEGACY: &[(&str, &[&str])] = &[
    ("rx-checksumming", &["rx-checksum"]),
    ("tx-checksumming", &["tx-checksum-*"]),
    ("scatter-gather", &["tx-scatter-gather*"]),
    ("tcp-segmentation-offload", &["tx-tcp*-segmentation"]),
    ("generic-segmentation-offload", &["tx-generic-segmentation"]),
    ("generic-receive-offload", &["rx-gro"]),
    ("large-receive-offload", &["rx-lro"]),
    ("rx-vlan-offload", &["rx-vlan-hw-parse"]),
    ("tx-vlan-offload", &["tx-vlan-hw-insert"]),
    ("ntuple-filters", &["rx-ntuple-filter"]),
    ("receive-hashing", &["rx-hashing"]),
];

fn covers(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
        None => name == pattern,
    }
}

/// The offload features of `iface` as `ethtool -k IF` names them: its legacy names
/// (`large-receive-offload`, `tx-checksumming`, …; on when any feature it covers is active) followed by
/// every kernel feature by its own name (`rx-gro-hw`, …).
pub fn features(iface: &str) -> Result<Vec<(String, bool)>, EthtoolError> {
    Ok(with_legacy_names(&netdev_features(iface)?))
}

/// [`features`] from a list of kernel features.
pub fn with_legacy_names(kernel: &[Feature]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for (legacy, patterns) in LEGACY {
        let covered: Vec<&Feature> = kernel
            .iter()
            .filter(|f| patterns.iter().any(|p| covers(p, &f.name)))
            .collect();
        if !covered.is_empty() {
            out.push((legacy.to_string(), covered.iter().any(|f| f.active)));
        }
    }
    out.extend(kernel.iter().map(|f| (f.name.clone(), f.active)));
    out
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
        assert_eq!(std::mem::offset_of!(EthtoolSsetInfo, data), 16);
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
                matches!(ifr_name(bad), Err(EthtoolError::BadName(_))),
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
    fn legacy_names_are_on_when_any_covered_feature_is() {
        let f = |name: &str, active| Feature {
            name: name.into(),
            active,
            fixed: false,
        };
        let got = with_legacy_names(&[
            f("tx-checksum-ipv4", false),
            f("tx-checksum-ip-generic", true),
            f("rx-lro", false),
            f("rx-gro-hw", true),
            f("tx-tcp-accecn-segmentation", true),
        ]);
        assert_eq!(
            got,
            [
                ("tx-checksumming".to_string(), true),
                ("tcp-segmentation-offload".to_string(), true),
                ("large-receive-offload".to_string(), false),
                ("tx-checksum-ipv4".to_string(), false),
                ("tx-checksum-ip-generic".to_string(), true),
                ("rx-lro".to_string(), false),
                ("rx-gro-hw".to_string(), true),
                ("tx-tcp-accecn-segmentation".to_string(), true),
            ]
        );
    }

    /// `ethtool -k` output as (feature, on) pairs.
    fn parse_ethtool_k(text: &str) -> Vec<(String, bool)> {
        text.lines()
            .filter_map(|l| {
                let (name, rest) = l.trim().split_once(':')?;
                match rest.split_whitespace().next()? {
                    "on" => Some((name.to_string(), true)),
                    "off" => Some((name.to_string(), false)),
                    _ => None,
                }
            })
            .collect()
    }

    /// `ethtool -k IF` as (feature, on) pairs.
    fn ethtool_k(iface: &str) -> Vec<(String, bool)> {
        let out = std::process::Command::new("ethtool")
            .args(["-k", iface])
            .output()
            .expect("ethtool -k");
        assert!(out.status.success());
        parse_ethtool_k(&String::from_utf8_lossy(&out.stdout))
    }

    /// Every feature the `ethtool` binary prints for a veth (in a namespace of this test), with the same
    /// state, before and after changing two of them with `ethtool -K`; the ioctl's own tx-checksum
    /// reading agrees; and what [`set_features`] changes, the binary reads back.
    #[test]
    fn features_agree_with_the_ethtool_binary_on_a_veth() {
        const TEST: &str = "features_agree_with_the_ethtool_binary_on_a_veth";
        crate::testing::with_namespace(TEST, &["ethtool"], "eth", |ns| {
            crate::ns::enter(ns).expect("enter");
            crate::nl::Netlink::open()
                .and_then(|mut nl| {
                    nl.add_veth(
                        crate::link::VethEnd::new("nk0"),
                        crate::link::VethEnd::new("nk1"),
                    )
                })
                .expect("veth");
            let compare = |round: &str| {
                let want = ethtool_k("nk0");
                let got = features("nk0").expect("features");
                assert!(want.len() > 20, "{want:?}");
                for w in &want {
                    assert!(
                        got.contains(w),
                        "{round}: ethtool says {w:?}; we read {got:?}"
                    );
                }
                want
            };
            let before = compare("defaults");
            assert!(before.contains(&("tx-checksumming".into(), true)));
            let st = std::process::Command::new("ethtool")
                .args(["-K", "nk0", "tx", "off", "gro", "off"])
                .output()
                .expect("ethtool -K");
            assert!(st.status.success());
            let after = compare("after ethtool -K nk0 tx off gro off");
            assert!(after.contains(&("tx-checksumming".into(), false)));
            assert!(after.contains(&("generic-receive-offload".into(), false)));
            assert_ne!(before, after, "the control: the change is visible");
            assert!(!tx_checksum("nk0").expect("GTXCSUM"));
            set_tx_checksum("nk0", true).expect("STXCSUM");
            assert!(tx_checksum("nk0").expect("GTXCSUM"));
            assert_eq!(driver("nk0").expect("driver"), "veth");
            assert!(matches!(
                features("nk-none0"),
                Err(EthtoolError::Ioctl { .. })
            ));

            // set_features, by legacy and by kernel name, read back by the binary.
            set_features("nk0", &[("generic-receive-offload", true)]).expect("gro on");
            let k = ethtool_k("nk0");
            assert!(
                k.contains(&("generic-receive-offload".into(), true)),
                "{k:?}"
            );
            set_features("nk0", &[("tx-checksumming", false), ("rx-gro", false)])
                .expect("tx and gro off");
            let k = ethtool_k("nk0");
            assert!(k.contains(&("tx-checksumming".into(), false)), "{k:?}");
            assert!(
                k.contains(&("tx-checksum-ip-generic".into(), false)),
                "{k:?}"
            );
            assert!(
                k.contains(&("generic-receive-offload".into(), false)),
                "{k:?}"
            );
            assert!(!tx_checksum("nk0").expect("GTXCSUM"));
            set_features("nk0", &[("tx-checksumming", true)]).expect("tx on");
            assert!(ethtool_k("nk0").contains(&("tx-checksumming".into(), true)));
            assert!(matches!(
                set_features("nk0", &[("no-such-feature", true)]),
                Err(EthtoolError::UnknownFeature { .. })
            ));
            // veth cannot change loopback (`[fixed]`)
            assert!(matches!(
                set_features("nk0", &[("loopback", true)]),
                Err(EthtoolError::Fixed { .. })
            ));
        });
    }
}
