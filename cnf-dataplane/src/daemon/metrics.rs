//! `/metrics`: per-function packets, bytes, passes, drops by reason and latency histograms, read from the
//! kernel's per-CPU counters at scrape time, in Prometheus text format (encoded by the `prometheus` crate).

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use super::Dataplane;
use super::grpc::DROP_REASONS;
use crate::engine::abi;

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(pairs: &[(&str, &str)], v: u64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v as f64);
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    m.set_gauge(g);
    m
}

/// A Prometheus histogram in seconds from the kernel's log2-ns buckets (bucket i = [2^i, 2^(i+1)) ns).
/// Upper bounds run from 2 ns to ~4.3 s, so 1 µs … 10 ms is resolved to a factor of two. The sum is
/// estimated from bucket midpoints (the kernel keeps no sum).
fn histogram(pairs: &[(&str, &str)], hist: &[u64; abi::HIST_BUCKETS]) -> Metric {
    let mut cumulative = 0u64;
    let mut sum = 0f64;
    let buckets = hist
        .iter()
        .enumerate()
        .map(|(i, n)| {
            cumulative += n;
            sum += *n as f64 * 1.5 * (1u64 << i) as f64 * 1e-9;
            let mut b = Bucket::default();
            b.set_upper_bound((1u64 << (i + 1)) as f64 * 1e-9);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(cumulative);
    h.set_sample_sum(sum);
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    m.set_histogram(h);
    m
}

/// Renders every metric of the running chain.
pub fn render(dp: &Dataplane) -> String {
    let (ns, chain) = dp.chain();
    let base = [("namespace", ns), ("chain", chain)];
    let stats = dp.function_stats();
    let mut packets = Vec::new();
    let mut bytes = Vec::new();
    let mut passed = Vec::new();
    let mut drops = Vec::new();
    let mut latency = Vec::new();
    for (name, (f, s)) in &stats {
        let l = [
            base[0],
            base[1],
            ("function", name.as_str()),
            ("type", f.type_.as_str()),
        ];
        packets.push(counter(&l, s.packets_in));
        bytes.push(counter(&l, s.bytes_in));
        passed.push(counter(&l, s.passed));
        for (i, n) in s
            .dropped
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < DROP_REASONS.len())
        {
            if i == abi::reason::NONE && *n == 0 {
                continue;
            }
            let mut with_reason = l.to_vec();
            with_reason.push(("reason", DROP_REASONS[i]));
            drops.push(counter(&with_reason, *n));
        }
        latency.push(histogram(&l, &s.latency_hist));
    }
    let mut families = vec![
        family(
            "buildvnf_function_packets_total",
            "Packets that entered a function",
            MetricType::COUNTER,
            packets,
        ),
        family(
            "buildvnf_function_bytes_total",
            "Bytes that entered a function",
            MetricType::COUNTER,
            bytes,
        ),
        family(
            "buildvnf_function_passed_total",
            "Packets a function passed on",
            MetricType::COUNTER,
            passed,
        ),
        family(
            "buildvnf_function_drops_total",
            "Packets a function dropped, by reason",
            MetricType::COUNTER,
            drops,
        ),
        family(
            "buildvnf_function_latency_seconds",
            "Time spent in a function (sampled)",
            MetricType::HISTOGRAM,
            latency,
        ),
    ];
    if let Some(c) = dp.chain_counters() {
        let with =
            |result: &'static str, v: u64| counter(&[base[0], base[1], ("result", result)], v);
        families.push(family(
            "buildvnf_chain_packets_total",
            "Packets at the chain entry: classified into the chain, bypassed, completed, broken tail calls",
            MetricType::COUNTER,
            vec![
                with("classified", c.classified),
                with("bypassed", c.bypassed),
                with("completed", c.completed),
                with("broken", c.broken),
            ],
        ));
        families.push(family(
            "buildvnf_chain_latency_seconds",
            "Time from chain entry to verdict (sampled)",
            MetricType::HISTOGRAM,
            vec![histogram(&base, &c.latency_hist)],
        ));
    }
    let attach = dp
        .attachments()
        .iter()
        .map(|a| {
            gauge(
                &[
                    base[0],
                    base[1],
                    ("interface", a.interface.as_str()),
                    ("hook", a.mode),
                ],
                1.0,
            )
        })
        .collect();
    families.push(family(
        "buildvnf_attach_info",
        "The hook the chain is attached with, per interface",
        MetricType::GAUGE,
        attach,
    ));
    families.push(family(
        "buildvnf_applied_generation",
        "The chain generation running",
        MetricType::GAUGE,
        vec![gauge(&base, dp.generation() as f64)],
    ));
    families.push(family(
        "buildvnf_build_info",
        "Version of the data plane",
        MetricType::GAUGE,
        vec![gauge(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    ));
    families.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::new();
    if TextEncoder::new().encode(&families, &mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}
