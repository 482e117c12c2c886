//! The `VNFChain` custom resource: classifier, ordered functions, interfaces, data-plane settings and placement.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
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
    /// Where and how many data-plane pods run.
    #[serde(default)]
    pub placement: Placement,
    /// The non-IP frames (ARP, LLDP, ...) a chain with a firewall lets pass; it drops every other non-IP
    /// frame. A chain without a firewall passes all non-IP frames.
    // Omitted when the default, so specs that do not set it serialise (and hash) as before.
    #[serde(default, skip_serializing_if = "NonIp::is_default")]
    pub non_ip: NonIp,
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

    fn allow(list: &[&str]) -> NonIp {
        NonIp {
            allow: list.iter().map(|s| EtherType((*s).into())).collect(),
        }
    }

    #[test]
    fn non_ip_names_hex_and_refusals() {
        assert_eq!(NonIp::default().ether_types(), vec![0x0806]);
        assert!(NonIp::default().is_default());
        let ok = allow(&["lldp", "0x88b5", "arp", "eapol"]);
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert_eq!(ok.ether_types(), vec![0x88cc, 0x88b5, 0x0806, 0x888e]);
        assert!(allow(&[]).problems().is_empty());
        for (bad, says) in [
            ("0x0800", "IPv4, IPv6 and VLAN"),
            ("0x86dd", "IPv4, IPv6 and VLAN"),
            ("0x8100", "IPv4, IPv6 and VLAN"),
            ("0x88a8", "IPv4, IPv6 and VLAN"),
            ("0x9100", "IPv4, IPv6 and VLAN"),
            ("0x05dc", "802.3 length"),
            ("0x88CC", "not an EtherType"),
            ("88cc", "not an EtherType"),
            ("0x88c", "not an EtherType"),
            ("ipv4", "not an EtherType"),
            ("", "not an EtherType"),
        ] {
            let p = allow(&[bad]).problems();
            assert_eq!(p.len(), 1, "{bad:?}: {p:?}");
            assert_eq!(p[0].0, "spec.nonIp.allow[0]");
            assert!(p[0].1.contains(says), "{bad:?}: {}", p[0].1);
        }
        let dup = allow(&["arp", "0x0806"]).problems();
        assert_eq!(dup.len(), 1, "{dup:?}");
        assert_eq!(dup[0].0, "spec.nonIp.allow[1]");
        let nine = allow(&["0x9000"; 9]).problems();
        assert!(
            nine.iter()
                .any(|(p, m)| p == "spec.nonIp.allow" && m.contains("at most 8"))
        );
    }

    #[test]
    fn the_default_non_ip_is_not_serialised_and_is_read_back() {
        let spec: VNFChainSpec = serde_json::from_value(serde_json::json!({
            "functions": [{"name": "fw", "type": "firewall", "firewall": {"defaultAction": "deny"}}]
        }))
        .expect("spec");
        assert!(spec.non_ip.is_default());
        let v = serde_json::to_value(&spec).expect("json");
        assert!(v.get("nonIp").is_none(), "{v}");
        let set: VNFChainSpec = serde_json::from_value(serde_json::json!({
            "functions": [{"name": "fw", "type": "firewall", "firewall": {"defaultAction": "deny"}}],
            "nonIp": {"allow": ["lldp"]}
        }))
        .expect("spec");
        assert_eq!(set.non_ip.ether_types(), vec![0x88cc]);
        assert_eq!(
            serde_json::to_value(&set).expect("json")["nonIp"]["allow"][0],
            "lldp"
        );
    }

    /// The CRD (schema pattern, maxLength and the CEL rule's twin) refuses exactly the entries
    /// `EtherType::value` refuses, at the entry's path, and the IP/VLAN ones with the rule's message.
    #[test]
    fn the_crd_and_validate_agree_on_every_ether_type() {
        let mut values: Vec<String> = ETHER_TYPE_NAMES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        values.extend(IP_OR_VLAN_ETHER_TYPES.iter().map(|s| s.to_string()));
        values.extend(
            [
                "0x0600", "0x05ff", "0x0000", "0xffff", "0x88CC", "0x88c", "0x88ccc", "88cc",
                "ARP", "arp ", "", "0x8847", "lldpx",
            ]
            .map(String::from),
        );
        for v in values {
            let object = serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": "c"},
                "spec": {
                    "functions": [{"name": "fw", "type": "firewall", "firewall": {"defaultAction": "deny"}}],
                    "nonIp": {"allow": [v]}
                }
            });
            let crd = crate::schema::check(&object);
            let ours = EtherType(v.clone()).value();
            assert_eq!(
                crd.is_empty(),
                ours.is_ok(),
                "{v:?}: CRD {crd:?}, validate {ours:?}"
            );
            if let Some(e) = crd.first() {
                assert_eq!(e.path, "spec.nonIp.allow[0]", "{v:?}");
            }
            if IP_OR_VLAN_ETHER_TYPES.contains(&v.as_str()) {
                assert_eq!(crd[0].message, NON_IP_RULE_MESSAGE);
                assert_eq!(ours, Err(NON_IP_RULE_MESSAGE.to_string()));
            }
        }
    }
}
