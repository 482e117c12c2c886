//! The benchmark suite: scenarios side by side, same traffic, results as ratios.
//!
//! [`peers`] translates a VNFChain into its kernel peers (nftables, IPVS, tc police, xdp-filter), [`bed`] builds
//! the generator → CNF → server namespaces, [`run`] runs every scenario on that bed and writes the JSON, the table
//! and the plots.

pub mod bed;
pub mod cps;
pub mod cpu;
pub mod peers;
pub mod rtt;
pub mod run;

pub use run::{Options, Report, Scenario, run_suite};

/// Why the suite could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag has a bad value.
    #[error("{0}")]
    Options(String),
    /// The manifest offers no flow the benchmark can send.
    #[error("no benchmark flow: {reason}")]
    NoFlow { reason: String },
    /// The manifest could not be translated into kernel peers.
    #[error(transparent)]
    Peers(#[from] peers::PeerError),
    /// The chain could not be loaded into the engine.
    #[error("chain: {0}")]
    Chain(String),
    /// Building the bed or configuring a scenario failed.
    #[error("setup: {0}")]
    Setup(String),
    /// A command run for the bed failed.
    #[error("setup: {0}")]
    Netns(#[source] pktgen::netns::NetnsError),
    /// A file the bed reads could not be read.
    #[error("setup: {context}: {source}")]
    SetupIo {
        /// What was being read.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Sending or receiving failed.
    #[error("traffic: {0}")]
    Traffic(String),
    /// Results could not be written.
    #[error("output: {0}")]
    Output(String),
}
