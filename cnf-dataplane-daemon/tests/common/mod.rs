//! Shared helpers of the daemon's tests: everything of the `testkit` crate (root guard and skip rule,
//! namespaces, the daemon launcher and binary finder, metrics scraping, …) under the `common::` path the
//! tests used in cnf-dataplane. `common/daemon.rs` adds what needs this package's dev-dependencies.
#![allow(dead_code)]

pub use testkit::*;
