//! Every `buildvnf_*` metric the Grafana dashboard and the chart's PrometheusRule query is one the code exports
//! (names derived from the string literals of cnf-dataplane-daemon/src/metrics.rs and operator/src/metrics.rs;
//! histograms also as `_bucket`, `_sum`, `_count`), every label they select or group by is one the exporters or
//! Prometheus' target discovery set, and the dashboard has the panels issue 7 asks for.

mod common;

use std::collections::BTreeSet;

use common::{exported_metrics, exported_series, metric_tokens, read};
use serde_json::Value;

#[test]
fn metric_name_extraction_finds_counters_gauges_and_histograms() {
    let m = exported_metrics();
    assert!(m.len() >= 8, "too few exported metrics found: {m:?}");
    assert!(
        m.values().filter(|h| **h).count() >= 2,
        "no histograms found: {m:?}"
    );
    assert!(
        m.values().filter(|h| !**h).count() >= 6,
        "too few counters/gauges: {m:?}"
    );
    // A histogram's base name is not itself a series, its _bucket is.
    let (hist, _) = m.iter().find(|(_, h)| **h).expect("a histogram");
    let series = exported_series();
    assert!(!series.contains(hist) && series.contains(&format!("{hist}_bucket")));
}

fn check_names(file: &str, text: &str) {
    let used = metric_tokens(text);
    assert!(!used.is_empty(), "{file} uses no buildvnf_ metric");
    let series = exported_series();
    let unknown: Vec<&String> = used.iter().filter(|u| !series.contains(*u)).collect();
    assert!(
        unknown.is_empty(),
        "{file} uses metrics the code does not export: {unknown:?}\nexported series: {series:?}"
    );
}

#[test]
fn dashboard_metric_names_are_exported() {
    check_names(
        "dashboards/build-vnf.json",
        &read("dashboards/build-vnf.json"),
    );
}

#[test]
fn prometheus_rule_metric_names_are_exported() {
    let f = "charts/build-vnf/templates/prometheusrule.yaml";
    check_names(f, &read(f));
}

/// Every PromQL expression of the dashboard: panel targets and template-variable queries.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("target expr").to_string());
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// Label names in `{name op "value", …}` matchers and `by (…)` / `without (…)` clauses of a PromQL expression.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find('{') {
        let end = rest[i..].find('}').expect("closing brace") + i;
        for m in rest[i + 1..end].split(',') {
            let name: String = m
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = &rest[end + 1..];
    }
    for kw in ["by (", "without ("] {
        for (i, _) in expr.match_indices(kw) {
            let inner = &expr[i + kw.len()..];
            let inner = &inner[..inner.find(')').expect("closing paren")];
            out.extend(inner.split(',').map(|s| s.trim().to_string()));
        }
    }
    // label_values(metric, label)
    for (i, _) in expr.match_indices("label_values(") {
        let inner = &expr[i + 13..];
        let inner = &inner[..inner.rfind(')').expect("closing paren")];
        if let Some(label) = inner.rsplit(',').next() {
            out.insert(label.trim().to_string());
        }
    }
    out
}

#[test]
fn dashboard_labels_are_exported_or_target_labels() {
    let d: Value =
        serde_json::from_str(&read("dashboards/build-vnf.json")).expect("dashboard JSON");
    // Labels the exporters set: every short string literal of the metric sources (label names appear there).
    let mut known: BTreeSet<String> = BTreeSet::new();
    for file in common::METRIC_SOURCES {
        let src = read(file);
        for lit in src.split('"').skip(1).step_by(2) {
            if !lit.is_empty() && lit.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                known.insert(lit.to_string());
            }
        }
    }
    // Labels Prometheus adds: the histogram bucket bound, and target labels from pod/service discovery.
    known.extend(
        [
            "le",
            "pod",
            "instance",
            "job",
            "container",
            "service",
            "endpoint",
        ]
        .map(String::from),
    );
    let exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 15, "too few expressions: {}", exprs.len());
    for e in &exprs {
        for label in label_names(e) {
            assert!(
                known.contains(&label),
                "dashboard label {label:?} (in {e}) is not exported"
            );
        }
    }
}

#[test]
fn dashboard_has_the_required_panels() {
    let d: Value =
        serde_json::from_str(&read("dashboards/build-vnf.json")).expect("dashboard JSON");
    let panels = d["panels"].as_array().expect("panels");
    let exprs = dashboard_exprs(&d).join("\n");
    // A heatmap of a latency histogram, repeated per function.
    assert!(panels.iter().any(|p| {
        p["type"] == "heatmap"
            && p["repeat"] == "function"
            && p["targets"][0]["expr"]
                .as_str()
                .is_some_and(|e| e.contains("latency_seconds_bucket"))
    }));
    for q in [
        "histogram_quantile(0.5,",
        "histogram_quantile(0.99,",
        "histogram_quantile(0.999,",
    ] {
        assert!(exprs.contains(q), "no {q} panel");
    }
    for (what, metric) in [
        ("chain throughput", "buildvnf_chain_packets_total"),
        ("drops by reason", "buildvnf_function_drops_total"),
        ("attach hook per interface", "buildvnf_attach_info"),
        ("replica readiness", "buildvnf_chain_condition"),
        (
            "operator reconcile rate",
            "buildvnf_operator_reconciles_total",
        ),
        (
            "operator reconcile errors",
            "buildvnf_operator_reconcile_errors_total",
        ),
    ] {
        assert!(exprs.contains(metric), "no {what} panel ({metric})");
    }
    assert!(exprs.contains("by (namespace, chain, function, reason)"));
    // Unique panel ids, every panel on the grid.
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "duplicate panel ids");
    assert!(
        panels
            .iter()
            .all(|p| p["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24))
    );
}
