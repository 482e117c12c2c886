//! Reconcile scenarios against `tower-test` request expectations, as kube-rs documents for controllers
//! (the `fixtures.rs` of kube's controller-rs example): the client talks to a mock service, and the test
//! answers each request in turn after checking its method, path, content type and body, so the exact
//! sequence of API calls of a reconcile is pinned down — nothing more, nothing less, in this order.
//!
//! The in-memory API server of [`crate::fake`] runs the wider scenarios; these pin the wire protocol.

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crds::VNFChain;
    use http::{Request, Response, StatusCode};
    use kube::Client;
    use kube::client::Body;
    use kube::runtime::controller::Action;
    use serde_json::{Value, json};
    use tower_test::mock::{self, Handle};

    use crate::controller::{Context, FINALIZER, reconcile};
    use crate::fake::FakeSidecars;
    use crate::metrics::Metrics;
    use crate::render::Settings;

    const CHAIN: &str = "/apis/buildvnf.io/v1alpha1/namespaces/default/vnfchains/edge";
    const CONFIG_MAP: &str = "/api/v1/namespaces/default/configmaps/edge-dataplane";
    const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/edge-dataplane";
    const SERVICE: &str = "/api/v1/namespaces/default/services/edge-dataplane";
    const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/edge-dataplane";
    const PODS: &str = "/api/v1/namespaces/default/pods";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
    const APPLY: &str = "application/apply-patch+yaml";
    const SSA_QUERY: &str = "fieldManager=buildvnf-operator";

    fn chain(finalizer: bool) -> VNFChain {
        let mut c = crds::manifest::parse_single_chain(
            "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata: {name: edge, namespace: default}\nspec:\n  functions: [{name: mon, type: monitor, monitor: {}}]\n  placement: {replicas: 2}\n",
        )
        .expect("chain");
        c.metadata.uid = Some("uid-edge".into());
        c.metadata.generation = Some(1);
        c.metadata.resource_version = Some("7".into());
        if finalizer {
            c.metadata.finalizers = Some(vec![FINALIZER.into()]);
        }
        c
    }

    /// The API server side of the mock: answers requests in the order a scenario expects them.
    struct ApiServer(Handle<Request<Body>, Response<Body>>);

    impl ApiServer {
        /// Takes the next request, checks it, answers `code` with `reply` (the request body itself when
        /// `reply` is `None`), and returns the request's JSON body.
        async fn expect(
            &mut self,
            method: &str,
            path: &str,
            content_type: Option<&str>,
            code: StatusCode,
            reply: Option<Value>,
        ) -> Value {
            self.expect_with(method, path, content_type, code, |body| {
                reply.clone().unwrap_or_else(|| body.clone())
            })
            .await
        }

        /// [`ApiServer::expect`], answering what `reply` makes of the request's body.
        async fn expect_with(
            &mut self,
            method: &str,
            path: &str,
            content_type: Option<&str>,
            code: StatusCode,
            reply: impl FnOnce(&Value) -> Value,
        ) -> Value {
            let (request, send) =
                tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
                    .await
                    .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
                    .unwrap_or_else(|| panic!("the client went away; expected {method} {path}"));
            let got = format!("{} {}", request.method(), request.uri().path());
            assert_eq!(got, format!("{method} {path}"), "unexpected request");
            let query = request.uri().query().unwrap_or_default().to_string();
            if let Some(ct) = content_type {
                let header = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                assert_eq!(header, ct, "{got}: content type");
                if ct == APPLY {
                    assert!(query.contains(SSA_QUERY), "{got}?{query}: field manager");
                    assert!(query.contains("force=true"), "{got}?{query}: force");
                }
            }
            if path == PODS {
                assert!(
                    query.contains("labelSelector=buildvnf.io%2Fchain%3Dedge"),
                    "{got}?{query}: pods by the chain's label"
                );
            }
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let reply = reply(&body);
            let response = Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).expect("encode")))
                .expect("response");
            send.send_response(response);
            body
        }

        /// A `GET` of the chain's ConfigMap, which does not exist yet.
        async fn config_map_not_found(&mut self) {
            let not_found = status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "configmaps \"edge-dataplane\" not found",
            );
            self.expect(
                "GET",
                CONFIG_MAP,
                None,
                StatusCode::NOT_FOUND,
                Some(not_found),
            )
            .await;
        }

        /// The status apply of the chain; returns its body.
        async fn status_apply(&mut self) -> Value {
            self.expect_with(
                "PATCH",
                &format!("{CHAIN}/status"),
                Some(APPLY),
                StatusCode::OK,
                with_status,
            )
            .await
        }

        /// No request follows.
        async fn done(mut self) {
            let next =
                tokio::time::timeout(Duration::from_millis(200), self.0.next_request()).await;
            if let Ok(Some((request, _))) = next {
                panic!("unexpected request {} {}", request.method(), request.uri());
            }
        }
    }

    fn context() -> (Arc<Context<FakeSidecars>>, ApiServer) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let ctx = Context::new(
            client,
            FakeSidecars::default(),
            Settings::default(),
            Metrics::new().expect("metrics"),
        );
        (Arc::new(ctx), ApiServer(handle))
    }

    /// The API server's answer to a status apply: the chain with that status.
    fn with_status(body: &Value) -> Value {
        let mut c = serde_json::to_value(chain(true)).expect("encode");
        c["status"] = body["status"].clone();
        c
    }

    fn status(code: StatusCode, reason: &str, message: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "reason": reason, "message": message, "code": code.as_u16()})
    }

    fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
        status["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
    }

    #[tokio::test]
    async fn create_of_a_new_chain_makes_exactly_these_requests() {
        // 1. A new chain: the finalizer first, and nothing else.
        let (ctx, mut api) = context();
        let fresh = chain(false);
        let reconciled = tokio::spawn(reconcile(Arc::new(fresh), ctx.clone()));
        let patch = api
            .expect(
                "PATCH",
                CHAIN,
                Some("application/json-patch+json"),
                StatusCode::OK,
                Some(serde_json::to_value(chain(true)).expect("encode")),
            )
            .await;
        assert!(
            patch.to_string().contains(FINALIZER),
            "the finalizer patch adds {FINALIZER}: {patch}"
        );
        let action = reconciled.await.expect("task").expect("reconcile");
        assert_eq!(action, Action::await_change());
        api.done().await;

        // 2. With the finalizer: the owned objects by server-side apply, the pods, the status, one Event.
        let (ctx, mut api) = context();
        let reconciled = tokio::spawn(reconcile(Arc::new(chain(true)), ctx.clone()));
        api.config_map_not_found().await;
        let cm = api
            .expect("PATCH", CONFIG_MAP, Some(APPLY), StatusCode::CREATED, None)
            .await;
        assert_eq!(
            cm["metadata"]["annotations"]["buildvnf.io/generation"],
            json!("1")
        );
        let mut labelled = vec![cm];
        // (opext) Two replicas: a PodDisruptionBudget too.
        for (path, kind) in [
            (DEPLOYMENT, "Deployment"),
            (SERVICE, "Service"),
            (PDB, "PodDisruptionBudget"),
        ] {
            let obj = api
                .expect("PATCH", path, Some(APPLY), StatusCode::CREATED, None)
                .await;
            assert_eq!(obj["kind"], json!(kind));
            assert_eq!(
                obj["metadata"]["ownerReferences"][0]["uid"],
                json!("uid-edge")
            );
            if kind == "Deployment" {
                // The pods' labels: what the operator's pod watch selects on.
                labelled.push(obj["spec"]["template"].clone());
            }
            labelled.push(obj);
        }
        for obj in &labelled {
            assert_eq!(
                obj["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                json!("buildvnf-operator"),
                "the label the operator's watches select on: {obj}"
            );
            assert_eq!(
                obj["metadata"]["labels"]["buildvnf.io/chain"],
                json!("edge"),
                "{obj}"
            );
        }
        let no_pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": []});
        api.expect("GET", PODS, None, StatusCode::OK, Some(no_pods))
            .await;
        let st = api.status_apply().await;
        assert_eq!(condition(&st, "Ready")["status"], json!("False"));
        assert_eq!(condition(&st, "Ready")["reason"], json!("NoReplicas"));
        assert_eq!(condition(&st, "Progressing")["status"], json!("True"));
        assert_eq!(condition(&st, "Degraded")["status"], json!("False"));
        assert!(
            st["status"].get("lastAppliedGeneration").is_none(),
            "no replica applied anything yet: {st}"
        );
        // The one transition to report: Progressing=True. The note and the action name the generation.
        let ev = api
            .expect("POST", EVENTS, None, StatusCode::CREATED, None)
            .await;
        assert_eq!(ev["type"], json!("Normal"));
        assert_eq!(ev["reason"], json!("RollingOut"));
        assert_eq!(ev["action"], json!("ReconcileGeneration1"));
        assert!(
            ev["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("generation 1: ")),
            "{ev}"
        );
        let action = reconciled.await.expect("task").expect("reconcile");
        assert!(
            action != Action::await_change(),
            "a chain that is not Ready is looked at again"
        );
        api.done().await;
    }

    #[tokio::test]
    async fn a_forbidden_apply_becomes_degraded_and_one_warning_event() {
        let (ctx, mut api) = context();
        let reconciled = tokio::spawn(reconcile(Arc::new(chain(true)), ctx.clone()));
        api.config_map_not_found().await;
        let refusal = "configmaps \"edge-dataplane\" is forbidden: User \"system:serviceaccount:buildvnf-system:buildvnf-operator\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\"";
        api.expect(
            "PATCH",
            CONFIG_MAP,
            Some(APPLY),
            StatusCode::FORBIDDEN,
            Some(status(StatusCode::FORBIDDEN, "Forbidden", refusal)),
        )
        .await;
        // Nothing else is attempted; the failure is written into the status and told once.
        let st = api.status_apply().await;
        let degraded = condition(&st, "Degraded");
        assert_eq!(degraded["status"], json!("True"));
        assert_eq!(degraded["reason"], json!("Forbidden"));
        let message = degraded["message"].as_str().expect("message");
        assert!(message.contains("generation 1"), "{message}");
        assert!(
            message.contains("cannot create resource \"configmaps\""),
            "{message}"
        );
        assert_eq!(condition(&st, "Ready")["status"], json!("False"));
        assert_eq!(condition(&st, "Ready")["reason"], json!("Forbidden"));
        let ev = api
            .expect("POST", EVENTS, None, StatusCode::CREATED, None)
            .await;
        assert_eq!(ev["type"], json!("Warning"));
        assert_eq!(ev["reason"], json!("Forbidden"));
        assert!(
            ev["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("generation 1: reconcile failed:")
                    && n.contains("cannot create resource")),
            "{ev}"
        );
        let err = reconciled
            .await
            .expect("task")
            .expect_err("the reconcile fails");
        assert_eq!(err.reason(), "Forbidden");
        api.done().await;
    }
}
