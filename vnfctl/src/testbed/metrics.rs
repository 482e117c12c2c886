//! Reads cnf-dataplane's Prometheus text inside the CNF namespace and turns it into a per-function report.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::TestbedError;

/// GETs `http://ADDR/metrics` from inside network namespace `netns`; returns the body.
pub fn scrape(netns: &str, addr: SocketAddr) -> Result<String, TestbedError> {
    let io = |context: &str, source: std::io::Error| TestbedError::Io {
        context: format!("{context} http://{addr}/metrics in {netns}"),
        source,
    };
    let handle = pktgen::netns::spawn_in(netns, move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: testbed\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    });
    let text = handle
        .join()
        .map_err(|_| TestbedError::Dataplane {
            message: format!("scraping the metrics in {netns}: the thread panicked"),
            log: String::new(),
        })??
        .map_err(|e| io("scraping", e))?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200") => {
            Ok(body.to_string())
        }
        _ => Err(TestbedError::Dataplane {
            message: format!("http://{addr}/metrics in {netns} did not answer 200"),
            log: text.lines().next().unwrap_or_default().to_string(),
        }),
    }
}

/// One sample line: metric name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels in order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses Prometheus text exposition (comments skipped; label values without escaped quotes).
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => {
                let rest = rest.trim_end_matches('}');
                let mut labels = Vec::new();
                for part in rest.split("\",") {
                    if let Some((k, v)) = part.split_once("=\"") {
                        labels.push((k.trim().to_string(), v.trim_end_matches('"').to_string()));
                    }
                }
                (n.to_string(), labels)
            }
            None => (head.to_string(), Vec::new()),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// What one function did, from the counters and its latency histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunctionReport {
    /// Function name.
    pub name: String,
    /// Packets in.
    pub packets: u64,
    /// Packets passed on.
    pub passed: u64,
    /// Drops by reason (non-zero only).
    pub drops: BTreeMap<String, u64>,
    /// Histogram upper bounds (seconds) with cumulative counts.
    pub buckets: Vec<(f64, u64)>,
}

impl FunctionReport {
    /// Upper bound (ns) of the bucket holding quantile `q`, or None without samples.
    pub fn quantile_ns(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total == 0 {
            return None;
        }
        self.buckets
            .iter()
            .find(|(_, c)| *c as f64 >= q * total as f64)
            .map(|(le, _)| le * 1e9)
            .filter(|v| v.is_finite())
    }
}

/// Per-function reports in the order the metrics list them (the chain order).
pub fn functions(samples: &[Sample]) -> Vec<FunctionReport> {
    let mut out: Vec<FunctionReport> = Vec::new();
    fn get(out: &mut Vec<FunctionReport>, name: &str) -> usize {
        match out.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                out.push(FunctionReport {
                    name: name.to_string(),
                    ..Default::default()
                });
                out.len() - 1
            }
        }
    }
    for s in samples {
        let Some(f) = s.label("function") else {
            continue;
        };
        match s.name.as_str() {
            "buildvnf_function_packets_total" => {
                let i = get(&mut out, f);
                out[i].packets = s.value as u64;
            }
            "buildvnf_function_passed_total" => {
                let i = get(&mut out, f);
                out[i].passed = s.value as u64;
            }
            "buildvnf_function_drops_total" if s.value > 0.0 => {
                let i = get(&mut out, f);
                let reason = s.label("reason").unwrap_or("unknown").to_string();
                out[i].drops.insert(reason, s.value as u64);
            }
            "buildvnf_function_latency_seconds_bucket" => {
                let i = get(&mut out, f);
                let le = match s.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(v) => v.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                out[i].buckets.push((le, s.value as u64));
            }
            _ => {}
        }
    }
    out
}

/// The `buildvnf_attach_info` lines: (interface, hook) per attachment.
pub fn attachments(samples: &[Sample]) -> Vec<(String, String)> {
    samples
        .iter()
        .filter(|s| s.name == "buildvnf_attach_info" && s.value > 0.0)
        .map(|s| {
            (
                s.label("interface").unwrap_or_default().to_string(),
                s.label("hook").unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The per-function table `vnfctl testbed report` and the main job print, functions in `order` (chain order;
/// functions it does not name follow in the metrics' order).
pub fn report_table(samples: &[Sample], order: &[String]) -> String {
    let fmt_ns = |v: Option<f64>| v.map_or("-".to_string(), |n| format!("{n:.0} ns"));
    let mut s = format!(
        "   {:<8} {:>10} {:>10}  {:<34} {:>9} {:>9}\n",
        "function", "in", "passed", "drops", "p50<=", "p99<="
    );
    let mut fs = functions(samples);
    fs.sort_by_key(|f| {
        order
            .iter()
            .position(|o| *o == f.name)
            .unwrap_or(usize::MAX)
    });
    for f in fs {
        let drops = if f.drops.is_empty() {
            "-".to_string()
        } else {
            f.drops
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        s.push_str(&format!(
            "   {:<8} {:>10} {:>10}  {:<34} {:>9} {:>9}\n",
            f.name,
            f.packets,
            f.passed,
            drops,
            fmt_ns(f.quantile_ns(0.5)),
            fmt_ns(f.quantile_ns(0.99))
        ));
    }
    for (iface, hook) in attachments(samples) {
        s.push_str(&format!("   attached: {iface} with {hook}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP buildvnf_function_packets_total x
buildvnf_function_packets_total{namespace="default",chain="edge",function="fw",type="firewall"} 12
buildvnf_function_passed_total{namespace="default",chain="edge",function="fw",type="firewall"} 10
buildvnf_function_drops_total{namespace="default",chain="edge",function="fw",type="firewall",reason="firewall_rule"} 2
buildvnf_function_drops_total{namespace="default",chain="edge",function="fw",type="firewall",reason="malformed"} 0
buildvnf_function_latency_seconds_bucket{namespace="default",chain="edge",function="fw",le="0.000000128"} 3
buildvnf_function_latency_seconds_bucket{namespace="default",chain="edge",function="fw",le="0.000000256"} 9
buildvnf_function_latency_seconds_bucket{namespace="default",chain="edge",function="fw",le="0.000001024"} 10
buildvnf_function_latency_seconds_bucket{namespace="default",chain="edge",function="fw",le="+Inf"} 10
buildvnf_attach_info{namespace="default",chain="edge",interface="eth0",hook="xdp-native"} 1
"#;

    #[test]
    fn report_reads_counters_drops_and_quantiles() {
        let samples = parse(TEXT);
        let f = functions(&samples);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].packets, f[0].passed), (12, 10));
        assert_eq!(f[0].drops.get("firewall_rule"), Some(&2));
        assert!(!f[0].drops.contains_key("malformed"));
        assert_eq!(f[0].quantile_ns(0.5).map(|v| v.round()), Some(256.0));
        assert_eq!(f[0].quantile_ns(0.99).map(|v| v.round()), Some(1024.0));
        assert_eq!(
            attachments(&samples),
            vec![("eth0".to_string(), "xdp-native".to_string())]
        );
        let t = report_table(&samples, &["fw".to_string()]);
        assert!(
            t.contains("firewall_rule=2") && t.contains("eth0 with xdp-native"),
            "{t}"
        );
    }
}
