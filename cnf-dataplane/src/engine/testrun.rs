//! A `Send + Sync` handle that runs a loaded program with `BPF_PROG_TEST_RUN`
//! ([`buildvnf_ebpf::test_run`]).
//!
//! [`super::Engine::test_run`] needs `&Engine`; a [`TestRunner`] owns a
//! duplicate of the entry program's fd instead, so packets can be pushed
//! from other threads while the engine is re-composed with `&mut Engine`.

use std::os::fd::{AsFd, OwnedFd};

use buildvnf_ebpf::test_run::{TestRun, test_run};

use super::error::{EngineError, Result};
use super::loader::TestRunOutcome;

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
        let done = test_run(
            self.fd.as_fd(),
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
}
