//! Shared helpers of the crds integration tests: the repository paths and the CRD's schema as the API server sees it.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `*.yaml` files directly in `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The openAPIV3Schema of the generated CRD, as JSON.
pub fn openapi_schema() -> Value {
    let crd = crds::VNFChain::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("schema encodes")
}

/// What the CRD alone (types, enums, ranges, patterns, then CEL rules) says about an object:
/// the messages of every rejection, empty when it accepts.
pub fn crd_rejections(object: &Value) -> Vec<String> {
    let schema = openapi_schema();
    let validator =
        jsonschema::draft4::new(&schema).expect("the CRD schema compiles as JSON Schema");
    let mut out: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("schema: {}: {e}", e.instance_path()))
        .collect();
    if let Err(errors) = kube::core::cel::Validator::new().validate(&schema, object, None) {
        out.extend(
            errors
                .as_slice()
                .iter()
                .map(|e| format!("cel: {}: {} ({:?})", e.field_path, e.message, e.kind)),
        );
    }
    out
}
