//! Engine: eBPF objects, chain composition, telemetry readout.

pub mod abi;
mod attach;
mod batch;
mod classifier;
pub mod config;
pub mod control;
pub mod diagnose;
pub mod egress;
pub mod error;
pub mod firewall;
pub mod fragreplay;
pub mod loader;
pub mod maglev;
mod maps;
mod nf;
pub mod objects;
pub mod pin;
mod telemetry;
pub mod testrun;

pub use config::{
    Action, ChainConfig, ClassifierConfig, CountBy, ETHERTYPE_ARP, FirewallConfig, FirewallRule,
    ForwardMode, ForwarderConfig, FunctionConfig, FunctionKind, IpCidr, LbBackendConfig, LbConfig,
    MAX_CLASSIFIER_CIDRS, MAX_CLASSIFIER_PORTS, MAX_DNAT, MAX_MAGLEV_TABLE, MonitorConfig,
    NatConfig, NatRule, NonIpConfig, PortRange, RateLimitKey, RateLimiterConfig,
};
pub use error::EngineError;
pub use loader::{
    AppliedChain, AttachInfo, ChainCounters, Engine, FunctionStats, Hook, PinnedRecord,
    TestRunOutcome, XdpAttach,
};
pub use testrun::TestRunner;
