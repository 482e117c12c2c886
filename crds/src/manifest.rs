//! Reading manifests: multi-document YAML → `VNFChain`s, with unknown fields and type errors reported by path.

use serde_json::Value;

use crate::validate::{ValidationError, ValidationErrors, validate};
use crate::vnfchain::{API_VERSION, KIND, VNFChain};

/// What one YAML document turned out to be.
#[derive(Debug)]
pub enum Document {
    /// A `VNFChain` that passed every check.
    Chain(Box<VNFChain>),
    /// A `VNFChain` with problems (never empty).
    Invalid(ValidationErrors),
    /// Another kind of object (e.g. the Secret holding a cipher key); not ours to check.
    Other {
        /// Its `kind`, if it has one.
        kind: String,
    },
}

/// Errors that stop a whole file from being read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(String),
}

/// Parses every document of a YAML stream; empty documents are skipped.
///
/// Each `VNFChain` document is deserialized (rejecting unknown fields anywhere, with their path) and then
/// passed through [`validate`], so the result of a document lists every problem the shared validation finds.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ManifestError> {
    let values: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    Ok(values
        .into_iter()
        .filter(|v| !v.is_null())
        .map(parse_document)
        .collect())
}

/// Parses a file that must hold exactly one `VNFChain` (what the data plane and the testbed take).
pub fn parse_single_chain(text: &str) -> Result<VNFChain, ValidationErrors> {
    let docs =
        parse_documents(text).map_err(|e| ValidationErrors::single("(file)", e.to_string()))?;
    let mut chains = Vec::new();
    for doc in docs {
        match doc {
            Document::Chain(c) => chains.push(*c),
            Document::Invalid(e) => return Err(e),
            Document::Other { .. } => {}
        }
    }
    match chains.len() {
        1 => Ok(chains.remove(0)),
        0 => Err(ValidationErrors::single(
            "kind",
            format!("no {KIND} document found"),
        )),
        n => Err(ValidationErrors::single(
            "kind",
            format!("expected one {KIND} document, found {n}"),
        )),
    }
}

/// Turns one parsed YAML document into a checked chain, or the reasons it is not one.
pub fn parse_document(value: Value) -> Document {
    let Some(map) = value.as_object() else {
        return Document::Invalid(ValidationErrors::single(
            "(document)",
            "expected a mapping with apiVersion, kind, metadata and spec",
        ));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != KIND {
        if kind.is_empty() {
            return Document::Invalid(ValidationErrors::single("kind", "is required"));
        }
        return Document::Other {
            kind: kind.to_owned(),
        };
    }
    let mut errors = Vec::new();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => errors.push(err(
            "apiVersion",
            format!("{other:?} is not served; use {API_VERSION:?}"),
        )),
        None => errors.push(err("apiVersion", "is required")),
    }
    let chain: VNFChain = match serde_path_to_error::deserialize(&value) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let mut message = e.inner().to_string();
            if message.starts_with("invalid type: boolean") {
                message.push_str(
                    " (YAML reads y, n, yes, no, on and off as booleans: quote the value)",
                );
            }
            errors.push(err(
                if path == "." {
                    "(document)".into()
                } else {
                    path
                },
                message,
            ));
            return Document::Invalid(ValidationErrors(errors));
        }
    };
    // Types that ignore unknown fields on their own (metadata, tolerations, resources) are caught here:
    // anything written that does not survive the round trip through the types was not understood.
    match serde_json::to_value(&chain) {
        Ok(typed) => unknown_fields(&value, &typed, "", &mut errors),
        Err(e) => errors.push(err("(document)", format!("cannot be re-encoded: {e}"))),
    }
    if let Err(ValidationErrors(more)) = validate(&chain) {
        errors.extend(more);
    }
    if errors.is_empty() {
        Document::Chain(Box::new(chain))
    } else {
        Document::Invalid(ValidationErrors(errors))
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        path: path.into(),
        message: message.into(),
    }
}

/// Reports every key of `written` (non-null) that is absent from `typed`.
fn unknown_fields(written: &Value, typed: &Value, path: &str, out: &mut Vec<ValidationError>) {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (k, v) in w {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(err(p, "unknown field")),
                }
            }
        }
        (Value::Array(w), Value::Array(t)) => {
            for (i, (wv, tv)) in w.iter().zip(t).enumerate() {
                unknown_fields(wv, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Serializes a chain as YAML (the inverse of [`parse_documents`] for one chain).
pub fn to_yaml(chain: &VNFChain) -> Result<String, ManifestError> {
    serde_saphyr::to_string(chain).map_err(|e| ManifestError::Yaml(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata:
  name: t
spec:
  functions:
    - name: mon
      type: monitor
      monitor: {}
"#;

    fn errors(text: &str) -> Vec<String> {
        match parse_documents(text).expect("yaml").remove(0) {
            Document::Invalid(e) => e.0.iter().map(ToString::to_string).collect(),
            other => panic!("expected errors, got {other:?}"),
        }
    }

    #[test]
    fn minimal_chain_gets_defaults() {
        let chain = parse_single_chain(MINIMAL).expect("valid");
        assert_eq!(chain.spec.interfaces.ingress.as_str(), "eth0");
        assert_eq!(chain.spec.placement.replicas, 1);
        assert!(chain.spec.dataplane.telemetry.latency_histograms);
    }

    #[test]
    fn unknown_field_in_spec_names_its_path() {
        let text = MINIMAL.replace("monitor: {}", "monitor: {sampleEvery: 3}");
        let e = errors(&text);
        assert!(e[0].starts_with("spec.functions[0].monitor"), "{e:?}");
        assert!(e[0].contains("unknown field `sampleEvery`"), "{e:?}");
    }

    #[test]
    fn unknown_field_in_metadata_and_k8s_types() {
        let text = MINIMAL.replace("  name: t\n", "  name: t\n  labelz: {}\n").replace(
            "spec:\n",
            "spec:\n  placement:\n    tolerations: [{key: a, operator: Exists, efect: NoSchedule}]\n",
        );
        let e = errors(&text);
        assert!(
            e.contains(&"metadata.labelz: unknown field".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"spec.placement.tolerations[0].efect: unknown field".to_string()),
            "{e:?}"
        );
    }

    #[test]
    fn other_kinds_are_skipped_and_empty_docs_ignored() {
        let text = format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: k}}\n---\n{MINIMAL}\n---\n"
        );
        let docs = parse_documents(&text).expect("yaml");
        assert_eq!(docs.len(), 2);
        assert!(matches!(&docs[0], Document::Other { kind } if kind == "Secret"));
        assert!(matches!(&docs[1], Document::Chain(_)));
    }

    #[test]
    fn wrong_api_version_and_bad_yaml() {
        let e = errors(&MINIMAL.replace("v1alpha1", "v1"));
        assert!(e[0].starts_with("apiVersion: "), "{e:?}");
        assert!(parse_documents("a: [1, 2").is_err());
    }
}
