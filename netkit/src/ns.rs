//! Network namespaces by name (`/run/netns/<name>`, as `ip netns add` creates them): entering one with
//! `setns(2)`, which moves only the calling thread, a guard that moves it back, and running a closure on a
//! thread inside one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Why entering a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("setns into {what}: {source}")]
    Setns {
        what: String,
        source: std::io::Error,
    },
    #[error("the thread inside network namespace {0} panicked")]
    Panicked(String),
}

/// The file of the named namespace `name`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

fn open(path: PathBuf) -> Result<File, NsError> {
    File::open(&path).map_err(|source| NsError::Open { path, source })
}

fn setns(f: &File, what: &str) -> Result<(), NsError> {
    // SAFETY: `f` is an open namespace file for the duration of the call; CLONE_NEWNET restricts setns to a
    // network namespace, which changes only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(NsError::Setns {
            what: what.to_owned(),
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Moves the **calling thread** (and the threads it creates afterwards) into namespace `name`, for good.
pub fn enter(name: &str) -> Result<(), NsError> {
    setns(&open(path(name))?, name)
}

/// The calling thread inside namespace `name` until dropped, when it goes back to the namespace it was in.
#[must_use = "the thread returns to its namespace when the guard is dropped"]
pub struct NsGuard {
    home: File,
}

impl NsGuard {
    /// Enters `name`, remembering the current namespace (`/proc/thread-self/ns/net`).
    pub fn enter(name: &str) -> Result<Self, NsError> {
        let home = open(PathBuf::from("/proc/thread-self/ns/net"))?;
        enter(name)?;
        Ok(Self { home })
    }
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.home, "the thread's previous namespace") {
            // A thread left in the wrong namespace would make every later call on it wrong.
            panic!("{e}");
        }
    }
}

/// Runs `f` on a new thread inside namespace `name` and returns its result.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, NsError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(name)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(NsError::Panicked(name.to_owned())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_an_error_naming_it() {
        let e = enter("netkit-no-such-ns").expect_err("missing");
        assert!(
            e.to_string().contains("/run/netns/netkit-no-such-ns"),
            "{e}"
        );
        assert!(run_in("netkit-no-such-ns", || ()).is_err());
    }

    fn inode(p: &str) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("ns file"))
    }

    #[test]
    fn the_guard_enters_and_returns() {
        crate::testing::with_namespace("the_guard_enters_and_returns", &[], "guard", |name| {
            let home = inode("/proc/thread-self/ns/net");
            let target = inode(&format!("/run/netns/{name}"));
            assert_ne!(home, target);
            {
                let _g = NsGuard::enter(name).expect("enter");
                assert_eq!(inode("/proc/thread-self/ns/net"), target);
            }
            assert_eq!(inode("/proc/thread-self/ns/net"), home);
            assert_eq!(
                run_in(name, || inode("/proc/thread-self/ns/net")).expect("run_in"),
                target
            );
        });
    }
}
