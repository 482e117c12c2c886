//! Controller tests against the in-memory API server and fake sidecars of [`crate::fake`]: the controller
//! flows (scenarios), leader election, the RBAC rules derived from every recorded request, the controller
//! runtime's list/watch wiring, and restarts in the middle of a rollout.

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crds::VNFChain;
    use kube::runtime::controller::Action;
    use serde_json::{Value, json};

    use crate::controller::{Context, FINALIZER, check_crd, reconcile};
    use crate::fake::{ClusterState, FakeSidecars, Recorded, fake_client};
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
        /// Sidecar mode (`spec.target`): no Deployment; the injected workload pods run the chain, the others
        /// are listed with the command that rolls them; deletion detaches live.
        SidecarMode,
        /// Sidecar mode across namespaces (`namespaceSelector`): copies of the ConfigMap and Secret in the
        /// selected, opted-in namespaces only, kept current, removed when a namespace stops matching and
        /// when the chain goes; the status covers the pods of every selected namespace.
        SidecarAcrossNamespaces,
    }

    impl Scenario {
        const ALL: [Scenario; 9] = [
            Scenario::SidecarMode,
            Scenario::SidecarAcrossNamespaces,
            Scenario::Create,
            Scenario::RuleChange,
            Scenario::ImageChange,
            Scenario::InvalidSpec,
            Scenario::ApplyFailure,
            Scenario::Deletion,
            Scenario::CrdMissing,
        ];
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
            // (opext) The test cluster's image allow-list: ImageChange rolls to an image of registry.local.
            Self::with_settings(Settings {
                allowed_images: crate::policy::ImagePolicy::new(&["registry.local/"])
                    .expect("allow-list"),
                ..Settings::default()
            })
        }

        fn with_settings(settings: Settings) -> Self {
            let state = Arc::new(Mutex::new(ClusterState {
                crd_installed: true,
                ..ClusterState::default()
            }));
            let sidecars = FakeSidecars::default();
            let ctx = Self::context(&state, &sidecars, settings);
            Self {
                state,
                sidecars,
                ctx,
            }
        }

        fn context(
            state: &Arc<Mutex<ClusterState>>,
            sidecars: &FakeSidecars,
            settings: Settings,
        ) -> Arc<Context<FakeSidecars>> {
            let client = fake_client(state.clone());
            let metrics = Metrics::new().expect("metrics");
            Arc::new(
                Context::new(client, sidecars.clone(), settings, metrics)
                    .with_certs(crate::certs::tests::shared_certs()),
            )
        }

        /// A new operator process: fresh client, caches, metrics and back-off state; the cluster and the
        /// sidecars stay as they are.
        fn restart(&mut self) {
            self.ctx = Self::context(&self.state, &self.sidecars, self.ctx.settings.clone());
        }

        fn requests(&self) -> Vec<Recorded> {
            self.state.lock().expect("state").requests.clone()
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

        /// The Events published so far (`POST` for a new one, `PATCH` for a repeat), with their bodies.
        fn events(&self) -> Vec<(String, Value)> {
            self.state.lock().expect("state").events.clone()
        }

        /// The bodies of the Warning Events published so far.
        fn warnings(&self) -> Vec<Value> {
            self.events()
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e["type"] == "Warning")
                .collect()
        }

        /// Checks a condition's status and reason; returns its message.
        fn expect_condition(&self, t: &str, status: &str, reason: &str) -> String {
            let (s, r, m) = self.condition(t);
            assert_eq!((s.as_str(), r.as_str()), (status, reason), "{t}: {m}");
            m
        }

        /// Runs the real controller runtime on this cluster until the sender is used (or dropped).
        fn start_controller(
            &self,
        ) -> (
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        ) {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(crate::controller::run(
                self.ctx.clone(),
                crate::controller::CONCURRENCY,
                async move {
                    let _ = stopped.await;
                },
            ));
            (stop, task)
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

        /// Reconciles `chain` marked for deletion; returns the sidecar calls so far.
        async fn delete(&self, chain: &VNFChain) -> Vec<String> {
            let mut gone = chain.clone();
            gone.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
            self.reconcile(&gone).await;
            self.sidecars.calls()
        }

        /// Gets a chain to Ready at `generation` with two pods.
        async fn ready_at(&self, c: &VNFChain) {
            self.reconcile(c).await;
            self.add_pods(c, 0);
            self.reconcile(c).await;
            assert_eq!(self.condition("Ready").0, "True", "{:?}", self.status());
        }
    }

    /// A workload pod of Deployment `web` (ReplicaSet `web-7d9f8`), injected by the webhook or not.
    fn workload_pod(name: &str, injected: Option<&VNFChain>) -> Value {
        workload_pod_in(NS, name, injected)
    }

    /// [`workload_pod`] in namespace `ns`.
    fn workload_pod_in(ns: &str, name: &str, injected: Option<&VNFChain>) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"app": "web", "pod-template-hash": "7d9f8"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8",
                                              "uid": "rs-1", "controller": true}]},
            "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "nginx"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.7"}
        });
        if let Some(chain) = injected {
            let pod: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(p.clone()).expect("pod");
            let ops = crate::webhook::patch(&pod, chain, &Settings::default(), ns).expect("patch");
            let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops)).expect("ops");
            json_patch::patch(&mut p, &ops).expect("the webhook's patch applies");
        }
        p
    }

    /// The SidecarMode scenario.
    async fn sidecar_mode(h: &Harness) {
        let mut c = chain(1, 22, None, "10.0.2.1");
        c.spec.placement = crds::Placement::default();
        c.spec.target = Some(
            serde_json::from_value(json!({"podSelector": {"matchLabels": {"app": "web"}}}))
                .expect("target"),
        );
        assert!(crds::validate(&c).is_ok(), "{:?}", crds::validate(&c));
        // A pod that existed before the chain: not injected, with the command that rolls it.
        h.state
            .lock()
            .expect("state")
            .pods
            .push(workload_pod("web-7d9f8-old", None));
        h.reconcile(&c).await;
        assert!(
            h.object(DEPLOYMENT_PATH).is_none(),
            "no Deployment in sidecar mode"
        );
        assert!(
            h.object("/api/v1/namespaces/default/services/edge-dataplane")
                .is_none()
        );
        assert!(
            h.object(CONFIG_MAP_PATH).is_some(),
            "the injected sidecars read the ConfigMap"
        );
        let m = h.expect_condition("Ready", "False", "NoInjectedPods");
        assert!(
            m.contains("kubectl -n default rollout restart deployment/web"),
            "{m}"
        );
        let st = h.status();
        assert_eq!(
            st.not_injected,
            vec![crds::NotInjected {
                namespace: NS.into(),
                pod: "web-7d9f8-old".into(),
                command: "kubectl -n default rollout restart deployment/web".into(),
            }]
        );
        // The rolled pod comes back injected (the webhook's own patch), its sidecar still at generation 0.
        {
            let mut s = h.state.lock().expect("state");
            s.pods.clear();
            s.pods.push(workload_pod("web-7d9f8-new", Some(&c)));
        }
        h.sidecars.add("web-7d9f8-new", 0, &["eth0"]);
        h.reconcile(&c).await;
        assert_eq!(
            h.sidecars.generation("web-7d9f8-new"),
            1,
            "pushed over gRPC"
        );
        let m = h.expect_condition("Ready", "True", "AllReplicasReady");
        assert!(m.contains("1/1 injected pods run generation 1"), "{m}");
        assert!(h.status().not_injected.is_empty());
        assert_eq!(h.status().attachments.len(), 1);
        assert_eq!(h.status().attachments[0].pod, "web-7d9f8-new");
        // A pod created while the webhook was away is listed again; Ready stays true for the injected ones.
        h.state
            .lock()
            .expect("state")
            .pods
            .push(workload_pod("web-7d9f8-bare", None));
        h.reconcile(&c).await;
        let m = h.expect_condition("Ready", "True", "AllReplicasReady");
        assert!(
            m.contains("1 selected pod(s) run without the sidecar"),
            "{m}"
        );
        // A new image makes the injected sidecar outdated: only the owner's rollout renews it, so the status
        // says so with the command (a dedicated chain's Deployment rolls by itself).
        let mut c2 = c.clone();
        c2.spec.dataplane.image = Some("registry.local/cnf-dataplane:next".into());
        h.reconcile(&c2).await;
        let outdated = h
            .status()
            .attachments
            .into_iter()
            .find(|a| a.pod == "web-7d9f8-new")
            .and_then(|a| a.error)
            .unwrap_or_default();
        assert!(
            outdated.contains("its sidecar is outdated")
                && outdated
                    .contains("restart the pod: kubectl -n default rollout restart deployment/web"),
            "{outdated}"
        );
        assert_eq!(h.condition("Ready").0, "False");
        // Deletion detaches the chain live from the injected pod.
        let calls = h.delete(&c).await;
        assert!(
            calls.contains(&"detach web-7d9f8-new".to_string()),
            "{calls:?}"
        );
        assert!(
            !calls.iter().any(|c| c.contains("web-7d9f8-bare")),
            "{calls:?}"
        );
    }

    /// A Namespace object, opted in to injection or not, with `labels`.
    fn namespace(h: &Harness, name: &str, opted_in: bool, labels: Value) {
        let mut labels = labels;
        labels["kubernetes.io/metadata.name"] = json!(name);
        if opted_in {
            labels[crate::webhook::NAMESPACE_LABEL] = json!(crate::webhook::NAMESPACE_ENABLED);
        }
        h.state.lock().expect("state").objects.insert(
            format!("/api/v1/namespaces/{name}"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
        );
    }

    /// The SidecarAcrossNamespaces scenario: chain `default/edge` selects `team=edge` namespaces; `shop` is
    /// one and opted in, `lab` matches but did not opt in, `other` opted in but does not match.
    async fn across_namespaces(h: &Harness) {
        let c = across_namespaces_setup(h);
        h.reconcile(&c).await;
        across_namespaces_copies(h);
        across_namespaces_status(h);
        let c2 = across_namespaces_rule_change(h, &c).await;
        across_namespaces_conflict(h, &c2).await;
        across_namespaces_unmatched(h, &c2).await;
        across_namespaces_rematched_and_deleted(h, &c2).await;
    }

    /// The path of the chain's ConfigMap copied into `ns`.
    fn cm(ns: &str) -> String {
        format!("/api/v1/namespaces/{ns}/configmaps/edge-dataplane.default")
    }

    /// The path of the chain's TLS Secret copied into `ns`.
    fn secret(ns: &str) -> String {
        format!("/api/v1/namespaces/{ns}/secrets/edge-dataplane-tls.default")
    }

    /// The chain, the namespaces, shop's pods and sidecars of [`across_namespaces`].
    fn across_namespaces_setup(h: &Harness) -> VNFChain {
        let mut c = chain(1, 22, None, "10.0.2.1");
        c.spec.placement = crds::Placement::default();
        c.spec.target = Some(
            serde_json::from_value(json!({"podSelector": {"matchLabels": {"app": "web"}},
                                          "namespaceSelector": {"matchLabels": {"team": "edge"}}}))
            .expect("target"),
        );
        assert!(crds::validate(&c).is_ok(), "{:?}", crds::validate(&c));
        namespace(h, NS, true, json!({}));
        namespace(h, "shop", true, json!({"team": "edge"}));
        namespace(h, "lab", false, json!({"team": "edge"}));
        namespace(h, "other", true, json!({"team": "ops"}));
        {
            let mut s = h.state.lock().expect("state");
            // shop: one pod injected by the webhook (in shop, so with the copies' names), one from before.
            let mut injected = workload_pod_in("shop", "web-shop-new", Some(&c));
            injected["status"]["podIP"] = json!("10.244.2.7");
            s.pods.push(injected);
            s.pods.push(workload_pod_in("shop", "web-shop-old", None));
            // Pods the chain does not select: its own namespace does not match, lab did not opt in.
            s.pods.push(workload_pod_in(NS, "web-default", None));
            s.pods.push(workload_pod_in("lab", "web-lab", None));
            // A pod of another chain named edge, in shop: not this chain's.
            let mut foreign = workload_pod_in("shop", "web-shop-foreign", None);
            foreign["metadata"]["labels"][render::CHAIN_LABEL] = json!("edge");
            foreign["metadata"]["annotations"] =
                json!({crate::webhook::INJECTED_ANNOTATION: "shop/edge"});
            s.pods.push(foreign);
        }
        h.sidecars.add("web-shop-new", 0, &["eth0"]);
        h.sidecars.add("web-shop-foreign", 7, &["eth0"]);
        // The sidecar in shop serves the chain's certificate (the copy), which names the chain's namespace.
        if let Ok(mut p) = h.sidecars.pods.lock()
            && let Some(p) = p.get_mut("web-shop-new")
        {
            p.serves_for = Some(("edge-dataplane".into(), NS.into()));
        }
        c
    }

    /// Copies in shop only, named and mounted as the injected pod expects.
    fn across_namespaces_copies(h: &Harness) {
        // Copies in shop only, named as the injected pod mounts them, labelled as the chain's, no owner.
        let copy = h.object(&cm("shop")).expect("ConfigMap copied into shop");
        let tls = h
            .object(&secret("shop"))
            .expect("TLS Secret copied into shop");
        for ns in [NS, "lab", "other"] {
            assert!(h.object(&cm(ns)).is_none(), "no copy in {ns}");
            assert!(h.object(&secret(ns)).is_none(), "no copy in {ns}");
        }
        for o in [&copy, &tls] {
            let labels = &o["metadata"]["labels"];
            assert_eq!(labels[render::CHAIN_LABEL], "edge");
            assert_eq!(labels[crate::copies::CHAIN_NAMESPACE_LABEL], NS);
            assert_eq!(labels[crate::copies::CHAIN_UID_LABEL], "uid-edge");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "buildvnf-operator");
            assert!(o["metadata"].get("ownerReferences").is_none(), "{o}");
        }
        let original_tls = h
            .object("/api/v1/namespaces/default/secrets/edge-dataplane-tls")
            .expect("original Secret");
        assert_eq!(tls["data"], original_tls["data"]);
        assert_eq!(tls["type"], "kubernetes.io/tls");
        let original_cm = h.object(CONFIG_MAP_PATH).expect("original ConfigMap");
        assert_eq!(copy["data"], original_cm["data"]);
        let pods = h.state.lock().expect("state").pods.clone();
        let volumes = &pods[0]["spec"]["volumes"];
        let mounted: Vec<&str> = volumes
            .as_array()
            .expect("volumes")
            .iter()
            .filter_map(|v| {
                v["configMap"]["name"]
                    .as_str()
                    .or(v["secret"]["secretName"].as_str())
            })
            .collect();
        assert_eq!(
            mounted,
            ["edge-dataplane.default", "edge-dataplane-tls.default"],
            "the webhook mounts exactly the copies"
        );
    }

    /// The status lists shop's pods only.
    fn across_namespaces_status(h: &Harness) {
        // Status: shop's pods only; the injected one got the chain, the old one is listed with its command.
        assert_eq!(h.sidecars.generation("web-shop-new"), 1, "pushed over gRPC");
        assert_eq!(
            h.sidecars.generation("web-shop-foreign"),
            7,
            "not this chain's pod"
        );
        let m = h.expect_condition("Ready", "True", "AllReplicasReady");
        assert!(m.contains("1/1 injected pods run generation 1"), "{m}");
        let st = h.status();
        assert_eq!(st.attachments.len(), 1);
        assert_eq!(st.attachments[0].pod, "shop/web-shop-new");
        assert_eq!(
            st.not_injected,
            vec![crds::NotInjected {
                namespace: "shop".into(),
                pod: "web-shop-old".into(),
                command: "kubectl -n shop rollout restart deployment/web".into(),
            }]
        );
        h.expect_condition("Degraded", "False", "AsExpected");
    }

    /// A rule change is pushed and copied; a steady-state reconcile writes nothing. Returns the changed chain.
    async fn across_namespaces_rule_change(h: &Harness, c: &VNFChain) -> VNFChain {
        // A rule change: pushed, and the copy follows the known-good generation like the original.
        let mut c2 = c.clone();
        c2.metadata.generation = Some(2);
        c2.spec = chain(2, 2222, None, "10.0.2.1").spec;
        c2.spec.placement = crds::Placement::default();
        c2.spec.target = c.spec.target.clone();
        h.reconcile(&c2).await;
        assert_eq!(h.sidecars.generation("web-shop-new"), 2);
        let copy = h.object(&cm("shop")).expect("copy");
        assert_eq!(
            copy["metadata"]["annotations"][render::GENERATION_ANNOTATION],
            "2"
        );
        assert!(
            copy["data"][render::CONFIG_KEY]
                .as_str()
                .expect("chain.yaml")
                .contains("from: 2222")
        );
        // Steady state: nothing is rewritten.
        let writes = |h: &Harness| {
            h.state
                .lock()
                .expect("state")
                .requests
                .iter()
                .filter(|r| r.method == "PATCH" && r.path.contains("/namespaces/shop/"))
                .count()
        };
        let before = writes(h);
        let requests_before = h.requests().len();
        h.reconcile(&c2).await;
        assert_eq!(writes(h), before, "current copies are not written again");
        let steady: Vec<String> = h.requests()[requests_before..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        println!(
            "steady-state reconcile of a chain selecting one other namespace: {} requests: {steady:#?}",
            steady.len()
        );
        // The chain's ConfigMap and Secret, the opted-in namespaces, the copies (one cluster-wide list), per
        // namespace the chain's pods and all pods (not injected), the originals' Secret and each Secret
        // copy, the status: no write when nothing changed.
        assert!(steady.len() <= 10, "{steady:#?}");
        c2
    }

    /// Somebody else's ConfigMap of the copy's name is left alone, and copied over once it is gone.
    async fn across_namespaces_conflict(h: &Harness, c2: &VNFChain) {
        // Somebody else's ConfigMap of the copy's name in a namespace that starts to match: left alone, Degraded.
        let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "edge-dataplane.default", "namespace": "other"},
                            "data": {"mine": "yes"}});
        h.state
            .lock()
            .expect("state")
            .objects
            .insert(cm("other"), theirs.clone());
        namespace(h, "other", true, json!({"team": "edge"}));
        h.reconcile(c2).await;
        assert_eq!(h.object(&cm("other")), Some(theirs), "not overwritten");
        let m = h.expect_condition("Degraded", "True", crate::copies::COPY_CONFLICT);
        assert!(
            m.contains("ConfigMap other/edge-dataplane.default exists"),
            "{m}"
        );
        h.state.lock().expect("state").objects.remove(&cm("other"));
        h.reconcile(c2).await;
        assert!(
            h.object(&cm("other")).is_some(),
            "copied once the name is free"
        );
        h.expect_condition("Degraded", "False", "AsExpected");
    }

    /// shop stops matching: detached there, copies removed.
    async fn across_namespaces_unmatched(h: &Harness, c2: &VNFChain) {
        // shop's labels stop matching: the chain is detached from its pods there, the copies go.
        namespace(h, "shop", true, json!({"team": "retail"}));
        h.reconcile(c2).await;
        assert!(h.object(&cm("shop")).is_none(), "copy removed");
        assert!(h.object(&secret("shop")).is_none(), "copy removed");
        assert!(h.object(&cm("other")).is_some(), "other still matches");
        assert!(
            h.sidecars
                .calls()
                .contains(&"detach web-shop-new".to_string()),
            "{:?}",
            h.sidecars.calls()
        );
        assert!(h.status().attachments.is_empty());
        assert!(h.status().not_injected.is_empty());
        h.expect_condition("Ready", "False", "NoInjectedPods");
    }

    /// shop matches again (the detached pod must restart), the rolled pod runs the chain, and deleting the
    /// chain removes every copy.
    async fn across_namespaces_rematched_and_deleted(h: &Harness, c2: &VNFChain) {
        // Deletion removes every copy (the garbage collector cannot: no owner reference across namespaces).
        // shop matches again: copies back; the sidecar detached above refuses the chain until its pod restarts
        // (the daemon's rule), which is no failure of the chain: the status names the pod and the command.
        namespace(h, "shop", true, json!({"team": "edge"}));
        h.reconcile(c2).await;
        assert!(h.object(&cm("shop")).is_some());
        h.expect_condition("Degraded", "False", "AsExpected");
        h.expect_condition("Ready", "False", "ReplicasNotReady");
        let st = h.status();
        let error = st.attachments[0].error.clone().unwrap_or_default();
        assert_eq!(st.attachments[0].pod, "shop/web-shop-new");
        assert!(
            error.contains("detached earlier")
                && error.contains("kubectl -n shop rollout restart deployment/web"),
            "{error}"
        );
        // Rolled: the new pod, injected with the copies, runs the chain.
        {
            let mut s = h.state.lock().expect("state");
            s.pods.retain(|p| p["metadata"]["name"] != "web-shop-new");
            let mut rolled = workload_pod_in("shop", "web-shop-rolled", Some(c2));
            rolled["status"]["podIP"] = json!("10.244.2.8");
            s.pods.push(rolled);
        }
        h.sidecars.add("web-shop-rolled", 0, &["eth0"]);
        h.reconcile(c2).await;
        assert_eq!(h.sidecars.generation("web-shop-rolled"), 2);
        h.expect_condition("Ready", "True", "AllReplicasReady");
        h.delete(c2).await;
        assert!(
            h.sidecars
                .calls()
                .contains(&"detach web-shop-rolled".to_string())
        );
        for ns in ["shop", "other"] {
            assert!(h.object(&cm(ns)).is_none(), "copy left in {ns}");
            assert!(h.object(&secret(ns)).is_none(), "copy left in {ns}");
        }
        assert!(
            h.object(CONFIG_MAP_PATH).is_some(),
            "the original goes with its owner, not by the operator"
        );
    }

    /// Runs one scenario's assertions; returns every request the operator made.
    async fn run(scenario: Scenario) -> Vec<Recorded> {
        let h = Harness::new();
        match scenario {
            Scenario::Create => scenario_create(&h).await,
            Scenario::RuleChange => scenario_rule_change(&h).await,
            Scenario::ImageChange => scenario_image_change(&h).await,
            Scenario::InvalidSpec => scenario_invalid_spec(&h).await,
            Scenario::ApplyFailure => scenario_apply_failure(&h).await,
            Scenario::Deletion => scenario_deletion(&h).await,
            Scenario::SidecarMode => sidecar_mode(&h).await,
            Scenario::SidecarAcrossNamespaces => across_namespaces(&h).await,
            Scenario::CrdMissing => scenario_crd_missing(&h).await,
        }
        h.requests()
    }

    /// The `Create` scenario.
    async fn scenario_create(h: &Harness) {
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
        // tls: the chain's serving certificate, before the pods that mount it (certs.rs).
        let tls = h.object("/api/v1/namespaces/default/secrets/edge-dataplane-tls");
        assert_eq!(
            tls.expect("chain Secret")["type"],
            json!("kubernetes.io/tls")
        );
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
        // No pods yet: never Ready, and no generation claimed as applied.
        let (ready, reason, _) = h.condition("Ready");
        assert_eq!((ready.as_str(), reason.as_str()), ("False", "NoReplicas"));
        assert_eq!(h.condition("Progressing").0, "True");
        assert_eq!(h.status().last_applied_generation, None);

        h.add_pods(&stored, 0);
        let action = h.reconcile(&stored).await;
        assert_eq!(h.sidecars.generation("edge-dataplane-a"), 1);
        assert_eq!(h.sidecars.generation("edge-dataplane-b"), 1);
        let (ready, _, message) = h.condition("Ready");
        assert_eq!(ready, "True", "{message}");
        assert_eq!(h.status().ready_replicas, 2);
        assert_eq!(h.status().attachments.len(), 2);
        assert_eq!(h.status().last_applied_generation, Some(1));
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
        let events = h
            .state
            .lock()
            .expect("state")
            .calls("POST", "/events")
            .len();
        assert!(events >= 2, "events on transitions, got {events}");
    }

    /// The `RuleChange` scenario.
    async fn scenario_rule_change(h: &Harness) {
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

    /// The `ImageChange` scenario.
    async fn scenario_image_change(h: &Harness) {
        let c1 = chain(1, 22, None, "10.0.2.1");
        h.ready_at(&c1).await;
        let hash_before =
            h.object(DEPLOYMENT_PATH).expect("d")["spec"]["template"]["metadata"]["annotations"]
                [render::RESTART_HASH_ANNOTATION]
                .clone();
        let c2 = chain(2, 22, Some("registry.local/cnf-dataplane:dev"), "10.0.2.1");
        h.reconcile(&c2).await;
        let d = h.object(DEPLOYMENT_PATH).expect("d");
        assert_ne!(
            d["spec"]["template"]["metadata"]["annotations"][render::RESTART_HASH_ANNOTATION],
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

    /// The `InvalidSpec` scenario.
    async fn scenario_invalid_spec(h: &Harness) {
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

    /// The `ApplyFailure` scenario.
    async fn scenario_apply_failure(h: &Harness) {
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
        let message = h.expect_condition("Degraded", "True", "ApplyFailed");
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

    /// The `Deletion` scenario.
    async fn scenario_deletion(h: &Harness) {
        let c1 = chain(1, 22, None, "10.0.2.1");
        h.ready_at(&c1).await;
        let calls = h.delete(&c1).await;
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

    /// The `CrdMissing` scenario.
    async fn scenario_crd_missing(h: &Harness) {
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
    async fn sidecar_mode_runs_in_injected_pods_and_lists_the_others() {
        run(Scenario::SidecarMode).await;
    }

    #[tokio::test]
    async fn sidecar_mode_across_namespaces_copies_what_the_pods_mount() {
        run(Scenario::SidecarAcrossNamespaces).await;
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

        pub(super) const LEASE: &str =
            "/apis/coordination.k8s.io/v1/namespaces/default/leases/buildvnf-operator";

        pub(super) fn elector(h: &Harness, id: &str) -> Elector {
            let api: Api<Lease> = Api::namespaced(h.ctx.client.clone(), "default");
            Elector::new(api, "buildvnf-operator", id, Duration::from_secs(15))
        }

        #[tokio::test]
        async fn one_leader_renewals_and_takeover_after_expiry() {
            takeover().await;
        }

        #[tokio::test]
        async fn a_stale_write_loses_the_race() {
            stale_write().await;
        }

        /// One leader, renewals, takeover after expiry; returns the requests made.
        pub(super) async fn takeover() -> Vec<super::Recorded> {
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
            h.requests()
        }

        /// A candidate whose replace races with another write does not lead; returns the requests made.
        pub(super) async fn stale_write() -> Vec<super::Recorded> {
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
            h.requests()
        }
    }

    fn ready_now(h: &Harness) -> bool {
        h.object(CHAIN_PATH)
            .and_then(|o| serde_json::from_value::<crds::VNFChainStatus>(o["status"].clone()).ok())
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == crds::CONDITION_READY && c.status == "True")
            })
    }

    /// The real controller runtime against the fake cluster: it lists and watches chains and the kinds it
    /// owns, finds the stored chain and reconciles it to Ready, and stops on shutdown. Returns the requests.
    async fn controller_runtime() -> Vec<Recorded> {
        let h = Harness::new();
        let c = chain(1, 22, None, "10.0.2.1");
        h.store(&c);
        h.add_pods(&c, 0);
        let (stop, task) = h.start_controller();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ready_now(&h) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the controller did not reconcile the chain to Ready; requests: {:?}",
                h.requests()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the controller stops on shutdown")
            .expect("controller task");
        assert_eq!(h.sidecars.generation("edge-dataplane-a"), 1);
        let requests = h.requests();
        for collection in [
            "/apis/buildvnf.io/v1alpha1/vnfchains",
            "/apis/apps/v1/deployments",
            "/api/v1/configmaps",
            "/api/v1/services",
            "/api/v1/pods",
            "/api/v1/namespaces",
        ] {
            for verb in ["list", "watch"] {
                assert!(
                    requests
                        .iter()
                        .any(|r| r.path == collection && r.rbac().is_some_and(|p| p.2 == verb)),
                    "no {verb} of {collection}: {requests:?}"
                );
            }
            // Owned objects, copies, pods and namespaces only through a label: never the whole cluster's.
            // Owned objects by the operator's; the copies in other namespaces by the chain-namespace label
            // (copies.rs); pods by the chain label (injected workload pods are not managed-by the operator);
            // namespaces by the injection opt-in.
            let labels: &[&str] = match collection {
                "/api/v1/pods" => &["labelSelector=buildvnf.io%2Fchain"],
                "/api/v1/configmaps" => &[
                    "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbuildvnf-operator",
                    "labelSelector=buildvnf.io%2Fchain-namespace",
                ],
                "/api/v1/namespaces" => &["labelSelector=buildvnf.io%2Finjection%3Denabled"],
                _ => &["labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbuildvnf-operator"],
            };
            let selected = collection.contains("vnfchains")
                || requests
                    .iter()
                    .filter(|r| r.path == collection)
                    .all(|r| labels.iter().any(|l| r.query.contains(l)));
            assert!(
                selected,
                "{collection} listed or watched without the operator's label selector: {requests:?}"
            );
        }
        requests
    }

    #[tokio::test]
    async fn controller_runtime_watches_and_reconciles_to_ready() {
        controller_runtime().await;
    }

    const POD_MONITOR_PATH: &str =
        "/apis/monitoring.coreos.com/v1/namespaces/default/podmonitors/edge-dataplane";

    /// PodMonitor detection at start-up, and the PodMonitor applied when it is served. Returns the requests.
    async fn pod_monitors() -> Vec<Recorded> {
        let h = Harness::with_settings(Settings {
            pod_monitor: true,
            ..Settings::default()
        });
        assert!(!crate::controller::pod_monitor_available(&h.ctx.client).await);
        h.state.lock().expect("state").pod_monitors_served = true;
        assert!(crate::controller::pod_monitor_available(&h.ctx.client).await);
        let c = chain(1, 22, None, "10.0.2.1");
        h.ready_at(&c).await;
        let pm = h.object(POD_MONITOR_PATH).expect("pod monitor applied");
        assert_eq!(pm["kind"], json!("PodMonitor"));
        assert_eq!(
            pm["spec"]["selector"]["matchLabels"][render::CHAIN_LABEL],
            json!("edge")
        );
        h.requests()
    }

    #[tokio::test]
    async fn pod_monitor_is_detected_and_applied() {
        pod_monitors().await;
    }

    /// Sets the Deployment's status as its controller would (kept by the fake across applies).
    fn set_deployment_conditions(h: &Harness, conditions: Value) {
        let mut s = h.state.lock().expect("state");
        let d = s
            .objects
            .get_mut(DEPLOYMENT_PATH)
            .expect("deployment applied");
        d["status"] = json!({"observedGeneration": 1, "conditions": conditions});
    }

    /// A chain reconciled once more after its Deployment reported `conditions`.
    async fn with_deployment_conditions(conditions: Value) -> (Harness, VNFChain) {
        let h = Harness::new();
        let c = chain(1, 22, None, "10.0.2.1");
        h.reconcile(&c).await;
        set_deployment_conditions(&h, conditions);
        h.reconcile(&c).await;
        (h, c)
    }

    #[tokio::test]
    async fn pods_refused_by_admission_make_the_chain_degraded_with_the_deployments_reason() {
        let refusal = "pods \"edge-dataplane-7d9f-x\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities (container \"cnf-dataplane\" must not include \"BPF\", \"NET_ADMIN\", \"PERFMON\" in securityContext.capabilities.add)";
        let (h, c) = with_deployment_conditions(json!([
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated", "message": "ok"},
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refusal}
        ]))
        .await;
        for t in ["Ready", "Progressing"] {
            let (status, reason, message) = h.condition(t);
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", "FailedCreate"),
                "{t}"
            );
            assert!(message.contains("violates PodSecurity"), "{t}: {message}");
        }
        let message = h.expect_condition("Degraded", "True", "FailedCreate");
        assert!(
            message.contains("Deployment edge-dataplane: pods"),
            "{message}"
        );
        let warnings = h.warnings();
        assert!(
            warnings.iter().any(|e| e["reason"] == "FailedCreate"),
            "a Warning Event names the refusal: {warnings:?}"
        );

        // Once the Deployment recovers and the pods run the chain, Degraded clears.
        set_deployment_conditions(
            &h,
            json!([{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ok"}]),
        );
        h.add_pods(&c, 0);
        h.reconcile(&c).await;
        assert_eq!(h.condition("Ready").0, "True");
        assert_eq!(h.condition("Degraded").0, "False");
    }

    #[tokio::test]
    async fn a_rollout_past_its_deadline_stops_progressing() {
        let (h, c) = with_deployment_conditions(json!([
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"edge-dataplane-7d9f\" has timed out progressing."}
        ]))
        .await;
        let message = h.expect_condition("Progressing", "False", "ProgressDeadlineExceeded");
        assert!(message.contains("timed out progressing"), "{message}");
        assert_eq!(h.condition("Degraded").1, "ProgressDeadlineExceeded");
        assert_eq!(h.condition("Ready").0, "False");

        // A status of an older Deployment generation says nothing about the current spec.
        h.state
            .lock()
            .expect("state")
            .objects
            .get_mut(DEPLOYMENT_PATH)
            .expect("deployment")["metadata"]["generation"] = json!(2);
        h.reconcile(&c).await;
        assert_eq!(h.condition("Progressing").0, "True");
        assert_eq!(h.condition("Degraded").0, "False");
    }

    #[tokio::test]
    async fn events_name_their_generation_and_generations_never_merge() {
        let h = Harness::new();
        let c1 = chain(1, 22, None, "10.0.2.1");
        h.ready_at(&c1).await;
        // A new image: Progressing=True RollingOut again, for generation 2.
        let c2 = chain(2, 22, Some("registry.local/cnf-dataplane:dev"), "10.0.2.1");
        h.reconcile(&c2).await;
        let events = h.events();
        let rolling: Vec<&Value> = events
            .iter()
            .filter(|(_, e)| e["reason"] == "RollingOut")
            .map(|(method, e)| {
                assert_eq!(
                    method, "POST",
                    "a new event, not a repeat of another generation's: {e}"
                );
                e
            })
            .collect();
        let notes: Vec<&str> = rolling.iter().filter_map(|e| e["note"].as_str()).collect();
        assert_eq!(rolling.len(), 2, "{events:?}");
        assert!(
            notes[0].starts_with("generation 1: ") && notes[0].contains("applying generation 1"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("generation 2: ") && notes[1].contains("applying generation 2"),
            "{notes:?}"
        );
        for (_, e) in &events {
            let note = e["note"].as_str().unwrap_or_default();
            assert!(
                note.starts_with("generation "),
                "every event names its generation: {e}"
            );
        }
    }

    /// A replica's sidecar goes away and comes back within one generation: the second `Ready=True` of that
    /// generation is a repeat, which kube's recorder counts on the first Event (a `PATCH`). Returns the requests.
    async fn ready_again() -> Vec<Recorded> {
        let h = Harness::new();
        let c = chain(1, 22, None, "10.0.2.1");
        h.ready_at(&c).await;
        let set_unreachable = |v: bool| {
            if let Ok(mut p) = h.sidecars.pods.lock()
                && let Some(a) = p.get_mut("edge-dataplane-a")
            {
                a.unreachable = v;
            }
        };
        set_unreachable(true);
        h.reconcile(&c).await;
        assert_eq!(h.condition("Ready").0, "False");
        set_unreachable(false);
        h.reconcile(&c).await;
        assert_eq!(h.condition("Ready").0, "True");
        let events = h.events();
        let ready: Vec<&(String, Value)> = events
            .iter()
            .filter(|(_, e)| e["reason"] == "AllReplicasReady")
            .collect();
        assert_eq!(ready.len(), 2, "{events:?}");
        assert_eq!(
            (ready[0].0.as_str(), ready[1].0.as_str()),
            ("POST", "PATCH"),
            "the same transition of the same generation is counted on one Event"
        );
        assert_eq!(ready[1].1["series"]["count"], json!(2));
        h.requests()
    }

    #[tokio::test]
    async fn a_repeated_transition_of_one_generation_is_one_event_counted_twice() {
        ready_again().await;
    }

    /// The chart's rules, as the fake's authorizer grants them.
    fn chart_rules() -> std::collections::BTreeSet<crate::fake::Permission> {
        rbac::granted(&rbac::rules())
    }

    #[tokio::test]
    async fn under_the_charts_rules_a_new_chain_reaches_ready() {
        let h = Harness::new();
        h.state.lock().expect("state").granted = Some(chart_rules());
        let mut c = chain(1, 22, None, "10.0.2.1");
        c.metadata.finalizers = None;
        h.reconcile(&c).await;
        let stored: VNFChain =
            serde_json::from_value(h.object(CHAIN_PATH).expect("chain")).expect("chain");
        h.ready_at(&stored).await;
        assert!(
            h.requests().iter().any(|r| r.creates),
            "the owned objects were created by apply"
        );
    }

    #[tokio::test]
    async fn an_apply_that_creates_needs_create_as_well_as_patch() {
        let h = Harness::new();
        let mut granted = chart_rules();
        assert!(granted.remove(&(
            "".to_string(),
            "configmaps".to_string(),
            "create".to_string()
        )));
        h.state.lock().expect("state").granted = Some(granted);
        let c = chain(1, 22, None, "10.0.2.1");
        h.store(&c);
        let stored: VNFChain =
            serde_json::from_value(h.object(CHAIN_PATH).expect("chain")).expect("chain");
        let e = reconcile(Arc::new(stored), h.ctx.clone())
            .await
            .expect_err("the API server refuses the create");
        assert_eq!(e.reason(), "Forbidden");
        assert!(h.object(CONFIG_MAP_PATH).is_none());
        assert!(
            h.object(DEPLOYMENT_PATH).is_none(),
            "nothing after the refusal"
        );
        let message = h.expect_condition("Degraded", "True", "Forbidden");
        assert!(
            message.contains("cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""),
            "{message}"
        );
        let warnings = h.warnings();
        assert_eq!(warnings.len(), 1, "one Warning Event: {warnings:?}");
        assert_eq!(warnings[0]["reason"], json!("Forbidden"));

        // The same error again is no new transition: no second Event.
        let stored: VNFChain =
            serde_json::from_value(h.object(CHAIN_PATH).expect("chain")).expect("chain");
        reconcile(Arc::new(stored), h.ctx.clone())
            .await
            .expect_err("still refused");
        assert_eq!(h.events().len(), 1);

        // With the permission, the next reconcile succeeds and Degraded clears.
        h.state.lock().expect("state").granted = Some(chart_rules());
        h.reconcile(&c).await;
        assert_eq!(h.condition("Degraded").0, "False");
        assert!(h.object(CONFIG_MAP_PATH).is_some());
    }

    mod polling {
        use std::time::Duration;

        use serde_json::json;

        use super::{FINALIZER, Harness, NS, chain};
        use crate::render;

        /// Chains in the simulated cluster.
        const CHAINS: usize = 10;

        /// Stores `CHAINS` chains (finalizer in place) whose one pod each stays Pending: none can become
        /// Ready, and nothing in the cluster changes.
        fn stuck_chains(h: &Harness) {
            let mut s = h.state.lock().expect("state");
            for i in 0..CHAINS {
                let name = format!("stuck-{i}");
                let mut c = chain(1, 22, None, "10.0.2.1");
                c.metadata.name = Some(name.clone());
                c.metadata.uid = Some(format!("uid-{name}"));
                c.metadata.finalizers = Some(vec![FINALIZER.into()]);
                let path = format!("/apis/buildvnf.io/v1alpha1/namespaces/{NS}/vnfchains/{name}");
                s.objects
                    .insert(path, serde_json::to_value(&c).expect("encode"));
                let hash = render::restart_hash(&c).expect("hash");
                s.pods.push(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{name}-dataplane-a"), "namespace": NS,
                                 "labels": render::labels(&c).expect("labels"),
                                 "annotations": {render::RESTART_HASH_ANNOTATION: hash}},
                    "spec": {"containers": [{"name": "cnf-dataplane"}]},
                    "status": {"phase": "Pending"}
                }));
            }
        }

        /// Requests one reconcile of a stuck chain makes against the fake (see the test's comment).
        const PER_RECONCILE: usize = 8;

        /// Requests the operator makes over one simulated minute with `CHAINS` chains that stay not Ready:
        /// the first minute after start-up, and one minute at steady state (after ten minutes). The fake's
        /// watches deliver no events, so every reconcile sees the chain as first listed (without status) and
        /// publishes its `Progressing` Event again (a repeat, one `PATCH`): the counts include that.
        async fn requests_per_minute() -> (usize, usize) {
            let h = Harness::new();
            stuck_chains(&h);
            let (stop, task) = h.start_controller();
            let count = || h.state.lock().expect("state").requests.len();
            tokio::time::sleep(Duration::from_secs(60)).await;
            let first = count();
            tokio::time::sleep(Duration::from_secs(9 * 60)).await;
            let before = count();
            tokio::time::sleep(Duration::from_secs(60)).await;
            let steady = count() - before;
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            (first, steady)
        }

        #[tokio::test(start_paused = true)]
        async fn not_ready_chains_cost_a_bounded_number_of_requests_per_minute() {
            let (first, steady) = requests_per_minute().await;
            println!(
                "{CHAINS} not-ready chains: {first} requests in the first minute, {steady} in a minute at steady state ({:.1} per chain per minute)",
                steady as f64 / CHAINS as f64
            );
            // A reconcile of a stuck chain is eight requests here (the chain's certificate Secret, the owned
            // objects, the pods, the status and the repeated Event); at steady state each chain gets at most
            // one reconcile a minute (the back-off is capped at two minutes), so the cost per chain is bounded
            // whatever the number of chains. The fixed 5 s requeue this replaced made ~70 per chain.
            assert!(
                steady <= CHAINS * PER_RECONCILE,
                "{steady} requests in a steady-state minute for {CHAINS} chains"
            );
            assert!(
                first <= CHAINS * PER_RECONCILE * 6,
                "{first} requests in the first minute for {CHAINS} chains"
            );
        }
    }

    mod rbac {
        use std::collections::BTreeSet;
        use std::path::Path;

        use super::{
            Recorded, Scenario, controller_runtime, leader, opext, pod_monitors, ready_again, run,
        };

        /// One ClusterRole rule, as written in the chart's rules file.
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub(super) struct Rule {
            api_groups: Vec<String>,
            resources: Vec<String>,
            verbs: Vec<String>,
        }

        type Permission = (String, String, String);

        /// Permissions the operator needs that no request against the fake can show, each with the reason
        /// (group, resource, verb, why). Empty today: every permission in the file is exercised. An entry
        /// that a test exercises fails the test, so the list cannot go stale.
        const UNEXERCISED: &[(&str, &str, &str, &str)] = &[];

        fn repo() -> &'static Path {
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        }

        pub(super) fn rules() -> Vec<Rule> {
            let path = repo().join("charts/build-vnf/files/operator-rbac-rules.yaml");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }

        pub(super) fn granted(rules: &[Rule]) -> BTreeSet<Permission> {
            let mut out = BTreeSet::new();
            for r in rules {
                for g in &r.api_groups {
                    for res in &r.resources {
                        for v in &r.verbs {
                            out.insert((g.clone(), res.clone(), v.clone()));
                        }
                    }
                }
            }
            out
        }

        /// Every request of every scenario, of leader election, of the controller runtime and of start-up.
        async fn everything() -> Vec<Recorded> {
            let mut requests = Vec::new();
            for s in Scenario::ALL {
                requests.extend(run(s).await);
            }
            requests.extend(leader::takeover().await);
            requests.extend(leader::stale_write().await);
            requests.extend(controller_runtime().await);
            requests.extend(pod_monitors().await);
            requests.extend(ready_again().await);
            requests.extend(opext::everything().await);
            requests.extend(crate::certs::tests::api_requests().await);
            requests.extend(crate::webhook::tests::api_requests().await);
            requests
        }

        /// The README's row for a rule.
        fn readme_row(r: &Rule) -> String {
            let groups: Vec<String> = r
                .api_groups
                .iter()
                .map(|g| {
                    if g.is_empty() {
                        "`\"\"` (core)".to_string()
                    } else {
                        format!("`{g}`")
                    }
                })
                .collect();
            let resources: Vec<String> = r.resources.iter().map(|x| format!("`{x}`")).collect();
            format!(
                "| {} | {} | {} |",
                groups.join(", "),
                resources.join(", "),
                r.verbs.join(", ")
            )
        }

        #[tokio::test]
        async fn the_rules_file_grants_exactly_what_the_operator_uses() {
            let requests = everything().await;
            let used: BTreeSet<Permission> = requests
                .iter()
                .flat_map(|r| {
                    let p = r.permissions();
                    assert!(!p.is_empty(), "not an API resource request: {r:?}");
                    p
                })
                .collect();
            let rules = rules();
            for r in &rules {
                for field in [&r.api_groups, &r.resources, &r.verbs] {
                    assert!(!field.is_empty(), "empty list in {r:?}");
                    assert!(!field.iter().any(|x| x.contains('*')), "wildcard in {r:?}");
                }
            }
            let granted = granted(&rules);

            let denied: Vec<(&Permission, Vec<&Recorded>)> = used
                .iter()
                .filter(|p| !granted.contains(*p))
                .map(|p| {
                    let examples = requests
                        .iter()
                        .filter(|r| r.permissions().contains(p))
                        .take(2)
                        .collect();
                    (p, examples)
                })
                .collect();
            assert!(
                denied.is_empty(),
                "the operator makes requests its ClusterRole does not allow: {denied:#?}"
            );

            let allowed_unused: BTreeSet<Permission> = UNEXERCISED
                .iter()
                .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
                .collect();
            for p in &allowed_unused {
                assert!(
                    granted.contains(p),
                    "UNEXERCISED entry {p:?} is not in the rules file"
                );
                assert!(
                    !used.contains(p),
                    "UNEXERCISED entry {p:?} is exercised now: remove it from the allow-list"
                );
            }
            let unused: Vec<&Permission> = granted
                .iter()
                .filter(|p| !used.contains(*p) && !allowed_unused.contains(*p))
                .collect();
            assert!(
                unused.is_empty(),
                "the rules file grants permissions no code path uses (remove them, or explain them in UNEXERCISED): {unused:?}"
            );

            // The operator's README shows the same table.
            let readme =
                std::fs::read_to_string(repo().join("operator/README.md")).expect("README");
            for r in &rules {
                let row = readme_row(r);
                assert!(
                    readme.contains(&row),
                    "operator/README.md lacks the row\n{row}"
                );
            }
            let section = readme
                .split("\n## RBAC")
                .nth(1)
                .and_then(|rest| rest.split("\n## ").next())
                .expect("operator/README.md has an RBAC section");
            let rows = section
                .lines()
                .filter(|l| l.starts_with("| `") && l.matches('|').count() == 4)
                .count();
            assert_eq!(
                rows,
                rules.len(),
                "operator/README.md RBAC table has extra rows"
            );
        }

        #[test]
        fn requests_map_to_rbac_verbs() {
            let p = |m: &str, path: &str, q: &str| {
                Recorded {
                    method: m.into(),
                    path: path.into(),
                    query: q.into(),
                    creates: false,
                }
                .rbac()
                .map(|(g, r, v)| format!("{g}|{r}|{v}"))
            };
            let ns = "/apis/buildvnf.io/v1alpha1/namespaces/default/vnfchains";
            assert_eq!(
                p("GET", ns, "").as_deref(),
                Some("buildvnf.io|vnfchains|list")
            );
            assert_eq!(
                p(
                    "GET",
                    "/apis/apps/v1/deployments",
                    "watch=true&resourceVersion=1"
                )
                .as_deref(),
                Some("apps|deployments|watch")
            );
            assert_eq!(
                p("GET", &format!("{ns}/edge"), "").as_deref(),
                Some("buildvnf.io|vnfchains|get")
            );
            assert_eq!(
                p("PATCH", &format!("{ns}/edge/status"), "").as_deref(),
                Some("buildvnf.io|vnfchains/status|patch")
            );
            assert_eq!(
                p("PUT", "/api/v1/namespaces/default/configmaps/x", "").as_deref(),
                Some("|configmaps|update")
            );
            assert_eq!(
                p(
                    "POST",
                    "/apis/events.k8s.io/v1/namespaces/default/events",
                    ""
                )
                .as_deref(),
                Some("events.k8s.io|events|create")
            );
            assert_eq!(
                p("DELETE", "/api/v1/namespaces/default/pods", "").as_deref(),
                Some("|pods|deletecollection")
            );
            assert_eq!(
                p("GET", "/api/v1/namespaces/default", "").as_deref(),
                Some("|namespaces|get")
            );
            assert_eq!(p("GET", "/version", ""), None);
        }
    }

    mod restart {
        use std::collections::BTreeMap;
        use std::sync::Arc;

        use crds::VNFChain;
        use serde_json::Value;

        use super::{CHAIN_PATH, Harness, chain, reconcile};

        /// Where a rollout starts from.
        #[derive(Clone, Copy, Debug)]
        enum Flow {
            /// A chain (finalizer in place) whose pods run nothing yet: the first known-good generation.
            FirstGeneration,
            /// A Ready chain at generation 1 gets a rule change (generation 2), pushed live.
            RuleChange,
        }

        /// Sets the cluster up; returns the chain to roll out.
        async fn prepare(h: &Harness, flow: Flow) -> VNFChain {
            match flow {
                Flow::FirstGeneration => {
                    let c = chain(1, 22, None, "10.0.2.1");
                    h.store(&c);
                    h.add_pods(&c, 0);
                    c
                }
                Flow::RuleChange => {
                    h.ready_at(&chain(1, 22, None, "10.0.2.1")).await;
                    chain(2, 2222, None, "10.0.2.1")
                }
            }
        }

        fn strip_times(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    m.remove("lastTransitionTime");
                    m.values_mut().for_each(strip_times);
                }
                Value::Array(a) => a.iter_mut().for_each(strip_times),
                _ => {}
            }
        }

        /// What the operator leaves in the cluster (without timestamps) and what each sidecar runs.
        fn snapshot(h: &Harness) -> (BTreeMap<String, Value>, Vec<(String, i64)>) {
            let mut objects = h.state.lock().expect("state").objects.clone();
            objects.values_mut().for_each(strip_times);
            // tls: a certificate's bytes differ per issuance (fresh key); which keys a Secret holds does not.
            for o in objects.values_mut().filter(|o| o["kind"] == "Secret") {
                if let Some(data) = o["data"].as_object_mut() {
                    data.values_mut().for_each(|v| *v = Value::Null);
                }
            }
            let generations = ["edge-dataplane-a", "edge-dataplane-b"]
                .iter()
                .map(|p| (p.to_string(), h.sidecars.generation(p)))
                .collect();
            (objects, generations)
        }

        /// Reconciles until nothing changes any more (a few watch events' worth).
        async fn converge(h: &Harness, target: &VNFChain) {
            for _ in 0..3 {
                h.reconcile(target).await;
            }
        }

        #[tokio::test]
        async fn an_operator_restarted_mid_rollout_converges_to_the_same_state() {
            for flow in [Flow::FirstGeneration, Flow::RuleChange] {
                // Uninterrupted.
                let h = Harness::new();
                let target = prepare(&h, flow).await;
                let start = h.requests().len();
                h.reconcile(&target).await;
                let rollout: Vec<_> = h.requests()[start..].to_vec();
                converge(&h, &target).await;
                let want = snapshot(&h);
                let want_pushes = h.sidecars.calls();
                assert!(
                    super::ready_now(&h),
                    "{flow:?}: the uninterrupted run is Ready"
                );
                assert!(rollout.len() >= 5, "{flow:?}: {rollout:?}");

                // Stopped while waiting for each request of the rollout in turn, then started again.
                for (k, stopped_at) in rollout.iter().enumerate() {
                    let mut h = Harness::new();
                    let target = prepare(&h, flow).await;
                    let start = h.requests().len();
                    h.state.lock().expect("state").hold_request = Some(start + k);
                    h.store(&target);
                    let stored: VNFChain =
                        serde_json::from_value(h.object(CHAIN_PATH).expect("chain"))
                            .expect("chain");
                    let task = tokio::spawn(reconcile(Arc::new(stored), h.ctx.clone()));
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
                    while h.requests().len() <= start + k {
                        assert!(
                            !task.is_finished(),
                            "{flow:?}: reconcile ended before request {k}"
                        );
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "{flow:?}: stuck before request {k}"
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    let held = h.requests()[start + k].clone();
                    assert_eq!(
                        (&held.method, &held.path),
                        (&stopped_at.method, &stopped_at.path),
                        "{flow:?}: the interrupted run follows the same path"
                    );
                    task.abort();
                    assert!(
                        task.await.is_err_and(|e| e.is_cancelled()),
                        "{flow:?}: stopped at {k}"
                    );
                    h.state.lock().expect("state").hold_request = None;

                    h.restart();
                    converge(&h, &target).await;
                    let got = snapshot(&h);
                    assert_eq!(
                        got, want,
                        "{flow:?}: stopped while waiting for {} {}, the restarted operator converged elsewhere",
                        held.method, held.path
                    );
                    assert_eq!(
                        h.sidecars.calls(),
                        want_pushes,
                        "{flow:?}: stopped at {} {}: pushes differ from an uninterrupted run",
                        held.method,
                        held.path
                    );
                }
            }
        }
    }
    // ---- opext: PodDisruptionBudget and anti-affinity, image policy, status columns, honest cleanup
    // events, Lease release, field manager. Kept in one block (the rest of this file is opcore's).
    pub(super) mod opext {
        use std::time::Duration;

        use serde_json::json;

        use super::leader::{LEASE, elector};
        use super::{CHAIN_PATH, DEPLOYMENT_PATH, Harness, Recorded, chain};
        use crate::leader::Outcome;
        use crate::policy::ImagePolicy;

        const PDB_PATH: &str =
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets/edge-dataplane";

        /// Every request of this block's flows, for the RBAC test.
        pub(in super::super) async fn everything() -> Vec<Recorded> {
            let mut requests = Vec::new();
            requests.extend(disruption_budget().await);
            requests.extend(image_policy().await);
            requests.extend(cleanup_events().await);
            requests.extend(lease_release().await);
            requests.extend(lead_until_shutdown().await);
            requests
        }

        fn deletes(h: &Harness, path: &str) -> usize {
            h.state.lock().expect("state").calls("DELETE", path).len()
        }

        /// Two replicas: a PDB (maxUnavailable 1) and anti-affinity, with the operator's labels; one
        /// replica: the PDB is deleted once, and a steady one-replica chain sends no more deletes.
        async fn disruption_budget() -> Vec<Recorded> {
            let h = Harness::new();
            let c1 = chain(1, 22, None, "10.0.2.1");
            h.ready_at(&c1).await;
            let pdb = h.object(PDB_PATH).expect("a PDB for 2 replicas");
            assert_eq!(pdb["apiVersion"], json!("policy/v1"));
            assert_eq!(pdb["spec"]["maxUnavailable"], json!(1));
            assert_eq!(
                pdb["spec"]["selector"]["matchLabels"],
                json!({"buildvnf.io/chain": "edge"})
            );
            let d = h.object(DEPLOYMENT_PATH).expect("deployment");
            for obj in [&pdb, &d] {
                assert_eq!(
                    obj["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                    json!("buildvnf-operator")
                );
                assert_eq!(
                    obj["metadata"]["labels"]["buildvnf.io/chain"],
                    json!("edge")
                );
                assert_eq!(
                    obj["metadata"]["ownerReferences"][0]["uid"],
                    json!("uid-edge")
                );
            }
            let term = &d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                [0];
            assert_eq!(
                term["podAffinityTerm"]["topologyKey"],
                json!("kubernetes.io/hostname")
            );
            let args = &d["spec"]["template"]["spec"]["containers"][0]["args"];
            let args: Vec<&str> = args
                .as_array()
                .expect("args")
                .iter()
                .filter_map(|a| a.as_str())
                .collect();
            assert!(
                args.windows(2).any(|w| w == ["--on-exit", "keep"]),
                "{args:?}"
            );
            // The status columns: every function, the pods' selector, the pods that exist.
            let st = h.status();
            assert_eq!(st.function_names.as_deref(), Some("fw,lb"));
            assert_eq!(st.selector.as_deref(), Some("buildvnf.io/chain=edge"));
            assert_eq!(st.replicas, 2);

            let mut c2 = chain(2, 22, None, "10.0.2.1");
            c2.spec.placement.replicas = 1;
            h.reconcile(&c2).await;
            assert!(
                h.object(PDB_PATH).is_none(),
                "the PDB goes with the second replica"
            );
            let d = h.object(DEPLOYMENT_PATH).expect("deployment");
            assert_eq!(d["spec"]["replicas"], json!(1));
            assert!(d["spec"]["template"]["spec"].get("affinity").is_none());
            assert_eq!(deletes(&h, PDB_PATH), 1);
            for _ in 0..3 {
                h.reconcile(&c2).await;
            }
            assert_eq!(
                deletes(&h, PDB_PATH),
                1,
                "a steady 1-replica chain sends no deletes"
            );
            // And back to three: the PDB is applied again.
            let mut c3 = chain(3, 22, None, "10.0.2.1");
            c3.spec.placement.replicas = 3;
            h.reconcile(&c3).await;
            assert!(h.object(PDB_PATH).is_some());

            // Every write names the field manager (the finalizer's JSON patch is named by the User-Agent,
            // which a fake client cannot send: see main.rs's test).
            let requests = h.requests();
            for r in requests.iter().filter(|r| {
                r.method == "PATCH" && r.path != CHAIN_PATH && !r.path.contains("/events")
            }) {
                assert!(r.query.contains("fieldManager=buildvnf-operator"), "{r:?}");
            }
            requests
        }

        fn condition(h: &Harness, t: &str) -> (String, String, String) {
            h.condition(t)
        }

        /// A chain naming an image outside the allow-list: refused with a reason, nothing applied; the
        /// same chain under an operator that allows the image runs; a running chain switched to a foreign
        /// image keeps its pods as they are.
        async fn image_policy() -> Vec<Recorded> {
            let mut h = Harness::new();
            let foreign = "registry.evil.io/miner:1";
            let c = chain(1, 22, Some(foreign), "10.0.2.1");
            h.reconcile(&c).await;
            let (invalid, reason, message) = condition(&h, "InvalidSpec");
            assert_eq!(
                (invalid.as_str(), reason.as_str()),
                ("True", "ImageNotAllowed")
            );
            assert!(
                message.contains(foreign) && message.contains("--allowed-images"),
                "{message}"
            );
            let (ready, reason, _) = condition(&h, "Ready");
            assert_eq!(
                (ready.as_str(), reason.as_str()),
                ("False", "ImageNotAllowed")
            );
            let writes: Vec<String> = h
                .requests()
                .iter()
                .filter(|r| r.method != "GET")
                .map(|r| r.path.clone())
                .collect();
            assert!(
                writes
                    .iter()
                    .all(|p| p.starts_with(CHAIN_PATH) || p.ends_with("/events")),
                "only the chain's status (and events) are written: {writes:?}"
            );
            assert!(h.object(DEPLOYMENT_PATH).is_none());
            assert!(h.object(PDB_PATH).is_none());
            assert!(h.sidecars.calls().is_empty());

            // The admin allows its repository: a new operator process runs it.
            let mut settings = h.ctx.settings.clone();
            settings.allowed_images = ImagePolicy::new(&["registry.evil.io/"]).expect("policy");
            let state = h.state.clone();
            let requests_before = h.requests();
            h = Harness::with_settings(settings);
            h.state = state;
            h.restart();
            h.reconcile(&c).await;
            assert_eq!(condition(&h, "InvalidSpec").0, "False");
            let d = h.object(DEPLOYMENT_PATH).expect("deployment");
            assert_eq!(
                d["spec"]["template"]["spec"]["containers"][0]["image"],
                json!(foreign)
            );

            // A Ready chain on the default image switched to a refused one: its pods are left as they are.
            let g = Harness::new();
            g.ready_at(&chain(1, 22, None, "10.0.2.1")).await;
            let before = g.object(DEPLOYMENT_PATH);
            g.reconcile(&chain(2, 22, Some("docker.io/someone/dp:2"), "10.0.2.1"))
                .await;
            assert_eq!(g.object(DEPLOYMENT_PATH), before);
            assert_eq!(g.condition("InvalidSpec").1, "ImageNotAllowed");
            assert_eq!(g.sidecars.generation("edge-dataplane-a"), 1);

            let mut all = requests_before;
            all.extend(h.requests());
            all.extend(g.requests());
            all
        }

        /// The cleanup Event counts the sidecars that were reached and detached.
        async fn cleanup_events() -> Vec<Recorded> {
            let h = Harness::new();
            let c = chain(1, 22, None, "10.0.2.1");
            h.ready_at(&c).await;
            if let Ok(mut p) = h.sidecars.pods.lock()
                && let Some(b) = p.get_mut("edge-dataplane-b")
            {
                b.unreachable = true;
            }
            let mut gone = c.clone();
            gone.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
            h.reconcile(&gone).await;
            let events = h.state.lock().expect("state").events.clone();
            let cleanup = events
                .iter()
                .map(|(_, e)| e)
                .find(|e| e["action"] == json!("Cleanup"))
                .expect("a cleanup event");
            assert_eq!(cleanup["type"], json!("Warning"), "{cleanup}");
            assert_eq!(
                cleanup["note"],
                json!(
                    "detached the chain from 1 of 2 sidecar(s); not reached: edge-dataplane-b (their pods go with the Deployment)"
                )
            );
            h.requests()
        }

        /// A holder that shuts down releases the Lease: a standby leads at once, not after 15 s; a
        /// non-holder's release, or one that races with another write, changes nothing.
        async fn lease_release() -> Vec<Recorded> {
            let h = Harness::new();
            let (a, b) = (elector(&h, "operator-a"), elector(&h, "operator-b"));
            assert!(
                !a.release().await.expect("no lease yet"),
                "nothing to release"
            );
            assert_eq!(a.try_acquire_or_renew().await.expect("a"), Outcome::Leading);
            let b_sees = b.try_acquire_or_renew().await.expect("b");
            assert_eq!(b_sees, Outcome::Following("operator-a".into()));
            assert!(!b.release().await.expect("b release"), "b does not hold it");
            assert_eq!(
                h.object(LEASE).expect("lease")["spec"]["holderIdentity"],
                json!("operator-a")
            );
            assert!(a.release().await.expect("a release"));
            let lease = h.object(LEASE).expect("lease");
            assert!(lease["spec"].get("holderIdentity").is_none(), "{lease}");
            assert_eq!(lease["spec"]["leaseDurationSeconds"], json!(1));
            // Well within A's 15 s: B leads on its next try.
            assert_eq!(b.try_acquire_or_renew().await.expect("b"), Outcome::Leading);
            let lease = h.object(LEASE).expect("lease");
            assert_eq!(lease["spec"]["holderIdentity"], json!("operator-b"));
            assert_eq!(lease["spec"]["leaseTransitions"], json!(1));
            assert_eq!(lease["spec"]["leaseDurationSeconds"], json!(15));
            // A release that loses a race with another write leaves the Lease to the writer.
            h.state.lock().expect("state").concurrent_write_before_put = true;
            assert!(!b.release().await.expect("racing release"));
            assert_eq!(
                h.object(LEASE).expect("lease")["spec"]["holderIdentity"],
                json!("operator-b")
            );
            // Lease writes name the field manager.
            let requests = h.requests();
            for r in requests
                .iter()
                .filter(|r| (r.method == "POST" || r.method == "PUT") && r.path.contains("/leases"))
            {
                assert!(r.query.contains("fieldManager=buildvnf-operator"), "{r:?}");
            }
            requests
        }

        #[tokio::test]
        async fn pdb_and_anti_affinity_follow_the_replicas() {
            disruption_budget().await;
        }

        #[tokio::test]
        async fn an_image_outside_the_allow_list_is_refused_and_nothing_is_applied() {
            image_policy().await;
        }

        #[tokio::test]
        async fn the_cleanup_event_counts_the_sidecars_actually_detached() {
            cleanup_events().await;
        }

        #[tokio::test]
        async fn a_released_lease_is_taken_over_at_once() {
            lease_release().await;
        }

        /// `lead` as `main` runs it: the work runs while leading, a shutdown (SIGTERM) stops it, and only
        /// then is the Lease released, so the standby leads on its next try.
        async fn lead_until_shutdown() -> Vec<Recorded> {
            let h = Harness::new();
            let (a, b) = (elector(&h, "operator-a"), elector(&h, "operator-b"));
            let (sigterm, on_sigterm) = tokio::sync::oneshot::channel::<()>();
            let (working, on_working) = tokio::sync::oneshot::channel::<()>();
            let (finished, on_finished) = tokio::sync::oneshot::channel::<Option<String>>();
            let task = tokio::spawn(async move {
                let shutdown = async move {
                    let _ = on_sigterm.await;
                };
                a.lead(
                    Duration::from_millis(10),
                    Duration::from_secs(5),
                    shutdown,
                    |stop| async move {
                        let _ = working.send(());
                        stop.await;
                        // The work is still finishing: the Lease must still be A's here.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    },
                )
                .await
                .inspect(|lost| {
                    let _ = finished.send(lost.clone());
                })
            });
            on_working.await.expect("the work started");
            let b_sees = b.try_acquire_or_renew().await.expect("b");
            assert_eq!(b_sees, Outcome::Following("operator-a".into()));
            sigterm.send(()).expect("sigterm");
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(
                h.object(LEASE).expect("lease")["spec"]["holderIdentity"],
                json!("operator-a"),
                "not released while the work runs"
            );
            let lost = tokio::time::timeout(Duration::from_secs(10), on_finished)
                .await
                .expect("lead returns after the shutdown")
                .expect("result");
            assert_eq!(lost, None, "a shutdown is not a lost lease");
            task.await.expect("task").expect("lead");
            assert_eq!(b.try_acquire_or_renew().await.expect("b"), Outcome::Leading);
            h.requests()
        }

        #[tokio::test]
        async fn sigterm_stops_the_work_then_releases_the_lease() {
            lead_until_shutdown().await;
        }
    }
}
