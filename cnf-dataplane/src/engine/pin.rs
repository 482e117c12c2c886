//! The bpffs pin directory of a kept chain: bpffs checks and mounting, the state record map, removal.
//!
//! bpffs holds only BPF objects, so the engine's bookkeeping (which instance runs where, pool regions,
//! prefixes written) is kept in a map of its own, `vnf_record`: JSON in 4 KiB chunks keyed by index.
//! It lives and dies with the other pins of the chain.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};

use super::error::{EngineError, Result};

/// `BPF_FS_MAGIC` (uapi/linux/magic.h).
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;
/// Where bpffs is normally mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Name of the record map in the pin directory.
pub const RECORD: &str = "vnf_record";
/// Bytes per record chunk.
const CHUNK: usize = 4096;
/// Chunks at most (16 MiB of JSON; a 10,000-rule firewall needs well under 1 MiB).
const MAX_CHUNKS: u32 = 4096;

/// The error for pin directory `dir`.
pub(crate) fn pin_err(dir: &Path, why: impl Into<String>) -> EngineError {
    EngineError::Pin {
        dir: dir.display().to_string(),
        why: why.into(),
    }
}

/// True when `path` is on a bpf filesystem.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs gets a valid NUL-terminated path and a pointer to a zeroed statfs it may fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above; both pointers are valid for the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type == BPF_FS_MAGIC
}

/// The nearest existing ancestor of `path` (itself when it exists).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

/// Makes sure `dir` can hold pins: its nearest existing ancestor must be on bpffs. Under
/// [`BPFFS_ROOT`], bpffs is mounted there when missing (`ip netns exec` remounts /sys without it);
/// elsewhere a missing bpffs is an error. Creates `dir`. Returns a warning when it mounted bpffs:
/// pins then live only as long as this mount namespace.
pub fn prepare_dir(dir: &Path) -> Result<Option<String>> {
    let mut note = None;
    let base = existing_ancestor(dir).ok_or_else(|| pin_err(dir, "no existing ancestor"))?;
    if !is_bpffs(base) {
        let root = Path::new(BPFFS_ROOT);
        if !dir.starts_with(root) || !root.is_dir() {
            return Err(pin_err(
                dir,
                format!(
                    "{} is not on a bpf filesystem (mount one: mount -t bpf bpf DIR)",
                    base.display()
                ),
            ));
        }
        mount_bpffs(root)
            .map_err(|e| pin_err(dir, format!("mounting bpffs at {BPFFS_ROOT}: {e}")))?;
        note = Some(format!(
            "mounted bpffs at {BPFFS_ROOT}: it was missing in this mount namespace, so the pins last only \
             as long as the namespace does (mount bpffs where it outlives the daemon to keep chains across restarts)"
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| pin_err(dir, format!("creating the directory: {e}")))?;
    Ok(note)
}

fn mount_bpffs(at: &Path) -> std::io::Result<()> {
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let fs = c"bpf";
    // SAFETY: mount(2) with valid NUL-terminated strings and no data; it only reads them.
    let rc = unsafe {
        libc::mount(
            fs.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Path of pinned object `name` in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Pin name of the link on interface `iface`.
pub fn link_name(iface: &str) -> String {
    format!("link_{iface}")
}

/// Removes every pin in `dir` and the directory itself (missing is fine).
pub fn remove_all(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(pin_err(dir, format!("reading the directory: {e}"))),
    };
    for entry in entries.flatten() {
        let p = entry.path();
        std::fs::remove_file(&p)
            .map_err(|e| pin_err(dir, format!("unpinning {}: {e}", p.display())))?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(pin_err(dir, format!("removing the directory: {e}"))),
    }
}

/// Removes the pins in `dir` except links (used before pinning a fresh chain over stale pins).
pub fn remove_all_but_links(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("link_") {
            continue;
        }
        let p = entry.path();
        std::fs::remove_file(&p)
            .map_err(|e| pin_err(dir, format!("unpinning {}: {e}", p.display())))?;
    }
    Ok(())
}

/// The chunked record map of a pin directory.
pub struct RecordMap {
    map: BpfHashMap<MapData, u32, [u8; CHUNK]>,
    chunks: u32,
}

/// `union bpf_attr` for `BPF_MAP_CREATE`, as far as this module uses it.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

impl RecordMap {
    /// Creates the record map and pins it in `dir` (which must not hold one).
    pub fn create(dir: &Path) -> Result<Self> {
        const BPF_MAP_CREATE: libc::c_long = 0;
        const BPF_MAP_TYPE_HASH: u32 = 1;
        const BPF_F_NO_PREALLOC: u32 = 1;
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_HASH,
            key_size: 4,
            value_size: CHUNK as u32,
            max_entries: MAX_CHUNKS,
            map_flags: BPF_F_NO_PREALLOC,
            ..Default::default()
        };
        attr.map_name[..RECORD.len()].copy_from_slice(RECORD.as_bytes());
        // SAFETY: bpf(BPF_MAP_CREATE) reads `attr` (a valid, initialised struct) for its size only.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_CREATE,
                &attr as *const MapCreateAttr,
                size_of::<MapCreateAttr>() as u32,
            )
        };
        if fd < 0 {
            return Err(pin_err(
                dir,
                format!("creating {RECORD}: {}", std::io::Error::last_os_error()),
            ));
        }
        // SAFETY: a successful BPF_MAP_CREATE returns a new file descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let data = MapData::from_fd(fd).map_err(EngineError::map(RECORD))?;
        data.pin(path(dir, RECORD))
            .map_err(|e| pin_err(dir, format!("pinning {RECORD}: {e}")))?;
        Self::wrap(data)
    }

    /// Opens the record map pinned in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let data = MapData::from_pin(path(dir, RECORD))
            .map_err(|e| pin_err(dir, format!("no state record ({RECORD}): {e}")))?;
        let mut m = Self::wrap(data)?;
        m.chunks = m.map.keys().filter_map(|k| k.ok()).count() as u32;
        Ok(m)
    }

    fn wrap(data: MapData) -> Result<Self> {
        let map = Map::from_map_data(data).map_err(EngineError::map(RECORD))?;
        Ok(Self {
            map: BpfHashMap::try_from(map).map_err(EngineError::map(RECORD))?,
            chunks: 0,
        })
    }

    /// Replaces the record with `text`.
    pub fn write(&mut self, text: &str) -> Result<()> {
        let bytes = text.as_bytes();
        let n = bytes.len().div_ceil(CHUNK) as u32;
        if n > MAX_CHUNKS {
            return Err(EngineError::Config(format!(
                "state record of {} bytes exceeds {} bytes",
                bytes.len(),
                CHUNK as u32 * MAX_CHUNKS
            )));
        }
        for (i, part) in bytes.chunks(CHUNK).enumerate() {
            let mut chunk = [0u8; CHUNK];
            chunk[..part.len()].copy_from_slice(part);
            self.map
                .insert(i as u32, chunk, 0)
                .map_err(EngineError::map(RECORD))?;
        }
        for i in n..self.chunks {
            match self.map.remove(&i) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(EngineError::map(RECORD)(e)),
            }
        }
        self.chunks = n;
        Ok(())
    }

    /// The record's text.
    pub fn read(&self) -> Result<String> {
        let mut bytes = Vec::with_capacity(self.chunks as usize * CHUNK);
        for i in 0..self.chunks {
            let chunk = self.map.get(&i, 0).map_err(EngineError::map(RECORD))?;
            bytes.extend_from_slice(&chunk);
        }
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        String::from_utf8(bytes).map_err(|e| EngineError::Config(format!("state record: {e}")))
    }
}

/// A build identity of the eBPF objects (FNV-1a over both attach points and the crate version):
/// pins of another build are never adopted.
pub fn build_id() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        super::objects::XDP_CHAIN,
        super::objects::TC_CHAIN,
        env!("CARGO_PKG_VERSION").as_bytes(),
    ] {
        for b in part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The owner lock of a pin directory: an exclusive `flock` on the directory itself (bpffs holds no
/// regular files), held as long as this value lives — for a daemon, its whole life. The kernel drops it
/// when the process dies, however it dies, so a crashed daemon never blocks its successor.
#[derive(Debug)]
pub struct DirLock {
    _fd: OwnedFd,
}

/// Why [`lock_dir`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "pin directory {dir} is in use by another cnf-dataplane{}: two daemons must not share a pin directory (give each its own --pin-dir)",
        .holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        /// The directory.
        dir: String,
        /// The holder's pid, when /proc/locks names it.
        holder: Option<u32>,
    },
    /// The directory could not be opened or locked.
    #[error("pin directory {dir}: {why}")]
    Other {
        /// The directory.
        dir: String,
        /// What went wrong.
        why: String,
    },
}

/// Takes the owner lock of pin directory `dir` (which must exist) without waiting.
pub fn lock_dir(dir: &Path) -> std::result::Result<DirLock, LockError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let other = |why: String| LockError::Other {
        dir: dir.display().to_string(),
        why,
    };
    let file = std::fs::File::open(dir).map_err(|e| other(format!("opening: {e}")))?;
    let fd: OwnedFd = file.into();
    // SAFETY: flock(2) on a descriptor this function owns; no memory is passed.
    let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(DirLock { _fd: fd });
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(other(format!("locking: {err}")));
    }
    let holder = std::fs::metadata(dir)
        .ok()
        .and_then(|m| lock_holder(&std::fs::read_to_string("/proc/locks").ok()?, m.ino()));
    Err(LockError::Held {
        dir: dir.display().to_string(),
        holder,
    })
}

/// The pid holding a FLOCK on inode `ino`, from the text of /proc/locks
/// (`1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF`; see proc_locks(5)).
fn lock_holder(proc_locks: &str, ino: u64) -> Option<u32> {
    proc_locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // blocked waiters are listed as "1: -> FLOCK ..."
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let file_ino: u64 = f.get(5)?.rsplit(':').next()?.parse().ok()?;
        (file_ino == ino).then(|| f.get(4)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_read_from_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 77 00:2a:99 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 00:2a:99 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 5151 00:2a:99 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 17 fd:01:123 0 EOF\n";
        assert_eq!(lock_holder(text, 99), Some(4242));
        assert_eq!(lock_holder(text, 123), Some(17));
        assert_eq!(lock_holder(text, 5), None);
        assert_eq!(lock_holder("garbage\n1: FLOCK\n", 99), None);
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_and_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("vnf-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let first = lock_dir(&dir).expect("first lock");
        // flock locks belong to the open file description: a second open in this process conflicts too
        match lock_dir(&dir) {
            Err(e @ LockError::Held { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("is in use by another cnf-dataplane"),
                    "{text}"
                );
                assert!(
                    text.contains(&format!("(pid {})", std::process::id())),
                    "{text}"
                );
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = lock_dir(&dir).expect("free again once dropped");
        drop(again);
        let _ = std::fs::remove_dir(&dir);
    }
}
