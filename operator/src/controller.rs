//! The reconcile loop: validate, apply owned objects by server-side apply, push the chain to every ready
//! sidecar, roll back a failed generation, and write the status it observed.
//!
//! Event-driven: the controller watches the chains, the objects it owns and the chains' pods, each through
//! the label selector of what the operator manages ([`MANAGED_BY_SELECTOR`]), so it caches only its own
//! objects. A chain that is not Ready is looked at again with exponential back-off ([`backoff`], from 4 s to
//! [`NOT_READY_MAX_DELAY`]), started again whenever the chain makes progress; any change of its pods or
//! owned objects reconciles it at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::validate::ValidationErrors;
use crds::{VNFChain, VNFChainStatus};
use dataplane_api::ApplyChainRequest;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::copies;
use crate::metrics::Metrics;
use crate::read::ChainObject;
use crate::render::{self, Settings};
use crate::sidecar::{PodEndpoint, SidecarError, Sidecars};
use crate::status::{self, Observation, PushFailure, ReplicaObservation};
use crate::{Error, Result};

/// Finalizer the operator puts on every chain: the sidecars must drop their pinned programs and maps
/// (which owner references cannot reach) before the chain goes away.
pub const FINALIZER: &str = "buildvnf.io/cleanup";
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "buildvnf-operator";
/// The label selector of every object the operator owns, and of the chains' pods: the watches cache only these.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=buildvnf-operator";
/// The longest wait before a chain that is not Ready is looked at again when nothing it watches changes.
pub const NOT_READY_MAX_DELAY: Duration = Duration::from_secs(120);
/// The first wait is `backoff(1 + NOT_READY_FIRST_STEP)` (4 s).
const NOT_READY_FIRST_STEP: u32 = 2;

/// What every reconcile shares.
pub struct Context<S> {
    /// API client.
    pub client: Client,
    /// How to reach sidecars.
    pub sidecars: S,
    /// Rendering settings.
    pub settings: Settings,
    /// Kubernetes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Consecutive failures per chain, for exponential back-off.
    failures: Mutex<HashMap<String, u32>>,
    /// Per chain that is not Ready: its last [`status::progress`] and how many reconciles since it changed.
    not_ready: Mutex<HashMap<String, (u64, u32)>>,
    /// Where the chains' serving certificates come from (certs.rs); `None`: someone else provides each
    /// chain's Secret `<chain>-dataplane-tls`.
    pub certs: Option<Arc<crate::certs::ChainCerts>>,
}

impl<S: Sidecars> Context<S> {
    /// A context for `client`.
    pub fn new(client: Client, sidecars: S, settings: Settings, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            sidecars,
            settings,
            metrics,
            failures: Mutex::default(),
            not_ready: Mutex::default(),
            certs: None,
        }
    }

    /// The same context, issuing every chain's serving certificate with `certs`.
    pub fn with_certs(mut self, certs: Arc<crate::certs::ChainCerts>) -> Self {
        self.certs = Some(certs);
        self
    }

    /// When to look again at a chain that is not Ready: back-off that grows while `progress` stays the same
    /// and starts again when it changes.
    fn not_ready_delay(&self, key: &str, progress: u64) -> Duration {
        let attempts = match self.not_ready.lock() {
            Ok(mut m) => {
                let entry = m.entry(key.to_string()).or_insert((progress, 0));
                if entry.0 != progress {
                    *entry = (progress, 0);
                }
                entry.1 = entry.1.saturating_add(1);
                entry.1
            }
            Err(_) => 1,
        };
        backoff(attempts.saturating_add(NOT_READY_FIRST_STEP), jitter_seed())
            .min(NOT_READY_MAX_DELAY)
    }

    fn forget_not_ready(&self, key: &str) {
        if let Ok(mut m) = self.not_ready.lock() {
            m.remove(key);
        }
    }
}

fn key(chain: &VNFChain) -> String {
    format!(
        "{}/{}",
        chain.namespace().unwrap_or_default(),
        chain.name_any()
    )
}

/// Reconciles one chain as the controller watches it ([`ChainObject`]): one the shared reader refuses is
/// reported as `InvalidSpec` (with `vnfctl validate`'s messages) and nothing is changed.
pub async fn reconcile_object<S: Sidecars>(
    object: Arc<ChainObject>,
    ctx: Arc<Context<S>>,
) -> Result<Action> {
    reconcile_read(object.chain.clone(), object.refused.clone(), ctx).await
}

/// Reconciles one chain (with the finalizer: Apply while it lives, Cleanup when it is deleted).
pub async fn reconcile<S: Sidecars>(chain: Arc<VNFChain>, ctx: Arc<Context<S>>) -> Result<Action> {
    reconcile_read(chain, None, ctx).await
}

/// [`reconcile`], with what the shared reader refused in the object (`None`: `validate()` decides).
async fn reconcile_read<S: Sidecars>(
    chain: Arc<VNFChain>,
    refused: Option<ValidationErrors>,
    ctx: Arc<Context<S>>,
) -> Result<Action> {
    let timer = ctx
        .metrics
        .duration
        .with_label_values::<&str>(&[])
        .start_timer();
    let ns = chain
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<VNFChain> = Api::namespaced(ctx.client.clone(), &ns);
    let k = key(&chain);
    let result = finalizer(&api, FINALIZER, chain.clone(), |event| async {
        match event {
            Finalizer::Apply(c) => apply(c, refused.clone(), &ctx).await,
            Finalizer::Cleanup(c) => cleanup(c, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if let Err(e) = &result {
        report_error(&chain, e, &ctx).await;
    }
    timer.observe_duration();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.reconciles.with_label_values(&[outcome]).inc();
    if result.is_ok()
        && let Ok(mut f) = ctx.failures.lock()
    {
        f.remove(&k);
    }
    result
}

/// [`error_policy`] for the watched object.
pub fn error_policy_object<S: Sidecars>(
    object: Arc<ChainObject>,
    error: &Error,
    ctx: Arc<Context<S>>,
) -> Action {
    error_policy(object.chain.clone(), error, ctx)
}

/// Exponential back-off with jitter: 1 s, 2 s, 4 s … capped at 5 min, ±20%.
pub fn error_policy<S: Sidecars>(
    chain: Arc<VNFChain>,
    error: &Error,
    ctx: Arc<Context<S>>,
) -> Action {
    warn!(chain = %key(&chain), %error, "reconcile failed");
    ctx.metrics.errors.with_label_values(&[error.kind()]).inc();
    let attempts = match ctx.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(key(&chain)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    Action::requeue(backoff(attempts, jitter_seed()))
}

fn jitter_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
}

/// The delay after `attempts` consecutive failures; `seed` picks the jitter.
pub fn backoff(attempts: u32, seed: u64) -> Duration {
    let base = 1u64 << attempts.saturating_sub(1).min(9); // 1 s … 512 s
    let capped = base.min(300) as f64;
    let jitter = 0.8 + 0.4 * ((seed % 1000) as f64 / 1000.0);
    Duration::from_secs_f64(capped * jitter)
}

fn ssa() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies an object by server-side apply under the operator's field manager; returns the object as stored.
async fn apply_object<K>(api: &Api<K>, name: &str, obj: &K) -> Result<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    Ok(api.patch(name, &ssa(), &Patch::Apply(obj)).await?)
}

/// A chain's pods as the operator sees them: where to reach each sidecar, or why it cannot.
struct PodView {
    pod: String,
    node: Option<String>,
    endpoint: Option<PodEndpoint>,
    not_ready: Option<String>,
    current_template: bool,
    /// A workload pod the webhook injected (`spec.target`): only its owner's rollout renews its sidecar.
    injected: bool,
    /// The command that restarts it ([`roll_command`]).
    roll: String,
}

/// The chain's pods: those of its own namespace by the chain's label, and in each of `others` (namespaces its
/// `namespaceSelector` selects, or selected before) the pods the webhook injected with this chain (the
/// label, and the `buildvnf.io/injected` annotation naming the chain's namespace, since a chain of the same
/// name elsewhere labels its pods alike).
async fn pods(
    chain: &VNFChain,
    ctx: &Context<impl Sidecars>,
    restart_hash: &str,
    others: &[String],
) -> Result<Vec<PodView>> {
    let own = chain.namespace().unwrap_or_default();
    let mut out = pods_in(chain, ctx, restart_hash, &own).await?;
    for ns in others.iter().filter(|ns| **ns != own) {
        out.extend(pods_in(chain, ctx, restart_hash, ns).await?);
    }
    Ok(out)
}

/// [`pods`] of one namespace, sorted by name. A pod outside the chain's namespace is shown as
/// `<namespace>/<pod>`; its sidecar serves the chain's certificate (a copy of the chain's Secret), so the
/// endpoint names the chain's namespace, which the TLS server name is checked against.
async fn pods_in(
    chain: &VNFChain,
    ctx: &Context<impl Sidecars>,
    restart_hash: &str,
    ns: &str,
) -> Result<Vec<PodView>> {
    let own = chain.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(&render::pod_selector(chain)?))
        .await?;
    let service = render::object_name(chain)?;
    let injected_as = key(chain);
    let mut out: Vec<PodView> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            ns == own
                || p.annotations().get(crate::webhook::INJECTED_ANNOTATION) == Some(&injected_as)
        })
        .map(|p| {
            let name = p.name_any();
            let status = p.status.as_ref();
            let ip = status.and_then(|s| s.pod_ip.clone());
            let phase = status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into());
            let current_template = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(render::RESTART_HASH_ANNOTATION))
                .is_some_and(|h| h == restart_hash);
            let roll = roll_command(ns, &p);
            let (endpoint, not_ready) = match (phase.as_str(), ip) {
                ("Running", Some(ip)) => (
                    Some(PodEndpoint {
                        pod: name.clone(),
                        ip,
                        service: service.clone(),
                        namespace: own.clone(),
                    }),
                    None,
                ),
                (phase, _) => (None, Some(format!("pod is {phase}"))),
            };
            PodView {
                pod: if ns == own {
                    name
                } else {
                    format!("{ns}/{name}")
                },
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                endpoint,
                not_ready,
                current_template,
                injected: chain.spec.target.is_some(),
                roll,
            }
        })
        .collect();
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    Ok(out)
}

/// What each pod's sidecar reports; `detached`: the pods whose sidecar refused the chain because it was
/// detached earlier ([`push`]).
async fn observe(
    ctx: &Context<impl Sidecars>,
    pods: &[PodView],
    detached: &BTreeSet<String>,
) -> Vec<ReplicaObservation> {
    let mut out = Vec::with_capacity(pods.len());
    for p in pods {
        let sidecar = match (&p.endpoint, &p.not_ready) {
            (_, Some(reason)) => Err(reason.clone()),
            _ if detached.contains(&p.pod) => Err(format!(
                "its sidecar was detached earlier (its namespace stopped matching the chain's \
                 namespaceSelector, or a chain of this name was deleted) and applies no chain until the pod \
                 restarts: {}",
                p.roll
            )),
            (Some(ep), None) => ctx.sidecars.status(ep).await.map_err(|e| e.to_string()),
            (None, None) => Err("no pod IP".into()),
        };
        // A pod of an older template runs an older image or interface set: never counted as current.
        let sidecar = match sidecar {
            Ok(st) if !p.current_template && p.injected => Err(format!(
                "its sidecar is outdated (injected from an older template of the chain: image, interfaces, \
                 probes or certificates changed), it runs generation {}; restart the pod: {}",
                st.applied_generation, p.roll
            )),
            Ok(st) if !p.current_template => Err(format!(
                "pod template is outdated (rollout in progress), it runs generation {}",
                st.applied_generation
            )),
            other => other,
        };
        out.push(ReplicaObservation {
            pod: p.pod.clone(),
            node: p.node.clone(),
            sidecar,
        });
    }
    out
}

/// The ApplyChain request for `chain`: its `metadata.generation` and its spec. A rollback sends the known-good
/// chain ([`known_good_from`]) this way: the sidecar returns to a generation it applied itself with the same
/// spec (the generation rule, `dataplane_api::door`; docs/architecture.md, "Generations").
pub fn apply_request(chain: &VNFChain) -> Result<ApplyChainRequest> {
    Ok(ApplyChainRequest {
        chain: Some(dataplane_api::ChainRef {
            namespace: chain.namespace().unwrap_or_default(),
            name: chain.name_any(),
        }),
        generation: chain.metadata.generation.unwrap_or_default(),
        spec_json: serde_json::to_string(&chain.spec).map_err(|e| Error::Render(e.to_string()))?,
    })
}

/// Reads the known-good chain (the last generation every replica applied) from the ConfigMap.
pub fn known_good_from(cm: &ConfigMap) -> Option<VNFChain> {
    let text = cm.data.as_ref()?.get(render::CONFIG_KEY)?;
    crds::manifest::parse_single_chain(text).ok()
}

/// What a push did besides succeeding: the first refusal (with the rollback), and the pods whose sidecar
/// was detached earlier.
#[derive(Default)]
struct Pushed {
    failure: Option<PushFailure>,
    detached: BTreeSet<String>,
}

/// Pushes `chain` to every reachable sidecar that does not run it; on the first refusal, returns the
/// replicas that took it to `known_good`. A sidecar at this generation that reports no attachment is sent it
/// again (a no-op for a sidecar that applied it, `changed: false`): a sidecar that was detached (its
/// namespace stopped matching the chain's `namespaceSelector` and matches again, or a chain of the same name
/// was deleted) refuses with the daemon's `Detached` refusal, which is not the chain's failure: that pod
/// must restart, and the status says so.
async fn push(
    chain: &VNFChain,
    known_good: &VNFChain,
    ctx: &Context<impl Sidecars>,
    pods: &[PodView],
) -> Result<Pushed> {
    let generation = chain.metadata.generation.unwrap_or_default();
    let request = apply_request(chain)?;
    let detached_refusal = dataplane_api::door::Refusal::Detached.to_string();
    let mut took: Vec<&PodEndpoint> = Vec::new();
    let mut failure = None;
    let mut detached = BTreeSet::new();
    for (view, ep) in pods
        .iter()
        .filter(|p| p.current_template)
        .filter_map(|p| Some((p, p.endpoint.as_ref()?)))
    {
        match ctx.sidecars.status(ep).await {
            Ok(st) if st.applied_generation == generation && !st.attachments.is_empty() => {
                took.push(ep);
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                info!(pod = %ep.pod, error = %e, "sidecar not reachable; it will get the chain when it is");
                continue;
            }
        }
        match ctx.sidecars.apply(ep, request.clone()).await {
            Ok(_) => took.push(ep),
            Err(SidecarError::Unreachable(e)) => {
                info!(pod = %ep.pod, error = %e, "sidecar not reachable; it will get the chain when it is")
            }
            Err(SidecarError::Rejected(reason)) if reason == detached_refusal => {
                info!(pod = %view.pod, "sidecar detached earlier; the pod must restart to run the chain");
                detached.insert(view.pod.clone());
            }
            Err(SidecarError::Rejected(reason)) => {
                failure = Some(PushFailure {
                    generation,
                    pod: view.pod.clone(),
                    reason,
                    rolled_back: Vec::new(),
                    previous: known_good.metadata.generation,
                });
                break;
            }
        }
    }
    let Some(mut failure) = failure else {
        return Ok(Pushed {
            failure: None,
            detached,
        });
    };
    if known_good.metadata.generation != Some(generation) {
        let back = apply_request(known_good)?;
        for ep in took {
            match ctx.sidecars.apply(ep, back.clone()).await {
                Ok(_) => failure.rolled_back.push(display(pods, ep)),
                Err(e) => warn!(pod = %ep.pod, error = %e, "rollback failed"),
            }
        }
    }
    Ok(Pushed {
        failure: Some(failure),
        detached,
    })
}

/// The name a pod is shown with (`<namespace>/<pod>` outside the chain's namespace).
fn display(pods: &[PodView], ep: &PodEndpoint) -> String {
    pods.iter()
        .find(|p| p.endpoint.as_ref() == Some(ep))
        .map(|p| p.pod.clone())
        .unwrap_or_else(|| ep.pod.clone())
}

/// What a reconcile names the chain's objects and pods by.
struct Keys {
    ns: String,
    name: String,
    generation: i64,
    restart_hash: String,
}

impl Keys {
    fn of(chain: &VNFChain) -> Result<Self> {
        Ok(Self {
            ns: chain
                .namespace()
                .ok_or(Error::MissingField("metadata.namespace"))?,
            name: render::object_name(chain)?,
            generation: chain.metadata.generation.unwrap_or_default(),
            restart_hash: render::restart_hash(chain)?,
        })
    }
}

async fn apply(
    chain: Arc<VNFChain>,
    refused: Option<ValidationErrors>,
    ctx: &Context<impl Sidecars>,
) -> Result<Action> {
    let k = Keys::of(&chain)?;
    let (ns, name, generation, restart_hash) = (k.ns, k.name, k.generation, k.restart_hash);
    let previous = chain.status.clone();
    let mut obs = Observation {
        known_good: previous.as_ref().and_then(|s| s.last_applied_generation),
        ..Observation::default()
    };

    // (opext) A valid spec the image policy refuses is reported like an invalid one: nothing is applied.
    obs.refused = crate::policy::refusal(
        &chain,
        &ctx.settings.allowed_images,
        &ctx.settings.default_image,
    );
    // What the shared reader refused in the object as sent, else what validate() finds in the typed chain.
    obs.invalid = match refused {
        Some(errors) => Some(errors),
        None => crds::validate(&chain).err(),
    };
    if obs.invalid.is_some() || obs.refused.is_some() {
        // Nothing is changed for an invalid spec; the status still says what runs (in sidecar mode, in the
        // namespaces that hold copies too).
        let others = copy_namespaces(&chain, ctx).await?;
        let pods = pods(&chain, ctx, &restart_hash, &others).await?;
        obs.replicas = observe(ctx, &pods, &BTreeSet::new()).await;
        write_status(&chain, previous.as_ref(), &obs, ctx).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }

    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let known_good = match cms.get_opt(&name).await?.as_ref().and_then(known_good_from) {
        Some(kg) => kg,
        None => {
            // First generation: nothing to roll back to, so new pods start from it.
            apply_object(&cms, &name, &render::config_map(&chain, &chain)?).await?;
            (*chain).clone()
        }
    };
    obs.known_good = known_good.metadata.generation;
    // The serving certificate the pods mount (certs.rs), before the pods that need it.
    if let Some(certs) = &ctx.certs {
        certs
            .ensure(&ctx.client, &chain, std::time::SystemTime::now())
            .await?;
    }
    if chain.spec.target.is_some() {
        return apply_target(chain, ctx, obs, known_good, previous).await;
    }
    obs.deployment = apply_workload(&chain, previous.as_ref(), ctx, &ns, &name).await?;

    let pods = pods(&chain, ctx, &restart_hash, &[]).await?;
    let already_failed = previous.as_ref().and_then(|s| s.failed_generation) == Some(generation);
    let mut pushed = Pushed::default();
    if already_failed {
        obs.failure = Some(failed_earlier(previous.as_ref(), generation, &known_good));
    } else {
        pushed = push(&chain, &known_good, ctx, &pods).await?;
        obs.failure = pushed.failure.take();
    }
    obs.replicas = observe(ctx, &pods, &pushed.detached).await;

    let desired = chain.spec.placement.replicas;
    let ready = obs
        .replicas
        .iter()
        .filter(|r| status::replica_ready(&chain, generation, r))
        .count() as i32;
    if obs.failure.is_none()
        && desired > 0
        && ready >= desired
        && known_good.metadata.generation != Some(generation)
    {
        // Every replica runs this generation: it becomes what new pods start from and rollbacks return to.
        apply_object(&cms, &name, &render::config_map(&chain, &chain)?).await?;
        obs.known_good = Some(generation);
    }
    finish(&chain, previous.as_ref(), &obs, ctx).await
}

/// The chain's Deployment, Service, disruption budget and (if enabled) PodMonitor; returns what the stored
/// Deployment's status says is wrong with it.
async fn apply_workload(
    chain: &VNFChain,
    previous: Option<&crds::VNFChainStatus>,
    ctx: &Context<impl Sidecars>,
    ns: &str,
    name: &str,
) -> Result<Option<status::DeploymentProblem>> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let deployment = apply_object(
        &deployments,
        name,
        &render::deployment(chain, &ctx.settings)?,
    )
    .await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    apply_object(&services, name, &render::service(chain)?).await?;
    apply_disruption_budget(chain, previous, ctx).await?;
    if ctx.settings.pod_monitor {
        let monitors: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &render::pod_monitor_resource());
        apply_object(&monitors, name, &render::pod_monitor(chain)?).await?;
    }
    // The apply answers with the stored Deployment, status included: no extra request.
    Ok(status::deployment_problem(&deployment))
}

/// The failure of a generation the sidecars refused in an earlier reconcile (it is not pushed again): the
/// refusal's own message, unless a later failure (a reconcile error, the Deployment) took `Degraded` over;
/// the generation stays failed either way.
fn failed_earlier(
    previous: Option<&crds::VNFChainStatus>,
    generation: i64,
    known_good: &VNFChain,
) -> PushFailure {
    let message = previous.and_then(|s| {
        s.conditions
            .iter()
            .find(|c| {
                c.type_ == crds::CONDITION_DEGRADED
                    && c.status == "True"
                    && c.reason == status::APPLY_FAILED
            })
            .map(|c| c.message.clone())
    });
    PushFailure {
        generation,
        pod: "a replica".into(),
        reason: message.unwrap_or_else(|| "refused earlier (see the chain's Events)".into()),
        rolled_back: Vec::new(),
        previous: known_good.metadata.generation,
    }
}

/// Writes the status of a reconcile and picks the next requeue: 5 minutes once Ready, else the back-off.
async fn finish(
    chain: &VNFChain,
    previous: Option<&crds::VNFChainStatus>,
    obs: &Observation,
    ctx: &Context<impl Sidecars>,
) -> Result<Action> {
    let status = write_status(chain, previous, obs, ctx).await?;
    let ready_now = status
        .conditions
        .iter()
        .any(|c| c.type_ == crds::CONDITION_READY && c.status == "True");
    let k = key(chain);
    Ok(if ready_now {
        ctx.forget_not_ready(&k);
        Action::requeue(Duration::from_secs(300))
    } else {
        // Pods and owned objects are watched: a change reconciles at once, the requeue is only a safety net.
        Action::requeue(ctx.not_ready_delay(&k, status::progress(&status)))
    })
}

/// Sidecar mode (issue 18): no Deployment, Service or PodDisruptionBudget; the chain runs in the workload
/// pods the webhook injected (labelled with the chain), gets pushed like dedicated pods, and the status lists
/// the selected pods that run without the sidecar with the command that rolls them.
async fn apply_target(
    chain: Arc<VNFChain>,
    ctx: &Context<impl Sidecars>,
    mut obs: Observation,
    known_good: VNFChain,
    previous: Option<crds::VNFChainStatus>,
) -> Result<Action> {
    let k = Keys::of(&chain)?;
    let (ns, name, generation, restart_hash) = (k.ns, k.name, k.generation, k.restart_hash);
    let selected = copies::selected_namespaces(&ctx.client, &chain).await?;
    let others: Vec<String> = selected.others.iter().cloned().collect();
    if ctx.settings.pod_monitor {
        let monitors: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &render::pod_monitor_resource());
        let monitor = render::pod_monitor_in(&chain, &others)?;
        apply_object(&monitors, &name, &monitor).await?;
    }
    let existing = copies::existing(&ctx.client, &chain).await?;
    // A namespace that stopped matching (labels changed, opted out, being deleted): the chain is detached
    // from its pods there, as on deletion, and the copies go.
    for (other, cm) in existing
        .iter()
        .filter(|(other, _)| !selected.others.contains(*other))
    {
        let gone = pods_in(&chain, ctx, &restart_hash, other).await?;
        let not_detached = detach_all(&gone, ctx).await;
        info!(chain = %key(&chain), namespace = %other, pods = gone.len(), not_detached = not_detached.len(),
              "namespace no longer selected: detached and removing the copies");
        copies::delete(&ctx.client, other, cm).await?;
    }
    let pods = pods(&chain, ctx, &restart_hash, &others).await?;
    obs.not_injected = not_injected(&chain, ctx, &selected).await?;
    let mut pushed = push(&chain, &known_good, ctx, &pods).await?;
    obs.failure = pushed.failure.take();
    obs.replicas = observe(ctx, &pods, &pushed.detached).await;
    let all_ready = !obs.replicas.is_empty()
        && obs
            .replicas
            .iter()
            .all(|r| status::replica_ready(&chain, generation, r));
    let mut known_good = known_good;
    if obs.failure.is_none() && all_ready && known_good.metadata.generation != Some(generation) {
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        apply_object(&cms, &name, &render::config_map(&chain, &chain)?).await?;
        obs.known_good = Some(generation);
        known_good = (*chain).clone();
    }
    // The copies hold what the originals hold now: the same known-good generation, the same certificate.
    obs.copy_problems = copies::sync(
        &ctx.client,
        &chain,
        &known_good,
        &ctx.settings,
        &selected.others,
        &existing,
    )
    .await?;
    finish(&chain, previous.as_ref(), &obs, ctx).await
}

/// Sidecar mode: the namespaces other than the chain's that hold its copies (where its pods may run); none
/// for a dedicated chain (no request then).
async fn copy_namespaces(chain: &VNFChain, ctx: &Context<impl Sidecars>) -> Result<Vec<String>> {
    if chain.spec.target.is_none() {
        return Ok(Vec::new());
    }
    Ok(copies::existing(&ctx.client, chain)
        .await?
        .into_keys()
        .collect())
}

/// Detaches the chain from every reachable sidecar of `pods`; returns the pods not detached.
async fn detach_all(pods: &[PodView], ctx: &Context<impl Sidecars>) -> Vec<String> {
    let mut not_detached = Vec::new();
    for p in pods {
        let Some(ep) = &p.endpoint else {
            not_detached.push(p.pod.clone());
            continue;
        };
        // An unreachable sidecar cannot be waited for forever; its pod's deletion takes its interfaces along.
        if let Err(e) = ctx.sidecars.detach(ep).await {
            warn!(pod = %p.pod, error = %e, "detach failed; continuing");
            not_detached.push(p.pod.clone());
        }
    }
    not_detached
}

/// The pods of every selected namespace that `spec.target` selects but that run without the sidecar. Listed
/// unfiltered per namespace and matched here: a label selector with set-based expressions is matched like
/// the API server matches it (`crds::selector_matches`), in one list per namespace.
async fn not_injected(
    chain: &VNFChain,
    ctx: &Context<impl Sidecars>,
    selected: &copies::Selected,
) -> Result<Vec<crds::NotInjected>> {
    let Some(target) = &chain.spec.target else {
        return Ok(Vec::new());
    };
    let own = chain.namespace().unwrap_or_default();
    let mut out = Vec::new();
    for ns in selected.all(&own) {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let mut found: Vec<crds::NotInjected> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| crds::selector_matches(&target.pod_selector, p.labels()))
            .filter(|p| !crate::webhook::already_injected(p))
            .map(|p| crds::NotInjected {
                namespace: ns.clone(),
                command: roll_command(&ns, &p),
                pod: p.name_any(),
            })
            .collect();
        found.sort_by(|a, b| a.pod.cmp(&b.pod));
        out.extend(found);
    }
    Ok(out)
}

/// The command that gives `pod` the sidecar: a rollout restart of the workload that owns it (a ReplicaSet's
/// Deployment is its name without the `pod-template-hash` suffix), or deleting a bare pod.
pub fn roll_command(ns: &str, pod: &Pod) -> String {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let workload = owner.and_then(|o| match o.kind.as_str() {
        "ReplicaSet" => {
            let hash = pod.labels().get("pod-template-hash")?;
            let deployment = o.name.strip_suffix(&format!("-{hash}"))?;
            Some(format!("deployment/{deployment}"))
        }
        "StatefulSet" => Some(format!("statefulset/{}", o.name)),
        "DaemonSet" => Some(format!("daemonset/{}", o.name)),
        _ => None,
    });
    match workload {
        Some(w) => format!("kubectl -n {ns} rollout restart {w}"),
        None => format!(
            "kubectl -n {ns} delete pod {} (and create it again: it has no workload controller to do it)",
            pod.name_any()
        ),
    }
}

/// Event reason, note and action for a condition (or error) of `generation`. The note names the generation,
/// and so does the action: kube's `Recorder` counts an event as a repeat of an earlier one when its type,
/// reason, action and object match (the note is not compared), so events of different generations must
/// differ in the action to stay apart.
fn event(type_: EventType, reason: &str, note: String, generation: i64) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(format!("generation {generation}: {note}")),
        action: format!("ReconcileGeneration{generation}"),
        secondary: None,
    }
}

/// Puts a failed reconcile into the chain's status (`Degraded=True` with the error's reason and message) and,
/// when that is new, one Warning Event. Best effort: when the API refuses these too, the log says why.
async fn report_error(chain: &VNFChain, error: &Error, ctx: &Context<impl Sidecars>) {
    let Some(ns) = chain.namespace() else { return };
    let previous = chain.status.as_ref();
    let reason = error.reason();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status::with_error(chain, previous, &reason, &error.to_string(), now);
    let api: Api<VNFChain> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"apiVersion": crds::API_VERSION, "kind": crds::KIND, "status": status});
    if let Err(e) = api
        .patch_status(&chain.name_any(), &ssa(), &Patch::Apply(&patch))
        .await
    {
        warn!(chain = %key(chain), error = %e, "cannot write the reconcile error into the status");
    }
    let degraded = |s: Option<&VNFChainStatus>| {
        s.and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == crds::CONDITION_DEGRADED)
                .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        })
    };
    if degraded(previous) == degraded(Some(&status)) {
        return;
    }
    let generation = chain.metadata.generation.unwrap_or_default();
    let ev = event(
        EventType::Warning,
        &reason,
        format!("reconcile failed: {error}"),
        generation,
    );
    if let Err(e) = ctx.recorder.publish(&ev, &chain.object_ref(&())).await {
        warn!(error = %e, "cannot publish event");
    }
}

/// (opext) Applies the chain's PodDisruptionBudget (two replicas or more), or deletes it when the replicas
/// dropped below two. The delete is sent only when the spec moved since the last status (or the last status
/// refused it), so a steady one-replica chain costs no request; a missing budget is fine.
async fn apply_disruption_budget(
    chain: &VNFChain,
    previous: Option<&VNFChainStatus>,
    ctx: &Context<impl Sidecars>,
) -> Result<()> {
    let ns = chain.namespace().unwrap_or_default();
    let name = render::object_name(chain)?;
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(pdb) = render::pod_disruption_budget(chain)? {
        return apply_object(&api, &name, &pdb).await.map(|_| ());
    }
    let settled = previous.is_some_and(|p| {
        p.observed_generation == chain.metadata.generation
            && !p
                .conditions
                .iter()
                .any(|c| c.type_ == crds::CONDITION_INVALID_SPEC && c.status == "True")
    });
    if settled {
        return Ok(());
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(
    chain: &VNFChain,
    previous: Option<&VNFChainStatus>,
    obs: &Observation,
    ctx: &Context<impl Sidecars>,
) -> Result<VNFChainStatus> {
    let ns = chain.namespace().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status::compute(chain, previous, obs, now);
    let api: Api<VNFChain> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": crds::API_VERSION,
        "kind": crds::KIND,
        "status": status,
    });
    api.patch_status(&chain.name_any(), &ssa(), &Patch::Apply(&patch))
        .await?;
    for c in status.conditions.iter() {
        ctx.metrics
            .conditions
            .with_label_values(&[ns.as_str(), chain.name_any().as_str(), c.type_.as_str()])
            .set(i64::from(c.status == "True"));
    }
    let reference = chain.object_ref(&());
    let generation = chain.metadata.generation.unwrap_or_default();
    for c in status::transitions(previous, &status) {
        let warning = (c.type_ == crds::CONDITION_READY && c.status == "False")
            || (c.type_ != crds::CONDITION_READY
                && c.type_ != crds::CONDITION_PROGRESSING
                && c.status == "True");
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!("{} is {}: {}", c.type_, c.status, c.message);
        let event = event(type_, &c.reason, note, generation);
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(error = %e, "cannot publish event");
        }
    }
    Ok(status)
}

async fn cleanup(chain: Arc<VNFChain>, ctx: &Context<impl Sidecars>) -> Result<Action> {
    ctx.forget_not_ready(&key(&chain));
    // Sidecar mode: the pods of the namespaces holding copies too; their copies go once they are detached
    // (no owner reference can reach across namespaces, so the garbage collector would not). Looked for in
    // dedicated mode too: the chain may have had a target earlier.
    let existing = copies::existing(&ctx.client, &chain).await?;
    let others: Vec<String> = existing.keys().cloned().collect();
    let pods = pods(&chain, ctx, &render::restart_hash(&chain)?, &others).await?;
    // (opext) Count the sidecars actually reached, so the Event tells what happened.
    let not_detached = detach_all(&pods, ctx).await;
    for (other, cm) in &existing {
        copies::delete(&ctx.client, other, cm).await?;
    }
    let (type_, note) = cleanup_note(pods.len(), &not_detached);
    let event = Event {
        type_,
        reason: "Deleted".into(),
        note: Some(note),
        action: "Cleanup".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &chain.object_ref(&())).await {
        warn!(error = %e, "cannot publish event");
    }
    Ok(Action::await_change())
}

/// (opext) The cleanup Event: how many of `pods` sidecars were reached and detached, and which were not.
pub fn cleanup_note(pods: usize, not_detached: &[String]) -> (EventType, String) {
    let detached = pods.saturating_sub(not_detached.len());
    if pods == 0 {
        return (
            EventType::Normal,
            "no data-plane pod existed: nothing to detach".into(),
        );
    }
    if not_detached.is_empty() {
        return (
            EventType::Normal,
            format!("detached the chain from {detached} of {pods} sidecar(s)"),
        );
    }
    (
        EventType::Warning,
        format!(
            "detached the chain from {detached} of {pods} sidecar(s); not reached: {} (their pods go \
             with the Deployment)",
            not_detached.join(", ")
        ),
    )
}

/// Fails with a clear message when the CRD is not installed.
pub async fn check_crd(client: &Client) -> Result<()> {
    let api: Api<VNFChain> = Api::all(client.clone());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::CrdMissing),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Whether the Prometheus Operator's PodMonitor kind is served (a PodMonitor is rendered then).
pub async fn pod_monitor_available(client: &Client) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &render::pod_monitor_resource());
    api.list(&ListParams::default().limit(1)).await.is_ok()
}

/// Default number of reconciles running at once: bounds the burst of API requests and gRPC pushes (and the
/// memory) when the operator starts with many chains, while chains are still served in parallel.
pub const CONCURRENCY: u16 = 32;

/// Runs the controller until `shutdown` resolves, with at most `concurrency` reconciles at once (0: no limit).
pub async fn run<S: Sidecars>(
    ctx: Arc<Context<S>>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // Read by the same reader as `vnfctl validate` (read.rs), not by typed decoding alone.
    let chains: Api<ChainObject> = Api::all(client.clone());
    let config = watcher::Config::default().any_semantic();
    // Only what the operator manages: never every Deployment, ConfigMap, Service or Pod of the cluster.
    let owned = config.clone().labels(MANAGED_BY_SELECTOR);
    // The chains' pods: dedicated ones and the workload pods the webhook injected (labelled with the chain,
    // not managed-by the operator: they are the user's).
    let pods = config.clone().labels(render::CHAIN_LABEL);
    let controller = Controller::new(chains, config.clone());
    let store = controller.store();
    // Sidecar mode across namespaces: a namespace that opts in or out, or whose labels change, may start or
    // stop matching a chain's namespaceSelector; the chains that have one look again. A label-selected watch
    // reports an object that stops matching as deleted, so opting out is seen too.
    let namespaces = config.clone().labels(&format!(
        "{}={}",
        crate::webhook::NAMESPACE_LABEL,
        crate::webhook::NAMESPACE_ENABLED
    ));
    // The copies in other namespaces carry no owner reference: found by their labels.
    let copies = config.clone().labels(copies::CHAIN_NAMESPACE_LABEL);
    controller
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned)
        .watches(Api::<Pod>::all(client.clone()), pods, pod_chain)
        .watches(Api::<ConfigMap>::all(client.clone()), copies, copy_chain)
        .watches(Api::<Namespace>::all(client), namespaces, move |_| {
            store
                .state()
                .iter()
                .filter(|c| {
                    c.chain
                        .spec
                        .target
                        .as_ref()
                        .is_some_and(|t| t.namespace_selector.is_some())
                })
                .map(|c| ObjectRef::from_obj(&**c))
                .collect::<Vec<_>>()
        })
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile_object, error_policy_object, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(chain = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
}

/// The chain a pod belongs to: the `buildvnf.io/injected` annotation (`<namespace>/<chain>`, a pod the
/// webhook injected, maybe in another namespace than the chain's), else its `buildvnf.io/chain` label in the
/// pod's namespace (a dedicated pod).
fn pod_chain(pod: Pod) -> Option<ObjectRef<ChainObject>> {
    if let Some((ns, name)) = pod
        .annotations()
        .get(crate::webhook::INJECTED_ANNOTATION)
        .and_then(|a| a.split_once('/'))
    {
        return Some(ObjectRef::new(name).within(ns));
    }
    let chain = pod.labels().get(render::CHAIN_LABEL)?;
    Some(ObjectRef::new(chain).within(&pod.namespace()?))
}

/// The chain a copy (copies.rs) belongs to, from its labels.
fn copy_chain(cm: ConfigMap) -> Option<ObjectRef<ChainObject>> {
    let labels = cm.labels();
    let name = labels.get(render::CHAIN_LABEL)?;
    let ns = labels.get(copies::CHAIN_NAMESPACE_LABEL)?;
    Some(ObjectRef::new(name).within(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_map_to_their_chain_by_label() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "edge-dataplane-x", "namespace": "ns1",
                         "labels": {render::CHAIN_LABEL: "edge"}}
        }))
        .expect("pod");
        assert_eq!(
            pod_chain(pod),
            Some(ObjectRef::<ChainObject>::new("edge").within("ns1"))
        );
        let unlabelled: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns1"}}))
                .expect("pod");
        assert_eq!(pod_chain(unlabelled), None);
    }

    #[tokio::test]
    async fn not_ready_back_off_grows_caps_and_restarts_on_progress() {
        let state = Arc::new(Mutex::new(crate::fake::ClusterState::default()));
        let ctx = Context::new(
            crate::fake::fake_client(state),
            crate::fake::FakeSidecars::default(),
            Settings::default(),
            Metrics::new().expect("metrics"),
        );
        let secs = |d: Duration| d.as_secs_f64();
        // ±20% jitter around 4 s, 8 s, 16 s …
        let first = secs(ctx.not_ready_delay("ns/a", 1));
        assert!((3.2..=4.8).contains(&first), "{first}");
        let second = secs(ctx.not_ready_delay("ns/a", 1));
        assert!((6.4..=9.6).contains(&second), "{second}");
        for _ in 0..20 {
            ctx.not_ready_delay("ns/a", 1);
        }
        assert_eq!(ctx.not_ready_delay("ns/a", 1), NOT_READY_MAX_DELAY);
        // Another chain has its own count; progress starts the back-off again.
        assert!(secs(ctx.not_ready_delay("ns/b", 1)) <= 4.8);
        assert!(secs(ctx.not_ready_delay("ns/a", 2)) <= 4.8);
        ctx.forget_not_ready("ns/a");
        assert!(secs(ctx.not_ready_delay("ns/a", 2)) <= 4.8);
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let mid = |n| backoff(n, 500).as_secs_f64();
        assert!((mid(1) - 1.0).abs() < 1e-9);
        assert!((mid(2) - 2.0).abs() < 1e-9);
        assert!((mid(5) - 16.0).abs() < 1e-9);
        assert!((mid(30) - 300.0).abs() < 1e-9);
        assert!(backoff(3, 0).as_secs_f64() < backoff(3, 999).as_secs_f64());
        assert!(backoff(3, 0).as_secs_f64() >= 4.0 * 0.8 - 1e-9);
    }
}
