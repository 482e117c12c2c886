//! The chart with the real tools (scripts/install-chart-tools.sh installs them): `helm lint --strict` and
//! `helm template` (helm v4) for every combination of values in `charts/build-vnf/ci/` (the helm convention:
//! each file there is one combination, and a new file is tested without touching this test), each render
//! checked by `kubernetes-validate --strict` against the oldest Kubernetes the chart supports (Chart.yaml
//! `kubeVersion`) and the newest the validator ships, and rendered twice to the same bytes (GitOps: Argo CD and
//! Flux render the chart on every sync, so a render that changes rotates what it renders each time). The custom
//! resources of other projects are checked by what consumes them (`promtool check rules`; the ServiceMonitor
//! selects the metrics Service), and the matrix must take every branch of the templates.
//! Without a tool a test prints a skip; under `CI=true` that is a failure (scripts/install-deps.sh installs them).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use common::{Scratch, read, repo, yaml};
use serde_json::Value;

const CHART: &str = "charts/build-vnf";
const CI_DIR: &str = "charts/build-vnf/ci";
const RELEASE: &str = "build-vnf";
const NAMESPACE: &str = "buildvnf-system";

/// Custom resources of other projects the chart renders, whose schema kubernetes-validate cannot know (it ships
/// the built-in Kubernetes types only); they are the only objects it may pass unvalidated, and
/// `custom_resources_work_for_what_consumes_them` checks them instead. Our own CRD is validated as a
/// `CustomResourceDefinition` (the renders include `crds/`).
const NO_SCHEMA: [(&str, &str, &str); 2] = [
    (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        "prometheus-operator's CRD (metrics.serviceMonitor.enabled): must select the operator's metrics Service",
    ),
    (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        "prometheus-operator's CRD (metrics.prometheusRule.enabled): its groups must pass promtool check rules",
    ),
];

/// `.Values` paths that templates branch on but no file in ci/ needs to change, with why.
/// Empty since the chart renders no certificate (no `lookup` of the CA Secret).
const BRANCHES_NOT_IN_THE_MATRIX: [(&str, &str); 0] = [];

/// Runs a command; panics naming it when it cannot start.
fn run(cmd: &mut Command) -> Output {
    cmd.current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Every values file of the matrix, sorted.
fn ci_values() -> Vec<String> {
    let files = common::files(CI_DIR, ".yaml");
    assert!(
        files.iter().any(|f| f.ends_with("/default-values.yaml")) && files.len() >= 5,
        "{CI_DIR} lost its combinations: {files:?}"
    );
    files
}

/// `helm template` of the chart with `values` and `extra` arguments; panics with helm's message on failure.
fn helm_template(helm: &Path, values: &str, extra: &[&str]) -> String {
    let out = run(Command::new(helm)
        .args([
            "template",
            RELEASE,
            CHART,
            "--namespace",
            NAMESPACE,
            "--values",
            values,
        ])
        .args(extra));
    assert!(
        out.status.success(),
        "helm template -f {values} {extra:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The oldest Kubernetes version the chart supports: `kubeVersion: ">=1.30.0-0"` gives `1.30.0`.
fn min_kube_version() -> String {
    let chart = yaml(&format!("{CHART}/Chart.yaml"));
    let constraint = chart["kubeVersion"]
        .as_str()
        .expect("Chart.yaml has a kubeVersion");
    let v = constraint
        .strip_prefix(">=")
        .unwrap_or_else(|| panic!("kubeVersion {constraint:?} is not of the form >=X.Y.Z"));
    v.trim().split('-').next().unwrap_or_default().to_string()
}

/// What one `kubernetes-validate --strict --quiet` run said: its problems (every line that is not an accepted
/// "no schema" warning, plus a non-zero exit) and the `(apiVersion, kind)` pairs it had no schema for.
#[derive(Debug, Default)]
struct Verdict {
    problems: Vec<String>,
    no_schema: BTreeSet<(String, String)>,
}

/// Parses `WARN FILE Couldn't find schema for kind K with api version A for kubernetes version V` (the message
/// of kubernetes_validate/utils.py `SchemaNotFoundError`).
fn missing_schema(line: &str) -> Option<(String, String)> {
    let rest = line.split_once("Couldn't find schema for kind ")?.1;
    let (kind, rest) = rest.split_once(" with api version ")?;
    let (api, _) = rest.split_once(" for kubernetes version ")?;
    Some((api.to_string(), kind.to_string()))
}

fn kubernetes_validate(tool: &Path, versions: &[String], files: &[String]) -> Verdict {
    let mut cmd = Command::new(tool);
    cmd.args(["--strict", "--quiet"]);
    for v in versions {
        cmd.args(["--kubernetes-version", v]);
    }
    let out = run(cmd.args(files));
    let mut verdict = Verdict::default();
    for line in text(&out.stdout).lines().chain(text(&out.stderr).lines()) {
        if line.trim().is_empty() {
            continue;
        }
        match missing_schema(line) {
            Some((api, kind)) if NO_SCHEMA.iter().any(|(a, k, _)| *a == api && *k == kind) => {
                verdict.no_schema.insert((api, kind));
            }
            Some((api, kind)) => verdict.problems.push(format!(
                "{line}\n  ({kind} {api} is no built-in type: a misspelt apiVersion/kind, or another project's \
                 custom resource, which goes into NO_SCHEMA with why)"
            )),
            None => verdict.problems.push(line.to_string()),
        }
    }
    if !out.status.success() && verdict.problems.is_empty() {
        verdict
            .problems
            .push(format!("kubernetes-validate exited with {}", out.status));
    }
    verdict
}

/// The Kubernetes versions to validate against: the chart's oldest and the validator's newest (its own version
/// is the newest Kubernetes whose schemas it ships).
fn kube_versions(tool: &Path) -> Vec<String> {
    let out = run(Command::new(tool).arg("--version"));
    let newest = text(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && newest.split('.').count() == 3,
        "kubernetes-validate --version said {newest:?}"
    );
    vec![min_kube_version(), newest]
}

#[test]
fn helm_lint_strict_passes_for_every_values_combination() {
    let Some(helm) = common::tool("helm") else {
        return;
    };
    let version = text(&run(Command::new(&helm).args(["version", "--short"])).stdout);
    eprintln!("helm {}", version.trim());
    // CI tests with the helm v4 that scripts/install-chart-tools.sh installs; elsewhere any helm that runs.
    assert!(
        version.starts_with("v4.") || !testkit::skip::ci(),
        "CI=true needs helm v4 (scripts/install-chart-tools.sh), the helm on PATH is {version}"
    );
    for values in ci_values() {
        let out = run(Command::new(&helm).args([
            "lint",
            "--strict",
            CHART,
            "--namespace",
            NAMESPACE,
            "--values",
            &values,
        ]));
        assert!(
            out.status.success(),
            "helm lint --strict -f {values} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    // Control: lint refuses what values.schema.json refuses, so the passes above mean something.
    let out =
        run(Command::new(&helm).args(["lint", "--strict", CHART, "--set", "operator.replica=2"]));
    assert!(
        !out.status.success() && text(&out.stdout).contains("replica"),
        "helm lint --strict accepted an unknown value operator.replica:\n{}",
        text(&out.stdout)
    );
}

#[test]
fn every_render_passes_kubernetes_validate_strict() {
    let (Some(helm), Some(validate)) = (common::tool("helm"), common::tool("kubernetes-validate"))
    else {
        return;
    };
    let versions = kube_versions(&validate);
    let scratch = Scratch::new("helm-validate");
    let mut renders = Vec::new();
    for values in ci_values() {
        // Rendered for the oldest supported Kubernetes (helm refuses a kubeVersion the chart excludes), with the
        // CRD, which is then validated as a CustomResourceDefinition.
        let manifest = helm_template(
            &helm,
            &values,
            &["--include-crds", "--kube-version", &versions[0]],
        );
        // Parsing refuses a mapping that repeats a key: kubernetes-validate's YAML loader silently keeps the
        // last one, the API server's strict field validation refuses the object ("duplicate field").
        let kinds = objects(&manifest).len();
        assert!(kinds >= 5, "{values} rendered only {kinds} objects");
        let name = Path::new(&values)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        renders.push((values, scratch.write(&name, &manifest), manifest));
    }
    let files: Vec<String> = renders.iter().map(|(_, f, _)| f.clone()).collect();
    let verdict = kubernetes_validate(&validate, &versions, &files);
    assert!(
        verdict.problems.is_empty(),
        "kubernetes-validate --strict (Kubernetes {versions:?}) refuses the rendered chart:\n{}",
        verdict.problems.join("\n")
    );
    for (api, kind, why) in NO_SCHEMA {
        assert!(
            verdict
                .no_schema
                .contains(&(api.to_string(), kind.to_string())),
            "no combination in {CI_DIR} renders {kind} ({api}: {why}), or the validator now knows it: \
             add a combination, or remove it from NO_SCHEMA"
        );
    }

    // Controls: the same tool and parsing refuse an unknown field and an unknown kind in a real render.
    let (_, _, default) = renders
        .iter()
        .find(|(v, _, _)| v.ends_with("/default-values.yaml"))
        .expect("the default combination");
    assert!(
        default.contains("\n  replicas: "),
        "no Deployment replicas in the default render"
    );
    let bad_field = scratch.write(
        "bad-field.yaml",
        &default.replacen("\n  replicas: ", "\n  replicaz: ", 1),
    );
    let bad_kind = scratch.write(
        "bad-kind.yaml",
        &default.replacen("\nkind: ServiceAccount\n", "\nkind: ServiceAcount\n", 1),
    );
    let v = kubernetes_validate(&validate, &versions, &[bad_field]);
    assert!(
        v.problems.iter().any(|p| p.contains("replicaz")),
        "kubernetes-validate --strict did not refuse an unknown Deployment field: {v:?}"
    );
    let v = kubernetes_validate(&validate, &versions, &[bad_kind]);
    assert!(
        v.problems.iter().any(|p| p.contains("ServiceAcount")),
        "a kind without a schema passed: {v:?}"
    );
}

/// The `# Source:` template of line `n` of a helm render and the line itself.
fn describe_line(render: &str, n: usize) -> String {
    let lines: Vec<&str> = render.lines().collect();
    let source = lines[..n.min(lines.len())]
        .iter()
        .rev()
        .find(|l| l.starts_with("# Source: "))
        .map(|l| l.trim_start_matches("# Source: "))
        .unwrap_or("?");
    let line: String = lines.get(n).unwrap_or(&"").chars().take(100).collect();
    format!("{source}, line {}: {line:?}", n + 1)
}

#[test]
fn two_renders_of_the_same_values_are_byte_identical() {
    let Some(helm) = common::tool("helm") else {
        return;
    };
    let mut differ = Vec::new();
    for values in ci_values() {
        let first = helm_template(&helm, &values, &[]);
        let second = helm_template(&helm, &values, &[]);
        if first == second {
            continue;
        }
        let lines: Vec<(&str, &str)> = first.lines().zip(second.lines()).collect();
        let mut sources: Vec<String> = lines
            .iter()
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(n, _)| describe_line(&first, n))
            .collect();
        sources.truncate(4);
        differ.push(format!(
            "{values}: first differences at\n    {}",
            sources.join("\n    ")
        ));
    }
    assert!(
        differ.is_empty(),
        "helm template renders different bytes for the same values (every GitOps sync would change the \
         release: random keys/certificates, lookup or now in a template):\n{}",
        differ.join("\n")
    );
}

/// `.Values` paths in the conditions (`if`, `else if`, `with`) of the chart's manifest templates and helpers
/// (not NOTES.txt, which `helm template` does not render).
fn branch_paths() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let templates = common::files(&format!("{CHART}/templates"), "");
    for t in templates
        .iter()
        .filter(|t| t.ends_with(".yaml") || t.ends_with(".tpl"))
    {
        let src = read(t);
        for action in src.split("{{").skip(1) {
            let action = action.split("}}").next().unwrap_or("");
            let a = action.trim_start_matches('-').trim_start();
            if !(a.starts_with("if ") || a.starts_with("else if ") || a.starts_with("with ")) {
                continue;
            }
            for (i, _) in a.match_indices(".Values.") {
                let path: String = a[i + 8..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                    .collect();
                out.insert(path.trim_end_matches('.').to_string());
            }
        }
    }
    out
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, part| cur.get(part))
}

#[test]
fn the_values_matrix_takes_every_branch_of_the_templates() {
    let defaults = yaml(&format!("{CHART}/values.yaml"));
    let files: Vec<(String, Value)> = ci_values()
        .into_iter()
        .map(|f| {
            let v = yaml(&f);
            (f, v)
        })
        .collect();
    let branches = branch_paths();
    assert!(
        branches.contains("metrics.serviceMonitor.enabled")
            && branches.contains("operator.leaderElection"),
        "the template scan found too little: {branches:?}"
    );
    let mut untaken = Vec::new();
    for path in &branches {
        if BRANCHES_NOT_IN_THE_MATRIX.iter().any(|(p, _)| p == path) {
            continue;
        }
        let default = at(&defaults, path);
        let changed = files
            .iter()
            .any(|(_, v)| at(v, path).is_some_and(|x| Some(x) != default));
        if !changed {
            untaken.push(format!(
                "{path} (default {})",
                default.map_or("none".into(), Value::to_string)
            ));
        }
    }
    assert!(
        untaken.is_empty(),
        "the templates branch on values no file in {CI_DIR} changes; add a combination that sets them:\n  {}",
        untaken.join("\n  ")
    );
}

/// The objects of a helm render (empty documents left out).
fn objects(manifest: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(manifest)
        .unwrap_or_else(|e| panic!("helm rendered YAML that does not parse: {e}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// `promtool check rules` of a PrometheusRule's `spec` (a Prometheus rules file: `groups:`), as the
/// prometheus-operator hands it to Prometheus. Ok, or promtool's complaint.
fn promtool_check_rules(promtool: &Path, scratch: &Scratch, rule: &Value) -> Result<(), String> {
    let file = scratch.write("rules.json", &rule["spec"].to_string());
    let out = run(Command::new(promtool).args(["check", "rules", &file]));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

/// Why a ServiceMonitor would scrape nothing, as the prometheus-operator selects targets: a Service in one of
/// `namespaceSelector.matchNames` whose labels include `selector.matchLabels`, and per endpoint a named port of
/// that Service.
fn service_monitor_problems(monitor: &Value, services: &[&Value]) -> Vec<String> {
    let spec = &monitor["spec"];
    let namespaces: Vec<&Value> = spec["namespaceSelector"]["matchNames"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let wanted = spec["selector"]["matchLabels"].as_object();
    let selected: Vec<&&Value> = services
        .iter()
        .filter(|svc| namespaces.contains(&&svc["metadata"]["namespace"]))
        .filter(|svc| {
            wanted.is_some_and(|w| {
                !w.is_empty() && w.iter().all(|(k, v)| svc["metadata"]["labels"][k] == *v)
            })
        })
        .collect();
    if selected.is_empty() {
        return vec![format!("selects no Service of the render: {spec}")];
    }
    let mut problems = Vec::new();
    for endpoint in spec["endpoints"].as_array().into_iter().flatten() {
        let port = &endpoint["port"];
        let served = selected.iter().any(|svc| {
            svc["spec"]["ports"]
                .as_array()
                .is_some_and(|ports| ports.iter().any(|p| p["name"] == *port))
        });
        if !served {
            problems.push(format!(
                "endpoint port {port} is no named port of the selected Service"
            ));
        }
    }
    problems
}

#[test]
fn custom_resources_work_for_what_consumes_them() {
    let (Some(helm), Some(promtool)) = (common::tool("helm"), common::tool("promtool")) else {
        return;
    };
    let scratch = Scratch::new("helm-custom-resources");
    let (mut rules, mut monitors) = (0, 0);
    for values in ci_values() {
        let objs = objects(&helm_template(&helm, &values, &[]));
        for rule in of_kind(&objs, "PrometheusRule") {
            rules += 1;
            if let Err(e) = promtool_check_rules(&promtool, &scratch, rule) {
                panic!("{values}: the PrometheusRule fails promtool check rules:\n{e}");
            }
            // Control: promtool refuses a broken expression in the same rule.
            let mut broken = rule.clone();
            broken["spec"]["groups"][0]["rules"][0]["expr"] = Value::from("sum(rate(");
            assert!(
                promtool_check_rules(&promtool, &scratch, &broken).is_err(),
                "promtool accepted a broken PromQL expression"
            );
        }
        let services = of_kind(&objs, "Service");
        for monitor in of_kind(&objs, "ServiceMonitor") {
            monitors += 1;
            let problems = service_monitor_problems(monitor, &services);
            assert!(
                problems.is_empty(),
                "{values}: the ServiceMonitor {problems:?}"
            );
            // Control: a selector label the Service lacks selects nothing.
            let mut wrong = monitor.clone();
            wrong["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] =
                Value::from("other");
            assert!(
                !service_monitor_problems(&wrong, &services).is_empty(),
                "a ServiceMonitor selecting another app passed"
            );
        }
    }
    assert!(
        rules > 0 && monitors > 0,
        "no combination in {CI_DIR} renders a PrometheusRule ({rules}) and a ServiceMonitor ({monitors})"
    );
}
