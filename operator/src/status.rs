//! Truthful status as a pure function of what the operator observed: conditions, attachments, ready replicas.
//!
//! `Ready` is true only when every desired replica reports the current generation attached on every
//! interface of the chain; zero replicas, an unreachable sidecar or a stale generation is never Ready.
//! A Deployment that cannot make pods (`ReplicaFailure`, e.g. `FailedCreate` from Pod Security admission) or
//! gave up (`Progressing=False`, `ProgressDeadlineExceeded`) makes the chain `Degraded` with the
//! Deployment's reason and message, and `Progressing=False`. A reconcile that fails (e.g. a `403` from the
//! API server) sets `Degraded=True` with the error's reason and message ([`with_error`]); the next reconcile
//! that succeeds computes `Degraded` afresh.

use crds::{
    AttachedHook, Attachment, CONDITION_DEGRADED, CONDITION_INVALID_SPEC, CONDITION_PROGRESSING,
    CONDITION_READY, VNFChain, VNFChainStatus, ValidationErrors,
};
use dataplane_api::{DataplaneStatus, Hook};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `Degraded` reason of a generation a replica refused.
pub const APPLY_FAILED: &str = "ApplyFailed";

/// What one replica (pod) looked like when the operator asked.
#[derive(Clone, Debug)]
pub struct ReplicaObservation {
    /// Pod name.
    pub pod: String,
    /// Node the pod runs on.
    pub node: Option<String>,
    /// The sidecar's answer to `GetStatus`, or why there was none.
    pub sidecar: Result<DataplaneStatus, String>,
}

/// A generation that failed on some replica, and what was done about it.
#[derive(Clone, Debug, PartialEq)]
pub struct PushFailure {
    /// The generation that failed.
    pub generation: i64,
    /// The pod where it failed.
    pub pod: String,
    /// The sidecar's reason (validation or verifier message).
    pub reason: String,
    /// Pods that had taken it and were returned to the previous generation.
    pub rolled_back: Vec<String>,
    /// The generation they were returned to.
    pub previous: Option<i64>,
}

/// A valid spec the operator's policy refuses (e.g. an image not on the allow-list): nothing is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// Condition reason (`ImageNotAllowed`).
    pub reason: &'static str,
    /// What was refused and how to allow it.
    pub message: String,
}

/// Everything a reconcile learned.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// `validate()` problems; when set, nothing was changed.
    pub invalid: Option<ValidationErrors>,
    /// A policy refusal; when set, nothing was changed (reported like an invalid spec, with its own reason).
    pub refused: Option<Refusal>,
    /// The chain's pods.
    pub replicas: Vec<ReplicaObservation>,
    /// A failed push in this reconcile.
    pub failure: Option<PushFailure>,
    /// The generation all replicas last applied (the ConfigMap's).
    pub known_good: Option<i64>,
    /// What keeps the chain's Deployment from running its pods, as the Deployment reports it.
    pub deployment: Option<DeploymentProblem>,
    /// Sidecar mode: selected pods without the sidecar (they do not count against `Ready`, they are listed).
    pub not_injected: Vec<crds::NotInjected>,
    /// Sidecar mode across namespaces: copies of the chain's ConfigMap and Secrets that could not be made
    /// (copies.rs), each naming the object; reported as `Degraded`.
    pub copy_problems: Vec<String>,
}

/// Most pods listed in `status.notInjected` (the count is in the `Ready` message).
pub const MAX_NOT_INJECTED: usize = 50;

/// A Deployment condition saying its pods cannot run.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentProblem {
    /// The Deployment's name.
    pub deployment: String,
    /// The condition's reason (`FailedCreate`, `ProgressDeadlineExceeded`, …).
    pub reason: String,
    /// The condition's message.
    pub message: String,
}

/// The problem a Deployment reports about its current spec: `ReplicaFailure=True` first, then
/// `Progressing=False`. A status older than the Deployment's generation says nothing about it.
pub fn deployment_problem(d: &Deployment) -> Option<DeploymentProblem> {
    let status = d.status.as_ref()?;
    if let (Some(generation), Some(observed)) = (d.metadata.generation, status.observed_generation)
        && observed < generation
    {
        return None;
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let find = |type_: &str, value: &str| {
        conditions
            .iter()
            .find(|c| c.type_.as_deref() == Some(type_) && c.status.as_deref() == Some(value))
    };
    let c = find("ReplicaFailure", "True").or_else(|| find("Progressing", "False"))?;
    Some(DeploymentProblem {
        deployment: d.metadata.name.clone().unwrap_or_default(),
        reason: c
            .reason
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| c.type_.clone())
            .unwrap_or_default(),
        message: c.message.clone().unwrap_or_default(),
    })
}

fn hook(h: i32) -> AttachedHook {
    match Hook::try_from(h) {
        Ok(Hook::Xdp) => AttachedHook::Xdp,
        Ok(Hook::XdpGeneric) => AttachedHook::XdpGeneric,
        Ok(Hook::Tc) => AttachedHook::Tc,
        _ => AttachedHook::None,
    }
}

/// The interfaces a replica must report attached.
pub fn chain_interfaces(chain: &VNFChain) -> Vec<String> {
    let i = &chain.spec.interfaces;
    std::iter::once(i.ingress.as_str().to_owned())
        .chain(i.egress.as_ref().map(|e| e.as_str().to_owned()))
        .collect()
}

/// Whether a replica runs `generation` on every interface of the chain.
pub fn replica_ready(chain: &VNFChain, generation: i64, r: &ReplicaObservation) -> bool {
    let Ok(st) = &r.sidecar else { return false };
    st.applied_generation == generation
        && chain_interfaces(chain).iter().all(|ifname| {
            st.attachments.iter().any(|a| {
                &a.interface == ifname && a.error.is_empty() && hook(a.hook) != AttachedHook::None
            })
        })
}

fn attachments(r: &ReplicaObservation) -> Vec<Attachment> {
    match &r.sidecar {
        Ok(st) if !st.attachments.is_empty() => st
            .attachments
            .iter()
            .map(|a| Attachment {
                pod: r.pod.clone(),
                node: r.node.clone(),
                interface: a.interface.clone(),
                hook: hook(a.hook),
                fallback_reason: (!a.fallback_reason.is_empty()).then(|| a.fallback_reason.clone()),
                applied_generation: (st.applied_generation > 0).then_some(st.applied_generation),
                error: (!a.error.is_empty()).then(|| a.error.clone()),
            })
            .collect(),
        Ok(st) => vec![Attachment {
            pod: r.pod.clone(),
            node: r.node.clone(),
            interface: String::new(),
            hook: AttachedHook::None,
            fallback_reason: None,
            applied_generation: (st.applied_generation > 0).then_some(st.applied_generation),
            error: Some(if st.last_error.is_empty() {
                "no chain attached".into()
            } else {
                st.last_error.clone()
            }),
        }],
        Err(e) => vec![Attachment {
            pod: r.pod.clone(),
            node: r.node.clone(),
            interface: String::new(),
            hook: AttachedHook::None,
            fallback_reason: None,
            applied_generation: None,
            error: Some(format!("sidecar unreachable: {e}")),
        }],
    }
}

/// Builds the condition list, keeping a condition's transition time when its status did not change.
struct Conditions<'a> {
    list: Vec<Condition>,
    previous: &'a [Condition],
    generation: i64,
    now: Time,
}

impl Conditions<'_> {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" }.to_string();
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        self.list.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            observed_generation: Some(self.generation),
            last_transition_time,
        });
    }
}

/// Computes the whole status from an observation.
pub fn compute(
    chain: &VNFChain,
    previous: Option<&VNFChainStatus>,
    obs: &Observation,
    now: Time,
) -> VNFChainStatus {
    let generation = chain.metadata.generation.unwrap_or_default();
    // Sidecar mode: every injected pod is a replica (the workload decides how many); dedicated: placement.
    let target = chain.spec.target.is_some();
    let desired = if target {
        obs.replicas.len() as i32
    } else {
        chain.spec.placement.replicas.max(0)
    };
    let prev_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let ready_replicas = obs
        .replicas
        .iter()
        .filter(|r| replica_ready(chain, generation, r))
        .count() as i32;
    let blocked = obs.invalid.is_some() || obs.refused.is_some();
    let ready = !blocked && desired > 0 && ready_replicas >= desired;
    let mut conditions = Conditions {
        list: Vec::new(),
        previous: prev_conditions,
        generation,
        now,
    };

    let rollout = Rollout {
        generation,
        desired,
        ready_replicas,
        ready,
        target,
    };
    let (ready_reason, ready_message) = ready_condition(obs, &rollout);
    conditions.set(CONDITION_READY, ready, ready_reason, ready_message);

    let (prog, prog_reason, prog_message) = progressing_condition(obs, &rollout);
    conditions.set(CONDITION_PROGRESSING, prog, prog_reason, prog_message);

    set_degraded(&mut conditions, obs);

    match (&obs.invalid, &obs.refused) {
        (Some(e), _) => conditions.set(
            CONDITION_INVALID_SPEC,
            true,
            "ValidationFailed",
            first_lines(e),
        ),
        (None, Some(r)) => {
            conditions.set(CONDITION_INVALID_SPEC, true, r.reason, r.message.clone())
        }
        (None, None) => conditions.set(CONDITION_INVALID_SPEC, false, "Valid", String::new()),
    }

    VNFChainStatus {
        observed_generation: Some(generation),
        conditions: conditions.list,
        replicas: obs.replicas.len() as i32,
        ready_replicas,
        attachments: obs.replicas.iter().flat_map(attachments).collect(),
        last_applied_generation: applied_by_a_replica(obs)
            .or_else(|| previous.and_then(|p| p.last_applied_generation)),
        failed_generation: obs.failure.as_ref().map(|f| f.generation).or_else(|| {
            // A failure stays recorded until the spec moves past it.
            previous
                .and_then(|p| p.failed_generation)
                .filter(|g| *g == generation)
        }),
        function_names: Some(function_names(chain)),
        selector: crate::render::pod_selector(chain).ok(),
        not_injected: obs
            .not_injected
            .iter()
            .take(MAX_NOT_INJECTED)
            .cloned()
            .collect(),
    }
}

/// What [`compute`] counted of the rollout.
#[derive(Clone, Copy)]
struct Rollout {
    generation: i64,
    desired: i32,
    ready_replicas: i32,
    ready: bool,
    target: bool,
}

/// Reason and message of the Ready condition.
fn ready_condition<'a>(obs: &'a Observation, r: &Rollout) -> (&'a str, String) {
    let Rollout {
        generation,
        desired,
        ready_replicas,
        ready,
        target,
    } = *r;
    if let Some(e) = &obs.invalid {
        (
            "InvalidSpec",
            format!(
                "the spec is invalid, nothing was changed: {}",
                first_lines(e)
            ),
        )
    } else if let Some(r) = &obs.refused {
        (
            r.reason,
            format!("the spec is refused, nothing was changed: {}", r.message),
        )
    } else if ready && target {
        (
            "AllReplicasReady",
            format!(
                "{ready_replicas}/{desired} injected pods run generation {generation}{}",
                not_injected_note(obs)
            ),
        )
    } else if ready {
        (
            "AllReplicasReady",
            format!("{ready_replicas}/{desired} replicas run generation {generation}"),
        )
    } else if target && obs.replicas.is_empty() {
        (
            "NoInjectedPods",
            format!(
                "no pod selected by spec.target runs the sidecar yet{}",
                not_injected_note(obs)
            ),
        )
    } else if let Some(p) = &obs.deployment {
        (
            p.reason.as_str(),
            format!(
                "{ready_replicas}/{desired} replicas run generation {generation}; Deployment {}: {}",
                p.deployment, p.message
            ),
        )
    } else if obs.replicas.is_empty() {
        (
            "NoReplicas",
            format!("0/{desired} replicas: no data-plane pod exists yet"),
        )
    } else {
        (
            "ReplicasNotReady",
            format!("{ready_replicas}/{desired} replicas run generation {generation}"),
        )
    }
}

/// Status, reason and message of the Progressing condition.
fn progressing_condition<'a>(obs: &'a Observation, r: &Rollout) -> (bool, &'a str, String) {
    let Rollout {
        generation, ready, ..
    } = *r;
    let degraded = obs.failure.is_some();
    if obs.invalid.is_some() {
        (
            false,
            "InvalidSpec",
            "not rolling out an invalid spec".to_string(),
        )
    } else if let Some(r) = &obs.refused {
        (
            false,
            r.reason,
            "not rolling out a refused spec".to_string(),
        )
    } else if ready {
        (
            false,
            "Complete",
            format!("generation {generation} is applied everywhere"),
        )
    } else if degraded {
        (
            false,
            "RolledBack",
            "the rollout stopped at a failed apply".to_string(),
        )
    } else if let Some(p) = &obs.deployment {
        (
            false,
            p.reason.as_str(),
            format!(
                "Deployment {} cannot run the pods: {}",
                p.deployment, p.message
            ),
        )
    } else {
        (
            true,
            "RollingOut",
            format!("applying generation {generation}"),
        )
    }
}

/// The Degraded condition: a failed apply, else the Deployment's problem, else copy conflicts, else a control
/// plane at risk.
fn set_degraded(conditions: &mut Conditions<'_>, obs: &Observation) {
    match &obs.failure {
        Some(f) => {
            let back = match (f.rolled_back.is_empty(), f.previous) {
                (true, _) => "no replica had taken it".to_string(),
                (false, Some(p)) => {
                    format!("{} returned to generation {p}", f.rolled_back.join(", "))
                }
                (false, None) => format!(
                    "{} could not be returned (no previous generation)",
                    f.rolled_back.join(", ")
                ),
            };
            conditions.set(
                CONDITION_DEGRADED,
                true,
                APPLY_FAILED,
                format!(
                    "generation {} failed on {}: {}; {back}",
                    f.generation, f.pod, f.reason
                ),
            );
        }
        None => match &obs.deployment {
            Some(p) => conditions.set(
                CONDITION_DEGRADED,
                true,
                &p.reason,
                format!("Deployment {}: {}", p.deployment, p.message),
            ),
            None if !obs.copy_problems.is_empty() => conditions.set(
                CONDITION_DEGRADED,
                true,
                crate::copies::COPY_CONFLICT,
                obs.copy_problems.join("; "),
            ),
            None => match control_plane_at_risk(obs) {
                Some(message) => {
                    conditions.set(CONDITION_DEGRADED, true, CONTROL_PLANE_AT_RISK, message)
                }
                None => conditions.set(CONDITION_DEGRADED, false, "AsExpected", String::new()),
            },
        },
    }
}

/// "; N selected pods are not injected (roll them: CMD)" or nothing.
fn not_injected_note(obs: &Observation) -> String {
    match obs.not_injected.first() {
        None => String::new(),
        Some(first) => format!(
            "; {} selected pod(s) run without the sidecar (status.notInjected), e.g. {}/{}: {}",
            obs.not_injected.len(),
            first.namespace,
            first.pod,
            first.command
        ),
    }
}

/// `Degraded` reason when a sidecar reports one of its own endpoints (gRPC, metrics: the operator's calls and
/// the kubelet's probes) that the chain's implicit control-plane allow does not cover.
pub const CONTROL_PLANE_AT_RISK: &str = "ControlPlaneAtRisk";

/// Every endpoint a replica reports as not exempt from its chain, as one message (`None` when all are).
fn control_plane_at_risk(obs: &Observation) -> Option<String> {
    let unexempt: Vec<String> = obs
        .replicas
        .iter()
        .filter_map(|r| r.sidecar.as_ref().ok().map(|st| (r, st)))
        .flat_map(|(r, st)| {
            st.control_plane.iter().filter(|e| !e.allowed).map(|e| {
                format!(
                    "{}: {} {} on {} ({})",
                    r.pod, e.listener, e.endpoint, e.interface, e.reason
                )
            })
        })
        .collect();
    (!unexempt.is_empty()).then(|| {
        format!(
            "the chain may cut the sidecar's own endpoints (probes, the operator's gRPC): {}",
            unexempt.join("; ")
        )
    })
}

/// The known-good generation, once at least one replica reported it applied (the ConfigMap holds it from
/// the first reconcile on, before any pod ran it).
fn applied_by_a_replica(obs: &Observation) -> Option<i64> {
    let kg = obs.known_good?;
    obs.replicas
        .iter()
        .any(|r| matches!(&r.sidecar, Ok(st) if st.applied_generation == kg))
        .then_some(kg)
}

/// The status after a failed reconcile: what was last written, with `Degraded=True` carrying the error's
/// reason and message (and `Ready=False` with the same reason when no `Ready` was ever written).
pub fn with_error(
    chain: &VNFChain,
    previous: Option<&VNFChainStatus>,
    reason: &str,
    message: &str,
    now: Time,
) -> VNFChainStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.function_names = Some(function_names(chain));
    status.selector = crate::render::pod_selector(chain).ok();
    let generation = chain.metadata.generation.unwrap_or_default();
    let mut conditions = Conditions {
        list: Vec::new(),
        previous: &status.conditions,
        generation,
        now,
    };
    let message = format!("reconcile of generation {generation} failed: {message}");
    if !status.conditions.iter().any(|c| c.type_ == CONDITION_READY) {
        conditions.set(CONDITION_READY, false, reason, message.clone());
    }
    conditions.set(CONDITION_DEGRADED, true, reason, message);
    let mut list = conditions.list;
    list.extend(
        status
            .conditions
            .iter()
            .filter(|c| c.type_ != CONDITION_DEGRADED)
            .cloned(),
    );
    list.sort_by_key(|c| condition_order(&c.type_));
    status.conditions = list;
    status
}

fn condition_order(type_: &str) -> usize {
    [
        CONDITION_READY,
        CONDITION_PROGRESSING,
        CONDITION_DEGRADED,
        CONDITION_INVALID_SPEC,
    ]
    .iter()
    .position(|t| *t == type_)
    .unwrap_or(usize::MAX)
}

/// A digest of what a not-ready chain has reached (generation, ready replicas, condition reasons, what each
/// replica attached): when it changes, the chain made progress and its back-off starts again.
pub fn progress(status: &VNFChainStatus) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    status.observed_generation.hash(&mut h);
    status.ready_replicas.hash(&mut h);
    for c in &status.conditions {
        (&c.type_, &c.status, &c.reason).hash(&mut h);
    }
    for a in &status.attachments {
        (&a.pod, &a.interface, a.applied_generation, &a.error).hash(&mut h);
        format!("{:?}", a.hook).hash(&mut h);
    }
    h.finish()
}

/// The chain's function names in order, comma-separated (the `Functions` printer column).
pub fn function_names(chain: &VNFChain) -> String {
    chain
        .spec
        .functions
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The conditions whose status changed, for Kubernetes Events.
pub fn transitions<'a>(
    previous: Option<&VNFChainStatus>,
    new: &'a VNFChainStatus,
) -> Vec<&'a Condition> {
    let prev = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    new.conditions
        .iter()
        .filter(|c| {
            let before = prev.iter().find(|p| p.type_ == c.type_);
            match before {
                // A new cause of Degraded is a transition of its own.
                Some(p) => {
                    p.status != c.status
                        || (c.type_ == CONDITION_DEGRADED
                            && c.status == "True"
                            && p.reason != c.reason)
                }
                // A new condition is an event only when it reports something (True), or Ready False.
                None => c.status == "True",
            }
        })
        .collect()
}

fn first_lines(e: &ValidationErrors) -> String {
    let mut lines: Vec<String> = e.0.iter().take(5).map(ToString::to_string).collect();
    if e.0.len() > 5 {
        lines.push(format!("and {} more", e.0.len() - 5));
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane_api::InterfaceAttachment;

    fn chain(replicas: i32, generation: i64) -> VNFChain {
        let mut c = crds::manifest::parse_single_chain(&format!(
            "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata: {{name: c}}\nspec:\n  functions: [{{name: m, type: monitor, monitor: {{}}}}]\n  interfaces: {{ingress: eth0, egress: eth1}}\n  placement: {{replicas: {replicas}}}\n"
        ))
        .expect("valid");
        c.metadata.generation = Some(generation);
        c
    }

    fn replica(pod: &str, generation: i64, ifaces: &[(&str, Hook)]) -> ReplicaObservation {
        ReplicaObservation {
            pod: pod.into(),
            node: Some("n1".into()),
            sidecar: Ok(DataplaneStatus {
                chain: None,
                applied_generation: generation,
                attachments: ifaces
                    .iter()
                    .map(|(i, h)| InterfaceAttachment {
                        interface: (*i).into(),
                        hook: *h as i32,
                        fallback_reason: String::new(),
                        error: String::new(),
                    })
                    .collect(),
                last_error: String::new(),
                control_plane: Vec::new(),
            }),
        }
    }

    fn cond<'a>(s: &'a VNFChainStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("time"))
    }

    #[test]
    fn ready_only_when_every_desired_replica_runs_this_generation_on_every_interface() {
        let c = chain(2, 3);
        let both = [("eth0", Hook::Xdp), ("eth1", Hook::Tc)];
        let obs = |replicas| Observation {
            replicas,
            ..Observation::default()
        };
        let s = compute(
            &c,
            None,
            &obs(vec![replica("a", 3, &both), replica("b", 3, &both)]),
            now(),
        );
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(s.ready_replicas, 2);
        assert_eq!(s.attachments.len(), 4);

        // One replica on the old generation, one missing an interface, none at all, unreachable sidecar.
        for replicas in [
            vec![replica("a", 3, &both), replica("b", 2, &both)],
            vec![
                replica("a", 3, &both),
                replica("b", 3, &[("eth0", Hook::Xdp)]),
            ],
            vec![],
            vec![
                replica("a", 3, &both),
                ReplicaObservation {
                    pod: "b".into(),
                    node: None,
                    sidecar: Err("connection refused".into()),
                },
            ],
            vec![
                replica("a", 3, &both),
                replica("b", 3, &[("eth0", Hook::None), ("eth1", Hook::Xdp)]),
            ],
        ] {
            let s = compute(&c, None, &obs(replicas.clone()), now());
            assert_eq!(cond(&s, "Ready").status, "False", "{replicas:?}");
            assert_eq!(cond(&s, "Progressing").status, "True");
        }
        let s = compute(&c, None, &obs(vec![]), now());
        assert_eq!(cond(&s, "Ready").reason, "NoReplicas");
    }

    #[test]
    fn an_endpoint_the_chain_may_cut_is_degraded_with_its_reason() {
        let c = chain(1, 2);
        let both = [("eth0", Hook::Xdp), ("eth1", Hook::Tc)];
        let mut r = replica("a", 2, &both);
        let endpoint = |allowed: bool| dataplane_api::ControlEndpoint {
            listener: "metrics".into(),
            endpoint: "10.0.0.5:9090".into(),
            interface: "eth0".into(),
            allowed,
            reason: if allowed {
                String::new()
            } else {
                "more than 64 addresses".into()
            },
        };
        if let Ok(st) = &mut r.sidecar {
            st.control_plane = vec![endpoint(true)];
        }
        let obs = |r: ReplicaObservation| Observation {
            replicas: vec![r],
            ..Observation::default()
        };
        // Control: every endpoint exempt is not Degraded.
        let s = compute(&c, None, &obs(r.clone()), now());
        assert_eq!(cond(&s, "Degraded").status, "False");
        if let Ok(st) = &mut r.sidecar {
            st.control_plane.push(endpoint(false));
        }
        let s = compute(&c, None, &obs(r), now());
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", CONTROL_PLANE_AT_RISK)
        );
        assert!(
            d.message
                .contains("a: metrics 10.0.0.5:9090 on eth0 (more than 64 addresses)"),
            "{}",
            d.message
        );
        // The chain still runs everywhere: Ready stays true, the risk is reported beside it.
        assert_eq!(cond(&s, "Ready").status, "True");
    }

    #[test]
    fn invalid_spec_and_failure_are_reported_with_reasons() {
        let c = chain(1, 4);
        let s = compute(
            &c,
            None,
            &Observation {
                invalid: Some(ValidationErrors::single("spec.functions[0].name", "bad")),
                ..Observation::default()
            },
            now(),
        );
        assert_eq!(cond(&s, "InvalidSpec").status, "True");
        assert!(
            cond(&s, "InvalidSpec")
                .message
                .contains("spec.functions[0].name: bad")
        );
        assert_eq!(cond(&s, "Ready").status, "False");

        let s = compute(
            &c,
            None,
            &Observation {
                replicas: vec![replica("a", 3, &[("eth0", Hook::Xdp), ("eth1", Hook::Xdp)])],
                failure: Some(PushFailure {
                    generation: 4,
                    pod: "b".into(),
                    reason: "verifier: invalid mem access".into(),
                    rolled_back: vec!["a".into()],
                    previous: Some(3),
                }),
                known_good: Some(3),
                ..Observation::default()
            },
            now(),
        );
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "ApplyFailed")
        );
        assert!(d.message.contains(
            "generation 4 failed on b: verifier: invalid mem access; a returned to generation 3"
        ));
        assert_eq!(s.failed_generation, Some(4));
        assert_eq!(s.last_applied_generation, Some(3));
        assert_eq!(cond(&s, "Progressing").status, "False");
    }

    #[test]
    fn transition_times_hold_and_events_fire_only_on_change() {
        let c = chain(1, 1);
        let ok = Observation {
            replicas: vec![replica("a", 1, &[("eth0", Hook::Xdp), ("eth1", Hook::Xdp)])],
            ..Observation::default()
        };
        let first = compute(&c, None, &ok, now());
        assert_eq!(
            transitions(None, &first)
                .iter()
                .map(|c| c.type_.as_str())
                .collect::<Vec<_>>(),
            ["Ready"]
        );
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_100).expect("time"));
        let second = compute(&c, Some(&first), &ok, later.clone());
        assert_eq!(cond(&second, "Ready").last_transition_time, now());
        assert!(transitions(Some(&first), &second).is_empty());
        let third = compute(&c, Some(&second), &Observation::default(), later.clone());
        assert_eq!(cond(&third, "Ready").last_transition_time, later);
        assert_eq!(
            transitions(Some(&second), &third).len(),
            2,
            "Ready went False, Progressing went True"
        );
    }
}
