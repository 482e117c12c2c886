//! The generated CRD: committed and free of drift, structural, with known formats and CEL rules that compile
//! (their cost against the API server's budget is `cel_cost.rs`).

mod support;

use crds::VNFChain;
use kube::CustomResourceExt;
use serde_json::Value;
use support::{openapi_schema, repo};

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = repo().join("crds").join(crds::CRD_FILE);
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let generated = crds::crd_yaml().expect("crd encodes");
    assert!(
        committed == generated,
        "{} is out of date with the Rust types: run `cargo run -p buildvnf-crds --bin crdgen` and commit the result",
        path.display()
    );
}

#[test]
fn crd_identity_and_subresources() {
    let crd = VNFChain::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("vnfchains.buildvnf.io"));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["vnfc".to_string()][..])
    );
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.served && v.storage);
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status subresource"
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Replicas", "Functions", "Hook", "Age"]);
}

/// Kubernetes accepts only structural schemas: every node has a type (or is int-or-string / preserve-unknown),
/// no `$ref`, no `additionalProperties` beside `properties`, and no types inside anyOf/allOf/oneOf/not.
fn check_structural(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        problems.push(format!("{path}: schema node is not an object"));
        return;
    };
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !map.contains_key("type") && !int_or_string && !preserve {
        problems.push(format!("{path}: no type"));
    }
    if map.contains_key("$ref") {
        problems.push(format!("{path}: $ref is not allowed"));
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        problems.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    for junction in ["anyOf", "allOf", "oneOf", "not"] {
        if let Some(j) = map.get(junction) {
            let text = j.to_string();
            if !int_or_string && (text.contains("\"type\"") || text.contains("\"description\"")) {
                problems.push(format!(
                    "{path}: {junction} may not carry types or descriptions"
                ));
            }
        }
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check_structural(v, &format!("{path}.{k}"), problems);
        }
    }
    if let Some(items) = map.get("items") {
        check_structural(items, &format!("{path}[]"), problems);
    }
    if let Some(ap) = map.get("additionalProperties")
        && ap.is_object()
    {
        check_structural(ap, &format!("{path}{{}}"), problems);
    }
    // List-map keys must be required (or defaulted) in the items.
    if map.get("x-kubernetes-list-type") == Some(&Value::String("map".into())) {
        let required = map
            .get("items")
            .and_then(|i| i.get("required"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for key in map
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !required.contains(key) {
                problems.push(format!(
                    "{path}: list-map key {key} is not required in the items"
                ));
            }
        }
    }
}

#[test]
fn schema_is_structural() {
    let schema = openapi_schema();
    let mut problems = Vec::new();
    check_structural(&schema, "", &mut problems);
    assert!(
        problems.is_empty(),
        "not a structural schema:\n{}",
        problems.join("\n")
    );
}

fn collect_rules(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                out.extend(
                    rules
                        .iter()
                        .filter_map(|r| r.get("rule")?.as_str().map(str::to_owned)),
                );
            }
            map.values().for_each(|v| collect_rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_rules(v, out)),
        _ => {}
    }
}

#[test]
fn cel_rules_compile_and_use_only_known_variables() {
    use kube::core::cel::{ScopeContext, analyze_rule, compile_schema};
    let schema = openapi_schema();
    let mut rules = Vec::new();
    collect_rules(&schema, &mut rules);
    assert!(
        rules.len() >= 15,
        "expected the chain's CEL rules, found {}",
        rules.len()
    );
    let compiled = compile_schema(&schema);
    for rule in &rules {
        assert!(
            kube::core::cel::cel::Program::compile(rule).is_ok(),
            "CEL rule does not compile: {rule}"
        );
        // The analyser does not know the variables that macros (all, exists, filter, map) bind;
        // a scope warning about such a variable is not a problem of the rule.
        let warnings: Vec<_> = analyze_rule(rule, &compiled, ScopeContext::CrdValidation)
            .into_iter()
            .filter(|w| {
                let bound_by_macro = w
                    .message
                    .split('\'')
                    .nth(1)
                    .is_some_and(|var| rule.contains(&format!("({var},")));
                !bound_by_macro
            })
            .collect();
        assert!(warnings.is_empty(), "CEL rule {rule:?}: {warnings:?}");
    }
}

/// The formats the API server knows: `supportedVersionedFormats` of
/// `staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/validation/formats.go` (kubernetes/kubernetes;
/// strings, compared with `-` removed), `int32`/`int64` for integers, `float`/`double` for numbers. Any other it
/// ignores with a warning ("unrecognized format"), so a bound it implies would not be enforced.
fn known_format(node_type: &str, format: &str) -> bool {
    const STRING_FORMATS: [&str; 27] = [
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "quantity",
        "k8sshortname",
        "k8slongname",
    ];
    match node_type {
        "string" | "" => STRING_FORMATS.contains(&format.replace('-', "").as_str()),
        "integer" => matches!(format, "int32" | "int64"),
        "number" => matches!(format, "float" | "double"),
        _ => false,
    }
}

fn unknown_formats(node: &Value, path: &str, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(format) = map.get("format").and_then(Value::as_str) {
                let ty = map.get("type").and_then(Value::as_str).unwrap_or("");
                if !known_format(ty, format) {
                    out.push(format!("{path}: {ty} with format {format:?}"));
                }
            }
            for (k, v) in map {
                // `properties` maps names to schemas: a property called `format` is not a keyword.
                if k != "format" || !v.is_string() {
                    unknown_formats(v, &format!("{path}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                unknown_formats(v, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_format_is_one_the_api_server_knows() {
    assert!(known_format("string", "date-time") && !known_format("integer", "uint16"));
    let mut problems = Vec::new();
    unknown_formats(&openapi_schema(), "", &mut problems);
    assert!(
        problems.is_empty(),
        "formats the API server does not know (it warns and ignores them):\n{}",
        problems.join("\n")
    );
}
