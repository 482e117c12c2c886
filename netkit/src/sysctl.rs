//! Kernel parameters written through `/proc/sys` in the calling thread's network namespace, without the
//! `sysctl` binary: `/proc/sys/net/*` shows the namespace of the thread that opens it, so a thread moved
//! with [`crate::ns::enter`] (or [`set_in`], which does that on a helper thread) sets the namespace's own
//! `net.ipv4.ip_forward`, `net.ipv4.conf.<dev>.rp_filter` and so on.

use std::io;
use std::path::PathBuf;

use crate::ns::{NsError, run_in};

/// Why a kernel parameter could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The key cannot name a parameter (empty, a `..` component, a NUL).
    #[error("{0:?} is not a sysctl key")]
    BadKey(String),
    /// Writing the parameter's file failed (no such parameter, not permitted, value refused).
    #[error("sysctl {key}={value}: {source}")]
    Write {
        /// The key as given.
        key: String,
        /// The value.
        value: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// Reading the parameter's file failed.
    #[error("sysctl {key}: {source}")]
    Read {
        /// The key as given.
        key: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The namespace could not be entered.
    #[error(transparent)]
    Ns(#[from] NsError),
}

/// The file of `key` under `/proc/sys`, as sysctl(8) reads keys: with a `/` in it the key is a path
/// (so an interface name may contain dots: `net/ipv4/conf/eth0.5/rp_filter`), otherwise dots separate
/// its components (`net.ipv4.ip_forward`).
pub fn path(key: &str) -> Result<PathBuf, SysctlError> {
    let rel = if key.contains('/') {
        key.trim_start_matches('/').to_owned()
    } else {
        key.replace('.', "/")
    };
    let bad = rel.is_empty()
        || rel.contains('\0')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(SysctlError::BadKey(key.to_owned()));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// Writes `value` to parameter `key` in the calling thread's network namespace (`sysctl -w key=value`).
pub fn set(key: &str, value: &str) -> Result<(), SysctlError> {
    let write = |source| SysctlError::Write {
        key: key.to_owned(),
        value: value.to_owned(),
        source,
    };
    std::fs::write(path(key)?, value).map_err(write)
}

/// Reads parameter `key` in the calling thread's network namespace, without the trailing newline.
pub fn get(key: &str) -> Result<String, SysctlError> {
    std::fs::read_to_string(path(key)?)
        .map(|s| s.trim_end_matches('\n').to_owned())
        .map_err(|source| SysctlError::Read {
            key: key.to_owned(),
            source,
        })
}

/// Sets every `(key, value)` in order inside network namespace `ns` (`ip netns exec NS sysctl -w …`),
/// stopping at the first that fails.
pub fn set_in<K: AsRef<str> + Sync, V: AsRef<str> + Sync>(
    ns: &str,
    settings: &[(K, V)],
) -> Result<(), SysctlError> {
    run_in(ns, || {
        settings
            .iter()
            .try_for_each(|(k, v)| set(k.as_ref(), v.as_ref()))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_paths_as_sysctl_reads_them() {
        let p = |k| path(k).expect(k);
        assert_eq!(
            p("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            p("net/ipv4/conf/eth0.5/rp_filter"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.5/rp_filter")
        );
        for bad in ["", ".", "net..ipv4", "net/../../etc/passwd", "net.\0", "/"] {
            assert!(matches!(path(bad), Err(SysctlError::BadKey(_))), "{bad:?}");
        }
    }

    /// Parameters set in a namespace of this test are visible there and nowhere else; the default namespace
    /// keeps its value (the control).
    #[test]
    fn set_in_changes_only_that_namespace() {
        const TEST: &str = "set_in_changes_only_that_namespace";
        crate::testing::with_namespace(TEST, &[], "sysctl", |ns| {
            let home_fwd = get("net.ipv4.ip_forward").expect("read at home");
            let home_rp = get("net.ipv4.conf.all.rp_filter").expect("read at home");
            let inside = |k: &str| run_in(ns, || get(k)).expect("run_in").expect(k);
            assert_eq!(inside("net.ipv4.ip_forward"), "0", "a fresh namespace");
            set_in(
                ns,
                &[
                    ("net.ipv4.ip_forward", "1"),
                    ("net/ipv4/conf/lo/rp_filter", "2"),
                    ("net.ipv6.conf.all.accept_redirects", "0"),
                ],
            )
            .expect("set_in");
            assert_eq!(inside("net.ipv4.ip_forward"), "1");
            assert_eq!(inside("net.ipv4.conf.lo.rp_filter"), "2");
            assert_eq!(inside("net.ipv6.conf.all.accept_redirects"), "0");
            assert_eq!(get("net.ipv4.ip_forward").expect("home"), home_fwd);
            assert_eq!(get("net.ipv4.conf.all.rp_filter").expect("home"), home_rp);
            let e = set_in(ns, &[("net.ipv4.conf.nk-none0.rp_filter", "0")])
                .expect_err("no such interface");
            assert!(
                matches!(&e, SysctlError::Write { source, .. } if source.kind() == io::ErrorKind::NotFound),
                "{e}"
            );
        });
    }
}
