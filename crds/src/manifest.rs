//! Reading manifests: multi-document YAML → `VNFChain`s, with unknown fields (and the field they were probably
//! meant to be), type errors and documents of the wrong kind reported by path.

use std::sync::OnceLock;

use serde_json::Value;

use crate::valid::ValidChain;
use crate::validate::{ValidationError, ValidationErrors, validate_with_crd};
use crate::vnfchain::{API_VERSION, KIND, VNFChain};

/// What one YAML document turned out to be.
#[derive(Debug)]
pub enum Document {
    /// A `VNFChain` that passed every check, typed.
    Chain(Box<ValidChain>),
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
    let mut values = crate::yaml::read_stream(text).map_err(ManifestError::Yaml)?;
    let read = |first: usize, values: Vec<Value>| -> Vec<Document> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| match parse_one(v) {
                Ok(doc) => doc,
                Err(kind) => foreign_kind(first + i, kind),
            })
            .collect()
    };
    // Documents are independent: a long stream is checked half on another thread.
    if values.len() < MANY_DOCUMENTS {
        return Ok(read(0, values));
    }
    let half = values.len() / 2;
    let second = values.split_off(half);
    Ok(std::thread::scope(|s| {
        let later = s.spawn(move || read(half, second));
        let mut docs = read(0, values);
        docs.extend(crate::validate::joined(later));
        docs
    }))
}

/// From how many documents a stream is checked on two threads.
const MANY_DOCUMENTS: usize = 16;

/// A document of another kind is only welcome when it is plainly not a chain (e.g. the `v1` Secret holding a
/// cipher key): one of this API group, or whose kind looks like `VNFChain`, is a mistake and an error naming the
/// document's index (0-based, in the file) rather than a silently skipped chain.
fn foreign_kind(index: usize, kind: ForeignKind) -> Document {
    let ours = kind.api_version.split('/').next() == Some(crate::vnfchain::GROUP);
    let near = did_you_mean(&kind.kind, [KIND]).is_some();
    if !ours && !near && !kind.api_version.is_empty() {
        return Document::Other { kind: kind.kind };
    }
    let message = if near {
        format!(
            "document {index} has kind {:?}, which is not a kind of this file; did you mean {KIND:?}?",
            kind.kind
        )
    } else if ours {
        format!(
            "document {index} has kind {:?}, but the only kind of {} is {KIND:?}",
            kind.kind,
            crate::vnfchain::GROUP
        )
    } else {
        format!("document {index} of kind {:?} has no apiVersion", kind.kind)
    };
    Document::Invalid(ValidationErrors::single("kind", message))
}

/// What `parse_document` learnt of a document that is not a `VNFChain`.
struct ForeignKind {
    kind: String,
    api_version: String,
}

/// Parses a file that must hold exactly one `VNFChain`, as written (see [`read_single_chain`] for the typed
/// chain).
pub fn parse_single_chain(text: &str) -> Result<VNFChain, ValidationErrors> {
    read_single_chain(text).map(ValidChain::into_chain)
}

/// Reads one object (e.g. as the API server sends it to the operator) exactly as [`parse_documents`] reads a
/// document: the same checks, the same messages, the same field paths. An object of another kind is an error.
pub fn read_object(value: Value) -> Result<ValidChain, ValidationErrors> {
    match parse_one(value) {
        Ok(Document::Chain(c)) => Ok(*c),
        Ok(Document::Invalid(e)) => Err(e),
        Ok(Document::Other { kind }) | Err(ForeignKind { kind, .. }) => Err(
            ValidationErrors::single("kind", format!("{kind:?} is not {KIND:?}")),
        ),
    }
}

/// Reads a file that must hold exactly one `VNFChain` (what the data plane and the testbed take), typed.
pub fn read_single_chain(text: &str) -> Result<ValidChain, ValidationErrors> {
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
    match parse_one(value) {
        Ok(doc) => doc,
        Err(kind) => Document::Other { kind: kind.kind },
    }
}

/// `parse_document`, telling a document of another kind apart (with its apiVersion).
fn parse_one(value: Value) -> Result<Document, ForeignKind> {
    let Some(map) = value.as_object() else {
        return Ok(Document::Invalid(ValidationErrors::single(
            "(document)",
            "expected a mapping with apiVersion, kind, metadata and spec",
        )));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != KIND {
        if kind.is_empty() {
            return Ok(Document::Invalid(ValidationErrors::single(
                "kind",
                "is required",
            )));
        }
        return Err(ForeignKind {
            kind: kind.to_owned(),
            api_version: map
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
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
    // Unknown fields first, all of them, each with the field it was probably meant to be.
    let unknown = unknown_fields_by_schema(&value);
    if !unknown.is_empty() {
        errors.extend(unknown);
        return Ok(Document::Invalid(ValidationErrors(errors)));
    }
    // The parts the round trip below compares, as written.
    let written = WrittenK8sParts::of(&value);
    // The document as the API server checks it (nulls pruned, defaults applied: in place, the document is
    // not copied): typed parsing alone would accept what the schema refuses (`[]` for an object, `null` for
    // a string). The types read the same document (their defaults are the schema's, which the API server
    // stores).
    let mut value = value;
    crate::schema::to_what_the_api_server_checks(&mut value);
    // The CRD's schema and CEL rules read the document while the types and the semantic rules read it too:
    // two independent checks, on two threads for a large document. The document is shared, and freed by
    // whichever is done with it last (the types are done with it long before the semantic rules are).
    if !crate::validate::worth_a_thread(rules_in(&value)) {
        let crd = crate::schema::check(&value);
        return typed_and_checked(std::sync::Arc::new(value), written, || crd, errors);
    }
    let value = std::sync::Arc::new(value);
    std::thread::scope(|s| {
        let theirs = std::sync::Arc::clone(&value);
        let crd = s.spawn(move || crate::schema::check(&theirs));
        let crd = move || crate::validate::joined(crd);
        typed_and_checked(value, written, crd, errors)
    })
}

/// How many functions and firewall rules `document` has (what the CRD's checks take time over).
fn rules_in(document: &Value) -> usize {
    let functions = document
        .pointer("/spec/functions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    functions.len()
        + functions
            .iter()
            .filter_map(|f| f.pointer("/firewall/rules").and_then(Value::as_array))
            .map(Vec::len)
            .sum::<usize>()
}

/// The second half of [`parse_one`]: the document (pruned, defaulted) read by the types, then the semantic
/// rules; `crd` gives the CRD's verdict on the same document (computed meanwhile).
fn typed_and_checked(
    value: std::sync::Arc<Value>,
    written: WrittenK8sParts,
    crd: impl FnOnce() -> Vec<ValidationError>,
    mut errors: Vec<ValidationError>,
) -> Result<Document, ForeignKind> {
    let typed: Result<VNFChain, _> = serde_path_to_error::deserialize(&*value);
    drop(value);
    let chain = match typed {
        Ok(c) => c,
        Err(e) => {
            let mut path = e.path().to_string();
            let mut message = e.inner().to_string();
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
            {
                path = if path == "." {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                message = "is required".into();
            }
            message = plain_types(message);
            if message.starts_with("invalid type: boolean") {
                message.push_str(
                    " (YAML reads y, n, yes, no, on and off as booleans: quote the value)",
                );
            }
            let path = if path == "." {
                "(document)".into()
            } else {
                path
            };
            errors.extend(crd().into_iter().filter(|c| c.path != path));
            errors.push(err(path, message));
            return Ok(Document::Invalid(ValidationErrors(errors)));
        }
    };
    // Types that ignore unknown fields on their own (metadata, tolerations, resources) are caught here:
    // anything written that does not survive the round trip through the types was not understood. The rest
    // of the spec is build-vnf's own types, whose every field the schema declares (checked above), so only
    // the parts holding Kubernetes types make the round trip (a 10,000-rule firewall does not).
    written.round_trip(&chain, &mut errors);
    match validate_with_crd(&chain, crd) {
        Ok(typed) if errors.is_empty() => {
            Ok(Document::Chain(Box::new(ValidChain::new(chain, typed))))
        }
        Ok(_) => Ok(Document::Invalid(ValidationErrors(errors))),
        Err(ValidationErrors(more)) => {
            errors.extend(more);
            Ok(Document::Invalid(ValidationErrors(errors)))
        }
    }
}

/// A typed-decoding message in the user's words: the Rust type it names after ", expected" (`u16`,
/// `struct Firewall`) becomes what a manifest writer would call it ("a whole number from 0 to 65535", "a
/// mapping").
fn plain_types(message: String) -> String {
    const NUMBERS: [(&str, &str); 10] = [
        ("u8", "a whole number from 0 to 255"),
        ("u16", "a whole number from 0 to 65535"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u64", "a whole number from 0 to 18446744073709551615"),
        ("usize", "a whole number of at least 0"),
        ("i32", "a whole number from -2147483648 to 2147483647"),
        ("i64", "a whole number"),
        ("isize", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
    ];
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return message;
    };
    let plain = if expected.starts_with("struct ") || expected.starts_with("map") {
        "a mapping"
    } else if let Some((_, plain)) = NUMBERS.iter().find(|(rust, _)| *rust == expected) {
        plain
    } else {
        return message;
    };
    format!("{head}, expected {plain}")
}

/// The parts of a document that hold Kubernetes types (which ignore unknown fields on their own), as written.
struct WrittenK8sParts {
    metadata: Option<Value>,
    placement: Option<Value>,
    dataplane: Option<Value>,
}

impl WrittenK8sParts {
    fn of(document: &Value) -> Self {
        let spec = document.get("spec");
        Self {
            metadata: document.get("metadata").cloned(),
            placement: spec.and_then(|s| s.get("placement")).cloned(),
            dataplane: spec.and_then(|s| s.get("dataplane")).cloned(),
        }
    }

    /// Reports every field written in these parts that the types did not keep.
    fn round_trip(&self, chain: &VNFChain, errors: &mut Vec<ValidationError>) {
        let parts = [
            (
                "metadata",
                &self.metadata,
                serde_json::to_value(&chain.metadata),
            ),
            (
                "spec.placement",
                &self.placement,
                serde_json::to_value(&chain.spec.placement),
            ),
            (
                "spec.dataplane",
                &self.dataplane,
                serde_json::to_value(&chain.spec.dataplane),
            ),
        ];
        for (path, written, typed) in parts {
            match (written, typed) {
                (None, _) => {}
                (Some(w), Ok(t)) => unknown_fields(w, &t, path, errors),
                (Some(_), Err(e)) => errors.push(err(path, format!("cannot be re-encoded: {e}"))),
            }
        }
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        path: path.into(),
        message: message.into(),
    }
}

/// The fields of `metadata` (ObjectMeta), which the CRD schema leaves open.
const METADATA_FIELDS: [&str; 15] = [
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

/// Every key of `document` that the CRD's schema does not declare, with a "did you mean" for near misses
/// (the API server's strict field validation refuses them; nothing here drops them silently).
fn unknown_fields_by_schema(document: &Value) -> Vec<ValidationError> {
    static SCHEMA: OnceLock<Option<Value>> = OnceLock::new();
    let Some(schema) = SCHEMA.get_or_init(|| crate::schema::openapi_schema().ok()) else {
        return vec![err("(schema)", "the CRD schema cannot be generated")];
    };
    let mut out = Vec::new();
    walk_unknown(document, schema, &mut String::new(), &mut out);
    out
}

/// Walks `value` along `schema`; `path` is the dotted path of `value`, extended and cut back in place (it is
/// only formatted into a message for an unknown field, so a large valid document costs no string per node).
fn walk_unknown(value: &Value, schema: &Value, path: &mut String, out: &mut Vec<ValidationError>) {
    let len = path.len();
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(props) = props {
                let root = path.is_empty();
                for (k, v) in map {
                    if !root {
                        path.push('.');
                    }
                    path.push_str(k);
                    if root && k == "metadata" {
                        walk_metadata(v, out);
                    } else if let Some(child) = props.get(k) {
                        walk_unknown(v, child, path, out);
                    } else if !(root && (k == "apiVersion" || k == "kind")) {
                        out.push(unknown(path, k, props.keys().map(String::as_str)));
                    }
                    path.truncate(len);
                }
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (k, v) in map {
                    use std::fmt::Write as _;
                    let _ = write!(path, "[{k:?}]");
                    walk_unknown(v, values, path, out);
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    use std::fmt::Write as _;
                    let _ = write!(path, "[{i}]");
                    walk_unknown(v, item, path, out);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn walk_metadata(value: &Value, out: &mut Vec<ValidationError>) {
    if let Value::Object(map) = value {
        for k in map.keys() {
            if !METADATA_FIELDS.contains(&k.as_str()) {
                out.push(unknown(&format!("metadata.{k}"), k, METADATA_FIELDS));
            }
        }
    }
}

fn unknown<'a>(path: &str, key: &str, known: impl IntoIterator<Item = &'a str>) -> ValidationError {
    let message = match did_you_mean(key, known) {
        Some(m) => format!("unknown field `{key}`; did you mean `{m}`?"),
        None => format!("unknown field `{key}`"),
    };
    err(path, message)
}

/// The known name closest to `word`, when it is a near miss: the same ignoring case, or at most a couple of
/// letters off (a third of the word's length, at least one).
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    known
        .into_iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
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
    #[test]
    fn typed_decoding_messages_name_no_rust_type() {
        assert_eq!(
            plain_types("invalid value: integer `70000`, expected u16".into()),
            "invalid value: integer `70000`, expected a whole number from 0 to 65535"
        );
        assert_eq!(
            plain_types("invalid type: sequence, expected struct Firewall".into()),
            "invalid type: sequence, expected a mapping"
        );
        let kept = "unknown variant `router`, expected one of `firewall`, `nat`";
        assert_eq!(plain_types(kept.into()), kept);
    }

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
            e.contains(
                &"metadata.labelz: unknown field `labelz`; did you mean `labels`?".to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(
                &"spec.placement.tolerations[0].efect: unknown field `efect`; did you mean `effect`?"
                    .to_string()
            ),
            "{e:?}"
        );
    }

    #[test]
    fn every_unknown_field_is_reported_with_a_near_miss() {
        let text = MINIMAL.replace("monitor: {}", "monitor: {sampleOneIN: 3, colour: red}");
        let e = errors(&text);
        assert!(
            e.contains(
                &"spec.functions[0].monitor.sampleOneIN: unknown field `sampleOneIN`; did you mean `sampleOneIn`?"
                    .to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(&"spec.functions[0].monitor.colour: unknown field `colour`".to_string()),
            "{e:?}"
        );
        assert_eq!(
            did_you_mean("destinationPort", ["destinationPorts", "sourcePorts"]),
            Some("destinationPorts")
        );
        assert_eq!(did_you_mean("x", ["protocol"]), None);
    }

    #[test]
    fn a_misspelt_kind_is_an_error_naming_its_document() {
        let text = format!(
            "{MINIMAL}\n---\n{}",
            MINIMAL.replace("kind: VNFChain", "kind: VnfChain")
        );
        let docs = parse_documents(&text).expect("yaml");
        assert!(matches!(&docs[0], Document::Chain(_)));
        match &docs[1] {
            Document::Invalid(e) => {
                let e = e.to_string();
                assert!(
                    e.starts_with("kind: document 1 has kind \"VnfChain\""),
                    "{e}"
                );
                assert!(e.contains("did you mean \"VNFChain\"?"), "{e}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        // Another kind of this API group is an error too; a plain v1 Secret is not.
        let other = MINIMAL.replace("kind: VNFChain", "kind: NetworkPolicy");
        assert!(matches!(
            parse_documents(&other).expect("yaml")[0],
            Document::Invalid(_)
        ));
        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: k}\n";
        assert!(matches!(
            parse_documents(secret).expect("yaml")[0],
            Document::Other { .. }
        ));
    }

    #[test]
    fn a_long_stream_keeps_its_order_and_document_indices() {
        // Long enough to be checked on two threads (MANY_DOCUMENTS); the misspelt kind is in the second half.
        let mut text = String::new();
        for i in 0..2 * MANY_DOCUMENTS {
            text.push_str("---\n");
            match i {
                3 => text.push_str("apiVersion: v1\nkind: Secret\nmetadata: {name: k}\n"),
                25 => text.push_str(&MINIMAL.replace("kind: VNFChain", "kind: VnfChain")),
                _ => text.push_str(&MINIMAL.replace("name: t\n", &format!("name: t{i}\n"))),
            }
        }
        let docs = parse_documents(&text).expect("yaml");
        assert_eq!(docs.len(), 2 * MANY_DOCUMENTS);
        for (i, d) in docs.iter().enumerate() {
            match (i, d) {
                (3, Document::Other { kind }) => assert_eq!(kind, "Secret"),
                (25, Document::Invalid(e)) => assert!(
                    e.to_string()
                        .starts_with("kind: document 25 has kind \"VnfChain\""),
                    "{e}"
                ),
                (_, Document::Chain(c)) => {
                    assert_eq!(
                        c.chain().metadata.name.as_deref(),
                        Some(format!("t{i}").as_str())
                    );
                }
                other => panic!("document {i}: {other:?}"),
            }
        }
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
