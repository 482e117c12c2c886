//! The benchmark suite: scenarios side by side, same traffic, results as ratios.

pub mod peers;
