//! Shared helpers of the packaging tests: repository paths, file reading, YAML → JSON, and facts read from the
//! workspace's own sources (package and binary names, path dependencies, exported metric names).
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The text of `rel` (relative to the repository root); panics naming the file.
pub fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One YAML document as JSON; panics naming the file.
pub fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

/// Files directly in `dir` (relative to the repository root) whose names end with `suffix`, sorted.
pub fn files(dir: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(suffix))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

/// The workspace version in the root Cargo.toml, e.g. `0.1.0`.
pub fn workspace_version() -> String {
    let toml = read("Cargo.toml");
    let mut in_section = false;
    for line in toml.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_section = l == "[workspace.package]";
        } else if in_section && let Some(v) = l.strip_prefix("version") {
            return v
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"')
                .to_string();
        }
    }
    panic!("no version in [workspace.package] of Cargo.toml");
}

/// The workspace members (folders) listed in the root Cargo.toml.
pub fn members() -> Vec<String> {
    let toml = read("Cargo.toml");
    let line = toml
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line in Cargo.toml");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// What one member's Cargo.toml declares that the packaging refers to.
#[derive(Debug, Default)]
pub struct Package {
    /// The member folder.
    pub dir: String,
    /// `[package] name`.
    pub name: String,
    /// `[[bin]]` names (plus the package name when `src/main.rs` exists and no bin names it).
    pub bins: BTreeSet<String>,
    /// Folders of `path` dependencies in `[dependencies]` and `[build-dependencies]` (not dev).
    pub path_deps: BTreeSet<String>,
}

/// Every workspace member's package, by package name.
pub fn packages() -> BTreeMap<String, Package> {
    let mut out = BTreeMap::new();
    for dir in members() {
        let toml = read(&format!("{dir}/Cargo.toml"));
        let mut p = Package {
            dir: dir.clone(),
            ..Package::default()
        };
        let mut section = String::new();
        for line in toml.lines() {
            let l = line.trim();
            if l.starts_with('[') {
                section = l.to_string();
                continue;
            }
            let value = |key: &str| {
                l.strip_prefix(key)
                    .map(str::trim_start)
                    .and_then(|r| r.strip_prefix('='))
                    .map(|r| r.trim().trim_matches('"').to_string())
            };
            match section.as_str() {
                "[package]" => {
                    if let Some(v) = value("name") {
                        p.name = v;
                    }
                }
                "[[bin]]" => {
                    if let Some(v) = value("name") {
                        p.bins.insert(v);
                    }
                }
                "[dependencies]" | "[build-dependencies]" => {
                    if let Some(i) = l.find("path = \"") {
                        let rest = &l[i + 8..];
                        let rel = &rest[..rest.find('"').expect("closing quote")];
                        p.path_deps
                            .insert(rel.trim_start_matches("../").to_string());
                    }
                }
                _ => {}
            }
        }
        if repo().join(&dir).join("src/main.rs").is_file()
            && !toml.contains("path = \"src/main.rs\"")
        {
            p.bins.insert(p.name.clone());
        }
        out.insert(p.name.clone(), p);
    }
    out
}

/// The member folders `dir` builds from: itself and its path dependencies, transitively.
pub fn path_closure(dir: &str, pkgs: &BTreeMap<String, Package>) -> BTreeSet<String> {
    let by_dir: BTreeMap<&str, &Package> = pkgs.values().map(|p| (p.dir.as_str(), p)).collect();
    let mut seen = BTreeSet::new();
    let mut todo = vec![dir.to_string()];
    while let Some(d) = todo.pop() {
        if seen.insert(d.clone())
            && let Some(p) = by_dir.get(d.as_str())
        {
            todo.extend(p.path_deps.iter().cloned());
        }
    }
    seen
}

/// The Prometheus source files whose metric names the packaging may use.
pub const METRIC_SOURCES: [&str; 2] = [
    "cnf-dataplane-daemon/src/metrics.rs",
    "operator/src/metrics.rs",
];

/// Metric names exported by the code: every `"buildvnf_…"` string literal of [`METRIC_SOURCES`], with whether it
/// is a histogram (registered through `HistogramOpts::new(` just before it, or a family whose first
/// `MetricType::` argument after it is `HISTOGRAM`).
pub fn exported_metrics() -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for file in METRIC_SOURCES {
        let src = read(file);
        let literals: Vec<(usize, usize)> = src
            .match_indices("\"buildvnf_")
            .map(|(start, _)| {
                let end = src[start + 1..].find('"').expect("closing quote") + start + 1;
                (start, end)
            })
            .collect();
        for (i, (start, end)) in literals.iter().enumerate() {
            let name = &src[start + 1..*end];
            if !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                continue;
            }
            let before = &src[start.saturating_sub(80)..*start];
            let next = literals.get(i + 1).map(|(s, _)| *s).unwrap_or(src.len());
            let after = &src[*end..next];
            // The first metric type named after the literal (and before the next one) is its family's.
            let family_type = after
                .find("MetricType::")
                .map(|i| &after[i + 12..])
                .map(|t| t.starts_with("HISTOGRAM"));
            let histogram = before.contains("HistogramOpts::new(") || family_type == Some(true);
            out.insert(name.to_string(), histogram);
        }
    }
    out
}

/// Every series name a Prometheus scrape of the exported metrics can contain (histograms add `_bucket`, `_sum`
/// and `_count`).
pub fn exported_series() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, histogram) in exported_metrics() {
        if histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        } else {
            out.insert(name);
        }
    }
    out
}

/// Every `buildvnf_…` token in `text` (metric names in queries, rules and dashboards).
pub fn metric_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("buildvnf_") {
        if i > 0 {
            let prev = text.as_bytes()[i - 1];
            if prev.is_ascii_alphanumeric() || prev == b'_' {
                continue;
            }
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

/// The path of a program on `PATH`, or `None` after testkit's skip (a failure under `CI=true`).
#[allow(unused_imports)]
pub use testkit::tool;

/// A scratch directory of this test process (under the temp dir, named after `name` and the process id),
/// removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("buildvnf-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
