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
//!   a scratch `/tmp`, and key Secrets of user-space functions; in a namespace other than the chain's
//!   (selected through `spec.target.namespaceSelector`, opted in), the operator's copies of that ConfigMap
//!   and those Secrets, `<name>.<chain namespace>` (copies.rs);
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
                // Through a namespaceSelector, only a namespace that opted in is selected: the operator copies
                // the chain's ConfigMap and Secrets there and nowhere else (copies.rs).
                let opted_in = t.namespace_selector.is_none()
                    || inputs
                        .namespace_labels
                        .get(NAMESPACE_LABEL)
                        .map(String::as_str)
                        == Some(NAMESPACE_ENABLED);
                opted_in
                    && t.selects(
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
    match patch(&pod, chain, inputs.settings, namespace) {
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

/// The JSONPatch injecting `chain`'s sidecar into `pod`, a pod of `namespace`. In a namespace other than the
/// chain's, the sidecar mounts the operator's copies of the chain's ConfigMap and Secrets (copies.rs).
pub fn patch(
    pod: &Pod,
    chain: &VNFChain,
    settings: &Settings,
    namespace: &str,
) -> crate::Result<Vec<Value>> {
    let (mut container, mut volumes) = render::dataplane_container(chain, settings, VOLUME_PREFIX)?;
    let chain_ns = chain
        .metadata
        .namespace
        .as_deref()
        .ok_or(crate::Error::MissingField("metadata.namespace"))?;
    if namespace != chain_ns {
        crate::copies::rename_volumes(&mut volumes, chain_ns);
    }
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

// ---------------------------------------------------------------------------------------------------------
// Serving: HTTPS with a certificate from the operator's CA, the chains and namespaces from watches, and the
// CA bundle written into the chart's MutatingWebhookConfiguration.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_rustls::rustls;

use crate::certs::{Ca, Issued};

/// The webhook's view of the cluster: chains and namespaces, kept by watches.
#[derive(Clone)]
pub struct Stores {
    chains: Store<VNFChain>,
    namespaces: Store<Namespace>,
}

impl Stores {
    /// Starts watching every VNFChain and Namespace (cluster-wide `list` and `watch`).
    pub fn start(client: kube::Client) -> Self {
        let (chains, chain_writer) = reflector::store();
        let (namespaces, ns_writer) = reflector::store();
        let chain_stream = reflector::reflector(
            chain_writer,
            watcher(
                Api::<VNFChain>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .applied_objects();
        let ns_stream = reflector::reflector(
            ns_writer,
            watcher(Api::<Namespace>::all(client), watcher::Config::default()),
        )
        .applied_objects();
        for stream in [
            futures::StreamExt::boxed(futures::StreamExt::map(chain_stream, |r| r.map(|_| ()))),
            futures::StreamExt::boxed(futures::StreamExt::map(ns_stream, |r| r.map(|_| ()))),
        ] {
            tokio::spawn(futures::StreamExt::for_each(stream, |r| async move {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "webhook watch");
                }
            }));
        }
        Self { chains, namespaces }
    }

    /// Waits until both watches have listed once.
    pub async fn ready(&self) -> bool {
        self.chains.wait_until_ready().await.is_ok()
            && self.namespaces.wait_until_ready().await.is_ok()
    }

    fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&reflector::ObjectRef::new(name))
            .map(|n| n.labels().clone())
            .unwrap_or_default()
    }
}

/// Whether a server of `version` (the API server's `/version`) runs native sidecars: 1.29 and later
/// (the SidecarContainers feature is on by default from 1.29). Unknown versions count as no.
pub fn native_sidecars(major: &str, minor: &str) -> bool {
    let num = |s: &str| -> Option<u32> {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    match (num(major), num(minor)) {
        (Some(1), Some(m)) => m >= 29,
        (Some(n), Some(_)) => n > 1,
        _ => false,
    }
}

/// Writes `ca_bundle` (PEM) into every webhook of the MutatingWebhookConfiguration `name` (the chart renders
/// it without one: the CA is the operator's, made at run time). A JSON patch `add` replaces an existing value.
pub async fn install_ca_bundle(
    client: kube::Client,
    name: &str,
    webhooks: usize,
    ca_bundle: &str,
) -> Result<(), kube::Error> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca_bundle.as_bytes());
    let ops: Vec<Value> = (0..webhooks)
        .map(|i| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": b64}))
        .collect();
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).map_err(kube::Error::SerdeError)?;
    Api::<MutatingWebhookConfiguration>::all(client)
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map(|_| ())
}

/// The serving certificate, issued from the operator's CA and issued again at 2/3 of its lifetime.
pub struct ServingCert {
    ca: Arc<Ca>,
    namespace: String,
    service: String,
    validity: Duration,
    current: Mutex<(Arc<rustls::sign::CertifiedKey>, SystemTime)>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

fn certified_key(issued: &Issued) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| e.to_string())?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(certs, signer)))
}

impl ServingCert {
    /// Issues the first certificate for `<service>.<namespace>.svc`.
    pub fn new(
        ca: Arc<Ca>,
        namespace: &str,
        service: &str,
        validity: Duration,
    ) -> Result<Self, String> {
        let now = SystemTime::now();
        let issued = ca
            .issue_webhook(namespace, service, now, validity)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            current: Mutex::new((certified_key(&issued)?, now + validity * 2 / 3)),
            ca,
            namespace: namespace.into(),
            service: service.into(),
            validity,
        })
    }

    fn get(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let mut cur = self.current.lock().ok()?;
        let now = SystemTime::now();
        if now >= cur.1 {
            match self
                .ca
                .issue_webhook(&self.namespace, &self.service, now, self.validity)
                .map_err(|e| e.to_string())
                .and_then(|i| certified_key(&i))
            {
                Ok(k) => *cur = (k, now + self.validity * 2 / 3),
                Err(e) => tracing::error!(error = %e, "renewing the webhook's certificate"),
            }
        }
        Some(cur.0.clone())
    }
}

impl rustls::server::ResolvesServerCert for ServingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.get()
    }
}

/// Everything a request handler needs.
pub struct Server {
    /// The watches.
    pub stores: Stores,
    /// Rendering settings.
    pub settings: Settings,
    /// See [`Inputs::native_sidecars`].
    pub native_sidecars: bool,
    /// Set once the watches have listed: before that the webhook answers 503 (the API server then applies
    /// the webhook's failurePolicy).
    pub ready: AtomicBool,
}

impl Server {
    /// Answers one HTTP request: `(status, body)`.
    pub fn handle(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        if path != PATH {
            return (404, b"not found\n".to_vec());
        }
        if method != "POST" {
            return (405, b"POST an AdmissionReview\n".to_vec());
        }
        if !self.ready.load(Ordering::Relaxed) {
            return (503, b"the webhook's watches have not listed yet\n".to_vec());
        }
        let chains = self.stores.chains.state();
        let namespace = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["request"]["namespace"].as_str().map(str::to_string))
            .unwrap_or_default();
        let ns_labels = self.stores.namespace_labels(&namespace);
        let inputs = Inputs {
            chains: &chains,
            namespace_labels: &ns_labels,
            settings: &self.settings,
            native_sidecars: self.native_sidecars,
        };
        match review(body, &inputs) {
            Ok(v) => (200, serde_json::to_vec(&v).unwrap_or_default()),
            Err(e @ ReviewError::TooLarge(_)) => (413, format!("{e}\n").into_bytes()),
            Err(e) => (400, format!("{e}\n").into_bytes()),
        }
    }
}

/// Serves the webhook over TLS on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cert: Arc<ServingCert>,
    server: Arc<Server>,
) -> std::io::Result<()> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "webhook accept");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let server = server.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let (code, out) = match axum::body::to_bytes(
                            axum::body::Body::new(body),
                            MAX_REVIEW_BYTES,
                        )
                        .await
                        {
                            Ok(bytes) => {
                                server.handle(parts.method.as_str(), parts.uri.path(), &bytes)
                            }
                            Err(_) => (413, b"request body too large or unreadable\n".to_vec()),
                        };
                        let content_type = if code == 200 {
                            "application/json"
                        } else {
                            "text/plain"
                        };
                        http::Response::builder()
                            .status(code)
                            .header(http::header::CONTENT_TYPE, content_type)
                            .body(axum::body::Body::from(out))
                    }
                });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(error = %e, "webhook connection");
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fake::{ClusterState, Recorded, fake_client};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const CONFIGURATION: &str =
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/build-vnf-operator";

    fn cluster() -> Arc<std::sync::Mutex<ClusterState>> {
        let mut st = ClusterState {
            crd_installed: true,
            ..ClusterState::default()
        };
        st.objects.insert(
            CONFIGURATION.into(),
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                   "metadata": {"name": "build-vnf-operator"},
                   "webhooks": [{"name": "inject.buildvnf.io", "clientConfig": {"service":
                       {"name": "buildvnf-operator-webhook", "namespace": "buildvnf-system", "path": "/inject"}},
                       "admissionReviewVersions": ["v1"], "sideEffects": "None"}]}),
        );
        st.objects.insert(
            "/api/v1/namespaces/shop".into(),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "shop", "labels": {NAMESPACE_LABEL: NAMESPACE_ENABLED}}}),
        );
        st.objects.insert(
            "/apis/buildvnf.io/v1alpha1/namespaces/shop/vnfchains/web-fw".into(),
            json!({"apiVersion": "buildvnf.io/v1alpha1", "kind": "VNFChain",
                   "metadata": {"name": "web-fw", "namespace": "shop", "uid": "u1", "generation": 1},
                   "spec": {"functions": [{"name": "m", "type": "monitor", "monitor": {}}],
                            "target": {"podSelector": {"matchLabels": {"app": "web"}}}}}),
        );
        Arc::new(std::sync::Mutex::new(st))
    }

    /// Every request the webhook's start-up makes (CA bundle, watches), for the RBAC rules test.
    pub(crate) async fn api_requests() -> Vec<Recorded> {
        let st = cluster();
        let client = fake_client(st.clone());
        install_ca_bundle(client.clone(), "build-vnf-operator", 1, "PEM")
            .await
            .expect("CA bundle patched");
        let stores = Stores::start(client);
        assert!(
            tokio::time::timeout(Duration::from_secs(10), stores.ready())
                .await
                .expect("watches list within 10 s")
        );
        assert_eq!(stores.chains.state().len(), 1);
        assert_eq!(
            stores
                .namespace_labels("shop")
                .get(NAMESPACE_LABEL)
                .map(String::as_str),
            Some(NAMESPACE_ENABLED)
        );
        let st = st.lock().expect("state");
        assert_eq!(
            st.objects[CONFIGURATION]["webhooks"][0]["clientConfig"]["caBundle"],
            base64::engine::general_purpose::STANDARD.encode("PEM")
        );
        st.requests.clone()
    }

    #[tokio::test]
    async fn start_up_patches_the_bundle_and_lists_chains_and_namespaces() {
        let requests = api_requests().await;
        let perms: std::collections::BTreeSet<_> =
            requests.iter().flat_map(Recorded::permissions).collect();
        for p in [
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                "patch",
            ),
            ("", "namespaces", "list"),
            ("buildvnf.io", "vnfchains", "list"),
        ] {
            assert!(
                perms.contains(&(p.0.to_string(), p.1.to_string(), p.2.to_string())),
                "{p:?} not in {perms:?}"
            );
        }
    }

    #[test]
    fn native_sidecars_from_the_server_version() {
        assert!(native_sidecars("1", "29"));
        assert!(native_sidecars("1", "36+"));
        assert!(!native_sidecars("1", "28"));
        assert!(!native_sidecars("1", ""));
        assert!(!native_sidecars("", "30"));
        assert!(native_sidecars("2", "0"));
    }

    /// One HTTP/1.1 exchange over TLS to `addr`, verifying the server as `name` against `ca_pem`.
    async fn https(
        addr: std::net::SocketAddr,
        ca_pem: &str,
        name: &str,
        request: &[u8],
    ) -> Result<String, String> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let server_name =
            rustls_pki_types::ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(request).await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn post(body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "POST {PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// The real TLS stack and HTTP server on loopback, as the API server would call them.
    #[tokio::test]
    async fn the_api_server_s_call_over_tls_gets_a_patch() {
        let ca = Arc::new(Ca::generate(SystemTime::now(), Duration::from_secs(86400)).expect("CA"));
        let cert = ServingCert::new(
            ca.clone(),
            "buildvnf-system",
            "buildvnf-operator-webhook",
            Duration::from_secs(3600),
        )
        .expect("serving cert");
        let server = Arc::new(Server {
            stores: Stores::start(fake_client(cluster())),
            settings: Settings::default(),
            native_sidecars: true,
            ready: AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, Arc::new(cert), server.clone()));
        let name = "buildvnf-operator-webhook.buildvnf-system.svc";
        let review = serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": "shop", "operation": "CREATE",
                        "object": {"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
        }))
        .expect("encode");
        // Before the watches listed: 503, so the API server applies the failurePolicy.
        let early = https(addr, ca.cert_pem(), name, &post(&review))
            .await
            .expect("https");
        assert!(early.starts_with("HTTP/1.1 503"), "{early}");
        assert!(
            tokio::time::timeout(Duration::from_secs(10), server.stores.ready())
                .await
                .expect("ready")
        );
        server.ready.store(true, Ordering::Relaxed);
        let reply = https(addr, ca.cert_pem(), name, &post(&review))
            .await
            .expect("https");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let body = reply.split("\r\n\r\n").nth(1).expect("body");
        let v: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["response"]["uid"], "u-1");
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        // Wrong method, wrong path, garbage, and a body over the limit: HTTP errors, the server keeps serving.
        let get = format!("GET {PATH} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        assert!(
            https(addr, ca.cert_pem(), name, get.as_bytes())
                .await
                .expect("https")
                .starts_with("HTTP/1.1 405")
        );
        assert!(
            https(addr, ca.cert_pem(), name, &post(b"{"))
                .await
                .expect("https")
                .starts_with("HTTP/1.1 400")
        );
        let huge = vec![b' '; MAX_REVIEW_BYTES + 10];
        let r = https(addr, ca.cert_pem(), name, &post(&huge))
            .await
            .unwrap_or_default();
        assert!(
            r.is_empty() || r.starts_with("HTTP/1.1 413"),
            "{}",
            &r[..r.len().min(200)]
        );
        // The certificate names the Service and nothing else: another name fails verification.
        assert!(
            https(
                addr,
                ca.cert_pem(),
                "evil.buildvnf-system.svc",
                &post(&review)
            )
            .await
            .is_err()
        );
        let other = Ca::generate(SystemTime::now(), Duration::from_secs(86400)).expect("CA");
        assert!(
            https(addr, other.cert_pem(), name, &post(&review))
                .await
                .is_err()
        );
        let still = https(addr, ca.cert_pem(), name, &post(&review))
            .await
            .expect("https");
        assert!(still.starts_with("HTTP/1.1 200"));
    }
}
