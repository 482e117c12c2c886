//! Raw `bpf(2)` plumbing shared by the hand-assembled XDP programs (live frames and the XDP
//! sink): the attribute buffer, the syscall, instruction encoding, program loading, maps and
//! XDP links. No libbpf, no compiler: every program here is a few dozen instructions.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, io_err};

pub(crate) const BPF_MAP_CREATE: libc::c_long = 0;
pub(crate) const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub(crate) const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
pub(crate) const BPF_PROG_LOAD: libc::c_long = 5;
pub(crate) const BPF_PROG_TEST_RUN: libc::c_long = 10;
pub(crate) const BPF_LINK_CREATE: libc::c_long = 28;
pub(crate) const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub(crate) const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
pub(crate) const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
pub(crate) const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type` value of an XDP link.
pub(crate) const BPF_XDP: u32 = 37;
pub(crate) const XDP_DROP: i32 = 1;
pub(crate) const XDP_PASS: i32 = 2;
pub(crate) const XDP_TX: i32 = 3;

/// One eBPF instruction: opcode, destination and source registers, offset, immediate.
pub(crate) fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst & 0xf) << 8)
        | (u64::from(src & 0xf) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// A zeroed `union bpf_attr`-sized buffer (larger than every command used here).
#[repr(C, align(8))]
pub(crate) struct Attr([u8; 128]);

impl Attr {
    pub(crate) fn new() -> Self {
        Self([0; 128])
    }
    pub(crate) fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(crate) fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

/// The `bpf(2)` system call.
pub(crate) fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable, zero-padded bpf_attr buffer of the size passed; any
    // pointers stored in it (set by the callers) refer to buffers that outlive this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned_fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: `r` is a new file descriptor just returned by bpf(2) that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// Creates a map with 4-byte keys.
pub(crate) fn map_create(map_type: u32, value_size: u32, entries: u32) -> Result<OwnedFd, Error> {
    bpf(
        BPF_MAP_CREATE,
        Attr::new()
            .u32(0, map_type)
            .u32(4, 4)
            .u32(8, value_size)
            .u32(12, entries),
    )
    .map(owned_fd)
    .map_err(io_err("BPF_MAP_CREATE"))
}

/// Looks `key` up in `map`, writing the value (for per-CPU maps: one 8-byte-aligned slot per
/// possible CPU) into `value`. `Ok(false)` when the key is absent.
pub(crate) fn map_lookup(map: &OwnedFd, key: u32, value: &mut [u8]) -> Result<bool, Error> {
    match bpf(
        BPF_MAP_LOOKUP_ELEM,
        Attr::new()
            .u32(0, map.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64)
            .u64(16, value.as_mut_ptr() as u64),
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(io_err("BPF_MAP_LOOKUP_ELEM")(e)),
    }
}

/// The keys of a hash map with 4-byte keys.
pub(crate) fn map_keys(map: &OwnedFd) -> Result<Vec<u32>, Error> {
    let mut keys = Vec::new();
    let mut prev: Option<u32> = None;
    loop {
        let mut next = 0u32;
        let mut attr = Attr::new();
        attr.u32(0, map.as_raw_fd() as u32)
            .u64(16, &mut next as *mut u32 as u64);
        if let Some(p) = prev.as_ref() {
            attr.u64(8, p as *const u32 as u64);
        }
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {
                keys.push(next);
                prev = Some(next);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
            Err(e) => return Err(io_err("BPF_MAP_GET_NEXT_KEY")(e)),
        }
    }
}

/// Loads an XDP program, returning the verifier's log in the error when it is refused.
pub(crate) fn load_xdp(insns: &[u64]) -> Result<OwnedFd, Error> {
    let license = b"GPL\0";
    let mut log = vec![0u8; 64 * 1024];
    bpf(
        BPF_PROG_LOAD,
        Attr::new()
            .u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, 1)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64),
    )
    .map(owned_fd)
    .map_err(|e| {
        let text = String::from_utf8_lossy(&log);
        Error::Config(format!(
            "BPF_PROG_LOAD: {e}; verifier: {}",
            text.trim_end_matches('\0').trim()
        ))
    })
}

/// Attaches an XDP program to `ifindex` with a BPF link (`flags`: `XDP_FLAGS_SKB_MODE` 2 or
/// `XDP_FLAGS_DRV_MODE` 4). The program stays attached while the returned link fd is open.
pub(crate) fn xdp_link(prog: &OwnedFd, ifindex: u32, flags: u32) -> std::io::Result<OwnedFd> {
    bpf(
        BPF_LINK_CREATE,
        Attr::new()
            .u32(0, prog.as_raw_fd() as u32)
            .u32(4, ifindex)
            .u32(8, BPF_XDP)
            .u32(12, flags),
    )
    .map(owned_fd)
}

/// Index of interface `name` in the calling thread's network namespace.
pub(crate) fn ifindex(name: &str) -> Result<u32, Error> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::Config(format!("bad interface name '{name}'")))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io_err(format!("interface {name}"))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(i)
}

/// Number of possible CPUs (the slot count of per-CPU map values), from
/// `/sys/devices/system/cpu/possible` (e.g. `0-3` or `0,2-5`).
pub(crate) fn possible_cpus() -> Result<usize, Error> {
    let path = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_cpu_list(&text).ok_or_else(|| Error::Config(format!("cannot parse {path}: {text:?}")))
}

/// Highest CPU number in a kernel CPU list, plus one.
pub(crate) fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut max = None;
    for part in text.trim().split(',') {
        let last = part.rsplit('-').next()?;
        let n: usize = last.trim().parse().ok()?;
        max = Some(max.map_or(n, |m: usize| m.max(n)));
    }
    max.map(|m| m + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0,2-5"), Some(6));
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list(""), None);
    }

    #[test]
    fn instruction_encoding() {
        // r1 = r10 (mov64 reg): opcode 0xbf, dst 1, src 10.
        assert_eq!(insn(0xbf, 1, 10, 0, 0), 0xa1bf);
        // negative offsets and immediates are two's complement
        assert_eq!(insn(0x07, 2, 0, 0, -4) >> 32, 0xffff_fffc);
        assert_eq!((insn(0x62, 10, 0, -4, 0) >> 16) & 0xffff, 0xfffc);
    }
}
