//! Prints how long reading and validating large chains takes (issue 14's shapes), e.g.
//! `cargo run --release -p buildvnf-crds --example bench-validate`.

#[path = "../tests/support/big.rs"]
mod big;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crds::manifest::{Document, parse_documents, parse_single_chain};

/// The best of `runs` timings of `f` (the first run also warms the schema caches).
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    match last {
        Some(out) => (best, out),
        None => (best, f()),
    }
}

fn main() -> ExitCode {
    let cases = [
        ("10,000 rules, any source", big::any_source_firewall(10_000)),
        (
            "1,250 rules × 64 shared prefixes",
            big::shared_prefix_firewall(1_250, 64),
        ),
        (
            "1,050 rules × 64 shared prefixes",
            big::shared_prefix_firewall(1_050, 64),
        ),
        (
            "5,000 rules × 8 port ranges",
            big::port_range_firewall(5_000),
        ),
        ("10 annotations of 140 kB", big::long_strings(1_400_000)),
    ];
    let mut ok = true;
    // Many documents: each is read and checked on its own.
    let stream = big::many_documents(1_000);
    let (took, docs) = best(5, || parse_documents(&stream));
    let (yaml_only, _) = best(5, || crds::yaml::read_stream(&stream));
    let (saphyr_only, _) = best(5, || crds::yaml::slow(&stream));
    match docs {
        Ok(docs) if docs.iter().all(|d| matches!(d, Document::Chain(_))) => println!(
            "1,000 documents of 7 rules: {:.2} MB; read + validate {:.1} ms (of which YAML parsing {:.1} ms; serde-saphyr alone would take {:.1} ms)",
            stream.len() as f64 / 1e6,
            took.as_secs_f64() * 1e3,
            yaml_only.as_secs_f64() * 1e3,
            saphyr_only.as_secs_f64() * 1e3
        ),
        Ok(docs) => {
            eprintln!(
                "1,000 documents: not all valid: {:?}",
                docs.iter().find(|d| !matches!(d, Document::Chain(_)))
            );
            ok = false;
        }
        Err(e) => {
            eprintln!("1,000 documents: {e}");
            ok = false;
        }
    }
    for (name, text) in &cases {
        let (parse_and_validate, result) = best(5, || parse_single_chain(text));
        let chain = match result {
            Ok(c) => c,
            Err(e) => {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default();
                eprintln!(
                    "{name}: unexpectedly invalid ({} problems), first: {first}",
                    e.0.len()
                );
                ok = false;
                continue;
            }
        };
        let (yaml_only, _) = best(5, || crds::yaml::read_stream(text));
        let (saphyr_only, _) = best(5, || crds::yaml::slow(text));
        let (validate_only, _) = best(5, || crds::validate(&chain));
        let object = serde_json::to_value(&chain).unwrap_or_default();
        let (crd_only, _) = best(5, || crds::schema::check(&object));
        let shadow = chain
            .spec
            .functions
            .iter()
            .find_map(|f| f.firewall.as_ref())
            .map(|fw| {
                let parsed = crds::validate::ParsedRules::of(fw);
                best(5, || parsed.shadowed()).0
            });
        println!(
            "{name}: {:.2} MB; read + validate {:.1} ms (of which YAML parsing {:.1} ms; serde-saphyr alone would take {:.1} ms), validate() alone {:.1} ms (of which the CRD's schema and CEL rules {:.1} ms, the shadowed-rule analysis {:.1} ms)",
            text.len() as f64 / 1e6,
            parse_and_validate.as_secs_f64() * 1e3,
            yaml_only.as_secs_f64() * 1e3,
            saphyr_only.as_secs_f64() * 1e3,
            validate_only.as_secs_f64() * 1e3,
            crd_only.as_secs_f64() * 1e3,
            shadow.unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
