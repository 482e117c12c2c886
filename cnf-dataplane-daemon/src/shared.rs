//! The daemon's state as the gRPC service and the metrics endpoint share it: updates are serialized
//! and run off the async executor; readers never wait for an update.
//!
//! Applying a large chain holds the [`Dataplane`] for seconds (validation, 10,000 rule map writes).
//! Readers (`/metrics`, `/readyz`, GetStatus, WatchStats) therefore take the state only when it is
//! free: while an update runs, they answer from the state last published — the status, readiness and
//! metrics text recorded at the end of the previous update or read. Published metrics are replaced
//! only under the state lock, in the order they were read, so exported counters never go back.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use dataplane_api::DataplaneStatus;

use cnf_dataplane::compose::Dataplane;

/// How long a reader retries a state held by another short reader before it answers from the
/// published state (well under the 50 ms a reader promises).
const READ_PATIENCE: Duration = Duration::from_millis(20);
/// How long a scrape waits for the metrics of an update that was just answered (rendering takes a few
/// ms; the bound only matters if rendering hangs).
const METRICS_PATIENCE: Duration = Duration::from_millis(500);

/// The state is poisoned (a thread panicked while holding it).
#[derive(Debug, thiserror::Error)]
#[error("data plane state poisoned")]
pub struct Poisoned;

/// Counts an update from before it waits for the state until it ends, also by a panic.
struct Updating<'a>(&'a AtomicUsize);

impl<'a> Updating<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Updating<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What readers get while an update runs.
struct Published {
    status: DataplaneStatus,
    ready: bool,
    metrics: String,
}

/// The daemon's [`Dataplane`], one update at a time, and its last published view.
pub struct Shared {
    dp: Mutex<Dataplane>,
    /// Updates running or waiting for the state.
    updating: AtomicUsize,
    /// Set between an update's answer and the publication of its metrics: a scrape then waits for
    /// them (a few ms of counter reads), so a client that saw its update answered never scrapes the
    /// metrics of the state before it.
    metrics_pending: AtomicBool,
    published: Mutex<Published>,
}

impl Shared {
    /// Shares `dp`, publishing its state.
    pub fn new(dp: Dataplane) -> Self {
        let published = Published {
            status: crate::grpc::status_of(&dp),
            ready: dp.ready(),
            metrics: crate::metrics::render(&dp),
        };
        Self {
            dp: Mutex::new(dp),
            updating: AtomicUsize::new(0),
            metrics_pending: AtomicBool::new(false),
            published: Mutex::new(published),
        }
    }

    /// Runs the update `f` on the state, waiting for the update before it (updates never interleave),
    /// then publishes the new state. Blocks: call it from a blocking thread, not the async executor.
    pub fn update<R>(&self, f: impl FnOnce(&mut Dataplane) -> R) -> Result<R, Poisoned> {
        let mut out = Err(Poisoned);
        self.update_then(f, |r| out = r);
        out
    }

    /// [`Shared::update`] that hands `f`'s result to `reply` as soon as the new status and readiness
    /// are published, and renders the metrics after that (a scrape meanwhile answers with the last
    /// published ones, as during the update): an ApplyChain's answer does not wait for a scrape's
    /// worth of counter reads. The next update still waits for the whole publication.
    pub fn update_then<R>(
        &self,
        f: impl FnOnce(&mut Dataplane) -> R,
        reply: impl FnOnce(Result<R, Poisoned>),
    ) {
        let _updating = Updating::new(&self.updating);
        let Ok(mut dp) = self.dp.lock() else {
            return reply(Err(Poisoned));
        };
        let r = f(&mut dp);
        {
            let mut p = self.publish_lock();
            p.status = crate::grpc::status_of(&dp);
            p.ready = dp.ready();
        }
        self.metrics_pending.store(true, Ordering::SeqCst);
        reply(Ok(r));
        let metrics = crate::metrics::render(&dp);
        self.publish_lock().metrics = metrics;
        self.metrics_pending.store(false, Ordering::SeqCst);
    }

    /// The state, when it is free within [`READ_PATIENCE`] and no update holds or awaits it.
    fn try_read(&self) -> Result<Option<MutexGuard<'_, Dataplane>>, Poisoned> {
        let start = Instant::now();
        loop {
            if self.updating.load(Ordering::SeqCst) > 0 {
                return Ok(None);
            }
            match self.dp.try_lock() {
                Ok(dp) => return Ok(Some(dp)),
                Err(TryLockError::Poisoned(_)) => return Err(Poisoned),
                Err(TryLockError::WouldBlock) if start.elapsed() < READ_PATIENCE => {
                    std::thread::sleep(Duration::from_micros(200))
                }
                Err(TryLockError::WouldBlock) => return Ok(None),
            }
        }
    }

    fn publish_lock(&self) -> MutexGuard<'_, Published> {
        // the published view is plain data, whole after every assignment: a panic elsewhere
        // cannot leave it half-written
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The status of the chain: current, or the last published while an update runs. Covers the
    /// pod's addresses gained since the last write (see [`Dataplane::refresh_control_plane`]).
    pub fn status(&self) -> Result<DataplaneStatus, Poisoned> {
        match self.try_read()? {
            Some(mut dp) => {
                dp.refresh_control_plane();
                let status = crate::grpc::status_of(&dp);
                self.publish_lock().status = status.clone();
                Ok(status)
            }
            None => Ok(self.publish_lock().status.clone()),
        }
    }

    /// Whether the chain is attached to every interface (current, or the last published).
    pub fn ready(&self) -> Result<bool, Poisoned> {
        match self.try_read()? {
            Some(dp) => {
                let ready = dp.ready();
                self.publish_lock().ready = ready;
                Ok(ready)
            }
            None => Ok(self.publish_lock().ready),
        }
    }

    /// The Prometheus exposition (current, or the last published).
    pub fn metrics(&self) -> Result<String, Poisoned> {
        // an answered update's metrics are being rendered: wait for them (bounded, never for an update)
        let start = Instant::now();
        while self.metrics_pending.load(Ordering::SeqCst) && start.elapsed() < METRICS_PATIENCE {
            std::thread::sleep(Duration::from_micros(200));
        }
        match self.try_read()? {
            Some(dp) => {
                let text = crate::metrics::render(&dp);
                // replaced while the state is held: a later read never publishes older counters
                self.publish_lock().metrics = text.clone();
                Ok(text)
            }
            None => Ok(self.publish_lock().metrics.clone()),
        }
    }

    /// `f` on the current state, or `None` while an update runs (WatchStats skips that tick).
    pub fn read<R>(&self, f: impl FnOnce(&Dataplane) -> R) -> Result<Option<R>, Poisoned> {
        Ok(self.try_read()?.map(|dp| f(&dp)))
    }
}
