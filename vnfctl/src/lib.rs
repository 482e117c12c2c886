//! The library behind `vnfctl`: the laptop testbed, the benchmark suite and its plots.

pub mod bench;
pub mod plot;
pub mod testbed;
