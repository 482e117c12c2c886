//! `vnfctl testbed up|down`: the command-line side of the laptop testbed (owned by the testbed work).

use std::process::ExitCode;

use clap::Subcommand;

/// `vnfctl testbed` subcommands.
#[derive(Subcommand)]
pub enum TestbedCommand {
    /// Bring a VNFChain manifest up in network namespaces.
    Up,
    /// Take a testbed down.
    Down,
}

/// Runs a testbed subcommand.
pub fn run(_command: TestbedCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("vnfctl testbed: not built yet")
}
