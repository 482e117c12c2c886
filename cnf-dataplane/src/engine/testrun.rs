//! A `Send + Sync` handle that runs a loaded program with `BPF_PROG_TEST_RUN` (raw `bpf(2)`).
//!
//! [`super::Engine::test_run`] needs `&Engine`; a [`TestRunner`] owns a
//! duplicate of the entry program's fd instead, so packets can be pushed
//! from other threads while the engine is re-composed with `&mut Engine`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use super::error::{EngineError, Result};
use super::loader::TestRunOutcome;

/// `BPF_PROG_TEST_RUN` from `enum bpf_cmd` (uapi/linux/bpf.h).
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// Runs one program with test packets; cheap to share between threads.
#[derive(Debug)]
pub struct TestRunner {
    fd: OwnedFd,
}

impl TestRunner {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self { fd }
    }

    /// Runs the program `repeat` times (at least once) on `packet`.
    pub fn run(&self, packet: &[u8], repeat: u32) -> Result<TestRunOutcome> {
        let mut out = vec![0u8; packet.len() + 256];
        let too_big = |_| EngineError::Config("test packet too large".into());
        let mut attr = TestAttr {
            prog_fd: u32::try_from(self.fd.as_raw_fd())
                .map_err(|_| EngineError::Config("bad fd".into()))?,
            data_size_in: u32::try_from(packet.len()).map_err(too_big)?,
            data_size_out: u32::try_from(out.len()).map_err(too_big)?,
            data_in: packet.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: repeat.max(1),
            ..TestAttr::default()
        };
        // SAFETY: `attr` is a properly initialised `bpf_attr.test` that
        // lives across the call; data_in/data_out point to buffers of the
        // stated sizes which outlive the syscall; the kernel writes only
        // into `attr` and `out` (at most data_size_out bytes).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestAttr,
                size_of::<TestAttr>() as libc::c_uint,
            )
        };
        if rc < 0 {
            return Err(EngineError::Io(std::io::Error::last_os_error()));
        }
        out.truncate((attr.data_size_out as usize).min(out.len()));
        Ok(TestRunOutcome {
            retval: attr.retval,
            data: out,
            duration: Duration::from_nanos(u64::from(attr.duration)),
        })
    }
}
