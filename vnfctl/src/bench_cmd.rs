//! `vnfctl bench`: the command-line side of the benchmark suite (owned by the bench work).

use std::process::ExitCode;

use clap::Args;

/// `vnfctl bench` arguments.
#[derive(Args)]
pub struct BenchArgs {}

/// Runs the benchmark suite.
pub fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("vnfctl bench: not built yet")
}
