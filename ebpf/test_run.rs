//! `BPF_PROG_TEST_RUN` (raw `bpf(2)`; aya 0.14 has no API for it): runs a loaded program over
//! a packet, optionally in live-frames mode, where XDP verdicts act on real interfaces.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// `BPF_PROG_TEST_RUN` from `enum bpf_cmd` (uapi/linux/bpf.h).
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `BPF_F_TEST_XDP_LIVE_FRAMES` (uapi/linux/bpf.h): XDP verdicts transmit or redirect the
/// frames instead of reporting them (Linux 5.18+).
pub const XDP_LIVE_FRAMES: u32 = 1 << 1;

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

/// The input context of an XDP test run, `struct xdp_md` (uapi/linux/bpf.h: data, data_end,
/// data_meta, ingress_ifindex, rx_queue_index, egress_ifindex) as bytes for [`TestRun::ctx_in`]:
/// the program sees the frame as received on queue `rx_queue` of interface `ingress_ifindex` (in the
/// caller's network namespace; in live-frames mode the verdict acts there). The kernel wants
/// data_end == the frame length and no metadata (net/bpf/test_run.c, bpf_prog_test_run_xdp).
pub fn xdp_md(ingress_ifindex: u32, rx_queue: u32, frame_len: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    for (i, v) in [0, frame_len, 0, ingress_ifindex, rx_queue, 0]
        .into_iter()
        .enumerate()
    {
        ctx[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    ctx
}

/// One test run.
#[derive(Debug, Default)]
pub struct TestRun<'a> {
    /// The packet.
    pub data_in: &'a [u8],
    /// Where the kernel writes the packet after the program (`None`: not copied out).
    pub data_out: Option<&'a mut [u8]>,
    /// The program's input context (for XDP a `struct xdp_md`), if any.
    pub ctx_in: Option<&'a [u8]>,
    /// Runs (0 is taken as 1 by the kernel).
    pub repeat: u32,
    /// `BPF_F_TEST_*` flags, e.g. [`XDP_LIVE_FRAMES`].
    pub flags: u32,
    /// Frames per batch in live-frames mode (0: the kernel's default).
    pub batch_size: u32,
}

/// What the kernel reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value (of the last run).
    pub retval: u32,
    /// Bytes of packet written to `data_out`.
    pub data_size_out: u32,
    /// Mean run time per repetition.
    pub duration: Duration,
}

fn len(what: &str, n: usize) -> std::io::Result<u32> {
    u32::try_from(n).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} too large"),
        )
    })
}

/// Runs the program `prog` once per `run.repeat` over `run.data_in`.
pub fn test_run(prog: BorrowedFd<'_>, run: TestRun<'_>) -> std::io::Result<TestRunOutput> {
    let ctx = run.ctx_in.unwrap_or_default();
    let (data_out, out_len) = match run.data_out {
        Some(out) => (out.as_mut_ptr() as u64, len("data_out", out.len())?),
        None => (0, 0),
    };
    let mut attr = TestAttr {
        prog_fd: len("prog fd", prog.as_raw_fd() as usize)?,
        data_size_in: len("data_in", run.data_in.len())?,
        data_size_out: out_len,
        data_in: run.data_in.as_ptr() as u64,
        data_out,
        repeat: run.repeat,
        ctx_size_in: len("ctx_in", ctx.len())?,
        ctx_in: if ctx.is_empty() {
            0
        } else {
            ctx.as_ptr() as u64
        },
        flags: run.flags,
        batch_size: run.batch_size,
        ..TestAttr::default()
    };
    // SAFETY: `attr` is a properly initialised `bpf_attr.test` that lives across the call;
    // data_in, data_out and ctx_in point to buffers of the stated sizes (borrowed by `run` for
    // the whole call, data_out mutably); the kernel writes only into `attr` and `data_out` (at
    // most data_size_out bytes), and `prog` is an open fd for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestAttr,
            size_of::<TestAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TestRunOutput {
        retval: attr.retval,
        data_size_out: attr.data_size_out.min(out_len),
        duration: Duration::from_nanos(u64::from(attr.duration)),
    })
}
