//! `BPF_MAP_UPDATE_BATCH` for large array regions (aya 0.14 has no batch operations).
//!
//! A Maglev table is 65,537 slots or more; writing it one `bpf(2)` call per slot costs about a
//! hundred milliseconds, one batch call a few.

use std::os::fd::{AsFd, AsRawFd};

use aya::Pod;

use super::error::{EngineError, Result};

/// `BPF_MAP_UPDATE_BATCH` from `enum bpf_cmd` (uapi/linux/bpf.h).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr` (uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `values[i]` at index `first + i` of the array map `map` in one system call.
pub fn update_array<V: Pod>(map: impl AsFd, name: &str, first: u32, values: &[V]) -> Result<()> {
    update_array_per_cpu(map, name, first, values, 1)
}

/// Like [`update_array`] for a per-CPU array: each element takes `per_elem` consecutive
/// values (the number of possible CPUs; `V` must be 8-byte sized as the kernel pads).
pub fn update_array_per_cpu<V: Pod>(
    map: impl AsFd,
    name: &str,
    first: u32,
    values: &[V],
    per_elem: usize,
) -> Result<()> {
    if values.is_empty() || per_elem == 0 {
        return Ok(());
    }
    let count = u32::try_from(values.len() / per_elem)
        .map_err(|_| EngineError::Config(format!("{name}: batch too large")))?;
    let keys: Vec<u32> = (0..count).map(|i| first + i).collect();
    let fd = map.as_fd();
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: u32::try_from(fd.as_raw_fd())
            .map_err(|_| EngineError::Config(format!("{name}: bad fd")))?,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` is a properly initialised `bpf_attr.batch` that lives across the call;
    // `keys` and `values` hold `count` elements of the map's key (u32) and value (V: Pod, the
    // map's value type) sizes and outlive the call; the kernel only reads them and writes
    // `attr.count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &mut attr as *mut BatchAttr,
            size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(EngineError::Io(std::io::Error::other(format!(
            "{name}: BPF_MAP_UPDATE_BATCH of {count} entries at {first}: {}",
            std::io::Error::last_os_error()
        ))));
    }
    Ok(())
}
