//! Controller tests against a fake API server (kube's `tower-test` mock service) and fake sidecars.
//!
//! The fake API server keeps objects in memory, applies server-side-apply, JSON and status patches the way
//! the real one does for the fields the operator uses, and records every request, so a test can assert
//! both what the operator changed and what it left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use dataplane_api::{
    ApplyChainRequest, ApplyChainResponse, DataplaneStatus, Hook, InterfaceAttachment,
};
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use crate::sidecar::{PodEndpoint, SidecarError, Sidecars};

/// One request the operator made.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
}

/// The fake cluster's state.
#[derive(Default)]
pub struct ClusterState {
    /// Objects by API path (e.g. `/api/v1/namespaces/default/configmaps/edge-dataplane`).
    pub objects: BTreeMap<String, Value>,
    /// Pods returned by list calls.
    pub pods: Vec<Value>,
    /// Every request, in order.
    pub requests: Vec<Recorded>,
    /// Whether the VNFChain CRD is served.
    pub crd_installed: bool,
    /// Fault injection: another writer updates the object just before the next PUT lands.
    pub concurrent_write_before_put: bool,
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

fn not_found(path: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
    )
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = code;
    r
}

fn route(
    state: &mut ClusterState,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> Response<Body> {
    state.requests.push(Recorded {
        method: method.into(),
        path: path.into(),
    });
    match method {
        "GET" if path.ends_with("/vnfchains") => {
            if state.crd_installed {
                json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": "buildvnf.io/v1alpha1", "kind": "VNFChainList", "metadata": {}, "items": []}),
                )
            } else {
                not_found(path)
            }
        }
        "GET" if path.ends_with("/pods") => json_response(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": state.pods}),
        ),
        "GET" => match state.objects.get(path) {
            Some(o) => json_response(StatusCode::OK, o),
            None => not_found(path),
        },
        "POST" if path.contains("/events") => json_response(StatusCode::CREATED, &body),
        "POST" => {
            let name = body["metadata"]["name"].as_str().unwrap_or_default();
            let object_path = format!("{path}/{name}");
            if state.objects.contains_key(&object_path) {
                return json_response(
                    StatusCode::CONFLICT,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "already exists", "reason": "AlreadyExists", "code": 409}),
                );
            }
            let mut body = body;
            body["metadata"]["resourceVersion"] = json!("1");
            state.objects.insert(object_path, body.clone());
            json_response(StatusCode::CREATED, &body)
        }
        "PUT" => {
            // Replace with optimistic concurrency, as the API server does.
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
                return json_response(
                    StatusCode::CONFLICT,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "the object has been modified", "reason": "Conflict", "code": 409}),
                );
            }
            let next = stored_rv.parse::<u64>().unwrap_or(0) + 1;
            let mut body = body;
            body["metadata"]["resourceVersion"] = json!(next.to_string());
            state.objects.insert(path.into(), body.clone());
            json_response(StatusCode::OK, &body)
        }
        "PATCH" if path.contains("/events/") => json_response(StatusCode::OK, &body),
        "PATCH" if path.ends_with("/status") => {
            let object_path = path.trim_end_matches("/status");
            let Some(obj) = state.objects.get_mut(object_path) else {
                return not_found(path);
            };
            obj["status"] = body["status"].clone();
            json_response(StatusCode::OK, obj)
        }
        "PATCH" if content_type.contains("json-patch") => {
            let Some(obj) = state.objects.get_mut(path) else {
                return not_found(path);
            };
            // Like the API server's JSON patch, a `test` for null passes on a missing path.
            let body = match body {
                Value::Array(ops) => Value::Array(
                    ops.into_iter()
                        .filter(|op| {
                            let path = op["path"].as_str().unwrap_or_default();
                            !(op["op"] == "test"
                                && op["value"].is_null()
                                && obj.pointer(path).is_none())
                        })
                        .collect(),
                ),
                other => other,
            };
            let patch: json_patch::Patch = match serde_json::from_value(body) {
                Ok(p) => p,
                Err(e) => {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        &json!({"message": e.to_string()}),
                    );
                }
            };
            if let Err(e) = json_patch::patch(obj, &patch) {
                return json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"kind": "Status", "message": e.to_string(), "code": 422}),
                );
            }
            json_response(StatusCode::OK, obj)
        }
        "PATCH" if content_type.contains("apply-patch") => {
            // Server-side apply: this manager owns every field it sends, so the object becomes what it sent.
            state.objects.insert(path.into(), body.clone());
            json_response(StatusCode::OK, &body)
        }
        _ => not_found(path),
    }
}

/// A kube client whose requests go to the fake cluster.
pub fn fake_client(state: Arc<Mutex<ClusterState>>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
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
            let response = match state.lock() {
                Ok(mut s) => route(&mut s, &method, &path, &content_type, body),
                Err(_) => not_found(&path),
            };
            send.send_response(response);
        }
    });
    Client::new(service, "default")
}

/// One fake sidecar.
#[derive(Clone, Debug, Default)]
pub struct FakePod {
    pub generation: i64,
    pub interfaces: Vec<String>,
    /// Generations this sidecar refuses (as a verifier would).
    pub reject: BTreeSet<i64>,
    pub unreachable: bool,
}

/// Fake sidecars, by pod name, recording every call.
#[derive(Clone, Default)]
pub struct FakeSidecars {
    pub pods: Arc<Mutex<BTreeMap<String, FakePod>>>,
    pub calls: Arc<Mutex<Vec<String>>>,
}

impl FakeSidecars {
    pub fn add(&self, pod: &str, generation: i64, interfaces: &[&str]) {
        if let Ok(mut p) = self.pods.lock() {
            p.insert(
                pod.into(),
                FakePod {
                    generation,
                    interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
                    ..FakePod::default()
                },
            );
        }
    }

    pub fn generation(&self, pod: &str) -> i64 {
        self.pods
            .lock()
            .ok()
            .and_then(|p| p.get(pod).map(|p| p.generation))
            .unwrap_or(-1)
    }

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
        pod: &str,
        f: impl FnOnce(&mut FakePod) -> Result<T, SidecarError>,
    ) -> Result<T, SidecarError> {
        let mut pods = self
            .pods
            .lock()
            .map_err(|_| SidecarError::Unreachable("poisoned".into()))?;
        match pods.get_mut(pod) {
            Some(p) if !p.unreachable => f(p),
            _ => Err(SidecarError::Unreachable(format!(
                "{pod}: connection refused"
            ))),
        }
    }
}

impl Sidecars for FakeSidecars {
    async fn status(&self, pod: &PodEndpoint) -> Result<DataplaneStatus, SidecarError> {
        self.with_pod(&pod.pod, |p| {
            Ok(DataplaneStatus {
                chain: None,
                applied_generation: p.generation,
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
            })
        })
    }

    async fn apply(
        &self,
        pod: &PodEndpoint,
        req: ApplyChainRequest,
    ) -> Result<ApplyChainResponse, SidecarError> {
        self.record(format!("apply {} {}", pod.pod, req.generation));
        // The sidecar validates what it gets with the same validate(); a spec that does not parse is a bug here.
        if serde_json::from_str::<crds::VNFChainSpec>(&req.spec_json).is_err() {
            return Err(SidecarError::Rejected("spec_json does not parse".into()));
        }
        self.with_pod(&pod.pod, |p| {
            if p.reject.contains(&req.generation) {
                return Err(SidecarError::Rejected(
                    "program fw: verifier rejected: R2 invalid mem access 'scalar'".into(),
                ));
            }
            let changed = p.generation != req.generation;
            p.generation = req.generation;
            Ok(ApplyChainResponse {
                applied_generation: req.generation,
                changed,
                attachments: Vec::new(),
            })
        })
    }

    async fn detach(&self, pod: &PodEndpoint) -> Result<(), SidecarError> {
        self.record(format!("detach {}", pod.pod));
        self.with_pod(&pod.pod, |p| {
            p.generation = 0;
            p.interfaces.clear();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crds::VNFChain;
    use kube::runtime::controller::Action;
    use serde_json::{Value, json};

    use super::*;
    use crate::controller::{Context, FINALIZER, check_crd, reconcile};
    use crate::metrics::Metrics;
    use crate::render::{self, Settings};

    const NS: &str = "default";
    const CHAIN_PATH: &str = "/apis/buildvnf.io/v1alpha1/namespaces/default/vnfchains/edge";
    const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/default/deployments/edge-dataplane";
    const CONFIG_MAP_PATH: &str = "/api/v1/namespaces/default/configmaps/edge-dataplane";

    /// The controller flows the operator must get right.
    #[derive(Clone, Copy, Debug)]
    enum Scenario {
        /// A new chain: finalizer first, then the owned objects; Ready once sidecars run it.
        Create,
        /// A firewall rule changes: pushed over gRPC, the Deployment is untouched.
        RuleChange,
        /// The image changes: the pod template rolls, old pods are not counted Ready.
        ImageChange,
        /// A spec only validate() rejects: InvalidSpec naming the field, nothing changed.
        InvalidSpec,
        /// One replica refuses the new generation: the others go back, Degraded, no retry loop.
        ApplyFailure,
        /// Deletion: sidecars detach, then the finalizer goes.
        Deletion,
        /// No CRD: a clear start-up error.
        CrdMissing,
    }

    fn chain_yaml(rule_port: u16, image: Option<&str>, backend: &str) -> String {
        let image = image
            .map(|i| format!("  dataplane:\n    image: {i}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata: {{name: edge, namespace: default}}\nspec:\n  functions:\n    - name: fw\n      type: firewall\n      firewall:\n        defaultAction: deny\n        rules: [{{action: allow, protocol: tcp, destinationPorts: [{{from: {rule_port}}}]}}]\n    - name: lb\n      type: loadBalancer\n      loadBalancer: {{vip: 10.0.0.100, port: 80, backends: [{{address: \"{backend}\"}}]}}\n  placement: {{replicas: 2}}\n{image}"
        )
    }

    /// A chain as the API server would hand it to the controller.
    fn chain(generation: i64, rule_port: u16, image: Option<&str>, backend: &str) -> VNFChain {
        // Parse without validate(): the InvalidSpec scenario needs an object the API server would accept.
        let value: Value =
            serde_saphyr::from_str(&chain_yaml(rule_port, image, backend)).expect("yaml");
        let mut c: VNFChain = serde_json::from_value(value).expect("chain");
        c.metadata.uid = Some("uid-edge".into());
        c.metadata.generation = Some(generation);
        c.metadata.finalizers = Some(vec![FINALIZER.into()]);
        c
    }

    fn pod(name: &str, restart_hash: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {render::CHAIN_LABEL: "edge"},
                         "annotations": {render::RESTART_HASH_ANNOTATION: restart_hash}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "cnf-dataplane"}]},
            "status": {"phase": "Running", "podIP": format!("10.244.0.{}", name.len())}
        })
    }

    struct Harness {
        state: Arc<Mutex<ClusterState>>,
        sidecars: FakeSidecars,
        ctx: Arc<Context<FakeSidecars>>,
    }

    impl Harness {
        fn new() -> Self {
            let state = Arc::new(Mutex::new(ClusterState {
                crd_installed: true,
                ..ClusterState::default()
            }));
            let sidecars = FakeSidecars::default();
            let client = fake_client(state.clone());
            let metrics = Metrics::new().expect("metrics");
            let ctx = Arc::new(Context::new(
                client,
                sidecars.clone(),
                Settings::default(),
                metrics,
            ));
            Self {
                state,
                sidecars,
                ctx,
            }
        }

        fn store(&self, chain: &VNFChain) {
            let mut s = self.state.lock().expect("state");
            let mut v = serde_json::to_value(chain).expect("encode");
            if let Some(old) = s.objects.get(CHAIN_PATH) {
                v["status"] = old["status"].clone();
            }
            s.objects.insert(CHAIN_PATH.into(), v);
        }

        /// Reconciles `chain` as stored (with the status the operator last wrote), like a watch event.
        async fn reconcile(&self, chain: &VNFChain) -> Action {
            self.store(chain);
            let stored: VNFChain = {
                let s = self.state.lock().expect("state");
                serde_json::from_value(s.objects[CHAIN_PATH].clone()).expect("stored chain")
            };
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                reconcile(Arc::new(stored), self.ctx.clone()),
            )
            .await
            .expect("reconcile finishes")
            .expect("reconcile succeeds")
        }

        fn status(&self) -> crds::VNFChainStatus {
            let s = self.state.lock().expect("state");
            serde_json::from_value(s.objects[CHAIN_PATH]["status"].clone()).expect("status written")
        }

        fn condition(&self, t: &str) -> (String, String, String) {
            let st = self.status();
            let c = st
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .expect("condition");
            (c.status.clone(), c.reason.clone(), c.message.clone())
        }

        fn object(&self, path: &str) -> Option<Value> {
            self.state.lock().expect("state").objects.get(path).cloned()
        }

        fn add_pods(&self, chain: &VNFChain, generation: i64) {
            let hash = render::restart_hash(chain).expect("hash");
            let mut s = self.state.lock().expect("state");
            for name in ["edge-dataplane-a", "edge-dataplane-b"] {
                s.pods.push(pod(name, &hash));
                self.sidecars.add(name, generation, &["eth0"]);
            }
        }

        /// Gets a chain to Ready at `generation` with two pods.
        async fn ready_at(&self, c: &VNFChain) {
            self.reconcile(c).await;
            self.add_pods(c, 0);
            self.reconcile(c).await;
            assert_eq!(self.condition("Ready").0, "True", "{:?}", self.status());
        }
    }

    async fn run(scenario: Scenario) {
        let h = Harness::new();
        match scenario {
            Scenario::Create => {
                let mut c = chain(1, 22, None, "10.0.2.1");
                c.metadata.finalizers = None;
                let action = h.reconcile(&c).await;
                assert_eq!(action, Action::await_change());
                let finalizer_patch = h
                    .state
                    .lock()
                    .expect("state")
                    .calls("PATCH", CHAIN_PATH)
                    .len();
                assert_eq!(finalizer_patch, 1, "the finalizer is added first");
                let stored: VNFChain =
                    serde_json::from_value(h.object(CHAIN_PATH).expect("chain")).expect("chain");
                assert_eq!(
                    stored.metadata.finalizers,
                    Some(vec![FINALIZER.to_string()])
                );
                assert!(
                    h.object(DEPLOYMENT_PATH).is_none(),
                    "nothing else before the finalizer is in place"
                );

                h.reconcile(&stored).await;
                let d = h.object(DEPLOYMENT_PATH).expect("deployment applied");
                let container = &d["spec"]["template"]["spec"]["containers"][0];
                assert_eq!(container["securityContext"]["privileged"], json!(false));
                assert_eq!(
                    container["securityContext"]["capabilities"]["add"],
                    json!(["BPF", "NET_ADMIN", "PERFMON"])
                );
                assert_eq!(
                    d["metadata"]["ownerReferences"][0]["uid"],
                    json!("uid-edge")
                );
                assert_eq!(d["spec"]["replicas"], json!(2));
                assert!(
                    h.object("/api/v1/namespaces/default/services/edge-dataplane")
                        .is_some()
                );
                let cm = h.object(CONFIG_MAP_PATH).expect("config map");
                assert!(
                    cm["data"][render::CONFIG_KEY]
                        .as_str()
                        .expect("chain.yaml")
                        .contains("name: fw")
                );
                // No pods yet: never Ready.
                let (ready, reason, _) = h.condition("Ready");
                assert_eq!((ready.as_str(), reason.as_str()), ("False", "NoReplicas"));
                assert_eq!(h.condition("Progressing").0, "True");

                h.add_pods(&stored, 0);
                let action = h.reconcile(&stored).await;
                assert_eq!(h.sidecars.generation("edge-dataplane-a"), 1);
                assert_eq!(h.sidecars.generation("edge-dataplane-b"), 1);
                let (ready, _, message) = h.condition("Ready");
                assert_eq!(ready, "True", "{message}");
                assert_eq!(h.status().ready_replicas, 2);
                assert_eq!(h.status().attachments.len(), 2);
                assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
                let events = h
                    .state
                    .lock()
                    .expect("state")
                    .calls("POST", "/events")
                    .len();
                assert!(events >= 2, "events on transitions, got {events}");
            }
            Scenario::RuleChange => {
                let c1 = chain(1, 22, None, "10.0.2.1");
                h.ready_at(&c1).await;
                let deployment_before = h.object(DEPLOYMENT_PATH);
                let c2 = chain(2, 2222, None, "10.0.2.1");
                h.reconcile(&c2).await;
                assert_eq!(
                    h.object(DEPLOYMENT_PATH),
                    deployment_before,
                    "a rule change does not touch the pods"
                );
                assert_eq!(h.sidecars.generation("edge-dataplane-a"), 2);
                assert_eq!(h.sidecars.generation("edge-dataplane-b"), 2);
                assert_eq!(h.condition("Ready").0, "True");
                let cm = h.object(CONFIG_MAP_PATH).expect("config map");
                assert_eq!(
                    cm["metadata"]["annotations"][render::GENERATION_ANNOTATION],
                    json!("2")
                );
                assert!(
                    cm["data"][render::CONFIG_KEY]
                        .as_str()
                        .expect("yaml")
                        .contains("from: 2222")
                );
            }
            Scenario::ImageChange => {
                let c1 = chain(1, 22, None, "10.0.2.1");
                h.ready_at(&c1).await;
                let hash_before = h.object(DEPLOYMENT_PATH).expect("d")["spec"]["template"]["metadata"]["annotations"]
                    [render::RESTART_HASH_ANNOTATION]
                    .clone();
                let c2 = chain(2, 22, Some("registry.local/cnf-dataplane:dev"), "10.0.2.1");
                h.reconcile(&c2).await;
                let d = h.object(DEPLOYMENT_PATH).expect("d");
                assert_ne!(
                    d["spec"]["template"]["metadata"]["annotations"]
                        [render::RESTART_HASH_ANNOTATION],
                    hash_before
                );
                assert_eq!(
                    d["spec"]["template"]["spec"]["containers"][0]["image"],
                    json!("registry.local/cnf-dataplane:dev")
                );
                // Old pods run the old image: not pushed to, not Ready.
                assert_eq!(h.sidecars.generation("edge-dataplane-a"), 1);
                let (ready, _, message) = h.condition("Ready");
                assert_eq!(ready, "False");
                assert!(message.contains("0/2"), "{message}");
                assert!(
                    h.status()
                        .attachments
                        .iter()
                        .all(|a| a.error.as_deref().is_some_and(|e| e.contains("outdated")))
                );
                assert_eq!(h.condition("Progressing").0, "True");
            }
            Scenario::InvalidSpec => {
                let c1 = chain(1, 22, None, "10.0.2.1");
                h.ready_at(&c1).await;
                let writes_before = h.state.lock().expect("state").calls("PATCH", "").len();
                let c2 = chain(2, 22, None, "2001:db8::1");
                h.reconcile(&c2).await;
                let s = h.state.lock().expect("state");
                let writes: Vec<_> = s
                    .calls("PATCH", "")
                    .into_iter()
                    .skip(writes_before)
                    .map(|r| r.path.clone())
                    .collect();
                drop(s);
                assert_eq!(
                    writes,
                    [format!("{CHAIN_PATH}/status")],
                    "only the status is written"
                );
                let (invalid, _, message) = h.condition("InvalidSpec");
                assert_eq!(invalid, "True");
                assert!(
                    message.contains("spec.functions[1].loadBalancer.backends[0].address"),
                    "{message}"
                );
                assert_eq!(h.condition("Ready").0, "False");
                assert_eq!(
                    h.sidecars.generation("edge-dataplane-a"),
                    1,
                    "the old chain keeps running"
                );
                assert!(!h.sidecars.calls().iter().any(|c| c.ends_with(" 2")));
            }
            Scenario::ApplyFailure => {
                let c1 = chain(1, 22, None, "10.0.2.1");
                h.ready_at(&c1).await;
                if let Ok(mut p) = h.sidecars.pods.lock()
                    && let Some(b) = p.get_mut("edge-dataplane-b")
                {
                    b.reject.insert(2);
                }
                let c2 = chain(2, 2222, None, "10.0.2.1");
                h.reconcile(&c2).await;
                assert_eq!(
                    h.sidecars.calls()[h.sidecars.calls().len() - 3..],
                    [
                        "apply edge-dataplane-a 2",
                        "apply edge-dataplane-b 2",
                        "apply edge-dataplane-a 1"
                    ],
                    "a took it, b refused, a went back"
                );
                assert_eq!(h.sidecars.generation("edge-dataplane-a"), 1);
                let (degraded, reason, message) = h.condition("Degraded");
                assert_eq!(
                    (degraded.as_str(), reason.as_str()),
                    ("True", "ApplyFailed")
                );
                assert!(
                    message.contains("generation 2 failed on edge-dataplane-b"),
                    "{message}"
                );
                assert!(message.contains("verifier rejected"), "{message}");
                assert!(
                    message.contains("edge-dataplane-a returned to generation 1"),
                    "{message}"
                );
                assert_eq!(h.status().failed_generation, Some(2));
                assert_eq!(h.status().last_applied_generation, Some(1));
                let cm = h.object(CONFIG_MAP_PATH).expect("cm");
                assert_eq!(
                    cm["metadata"]["annotations"][render::GENERATION_ANNOTATION],
                    json!("1")
                );
                // Reconciling the same generation again does not retry it.
                let calls = h.sidecars.calls().len();
                h.reconcile(&c2).await;
                assert_eq!(h.sidecars.calls().len(), calls, "no flapping");
                assert_eq!(h.condition("Degraded").0, "True");
                // A new generation is tried again, and recovers.
                let c3 = chain(3, 2223, None, "10.0.2.1");
                h.reconcile(&c3).await;
                assert_eq!(h.condition("Ready").0, "True");
                assert_eq!(h.condition("Degraded").0, "False");
                assert_eq!(h.status().failed_generation, None);
            }
            Scenario::Deletion => {
                let c1 = chain(1, 22, None, "10.0.2.1");
                h.ready_at(&c1).await;
                let mut gone = c1.clone();
                gone.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::now(),
                    ));
                h.reconcile(&gone).await;
                let calls = h.sidecars.calls();
                assert!(
                    calls.contains(&"detach edge-dataplane-a".to_string()),
                    "{calls:?}"
                );
                assert!(
                    calls.contains(&"detach edge-dataplane-b".to_string()),
                    "{calls:?}"
                );
                let stored: VNFChain =
                    serde_json::from_value(h.object(CHAIN_PATH).expect("chain")).expect("chain");
                assert!(
                    stored.metadata.finalizers.unwrap_or_default().is_empty(),
                    "finalizer removed"
                );
            }
            Scenario::CrdMissing => {
                h.state.lock().expect("state").crd_installed = false;
                let e = check_crd(&h.ctx.client).await.expect_err("no CRD");
                assert!(matches!(e, crate::Error::CrdMissing));
                assert!(
                    e.to_string()
                        .contains("kubectl apply -f crds/buildvnf.io_vnfchains.yaml")
                );
                h.state.lock().expect("state").crd_installed = true;
                check_crd(&h.ctx.client).await.expect("CRD present");
            }
        }
    }

    #[tokio::test]
    async fn create() {
        run(Scenario::Create).await;
    }

    #[tokio::test]
    async fn rule_change_is_pushed_without_touching_pods() {
        run(Scenario::RuleChange).await;
    }

    #[tokio::test]
    async fn image_change_rolls_the_pods() {
        run(Scenario::ImageChange).await;
    }

    #[tokio::test]
    async fn invalid_spec_changes_nothing() {
        run(Scenario::InvalidSpec).await;
    }

    #[tokio::test]
    async fn apply_failure_rolls_back_and_degrades() {
        run(Scenario::ApplyFailure).await;
    }

    #[tokio::test]
    async fn deletion_detaches_and_removes_the_finalizer() {
        run(Scenario::Deletion).await;
    }

    #[tokio::test]
    async fn crd_missing_is_a_clear_error() {
        run(Scenario::CrdMissing).await;
    }

    mod leader {
        use std::time::Duration;

        use k8s_openapi::api::coordination::v1::Lease;
        use kube::Api;
        use serde_json::json;

        use super::Harness;
        use crate::leader::{Elector, Outcome};

        const LEASE: &str =
            "/apis/coordination.k8s.io/v1/namespaces/default/leases/buildvnf-operator";

        fn elector(h: &Harness, id: &str) -> Elector {
            let api: Api<Lease> = Api::namespaced(h.ctx.client.clone(), "default");
            Elector::new(api, "buildvnf-operator", id, Duration::from_secs(15))
        }

        #[tokio::test]
        async fn one_leader_renewals_and_takeover_after_expiry() {
            let h = Harness::new();
            let a = elector(&h, "operator-a");
            let b = elector(&h, "operator-b");
            assert_eq!(a.try_acquire_or_renew().await.expect("a"), Outcome::Leading);
            assert_eq!(
                b.try_acquire_or_renew().await.expect("b"),
                Outcome::Following("operator-a".into())
            );
            assert_eq!(
                a.try_acquire_or_renew().await.expect("renew"),
                Outcome::Leading
            );
            let rv = h.object(LEASE).expect("lease")["metadata"]["resourceVersion"].clone();
            assert_eq!(rv, json!("2"), "renewal replaced the lease");

            // A stops renewing: once its lease has expired, B takes over and A follows.
            h.state
                .lock()
                .expect("state")
                .objects
                .get_mut(LEASE)
                .expect("lease")["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
            assert_eq!(b.try_acquire_or_renew().await.expect("b"), Outcome::Leading);
            let lease = h.object(LEASE).expect("lease");
            assert_eq!(lease["spec"]["holderIdentity"], json!("operator-b"));
            assert_eq!(lease["spec"]["leaseTransitions"], json!(1));
            assert_eq!(
                a.try_acquire_or_renew().await.expect("a"),
                Outcome::Following("operator-b".into())
            );
        }

        #[tokio::test]
        async fn a_stale_write_loses_the_race() {
            let h = Harness::new();
            let a = elector(&h, "operator-a");
            assert_eq!(a.try_acquire_or_renew().await.expect("a"), Outcome::Leading);
            h.state
                .lock()
                .expect("state")
                .objects
                .get_mut(LEASE)
                .expect("lease")["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
            // B sees an expired lease, but someone writes between its read and its replace: B must not lead.
            h.state.lock().expect("state").concurrent_write_before_put = true;
            let b = elector(&h, "operator-b");
            assert!(matches!(
                b.try_acquire_or_renew().await.expect("b"),
                Outcome::Following(_)
            ));
            assert_eq!(
                h.object(LEASE).expect("lease")["spec"]["holderIdentity"],
                json!("operator-a")
            );
        }
    }
}
