//! What every ApplyChain door shares: the strict reader of a request and the generation rule.
//!
//! The daemon (`cnf-dataplane-daemon/src/grpc.rs` and `cnf-dataplane/src/compose/mod.rs`) and the operator's fake sidecar
//! (`operator/src/fake.rs`) both call these, so the fake cannot accept what the daemon refuses.
//!
//! # The generation rule (docs/architecture.md, "Generations")
//!
//! A data plane moves between generations of its chain (the VNFChain's `metadata.generation`):
//! - a generation is positive (`generation <= 0` is INVALID_ARGUMENT);
//! - a generation names one spec, for good: the same generation with another spec is refused
//!   (FAILED_PRECONDITION), also for a generation applied earlier; the same generation with the same spec
//!   as the running one is an idempotent OK (`changed = false`);
//! - forward: a generation above every generation this data plane has applied is applied;
//! - back (the operator's rollback): a generation this data plane itself applied before, with the same spec
//!   (equal after reading: the SHA-256 of its canonical JSON), is applied again. The data plane remembers
//!   the last [`REMEMBERED`] generations it applied (across re-adoption: they are kept in its record);
//! - anything else below the highest generation applied is stale (FAILED_PRECONDITION);
//! - after Detach nothing is applied again (FAILED_PRECONDITION) until the daemon restarts.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};
use tonic::Status;

/// How many applied generations a data plane remembers (what it can return to).
pub const REMEMBERED: usize = 16;

/// Reads an ApplyChain request as the document it stands for — the chain `namespace/name` with the spec
/// of `spec_json` — with the strict reader of `vnfctl validate` and `cnf-dataplane --config`
/// ([`crds::manifest::parse_document`]): unknown fields anywhere are refused with their path and the field
/// they were probably meant to be, then the CRD's schema, its CEL rules and the semantic checks. Messages
/// carry the same paths as for a manifest file (`spec.functions[0]...`). Refusals are INVALID_ARGUMENT.
pub fn read_request(
    namespace: &str,
    name: &str,
    spec_json: &str,
) -> Result<crds::ValidChain, Status> {
    let spec: serde_json::Value = serde_json::from_str(spec_json)
        .map_err(|e| Status::invalid_argument(format!("spec_json: not JSON: {e}")))?;
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), name.into());
    if !namespace.is_empty() {
        metadata.insert("namespace".into(), namespace.into());
    }
    let document = serde_json::json!({
        "apiVersion": crds::vnfchain::API_VERSION,
        "kind": crds::vnfchain::KIND,
        "metadata": metadata,
        "spec": spec,
    });
    match crds::manifest::parse_document(document) {
        crds::manifest::Document::Chain(chain) => Ok(*chain),
        crds::manifest::Document::Invalid(errors) => {
            Err(Status::invalid_argument(errors.to_string()))
        }
        crds::manifest::Document::Other { kind } => Err(Status::internal(format!(
            "the request was read as a {kind}, not a chain"
        ))),
    }
}

/// The identity of a spec for the generation rule: the SHA-256 (hex) of its canonical JSON (the serde
/// encoding of the read spec: field order fixed by the types, maps sorted), so two requests that read as the
/// same spec have the same digest whatever their bytes' order or defaults.
pub fn spec_digest(spec: &crds::VNFChainSpec) -> String {
    // Serializing a typed spec does not fail (string map keys only); if it ever did, its Debug text stands in,
    // which still tells two specs apart (never one shared fallback that would make different specs equal).
    let bytes = serde_json::to_vec(spec).unwrap_or_else(|_| format!("{spec:?}").into_bytes());
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(&bytes) {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Why a generation is not applied (see the module's rule).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a `metadata.generation` (zero or negative).
    #[error("generation: must be a positive metadata.generation, got {0}")]
    NotPositive(i64),
    /// Below the highest generation applied, and not one this data plane applied with this spec.
    #[error(
        "generation {requested} is older than the applied generation {highest}, and this data plane never \
         applied it (only a generation it applied, with the same spec, can be returned to)"
    )]
    Stale {
        /// The generation asked for.
        requested: i64,
        /// The highest generation applied.
        highest: i64,
    },
    /// This generation was applied with another spec.
    #[error(
        "generation {0} is already applied with another spec: a changed spec needs a newer generation"
    )]
    SameGeneration(i64),
    /// Detach ended the chain.
    #[error(
        "this data plane is detached (its chain was deleted): it applies no chain until it is restarted"
    )]
    Detached,
}

impl Refusal {
    /// The gRPC status of the refusal (the codes documented in `proto/dataplane.proto`).
    pub fn status(&self) -> Status {
        match self {
            Refusal::NotPositive(_) => Status::invalid_argument(self.to_string()),
            _ => Status::failed_precondition(self.to_string()),
        }
    }
}

/// What an allowed request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The running generation with its spec again: nothing to do (`changed = false`).
    Unchanged,
    /// A generation above every one applied.
    Forward,
    /// Back to a generation applied before, with its spec (a rollback).
    Return,
}

/// The generations a data plane has applied, newest last: what the rule is checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Generations {
    /// The generation running (0: none yet).
    current: i64,
    /// The highest generation ever applied.
    highest: i64,
    /// (generation, [`spec_digest`]) of the last [`REMEMBERED`] generations applied, the running one last.
    applied: Vec<(i64, String)>,
    /// Detach ended the chain.
    #[serde(default)]
    detached: bool,
}

impl Generations {
    /// A data plane that started with `generation` of the spec with digest `digest`.
    pub fn started(generation: i64, digest: String) -> Self {
        let mut g = Self::default();
        g.record(generation, digest);
        g
    }

    /// The generation running (0: none yet).
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The highest generation applied.
    pub fn highest(&self) -> i64 {
        self.highest
    }

    /// Whether Detach ended the chain.
    pub fn detached(&self) -> bool {
        self.detached
    }

    /// Checks the rule for `generation` with the spec of digest `digest`; changes nothing.
    pub fn check(&self, generation: i64, digest: &str) -> Result<Step, Refusal> {
        if self.detached {
            return Err(Refusal::Detached);
        }
        if generation < 1 {
            return Err(Refusal::NotPositive(generation));
        }
        let before = self.applied.iter().rev().find(|(g, _)| *g == generation);
        match before {
            Some((_, d)) if d != digest => Err(Refusal::SameGeneration(generation)),
            Some(_) if generation == self.current => Ok(Step::Unchanged),
            Some(_) => Ok(Step::Return),
            // a generation applied so long ago that it was forgotten cannot be checked: stale
            None if generation <= self.highest => Err(Refusal::Stale {
                requested: generation,
                highest: self.highest,
            }),
            None => Ok(Step::Forward),
        }
    }

    /// Records that `generation` (spec digest `digest`) now runs: after the apply succeeded.
    pub fn record(&mut self, generation: i64, digest: String) {
        self.applied.retain(|(g, _)| *g != generation);
        self.applied.push((generation, digest));
        if self.applied.len() > REMEMBERED {
            let extra = self.applied.len() - REMEMBERED;
            self.applied.drain(..extra);
        }
        self.current = generation;
        self.highest = self.highest.max(generation);
    }

    /// Detach: every later request is refused.
    pub fn detach(&mut self) {
        self.detached = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn forward_back_to_what_was_applied_never_to_what_was_not() {
        let mut g = Generations::started(1, d("a"));
        assert_eq!(g.check(1, "a"), Ok(Step::Unchanged));
        assert_eq!(g.check(1, "b"), Err(Refusal::SameGeneration(1)));
        assert_eq!(g.check(0, "a"), Err(Refusal::NotPositive(0)));
        assert_eq!(g.check(i64::MIN, "a"), Err(Refusal::NotPositive(i64::MIN)));
        assert_eq!(g.check(3, "c"), Ok(Step::Forward));
        g.record(3, d("c"));
        // the rollback: generation 1 with its spec, applied before by this data plane
        assert_eq!(g.check(1, "a"), Ok(Step::Return));
        assert_eq!(g.check(1, "c"), Err(Refusal::SameGeneration(1)));
        // never applied here: stale, whatever the spec
        assert_eq!(
            g.check(2, "a"),
            Err(Refusal::Stale {
                requested: 2,
                highest: 3
            })
        );
        g.record(1, d("a"));
        assert_eq!((g.current(), g.highest()), (1, 3));
        // after the return the highest still counts: 2 stays stale, 3 may come back, 4 goes forward
        assert!(matches!(g.check(2, "x"), Err(Refusal::Stale { .. })));
        assert_eq!(g.check(3, "c"), Ok(Step::Return));
        assert_eq!(g.check(3, "a"), Err(Refusal::SameGeneration(3)));
        assert_eq!(g.check(4, "d"), Ok(Step::Forward));
        g.detach();
        for (generation, digest) in [(1, "a"), (3, "c"), (5, "e")] {
            assert_eq!(g.check(generation, digest), Err(Refusal::Detached));
        }
    }

    #[test]
    fn only_the_last_generations_are_remembered() {
        let mut g = Generations::default();
        assert_eq!(g.check(1, "x"), Ok(Step::Forward), "nothing applied yet");
        let n = REMEMBERED as i64 + 4;
        for i in 1..=n {
            g.record(i, format!("s{i}"));
        }
        assert_eq!(g.applied.len(), REMEMBERED);
        assert!(matches!(g.check(1, "s1"), Err(Refusal::Stale { .. })));
        let oldest = n - REMEMBERED as i64 + 1;
        assert_eq!(g.check(oldest, &format!("s{oldest}")), Ok(Step::Return));
        // a return moves a generation to the newest end: it is not the next to be forgotten
        g.record(oldest, format!("s{oldest}"));
        g.record(n + 1, d("new"));
        assert_eq!(g.check(oldest, &format!("s{oldest}")), Ok(Step::Return));
        assert!(matches!(
            g.check(oldest + 1, &format!("s{}", oldest + 1)),
            Err(Refusal::Stale { .. })
        ));
    }

    #[test]
    fn the_record_reads_back_and_old_records_without_detached_read() {
        let mut g = Generations::started(2, d("a"));
        g.record(5, d("b"));
        let text = serde_json::to_string(&g).expect("encode");
        assert_eq!(
            serde_json::from_str::<Generations>(&text).expect("decode"),
            g
        );
        let old: Generations =
            serde_json::from_str(r#"{"current":2,"highest":2,"applied":[[2,"a"]]}"#)
                .expect("without detached");
        assert!(!old.detached());
    }

    #[test]
    fn digests_follow_the_read_spec_not_the_bytes() {
        let digest = |json: &str| spec_digest(&read_request("lab", "t", json).expect(json).spec);
        let a = digest(
            r#"{"functions":[{"name":"m","type":"monitor","monitor":{}}],"interfaces":{"ingress":"eth0"}}"#,
        );
        // the same spec, keys in another order and a default spelt out
        let b = digest(
            r#"{"interfaces":{"ingress":"eth0"},"dataplane":{"hook":"auto"},"functions":[{"type":"monitor","name":"m","monitor":{}}]}"#,
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let c = digest(
            r#"{"functions":[{"name":"n","type":"monitor","monitor":{}}],"interfaces":{"ingress":"eth0"}}"#,
        );
        assert_ne!(a, c);
        let e = read_request("lab", "t", r#"{"functions":[], "interfacez": {}}"#)
            .expect_err("unknown field");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("interfacez"), "{}", e.message());
    }
}
