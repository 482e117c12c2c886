//! Validation takes time proportional to the document: the shapes that made the shadowed-rule check quadratic
//! (issue 14: 7 s in release, about 5 minutes in debug, for 1,250 rules × 64 prefixes) finish within a generous
//! bound even in a debug build. Release figures: `cargo run --release -p buildvnf-crds --example bench-validate`.

#[path = "support/big.rs"]
mod big;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crds::manifest::parse_single_chain;

/// Reads and validates `text` on a thread, failing as soon as `bound` has passed.
fn read_and_validate_within(name: &str, text: String, bound: Duration) -> Duration {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let result = parse_single_chain(&text).map(|_| ());
        let _ = tx.send(result);
    });
    match rx.recv_timeout(bound) {
        Ok(Ok(())) => start.elapsed(),
        Ok(Err(e)) => panic!("{name}: should be valid:\n{e}"),
        Err(_) => panic!(
            "{name}: not read and validated within {bound:?} (is the shadowed-rule check quadratic?)"
        ),
    }
}

#[test]
fn a_document_at_etcds_limit_validates_in_bounded_time() {
    let text = big::shared_prefix_firewall(1_250, 64);
    assert!(text.len() > 1_400_000, "{} bytes", text.len());
    let took = read_and_validate_within("1,250 rules × 64 prefixes", text, Duration::from_secs(30));
    println!("1,250 rules × 64 shared prefixes: {took:?} (debug build)");
}

#[test]
fn ten_thousand_rules_validate_in_bounded_time() {
    let took = read_and_validate_within(
        "10,000 rules from any source",
        big::any_source_firewall(10_000),
        Duration::from_secs(30),
    );
    println!("10,000 rules from any source: {took:?} (debug build)");
}

#[test]
fn the_other_worst_shapes_validate_in_bounded_time() {
    for (name, text) in [
        (
            "5,000 rules × 8 port ranges",
            big::port_range_firewall(5_000),
        ),
        ("10 annotations of 140 kB", big::long_strings(1_400_000)),
    ] {
        assert!(text.len() <= 1_500_000, "{name}: {} bytes", text.len());
        let took = read_and_validate_within(name, text, Duration::from_secs(30));
        println!("{name}: {took:?} (debug build)");
    }
    let stream = big::many_documents(1_000);
    assert!(stream.len() <= 1_500_000, "{} bytes", stream.len());
    let start = Instant::now();
    let docs = crds::manifest::parse_documents(&stream).expect("YAML");
    let took = start.elapsed();
    assert_eq!(docs.len(), 1_000);
    for d in &docs {
        assert!(matches!(d, crds::manifest::Document::Chain(_)), "{d:?}");
    }
    assert!(took < Duration::from_secs(30), "1,000 documents: {took:?}");
    println!("1,000 documents of 7 rules: {took:?} (debug build)");
}
