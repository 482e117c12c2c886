//! The gRPC control API (`buildvnf.dataplane.v1.Dataplane`): ApplyChain, GetStatus, WatchStats, Detach.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dataplane_api::dataplane_server::Dataplane as DataplaneApi;
use dataplane_api::{
    ApplyChainRequest, ApplyChainResponse, ChainRef, ControlEndpoint, DataplaneStatus,
    DetachRequest, FunctionStats, GetStatusRequest, Hook, InterfaceAttachment, LatencySummary,
    StatsSnapshot, WatchStatsRequest,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::shared::{Poisoned, Shared};
use cnf_dataplane::compose::{ApplyError, Dataplane};
use cnf_dataplane::engine::abi;

/// The service, sharing the daemon's state.
#[derive(Clone)]
pub struct Service {
    state: Arc<Shared>,
}

impl Service {
    /// A service over `state`.
    pub fn new(state: Arc<Shared>) -> Self {
        Self { state }
    }

    /// Runs the update `f` on a blocking thread (an apply can take seconds: it must not hold an
    /// executor thread), after the updates before it. Answers once the new status is published
    /// (the metrics follow, see [`Shared::update_then`]).
    async fn update<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Dataplane) -> R + Send + 'static,
    ) -> Result<R, Status> {
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            state.update_then(f, |r| {
                let _ = tx.send(r);
            })
        });
        match rx.await {
            Ok(r) => r.map_err(poisoned),
            // the update panicked before it answered: the task says how
            Err(_) => Err(match task.await {
                Err(e) => Status::internal(format!("the update task failed: {e}")),
                Ok(()) => Status::internal("the update task ended without an answer"),
            }),
        }
    }
}

fn poisoned(e: Poisoned) -> Status {
    Status::internal(e.to_string())
}

fn hook_of(mode: &str) -> Hook {
    match mode {
        "xdp-native" => Hook::Xdp,
        "xdp-generic" => Hook::XdpGeneric,
        "tc-ingress" => Hook::Tc,
        _ => Hook::None,
    }
}

/// The status message for the current state.
pub fn status_of(dp: &Dataplane) -> DataplaneStatus {
    let (namespace, name) = dp.chain();
    DataplaneStatus {
        chain: Some(ChainRef {
            namespace: namespace.into(),
            name: name.into(),
        }),
        applied_generation: dp.generation(),
        attachments: attachments(dp),
        last_error: dp.last_error().into(),
        control_plane: dp
            .control_plane()
            .iter()
            .map(|e| ControlEndpoint {
                listener: e.listener.into(),
                endpoint: e.addr.to_string(),
                interface: e.interface.clone(),
                allowed: e.allowed,
                reason: e.reason.clone(),
            })
            .collect(),
    }
}

fn attachments(dp: &Dataplane) -> Vec<InterfaceAttachment> {
    dp.attachments()
        .iter()
        .map(|a| InterfaceAttachment {
            interface: a.interface.clone(),
            hook: hook_of(a.mode) as i32,
            fallback_reason: a.fallback_reason.clone(),
            error: String::new(),
        })
        .collect()
}

/// Percentiles from a log2 histogram (bucket i holds [2^i, 2^(i+1)) ns); each is the bucket's upper bound.
pub fn summarize(hist: &[u64; abi::HIST_BUCKETS]) -> LatencySummary {
    let count: u64 = hist.iter().sum();
    let at = |q: f64| -> u64 {
        if count == 0 {
            return 0;
        }
        let rank = (q * count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return 1u64 << (i + 1).min(63);
            }
        }
        0
    };
    LatencySummary {
        count,
        p50_ns: at(0.5),
        p99_ns: at(0.99),
        p999_ns: at(0.999),
        max_ns: hist
            .iter()
            .rposition(|n| *n > 0)
            .map(|i| 1u64 << (i + 1).min(63))
            .unwrap_or(0),
    }
}

/// Names of the engine's drop reasons (index = `abi::reason::*`), for labels.
pub use abi::reason::NAMES as DROP_REASONS;

/// A stats snapshot of the running chain.
pub fn snapshot(dp: &Dataplane) -> StatsSnapshot {
    let functions = dp
        .function_stats()
        .into_values()
        .map(|(f, s)| FunctionStats {
            name: f.name,
            r#type: f.type_,
            packets_in: s.packets_in,
            bytes_in: s.bytes_in,
            passed: s.passed,
            dropped: s.dropped_total(),
            drops_by_reason: s
                .dropped
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| {
                    (
                        DROP_REASONS.get(i).copied().unwrap_or("other").to_string(),
                        *n,
                    )
                })
                .collect(),
            latency: Some(summarize(&s.latency_hist)),
        })
        .collect();
    StatsSnapshot {
        generation: dp.generation(),
        unix_time_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        functions,
        chain_latency: dp.chain_counters().map(|c| summarize(&c.latency_hist)),
    }
}

fn to_status(e: ApplyError) -> Status {
    match e {
        ApplyError::Invalid(errors) => Status::invalid_argument(errors.to_string()),
        ApplyError::Unsupported { .. } => Status::invalid_argument(e.to_string()),
        ApplyError::Generation(refusal) => refusal.status(),
        ApplyError::NeedsRestart(_) => Status::failed_precondition(e.to_string()),
        ApplyError::Engine(_) | ApplyError::Userspace(_) => {
            Status::aborted(format!("{e}; the previous generation is still running"))
        }
        ApplyError::ShuttingDown => Status::unavailable(e.to_string()),
        ApplyError::Occupied { .. } | ApplyError::PinDirBusy(_) => {
            Status::failed_precondition(e.to_string())
        }
    }
}

type StatsStream = Pin<Box<dyn Stream<Item = Result<StatsSnapshot, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DataplaneApi for Service {
    async fn apply_chain(
        &self,
        request: Request<ApplyChainRequest>,
    ) -> Result<Response<ApplyChainResponse>, Status> {
        let req = request.into_inner();
        self.update(move |dp| {
            let (namespace, name) = match &req.chain {
                Some(c) => (c.namespace.clone(), c.name.clone()),
                None => {
                    let (ns, name) = dp.chain();
                    (ns.to_owned(), name.to_owned())
                }
            };
            // The request is read before anything else is looked at, by the reader every door shares
            // (dataplane_api::door, also the operator's fake sidecar's), on the update's blocking thread:
            // a large chain's validation never holds the executor.
            let chain = dataplane_api::door::read_request(&namespace, &name, &req.spec_json)?;
            let (ns, running) = dp.chain();
            if (namespace.as_str(), name.as_str()) != (ns, running) {
                return Err(Status::failed_precondition(format!(
                    "this data plane runs chain {ns}/{running}, not {namespace}/{name}"
                )));
            }
            let changed = dp.apply_valid(req.generation, &chain).map_err(to_status)?;
            Ok(Response::new(ApplyChainResponse {
                applied_generation: dp.generation(),
                changed,
                attachments: attachments(dp),
            }))
        })
        .await?
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<DataplaneStatus>, Status> {
        // the last published status while an update runs
        Ok(Response::new(self.state.status().map_err(poisoned)?))
    }

    type WatchStatsStream = StatsStream;

    async fn watch_stats(
        &self,
        request: Request<WatchStatsRequest>,
    ) -> Result<Response<Self::WatchStatsStream>, Status> {
        let interval = Duration::from_millis(u64::from(
            request.into_inner().interval_ms.clamp(100, 60_000),
        ));
        let state = self.state.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let snap = match state.read(snapshot) {
                    Ok(Some(snap)) => Ok(snap),
                    Ok(None) => continue, // an update runs: this tick is skipped
                    Err(e) => Err(poisoned(e)),
                };
                if tx.send(snap).await.is_err() {
                    break; // the client went away
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn detach(&self, _: Request<DetachRequest>) -> Result<Response<DataplaneStatus>, Status> {
        self.update(|dp| {
            dp.detach().map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(status_of(dp)))
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_drop_reason_has_its_label() {
        use abi::reason::*;
        for (i, name) in [
            (MALFORMED, "malformed"),
            (FW_RULE, "firewall_rule"),
            (FW_DEFAULT, "firewall_default"),
            (RATELIMIT, "rate_limited"),
            (NO_CONFIG, "no_config"),
            (CHAIN_BROKEN, "chain_broken"),
            (TTL_EXCEEDED, "ttl_exceeded"),
            (FWD_DROP, "forward_failed"),
            (NAT_EXHAUSTED, "nat_ports_exhausted"),
            (LB_NO_BACKEND, "lb_no_backend"),
            (NO_XSK, "no_xsk"),
            (ENCAP_DEPTH, "encapsulation_depth"),
            (EXT_DEPTH, "extension_header_depth"),
            (TINY_FRAGMENT, "tiny_fragment"),
            (FRAG_UNKNOWN, "fragment_unknown_flow"),
            (NON_IP, "non_ip"),
            (FRAG_PARKED, "fragment_parked"),
            (FRAG_EXPIRED, "fragment_expired"),
        ] {
            assert_eq!(DROP_REASONS[i], name);
        }
        assert_eq!(
            DROP_REASONS.len(),
            FRAG_EXPIRED + 1,
            "a reason without a label"
        );
        assert_eq!(
            DROP_REASONS.len(),
            abi::NR_REASONS,
            "every counter slot named"
        );
    }

    #[test]
    fn percentiles_from_log2_buckets() {
        let mut h = [0u64; abi::HIST_BUCKETS];
        h[6] = 98; // [64, 128) ns
        h[10] = 1; // [1024, 2048) ns
        h[20] = 1; // ~1 ms
        let s = summarize(&h);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ns, 128);
        assert_eq!(s.p99_ns, 2048);
        assert_eq!(s.p999_ns, 1 << 21);
        assert_eq!(s.max_ns, 1 << 21);
        assert_eq!(summarize(&[0; abi::HIST_BUCKETS]).count, 0);
    }
}
