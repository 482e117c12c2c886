//! A `Send + Sync` handle that runs a loaded program with `BPF_PROG_TEST_RUN`
//! ([`buildvnf_ebpf::test_run`]).
//!
//! [`super::Engine::test_run`] needs `&Engine`; a [`TestRunner`] owns a
//! duplicate of the entry program's fd instead, so packets can be pushed
//! from other threads while the engine is re-composed with `&mut Engine`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use buildvnf_ebpf::test_run::{TestRun, test_run};

use super::error::{EngineError, Result};
use super::loader::{ENTRY, Engine};

/// Output of one `BPF_PROG_TEST_RUN` of the entry program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// Program return value (XDP_* or TC_ACT_*).
    pub retval: u32,
    /// The packet after the chain.
    pub data: Vec<u8>,
    /// Average run time per repetition, as measured by the kernel.
    pub duration: Duration,
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
        run(self.fd.as_fd(), packet, repeat)
    }
}

/// Runs program `fd` `repeat` times (at least once) on `packet` (tail calls included) and returns
/// the last result.
fn run(fd: BorrowedFd<'_>, packet: &[u8], repeat: u32) -> Result<TestRunOutcome> {
    let mut out = vec![0u8; packet.len() + 256];
    let done = test_run(
        fd,
        TestRun {
            data_in: packet,
            data_out: Some(&mut out),
            repeat: repeat.max(1),
            ..TestRun::default()
        },
    )
    .map_err(EngineError::Io)?;
    out.truncate(done.data_size_out as usize);
    Ok(TestRunOutcome {
        retval: done.retval,
        data: out,
        duration: done.duration,
    })
}

impl Engine {
    /// Runs the entry program once per repetition on `packet` with
    /// `BPF_PROG_TEST_RUN` (tail calls included) and returns the last result.
    pub fn test_run(&self, packet: &[u8], repeat: u32) -> Result<TestRunOutcome> {
        run(self.entry_fd()?.as_fd(), packet, repeat)
    }

    /// A thread-safe runner for the entry program (see [`TestRunner`]).
    pub fn test_runner(&self) -> Result<TestRunner> {
        Ok(TestRunner::new(
            self.entry_fd()?.as_fd().try_clone_to_owned()?,
        ))
    }

    fn entry_fd(&self) -> Result<&aya::programs::ProgramFd> {
        self.prog_fds
            .get(ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {ENTRY}")))
    }
}
