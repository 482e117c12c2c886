//! Named network namespaces created and deleted the way `ip netns add|del` does it (iproute2,
//! `ip/ipnetns.c`: `netns_add` / `netns_delete`): `/run/netns` made a shared mount point (bind-mounted on
//! itself first if it is not one), an empty file `/run/netns/<name>`, a fresh namespace from
//! `unshare(CLONE_NEWNET)` and a bind mount of it onto that file, which keeps it alive with no process
//! in it. iproute2 unshares the whole (single-threaded) process; here a short-lived helper thread does,
//! so the caller's threads stay where they are. Deleting lazily unmounts the file and removes it; the
//! namespace goes when its last user does. Also: listing, and starting a program inside one.

use std::ffi::CString;
use std::io;
use std::path::Path;
use std::process::{Child, Command, Output};

use crate::ns::{NsError, path};

const RUN_DIR: &str = "/run/netns";

/// Why a namespace could not be created, deleted or used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{what} network namespace {name}: {source}")]
    Io {
        what: &'static str,
        name: String,
        source: io::Error,
    },
    #[error("network namespace name {0:?} is empty or not a plain file name")]
    BadName(String),
    #[error(transparent)]
    Ns(#[from] NsError),
    #[error("running {program} in network namespace {ns}: {source}")]
    Spawn {
        program: String,
        ns: String,
        source: io::Error,
    },
    #[error("the helper thread creating network namespace {0} panicked")]
    Panicked(String),
}

fn cstr(p: &str) -> CString {
    // the paths built here never contain NUL: names are checked by `check`
    CString::new(p).unwrap_or_default()
}

fn check(name: &str) -> Result<(), NetnsError> {
    if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(NetnsError::BadName(name.to_owned()));
    }
    Ok(())
}

fn mount(src: &str, dst: &str, flags: libc::c_ulong) -> io::Result<()> {
    let (s, d, none) = (cstr(src), cstr(dst), cstr("none"));
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call; no data.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            none.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `/run/netns` exists and is a shared mount point (so mounts under it propagate to other mount
/// namespaces), as iproute2 arranges it.
fn prepare_run_dir() -> io::Result<()> {
    match std::fs::create_dir_all(RUN_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    match mount("", RUN_DIR, libc::MS_SHARED | libc::MS_REC) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // not a mount point yet: make it one, then shared
            mount(RUN_DIR, RUN_DIR, libc::MS_BIND | libc::MS_REC)?;
            mount("", RUN_DIR, libc::MS_SHARED | libc::MS_REC)
        }
        other => other,
    }
}

/// `ip netns add NAME`: fails if it exists.
pub fn add(name: &str) -> Result<(), NetnsError> {
    check(name)?;
    let io = |what, source| NetnsError::Io {
        what,
        name: name.to_owned(),
        source,
    };
    prepare_run_dir().map_err(|e| io("preparing /run/netns for", e))?;
    let file = path(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .map_err(|e| io("creating the file of", e))?;
    let target = file.to_string_lossy().into_owned();
    let made = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(CLONE_NEWNET) affects only this helper thread, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io("unsharing", io::Error::last_os_error()));
            }
            mount("/proc/thread-self/ns/net", &target, libc::MS_BIND)
                .map_err(|e| io("bind-mounting", e))
        })
        .join()
        .unwrap_or_else(|_| Err(NetnsError::Panicked(name.to_owned())))
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&file);
    }
    made
}

/// `ip netns del NAME`.
pub fn del(name: &str) -> Result<(), NetnsError> {
    check(name)?;
    let file = path(name);
    let p = cstr(&file.to_string_lossy());
    // SAFETY: `p` is a valid path string; MNT_DETACH unmounts lazily.
    let rc = unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    let umount = (rc != 0).then(io::Error::last_os_error);
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(()),
        Err(source) => Err(NetnsError::Io {
            what: "deleting",
            name: name.to_owned(),
            // the unmount error says more when there was one (ENOENT: no such namespace)
            source: umount.unwrap_or(source),
        }),
    }
}

/// True when `/run/netns/NAME` exists.
pub fn exists(name: &str) -> bool {
    check(name).is_ok() && path(name).exists()
}

/// `ip netns list`: the names under `/run/netns`, sorted.
pub fn list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(Path::new(RUN_DIR))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Prepares `cmd` to run inside namespace `ns` exactly as `ip netns exec NS` sets its child up
/// (iproute2 `lib/namespace.c`, `netns_switch`): `setns` into the namespace, a private mount namespace
/// (`/` made a recursive slave) and a fresh sysfs on `/sys`, so `/sys/class/net` lists the namespace's
/// links (read-only if the current `/sys` is). Not done: the bind mounts of `/etc/netns/<ns>/*`.
/// The namespace file is opened now, so a missing namespace is an error here, not in the child.
fn prepare(ns: &str, cmd: &mut Command) -> Result<(), NetnsError> {
    check(ns)?;
    let p = path(ns);
    let file = std::fs::File::open(&p).map_err(|source| NsError::Open { path: p, source })?;
    let sys = cstr("/sys");
    // SAFETY: statvfs writes into the zeroed struct it is given.
    let ro = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        libc::statvfs(sys.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0
    };
    let (root, none, sysfs, source) = (cstr("/"), cstr("none"), cstr("sysfs"), cstr(ns));
    let flags = if ro { libc::MS_RDONLY } else { 0 };
    let step = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: the closure runs in the forked child before exec and makes only system calls on strings
    // and a file descriptor prepared (and kept alive by the closure) before the fork; no allocation.
    unsafe {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            step(libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET))?;
            step(libc::unshare(libc::CLONE_NEWNS))?;
            step(libc::mount(
                none.as_ptr(),
                root.as_ptr(),
                none.as_ptr(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ))?;
            // sysfs shows the links of the namespace that mounts it
            libc::umount2(sys.as_ptr(), libc::MNT_DETACH);
            step(libc::mount(
                source.as_ptr(),
                sys.as_ptr(),
                sysfs.as_ptr(),
                flags,
                std::ptr::null(),
            ))
        });
    }
    Ok(())
}

/// Starts `cmd` inside namespace `ns`, as `ip netns exec` would (see [`prepare`]; do not reuse `cmd`
/// for another namespace).
pub fn spawn(ns: &str, cmd: &mut Command) -> Result<Child, NetnsError> {
    prepare(ns, cmd)?;
    cmd.spawn().map_err(|source| NetnsError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        ns: ns.to_owned(),
        source,
    })
}

/// Runs `cmd` inside namespace `ns` to completion and returns its output (see [`spawn`]).
pub fn output(ns: &str, cmd: &mut Command) -> Result<Output, NetnsError> {
    prepare(ns, cmd)?;
    cmd.output().map_err(|source| NetnsError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        ns: ns.to_owned(),
        source,
    })
}
