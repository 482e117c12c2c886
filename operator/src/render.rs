//! Desired state as pure functions: a `VNFChain` → its Deployment, ConfigMap, Service, PodDisruptionBudget
//! and PodMonitor.
//!
//! Nothing here talks to the API server, so every object the operator applies is golden-tested.

use std::collections::BTreeMap;

use crds::{Dataplane, Interfaces, VNFChain};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource, KeyToPath,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::policy::ImagePolicy;
use crate::{Error, Result};

/// Port of the sidecar's gRPC control API.
pub const GRPC_PORT: i32 = 50051;
/// Port of the sidecar's `/metrics`, `/healthz` and `/readyz`.
pub const METRICS_PORT: i32 = 9090;
/// Key of the chain manifest in the ConfigMap.
pub const CONFIG_KEY: &str = "chain.yaml";
/// Where the sidecar finds the ConfigMap.
pub const CONFIG_DIR: &str = "/etc/buildvnf/config";
/// Where the sidecar finds its mTLS certificate, key and CA.
pub const TLS_DIR: &str = "/etc/buildvnf/tls";
/// Label that ties every owned object and pod to its chain.
pub const CHAIN_LABEL: &str = "buildvnf.io/chain";
/// Pod-template annotation whose change rolls the pods: a hash of the fields that need a restart.
pub const RESTART_HASH_ANNOTATION: &str = "buildvnf.io/restart-hash";
/// Annotation on the ConfigMap: the generation its chain manifest holds.
pub const GENERATION_ANNOTATION: &str = "buildvnf.io/generation";
/// Multus annotation for secondary networks.
pub const MULTUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// `app.kubernetes.io/managed-by` of every object the operator owns (the label selector of its watches).
pub const MANAGED_BY: &str = "buildvnf-operator";
/// Node label the pods of a chain with several replicas prefer to differ in.
pub const SPREAD_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";
/// Default image of the sidecar (the `--dataplane-image` default).
pub const DEFAULT_IMAGE: &str = "ghcr.io/build-vnf/cnf-dataplane:0.1.0";

/// Operator-wide settings that shape rendered objects.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image used when a chain does not name one.
    pub default_image: String,
    /// Host path of the BPF filesystem (pinned maps and links survive sidecar restarts there).
    pub bpffs_host_path: String,
    /// Whether the monitoring.coreos.com CRDs exist (a PodMonitor is rendered then).
    pub pod_monitor: bool,
    /// Images chains may name in `spec.dataplane.image`, besides `default_image`.
    pub allowed_images: ImagePolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_image: DEFAULT_IMAGE.into(),
            bpffs_host_path: "/sys/fs/bpf".into(),
            pod_monitor: false,
            allowed_images: ImagePolicy::default(),
        }
    }
}

/// Name shared by the Deployment, ConfigMap and Service of a chain.
pub fn object_name(chain: &VNFChain) -> Result<String> {
    let name = chain
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name"))?;
    Ok(format!("{name}-dataplane"))
}

/// Labels on every owned object and pod; the selector uses the subset that never changes.
pub fn labels(chain: &VNFChain) -> Result<BTreeMap<String, String>> {
    let name = chain
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    Ok(BTreeMap::from([
        ("app.kubernetes.io/name".into(), "cnf-dataplane".into()),
        ("app.kubernetes.io/instance".into(), name.clone()),
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        ("app.kubernetes.io/part-of".into(), "build-vnf".into()),
        (CHAIN_LABEL.into(), name),
    ]))
}

/// The label selector of a chain's pods, as a string for list calls.
pub fn pod_selector(chain: &VNFChain) -> Result<String> {
    let name = chain
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name"))?;
    Ok(format!("{CHAIN_LABEL}={name}"))
}

/// The pods of a chain, as a label selector object (the Deployment's, the PDB's and the anti-affinity's).
fn pod_label_selector(chain: &VNFChain) -> Result<LabelSelector> {
    let name = chain
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    Ok(LabelSelector {
        match_labels: Some(BTreeMap::from([(CHAIN_LABEL.to_string(), name)])),
        ..LabelSelector::default()
    })
}

fn owner(chain: &VNFChain) -> Result<OwnerReference> {
    chain
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))
}

fn meta(chain: &VNFChain) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(object_name(chain)?),
        namespace: chain.metadata.namespace.clone(),
        labels: Some(labels(chain)?),
        owner_references: Some(vec![owner(chain)?]),
        ..ObjectMeta::default()
    })
}

/// The chain manifest the sidecar reads at start: `chain` as of `generation`, with only what identifies it.
pub fn chain_manifest(chain: &VNFChain) -> Result<String> {
    let mut doc = VNFChain::new(
        chain
            .metadata
            .name
            .as_deref()
            .ok_or(Error::MissingField("metadata.name"))?,
        chain.spec.clone(),
    );
    doc.metadata.namespace = chain.metadata.namespace.clone();
    doc.metadata.generation = chain.metadata.generation;
    crds::manifest::to_yaml(&doc).map_err(|e| Error::Render(e.to_string()))
}

/// The ConfigMap holding the last generation every replica applied (new pods start from it; rollbacks go to it).
pub fn config_map(owner_chain: &VNFChain, known_good: &VNFChain) -> Result<ConfigMap> {
    let mut m = meta(owner_chain)?;
    m.annotations = Some(BTreeMap::from([(
        GENERATION_ANNOTATION.into(),
        known_good
            .metadata
            .generation
            .unwrap_or_default()
            .to_string(),
    )]));
    Ok(ConfigMap {
        metadata: m,
        data: Some(BTreeMap::from([(
            CONFIG_KEY.into(),
            chain_manifest(known_good)?,
        )])),
        ..ConfigMap::default()
    })
}

/// Hash of the spec fields a running sidecar cannot change in place: image, resources, interfaces, the
/// hook/back end it attached with, what it does on exit, and the user-space functions (their AF_XDP workers and keys are set up at
/// start). Rule, parameter and composition changes of kernel functions are pushed over gRPC instead.
pub fn restart_hash(chain: &VNFChain) -> Result<String> {
    #[derive(serde::Serialize)]
    struct NeedsRestart<'a> {
        interfaces: &'a Interfaces,
        image: &'a Option<String>,
        resources: &'a Option<k8s_openapi::api::core::v1::ResourceRequirements>,
        hook: &'a crds::Hook,
        on_exit: crds::OnExit,
        userspace: &'a crds::Userspace,
        userspace_functions: Vec<&'a crds::Function>,
    }
    let d: &Dataplane = &chain.spec.dataplane;
    let bytes = serde_json::to_vec(&NeedsRestart {
        interfaces: &chain.spec.interfaces,
        image: &d.image,
        resources: &d.resources,
        hook: &d.hook,
        on_exit: d.on_exit,
        userspace: &d.userspace,
        userspace_functions: chain
            .spec
            .functions
            .iter()
            .filter(|f| f.effective_tier() == crds::Tier::Userspace)
            .collect(),
    })
    .map_err(|e| Error::Render(e.to_string()))?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// One read-only Secret volume per Secret that user-space functions take keys from, projecting only the
/// keys they name, mounted at `KEY_SECRETS_DIR/<secret>` (the sidecar reads
/// [`crds::SecretKeyRef::mounted_path`]).
fn key_secret_volumes(chain: &VNFChain, volume_prefix: &str) -> Vec<(VolumeMount, Volume)> {
    let mut keys: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for f in &chain.spec.functions {
        if let Some(c) = &f.payload_cipher {
            keys.entry(c.key_secret_ref.name.as_str())
                .or_default()
                .insert(c.key_secret_ref.key.as_str());
        }
    }
    keys.into_iter()
        .enumerate()
        .map(|(i, (secret, keys))| {
            let name = format!("{volume_prefix}key-secret-{i}");
            let mount = volume_mount(&name, &format!("{}/{secret}", crds::KEY_SECRETS_DIR), true);
            let volume = Volume {
                name,
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.into()),
                    items: Some(
                        keys.into_iter()
                            .map(|k| KeyToPath {
                                key: k.into(),
                                path: k.into(),
                                ..KeyToPath::default()
                            })
                            .collect(),
                    ),
                    default_mode: Some(0o400),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            };
            (mount, volume)
        })
        .collect()
}

fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn volume_mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// The cnf-dataplane container of a chain and the volumes it mounts, with least privilege: CAP_BPF,
/// CAP_NET_ADMIN and CAP_PERFMON, every other capability dropped, not privileged, read-only root filesystem.
/// The same container runs in a dedicated pod ([`deployment`]) and, injected by the webhook, in a workload
/// pod (webhook.rs), where `volume_prefix` keeps its volume names apart from the workload's.
pub fn dataplane_container(
    chain: &VNFChain,
    settings: &Settings,
    volume_prefix: &str,
) -> Result<(Container, Vec<Volume>)> {
    let spec = &chain.spec;
    let key_secrets = key_secret_volumes(chain, volume_prefix);
    let container = Container {
        name: "cnf-dataplane".into(),
        image: Some(
            spec.dataplane
                .image
                .clone()
                .unwrap_or_else(|| settings.default_image.clone()),
        ),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
            "--grpc-listen".into(),
            format!("0.0.0.0:{GRPC_PORT}"),
            "--metrics-listen".into(),
            format!("0.0.0.0:{METRICS_PORT}"),
            "--tls-dir".into(),
            TLS_DIR.into(),
            // A killed or crashing sidecar leaves the chain attached by default (fail closed).
            "--on-exit".into(),
            spec.dataplane.on_exit.as_flag().into(),
        ]),
        env: Some(vec![
            env_from_field("POD_NAME", "metadata.name"),
            env_from_field("POD_NAMESPACE", "metadata.namespace"),
            env_from_field("NODE_NAME", "spec.nodeName"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("grpc".into()),
                container_port: GRPC_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        resources: spec.dataplane.resources.clone(),
        liveness_probe: Some(http_probe("/healthz", 10)),
        readiness_probe: Some(http_probe("/readyz", 2)),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            // Capabilities added to a non-root user are not effective without ambient capabilities, which
            // Kubernetes cannot grant; the process is uid 0 with only these three capabilities.
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["BPF".into(), "NET_ADMIN".into(), "PERFMON".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(
            [
                volume_mount(&format!("{volume_prefix}config"), CONFIG_DIR, true),
                volume_mount(&format!("{volume_prefix}tls"), TLS_DIR, true),
                volume_mount(&format!("{volume_prefix}bpffs"), "/sys/fs/bpf", false),
                volume_mount(&format!("{volume_prefix}tmp"), "/tmp", false),
            ]
            .into_iter()
            .chain(key_secrets.iter().map(|(m, _)| m.clone()))
            .collect(),
        ),
        ..Container::default()
    };
    let mut volumes = vec![
        Volume {
            name: format!("{volume_prefix}config"),
            config_map: Some(ConfigMapVolumeSource {
                name: object_name(chain)?,
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: format!("{volume_prefix}tls"),
            secret: Some(SecretVolumeSource {
                // The chain's own serving certificate (certs.rs).
                secret_name: Some(crate::certs::chain_secret_name(
                    chain
                        .metadata
                        .name
                        .as_deref()
                        .ok_or(Error::MissingField("metadata.name"))?,
                )),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: format!("{volume_prefix}bpffs"),
            host_path: Some(HostPathVolumeSource {
                path: settings.bpffs_host_path.clone(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Volume::default()
        },
        Volume {
            name: format!("{volume_prefix}tmp"),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    volumes.extend(key_secrets.into_iter().map(|(_, v)| v));
    Ok((container, volumes))
}

/// The Deployment running the cnf-dataplane sidecar with least privilege: CAP_BPF, CAP_NET_ADMIN and
/// CAP_PERFMON, every other capability dropped, not privileged, read-only root filesystem.
pub fn deployment(chain: &VNFChain, settings: &Settings) -> Result<Deployment> {
    let spec = &chain.spec;
    let labels = labels(chain)?;
    let mut annotations =
        BTreeMap::from([(RESTART_HASH_ANNOTATION.to_string(), restart_hash(chain)?)]);
    if !spec.interfaces.secondary_networks.is_empty() {
        let nets: Vec<_> = spec
            .interfaces
            .secondary_networks
            .iter()
            .map(|n| {
                let mut v = json!({"name": n.name, "interface": n.interface.as_str()});
                if let Some(ns) = &n.namespace {
                    v["namespace"] = json!(ns);
                }
                v
            })
            .collect();
        annotations.insert(
            MULTUS_ANNOTATION.into(),
            serde_json::Value::Array(nets).to_string(),
        );
    }
    let (container, volumes) = dataplane_container(chain, settings, "")?;
    let placement = &spec.placement;
    Ok(Deployment {
        metadata: meta(chain)?,
        spec: DeploymentSpec {
            replicas: Some(placement.replicas),
            selector: pod_label_selector(chain)?,
            // One pod at a time, never below the desired count: the chain keeps forwarding during a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    node_selector: (!placement.node_selector.is_empty())
                        .then(|| placement.node_selector.clone()),
                    tolerations: (!placement.tolerations.is_empty())
                        .then(|| placement.tolerations.clone()),
                    affinity: spread(chain)?,
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(10),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    })
}

/// With two replicas or more, the pods prefer different nodes (preferred, not required: a one-node cluster
/// still runs every replica); one replica has no affinity.
fn spread(chain: &VNFChain) -> Result<Option<Affinity>> {
    if chain.spec.placement.replicas < 2 {
        return Ok(None);
    }
    Ok(Some(Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(pod_label_selector(chain)?),
                        topology_key: SPREAD_TOPOLOGY_KEY.into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }))
}

/// For two replicas or more, a PodDisruptionBudget letting voluntary disruptions (node drains, evictions)
/// take one pod at a time; `None` for one replica (a budget there would only block drains or allow all).
/// Pods that are not ready may always be evicted (`unhealthyPodEvictionPolicy: AlwaysAllow`): they forward
/// nothing, and a crash-looping pod must not block a node drain.
pub fn pod_disruption_budget(chain: &VNFChain) -> Result<Option<PodDisruptionBudget>> {
    if chain.spec.placement.replicas < 2 {
        return Ok(None);
    }
    Ok(Some(PodDisruptionBudget {
        metadata: meta(chain)?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(pod_label_selector(chain)?),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }))
}

/// A headless Service: per-pod DNS for gRPC, and a target for metrics scraping.
pub fn service(chain: &VNFChain) -> Result<Service> {
    let port = |name: &str, p: i32| ServicePort {
        name: Some(name.into()),
        port: p,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    Ok(Service {
        metadata: meta(chain)?,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: pod_label_selector(chain)?.match_labels,
            ports: Some(vec![port("grpc", GRPC_PORT), port("metrics", METRICS_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The Prometheus Operator's PodMonitor kind.
pub fn pod_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor"),
        "podmonitors",
    )
}

/// A PodMonitor scraping the sidecars' `/metrics` (rendered only when its CRD exists).
pub fn pod_monitor(chain: &VNFChain) -> Result<DynamicObject> {
    pod_monitor_in(chain, &[])
}

/// [`pod_monitor`], also scraping the chain's pods in `others` (sidecar mode: the other namespaces its
/// `namespaceSelector` selects). A PodMonitor selects pods of its own namespace unless its
/// `namespaceSelector.matchNames` lists namespaces (Prometheus Operator API,
/// <https://prometheus-operator.dev/docs/api-reference/api/#monitoring.coreos.com/v1.PodMonitorSpec>).
pub fn pod_monitor_in(chain: &VNFChain, others: &[String]) -> Result<DynamicObject> {
    let ar = pod_monitor_resource();
    let mut obj = DynamicObject::new(&object_name(chain)?, &ar);
    obj.metadata = meta(chain)?;
    obj.data = json!({
        "spec": {
            "selector": {"matchLabels": {CHAIN_LABEL: chain.metadata.name}},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
        }
    });
    if !others.is_empty() {
        let mut names: Vec<String> = chain.metadata.namespace.iter().cloned().collect();
        names.extend(others.iter().cloned());
        obj.data["spec"]["namespaceSelector"] = json!({"matchNames": names});
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_monitor_reaches_the_other_selected_namespaces() {
        let mut chain = crds::manifest::parse_single_chain(
            "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata: {name: guard, namespace: sec}\nspec:\n  target: {podSelector: {matchLabels: {app: web}}}\n  functions: [{name: m, type: monitor, monitor: {}}]\n",
        )
        .expect("chain");
        chain.metadata.uid = Some("u".into());
        let own = pod_monitor(&chain).expect("monitor");
        assert!(own.data["spec"].get("namespaceSelector").is_none());
        let wide = pod_monitor_in(&chain, &["shop".into(), "web".into()]).expect("monitor");
        assert_eq!(
            wide.data["spec"]["namespaceSelector"],
            json!({"matchNames": ["sec", "shop", "web"]})
        );
        assert_eq!(wide.data["spec"]["selector"], own.data["spec"]["selector"]);
    }
}
