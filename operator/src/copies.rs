//! Sidecar mode across namespaces (issue 18): copies of what an injected pod mounts, in every other
//! namespace a chain's `spec.target.namespaceSelector` selects.
//!
//! A pod can mount only ConfigMaps and Secrets of its own namespace
//! (<https://kubernetes.io/docs/concepts/storage/volumes/#configmap>, "you must create a ConfigMap before you can
//! use it" in the pod's namespace; likewise Secrets), and the injected `cnf-dataplane` mounts the chain's
//! ConfigMap `<chain>-dataplane`, its TLS Secret `<chain>-dataplane-tls` and the key Secrets of user-space
//! functions, all in the chain's namespace. So the operator copies them into each selected namespace:
//!
//! - **Which namespaces**: those labelled `buildvnf.io/injection=enabled` (the webhook is called only there)
//!   whose labels the chain's `namespaceSelector` matches, other than the chain's own, not being deleted.
//! - **Names**: `<original>.<chain namespace>` (a chain name and a namespace are DNS labels, so the dot keeps
//!   two chains of the same name in different namespaces, or a chain of the target namespace itself, apart).
//!   The webhook mounts these names in a pod of another namespace ([`rename_volumes`]).
//! - **Labels**: the chain's own labels (`buildvnf.io/chain=<name>`, `app.kubernetes.io/managed-by=…`) plus
//!   [`CHAIN_NAMESPACE_LABEL`] and [`CHAIN_UID_LABEL`]. No ownerReference: "Cross-namespace owner references
//!   are disallowed by design"
//!   (<https://kubernetes.io/docs/concepts/overview/working-with-objects/owners-dependents/>), so the garbage
//!   collector cannot remove them; the operator does (the chain's finalizer, and a namespace that stops
//!   matching).
//! - **Index**: the ConfigMap copies, listed cluster-wide by label ([`existing`]), say where copies are; each
//!   names the Secret copies of its namespace in [`COPIED_SECRETS_ANNOTATION`], so the operator needs to list
//!   no Secret (it has `get`, `create`, `patch` and `delete` on Secrets, never `list`).
//! - **Never someone else's object**: a ConfigMap or Secret of the copy's name that does not carry this chain's
//!   name and namespace labels is left alone and reported (`Degraded`, reason [`COPY_CONFLICT`]).
//! - **Current**: the ConfigMap copy holds the same known-good generation as the original (what new pods start
//!   from); the Secret copies the original's data (re-issued certificates reach the copies on the next
//!   reconcile, well within the renewal margin of a third of the certificate's lifetime). An object already
//!   equal is not written.

use std::collections::{BTreeMap, BTreeSet};

use crds::VNFChain;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::render::{self, Settings};
use crate::{Error, Result};

/// Label on a copy: the namespace of the chain it belongs to.
pub const CHAIN_NAMESPACE_LABEL: &str = "buildvnf.io/chain-namespace";
/// Label on a copy: the uid of the chain it was made for.
pub const CHAIN_UID_LABEL: &str = "buildvnf.io/chain-uid";
/// Annotation on a ConfigMap copy: the Secret copies of its namespace, comma-separated.
pub const COPIED_SECRETS_ANNOTATION: &str = "buildvnf.io/copied-secrets";
/// `Degraded` reason when a copy could not be made.
pub const COPY_CONFLICT: &str = "CopyNotMade";
/// Namespaces the webhook is never called in (the chart's `namespaceSelector`): no copies go there.
pub const NEVER_INJECTED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

const FIELD_MANAGER: &str = "buildvnf-operator";

/// The name of the copy of `original` (an object of the chain's namespace `chain_namespace`).
pub fn copy_name(original: &str, chain_namespace: &str) -> String {
    format!("{original}.{chain_namespace}")
}

/// Points the ConfigMap and Secret volumes of an injected sidecar at their copies (a pod of a namespace other
/// than the chain's). Other volumes (bpffs, tmp) are unchanged.
pub fn rename_volumes(volumes: &mut [Volume], chain_namespace: &str) {
    for v in volumes {
        if let Some(cm) = v.config_map.as_mut() {
            cm.name = copy_name(&cm.name, chain_namespace);
        }
        if let Some(s) = v.secret.as_mut()
            && let Some(name) = s.secret_name.as_mut()
        {
            *name = copy_name(name, chain_namespace);
        }
    }
}

/// What an injected pod mounts from the chain's namespace: Secrets by name, with the keys it projects
/// (`None`: every key).
fn mounted_secrets(
    chain: &VNFChain,
    settings: &Settings,
) -> Result<BTreeMap<String, Option<BTreeSet<String>>>> {
    let (_, volumes) = render::dataplane_container(chain, settings, crate::webhook::VOLUME_PREFIX)?;
    Ok(volumes
        .iter()
        .filter_map(|v| v.secret.as_ref())
        .filter_map(|s| {
            let keys = s
                .items
                .as_ref()
                .map(|items| items.iter().map(|i| i.key.clone()).collect());
            Some((s.secret_name.clone()?, keys))
        })
        .collect())
}

/// The namespaces whose pods `spec.target` selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selected {
    /// Whether the chain's own namespace is one: always without a `namespaceSelector`; with one, when that
    /// namespace opted in to injection and its labels match.
    pub own: bool,
    /// The other namespaces: opted in to injection, matched by the `namespaceSelector`, not being deleted,
    /// none of [`NEVER_INJECTED`]. The copies go there.
    pub others: BTreeSet<String>,
}

impl Selected {
    /// Every selected namespace, the chain's (`own`) included when selected.
    pub fn all(&self, own: &str) -> Vec<String> {
        self.own
            .then(|| own.to_string())
            .into_iter()
            .chain(self.others.iter().cloned())
            .collect()
    }
}

/// The namespaces `chain` selects. Without a `namespaceSelector` only the chain's own, with no API call;
/// with one, a single list of the namespaces that opted in (`buildvnf.io/injection=enabled`, a label
/// selector the API server applies).
pub async fn selected_namespaces(client: &Client, chain: &VNFChain) -> Result<Selected> {
    let Some(selector) = chain
        .spec
        .target
        .as_ref()
        .and_then(|t| t.namespace_selector.as_ref())
    else {
        return Ok(Selected {
            own: true,
            others: BTreeSet::new(),
        });
    };
    let own = chain.namespace().unwrap_or_default();
    let api: Api<Namespace> = Api::all(client.clone());
    let opted_in = format!(
        "{}={}",
        crate::webhook::NAMESPACE_LABEL,
        crate::webhook::NAMESPACE_ENABLED
    );
    let mut selected = Selected::default();
    for n in api
        .list(&ListParams::default().labels(&opted_in))
        .await?
        .items
        .into_iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter(|n| crds::selector_matches(selector, n.labels()))
    {
        let name = n.name_any();
        if name == own {
            selected.own = true;
        } else if !NEVER_INJECTED.contains(&name.as_str()) {
            selected.others.insert(name);
        }
    }
    Ok(selected)
}

/// The label selector of `chain`'s copies.
fn copies_selector(chain: &VNFChain) -> Result<String> {
    let name = chain
        .metadata
        .name
        .as_deref()
        .ok_or(Error::MissingField("metadata.name"))?;
    let ns = chain
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    Ok(format!(
        "{}={name},{CHAIN_NAMESPACE_LABEL}={ns}",
        render::CHAIN_LABEL
    ))
}

/// The chain's ConfigMap copies, by namespace (one cluster-wide list by label).
pub async fn existing(client: &Client, chain: &VNFChain) -> Result<BTreeMap<String, ConfigMap>> {
    let api: Api<ConfigMap> = Api::all(client.clone());
    let own = chain.namespace().unwrap_or_default();
    Ok(api
        .list(&ListParams::default().labels(&copies_selector(chain)?))
        .await?
        .items
        .into_iter()
        .filter_map(|cm| Some((cm.namespace()?, cm)))
        .filter(|(ns, _)| *ns != own)
        .collect())
}

/// Deletes the copies of namespace `ns` (`cm` is its ConfigMap copy): the Secrets it names first, then the
/// ConfigMap itself (so a failure half-way leaves the index for the next try). Missing objects are fine.
pub async fn delete(client: &Client, ns: &str, cm: &ConfigMap) -> Result<()> {
    fn gone<T>(r: std::result::Result<T, kube::Error>) -> Result<()> {
        match r {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Error::Kube(e)),
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let names = cm
        .annotations()
        .get(COPIED_SECRETS_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    for name in names.split(',').filter(|n| !n.is_empty()) {
        gone(secrets.delete(name, &DeleteParams::default()).await)?;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    gone(cms.delete(&cm.name_any(), &DeleteParams::default()).await)
}

/// The labels of a copy.
fn copy_labels(chain: &VNFChain) -> Result<BTreeMap<String, String>> {
    let mut labels = render::labels(chain)?;
    labels.insert(
        CHAIN_NAMESPACE_LABEL.into(),
        chain
            .namespace()
            .ok_or(Error::MissingField("metadata.namespace"))?,
    );
    labels.insert(
        CHAIN_UID_LABEL.into(),
        chain
            .metadata
            .uid
            .clone()
            .ok_or(Error::MissingField("metadata.uid"))?,
    );
    Ok(labels)
}

/// Whether `meta` is a copy of this chain (its name and namespace labels; the uid may be an earlier chain's
/// of the same name, whose copy this one takes over).
fn is_ours(meta: &ObjectMeta, chain: &VNFChain) -> bool {
    let labels = meta.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    get(render::CHAIN_LABEL) == chain.metadata.name.as_deref()
        && get(CHAIN_NAMESPACE_LABEL) == chain.metadata.namespace.as_deref()
}

/// Whether the stored object already carries what the copy would write.
fn same(stored: &ObjectMeta, want: &ObjectMeta) -> bool {
    let contains = |s: &Option<BTreeMap<String, String>>, w: &Option<BTreeMap<String, String>>| {
        w.iter()
            .flatten()
            .all(|(k, v)| s.as_ref().and_then(|s| s.get(k)) == Some(v))
    };
    contains(&stored.labels, &want.labels) && contains(&stored.annotations, &want.annotations)
}

/// The copies of one namespace, as they should be.
struct Desired {
    config_map: ConfigMap,
    secrets: Vec<Secret>,
}

/// Reads the originals once: the ConfigMap of `known_good`, and every Secret an injected pod mounts
/// (projected to the keys it mounts). A Secret that does not exist yet (cert-manager has not issued it, a key
/// Secret the user has not created) is a problem, and the others are still copied.
async fn originals(
    client: &Client,
    chain: &VNFChain,
    known_good: &VNFChain,
    settings: &Settings,
) -> Result<(ConfigMap, Vec<Secret>, Vec<String>)> {
    let ns = chain
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let config_map = render::config_map(chain, known_good)?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut secrets = Vec::new();
    let mut problems = Vec::new();
    for (name, keys) in mounted_secrets(chain, settings)? {
        let Some(s) = api.get_opt(&name).await? else {
            problems.push(format!(
                "Secret {ns}/{name} does not exist yet, so it is not copied"
            ));
            continue;
        };
        let data = s.data.map(|d| {
            d.into_iter()
                .filter(|(k, _)| keys.as_ref().is_none_or(|keys| keys.contains(k)))
                .collect()
        });
        secrets.push(Secret {
            metadata: ObjectMeta {
                name: Some(name),
                ..ObjectMeta::default()
            },
            type_: s.type_,
            data,
            ..Secret::default()
        });
    }
    Ok((config_map, secrets, problems))
}

fn desired_in(
    chain: &VNFChain,
    ns: &str,
    config_map: &ConfigMap,
    secrets: &[Secret],
) -> Result<Desired> {
    let chain_ns = chain
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let labels = copy_labels(chain)?;
    let meta = |original: &str| ObjectMeta {
        name: Some(copy_name(original, &chain_ns)),
        namespace: Some(ns.into()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let secrets: Vec<Secret> = secrets
        .iter()
        .map(|s| Secret {
            metadata: meta(&s.name_any()),
            ..s.clone()
        })
        .collect();
    let mut cm_meta = meta(&config_map.name_any());
    let mut annotations = config_map.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(
        COPIED_SECRETS_ANNOTATION.into(),
        secrets
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
            .join(","),
    );
    cm_meta.annotations = Some(annotations);
    Ok(Desired {
        config_map: ConfigMap {
            metadata: cm_meta,
            data: config_map.data.clone(),
            ..ConfigMap::default()
        },
        secrets,
    })
}

/// Makes the copies of every namespace in `namespaces` current (`existing`: the ConfigMap copies found);
/// returns the problems (objects of the copy's name that are not this chain's, originals that do not exist
/// yet), each naming the object.
pub async fn sync(
    client: &Client,
    chain: &VNFChain,
    known_good: &VNFChain,
    settings: &Settings,
    namespaces: &BTreeSet<String>,
    existing: &BTreeMap<String, ConfigMap>,
) -> Result<Vec<String>> {
    if namespaces.is_empty() {
        return Ok(Vec::new());
    }
    let (config_map, secrets, mut problems) =
        originals(client, chain, known_good, settings).await?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for ns in namespaces {
        let want = desired_in(chain, ns, &config_map, &secrets)?;
        // Secrets first: a pod created meanwhile finds its certificate as soon as it finds its ConfigMap.
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        for s in &want.secrets {
            let name = s.name_any();
            match api.get_opt(&name).await? {
                Some(stored) if !is_ours(&stored.metadata, chain) => {
                    problems.push(conflict("Secret", ns, &name));
                    continue;
                }
                Some(stored)
                    if stored.data == s.data
                        && stored.type_ == s.type_
                        && same(&stored.metadata, &s.metadata) => {}
                _ => {
                    api.patch(&name, &pp, &Patch::Apply(s)).await?;
                }
            }
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let name = want.config_map.name_any();
        let stored = match existing.get(ns).filter(|c| c.name_any() == name) {
            Some(c) => Some(c.clone()),
            None => api.get_opt(&name).await?,
        };
        match stored {
            Some(stored) if !is_ours(&stored.metadata, chain) => {
                problems.push(conflict("ConfigMap", ns, &name));
            }
            Some(stored)
                if stored.data == want.config_map.data
                    && same(&stored.metadata, &want.config_map.metadata) => {}
            _ => {
                api.patch(&name, &pp, &Patch::Apply(&want.config_map))
                    .await?;
            }
        }
    }
    Ok(problems)
}

fn conflict(kind: &str, ns: &str, name: &str) -> String {
    format!(
        "{kind} {ns}/{name} exists and is not this chain's copy (no matching {} and {CHAIN_NAMESPACE_LABEL} \
         labels): it is left alone, and the chain's pods in namespace {ns} cannot start until it is removed",
        render::CHAIN_LABEL
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_names_keep_chains_of_the_same_name_apart() {
        assert_eq!(copy_name("web-dataplane", "shop"), "web-dataplane.shop");
        assert_ne!(
            copy_name("web-dataplane", "a"),
            copy_name("web-dataplane", "b")
        );
        let mut volumes: Vec<Volume> = serde_json::from_value(serde_json::json!([
            {"name": "buildvnf-config", "configMap": {"name": "web-dataplane"}},
            {"name": "buildvnf-tls", "secret": {"secretName": "web-dataplane-tls"}},
            {"name": "buildvnf-tmp", "emptyDir": {}}
        ]))
        .expect("volumes");
        rename_volumes(&mut volumes, "sec");
        let v = serde_json::to_value(&volumes).expect("encode");
        assert_eq!(v[0]["configMap"]["name"], "web-dataplane.sec");
        assert_eq!(v[1]["secret"]["secretName"], "web-dataplane-tls.sec");
        assert_eq!(
            v[2],
            serde_json::json!({"name": "buildvnf-tmp", "emptyDir": {}})
        );
    }
}
