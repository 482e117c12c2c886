//! The bpffs pin directory of a kept chain: bpffs checks and mounting, the state record map, removal.
//!
//! bpffs holds only BPF objects, so the engine's bookkeeping (which instance runs where, pool regions,
//! prefixes written) is kept in a map of its own, `vnf_record`: JSON in 4 KiB chunks keyed by index.
//! It lives and dies with the other pins of the chain.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};

use super::abi::{self, NatDnatKey};
use super::attach::{AttachInfo, Link, mode_label};
use super::config::ChainConfig;
use super::error::{EngineError, Result};
use super::loader::{Engine, Hook};
use super::maps::{self, ChainMaps, PrefixKeys};
use super::nf;
use super::telemetry::ChainCounters;
use log::info;
use std::collections::{HashMap, HashSet};

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

// ---- keeping and re-adopting a chain ------------------------------------------------------------

/// The pin directory of a kept chain (see [`Engine::load_kept`]).
pub(crate) struct Pins {
    pub(crate) dir: PathBuf,
    /// The state record.
    pub(crate) record: RecordMap,
    /// The program array of a chain this engine replaces (pins of an unusable record): held until
    /// the links run the new entry program, so the old chain keeps its tail calls until then.
    pub(crate) held: Option<MapData>,
    /// Whether dropping the engine without [`Engine::keep`] detaches and removes the pins (a failed
    /// start leaves nothing behind; an adoption that failed leaves the old chain running).
    pub(crate) armed: bool,
}

/// The engine's bookkeeping as written into a kept chain's state record.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct EngineState {
    active: u32,
    generations: [Vec<u32>; 2],
    live: Vec<(u32, u32)>,
    names: Vec<(u32, String, u32)>,
    state_of: Vec<(u32, u32)>,
    state_refs: Vec<(u32, u32)>,
    free_ids: Vec<u32>,
    fw_keys: Vec<(u32, PrefixKeys)>,
    fw_priorities: Vec<(u32, Vec<u32>)>,
    fw_regions: Vec<(u32, [(u32, u32); 3])>,
    cls_keys: [PrefixKeys; 2],
    nat_keys: Vec<(u32, PrefixKeys, Vec<NatDnatKey>)>,
    lb_regions: Vec<(u32, (u32, u32))>,
    /// Raw counters of each generation's slot when it was last activated.
    #[serde(default)]
    gen_base: [ChainCounters; 2],
}

/// One kept attachment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct LinkRecord {
    iface: String,
    mode: String,
}

/// The state record of a kept chain, read with [`Engine::read_record`] and handed to
/// [`Engine::adopt`].
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PinnedRecord {
    build: String,
    hook: String,
    links: Vec<LinkRecord>,
    engine: EngineState,
    /// What the owner (the daemon) stored with the chain ([`Engine::save_record`]).
    pub owner: String,
}

impl PinnedRecord {
    /// The hook the kept chain runs on.
    pub fn hook(&self) -> Hook {
        if self.hook == "tc" {
            Hook::Tc
        } else {
            Hook::Xdp
        }
    }

    /// The kept chain's active generation (0 or 1).
    pub fn active_generation(&self) -> u32 {
        self.engine.active
    }
}

fn hook_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Xdp => "xdp",
        Hook::Tc => "tc",
    }
}

impl Engine {
    /// Loads the attach point for `hook` as a kept chain: its maps are pinned in `dir` (a bpffs
    /// directory, see [`pin::prepare_dir`]) with a state record, and every attachment is pinned there
    /// when made, so the chain keeps running when the process ends, even by SIGKILL. Pins already in
    /// `dir` (a chain that could not be re-adopted) are replaced; a link kept there is taken over by
    /// [`Engine::attach`] with an atomic program replacement.
    pub fn load_kept(hook: Hook, dir: &Path) -> Result<Self> {
        // hold the old chain's program array while its pins go: its tail calls keep working until
        // the links run the new entry program
        std::fs::create_dir_all(dir)
            .map_err(|e| pin_err(dir, format!("creating the directory: {e}")))?;
        let held = MapData::from_pin(path(dir, ChainMaps::PROGS)).ok();
        remove_all_but_links(dir)?;
        let ebpf = super::loader::object_loader().load(Self::object(hook))?;
        let names = maps::all_names(hook);
        // every map must be shared with the next process (global data sections start with '.')
        if let Some((other, _)) = ebpf
            .maps()
            .find(|(n, _)| !n.starts_with('.') && !names.contains(n))
        {
            return Err(pin_err(
                dir,
                format!(
                    "map {other} is not in the engine's list of pinned maps (a map bundle or maps::PINNED_ONLY)"
                ),
            ));
        }
        for name in names {
            let map = ebpf
                .map(name)
                .ok_or_else(|| EngineError::Missing(format!("map {name}")))?;
            map.pin(path(dir, name))
                .map_err(|e| pin_err(dir, format!("pinning {name}: {e}")))?;
        }
        let record = RecordMap::create(dir)?;
        let mut e = Self::from_object(ebpf, hook)?;
        e.pins = Some(Pins {
            dir: dir.to_path_buf(),
            record,
            held,
            armed: true,
        });
        Ok(e)
    }

    /// Reads the state record of the chain kept in `dir`; an error says why it cannot be adopted
    /// (no record, unreadable, another build of the eBPF objects).
    pub fn read_record(dir: &Path) -> Result<PinnedRecord> {
        let text = RecordMap::open(dir)?.read()?;
        let rec: PinnedRecord = serde_json::from_str(&text)
            .map_err(|e| pin_err(dir, format!("state record unreadable: {e}")))?;
        let build = build_id();
        if rec.build != build {
            return Err(pin_err(
                dir,
                format!(
                    "pinned by another build of the eBPF objects ({}, this is {build})",
                    rec.build
                ),
            ));
        }
        Ok(rec)
    }

    /// Re-adopts the chain kept in `dir`: loads the programs against the pinned maps (counters,
    /// flows, buckets continue), points the tail calls of both generations at them and replaces the
    /// program of each pinned link atomically; traffic never stops. `active` is the configuration
    /// of the record's active generation (from what the owner stored), so unchanged functions keep
    /// their instances on the next [`Engine::apply`]. All or nothing: on error the kept chain runs
    /// on untouched (the caller may then start afresh with [`Engine::load_kept`]).
    pub fn adopt(
        dir: &Path,
        rec: PinnedRecord,
        active: &ChainConfig,
    ) -> Result<(Self, Vec<AttachInfo>)> {
        let hook = rec.hook();
        let names = maps::all_names(hook);
        let paths: Vec<PathBuf> = names.iter().map(|n| path(dir, n)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.exists()) {
            return Err(pin_err(
                dir,
                format!("missing pinned map {}", missing.display()),
            ));
        }
        for l in &rec.links {
            let path = path(dir, &link_name(&l.iface));
            if !path.exists() {
                return Err(pin_err(
                    dir,
                    format!("missing pinned link {}", path.display()),
                ));
            }
        }
        let st = &rec.engine;
        let act = st.active as usize;
        if act > 1 || st.generations[act].len() != active.functions.len() {
            return Err(pin_err(
                dir,
                "the state record's active generation does not match the chain stored with it",
            ));
        }
        let mut loader = super::loader::object_loader();
        for (name, path) in names.iter().zip(&paths) {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader.load(Self::object(hook))?;
        let mut e = Self::from_object(ebpf, hook)?;
        let running = e
            .maps
            .active_gen
            .get(&0, 0)
            .map_err(EngineError::map(ChainMaps::ACTIVE_GEN))?;
        if running != st.active {
            return Err(pin_err(
                dir,
                format!(
                    "the maps run generation {running}, the record says {} (an apply was cut short)",
                    st.active
                ),
            ));
        }
        for (pos, inst) in st.generations[act].iter().enumerate() {
            let slot = e
                .maps
                .slots
                .get(&(st.active * abi::MAX_CHAIN + pos as u32), 0)
                .map_err(EngineError::map(ChainMaps::SLOTS))?;
            if slot.instance != *inst {
                return Err(pin_err(
                    dir,
                    format!(
                        "slot {pos} runs instance {}, the record says {inst}",
                        slot.instance
                    ),
                ));
            }
        }
        e.restore(&rec.engine);
        for (inst, f) in rec.engine.generations[act].iter().zip(&active.functions) {
            e.fn_cfg.insert(*inst, f.clone());
        }
        // the new function programs serve both generations' slots (the old entry program, still
        // attached, tail-calls into them too: same build, same maps)
        for g in 0..2u32 {
            for (pos, inst) in e.generations[g as usize].clone().into_iter().enumerate() {
                let Some(&kind) = e.live.get(&inst) else {
                    continue;
                };
                let prog = nf::program_of_kind(kind).ok_or_else(|| {
                    pin_err(dir, format!("instance {inst} has unknown kind {kind}"))
                })?;
                e.set_slot(g, pos as u32, inst, kind, prog)?;
            }
        }
        // new programs: results the old ones cached are not theirs to reuse
        e.bump_fast_path_epoch()?;
        let record = RecordMap::open(dir)?;
        e.pins = Some(Pins {
            dir: dir.to_path_buf(),
            record,
            held: None,
            armed: false,
        });
        let mut infos = Vec::new();
        for l in &rec.links {
            let path = path(dir, &link_name(&l.iface));
            let link = e.replace_in_link(&l.iface, &path)?;
            let mode = mode_label(&l.mode).unwrap_or("xdp-native");
            infos.push(e.record_link(&l.iface, link, mode, Vec::new())?);
        }
        if let Some(p) = e.pins.as_mut() {
            p.armed = true;
        }
        info!(
            "re-adopted the {hook:?} chain pinned in {} (active slot set {})",
            dir.display(),
            st.active
        );
        Ok((e, infos))
    }

    fn restore(&mut self, st: &EngineState) {
        self.active = st.active;
        self.generations = st.generations.clone();
        self.live = st.live.iter().copied().collect();
        self.names = st
            .names
            .iter()
            .map(|(i, n, c)| (*i, (n.clone(), *c)))
            .collect();
        self.state_of = st.state_of.iter().copied().collect();
        self.state_refs = st.state_refs.iter().copied().collect();
        self.free_ids = st.free_ids.iter().copied().collect();
        self.nf.firewall.keys = st.fw_keys.iter().cloned().collect();
        self.nf.firewall.priorities = st.fw_priorities.iter().cloned().collect();
        self.nf.firewall.regions = st.fw_regions.iter().copied().collect();
        self.cls_keys = st.cls_keys.clone();
        self.nf.nat.keys = st
            .nat_keys
            .iter()
            .map(|(i, p, d)| (*i, (p.clone(), d.clone())))
            .collect();
        self.nf.lb.regions = st.lb_regions.iter().copied().collect();
        self.gen_base = st.gen_base.clone();
    }

    fn state_record(&self) -> EngineState {
        fn sorted<K: Ord + Copy, V: Clone>(m: &HashMap<K, V>) -> Vec<(K, V)> {
            let mut v: Vec<(K, V)> = m.iter().map(|(k, v)| (*k, v.clone())).collect();
            v.sort_by_key(|(k, _)| *k);
            v
        }
        EngineState {
            active: self.active,
            generations: self.generations.clone(),
            live: sorted(&self.live),
            names: sorted(&self.names)
                .into_iter()
                .map(|(i, (n, c))| (i, n, c))
                .collect(),
            state_of: sorted(&self.state_of),
            state_refs: sorted(&self.state_refs),
            free_ids: self.free_ids.iter().copied().collect(),
            fw_keys: sorted(&self.nf.firewall.keys),
            fw_priorities: sorted(&self.nf.firewall.priorities),
            fw_regions: sorted(&self.nf.firewall.regions),
            cls_keys: self.cls_keys.clone(),
            nat_keys: sorted(&self.nf.nat.keys)
                .into_iter()
                .map(|(i, (p, d))| (i, p, d))
                .collect(),
            lb_regions: sorted(&self.nf.lb.regions),
            gen_base: self.gen_base.clone(),
        }
    }

    /// Writes the state record of a kept engine, with `owner`'s data (what the daemon needs to
    /// re-adopt: its spec and generation). Call after every change (apply, attach). A no-op for
    /// engines that are not kept.
    pub fn save_record(&mut self, owner: &str) -> Result<()> {
        let state = self.state_record();
        let links = self
            .modes
            .iter()
            .map(|(iface, mode)| LinkRecord {
                iface: iface.clone(),
                mode: (*mode).to_string(),
            })
            .collect();
        let hook = hook_name(self.hook);
        let Some(pins) = self.pins.as_mut() else {
            return Ok(());
        };
        let rec = PinnedRecord {
            build: build_id(),
            hook: hook.into(),
            links,
            engine: state,
            owner: owner.into(),
        };
        let text = serde_json::to_string(&rec)
            .map_err(|e| pin_err(&pins.dir, format!("encoding the state record: {e}")))?;
        pins.record.write(&text)?;
        // every link now runs this engine's programs: the replaced chain may go
        pins.held = None;
        Ok(())
    }

    /// Removes the kept links of interfaces this engine is not attached to (a chain that moved to
    /// other interfaces): their programs detach.
    pub fn remove_stale_links(&mut self) -> Result<()> {
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        let ours: HashSet<String> = self
            .links
            .iter()
            .map(|(iface, _)| link_name(iface))
            .collect();
        let Ok(entries) = std::fs::read_dir(&pins.dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("link_") && !ours.contains(&name) {
                info!("detaching the kept {name}: the chain no longer uses that interface");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// The pin directory of a kept engine.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(|p| p.dir.as_path())
    }

    /// Lets go of a kept chain without detaching it: the programs stay attached and the maps pinned
    /// for the next process to re-adopt. Fails for an engine that is not kept (nothing would survive).
    pub fn keep(&mut self) -> Result<()> {
        let Some(pins) = self.pins.as_mut() else {
            return Err(EngineError::Config(
                "the chain is not pinned, so it cannot be kept".into(),
            ));
        };
        pins.armed = false;
        if self
            .links
            .iter()
            .any(|(_, l)| !matches!(l, Link::Pinned { .. }))
        {
            return Err(EngineError::Config(
                "an attachment is not pinned, so it cannot be kept".into(),
            ));
        }
        // closing the link fds leaves the links: their pins hold them
        self.links.clear();
        self.modes.clear();
        Ok(())
    }
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
