//! An in-memory Kubernetes API server and fake sidecars, for the controller tests and `operator-bench`.
//!
//! The fake API server keeps objects in memory, answers gets and (label-selected) lists, applies
//! server-side-apply, JSON, merge and status patches the way the real one does for the fields the operator
//! uses, keeps watches open without events, and records every request, so a test can assert both what the
//! operator changed and what it left alone, and which API verbs it needs.
//!
//! # Upstream behaviour it mimics
//!
//! - **Authorization of a server-side apply.** A `PATCH` is authorized as `patch`; when the patch is an apply
//!   (`application/apply-patch+yaml`) and the object does not exist, the API server creates it and authorizes
//!   that as `create` too (the `createAuthorizerAttributes` with `Verb: "create"` that wrap `createValidation`
//!   in the apiserver's patch handler,
//!   <https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go>;
//!   Server-Side Apply: <https://kubernetes.io/docs/reference/using-api/server-side-apply/>; request verbs:
//!   <https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb>).
//!   [`Recorded::permissions`] lists both, and with [`ClusterState::granted`] set the fake refuses a request
//!   with the API server's `403 Forbidden` Status when any of them is not granted.
//! - An apply that creates answers `201 Created`, one that updates `200 OK`; a JSON patch or a status patch
//!   of a missing object is `404 NotFound` (only apply creates).
//! - The main resource endpoint ignores `status` for kinds with a status subresource: an apply keeps the
//!   stored status (tests set a Deployment's status as its controller would); `metadata.generation` starts
//!   at 1 and grows when an apply changes `spec`.
//! - `PUT` checks `metadata.resourceVersion` (optimistic concurrency, `409 Conflict`); `POST` of an existing
//!   name is `409 AlreadyExists`; lists filter by namespace and by label selectors of equality (`k=v`) and
//!   existence (`k`) terms (<https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors>);
//!   a `DELETE` of an object without finalizers removes it at once (`404` when it is absent).
//!
//! # What it does not mimic
//!
//! - Field ownership: an apply replaces the object with what the manager sent (the operator is the only
//!   manager of what it applies), no managed fields, no conflicts, no defaulting or schema validation.
//! - Watches: a watch stays open and never delivers an event, so the controller runtime's cache holds what
//!   its first list returned (tests drive further reconciles themselves or by requeue).
//! - Resource versions only on `POST`/`PUT` (per object); no garbage collection, no admission, no
//!   controllers (a Deployment's status is what a test puts there). Authorization knows RBAC verbs only, not
//!   `escalate`/`bind`/`impersonate` nor the `OwnerReferencesPermissionEnforcement` admission plugin.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use dataplane_api::{
    ApplyChainRequest, ApplyChainResponse, DataplaneStatus, Hook, InterfaceAttachment,
};
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use crate::sidecar::{PodEndpoint, SidecarError, Sidecars, classify};

/// One request the operator made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// URL query (without `?`), empty when there is none.
    pub query: String,
    /// A server-side apply that created the object (authorized as `create` as well as `patch`).
    pub creates: bool,
}

/// An RBAC permission: `(apiGroup, resource[/subresource], verb)`.
pub type Permission = (String, String, String);

impl Recorded {
    /// The RBAC view of this request: `(apiGroup, resource[/subresource], verb)`; `None` for a path that
    /// is not a resource path of the Kubernetes API.
    pub fn rbac(&self) -> Option<Permission> {
        let p = ApiPath::parse(&self.path)?;
        let verb = match (self.method.as_str(), &p.name) {
            ("GET", Some(_)) => "get",
            ("GET", None) if query_flag(&self.query, "watch") => "watch",
            ("GET", None) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", Some(_)) => "delete",
            ("DELETE", None) => "deletecollection",
            _ => return None,
        };
        let resource = match &p.subresource {
            Some(sub) => format!("{}/{sub}", p.resource),
            None => p.resource.clone(),
        };
        Some((p.group, resource, verb.to_string()))
    }

    /// Every permission the API server checks for this request: the verb of [`Recorded::rbac`], and
    /// `create` as well for a server-side apply that created the object.
    pub fn permissions(&self) -> Vec<Permission> {
        let Some(primary) = self.rbac() else {
            return Vec::new();
        };
        let mut out = vec![primary.clone()];
        if self.creates {
            out.push((primary.0, primary.1, "create".into()));
        }
        out
    }
}

/// A Kubernetes API resource path, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPath {
    /// API group (`""` for the core group).
    pub group: String,
    /// Namespace, for namespaced paths.
    pub namespace: Option<String>,
    /// Resource (plural).
    pub resource: String,
    /// Object name; `None` for a collection.
    pub name: Option<String>,
    /// Subresource (`status`, …).
    pub subresource: Option<String>,
}

impl ApiPath {
    /// Parses `/api/v1/…` and `/apis/<group>/<version>/…` paths.
    pub fn parse(path: &str) -> Option<Self> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match segs.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        match rest {
            [resource] => Some(Self {
                group: group.into(),
                namespace,
                resource: resource.to_string(),
                name: None,
                subresource: None,
            }),
            [resource, name] => Some(Self {
                group: group.into(),
                namespace,
                resource: resource.to_string(),
                name: Some(name.to_string()),
                subresource: None,
            }),
            [resource, name, sub] => Some(Self {
                group: group.into(),
                namespace,
                resource: resource.to_string(),
                name: Some(name.to_string()),
                subresource: Some(sub.to_string()),
            }),
            _ => None,
        }
    }
}

/// Whether `query` has `key=true` (or `key=1`).
fn query_flag(query: &str, key: &str) -> bool {
    query_param(query, key).is_some_and(|v| v == "true" || v == "1")
}

/// The decoded value of `key` in `query`.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `labels` match an equality-based selector (`k=v,k2=v2`; `k==v` too).
fn selector_matches(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .all(|term| {
            let (k, v) = match term.split_once("==").or_else(|| term.split_once('=')) {
                Some(kv) => kv,
                None => return labels.get(term.trim()).is_some(),
            };
            labels.get(k.trim()).and_then(Value::as_str) == Some(v.trim())
        })
}

/// The fake cluster's state.
#[derive(Default)]
pub struct ClusterState {
    /// Objects by API path (e.g. `/api/v1/namespaces/default/configmaps/edge-dataplane`).
    pub objects: BTreeMap<String, Value>,
    /// Pods returned by list calls (filtered by namespace and label selector).
    pub pods: Vec<Value>,
    /// Every request, in order.
    pub requests: Vec<Recorded>,
    /// Whether the VNFChain CRD is served.
    pub crd_installed: bool,
    /// Whether the Prometheus Operator's PodMonitor kind is served.
    pub pod_monitors_served: bool,
    /// Fault injection: another writer updates the object just before the next PUT lands.
    pub concurrent_write_before_put: bool,
    /// Fault injection: the request with this index (in `requests`) is recorded but never answered, as if
    /// the operator stopped while waiting for it.
    pub hold_request: Option<usize>,
    /// RBAC: when set, a request needing a permission outside this set is refused with `403 Forbidden`,
    /// as the API server's authorizer does for the operator's service account.
    pub granted: Option<BTreeSet<Permission>>,
    /// Bodies of the Event creates (`POST`) and series updates (`PATCH`), in order.
    pub events: Vec<(String, Value)>,
}

impl ClusterState {
    /// Requests with this method whose path contains `fragment`.
    pub fn calls(&self, method: &str, fragment: &str) -> Vec<&Recorded> {
        self.requests
            .iter()
            .filter(|r| r.method == method && r.path.contains(fragment))
            .collect()
    }
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// The user the fake's authorizer names in a refusal: the chart's service account.
pub const OPERATOR_USER: &str = "system:serviceaccount:buildvnf-system:buildvnf-operator";

/// The API server's refusal of `permission` on `path`, worded as its RBAC authorizer words it.
fn forbidden(path: &str, (group, resource, verb): &Permission) -> Response<Body> {
    let api = ApiPath::parse(path);
    let what = match api.as_ref().and_then(|a| a.name.as_ref()) {
        Some(name) => format!("{resource} \"{name}\""),
        None => resource.clone(),
    };
    let scope = match api.as_ref().and_then(|a| a.namespace.as_ref()) {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".into(),
    };
    status_response(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!(
            "{what} is forbidden: User \"{OPERATOR_USER}\" cannot {verb} resource \"{resource}\" in API group \"{group}\"{scope}"
        ),
    )
}

fn not_found(path: &str) -> Response<Body> {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{path} not found"),
    )
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = code;
    r
}

/// What the fake answers.
enum Reply {
    Now(Response<Body>),
    /// Never answered: a watch without events, or a held request.
    Never,
}

fn list(items: Vec<Value>) -> Reply {
    Reply::Now(json_response(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
    ))
}

fn route(
    state: &mut ClusterState,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
    body: Value,
) -> Reply {
    if let Some(early) = record(state, method, path, query, content_type) {
        return early;
    }
    if method == "GET"
        && let Some(api) = ApiPath::parse(path).filter(|a| a.name.is_none())
    {
        return list_collection(state, &api, path, query);
    }
    Reply::Now(match method {
        "GET" => match state.objects.get(path) {
            Some(o) => json_response(StatusCode::OK, o),
            None => not_found(path),
        },
        "POST" if path.ends_with("/events") => {
            state.events.push(("POST".into(), body.clone()));
            json_response(StatusCode::CREATED, &body)
        }
        "POST" => create(state, path, body),
        "PUT" => replace(state, path, body),
        "PATCH" if path.contains("/events/") => {
            state.events.push(("PATCH".into(), body.clone()));
            json_response(StatusCode::OK, &body)
        }
        "PATCH" if path.ends_with("/status") => {
            let object_path = path.trim_end_matches("/status");
            let Some(obj) = state.objects.get_mut(object_path) else {
                return Reply::Now(not_found(path));
            };
            obj["status"] = body["status"].clone();
            json_response(StatusCode::OK, obj)
        }
        "PATCH" if content_type.contains("json-patch") => apply_json_patch(state, path, body),
        // Like the API server without finalizers on the object: gone at once, answered with the object.
        "DELETE" => match state.objects.remove(path) {
            Some(o) => json_response(StatusCode::OK, &o),
            None => not_found(path),
        },
        "PATCH" if content_type.contains("apply-patch") => server_side_apply(state, path, body),
        _ => not_found(path),
    })
}

/// Records the request; answers it at once when it is the one to hold or RBAC would forbid it.
fn record(
    state: &mut ClusterState,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
) -> Option<Reply> {
    // Only an apply to the object itself creates; a status apply of a missing object is NotFound.
    let creates = method == "PATCH"
        && content_type.contains("apply-patch")
        && ApiPath::parse(path).is_some_and(|p| p.name.is_some() && p.subresource.is_none())
        && !state.objects.contains_key(path);
    let recorded = Recorded {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        creates,
    };
    let denied = state.granted.as_ref().and_then(|granted| {
        recorded
            .permissions()
            .into_iter()
            .find(|p| !granted.contains(p))
    });
    state.requests.push(recorded);
    if state.hold_request == Some(state.requests.len() - 1) {
        return Some(Reply::Never);
    }
    denied.map(|permission| Reply::Now(forbidden(path, &permission)))
}

/// A GET of a collection: a list filtered by namespace and label selector, or a watch that never answers.
fn list_collection(state: &ClusterState, api: &ApiPath, path: &str, query: &str) -> Reply {
    let served = match api.resource.as_str() {
        "vnfchains" => state.crd_installed,
        "podmonitors" => state.pod_monitors_served,
        _ => true,
    };
    if !served {
        return Reply::Now(not_found(path));
    }
    if query_flag(query, "watch") {
        return Reply::Never;
    }
    let selector = query_param(query, "labelSelector").unwrap_or_default();
    let in_scope = |o: &Value| {
        api.namespace
            .as_deref()
            .is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
            && selector_matches(&selector, &o["metadata"]["labels"])
    };
    if api.resource == "pods" {
        return list(state.pods.iter().filter(|p| in_scope(p)).cloned().collect());
    }
    let items = state
        .objects
        .iter()
        .filter(|(k, _)| {
            ApiPath::parse(k).is_some_and(|o| {
                o.group == api.group
                    && o.resource == api.resource
                    && o.subresource.is_none()
                    && api
                        .namespace
                        .as_ref()
                        .is_none_or(|ns| o.namespace.as_ref() == Some(ns))
            })
        })
        .map(|(_, v)| v)
        .filter(|o| selector_matches(&selector, &o["metadata"]["labels"]))
        .cloned()
        .collect();
    list(items)
}

/// POST to a collection: creates the object named in the body unless it exists.
fn create(state: &mut ClusterState, path: &str, body: Value) -> Response<Body> {
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    let object_path = format!("{path}/{name}");
    if state.objects.contains_key(&object_path) {
        return status_response(StatusCode::CONFLICT, "AlreadyExists", "already exists");
    }
    let mut body = body;
    body["metadata"]["resourceVersion"] = json!("1");
    state.objects.insert(object_path, body.clone());
    json_response(StatusCode::CREATED, &body)
}

/// PUT: replace with optimistic concurrency, as the API server does.
fn replace(state: &mut ClusterState, path: &str, body: Value) -> Response<Body> {
    if std::mem::take(&mut state.concurrent_write_before_put)
        && let Some(obj) = state.objects.get_mut(path)
    {
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .parse::<u64>()
            .unwrap_or(0);
        obj["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
    }
    let Some(current) = state.objects.get(path) else {
        return not_found(path);
    };
    let stored_rv = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    if body["metadata"]["resourceVersion"].as_str() != Some(stored_rv.as_str()) {
        return status_response(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified",
        );
    }
    let next = stored_rv.parse::<u64>().unwrap_or(0) + 1;
    let mut body = body;
    body["metadata"]["resourceVersion"] = json!(next.to_string());
    state.objects.insert(path.into(), body.clone());
    json_response(StatusCode::OK, &body)
}

/// A JSON patch of a stored object.
fn apply_json_patch(state: &mut ClusterState, path: &str, body: Value) -> Response<Body> {
    let Some(obj) = state.objects.get_mut(path) else {
        return not_found(path);
    };
    // Like the API server's JSON patch, a `test` for null passes on a missing path.
    let body = match body {
        Value::Array(ops) => Value::Array(
            ops.into_iter()
                .filter(|op| {
                    let path = op["path"].as_str().unwrap_or_default();
                    !(op["op"] == "test" && op["value"].is_null() && obj.pointer(path).is_none())
                })
                .collect(),
        ),
        other => other,
    };
    let patch: json_patch::Patch = match serde_json::from_value(body) {
        Ok(p) => p,
        Err(e) => {
            return status_response(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
    };
    if let Err(e) = json_patch::patch(obj, &patch) {
        return status_response(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string());
    }
    json_response(StatusCode::OK, obj)
}

/// Server-side apply: this manager owns every field it sends, so the object becomes what it sent; the
/// status stays (the main endpoint ignores it for kinds with a status subresource).
/// `metadata.generation` starts at 1 and grows when the spec changes.
fn server_side_apply(state: &mut ClusterState, path: &str, body: Value) -> Response<Body> {
    let mut body = body;
    let code = match state.objects.get(path) {
        Some(old) => {
            if let Some(status) = old.get("status") {
                body["status"] = status.clone();
            }
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = old.get("spec") != body.get("spec");
            body["metadata"]["generation"] = json!(generation + i64::from(changed));
            StatusCode::OK
        }
        None => {
            body["metadata"]["generation"] = json!(1);
            StatusCode::CREATED
        }
    };
    state.objects.insert(path.into(), body.clone());
    json_response(code, &body)
}

/// A kube client whose requests go to the fake cluster.
///
/// Must be called inside a Tokio runtime (the client's request buffer runs as a task).
pub fn fake_client(state: Arc<Mutex<ClusterState>>) -> Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let state = state.clone();
        async move {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let reply = match state.lock() {
                Ok(mut s) => route(&mut s, &method, &path, &query, &content_type, body),
                Err(_) => Reply::Now(not_found(&path)),
            };
            match reply {
                Reply::Now(response) => Ok::<_, Infallible>(response),
                Reply::Never => futures::future::pending().await,
            }
        }
    });
    Client::new(service, "default")
}

/// One fake sidecar.
///
/// # The daemon's behaviour it mimics
///
/// ApplyChain as `cnf-dataplane` answers it (`cnf-dataplane-daemon/src/grpc.rs`, `apply_chain`, and
/// `daemon/mod.rs`, `Dataplane::try_apply`): the request is read by the same strict reader
/// ([`dataplane_api::door::read_request`]: unknown fields, the schema, CEL and the semantic checks) and the
/// same generation rule decides ([`dataplane_api::door::Generations`]: positive; one spec per generation;
/// forward above every generation applied, or back to one this sidecar applied with the same spec; nothing
/// after Detach), with the daemon's status codes, mapped by the operator's own `classify`. A generation in
/// [`FakePod::reject`] fails like a load the verifier refuses (ABORTED, the previous generation runs on).
/// Not mimicked: the chain's name check (the fake runs whatever chain asks first), live-update limits that
/// need a restart, attach fallbacks.
#[derive(Clone, Debug, Default)]
pub struct FakePod {
    /// What it applied, by the daemon's rule (current generation 0: nothing yet).
    pub generations: dataplane_api::door::Generations,
    /// Interfaces it reports the chain attached on.
    pub interfaces: Vec<String>,
    /// Generations this sidecar refuses (as a verifier would).
    pub reject: BTreeSet<i64>,
    /// Every call fails as unreachable.
    pub unreachable: bool,
    /// The certificate it serves, as `(service, namespace)` of its SAN `*.<service>.<namespace>.svc`: when
    /// set, a call whose TLS server name (`<pod>.<service>.<namespace>.svc`, sidecar.rs) it does not match
    /// fails as the operator's handshake would, unreachable (a wildcard stands for exactly one leftmost label:
    /// RFC 6125 §6.4.3, <https://www.rfc-editor.org/rfc/rfc6125#section-6.4.3>, as rustls/webpki match it;
    /// the real handshake is tests/grpc_mtls.rs). `None`: any name passes.
    pub serves_for: Option<(String, String)>,
}

/// Fake sidecars, by pod name, recording every call.
#[derive(Clone, Default)]
pub struct FakeSidecars {
    /// The sidecars by pod name.
    pub pods: Arc<Mutex<BTreeMap<String, FakePod>>>,
    /// `apply <pod> <generation>` and `detach <pod>`, in order.
    pub calls: Arc<Mutex<Vec<String>>>,
}

impl FakeSidecars {
    /// Adds a sidecar running `generation` on `interfaces` (0: a sidecar that applied nothing yet). A sidecar
    /// added at a positive generation started from a spec the fake does not know: that generation can be
    /// neither re-applied nor returned to (the daemon would compare the spec).
    pub fn add(&self, pod: &str, generation: i64, interfaces: &[&str]) {
        let generations = if generation > 0 {
            dataplane_api::door::Generations::started(generation, "(unknown spec)".into())
        } else {
            dataplane_api::door::Generations::default()
        };
        if let Ok(mut p) = self.pods.lock() {
            p.insert(
                pod.into(),
                FakePod {
                    generations,
                    interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
                    ..FakePod::default()
                },
            );
        }
    }

    /// The generation `pod` runs (-1 for an unknown pod).
    pub fn generation(&self, pod: &str) -> i64 {
        self.pods
            .lock()
            .ok()
            .and_then(|p| p.get(pod).map(|p| p.generations.current()))
            .unwrap_or(-1)
    }

    /// Every recorded call.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
    }

    fn with_pod<T>(
        &self,
        pod: &PodEndpoint,
        f: impl FnOnce(&mut FakePod) -> Result<T, SidecarError>,
    ) -> Result<T, SidecarError> {
        let mut pods = self
            .pods
            .lock()
            .map_err(|_| SidecarError::Unreachable("poisoned".into()))?;
        match pods.get_mut(&pod.pod) {
            Some(p)
                if p.serves_for.as_ref().is_some_and(|(service, namespace)| {
                    *service != pod.service || *namespace != pod.namespace
                }) =>
            {
                Err(SidecarError::Unreachable(format!(
                    "{}: the certificate does not name {}.{}.{}.svc",
                    pod.pod, pod.pod, pod.service, pod.namespace
                )))
            }
            Some(p) if !p.unreachable => f(p),
            _ => Err(SidecarError::Unreachable(format!(
                "{}: connection refused",
                pod.pod
            ))),
        }
    }
}

impl Sidecars for FakeSidecars {
    async fn status(&self, pod: &PodEndpoint) -> Result<DataplaneStatus, SidecarError> {
        self.with_pod(pod, |p| {
            Ok(DataplaneStatus {
                chain: None,
                applied_generation: p.generations.current(),
                attachments: p
                    .interfaces
                    .iter()
                    .map(|i| InterfaceAttachment {
                        interface: i.clone(),
                        hook: Hook::Xdp as i32,
                        fallback_reason: String::new(),
                        error: String::new(),
                    })
                    .collect(),
                last_error: String::new(),
                control_plane: Vec::new(),
            })
        })
    }

    async fn apply(
        &self,
        pod: &PodEndpoint,
        req: ApplyChainRequest,
    ) -> Result<ApplyChainResponse, SidecarError> {
        self.record(format!("apply {} {}", pod.pod, req.generation));
        self.with_pod(pod, |p| {
            // the daemon's order: read the request, then the generation rule, then load (see FakePod)
            let (namespace, name) = req
                .chain
                .as_ref()
                .map(|c| (c.namespace.as_str(), c.name.as_str()))
                .unwrap_or_default();
            let chain = dataplane_api::door::read_request(namespace, name, &req.spec_json)
                .map_err(|s| classify(pod, s))?;
            let digest = dataplane_api::door::spec_digest(&chain.spec);
            let step = p
                .generations
                .check(req.generation, &digest)
                .map_err(|r| classify(pod, r.status()))?;
            if step == dataplane_api::door::Step::Unchanged {
                return Ok(ApplyChainResponse {
                    applied_generation: req.generation,
                    changed: false,
                    attachments: Vec::new(),
                });
            }
            if p.reject.contains(&req.generation) {
                return Err(classify(
                    pod,
                    tonic::Status::aborted(
                        "program fw: verifier rejected: R2 invalid mem access 'scalar'; \
                         the previous generation is still running",
                    ),
                ));
            }
            p.generations.record(req.generation, digest);
            Ok(ApplyChainResponse {
                applied_generation: req.generation,
                changed: true,
                attachments: Vec::new(),
            })
        })
    }

    async fn detach(&self, pod: &PodEndpoint) -> Result<(), SidecarError> {
        self.record(format!("detach {}", pod.pod));
        self.with_pod(pod, |p| {
            // the daemon keeps reporting its generation, attached nowhere, and applies nothing again
            p.generations.detach();
            p.interfaces.clear();
            Ok(())
        })
    }
}

/// The fake sidecar answers ApplyChain as the daemon does (see [`FakePod`]): the rollback the controller
/// sends is accepted, and what the daemon refuses is refused with its message.
#[cfg(test)]
mod sidecar_tests {
    use super::*;

    const SPEC: &str = r#"{"functions":[{"name":"fw","type":"firewall","firewall":{"defaultAction":"allow","rules":[{"action":"deny","protocol":"udp","destinationPorts":[{"from":PORT}]}]}}],"interfaces":{"ingress":"eth0"}}"#;

    fn request(generation: i64, port: u16) -> ApplyChainRequest {
        raw(generation, &SPEC.replace("PORT", &port.to_string()))
    }

    fn raw(generation: i64, spec_json: &str) -> ApplyChainRequest {
        ApplyChainRequest {
            chain: Some(dataplane_api::ChainRef {
                namespace: "default".into(),
                name: "edge".into(),
            }),
            generation,
            spec_json: spec_json.into(),
        }
    }

    fn pod() -> PodEndpoint {
        PodEndpoint {
            pod: "edge-dataplane-a".into(),
            ip: "10.244.0.1".into(),
            service: "edge-dataplane".into(),
            namespace: "default".into(),
        }
    }

    async fn refused(s: &FakeSidecars, req: ApplyChainRequest, wanted: &str) {
        match s.apply(&pod(), req).await {
            Err(SidecarError::Rejected(m)) => assert!(m.contains(wanted), "{m}"),
            other => panic!("expected a refusal with {wanted:?}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_fake_sidecar_keeps_the_daemons_generation_rule_and_reader() {
        let s = FakeSidecars::default();
        s.add("edge-dataplane-a", 0, &["eth0"]);
        let ep = pod();
        assert!(s.apply(&ep, request(1, 9)).await.expect("1").changed);
        assert!(s.apply(&ep, request(2, 10)).await.expect("2").changed);
        // the controller's rollback: generation 1 with its spec again
        let back = s.apply(&ep, request(1, 9)).await.expect("back to 1");
        assert!(back.changed);
        assert_eq!(s.generation("edge-dataplane-a"), 1);
        assert!(!s.apply(&ep, request(1, 9)).await.expect("replay").changed);
        // what the daemon refuses, with the daemon's messages
        refused(
            &s,
            request(1, 11),
            "generation 1 is already applied with another spec",
        )
        .await;
        refused(
            &s,
            request(2, 11),
            "generation 2 is already applied with another spec",
        )
        .await;
        refused(&s, request(0, 9), "generation: must be a positive").await;
        assert!(s.apply(&ep, request(4, 12)).await.expect("4").changed);
        refused(&s, request(3, 9), "older than the applied generation 4").await;
        // the strict reader: a misspelt key is refused with its path, not dropped
        let misspelt = SPEC
            .replace("PORT", "13")
            .replace("\"action\"", "\"actoin\"");
        refused(&s, raw(5, &misspelt), "spec.functions[0].firewall.rules[0]").await;
        refused(&s, raw(5, "{not json"), "spec_json: not JSON").await;
        // a verifier refusal leaves the previous generation running and is not recorded
        if let Ok(mut p) = s.pods.lock()
            && let Some(a) = p.get_mut("edge-dataplane-a")
        {
            a.reject.insert(5);
        }
        refused(&s, request(5, 13), "verifier rejected").await;
        assert_eq!(s.generation("edge-dataplane-a"), 4);
        // Detach is final, the generation stays reported
        s.detach(&ep).await.expect("detach");
        refused(&s, request(6, 14), "detached").await;
        refused(&s, request(4, 12), "detached").await;
        assert_eq!(s.generation("edge-dataplane-a"), 4);
    }
}
