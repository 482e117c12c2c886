//! The parsers of scripts/e2e.sh that decide its verdicts, run here on crafted /metrics text because the script
//! itself needs a kind cluster and is not run in CI: `scrape_counters` (which series of a Prometheus text
//! exposition are counters) and `counters_never_decrease` (the check across live edits and a sidecar kill).

mod common;

use std::process::Command;

use common::Scratch;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Numbers the scratch directories of the cases (tests run in parallel).
static CASE: AtomicUsize = AtomicUsize::new(0);

/// The text of shell function `name` in scripts/e2e.sh, from `name() {` to its closing `}` line.
fn function(script: &str, name: &str) -> String {
    let start = script
        .find(&format!("\n{name}() {{\n"))
        .unwrap_or_else(|| panic!("scripts/e2e.sh has no function {name}"));
    let body = &script[start + 1..];
    let end = body.find("\n}\n").expect("the function's closing brace") + 3;
    body[..end].to_string()
}

/// Runs `scrape_counters` on `before` and `after` (the /metrics text of a pod at two moments), then
/// `counters_never_decrease` on the two scrapes; returns (exit status 0?, combined output).
fn compare(before: &str, after: &str) -> (bool, String) {
    let script = common::read("scripts/e2e.sh");
    let case = Scratch::new(&format!(
        "e2e-helpers-{}",
        CASE.fetch_add(1, Ordering::Relaxed)
    ));
    case.write("m0", before);
    case.write("m1", after);
    // Stubs: `k get --raw …` prints the metrics file named by $METRICS; `fail` exits like the script's does.
    let program = format!(
        "set -euo pipefail\nfail() {{ echo \"FAIL: $*\"; exit 1; }}\ninfo() {{ echo \"info: $*\"; }}\n\
         k() {{ cat \"$METRICS\"; }}\n{}{}\ncd {dir}\nMETRICS=m0 scrape_counters ns pod >s0\n\
         METRICS=m1 scrape_counters ns pod >s1\ncounters_never_decrease s0 s1 test\n",
        function(&script, "scrape_counters"),
        function(&script, "counters_never_decrease"),
        dir = case.0.display()
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .expect("bash runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const BEFORE: &str = "\
# HELP buildvnf_chain_packets_total Packets by result.
# TYPE buildvnf_chain_packets_total counter
buildvnf_chain_packets_total{chain=\"lab\",result=\"classified\"} 141
buildvnf_chain_packets_total{chain=\"lab\",result=\"bypassed\"} 3
# TYPE buildvnf_function_latency_seconds histogram
buildvnf_function_latency_seconds_bucket{function=\"fw\",le=\"1e-06\"} 10
buildvnf_function_latency_seconds_bucket{function=\"fw\",le=\"+Inf\"} 12
buildvnf_function_latency_seconds_sum{function=\"fw\"} 0.0001
buildvnf_function_latency_seconds_count{function=\"fw\"} 12
# TYPE buildvnf_attach_info gauge
buildvnf_attach_info{hook=\"xdp\"} 1
# TYPE buildvnf_drops counter
buildvnf_drops{reason=\"a label with spaces\"} 5
";

#[test]
fn counters_that_grow_and_gauges_that_fall_pass() {
    let after = BEFORE
        .replace("} 141", "} 150")
        .replace("le=\"+Inf\"} 12", "le=\"+Inf\"} 13")
        .replace("attach_info{hook=\"xdp\"} 1", "attach_info{hook=\"xdp\"} 0")
        .replace("spaces\"} 5", "spaces\"} 6");
    let (ok, out) = compare(BEFORE, &after);
    assert!(ok, "a valid update was reported as a decrease:\n{out}");
    assert!(
        out.contains("info: 7 counter series"),
        "the counter series were not all found (counters, histogram series, labels with spaces):\n{out}"
    );
}

#[test]
fn a_counter_that_falls_or_vanishes_fails() {
    // The regression seen on a real cluster: classified fell from 141 to 88 at a live update.
    let fell = BEFORE.replace("} 141", "} 88");
    let (ok, out) = compare(BEFORE, &fell);
    assert!(
        !ok && out.contains("decreased:") && out.contains("141 -> 88"),
        "{out}"
    );
    let gone: String = BEFORE
        .lines()
        .filter(|l| !l.contains("bypassed"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (ok, out) = compare(BEFORE, &gone);
    assert!(!ok && out.contains("gone:"), "{out}");
    let bucket_fell = BEFORE.replace("le=\"1e-06\"} 10", "le=\"1e-06\"} 9");
    let (ok, out) = compare(BEFORE, &bucket_fell);
    assert!(
        !ok && out.contains("_bucket"),
        "a histogram bucket that fell passed:\n{out}"
    );
    let spaced_fell = BEFORE.replace("spaces\"} 5", "spaces\"} 4");
    let (ok, out) = compare(BEFORE, &spaced_fell);
    assert!(!ok && out.contains("a label with spaces"), "{out}");
}

#[test]
fn an_empty_scrape_fails() {
    let (ok, out) = compare("", BEFORE);
    assert!(!ok && out.contains("no counters scraped"), "{out}");
}
