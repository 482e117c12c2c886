//! Leader election on a `coordination.k8s.io/v1` Lease: one operator replica reconciles, the others wait.
//!
//! Acquire or renew with optimistic concurrency (the Lease's resourceVersion), so two candidates never both
//! believe they hold it; a holder that cannot renew within the lease duration stops leading. A holder that
//! shuts down releases the Lease (as client-go's `ReleaseOnCancel` does), so a successor leads at once
//! instead of waiting for it to expire.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use crate::Result;

/// Field manager of the operator's writes to the Lease (the same as its server-side applies).
const FIELD_MANAGER: &str = "buildvnf-operator";

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

/// Resolves when the work done while leading must stop: shutdown, or the Lease lost.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// Settings of one candidate.
#[derive(Clone, Debug)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// What one attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This candidate holds the lease (acquired or renewed).
    Leading,
    /// Another live holder has it.
    Following(String),
}

impl Elector {
    /// A candidate `identity` for Lease `name` (in the namespace of `api`).
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    fn spec(&self, now: Timestamp, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Acquires the lease if it is free or expired, renews it if held; a lost race is `Following`.
    pub async fn try_acquire_or_renew(&self) -> Result<Outcome> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&post_params(), &lease).await {
                Ok(_) => Ok(Outcome::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    Ok(Outcome::Following("another candidate".into()))
                }
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(MicroTime(renewed)), Some(secs)) => renewed
                .checked_add(SignedDuration::from_secs(i64::from(secs)))
                .map_or(true, |until| until < now),
            _ => true,
        };
        if holder != self.identity && !holder.is_empty() && !expired {
            return Ok(Outcome::Following(holder));
        }
        let (acquire, transitions) = if holder == self.identity {
            (
                spec.acquire_time.clone(),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (None, spec.lease_transitions.unwrap_or(0) + 1)
        };
        // Replace carries the resourceVersion we read: if someone else wrote in between, this fails with 409.
        lease.spec = Some(self.spec(now, acquire, transitions));
        match self.api.replace(&self.name, &post_params(), &lease).await {
            Ok(_) => Ok(Outcome::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Ok(Outcome::Following("another candidate".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the Lease up if this candidate holds it: the holder is cleared and the duration shortened to
    /// one second, like client-go's release
    /// (<https://github.com/kubernetes/client-go/blob/master/tools/leaderelection/leaderelection.go>,
    /// `release()`), so any candidate acquires it on its next try. Call it only after reconciling stopped.
    /// Returns whether it was released; a Lease held by another, missing, or written concurrently (409)
    /// is left alone.
    pub async fn release(&self) -> Result<bool> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        let now = MicroTime(Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: spec.lease_transitions,
            ..LeaseSpec::default()
        });
        match self.api.replace(&self.name, &post_params(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the Lease (trying every `retry`), then runs `work` while renewing it every `renew`. `work`
    /// gets a [`Stop`] that resolves on `shutdown` or when the Lease is lost, and must return soon after.
    /// After a shutdown the renewals stop and the Lease is [released](Self::release) (only now: `work` has
    /// finished, so two replicas never reconcile at once). Returns why leadership was lost, if it was (the
    /// Lease is then another's and is left alone).
    pub async fn lead<W, F>(
        &self,
        retry: Duration,
        renew: Duration,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
        work: W,
    ) -> Result<Option<String>>
    where
        W: FnOnce(Stop) -> F,
        F: Future<Output = ()>,
    {
        self.acquire(retry).await?;
        tracing::info!(identity = %self.identity, "leading");
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<String>();
        let keeper = tokio::spawn({
            let me = self.clone();
            async move {
                let _ = lost_tx.send(me.keep(renew).await);
            }
        });
        let lost = Arc::new(Mutex::new(None));
        let lost_reason = lost.clone();
        work(Box::pin(async move {
            tokio::select! {
                _ = shutdown => {},
                reason = lost_rx => {
                    if let Ok(mut l) = lost_reason.lock() {
                        *l = reason.ok();
                    }
                }
            }
        }))
        .await;
        if let Some(reason) = lost.lock().ok().and_then(|mut l| l.take()) {
            return Ok(Some(reason));
        }
        keeper.abort();
        let _ = keeper.await;
        match self.release().await {
            Ok(true) => tracing::info!("released the leader lease"),
            Ok(false) => tracing::info!("the leader lease was no longer ours"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the leader lease; it expires by itself")
            }
        }
        Ok(None)
    }

    /// Waits until this candidate leads, trying every `retry`.
    pub async fn acquire(&self, retry: Duration) -> Result<()> {
        loop {
            match self.try_acquire_or_renew().await? {
                Outcome::Leading => return Ok(()),
                Outcome::Following(holder) => {
                    tracing::info!(%holder, "waiting for the leader lease");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// Renews every `every` while leading; returns when leadership is lost (not renewed within the lease
    /// duration, or taken by another candidate), so the caller can stop reconciling.
    pub async fn keep(&self, every: Duration) -> String {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            match self.try_acquire_or_renew().await {
                Ok(Outcome::Leading) => last_ok = tokio::time::Instant::now(),
                Ok(Outcome::Following(holder)) => return format!("lease taken by {holder}"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                    if last_ok.elapsed() >= self.duration {
                        return format!("lease not renewed for {:?}: {e}", self.duration);
                    }
                }
            }
        }
    }
}
