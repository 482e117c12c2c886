//! The injection webhook, AdmissionReview in → response out, against golden files
//! (`tests/golden/webhook/<case>.json`: the review sent, then the response with its patch decoded;
//! `UPDATE_GOLDEN=1` rewrites them). Every patch is also applied (RFC 6902, the `json-patch` crate) to the pod
//! it was made for: the result must be a valid Pod whose workload containers are byte-for-byte the ones sent,
//! with exactly one sidecar holding exactly three capabilities, and a second review of it must give no patch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use crds::VNFChain;
use k8s_openapi::api::core::v1::Pod;
use operator::render::Settings;
use operator::webhook::{self, Inputs, ReviewError};
use serde_json::{Value, json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/webhook")
}

fn chain(namespace: &str, name: &str, target: Value) -> Arc<VNFChain> {
    let mut c: VNFChain = serde_json::from_value(json!({
        "apiVersion": "buildvnf.io/v1alpha1", "kind": "VNFChain",
        "metadata": {"name": name, "namespace": namespace, "generation": 2,
                     "uid": "00000000-0000-0000-0000-0000000000c1"},
        "spec": {
            "functions": [
                {"name": "fw", "type": "firewall", "firewall": {"defaultAction": "deny", "rules": [
                    {"action": "allow", "protocol": "tcp", "destinationPorts": [{"from": 8080}]}]}},
                {"name": "limit", "type": "rateLimiter", "rateLimiter": {"packetsPerSecond": 1000}}
            ],
            "target": target,
        }
    }))
    .expect("chain");
    c.metadata.namespace = Some(namespace.into());
    Arc::new(c)
}

fn web_chain() -> Arc<VNFChain> {
    chain(
        "shop",
        "web-fw",
        json!({"podSelector": {"matchLabels": {"app": "web"}}}),
    )
}

fn review(operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

fn web_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d9f8-", "namespace": "shop",
                     "labels": {"app": "web", "pod-template-hash": "7d9f8"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}
    })
}

fn busy_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop",
                     "labels": {"app": "web"},
                     "annotations": {"example.com/owner": "team~a"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "busybox", "command": ["true"]}],
            "containers": [
                {"name": "web", "image": "nginx:1.27",
                 "securityContext": {"runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "log", "image": "fluent-bit"}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

struct World {
    chains: Vec<Arc<VNFChain>>,
    ns_labels: BTreeMap<String, String>,
    settings: Settings,
    native_sidecars: bool,
}

impl World {
    fn new(chains: Vec<Arc<VNFChain>>) -> Self {
        Self {
            chains,
            ns_labels: BTreeMap::from([("buildvnf.io/injection".into(), "enabled".into())]),
            settings: Settings::default(),
            native_sidecars: true,
        }
    }

    fn answer(&self, body: &[u8]) -> Result<Value, ReviewError> {
        webhook::review(
            body,
            &Inputs {
                chains: &self.chains,
                namespace_labels: &self.ns_labels,
                settings: &self.settings,
                native_sidecars: self.native_sidecars,
            },
        )
    }
}

/// The response's patch, decoded (`None` without one).
fn decoded_patch(response: &Value) -> Option<Value> {
    let b64 = response["response"]["patch"].as_str()?;
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is JSON"))
}

/// Runs a case and compares it with its golden file; returns the response.
fn golden(case: &str, world: &World, request: &Value) -> Value {
    let body = serde_json::to_vec(request).expect("encode");
    let response = world.answer(&body).expect("an answerable review");
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1", "{case}");
    assert_eq!(response["kind"], "AdmissionReview", "{case}");
    assert_eq!(
        response["response"]["uid"], request["request"]["uid"],
        "{case}: the response names the request's uid"
    );
    let record = json!({
        "review": request,
        "response": response,
        "patch": decoded_patch(&response),
    });
    let text = serde_json::to_string_pretty(&record).expect("encode") + "\n";
    let path = golden_dir().join(format!("{case}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("mkdir");
        std::fs::write(&path, &text).expect("write golden");
    } else {
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            )
        });
        assert_eq!(
            want,
            text,
            "{} differs from what the webhook answers now; review the change and run with UPDATE_GOLDEN=1",
            path.display()
        );
    }
    response
}

/// Applies the response's patch to the review's pod and checks what an injection must be; returns the pod.
fn injected(request: &Value, response: &Value) -> Value {
    let patch: json_patch::Patch =
        serde_json::from_value(decoded_patch(response).expect("a patch")).expect("RFC 6902 patch");
    let before = request["request"]["object"].clone();
    let mut pod = before.clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod it was made for");
    let typed: Pod = serde_json::from_value(pod.clone()).expect("still a Pod");
    let round = serde_json::to_value(&typed).expect("encode");
    assert_eq!(
        round["spec"], pod["spec"],
        "no field the Pod type does not know"
    );
    // The workload's containers are untouched; its init containers follow the sidecar unchanged.
    assert_eq!(pod["spec"]["containers"], before["spec"]["containers"]);
    let inits = pod["spec"]["initContainers"]
        .as_array()
        .expect("initContainers");
    let old_inits = before["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(&inits[1..], old_inits.as_slice());
    let sidecar = &inits[0];
    assert_eq!(sidecar["name"], "cnf-dataplane");
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    let sc = &sidecar["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(
        sc["capabilities"]["add"],
        json!(["BPF", "NET_ADMIN", "PERFMON"])
    );
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let caps_elsewhere = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(&inits[1..])
        .filter(|c| c["securityContext"]["capabilities"]["add"].is_array())
        .count();
    assert_eq!(caps_elsewhere, 0, "only the sidecar gains capabilities");
    // Every volume the sidecar mounts is in the pod, and the pod's own volumes are still there.
    let volumes: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for m in sidecar["volumeMounts"].as_array().expect("mounts") {
        let name = m["name"].as_str().expect("name");
        assert!(name.starts_with("buildvnf-"), "{name}");
        assert!(
            volumes.contains(&name),
            "{name} is mounted but not a volume"
        );
    }
    for v in before["spec"]["volumes"].as_array().into_iter().flatten() {
        assert!(volumes.contains(&v["name"].as_str().expect("name")));
    }
    pod
}

#[test]
fn a_selected_pod_gets_the_sidecar_and_a_second_review_changes_nothing() {
    let world = World::new(vec![web_chain()]);
    for (case, pod) in [("inject-bare", web_pod()), ("inject-busy", busy_pod())] {
        let request = review("CREATE", pod);
        let response = golden(case, &world, &request);
        assert_eq!(response["response"]["allowed"], true, "{case}");
        let pod = injected(&request, &response);
        assert_eq!(pod["metadata"]["labels"]["buildvnf.io/chain"], "web-fw");
        assert_eq!(
            pod["metadata"]["annotations"]["buildvnf.io/injected"],
            "shop/web-fw"
        );
        // Idempotent: the patched pod, reviewed again (reinvocation), gets no patch.
        let again = world
            .answer(&serde_json::to_vec(&review("CREATE", pod)).expect("encode"))
            .expect("answer");
        assert_eq!(again["response"]["allowed"], true);
        assert!(
            again["response"].get("patch").is_none(),
            "{case}: re-injected"
        );
    }
    // The user's annotation with `~` and `/` in it survives (RFC 6901 escaping of the keys we add).
    let request = review("CREATE", busy_pod());
    let pod = injected(
        &request,
        &world
            .answer(&serde_json::to_vec(&request).expect("encode"))
            .expect("answer"),
    );
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/owner"],
        "team~a"
    );
}

#[test]
fn pods_nobody_selects_and_requests_that_are_no_pod_create_pass_unchanged() {
    let world = World::new(vec![web_chain()]);
    let mut other = web_pod();
    other["metadata"]["labels"]["app"] = json!("api");
    let r = golden("not-selected", &world, &review("CREATE", other));
    assert_eq!(r["response"]["allowed"], true);
    assert!(r["response"].get("patch").is_none());

    let r = golden("update", &world, &review("UPDATE", web_pod()));
    assert!(r["response"].get("patch").is_none());

    let mut deployment = review(
        "CREATE",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {}}),
    );
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let r = golden("wrong-kind", &world, &deployment);
    assert_eq!(r["response"]["allowed"], true);
    assert!(r["response"].get("patch").is_none());
    assert!(
        r["response"]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("only into Pods"))
    );

    let mut exec = review("CREATE", json!({"kind": "PodExecOptions"}));
    exec["request"]["subResource"] = json!("exec");
    let r = golden("subresource", &world, &exec);
    assert!(r["response"].get("patch").is_none());

    // A chain being deleted injects nothing; a chain in another namespace without namespaceSelector neither.
    let mut deleting = (*web_chain()).clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let elsewhere = chain(
        "other",
        "web-fw",
        json!({"podSelector": {"matchLabels": {"app": "web"}}}),
    );
    let world = World::new(vec![Arc::new(deleting), elsewhere]);
    let r = world
        .answer(&serde_json::to_vec(&review("CREATE", web_pod())).expect("encode"))
        .expect("answer");
    assert!(r["response"].get("patch").is_none());
}

#[test]
fn a_namespace_selector_reaches_pods_of_other_namespaces() {
    let central = chain(
        "security",
        "edge-fw",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "namespaceSelector": {"matchLabels": {"team": "shop"}}}),
    );
    let mut world = World::new(vec![central]);
    let r = golden(
        "namespace-not-selected",
        &world,
        &review("CREATE", web_pod()),
    );
    assert_eq!(r["response"]["allowed"], true);
    assert!(
        r["response"].get("patch").is_none(),
        "namespace lacks team=shop"
    );
    // Selected across namespaces, in a namespace that opted in: injected, mounting the operator's copies of
    // the chain's ConfigMap and TLS Secret in the pod's namespace (`<name>.<chain namespace>`, copies.rs).
    world.ns_labels.insert("team".into(), "shop".into());
    let request = review("CREATE", web_pod());
    let r = golden("namespace-selector", &world, &request);
    assert_eq!(r["response"]["allowed"], true);
    let pod = injected(&request, &r);
    assert_eq!(
        pod["metadata"]["annotations"]["buildvnf.io/injected"],
        "security/edge-fw"
    );
    assert_eq!(pod["metadata"]["labels"]["buildvnf.io/chain"], "edge-fw");
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    let source = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    assert_eq!(
        source("buildvnf-config")["configMap"]["name"],
        "edge-fw-dataplane.security"
    );
    assert_eq!(
        source("buildvnf-tls")["secret"]["secretName"],
        "edge-fw-dataplane-tls.security"
    );
    // The same labels without the injection opt-in: not selected (the operator copies nothing there, so an
    // injected pod could not start), allowed unchanged.
    world.ns_labels.remove("buildvnf.io/injection");
    let r = golden(
        "namespace-not-opted-in",
        &world,
        &review("CREATE", web_pod()),
    );
    assert_eq!(r["response"]["allowed"], true);
    assert!(r["response"].get("patch").is_none());
    world
        .ns_labels
        .insert("buildvnf.io/injection".into(), "enabled".into());
    // A namespaceSelector that includes the chain's own namespace injects there.
    let own = chain(
        "shop",
        "edge-fw",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "namespaceSelector": {"matchLabels": {"team": "shop"}}}),
    );
    world.chains = vec![own];
    let request = review("CREATE", web_pod());
    let r = world
        .answer(&serde_json::to_vec(&request).expect("encode"))
        .expect("answer");
    let pod = injected(&request, &r);
    assert_eq!(
        pod["metadata"]["annotations"]["buildvnf.io/injected"],
        "shop/edge-fw"
    );
}

#[test]
fn refusals_fail_closed_with_a_message_naming_the_problem() {
    let deny = |case: &str, world: &World, request: Value, needle: &str| {
        let r = golden(case, world, &request);
        assert_eq!(r["response"]["allowed"], false, "{case}");
        assert_eq!(r["response"]["status"]["code"], 403, "{case}");
        let m = r["response"]["status"]["message"]
            .as_str()
            .expect("message");
        assert!(m.contains(needle), "{case}: {m}");
        assert!(r["response"].get("patch").is_none(), "{case}");
    };
    let two = World::new(vec![
        web_chain(),
        chain(
            "shop",
            "web-mon",
            json!({"podSelector": {"matchExpressions": [
            {"key": "app", "operator": "Exists"}]}}),
        ),
    ]);
    deny(
        "two-chains",
        &two,
        review("CREATE", web_pod()),
        "shop/web-fw, shop/web-mon",
    );

    let world = World::new(vec![web_chain()]);
    let mut clash = web_pod();
    clash["spec"]["containers"][0]["ports"] = json!([{"containerPort": 9090}]);
    deny(
        "port-conflict",
        &world,
        review("CREATE", clash),
        "port 9090",
    );
    let mut clash = busy_pod();
    clash["spec"]["volumes"][0]["name"] = json!("buildvnf-config");
    clash["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("buildvnf-config");
    deny(
        "volume-conflict",
        &world,
        review("CREATE", clash),
        "buildvnf-config",
    );

    let mut old = World::new(vec![web_chain()]);
    old.native_sidecars = false;
    deny(
        "no-native-sidecars",
        &old,
        review("CREATE", web_pod()),
        "1.29",
    );

    let mut invalid = (*web_chain()).clone();
    invalid.spec.functions[1]
        .rate_limiter
        .as_mut()
        .expect("rl")
        .packets_per_second = Some(0);
    let bad = World::new(vec![Arc::new(invalid)]);
    deny(
        "invalid-chain",
        &bad,
        review("CREATE", web_pod()),
        "is invalid",
    );

    let mut image = (*web_chain()).clone();
    image.spec.dataplane.image = Some("evil.example/miner:1".into());
    let bad = World::new(vec![Arc::new(image)]);
    deny(
        "image-not-allowed",
        &bad,
        review("CREATE", web_pod()),
        "not allowed",
    );

    // Hostile shapes of the object itself.
    deny(
        "no-object",
        &world,
        {
            let mut r = review("CREATE", Value::Null);
            r["request"]
                .as_object_mut()
                .expect("request")
                .remove("object");
            r
        },
        "no object",
    );
    deny(
        "containers-not-a-list",
        &world,
        review(
            "CREATE",
            json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": "web"}}),
        ),
        "cannot be read",
    );
    deny(
        "labels-not-strings",
        &world,
        review(
            "CREATE",
            json!({"metadata": {"labels": {"app": 7}},
        "spec": {"containers": []}}),
        ),
        "cannot be read",
    );
    deny(
        "no-spec",
        &world,
        review("CREATE", json!({"metadata": {"labels": {"app": "web"}}})),
        "no spec",
    );
}

#[test]
fn unanswerable_reviews_are_errors_not_panics() {
    let world = World::new(vec![web_chain()]);
    let err = |body: &[u8]| world.answer(body).expect_err("no answer");
    assert!(matches!(err(b"not json"), ReviewError::NotJson(_)));
    assert!(matches!(err(b""), ReviewError::NotJson(_)));
    assert!(matches!(err(b"[]"), ReviewError::NotAReview(_)));
    let mut v1beta1 = review("CREATE", web_pod());
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    assert!(matches!(
        err(&serde_json::to_vec(&v1beta1).expect("e")),
        ReviewError::NotAReview(_)
    ));
    let mut no_uid = review("CREATE", web_pod());
    no_uid["request"]["uid"] = json!("");
    assert!(matches!(
        err(&serde_json::to_vec(&no_uid).expect("e")),
        ReviewError::NotAReview(_)
    ));
    let mut no_request = review("CREATE", web_pod());
    no_request["request"] = json!("x");
    assert!(matches!(
        err(&serde_json::to_vec(&no_request).expect("e")),
        ReviewError::NotAReview(_)
    ));
    // Nested deeper than serde_json's recursion limit: an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(err(deep.as_bytes()), ReviewError::NotJson(_)));
    // Larger than the limit: refused before parsing.
    let huge = vec![b' '; webhook::MAX_REVIEW_BYTES + 1];
    assert_eq!(
        err(&huge),
        ReviewError::TooLarge(webhook::MAX_REVIEW_BYTES + 1)
    );
}

#[test]
fn a_big_pod_within_the_limit_is_injected_quickly() {
    let world = World::new(vec![web_chain()]);
    let mut pod = busy_pod();
    let many: serde_json::Map<String, Value> = (0..5_000)
        .map(|i| (format!("example.com/k{i}"), json!("v".repeat(100))))
        .collect();
    pod["metadata"]["annotations"] = Value::Object(many);
    pod["spec"]["containers"] = json!(
        (0..200)
            .map(|i| json!({"name": format!("c{i}"), "image": "busybox"}))
            .collect::<Vec<_>>()
    );
    let request = review("CREATE", pod);
    let body = serde_json::to_vec(&request).expect("encode");
    assert!(
        body.len() < webhook::MAX_REVIEW_BYTES && body.len() > 500_000,
        "{}",
        body.len()
    );
    let start = std::time::Instant::now();
    let response = world.answer(&body).expect("answer");
    let took = start.elapsed();
    injected(&request, &response);
    assert!(
        took < std::time::Duration::from_secs(2),
        "took {took:?} (the API server waits 10 s at most)"
    );
}
