//! The benchmark suite: scenarios side by side, same traffic, results as ratios.
//!
//! [`peers`] translates a VNFChain into its kernel peers (nftables, IPVS, tc police, xdp-filter), [`bed`] builds
//! the generator → CNF → server namespaces, [`traffic`] drives the live-frames generators on it (one long call
//! per point, pinned, in the CPU layout of each [`traffic::Layout`]), [`run`] runs every scenario on that bed and
//! writes the JSON, the table and the plots.

pub mod bed;
pub mod cps;
pub mod cpu;
pub mod peers;
pub mod rtt;
pub mod run;
pub mod traffic;

pub use run::{Options, Report, Scenario, run_suite};

/// Why the suite could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// `--sizes` is empty.
    #[error("--sizes: at least one size")]
    NoSizes,
    /// A frame size outside what the bed can send.
    #[error("--sizes: {0} is outside 64..=1500 bytes (Ethernet frame, no FCS)")]
    SizeOutOfRange(usize),
    /// The manifest offers no flow the benchmark can send.
    #[error("no benchmark flow: {reason}")]
    NoFlow { reason: String },
    /// The manifest could not be translated into kernel peers.
    #[error(transparent)]
    Peers(#[from] peers::PeerError),
    /// The manifest could not be mapped onto the engine's chain configuration.
    #[error("chain: {0}")]
    ChainPlan(#[source] Box<cnf_dataplane::spec::SpecError>),
    /// The chain has user-space functions; the chain scenarios measure kernel chains.
    #[error(
        "chain: the chain has user-space functions; the suite measures kernel chains only (user-space tier: \
         its own scenario)"
    )]
    UserspaceChain,
    /// The chain could not be loaded, applied or attached.
    #[error("chain: {0}")]
    Chain(#[source] Box<cnf_dataplane::compose::ApplyError>),
    /// A command run for the bed or a kernel peer failed.
    #[error("setup: {0}")]
    Netns(#[from] pktgen::netns::NetnsError),
    /// A bed namespace could not be created.
    #[error("setup: {0}")]
    Namespace(#[from] netkit::netns::NetnsError),
    /// A netlink request for the bed failed.
    #[error("setup: {0}")]
    Netlink(#[from] netkit::nl::NlError),
    /// An ethtool ioctl on a bed interface failed.
    #[error("setup: {0}")]
    Ethtool(#[from] netkit::ethtool::EthtoolError),
    /// The bed's link has no MAC address.
    #[error("setup: no MAC for {dev} in {ns}")]
    NoMac { dev: String, ns: String },
    /// A file the bed reads or writes (`/proc`, `/sys`) could not be used.
    #[error("setup: {context}: {source}")]
    SetupIo {
        /// What was being read or written.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `/proc/stat` has no aggregate `cpu` line.
    #[error("setup: /proc/stat: no aggregate cpu line")]
    ProcStat,
    /// The bench object (ceiling, sink) could not be loaded or attached.
    #[error("setup: bench object: {what}: {source}")]
    Bpf {
        /// What was being done.
        what: String,
        /// aya's error.
        #[source]
        source: Box<BpfError>,
    },
    /// A worker thread panicked.
    #[error("a thread ({what}) panicked")]
    Panicked { what: String },
    /// The live-frames generator failed.
    #[error("traffic: live frames: {0}")]
    Generator(#[source] pktgen::error::Error),
    /// The latency run's socket sender failed.
    #[error("traffic: socket sender: {0}")]
    Sender(#[source] pktgen::error::Error),
    /// The latency run's receiver failed.
    #[error("traffic: latency receiver: {what}: {source}")]
    Receiver {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The latency histogram could not be made.
    #[error("traffic: latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// The bed's client address leaves no room for the new-flow measurement's source addresses in its /24.
    #[error("new flows: the client address {src} leaves no room for source addresses in its /24")]
    NoClientRoom { src: std::net::Ipv4Addr },
    /// The new-flow chain runs without its NAT and LB instances.
    #[error("chain: the new-flows chain has no NAT and LB instances")]
    NoNatLb,
    /// The RTT measurement's request rate is out of range.
    #[error("rtt: rate {0} is not within (0, 1e6] requests per second")]
    RttRate(f64),
    /// A helper XDP program of the bed (new-flow sink, echo reflector, pass) could not be attached.
    #[error("setup: {what}: {source}")]
    Helper {
        /// Which program, where.
        what: String,
        /// pktgen's error.
        #[source]
        source: pktgen::error::Error,
    },
    /// The new-flow sink's counters could not be read.
    #[error("traffic: cps_sink counters: {0}")]
    SinkCounts(#[source] pktgen::error::Error),
    /// conntrack's counters could not be read.
    #[error("traffic: {0}")]
    Conntrack(#[from] cps::CtStatError),
    /// A request header could not be written.
    #[error("traffic: request header: {0}")]
    Payload(#[from] pktgen::payload::PayloadError),
    /// Latency histograms could not be merged.
    #[error("traffic: latency histogram: {0}")]
    HistogramAdd(#[from] hdrhistogram::AdditionError),
    /// A result file could not be written.
    #[error("output: {path}: {source}")]
    Output {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be serialised.
    #[error("output: bench.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A plot could not be drawn.
    #[error("output: {0}")]
    Plot(#[from] crate::plot::PlotError),
}

/// The aya errors of the bench object.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(transparent)]
    Load(#[from] aya::EbpfError),
    #[error(transparent)]
    Program(#[from] aya::programs::ProgramError),
    #[error(transparent)]
    Map(#[from] aya::maps::MapError),
    #[error(transparent)]
    XdpMap(#[from] aya::maps::xdp::XdpMapError),
    #[error("not in the object")]
    Missing,
}

impl BenchError {
    /// A [`BenchError::Bpf`] for `what`.
    pub fn bpf(what: impl Into<String>) -> impl FnOnce(BpfError) -> BenchError {
        let what = what.into();
        move |source| BenchError::Bpf {
            what,
            source: Box::new(source),
        }
    }

    /// Whether the error belongs to the chain under test (the scenario is skipped with the reason) rather than
    /// to the bed (the run stops).
    pub fn is_chain(&self) -> bool {
        matches!(
            self,
            BenchError::ChainPlan(_) | BenchError::UserspaceChain | BenchError::Chain(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn errors_keep_their_source_chain() {
        let io = std::io::Error::from_raw_os_error(libc::ENODEV);
        let e = BenchError::SetupIo {
            context: "/proc/sys/net/ipv4/ip_forward".into(),
            source: io,
        };
        assert!(
            e.to_string()
                .starts_with("setup: /proc/sys/net/ipv4/ip_forward: ")
        );
        let src = e.source().expect("the OS error is the source");
        assert_eq!(
            src.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error),
            Some(libc::ENODEV)
        );
        let e = BenchError::bpf("load bench_sink")(BpfError::Missing);
        assert_eq!(
            e.to_string(),
            "setup: bench object: load bench_sink: not in the object"
        );
        assert!(e.source().is_some());
        let e = BenchError::Ethtool(netkit::ethtool::EthtoolError::BadName(String::new()));
        assert!(e.to_string().starts_with("setup: "), "{e}");
        assert!(!e.is_chain());
        assert!(BenchError::UserspaceChain.is_chain());
        assert_eq!(
            BenchError::SizeOutOfRange(40).to_string(),
            "--sizes: 40 is outside 64..=1500 bytes (Ethernet frame, no FCS)"
        );
    }
}
