//! The Helm chart without a cluster or helm: values against values.schema.json (defaults accepted, bad values
//! refused), the chart's CRD and dashboard equal to their sources, every `.Values` path in the templates defined,
//! the operator's flags, env variables and defaults as operator/src/main.rs declares them, no template that
//! makes certificates or reads the cluster or the clock (the operator issues the mTLS certificates), and
//! docs/operations.md's RBAC table equal to the operator's rules file. (With the real helm and
//! kubernetes-validate: tests/helm.rs and tests/helm_render.rs.)

mod common;

use common::{read, repo, yaml};
use serde_json::{Value, json};

const CHART: &str = "charts/build-vnf";

fn schema_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read(&format!("{CHART}/values.schema.json")))
        .expect("values.schema.json is JSON");
    jsonschema::draft7::new(&schema).expect("values.schema.json compiles as a draft-07 schema")
}

fn default_values() -> Value {
    yaml(&format!("{CHART}/values.yaml"))
}

fn errors(v: &Value) -> Vec<String> {
    schema_validator()
        .iter_errors(v)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Sets `path` (dot-separated) in a copy of the defaults to `value`.
fn with(path: &str, value: Value) -> Value {
    let mut v = default_values();
    let mut cur = &mut v;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .get_mut(*p)
            .unwrap_or_else(|| panic!("values.yaml has no {p} (in {path})"));
    }
    let last = parts[parts.len() - 1];
    cur.as_object_mut()
        .unwrap_or_else(|| panic!("{path}: parent is not a map"))
        .insert(last.to_string(), value);
    v
}

#[test]
fn default_values_validate_against_the_schema() {
    let e = errors(&default_values());
    assert!(
        e.is_empty(),
        "values.yaml violates values.schema.json: {e:#?}"
    );
}

#[test]
fn invalid_values_are_refused_by_the_schema() {
    let cases = [
        ("unknown top-level key", with("operatr", json!({}))),
        ("unknown operator key", with("operator.replica", json!(2))),
        (
            "replicas is a string",
            with("operator.replicas", json!("two")),
        ),
        ("zero replicas", with("operator.replicas", json!(0))),
        (
            "bad pull policy",
            with("operator.image.pullPolicy", json!("Sometimes")),
        ),
        (
            "privileged metrics port",
            with("operator.metricsPort", json!(80)),
        ),
        (
            "CA secret not a DNS name",
            with("tls.caSecret", json!("Bad_Name")),
        ),
        (
            "cert-manager issuer of an unknown kind",
            with("tls.certManager.issuerKind", json!("Certificate")),
        ),
        ("the removed tls.chains", with("tls.chains", json!([]))),
        (
            "certificate validity 0 days",
            with("tls.certValidityDays", json!(0)),
        ),
        (
            "servicemonitor interval",
            with("metrics.serviceMonitor.interval", json!("soon")),
        ),
        (
            "dashboard enabled as string",
            with("grafana.dashboard.enabled", json!("yes")),
        ),
        (
            "image tag with a space",
            with("dataplane.image.tag", json!("1 0")),
        ),
    ];
    for (what, values) in cases {
        assert!(
            !errors(&values).is_empty(),
            "values.schema.json accepts invalid values ({what})"
        );
    }
    // Leader election off with two replicas would run two reconcilers at once.
    let mut two = with("operator.leaderElection", json!(false));
    two["operator"]["replicas"] = json!(2);
    assert!(
        !errors(&two).is_empty(),
        "schema accepts 2 replicas without leader election"
    );
    let mut one = with("operator.leaderElection", json!(false));
    one["operator"]["replicas"] = json!(1);
    assert!(
        errors(&one).is_empty(),
        "schema refuses 1 replica without leader election: {:?}",
        errors(&one)
    );
}

#[test]
fn chart_crd_is_the_generated_crd_byte_for_byte() {
    let chart = read(&format!("{CHART}/crds/buildvnf.io_vnfchains.yaml"));
    let committed = read(&format!("crds/{}", crds::CRD_FILE));
    let generated = crds::crd_yaml().expect("the CRD encodes");
    assert!(
        chart == generated,
        "{CHART}/crds/buildvnf.io_vnfchains.yaml differs from the generated CRD; copy crds/{} there",
        crds::CRD_FILE
    );
    assert_eq!(
        committed,
        chart,
        "the chart's CRD differs from crds/{}",
        crds::CRD_FILE
    );
}

#[test]
fn chart_dashboard_is_the_dashboard_byte_for_byte() {
    assert!(
        read("dashboards/build-vnf.json")
            == read(&format!("{CHART}/files/dashboards/build-vnf.json")),
        "{CHART}/files/dashboards/build-vnf.json differs from dashboards/build-vnf.json; copy it"
    );
}

#[test]
fn plain_yaml_files_parse() {
    let mut files = vec![
        format!("{CHART}/Chart.yaml"),
        format!("{CHART}/values.yaml"),
        "kind-config/cluster.yaml".to_string(),
    ];
    files.extend(common::files(&format!("{CHART}/crds"), ".yaml"));
    let rules = format!("{CHART}/files/operator-rbac-rules.yaml");
    if repo().join(&rules).is_file() {
        files.push(rules.clone());
    }
    for f in &files {
        let v = yaml(f);
        assert!(!v.is_null(), "{f} is empty");
    }
    let chart = yaml(&format!("{CHART}/Chart.yaml"));
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "build-vnf");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(common::workspace_version().as_str()),
        "Chart.yaml appVersion (the default image tag) must be the workspace version"
    );
    if repo().join(&rules).is_file() {
        let r = yaml(&rules);
        let list = r
            .as_array()
            .expect("operator-rbac-rules.yaml is a YAML list of rules");
        assert!(!list.is_empty());
        for rule in list {
            assert!(rule.get("verbs").is_some(), "rule without verbs: {rule}");
        }
    } else {
        eprintln!(
            "note: {rules} is not there yet (the operator's tests write it); the ClusterRole fails to render without it"
        );
    }
    let kind = yaml("kind-config/cluster.yaml");
    let nodes = kind["nodes"].as_array().expect("kind nodes");
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["role"] == "control-plane")
            .count(),
        1
    );
    assert_eq!(nodes.iter().filter(|n| n["role"] == "worker").count(), 2);
    for n in nodes {
        let mounts = n["extraMounts"]
            .as_array()
            .expect("every node mounts bpffs");
        assert!(
            mounts.iter().any(|m| m["containerPath"] == "/sys/fs/bpf"),
            "node without /sys/fs/bpf: {n}"
        );
    }
}

/// `.Values.a.b` paths used by the templates, without duplicates.
fn values_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(".Values.") {
        let path: String = text[i + 8..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let path = path.trim_end_matches('.').to_string();
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

#[test]
fn every_values_path_in_the_templates_is_defined_in_values_yaml() {
    let values = default_values();
    let templates: Vec<String> = common::files(&format!("{CHART}/templates"), "")
        .into_iter()
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".tpl") || f.ends_with(".txt"))
        .collect();
    assert!(templates.len() >= 8, "templates: {templates:?}");
    let mut used = 0;
    for t in &templates {
        for path in values_paths(&read(t)) {
            used += 1;
            let mut cur = &values;
            for part in path.split('.') {
                cur = cur.get(part).unwrap_or_else(|| {
                    panic!("{t} uses .Values.{path}, but values.yaml has no {part} there")
                });
            }
        }
    }
    assert!(
        used > 20,
        "found only {used} .Values references; the scan is broken"
    );
}

/// The `Flags` struct of the operator binary: `(flag, env, default)` per field.
fn operator_flags() -> Vec<(String, Option<String>, Option<String>)> {
    let src = read("operator/src/main.rs");
    let start = src
        .find("struct Flags")
        .expect("struct Flags in operator/src/main.rs");
    let body = &src[start..start + src[start..].find("\n}").expect("end of Flags")];
    let mut out = Vec::new();
    let mut attrs = String::new();
    for line in body.lines().skip(1) {
        let l = line.trim();
        if l.starts_with("///") || l.is_empty() {
            continue;
        }
        let ident_len = l
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        let is_field = ident_len > 0 && l[ident_len..].starts_with(": ") && l.ends_with(',');
        if !is_field {
            attrs.push_str(l);
            attrs.push(' ');
            continue;
        }
        let quoted = |key: &str| {
            attrs.find(key).map(|i| {
                let rest = attrs[i + key.len()..].trim_start();
                rest.trim_start_matches('"')
                    .split('"')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        };
        out.push((
            format!("--{}", l[..ident_len].replace('_', "-")),
            quoted("env ="),
            quoted("default_value ="),
        ));
        attrs.clear();
    }
    out
}

fn flag_default(flag: &str) -> String {
    operator_flags()
        .into_iter()
        .find(|(f, _, _)| f == flag)
        .and_then(|(_, _, d)| d)
        .unwrap_or_else(|| panic!("operator flag {flag} has no default_value"))
}

#[test]
fn operator_deployment_uses_flags_and_env_the_operator_declares() {
    let flags = operator_flags();
    assert!(flags.len() >= 5, "parsed too few operator flags: {flags:?}");
    let deployment = read(&format!("{CHART}/templates/deployment.yaml"));
    let mut seen = 0;
    for line in deployment.lines() {
        let l = line.trim();
        if let Some(arg) = l.strip_prefix("- --") {
            let flag = format!("--{}", arg.split('=').next().unwrap_or(arg));
            assert!(
                flags.iter().any(|(f, _, _)| *f == flag),
                "deployment.yaml passes {flag}, which operator/src/main.rs does not declare"
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 4,
        "found only {seen} operator args in deployment.yaml"
    );
    for env in ["POD_NAMESPACE", "POD_NAME"] {
        assert!(deployment.contains(&format!("name: {env}")));
        assert!(
            flags.iter().any(|(_, e, _)| e.as_deref() == Some(env)),
            "the operator reads no {env}"
        );
    }
    assert!(
        read("operator/src/main.rs").contains("try_from_default_env"),
        "deployment.yaml sets RUST_LOG, but the operator no longer reads its filter from the environment"
    );
    // Probes on the metrics listener.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            read("operator/src/main.rs").contains(&format!("\"{path}\"")),
            "operator serves no {path}"
        );
    }
    assert!(deployment.contains("path: /healthz") && deployment.contains("path: /readyz"));
}

#[test]
fn chart_defaults_match_the_operator_defaults() {
    let values = default_values();
    let listen = flag_default("--metrics-listen");
    assert_eq!(
        listen.rsplit(':').next(),
        values["operator"]["metricsPort"]
            .as_u64()
            .map(|p| p.to_string())
            .as_deref(),
        "operator.metricsPort differs from the operator's --metrics-listen default"
    );
    for (value, flag) in [
        ("certValidityDays", "--cert-validity-days"),
        ("caValidityDays", "--ca-validity-days"),
    ] {
        assert_eq!(
            values["tls"][value].as_u64().map(|d| d.to_string()),
            Some(flag_default(flag)),
            "tls.{value} differs from the operator's {flag} default"
        );
    }
    assert_eq!(flag_default("--ca-secret"), "buildvnf-operator-ca");
    let image = flag_default("--dataplane-image");
    let (repo_part, tag) = image.rsplit_once(':').expect("image with tag");
    assert_eq!(
        values["dataplane"]["image"]["repository"].as_str(),
        Some(repo_part)
    );
    assert_eq!(
        tag,
        common::workspace_version(),
        "the operator's default image tag is not the workspace version"
    );
}

#[test]
fn the_chart_issues_no_certificate_and_renders_nothing_that_changes() {
    // The operator issues every certificate (operator/src/certs.rs; names checked in tls_names.rs): the
    // templates neither make key material nor read the cluster or the clock, so two renders are identical
    // (helm_render.rs renders twice with a real helm).
    let mut actions = 0;
    for file in common::files(&format!("{CHART}/templates"), "") {
        let text = read(&file);
        // The template actions ({{ … }}), comments left out.
        for action in text
            .split("{{")
            .skip(1)
            .filter_map(|a| a.split("}}").next())
        {
            if action
                .trim_start_matches('-')
                .trim_start()
                .starts_with("/*")
            {
                continue;
            }
            actions += 1;
            for f in [
                "genCA",
                "genSignedCert",
                "genSelfSignedCert",
                "genPrivateKey",
                "lookup",
                "now",
                "randAlphaNum",
                "uuidv4",
            ] {
                let used = action
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w == f);
                assert!(
                    !used,
                    "{file} calls {f} in {{{{{action}}}}}: a render must not depend on the cluster, the clock or chance"
                );
            }
        }
    }
    assert!(
        actions > 50,
        "found only {actions} template actions; the scan is broken"
    );
    // The sidecar pods mount their chain's Secret, whose name the operator issues.
    assert!(read("operator/src/render.rs").contains("crate::certs::chain_secret_name("));
    // The ClusterRole carries the operator's rules file verbatim.
    let rbac = read(&format!("{CHART}/templates/rbac.yaml"));
    assert!(rbac.contains(".Files.Get \"files/operator-rbac-rules.yaml\""));
    assert!(rbac.contains("$rules | nindent 2"));
    // The sidecar and the operator read/write tls.crt, tls.key and ca.crt.
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(read("cnf-dataplane-daemon/src/tls.rs").contains(&format!("\"{key}\"")));
        assert!(read("operator/src/certs.rs").contains(&format!("\"{key}\"")));
    }
}

/// One RBAC rule as `(API group, resources, verbs)`, each list sorted.
type Rule = (String, Vec<String>, Vec<String>);

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The rules of files/operator-rbac-rules.yaml.
fn rules_file() -> Vec<Rule> {
    let rules = yaml(&format!("{CHART}/files/operator-rbac-rules.yaml"));
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("a rule without {key}: {v}"))
            .iter()
            .map(|s| {
                s.as_str()
                    .unwrap_or_else(|| panic!("{key}: {s} is not a string"))
                    .to_string()
            })
            .collect()
    };
    let mut out = Vec::new();
    for rule in rules.as_array().expect("the rules file is a YAML list") {
        for group in strings(rule, "apiGroups") {
            out.push((
                group,
                sorted(strings(rule, "resources")),
                sorted(strings(rule, "verbs")),
            ));
        }
    }
    out
}

/// The rows of the RBAC table of docs/operations.md's "What installing the chart grants" section:
/// `| `group` | `res`, `res` | verb, verb | why |`, the core group written `""` (core).
fn operations_doc_rules() -> Vec<Rule> {
    let doc = read("docs/operations.md");
    let start = doc
        .find("## What installing the chart grants")
        .expect("docs/operations.md has a section \"What installing the chart grants\"");
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let header = section
        .find("| API group | resources | verbs |")
        .expect("the section has the RBAC table");
    let cells = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    section[header..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cols: Vec<&str> = row.split('|').map(str::trim).collect();
            assert!(cols.len() >= 5, "malformed RBAC table row: {row}");
            let group = cols[1].trim_end_matches("(core)").trim().trim_matches('`');
            let group = if group == "\"\"" { "" } else { group };
            (
                group.to_string(),
                sorted(cells(cols[2])),
                sorted(cells(cols[3])),
            )
        })
        .collect()
}

fn row(r: &Rule) -> String {
    let group = if r.0.is_empty() {
        "`\"\"` (core)".to_string()
    } else {
        format!("`{}`", r.0)
    };
    let resources: Vec<String> = r.1.iter().map(|x| format!("`{x}`")).collect();
    format!(
        "| {group} | {} | {} |",
        resources.join(", "),
        r.2.join(", ")
    )
}

#[test]
fn the_operations_doc_lists_exactly_the_operators_rbac_rules() {
    let file = rules_file();
    let doc = operations_doc_rules();
    assert!(file.len() >= 5, "too few rules parsed: {file:?}");
    let missing: Vec<String> = file.iter().filter(|r| !doc.contains(r)).map(row).collect();
    let extra: Vec<String> = doc.iter().filter(|r| !file.contains(r)).map(row).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && file.len() == doc.len(),
        "docs/operations.md (What installing the chart grants) differs from \
         {CHART}/files/operator-rbac-rules.yaml.\nRows to add (with a reason in the last column):\n{}\n\
         Rows to remove:\n{}",
        missing.join("\n"),
        extra.join("\n")
    );
}
