//! Rendered objects for every example chain: compared with golden files, and round-tripped through the
//! Kubernetes v1.37 types so no field is one the API would drop.

use std::path::{Path, PathBuf};

use crds::VNFChain;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use operator::render::{self, Settings};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The dedicated-mode example chains. A sidecar-mode example (`spec.target`, e.g. sidecar-web.yaml) owns no
/// Deployment, Service or budget: the operator renders the webhook's pod patch for it instead (tests/webhook*).
fn example_chains() -> Vec<(String, VNFChain)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            let mut chain = crds::manifest::parse_single_chain(&text).expect("valid example");
            chain
                .metadata
                .namespace
                .get_or_insert_with(|| "default".into());
            chain.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
            chain.metadata.generation = Some(1);
            (
                p.file_stem().expect("stem").to_string_lossy().into_owned(),
                chain,
            )
        })
        .filter(|(_, chain)| chain.spec.target.is_none())
        .collect()
}

/// Decodes `v` as the Kubernetes type `K` and encodes it again. A field `K` does not know is lost on the way
/// (serde ignores it) and a missing required field comes back as its default, so the result differs from
/// `v`; a field of the wrong type is an error.
fn round_trip_value<K: Serialize + DeserializeOwned>(v: &Value) -> Result<Value, String> {
    let decoded: K = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&decoded).map_err(|e| e.to_string())
}

/// Asserts that `obj` survives a round trip through the Kubernetes v1.37 type unchanged.
fn round_trips<K: Serialize + DeserializeOwned>(obj: &K, what: &str) -> Value {
    let first = serde_json::to_value(obj).expect("encode");
    let second = round_trip_value::<K>(&first)
        .unwrap_or_else(|e| panic!("{what}: not a valid Kubernetes object: {e}"));
    assert_eq!(
        first, second,
        "{what}: fields lost in a round trip through k8s-openapi"
    );
    first
}

/// PodMonitor has no k8s-openapi type: its metadata and selector are checked as Kubernetes types, the rest
/// against the fields of the Prometheus Operator's `monitoring.coreos.com/v1` PodMonitor that we use.
fn check_pod_monitor(pm: &Value, what: &str) {
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1", "{what}");
    assert_eq!(pm["kind"], "PodMonitor", "{what}");
    let meta = &pm["metadata"];
    assert_eq!(
        round_trip_value::<ObjectMeta>(meta).as_ref(),
        Ok(meta),
        "{what}: metadata"
    );
    let spec = pm["spec"].as_object().expect("spec");
    let known_spec = [
        "selector",
        "podMetricsEndpoints",
        "namespaceSelector",
        "jobLabel",
    ];
    for k in spec.keys() {
        assert!(known_spec.contains(&k.as_str()), "{what}: unknown spec.{k}");
    }
    let selector = &pm["spec"]["selector"];
    assert_eq!(
        round_trip_value::<LabelSelector>(selector).as_ref(),
        Ok(selector),
        "{what}: spec.selector"
    );
    let endpoints = pm["spec"]["podMetricsEndpoints"]
        .as_array()
        .expect("podMetricsEndpoints");
    assert!(!endpoints.is_empty(), "{what}");
    for e in endpoints {
        for (k, v) in e.as_object().expect("endpoint") {
            assert!(
                ["port", "path", "interval", "scheme", "scrapeTimeout"].contains(&k.as_str()),
                "{what}: unknown podMetricsEndpoints field {k}"
            );
            assert!(v.is_string(), "{what}: {k} is a string");
        }
    }
}

#[test]
fn rendered_objects_match_golden_files_and_the_kubernetes_types() {
    let settings = Settings {
        pod_monitor: true,
        ..Settings::default()
    };
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, chain) in example_chains() {
        let deployment = render::deployment(&chain, &settings).expect("deployment");
        let config_map = render::config_map(&chain, &chain).expect("config map");
        let service = render::service(&chain).expect("service");
        let monitor = render::pod_monitor(&chain).expect("pod monitor");
        let mut docs = vec![
            round_trips::<Deployment>(&deployment, &format!("{name} Deployment")),
            round_trips::<ConfigMap>(&config_map, &format!("{name} ConfigMap")),
            round_trips::<Service>(&service, &format!("{name} Service")),
            serde_json::to_value(&monitor).expect("encode"),
        ];
        check_pod_monitor(&docs[3], &format!("{name} PodMonitor"));
        if let Some(pdb) = render::pod_disruption_budget(&chain).expect("pdb") {
            docs.push(round_trips::<PodDisruptionBudget>(
                &pdb,
                &format!("{name} PodDisruptionBudget"),
            ));
        }
        let rendered = serde_saphyr::to_string_multiple(&docs).expect("yaml");
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(format!("{name}.yaml"));
        if update {
            std::fs::write(&golden, &rendered).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                golden.display()
            )
        });
        assert!(
            expected == rendered,
            "{} differs from what the operator renders now; review the change and run with UPDATE_GOLDEN=1",
            golden.display()
        );
        // The ConfigMap holds a manifest the sidecar can read back with the shared parser.
        let text = &config_map.data.as_ref().expect("data")[render::CONFIG_KEY];
        let back = crds::manifest::parse_single_chain(text).expect("sidecar-readable");
        assert_eq!(back.spec, chain.spec);
        assert_eq!(back.metadata.generation, Some(1));
    }
}

#[test]
fn restart_hash_moves_only_for_changes_that_need_new_pods() {
    let (_, base) = example_chains()
        .into_iter()
        .find(|(n, _)| n == "edge-chain")
        .expect("edge chain");
    let hash = |c: &VNFChain| render::restart_hash(c).expect("hash");
    let mut rules = base.clone();
    rules.spec.functions[0]
        .firewall
        .as_mut()
        .expect("fw")
        .default_action = crds::Action::Allow;
    rules.spec.placement.replicas = 5;
    assert_eq!(
        hash(&base),
        hash(&rules),
        "rules and replicas are live changes"
    );
    for change in [
        |c: &mut VNFChain| c.spec.dataplane.image = Some("other:1".into()),
        |c: &mut VNFChain| c.spec.interfaces.egress = Some(crds::net::InterfaceName::from("eth1")),
        |c: &mut VNFChain| c.spec.dataplane.hook = crds::Hook::Tc,
    ] {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(hash(&base), hash(&changed));
    }

    // user-space functions are set up at start: changing one rolls the pods, a kernel rule does not
    let (_, cipher) = example_chains()
        .into_iter()
        .find(|(n, _)| n == "userspace-cipher")
        .expect("userspace-cipher");
    let mut direction = cipher.clone();
    direction.spec.functions[1]
        .payload_cipher
        .as_mut()
        .expect("payloadCipher")
        .direction = crds::CipherDirection::Decrypt;
    assert_ne!(
        hash(&cipher),
        hash(&direction),
        "a user-space function changed"
    );
    let mut rate = cipher.clone();
    rate.spec.functions[0]
        .rate_limiter
        .as_mut()
        .expect("rateLimiter")
        .packets_per_second = Some(1000);
    assert_eq!(
        hash(&cipher),
        hash(&rate),
        "kernel parameters are live changes"
    );
}

#[test]
fn the_round_trip_check_catches_unknown_and_mistyped_fields() {
    let (_, chain) = example_chains().into_iter().next().expect("an example");
    let deployment = render::deployment(&chain, &Settings::default()).expect("deployment");
    let good = serde_json::to_value(&deployment).expect("encode");
    assert_eq!(round_trip_value::<Deployment>(&good).as_ref(), Ok(&good));

    // A misspelt field (the API server would prune or reject it) does not survive.
    let mut unknown = good.clone();
    unknown["spec"]["template"]["spec"]["containers"][0]["securityContex"] = serde_json::json!({});
    let back = round_trip_value::<Deployment>(&unknown).expect("still decodes");
    assert_ne!(
        back, unknown,
        "an unknown field must show up as a difference"
    );

    // A field at the wrong level does not either.
    let mut misplaced = good.clone();
    misplaced["spec"]["containers"] = good["spec"]["template"]["spec"]["containers"].clone();
    assert_ne!(
        round_trip_value::<Deployment>(&misplaced).expect("decodes"),
        misplaced
    );

    // A wrong type is an error.
    let mut mistyped = good.clone();
    mistyped["spec"]["replicas"] = serde_json::json!("two");
    assert!(round_trip_value::<Deployment>(&mistyped).is_err());
    // k8s-openapi decodes a missing required field as its default, so it shows up as a difference.
    let mut nameless = good.clone();
    if let Some(c) = nameless["spec"]["template"]["spec"]["containers"][0].as_object_mut() {
        c.remove("name");
    }
    assert_ne!(
        round_trip_value::<Deployment>(&nameless).ok(),
        Some(nameless)
    );
}

#[test]
fn keys_of_user_space_functions_are_mounted_read_only_where_the_sidecar_reads_them() {
    let (_, chain) = example_chains()
        .into_iter()
        .find(|(name, _)| name == "userspace-cipher")
        .expect("examples/userspace-cipher.yaml");
    let d = render::deployment(&chain, &Settings::default()).expect("render");
    let pod = d.spec.template.spec.expect("pod");
    let cipher = chain
        .spec
        .functions
        .iter()
        .find_map(|f| f.payload_cipher.as_ref())
        .expect("a payloadCipher");
    let wanted = cipher.key_secret_ref.mounted_path();
    let volume = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| {
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref())
                == Some(cipher.key_secret_ref.name.as_str())
        })
        .expect("a volume of the key's Secret");
    let secret = volume.secret.expect("secret volume");
    let items = secret.items.expect("only the named keys are projected");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].key, cipher.key_secret_ref.key);
    let mount = pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.name == volume.name)
        .expect("mounted in the sidecar");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(format!("{}/{}", mount.mount_path, items[0].path), wanted);
}

fn chain_named(name: &str) -> VNFChain {
    example_chains()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("examples/{name}.yaml"))
}

#[test]
fn every_owned_object_carries_the_operator_and_chain_labels() {
    let settings = Settings {
        pod_monitor: true,
        ..Settings::default()
    };
    for (name, chain) in example_chains() {
        let d = render::deployment(&chain, &settings).expect("deployment");
        let pod_labels = d
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .expect("pod labels");
        let chain_name = chain.metadata.name.clone().expect("name");
        let mut all = vec![
            ("Deployment", d.metadata.labels.clone()),
            ("pod template", Some(pod_labels)),
            (
                "ConfigMap",
                render::config_map(&chain, &chain)
                    .expect("cm")
                    .metadata
                    .labels,
            ),
            (
                "Service",
                render::service(&chain).expect("service").metadata.labels,
            ),
            (
                "PodMonitor",
                render::pod_monitor(&chain).expect("pm").metadata.labels,
            ),
        ];
        if let Some(pdb) = render::pod_disruption_budget(&chain).expect("pdb") {
            all.push(("PodDisruptionBudget", pdb.metadata.labels));
        }
        for (kind, labels) in all {
            let labels = labels.unwrap_or_else(|| panic!("{name} {kind}: no labels"));
            assert_eq!(
                labels
                    .get("app.kubernetes.io/managed-by")
                    .map(String::as_str),
                Some("buildvnf-operator"),
                "{name} {kind}"
            );
            assert_eq!(
                labels.get(render::CHAIN_LABEL),
                Some(&chain_name),
                "{name} {kind}"
            );
        }
    }
}

#[test]
fn budget_and_anti_affinity_only_from_two_replicas() {
    let mut chain = chain_named("edge-chain");
    for (replicas, spread) in [(1, false), (2, true), (5, true)] {
        chain.spec.placement.replicas = replicas;
        let d = render::deployment(&chain, &Settings::default()).expect("deployment");
        let pod = d.spec.template.spec.expect("pod spec");
        let pdb = render::pod_disruption_budget(&chain).expect("pdb");
        assert_eq!(pdb.is_some(), spread, "{replicas} replicas: PDB");
        assert_eq!(
            pod.affinity.is_some(),
            spread,
            "{replicas} replicas: affinity"
        );
        let Some(pdb) = pdb else { continue };
        let spec = pdb.spec.expect("pdb spec");
        assert_eq!(
            spec.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
        assert_eq!(
            spec.min_available, None,
            "one of maxUnavailable/minAvailable only"
        );
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        // The budget, the anti-affinity and the Deployment select exactly the chain's pods.
        let deployment_selector = render::deployment(&chain, &Settings::default())
            .expect("deployment")
            .spec
            .selector;
        assert_eq!(spec.selector.as_ref(), Some(&deployment_selector));
        let anti = pod
            .affinity
            .and_then(|a| a.pod_anti_affinity)
            .expect("anti-affinity");
        assert!(
            anti.required_during_scheduling_ignored_during_execution
                .is_none(),
            "preferred only: a one-node cluster still runs every replica"
        );
        let terms = anti
            .preferred_during_scheduling_ignored_during_execution
            .expect("preferred");
        assert_eq!(terms.len(), 1);
        assert_eq!(
            terms[0].pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        assert_eq!(
            terms[0].pod_affinity_term.label_selector.as_ref(),
            Some(&deployment_selector)
        );
    }
}

#[test]
fn on_exit_is_rendered_as_the_sidecar_flag_keep_by_default() {
    let mut chain = chain_named("firewall");
    let args = |c: &VNFChain| {
        render::deployment(c, &Settings::default())
            .expect("deployment")
            .spec
            .template
            .spec
            .map(|p| p.containers[0].args.clone().unwrap_or_default())
            .expect("args")
    };
    let flag = |args: &[String]| {
        let at = args
            .iter()
            .position(|a| a == "--on-exit")
            .expect("--on-exit rendered");
        assert_eq!(
            args.iter().filter(|a| *a == "--on-exit").count(),
            1,
            "{args:?}"
        );
        args[at + 1].clone()
    };
    assert_eq!(chain.spec.dataplane.on_exit, crds::OnExit::Keep);
    assert_eq!(flag(&args(&chain)), "keep");
    let keep_hash = render::restart_hash(&chain).expect("hash");
    chain.spec.dataplane.on_exit = crds::OnExit::Detach;
    assert_eq!(flag(&args(&chain)), "detach");
    assert_ne!(
        render::restart_hash(&chain).expect("hash"),
        keep_hash,
        "the flag is read at start: changing it rolls the pods"
    );
}
