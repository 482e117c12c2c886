//! `/metrics`: per-function packets, bytes, passes, drops by reason and latency histograms, read from the
//! kernel's per-CPU counters at scrape time, in Prometheus text format (encoded by the `prometheus` crate).
//!
//! Labels: every chain metric carries `namespace` and `chain`; per-function ones add `function` and `type`
//! (drops add `reason`). The kernel keeps its counters per function instance and per chain generation, not
//! per interface, so only the per-interface facts carry `interface`: `buildvnf_attach_info` (with `hook`),
//! `buildvnf_interface_tx_checksum_offload` (read at scrape time) and `buildvnf_offload_disabled_info`
//! (what the data plane turned off at attach, see [`cnf_dataplane::compose::offload`]).
//!
//! Latency histograms are in seconds with the kernel's log2 bounds: 2 ns, 4 ns, … 2^31 ns (≈ 2.1 s), then
//! `+Inf`, so 1 µs to 10 ms is resolved with one bucket per octave (bounds 1.024 µs … 16.8 ms).

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use crate::grpc::DROP_REASONS;
use cnf_dataplane::compose::{Dataplane, offload};
use cnf_dataplane::engine::abi;

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

/// Upper bounds (seconds) of the exported buckets: kernel bucket i holds [2^i, 2^(i+1)) ns, and the last
/// kernel bucket also takes everything longer (the kernel clamps), so its bound is `+Inf`, which the
/// encoder adds from the sample count.
pub fn bucket_bounds() -> Vec<f64> {
    (1..abi::HIST_BUCKETS)
        .map(|i| (1u64 << i) as f64 * 1e-9)
        .collect()
}

/// A Prometheus histogram in seconds from the kernel's log2-ns buckets (see [`bucket_bounds`]). The sum is
/// estimated from bucket midpoints (the kernel keeps no sum).
fn histogram(pairs: &[(&str, &str)], hist: &[u64; abi::HIST_BUCKETS]) -> Metric {
    let mut cumulative = 0u64;
    let mut sum = 0f64;
    let mut buckets = Vec::with_capacity(abi::HIST_BUCKETS);
    for (i, n) in hist.iter().enumerate() {
        cumulative += n;
        sum += *n as f64 * 1.5 * (1u64 << i) as f64 * 1e-9;
        if let Some(bound) = bucket_bounds().get(i) {
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
    }
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
    let mut families = function_families(dp, &base);
    families.extend(chain_families(dp, &base));
    families.extend(interface_families(dp, &base));
    families.extend(userspace_families(dp, &base));
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

/// Per function (labels: function, type): packets, bytes, passes, drops by reason, latency.
fn function_families(dp: &Dataplane, base: &[(&str, &str); 2]) -> Vec<MetricFamily> {
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
    vec![
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
    ]
}

/// The whole chain: packets at the entry by result, and the chain's latency.
fn chain_families(dp: &Dataplane, base: &[(&str, &str); 2]) -> Vec<MetricFamily> {
    let Some(c) = dp.chain_counters() else {
        return Vec::new();
    };
    let with = |result: &'static str, v: u64| counter(&[base[0], base[1], ("result", result)], v);
    vec![
        family(
            "buildvnf_chain_packets_total",
            "Packets at the chain entry: classified into the chain, bypassed, completed, broken tail \
             calls, passed as the pod's own control-plane traffic (never decrease: every generation, \
             kept across re-adoptions)",
            MetricType::COUNTER,
            vec![
                with("classified", c.classified),
                with("bypassed", c.bypassed),
                with("completed", c.completed),
                with("broken", c.broken),
                with("control_plane", c.control_plane),
            ],
        ),
        family(
            "buildvnf_chain_latency_seconds",
            "Time from chain entry to verdict (sampled), either path",
            MetricType::HISTOGRAM,
            vec![histogram(base, &c.latency_hist)],
        ),
        family(
            "buildvnf_chain_fast_path_packets_total",
            "Of the completed packets: those of established flows that took the fast path (one flow \
             lookup, no tail call; in no function's latency histogram)",
            MetricType::COUNTER,
            vec![counter(base, c.fast)],
        ),
        family(
            "buildvnf_chain_fast_path_latency_seconds",
            "Time from chain entry to verdict of the fast-path packets (sampled)",
            MetricType::HISTOGRAM,
            vec![histogram(base, &c.fast_hist)],
        ),
    ]
}

/// Per attached interface (label: interface): the hook, transmit checksum offload (read now), and the
/// offloads the data plane turned off at attach.
fn interface_families(dp: &Dataplane, base: &[(&str, &str); 2]) -> Vec<MetricFamily> {
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
    let tx_csum = dp
        .attachments()
        .iter()
        .filter_map(|a| {
            let on = offload::tx_checksum(&a.interface).ok()?;
            Some(gauge(
                &[base[0], base[1], ("interface", a.interface.as_str())],
                f64::from(u8::from(on)),
            ))
        })
        .collect();
    let disabled = offload::changes()
        .iter()
        .map(|c| {
            gauge(
                &[
                    base[0],
                    base[1],
                    ("interface", c.interface.as_str()),
                    ("driver", c.driver.as_str()),
                    ("feature", c.feature),
                ],
                1.0,
            )
        })
        .collect();
    vec![
        family(
            "buildvnf_attach_info",
            "The hook the chain is attached with, per interface",
            MetricType::GAUGE,
            attach,
        ),
        family(
            "buildvnf_interface_tx_checksum_offload",
            "Transmit checksum offload of an attached interface (1 on, 0 off), read at scrape time",
            MetricType::GAUGE,
            tx_csum,
        ),
        family(
            "buildvnf_offload_disabled_info",
            "An offload the data plane turned off at attach because it breaks rewritten packets (veth)",
            MetricType::GAUGE,
            disabled,
        ),
    ]
}

/// The user-space tier, per worker (labels: interface, queue): packets and bytes received and sent,
/// drops by reason, ring depths (the tier's queue depth), the worker's CPU time, and whether the socket
/// is zero-copy.
fn userspace_families(dp: &Dataplane, base: &[(&str, &str); 2]) -> Vec<MetricFamily> {
    let mut packets = Vec::new();
    let mut bytes = Vec::new();
    let mut drops = Vec::new();
    let mut depth = Vec::new();
    let mut cpu = Vec::new();
    let mut info = Vec::new();
    for (iface, queue, st) in dp.userspace_stats() {
        let q = queue.to_string();
        let l = [
            base[0],
            base[1],
            ("interface", iface.as_str()),
            ("queue", q.as_str()),
        ];
        let with = |k: &'static str, v: &'static str| {
            let mut v2 = l.to_vec();
            v2.push((k, v));
            v2
        };
        packets.push(counter(&with("direction", "rx"), st.rx_packets));
        packets.push(counter(&with("direction", "tx"), st.tx_packets));
        bytes.push(counter(&with("direction", "rx"), st.rx_bytes));
        bytes.push(counter(&with("direction", "tx"), st.tx_bytes));
        for (reason, n) in &st.dropped {
            drops.push(counter(&with("reason", reason.as_str()), *n));
        }
        drops.push(counter(
            &with("reason", "kernel_rx_dropped"),
            st.kernel_rx_dropped,
        ));
        depth.push(gauge(&with("ring", "fill"), st.fill_ring_depth as f64));
        depth.push(gauge(&with("ring", "rx"), st.rx_ring_depth as f64));
        let mut c = Counter::default();
        c.set_value(st.cpu_ns as f64 / 1e9);
        let mut m = Metric::default();
        m.set_label(labels(&l));
        m.set_counter(c);
        cpu.push(m);
        info.push(gauge(
            &[
                l[0],
                l[1],
                l[2],
                l[3],
                ("polling", st.polling.as_str()),
                ("mode", if st.zero_copy { "zero-copy" } else { "copy" }),
            ],
            1.0,
        ));
    }
    vec![
        family(
            "buildvnf_userspace_packets_total",
            "Frames the user-space tier received from (rx) and sent to (tx) its AF_XDP rings",
            MetricType::COUNTER,
            packets,
        ),
        family(
            "buildvnf_userspace_bytes_total",
            "Bytes of those frames",
            MetricType::COUNTER,
            bytes,
        ),
        family(
            "buildvnf_userspace_drops_total",
            "Frames the user-space tier dropped, by reason",
            MetricType::COUNTER,
            drops,
        ),
        family(
            "buildvnf_userspace_queue_depth",
            "Frames waiting in the tier's AF_XDP rings (fill: for the kernel, rx: for the worker)",
            MetricType::GAUGE,
            depth,
        ),
        family(
            "buildvnf_userspace_cpu_seconds_total",
            "CPU time of the tier's worker thread (the polling policy's cost)",
            MetricType::COUNTER,
            cpu,
        ),
        family(
            "buildvnf_userspace_info",
            "Polling policy and AF_XDP mode of each worker",
            MetricType::GAUGE,
            info,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_resolve_one_microsecond_to_ten_milliseconds() {
        let b = bucket_bounds();
        assert!(b.windows(2).all(|w| w[0] < w[1]), "increasing");
        assert!(b.iter().all(|x| x.is_finite() && *x > 0.0));
        // A bound at or below 1 µs and one at or above 10 ms …
        let lo = b.iter().rposition(|x| *x <= 1e-6).expect("a bound <= 1 µs");
        let hi = b
            .iter()
            .position(|x| *x >= 10e-3)
            .expect("a bound >= 10 ms");
        // … with at least one bucket per octave in between.
        for w in b[lo..=hi].windows(2) {
            assert!(w[1] / w[0] <= 2.0 + 1e-9, "{} -> {}", w[0], w[1]);
        }
        assert!(hi - lo >= 13, "1 µs .. 10 ms spans > 13 octaves");
        assert_eq!(
            b.len(),
            abi::HIST_BUCKETS - 1,
            "the last kernel bucket is +Inf"
        );
    }

    fn exposition(hist: &[u64; abi::HIST_BUCKETS]) -> String {
        let f = family(
            "t_seconds",
            "test",
            MetricType::HISTOGRAM,
            vec![histogram(&[("function", "fw")], hist)],
        );
        let mut out = Vec::new();
        TextEncoder::new().encode(&[f], &mut out).expect("encode");
        String::from_utf8(out).expect("utf8")
    }

    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn histogram_is_cumulative_and_clamped_samples_land_in_inf() {
        let mut h = [0u64; abi::HIST_BUCKETS];
        h[9] = 3; // [512, 1024) ns
        h[12] = 5; // [4096, 8192) ns
        h[abi::HIST_BUCKETS - 1] = 2; // >= 2^31 ns, clamped by the kernel
        let t = exposition(&h);
        let le = |bound: &str| {
            value(
                &t,
                &format!("t_seconds_bucket{{function=\"fw\",le=\"{bound}\"}}"),
            )
        };
        assert_eq!(le("0.000000512"), Some(0.0), "{t}");
        assert_eq!(le("0.000001024"), Some(3.0), "{t}");
        assert_eq!(le("0.000004096"), Some(3.0), "{t}");
        assert_eq!(le("0.000008192"), Some(8.0), "{t}");
        assert_eq!(le("2.147483648"), Some(8.0), "{t}");
        assert_eq!(le("+Inf"), Some(10.0), "{t}");
        assert_eq!(value(&t, "t_seconds_count"), Some(10.0), "{t}");
        assert!(
            !t.contains("le=\"4.294967296\""),
            "no finite bound for the clamped bucket: {t}"
        );
        let sum = value(&t, "t_seconds_sum").expect("sum");
        let want = (3.0 * 768.0 + 5.0 * 6144.0 + 2.0 * 1.5 * 2f64.powi(31)) * 1e-9;
        assert!((sum - want).abs() < 1e-12, "{sum} vs {want}");
    }
}
