//! docs/crd-reference.md is the output of the `crdref` generator (crds/src/bin/crdref.rs, included here as a
//! module) for the current CRD. `UPDATE_DOCS=1 cargo test -p buildvnf-packaging --test crd_reference` rewrites it,
//! as does `cargo run -p buildvnf-crds --bin crdref`.

mod common;

#[allow(dead_code)] // its main() is the binary's
#[path = "../../crds/src/bin/crdref.rs"]
mod crdref;

#[test]
fn crd_reference_matches_the_generator() {
    let schema = crdref::openapi_schema().expect("the CRD has a schema");
    let doc = crdref::render(&schema);
    let path = common::repo().join(crdref::REFERENCE_FILE);
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &doc).expect("writing docs/crd-reference.md");
        eprintln!("wrote {}", path.display());
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == doc,
        "{} is out of date; regenerate with `cargo run -p buildvnf-crds --bin crdref` (or UPDATE_DOCS=1)",
        crdref::REFERENCE_FILE
    );
}

#[test]
fn crd_reference_covers_every_field_and_cel_rule() {
    let schema = crdref::openapi_schema().expect("the CRD has a schema");
    let doc = crdref::render(&schema);
    // Every CEL rule message appears in the reference.
    fn messages(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for r in m
                    .get("x-kubernetes-validations")
                    .and_then(|r| r.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(msg) = r.get("message").and_then(|m| m.as_str()) {
                        out.push(msg.to_string());
                    }
                }
                m.values().for_each(|c| messages(c, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| messages(c, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    messages(&schema, &mut all);
    let rules = all.len();
    for msg in &all {
        // As a table cell: one line, `|` escaped.
        let cell = msg
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|");
        assert!(
            doc.contains(&cell),
            "CEL message {msg:?} missing from the reference"
        );
    }
    assert!(rules >= 10, "found only {rules} CEL messages in the schema");
    // A few fields at different depths, with their validation.
    for needle in [
        "| `spec.functions` |",
        "| `spec.functions[].firewall.rules[].action` |",
        "| `spec.dataplane.hook` |",
        "one of `auto`, `xdp`, `xdpGeneric`, `tc`",
        "| `status.conditions` |",
        "unique by `name`",
    ] {
        assert!(doc.contains(needle), "the reference lacks {needle:?}");
    }
}
