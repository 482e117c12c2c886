//! How the operator reads a `VNFChain` the API server sends: with the same reader as `vnfctl validate`
//! ([`crds::manifest::read_object`]), so it refuses exactly the documents the CLI refuses, with the same
//! messages and field paths.
//!
//! Typed decoding alone is weaker: serde reads `classifier: []` as an empty (default) classifier and a decoding
//! error has no field path. So the controller watches [`ChainObject`]s, whose decoding never fails on the spec:
//! it keeps the chain as far as the types can read it (for names, the finalizer and the status) and, when the
//! shared reader refuses the object, the reasons, which the reconcile reports as `InvalidSpec` without
//! changing anything.

use std::borrow::Cow;
use std::sync::Arc;

use crds::validate::ValidationErrors;
use crds::{VNFChain, VNFChainSpec, ValidChain};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A `VNFChain` object as watched: the chain and, when the shared reader refuses it, why.
#[derive(Clone, Debug)]
pub struct ChainObject {
    /// The chain as far as its types read it (a refused object may hold defaults where it was malformed, or
    /// an empty spec when even that fails): use it for names and status, never apply it when `refused`.
    pub chain: Arc<VNFChain>,
    /// Every problem `vnfctl validate` would report for this object; `None` for a valid chain.
    pub refused: Option<ValidationErrors>,
}

impl ChainObject {
    /// Reads an object as the API server sent it. The watch asks only for VNFChains of this version, so an
    /// item that does not repeat its `apiVersion` and `kind` (a list's items need not) is one.
    pub fn read(mut value: Value) -> Result<Self, String> {
        if let Some(map) = value.as_object_mut() {
            map.entry("apiVersion").or_insert(crds::API_VERSION.into());
            map.entry("kind").or_insert(crds::KIND.into());
        }
        match crds::manifest::read_object(value.clone()) {
            Ok(valid) => Ok(Self {
                chain: Arc::new(ValidChain::into_chain(valid)),
                refused: None,
            }),
            Err(errors) => Ok(Self {
                chain: Arc::new(as_far_as_types_go(value)?),
                refused: Some(errors),
            }),
        }
    }
}

/// The chain as typed decoding reads it; when it cannot, its metadata and status with an empty spec (so the
/// reconcile can still report the problems and run the finalizer).
fn as_far_as_types_go(value: Value) -> Result<VNFChain, String> {
    if let Ok(chain) = serde_json::from_value::<VNFChain>(value.clone()) {
        return Ok(chain);
    }
    let metadata: ObjectMeta =
        serde_json::from_value(value.get("metadata").cloned().unwrap_or_default())
            .map_err(|e| format!("metadata: {e}"))?;
    let spec: VNFChainSpec = serde_json::from_value(serde_json::json!({"functions": []}))
        .map_err(|e| format!("an empty spec does not decode: {e}"))?;
    let mut chain = VNFChain::new(metadata.name.as_deref().unwrap_or_default(), spec);
    chain.metadata = metadata;
    chain.status = value
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    Ok(chain)
}

impl<'de> Deserialize<'de> for ChainObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        ChainObject::read(value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ChainObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.chain.serialize(serializer)
    }
}

impl Resource for ChainObject {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        VNFChain::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        VNFChain::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        VNFChain::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        VNFChain::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.chain.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut Arc::make_mut(&mut self.chain).metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    use crds::manifest::{Document, parse_documents};

    fn invalid_examples() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/invalid");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("examples/invalid")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
    }

    /// The object as the API server would send it: the file's VNFChain document with the fields the server
    /// adds (namespace, uid, generation, resourceVersion, creationTimestamp, managedFields) and a status.
    fn as_served(doc: &Value) -> Value {
        let mut v = doc.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("namespace").or_insert("lab".into());
            meta.insert("uid".into(), "0b7c6f1e-3c4e-4d8e-9a55-2d5b3f3f9a10".into());
            meta.insert("generation".into(), 3.into());
            meta.insert("resourceVersion".into(), "4711".into());
            meta.insert("creationTimestamp".into(), "2026-01-02T03:04:05Z".into());
            meta.insert(
                "managedFields".into(),
                serde_json::json!([{"manager": "kubectl", "operation": "Apply",
                    "apiVersion": "buildvnf.io/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": {}}]),
            );
        }
        if let Some(map) = v.as_object_mut() {
            map.insert(
                "status".into(),
                serde_json::json!({"observedGeneration": 2}),
            );
        }
        v
    }

    /// Every invalid example, as the API server would serve it, is refused by the operator's reading with
    /// exactly the messages `vnfctl validate` prints for the file (the operator and the CLI are one door).
    /// Documents of another kind are the file's problem (the API server serves only VNFChains): the CLI
    /// names them at `kind`.
    #[test]
    fn the_operator_refuses_every_invalid_example_with_the_cli_messages() {
        let files = invalid_examples();
        assert!(files.len() >= 50, "{} invalid examples", files.len());
        let mut compared = 0;
        for path in files {
            let text = std::fs::read_to_string(&path).expect("read");
            let raw: Vec<Value> = serde_saphyr::from_multiple(&text).expect("yaml");
            let raw: Vec<Value> = raw.into_iter().filter(|d| !d.is_null()).collect();
            let docs = parse_documents(&text).expect("yaml");
            assert_eq!(raw.len(), docs.len(), "{}", path.display());
            let mut refused_here = false;
            for (doc, cli) in raw.iter().zip(&docs) {
                let cli: Vec<String> = match cli {
                    Document::Invalid(e) => e.0.iter().map(ToString::to_string).collect(),
                    _ => Vec::new(),
                };
                if doc.get("kind").and_then(Value::as_str) != Some(crds::KIND) {
                    assert!(
                        cli.iter().all(|e| e.starts_with("kind: ")),
                        "{}: {cli:?}",
                        path.display()
                    );
                    continue;
                }
                let served = serde_json::to_vec(&as_served(doc)).expect("encode");
                // What the watcher does: decode the API server's JSON.
                let object: ChainObject = serde_json::from_slice(&served).unwrap_or_else(|e| {
                    panic!("{}: the watcher cannot decode it: {e}", path.display())
                });
                let operator: Vec<String> = object
                    .refused
                    .iter()
                    .flat_map(|e| e.0.iter().map(ToString::to_string))
                    .collect();
                assert_eq!(
                    operator,
                    cli,
                    "{}: the operator and the CLI disagree",
                    path.display()
                );
                refused_here |= !operator.is_empty();
            }
            compared += usize::from(refused_here);
        }
        assert!(
            compared >= 45,
            "only {compared} examples refused through the operator's reading"
        );
    }

    /// `[]` for an object is refused (typed decoding alone reads it as the default classifier), and an object
    /// the types cannot read at all still decodes, with the reasons and a field path.
    #[test]
    fn a_list_for_an_object_and_a_wrong_type_are_refused_with_their_path() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/invalid/51-list-for-an-object.yaml"),
        )
        .expect("read");
        let doc: Value = serde_saphyr::from_str(&text).expect("yaml");
        assert!(
            serde_json::from_value::<VNFChain>(doc.clone()).is_ok(),
            "typed decoding alone accepts it"
        );
        let object = ChainObject::read(as_served(&doc)).expect("decodes");
        let refused = object.refused.expect("refused").to_string();
        assert!(
            refused.contains("spec.classifier: [] is not of type \"object\""),
            "{refused}"
        );

        let mut wrong = as_served(&doc);
        wrong["spec"]["classifier"] = serde_json::json!({});
        wrong["spec"]["placement"] = serde_json::json!({"replicas": "two"});
        let object = ChainObject::read(wrong).expect("decodes");
        assert_eq!(
            object.chain.metadata.name.as_deref(),
            Some("list-for-an-object")
        );
        assert_eq!(object.chain.metadata.generation, Some(3));
        let refused = object.refused.expect("refused").to_string();
        assert!(refused.contains("spec.placement.replicas"), "{refused}");
    }

    #[test]
    fn a_valid_chain_reads_as_the_cli_reads_it() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/edge-chain.yaml"),
        )
        .expect("read");
        let doc: Value = serde_saphyr::from_str(&text).expect("yaml");
        let object = ChainObject::read(as_served(&doc)).expect("decodes");
        assert!(object.refused.is_none(), "{:?}", object.refused);
        let cli = crds::manifest::parse_single_chain(&text).expect("valid");
        assert_eq!(object.chain.spec, cli.spec);
        assert_eq!(object.chain.metadata.generation, Some(3));
        // An item of a list need not repeat apiVersion and kind.
        let mut item = as_served(&doc);
        if let Some(map) = item.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        let object = ChainObject::read(item).expect("decodes");
        assert!(object.refused.is_none(), "{:?}", object.refused);
    }
}
