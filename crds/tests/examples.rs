//! Every example manifest: the valid ones validate and round-trip; each invalid one fails with its expected
//! message, and the CRD (schema + CEL) agrees with the layer its header says catches it.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use crds::manifest::{Document, parse_documents, to_yaml};
use serde_json::Value;
use support::{crd_rejections, repo, yaml_files};

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("# {key}: ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

fn documents(path: &Path) -> (String, Vec<Document>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (text, docs)
}

fn raw_chain_documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .expect("yaml")
        .into_iter()
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("VNFChain"))
        .collect()
}

#[test]
fn valid_examples_validate_roundtrip_and_pass_the_crd() {
    let files = yaml_files(&repo().join("examples"));
    assert!(
        files.len() >= 3,
        "expected the example chains, found {files:?}"
    );
    let mut names = BTreeSet::new();
    for path in &files {
        let (text, docs) = documents(path);
        let mut chains = 0;
        for doc in docs {
            match doc {
                Document::Chain(chain) => {
                    chains += 1;
                    names.insert(chain.metadata.name.clone().unwrap_or_default());
                    // YAML → types → YAML → types is the identity.
                    let yaml = to_yaml(&chain).expect("encodes");
                    let again = crds::manifest::parse_single_chain(&yaml).unwrap_or_else(|e| {
                        panic!("{}: re-encoded chain invalid:\n{e}\n{yaml}", path.display())
                    });
                    assert_eq!(
                        chain.chain(),
                        &again,
                        "{}: round trip changed the chain",
                        path.display()
                    );
                }
                Document::Invalid(e) => panic!("{} should be valid:\n{e}", path.display()),
                Document::Other { .. } => {}
            }
        }
        assert!(chains >= 1, "{}: no VNFChain", path.display());
        for raw in raw_chain_documents(&text) {
            let rejections = crd_rejections(&raw);
            assert!(
                rejections.is_empty(),
                "{}: the CRD rejects a valid example: {rejections:#?}",
                path.display()
            );
        }
    }
    for wanted in ["firewall", "edge", "secure-tunnel"] {
        assert!(
            names.contains(wanted),
            "missing example chain {wanted}: {names:?}"
        );
    }
}

#[test]
fn invalid_examples_fail_with_their_expected_message() {
    let files = yaml_files(&repo().join("examples/invalid"));
    let mut expectations = BTreeSet::new();
    for path in &files {
        let (text, docs) = documents(path);
        let expect = header(&text, "expect")
            .unwrap_or_else(|| panic!("{}: no '# expect:' line", path.display()));
        assert!(
            expectations.insert(expect.to_owned()),
            "{}: duplicate expectation {expect:?}",
            path.display()
        );
        let errors: Vec<String> = docs
            .iter()
            .flat_map(|d| match d {
                Document::Invalid(e) => e.0.iter().map(ToString::to_string).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(expect)),
            "{}: expected an error containing {expect:?}, got {errors:#?}",
            path.display()
        );
    }
    assert!(
        expectations.len() >= 20,
        "need at least 20 distinct invalid cases, have {}",
        expectations.len()
    );
}

/// The header `# crd:` says which layer of the API server catches a case: `schema` (types, enums, ranges,
/// patterns), `cel` (x-kubernetes-validations), `apiserver` (list-map keys, formats, unknown fields, versions:
/// enforced by the API server itself, not by the schema text), or `semantic` (only `validate()` knows).
/// This test holds the CRD to that claim, so the layering documented in the examples is the real one.
#[test]
fn the_crd_catches_what_the_examples_say_it_catches() {
    for path in yaml_files(&repo().join("examples/invalid")) {
        let text = std::fs::read_to_string(&path).expect("read");
        let layer =
            header(&text, "crd").unwrap_or_else(|| panic!("{}: no '# crd:' line", path.display()));
        let Some(raw) = raw_chain_documents(&text).into_iter().next() else {
            panic!("{}: no VNFChain document", path.display())
        };
        let rejections = crd_rejections(&raw);
        let by = |prefix: &str| rejections.iter().any(|r| r.starts_with(prefix));
        match layer {
            "schema" => assert!(
                by("schema:"),
                "{}: the CRD schema should reject it: {rejections:#?}",
                path.display()
            ),
            "cel" => {
                assert!(
                    by("cel:"),
                    "{}: a CEL rule should reject it: {rejections:#?}",
                    path.display()
                );
                assert!(
                    !rejections
                        .iter()
                        .any(|r| r.contains("CompilationFailure")
                            || r.contains("UnsupportedReference")),
                    "{}: a CEL rule does not compile: {rejections:#?}",
                    path.display()
                );
            }
            "apiserver" | "semantic" => assert!(
                rejections.is_empty(),
                "{}: marked {layer}, but the schema/CEL already reject it (mark it schema or cel): {rejections:#?}",
                path.display()
            ),
            other => panic!("{}: unknown crd layer {other:?}", path.display()),
        }
    }
}
