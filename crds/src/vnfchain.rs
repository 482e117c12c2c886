//! The `VNFChain` custom resource: classifier, ordered functions, interfaces, data-plane settings and placement.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::functions::{Function, TrafficMatch};
use crate::net::InterfaceName;
use crate::status::VNFChainStatus;

/// API group of build-vnf's resources.
pub const GROUP: &str = "buildvnf.io";
/// API version of `VNFChain`.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "buildvnf.io/v1alpha1";
/// Kind of the chain resource.
pub const KIND: &str = "VNFChain";
/// Longest chain name: the operator derives object names (`<name>-dataplane-<hash>`) from it.
pub const MAX_NAME_LEN: usize = 48;

/// A chain of network functions applied to the traffic a classifier selects on the pod's interfaces.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[kube(
    group = "buildvnf.io",
    version = "v1alpha1",
    kind = "VNFChain",
    plural = "vnfchains",
    singular = "vnfchain",
    shortname = "vnfc",
    category = "buildvnf",
    namespaced,
    status = "VNFChainStatus",
    derive = "PartialEq",
    doc = "A chain of network functions (firewall, NAT, load balancer, rate limiter, monitor, forwarder, user-space functions) run as eBPF and AF_XDP by the cnf-dataplane sidecar.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 48").message("metadata.name must be at most 48 characters (object names are derived from it)"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.readyReplicas"),
    // The API server prints only the first match of a JSONPath, so the list is a status field the operator fills.
    printcolumn(name = "Functions", type_ = "string", json_path = ".status.functionNames"),
    printcolumn(name = "Hook", type_ = "string", json_path = ".spec.dataplane.hook"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // `kubectl scale vnfchain/NAME --replicas N` and autoscalers set `spec.placement.replicas`.
    scale(
        spec_replicas_path = ".spec.placement.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("self.functions.filter(f, f.type == 'forwarder').size() <= 1").message("a chain has at most one forwarder").field_path(".functions"))]
#[x_kube(validation = kube::core::Rule::new("self.functions.all(f, f.type != 'forwarder' || f.name == self.functions[size(self.functions) - 1].name)").message("the forwarder must be the last function of the chain").field_path(".functions"))]
#[x_kube(validation = kube::core::Rule::new(TARGET_EXCLUDES_PLACEMENT_RULE).message(TARGET_EXCLUDES_PLACEMENT).field_path(".placement"))]
#[x_kube(validation = kube::core::Rule::new(TARGET_EXCLUDES_NETWORKS_RULE).message(TARGET_EXCLUDES_NETWORKS).field_path(".interfaces.secondaryNetworks"))]
pub struct VNFChainSpec {
    /// Which traffic enters the chain; the rest bypasses it untouched.
    #[serde(default)]
    pub classifier: TrafficMatch,
    /// The functions, in the order packets traverse them. Names are unique.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub functions: Vec<Function>,
    /// The pod interfaces the chain is attached to.
    #[serde(default)]
    pub interfaces: Interfaces,
    /// How the data plane runs the chain.
    #[serde(default)]
    pub dataplane: Dataplane,
    /// Where and how many data-plane pods run (dedicated mode; not with `target`).
    #[serde(default)]
    pub placement: Placement,
    /// The non-IP frames (ARP, LLDP, ...) a chain with a firewall lets pass; it drops every other non-IP
    /// frame. A chain without a firewall passes all non-IP frames.
    // Omitted when the default, so specs that do not set it serialise (and hash) as before.
    #[serde(default, skip_serializing_if = "NonIp::is_default")]
    pub non_ip: NonIp,
    /// Sidecar mode: the workload pods the chain runs in. The operator's admission webhook adds the
    /// cnf-dataplane container to each selected pod as it is created, and the chain is attached to the pod's
    /// own interfaces (`interfaces.ingress`, the pod's `eth0` by default). Without it (dedicated mode) the
    /// chain runs in data-plane pods of its own (`placement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

/// CEL rule: `spec.target` and a non-default `spec.placement` are mutually exclusive (`placement` is always
/// present on the API server, which fills in its defaults, so "set" means "differs from the defaults").
pub const TARGET_EXCLUDES_PLACEMENT_RULE: &str = "!has(self.target) || !has(self.placement) || ((!has(self.placement.replicas) || self.placement.replicas == 1) && (!has(self.placement.nodeSelector) || size(self.placement.nodeSelector) == 0) && (!has(self.placement.tolerations) || size(self.placement.tolerations) == 0))";
/// Message of [`TARGET_EXCLUDES_PLACEMENT_RULE`], the same at every door (API server, `validate()`).
pub const TARGET_EXCLUDES_PLACEMENT: &str = "spec.target (sidecar mode: the chain runs in the selected pods) and spec.placement (dedicated data-plane pods) are mutually exclusive: remove spec.placement";
/// CEL rule: a sidecar-mode chain cannot add Multus networks to the pods it is injected into.
pub const TARGET_EXCLUDES_NETWORKS_RULE: &str = "!has(self.target) || !has(self.interfaces) || !has(self.interfaces.secondaryNetworks) || size(self.interfaces.secondaryNetworks) == 0";
/// Message of [`TARGET_EXCLUDES_NETWORKS_RULE`].
pub const TARGET_EXCLUDES_NETWORKS: &str = "a chain with spec.target runs in the selected pods' own network namespace and cannot add networks to them: remove spec.interfaces.secondaryNetworks";
/// CEL rule on `spec.target`: the pod selector is not empty.
pub const TARGET_SELECTS_SOMETHING_RULE: &str = "(has(self.podSelector.matchLabels) && size(self.podSelector.matchLabels) > 0) || (has(self.podSelector.matchExpressions) && size(self.podSelector.matchExpressions) > 0)";
/// Message of [`TARGET_SELECTS_SOMETHING_RULE`].
pub const TARGET_SELECTS_SOMETHING: &str = "podSelector must name at least one label: an empty selector would put the chain into every pod of the namespace";

/// The workload pods of a sidecar-mode chain (`spec.target`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new(TARGET_SELECTS_SOMETHING_RULE).message(TARGET_SELECTS_SOMETHING).field_path(".podSelector"))]
pub struct Target {
    /// Labels of the pods the chain runs in (not empty).
    pub pod_selector: LabelSelector,
    /// Labels of the namespaces whose pods are selected; the chain's own namespace when omitted. A pod of
    /// another namespace uses the chain of this namespace only if that namespace also opts in to injection
    /// (docs/sidecar.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

impl Target {
    /// Whether a pod with `pod_labels` in a namespace named `namespace` with `ns_labels` is selected by the
    /// chain living in `chain_namespace`.
    pub fn selects(
        &self,
        chain_namespace: &str,
        namespace: &str,
        ns_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
    ) -> bool {
        let ns_ok = match &self.namespace_selector {
            None => namespace == chain_namespace,
            Some(sel) => selector_matches(sel, ns_labels),
        };
        ns_ok && selector_matches(&self.pod_selector, pod_labels)
    }
}

/// Whether `labels` satisfy `selector`, with the semantics of Kubernetes' `LabelSelectorAsSelector`
/// (<https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#resources-that-support-set-based-requirements>):
/// every `matchLabels` pair and every `matchExpressions` requirement must hold (`In`: the label exists with one
/// of the values; `NotIn`: absent or none of the values; `Exists`; `DoesNotExist`). An unknown operator
/// matches nothing (`validate()` refuses it before a selector is ever used).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    pairs
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|r| requirement_holds(r, labels))
}

fn requirement_holds(r: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Non-IP frames a filtering chain (one with a firewall) lets pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NonIp {
    /// EtherTypes (after any VLAN tags) that pass every firewall of the chain, whatever its rules and
    /// default action: names (`arp`, `rarp`, `lldp`, `lacp`, `eapol`, `ptp`) or a lower-case hex EtherType
    /// such as `"0x88cc"`. IPv4, IPv6 and VLAN EtherTypes are refused (IP is judged by the rules; tags are
    /// walked). Every other non-IP frame is dropped (drop reason `non_ip`). Default: `[arp]`; `[]` drops
    /// ARP too.
    #[serde(default = "default_non_ip_allow")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub allow: Vec<EtherType>,
}

fn default_non_ip_allow() -> Vec<EtherType> {
    vec![EtherType("arp".into())]
}

impl Default for NonIp {
    fn default() -> Self {
        Self {
            allow: default_non_ip_allow(),
        }
    }
}

impl NonIp {
    /// Whether this is the default, `[arp]`.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Longest list.
    pub const MAX_ITEMS: usize = 8;

    /// The EtherTypes, in order (invalid entries left out: see [`NonIp::problems`]).
    pub fn ether_types(&self) -> Vec<u16> {
        self.allow.iter().filter_map(|e| e.value().ok()).collect()
    }

    /// What is wrong with the list, as (field path under `spec`, message): the bound, each entry's value,
    /// and duplicates (by value: `arp` and `"0x0806"` are one EtherType).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.allow.len() > Self::MAX_ITEMS {
            out.push((
                "spec.nonIp.allow".to_string(),
                format!(
                    "at most {} EtherTypes, got {}",
                    Self::MAX_ITEMS,
                    self.allow.len()
                ),
            ));
        }
        let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
        for (i, e) in self.allow.iter().enumerate() {
            let path = format!("spec.nonIp.allow[{i}]");
            match e.value() {
                Err(m) => out.push((path, m)),
                Ok(v) => {
                    if let Some(first) = seen.insert(v, i) {
                        out.push((
                            path,
                            format!(
                                "duplicate EtherType {v:#06x} (also spec.nonIp.allow[{first}])"
                            ),
                        ));
                    }
                }
            }
        }
        out
    }
}

/// A non-IP EtherType by name or as lower-case hex (`"0x88cc"`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EtherType(pub String);

/// The EtherType names `spec.nonIp.allow` accepts, and their values.
pub const ETHER_TYPE_NAMES: [(&str, u16); 6] = [
    ("arp", 0x0806),
    ("rarp", 0x8035),
    ("lldp", 0x88cc),
    ("lacp", 0x8809),
    ("eapol", 0x888e),
    ("ptp", 0x88f7),
];

/// EtherTypes that are not "non-IP": IPv4, IPv6 and the VLAN TPIDs the data plane walks.
pub const IP_OR_VLAN_ETHER_TYPES: [&str; 5] = ["0x0800", "0x86dd", "0x8100", "0x88a8", "0x9100"];

impl EtherType {
    /// The EtherType's value: a known name or `0x` and four lower-case hex digits, at least `0x0600` (below
    /// is an 802.3 length), not IPv4, IPv6 or a VLAN tag. The same check as the schema's pattern and rule.
    pub fn value(&self) -> Result<u16, String> {
        let s = self.0.as_str();
        if let Some((_, v)) = ETHER_TYPE_NAMES.iter().find(|(n, _)| *n == s) {
            return Ok(*v);
        }
        let names: Vec<&str> = ETHER_TYPE_NAMES.iter().map(|(n, _)| *n).collect();
        let hex = s
            .strip_prefix("0x")
            .filter(|h| h.len() == 4 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .and_then(|h| u16::from_str_radix(h, 16).ok());
        match hex {
            None => Err(format!(
                "{s:?} is not an EtherType: use one of {} or lower-case hex like \"0x88cc\"",
                names.join(", ")
            )),
            Some(v) if v < 0x0600 => Err(format!(
                "{s:?} is an 802.3 length, not an EtherType (EtherTypes start at 0x0600)"
            )),
            Some(_) if IP_OR_VLAN_ETHER_TYPES.contains(&s) => Err(NON_IP_RULE_MESSAGE.to_string()),
            Some(v) => Ok(v),
        }
    }
}

/// The message of the CRD rule that refuses IP and VLAN EtherTypes in `spec.nonIp.allow`.
pub const NON_IP_RULE_MESSAGE: &str =
    "IPv4, IPv6 and VLAN EtherTypes cannot be listed: IP traffic is judged by the firewall rules";

impl JsonSchema for EtherType {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("EtherType")
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": 6,
            "pattern": "^(arp|rarp|lldp|lacp|eapol|ptp|0x(0[6-9a-f][0-9a-f]{2}|[1-9a-f][0-9a-f]{3}))$",
            "x-kubernetes-validations": [{
                "rule": "!(self in ['0x0800', '0x86dd', '0x8100', '0x88a8', '0x9100'])",
                "message": NON_IP_RULE_MESSAGE,
            }],
        })
    }
}

/// The pod interfaces of the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Interfaces {
    /// Interface traffic arrives on.
    #[serde(default = "default_ingress")]
    pub ingress: InterfaceName,
    /// Interface traffic leaves by, when it differs from ingress (two-armed chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<InterfaceName>,
    /// Extra networks attached to the pod by Multus.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub secondary_networks: Vec<SecondaryNetwork>,
}

fn default_ingress() -> InterfaceName {
    InterfaceName::from("eth0")
}

impl Default for Interfaces {
    fn default() -> Self {
        Self {
            ingress: default_ingress(),
            egress: None,
            secondary_networks: Vec::new(),
        }
    }
}

/// A Multus NetworkAttachmentDefinition to attach, and the interface name it gets in the pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecondaryNetwork {
    /// Name of the NetworkAttachmentDefinition.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; defaults to the chain's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// Interface name inside the pod.
    pub interface: InterfaceName,
}

/// Where the kernel-tier programs attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Hook {
    /// XDP native, falling back to XDP generic, then TC; the status tells which one was attached and why.
    #[default]
    Auto,
    /// XDP in the driver only (fail if unsupported).
    Xdp,
    /// XDP generic (skb) mode.
    XdpGeneric,
    /// TC (tcx or clsact ingress).
    Tc,
}

/// Back end of the user-space tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UserspaceBackend {
    /// AF_XDP sockets fed by the chain's XSKMAP redirect.
    #[default]
    Afxdp,
    /// DPDK with an af_xdp/af_packet virtual device (needs a dataplane image built with DPDK).
    Dpdk,
}

/// How user-space workers wait for packets: the latency versus CPU trade-off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Polling {
    /// Spin on the rings: lowest latency, one core at 100%.
    BusyPoll,
    /// Spin while traffic flows, back off to sleeping when idle.
    #[default]
    Adaptive,
    /// Sleep until the kernel wakes the socket: least CPU, highest latency.
    Wakeup,
}

/// Settings of the user-space tier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Userspace {
    /// Packet I/O back end.
    #[serde(default)]
    pub backend: UserspaceBackend,
    /// Polling policy.
    #[serde(default)]
    pub polling: Polling,
}

/// Telemetry the data plane collects in the kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Telemetry {
    /// Per-function and whole-chain latency histograms.
    #[serde(default = "default_true")]
    pub latency_histograms: bool,
    /// Time one packet in N (1 times every packet). The default, 64, keeps the histograms'
    /// cost within a few percent of the chain's; timing every packet reads the clock once per
    /// function per packet (tens of nanoseconds each on a VM).
    #[serde(default = "default_sample_one_in")]
    #[schemars(range(min = 1, max = 65536), extend("format" = "int32"))]
    pub sample_one_in: u32,
}

fn default_true() -> bool {
    true
}

fn default_sample_one_in() -> u32 {
    64
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            latency_histograms: true,
            sample_one_in: default_sample_one_in(),
        }
    }
}

/// What the data-plane sidecar does with the chain when it exits (crash, kill, rollout, eviction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnExit {
    /// Leave the programs attached and the maps pinned: the interface stays filtered while no sidecar
    /// runs, and the next sidecar re-adopts the chain (fail closed).
    #[default]
    Keep,
    /// Detach the programs: traffic flows unfiltered until a sidecar attaches the chain again.
    Detach,
}

impl OnExit {
    /// Whether this is the default, `keep`.
    pub fn is_keep(&self) -> bool {
        *self == OnExit::Keep
    }

    /// The value of the sidecar's `--on-exit` flag.
    pub fn as_flag(self) -> &'static str {
        match self {
            OnExit::Keep => "keep",
            OnExit::Detach => "detach",
        }
    }
}

/// How the data plane runs the chain.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dataplane {
    /// Attach point of the kernel tier.
    #[serde(default)]
    pub hook: Hook,
    /// The user-space tier.
    #[serde(default)]
    pub userspace: Userspace,
    /// cnf-dataplane image; defaults to the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Resources of the data-plane container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// In-kernel telemetry.
    #[serde(default)]
    pub telemetry: Telemetry,
    /// What the sidecar does with the chain when it exits: `keep` (the default) leaves it attached, so a
    /// killed or crashing sidecar never leaves the interface unfiltered; `detach` removes it.
    // Omitted when `keep`, so manifests of chains that do not set it still parse in older sidecars.
    #[serde(default, skip_serializing_if = "OnExit::is_keep")]
    pub on_exit: OnExit,
}

/// Where and how many data-plane pods run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// Number of data-plane pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Node labels the pods must match.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
}

fn default_replicas() -> i32 {
    1
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn scale_subresource_and_functions_column_point_at_fields_that_exist() {
        let crd = VNFChain::crd();
        let v = &crd.spec.versions[0];
        let scale = v
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.placement.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let column = v
            .additional_printer_columns
            .iter()
            .flatten()
            .find(|c| c.name == "Functions")
            .expect("Functions column");
        assert_eq!(column.json_path, ".status.functionNames");
        assert!(
            !column.json_path.contains("[*]"),
            "the API server prints only the first match"
        );

        // Each path names a field of the schema, with the type the API server requires.
        let schema = serde_json::to_value(
            v.schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("encode");
        let field = |path: &str| {
            let mut node = &schema;
            for part in path.trim_start_matches('.').split('.') {
                node = &node["properties"][part];
            }
            node["type"].as_str().map(str::to_string)
        };
        assert_eq!(field(&scale.spec_replicas_path).as_deref(), Some("integer"));
        assert_eq!(
            field(&scale.status_replicas_path).as_deref(),
            Some("integer")
        );
        assert_eq!(field(".status.selector").as_deref(), Some("string"));
        assert_eq!(field(".status.functionNames").as_deref(), Some("string"));
        assert_eq!(field(".spec.dataplane.onExit").as_deref(), Some("string"));
    }

    /// The target rules as the API server's CEL evaluates them (kube's evaluator on the generated schema, the
    /// object defaulted as the API server defaults it) and as their Rust twins do: same verdicts, paths and
    /// messages, on documents built to sit at and across each rule's edges.
    #[test]
    fn target_rules_and_their_twins_agree() {
        let crd = VNFChain::crd();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("encode");
        let compiled = kube::core::cel::compile_schema(&schema);
        let sel = serde_json::json!({"matchLabels": {"app": "web"}});
        let specs = [
            serde_json::json!({}),
            serde_json::json!({"target": {"podSelector": sel}}),
            serde_json::json!({"target": {"podSelector": {}}}),
            serde_json::json!({"target": {"podSelector": {"matchLabels": {}}}}),
            serde_json::json!({"target": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}}),
            serde_json::json!({"target": {"podSelector": sel}, "placement": {"replicas": 1}}),
            serde_json::json!({"target": {"podSelector": sel}, "placement": {"replicas": 3}}),
            serde_json::json!({"target": {"podSelector": sel}, "placement": {"nodeSelector": {"a": "b"}}}),
            serde_json::json!({"target": {"podSelector": sel}, "placement": {"tolerations": [{"operator": "Exists"}]}}),
            serde_json::json!({"placement": {"replicas": 3}}),
            serde_json::json!({"target": {"podSelector": sel}, "interfaces": {"secondaryNetworks": []}}),
            serde_json::json!({"target": {"podSelector": sel},
                "interfaces": {"secondaryNetworks": [{"name": "n", "interface": "net1"}]}}),
            serde_json::json!({"target": {"podSelector": {}}, "placement": {"replicas": 2},
                "interfaces": {"secondaryNetworks": [{"name": "n", "interface": "net1"}]}}),
        ];
        let mut refused = 0;
        for mut spec in specs {
            spec["functions"] =
                serde_json::json!([{"name": "m", "type": "monitor", "monitor": {}}]);
            let object = crate::schema::as_the_api_server_sees_it(&serde_json::json!({
                "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "c"}, "spec": spec,
            }));
            let mut cel = testkit::fixtures::cel_errors(&compiled, &object);
            let mut twins: Vec<(String, String)> = crate::schema::check_rules(&object)
                .into_iter()
                .map(|e| (e.path, e.message))
                .collect();
            cel.sort();
            twins.sort();
            assert_eq!(cel, twins, "{spec}");
            refused += usize::from(!cel.is_empty());
        }
        assert_eq!(refused, 7, "the documents across the edges are refused");
    }

    #[test]
    fn target_selects_like_a_label_selector() {
        let t: Target = serde_json::from_value(serde_json::json!({
            "podSelector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]},
                                     {"key": "skip", "operator": "DoesNotExist"}]},
        }))
        .expect("target");
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let none = BTreeMap::new();
        assert!(t.selects("shop", "shop", &none, &l(&[("app", "web")])));
        assert!(t.selects("shop", "shop", &none, &l(&[("app", "web"), ("tier", "fe")])));
        assert!(!t.selects("shop", "shop", &none, &l(&[("app", "web"), ("tier", "db")])));
        assert!(!t.selects("shop", "shop", &none, &l(&[("app", "web"), ("skip", "")])));
        assert!(!t.selects("shop", "shop", &none, &l(&[("app", "api")])));
        assert!(
            !t.selects("shop", "other", &none, &l(&[("app", "web")])),
            "own namespace only"
        );
        let mut t2 = t.clone();
        t2.namespace_selector = Some(
            serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}))
            .expect("sel"),
        );
        assert!(t2.selects("shop", "other", &l(&[("team", "b")]), &l(&[("app", "web")])));
        assert!(!t2.selects("shop", "shop", &l(&[("team", "c")]), &l(&[("app", "web")])));
        let bad: Target = serde_json::from_value(serde_json::json!({
            "podSelector": {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["web"]}]}}))
        .expect("target");
        assert!(
            !bad.selects("shop", "shop", &none, &l(&[("app", "web")])),
            "an unknown operator matches nothing"
        );
    }

    #[test]
    fn on_exit_defaults_to_keep_and_maps_to_the_sidecar_flag() {
        let d: Dataplane = serde_json::from_value(serde_json::json!({})).expect("empty dataplane");
        assert_eq!(d.on_exit, OnExit::Keep);
        assert_eq!(d.on_exit.as_flag(), "keep");
        let d: Dataplane =
            serde_json::from_value(serde_json::json!({"onExit": "detach"})).expect("detach");
        assert_eq!(d.on_exit.as_flag(), "detach");
        assert!(
            serde_json::from_value::<Dataplane>(serde_json::json!({"onExit": "Keep"})).is_err()
        );
        assert!(
            serde_json::from_value::<Dataplane>(serde_json::json!({"onExit": "stay"})).is_err()
        );
    }
}
