//! Sidecar mode's injection webhook (issue 18): an `AdmissionReview` for a Pod CREATE in, a JSONPatch out that
//! adds `cnf-dataplane` to the pod as a native sidecar when a chain's `spec.target` selects the pod.
//!
//! The wire format is `admission.k8s.io/v1` as the API server speaks it
//! (<https://kubernetes.io/docs/reference/config-api/apiserver-admission.v1/> and "Webhook request and
//! response" in <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response>):
//! the response is an `AdmissionReview` of the same version whose `response.uid` is the request's `uid`, with
//! `allowed`, and for a mutation `patchType: JSONPatch` and `patch`, the base64 of an RFC 6902 patch.
//!
//! What the patch does, and nothing else:
//! - puts `cnf-dataplane` first in `spec.initContainers` with `restartPolicy: Always` (a native sidecar:
//!   Kubernetes ≥ 1.29, <https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/>), so it starts
//!   before the workload's init containers and containers and stops after them;
//! - adds its volumes (names prefixed `buildvnf-`): the chain's ConfigMap, its TLS Secret, the node's bpffs,
//!   a scratch `/tmp`, and key Secrets of user-space functions;
//! - labels the pod `buildvnf.io/chain=<chain>` (the operator finds the chain's pods by it) and annotates it
//!   with the chain (`buildvnf.io/injected`) and the restart hash it was injected with.
//!
//! Only that container gets CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (never privileged); the workload's containers
//! and init containers are not touched. A pod that already has `cnf-dataplane` gets no patch (idempotent: a
//! re-invocation, `reinvocationPolicy: IfNeeded`, or a pod injected by hand).
//!
//! Refusals fail closed, with a message naming the problem: a pod two chains select, a chain `validate()`
//! refuses or whose image the policy forbids, a workload that already uses the sidecar's ports or volume names,
//! or a cluster without native sidecars. Anything that is not a Pod CREATE is allowed unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use crds::VNFChain;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::render::{
    self, CHAIN_LABEL, GRPC_PORT, METRICS_PORT, RESTART_HASH_ANNOTATION, Settings,
};

/// Path the API server posts reviews to (the chart's `clientConfig.service.path`).
pub const PATH: &str = "/inject";
/// Port the operator serves the webhook on (HTTPS).
pub const PORT: u16 = 9443;
/// Name of the injected container.
pub const CONTAINER: &str = "cnf-dataplane";
/// Annotation on an injected pod: `<chain namespace>/<chain name>`.
pub const INJECTED_ANNOTATION: &str = "buildvnf.io/injected";
/// Namespace label that opts a namespace in to injection (the chart's `namespaceSelector`).
pub const NAMESPACE_LABEL: &str = "buildvnf.io/injection";
/// Value of [`NAMESPACE_LABEL`] that opts in.
pub const NAMESPACE_ENABLED: &str = "enabled";
/// Pod label that opts a pod out (`"false"`; the chart's `objectSelector`).
pub const POD_OPT_OUT_LABEL: &str = "buildvnf.io/inject";
/// Prefix of the injected volumes' names.
pub const VOLUME_PREFIX: &str = "buildvnf-";
/// The largest review the webhook reads. The API server's own request limit is 3 MiB and etcd's object limit
/// 1.5 MiB; a review wraps one object (twice at most, `object` and `oldObject`).
pub const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

/// A review the webhook cannot answer (HTTP 4xx): without a `request.uid` there is no response to give.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    /// The body is larger than [`MAX_REVIEW_BYTES`].
    #[error("admission review of {0} bytes is larger than the {MAX_REVIEW_BYTES} bytes accepted")]
    TooLarge(usize),
    /// The body is not JSON.
    #[error("admission review is not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an `admission.k8s.io/v1` `AdmissionReview` with a request and its uid.
    #[error("not an admission.k8s.io/v1 AdmissionReview: {0}")]
    NotAReview(&'static str),
}

/// What the webhook knows besides the review: the chains, the pod's namespace labels, the settings.
pub struct Inputs<'a> {
    /// Every VNFChain of the cluster (the operator's reflector store).
    pub chains: &'a [Arc<VNFChain>],
    /// Labels of the pod's namespace (for `spec.target.namespaceSelector`).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The operator's rendering settings (default image, bpffs path, image policy).
    pub settings: &'a Settings,
    /// Whether the cluster runs native sidecars (Kubernetes ≥ 1.29); without them an init container with
    /// `restartPolicy: Always` would never finish and block the pod.
    pub native_sidecars: bool,
}

/// Answers one review: the response `AdmissionReview` as JSON.
pub fn review(body: &[u8], inputs: &Inputs<'_>) -> Result<Value, ReviewError> {
    if body.len() > MAX_REVIEW_BYTES {
        return Err(ReviewError::TooLarge(body.len()));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    if v.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1") {
        return Err(ReviewError::NotAReview(
            "apiVersion is not admission.k8s.io/v1",
        ));
    }
    if v.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(ReviewError::NotAReview("kind is not AdmissionReview"));
    }
    let request = v
        .get("request")
        .filter(|r| r.is_object())
        .ok_or(ReviewError::NotAReview("no request"))?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or(ReviewError::NotAReview("no request.uid"))?;
    let verdict = decide(request, inputs);
    Ok(response(uid, verdict))
}

/// What the webhook answers.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Allowed unchanged, with an optional warning for the client.
    Unchanged(Option<String>),
    /// Allowed with this JSONPatch.
    Patch(Vec<Value>),
    /// Refused, with the message the client sees.
    Deny(String),
}

fn response(uid: &str, verdict: Verdict) -> Value {
    let mut r = json!({"uid": uid, "allowed": true});
    match verdict {
        Verdict::Unchanged(None) => {}
        Verdict::Unchanged(Some(w)) => r["warnings"] = json!([w]),
        Verdict::Patch(ops) => {
            let bytes = serde_json::to_vec(&ops).unwrap_or_default();
            r["patchType"] = json!("JSONPatch");
            r["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        Verdict::Deny(message) => {
            r["allowed"] = json!(false);
            r["status"] = json!({"code": 403, "reason": "Forbidden", "message": message});
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
}

/// The decision for one request (already known to have a uid).
pub fn decide(request: &Value, inputs: &Inputs<'_>) -> Verdict {
    let kind = request.get("kind");
    let is_pod = kind.and_then(|k| k.get("kind")).and_then(Value::as_str) == Some("Pod")
        && kind.and_then(|k| k.get("group")).and_then(Value::as_str) == Some("")
        && request
            .get("subResource")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
    if !is_pod {
        return Verdict::Unchanged(Some(
            "buildvnf-operator injects only into Pods; this request was allowed unchanged".into(),
        ));
    }
    if request.get("operation").and_then(Value::as_str) != Some("CREATE") {
        return Verdict::Unchanged(None);
    }
    let Some(object) = request.get("object").filter(|o| o.is_object()) else {
        return Verdict::Deny("buildvnf-operator: the review of a Pod CREATE has no object".into());
    };
    let pod: Pod = match serde_json::from_value(object.clone()) {
        Ok(p) => p,
        Err(e) => return Verdict::Deny(format!("buildvnf-operator: the Pod cannot be read: {e}")),
    };
    let Some(spec) = &pod.spec else {
        return Verdict::Deny("buildvnf-operator: the Pod has no spec".into());
    };
    if already_injected(&pod) {
        return Verdict::Unchanged(None);
    }
    let namespace = request
        .get("namespace")
        .and_then(Value::as_str)
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or_default();
    let selecting: Vec<&Arc<VNFChain>> = inputs
        .chains
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| {
            c.spec.target.as_ref().is_some_and(|t| {
                t.selects(
                    c.metadata.namespace.as_deref().unwrap_or_default(),
                    namespace,
                    inputs.namespace_labels,
                    pod.labels(),
                )
            })
        })
        .collect();
    let chain = match selecting.as_slice() {
        [] => return Verdict::Unchanged(None),
        [one] => one,
        many => {
            let names: Vec<String> = many.iter().map(|c| chain_key(c)).collect();
            return Verdict::Deny(format!(
                "buildvnf-operator: the pod is selected by {} chains ({}); a pod runs at most one chain: \
                 narrow their spec.target.podSelector",
                names.len(),
                names.join(", ")
            ));
        }
    };
    let key = chain_key(chain);
    if !inputs.native_sidecars {
        return Verdict::Deny(format!(
            "buildvnf-operator: chain {key} selects this pod, but this cluster has no native sidecar containers \
             (Kubernetes 1.29 or later); see docs/sidecar.md"
        ));
    }
    if let Err(e) = crds::validate(chain) {
        return Verdict::Deny(format!(
            "buildvnf-operator: chain {key} selects this pod but is invalid, so it cannot run: {e}"
        ));
    }
    if let Some(r) = crate::policy::refusal(
        chain,
        &inputs.settings.allowed_images,
        &inputs.settings.default_image,
    ) {
        return Verdict::Deny(format!("buildvnf-operator: chain {key}: {}", r.message));
    }
    if let Some(conflict) = conflicts(spec) {
        return Verdict::Deny(format!(
            "buildvnf-operator: chain {key} selects this pod, but {conflict}"
        ));
    }
    match patch(&pod, chain, inputs.settings) {
        Ok(ops) => Verdict::Patch(ops),
        Err(e) => Verdict::Deny(format!("buildvnf-operator: chain {key}: {e}")),
    }
}

fn chain_key(c: &VNFChain) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or_default(),
        c.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether `pod` already runs the sidecar (or says it was injected).
pub fn already_injected(pod: &Pod) -> bool {
    let named =
        |cs: &[k8s_openapi::api::core::v1::Container]| cs.iter().any(|c| c.name == CONTAINER);
    pod.annotations().contains_key(INJECTED_ANNOTATION)
        || pod.spec.as_ref().is_some_and(|s| {
            named(&s.containers) || s.init_containers.as_deref().is_some_and(named)
        })
}

/// What in the workload's spec the sidecar would collide with: the ports it listens on (the pod's containers
/// share one network namespace) or the names of its volumes.
fn conflicts(spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<String> {
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in all {
        for p in c.ports.iter().flatten() {
            if [GRPC_PORT, METRICS_PORT].contains(&p.container_port) {
                return Some(format!(
                    "its container {:?} declares port {}, which the cnf-dataplane sidecar listens on",
                    c.name, p.container_port
                ));
            }
        }
    }
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name.starts_with(VOLUME_PREFIX))
        .map(|v| {
            format!(
                "its volume {:?} uses the prefix {VOLUME_PREFIX:?} reserved for the sidecar's volumes",
                v.name
            )
        })
}

/// RFC 6901: `~` → `~0`, `/` → `~1`.
fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The JSONPatch injecting `chain`'s sidecar into `pod`.
pub fn patch(pod: &Pod, chain: &VNFChain, settings: &Settings) -> crate::Result<Vec<Value>> {
    let (mut container, volumes) = render::dataplane_container(chain, settings, VOLUME_PREFIX)?;
    container.restart_policy = Some("Always".into());
    let container =
        serde_json::to_value(&container).map_err(|e| crate::Error::Render(e.to_string()))?;
    let spec = pod
        .spec
        .as_ref()
        .ok_or(crate::Error::MissingField("spec"))?;
    let mut ops = Vec::new();
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": container}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [container]}));
    }
    let volumes: Vec<Value> = volumes
        .iter()
        .map(|v| serde_json::to_value(v).map_err(|e| crate::Error::Render(e.to_string())))
        .collect::<crate::Result<_>>()?;
    if spec.volumes.as_ref().is_some_and(|v| !v.is_empty()) {
        for v in volumes {
            ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": v}));
        }
    } else {
        ops.push(json!({"op": "add", "path": "/spec/volumes", "value": volumes}));
    }
    let name = chain
        .metadata
        .name
        .clone()
        .ok_or(crate::Error::MissingField("metadata.name"))?;
    let annotations = [
        (INJECTED_ANNOTATION.to_string(), chain_key(chain)),
        (
            RESTART_HASH_ANNOTATION.to_string(),
            render::restart_hash(chain)?,
        ),
    ];
    let labels = [(CHAIN_LABEL.to_string(), name)];
    map_ops(
        &mut ops,
        "/metadata/annotations",
        pod.metadata.annotations.as_ref(),
        &annotations,
    );
    map_ops(
        &mut ops,
        "/metadata/labels",
        pod.metadata.labels.as_ref(),
        &labels,
    );
    Ok(ops)
}

/// Adds (or replaces) `entries` in the string map at `path`, creating the map when the pod has none.
fn map_ops(
    ops: &mut Vec<Value>,
    path: &str,
    existing: Option<&BTreeMap<String, String>>,
    entries: &[(String, String)],
) {
    match existing {
        None => {
            let map: BTreeMap<&str, &str> = entries
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            ops.push(json!({"op": "add", "path": path, "value": map}));
        }
        Some(_) => {
            for (k, v) in entries {
                ops.push(json!({"op": "add", "path": format!("{path}/{}", pointer_escape(k)), "value": v}));
            }
        }
    }
}
