//! What the operator reports about a chain: conditions, per-replica attachments, ready replicas.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vnfchain::Hook;

/// Condition type: every desired replica runs the current generation.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a generation is being rolled out or pushed.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: some replica failed to apply; the previous generation is kept there.
pub const CONDITION_DEGRADED: &str = "Degraded";
/// Condition type: the spec failed validation; nothing was changed.
pub const CONDITION_INVALID_SPEC: &str = "InvalidSpec";

/// Observed state of a `VNFChain`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VNFChainStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded` and `InvalidSpec`, with reasons and messages.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Data-plane pods that exist (not being deleted): the scale subresource's current replicas.
    #[serde(default)]
    pub replicas: i32,
    /// Replicas that report the current generation attached on every interface.
    #[serde(default)]
    pub ready_replicas: i32,
    /// What each replica actually attached, per interface.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The last generation every replica applied, kept so a failed update can roll back without guessing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_generation: Option<i64>,
    /// A generation that failed to apply and was rolled back; it is not pushed again until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_generation: Option<i64>,
    /// The chain's function names in order, comma-separated (`fw,nat,lb`): the `Functions` printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_names: Option<String>,
    /// Label selector of the chain's data-plane pods (`buildvnf.io/chain=NAME`), for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Sidecar mode: pods `spec.target` selects that run without the sidecar (created before the chain, or
    /// while injection was off), each with the command that rolls it. At most 50 are listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_injected: Vec<NotInjected>,
}

/// A selected pod without the sidecar, and how to give it one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotInjected {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub pod: String,
    /// The command that replaces it with an injected pod (`kubectl rollout restart` of its workload).
    pub command: String,
}

/// The kernel hook a replica actually got on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AttachedHook {
    /// XDP in the driver.
    Xdp,
    /// XDP generic (skb) mode.
    XdpGeneric,
    /// TC.
    Tc,
    /// Not attached.
    None,
}

impl From<Hook> for Option<AttachedHook> {
    fn from(h: Hook) -> Self {
        match h {
            Hook::Auto => None,
            Hook::Xdp => Some(AttachedHook::Xdp),
            Hook::XdpGeneric => Some(AttachedHook::XdpGeneric),
            Hook::Tc => Some(AttachedHook::Tc),
        }
    }
}

/// One replica's attachment to one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Pod name.
    pub pod: String,
    /// Node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Interface inside the pod.
    pub interface: String,
    /// The hook actually attached.
    pub hook: AttachedHook,
    /// Why the data plane fell back from the preferred hook, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The chain generation running there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// The last error of this replica on this interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
