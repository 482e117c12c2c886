//! Polling policies of the tier worker (the CRD's `dataplane.userspace.polling`) as a pure state
//! machine: after each loop iteration the worker reports whether it did work and gets told how to
//! wait.

use std::time::{Duration, Instant};

/// How the worker waits for packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Polling {
    /// Spin on the rings: lowest latency, one core at 100%.
    BusyPoll,
    /// Spin while traffic flows; when idle, yield, then sleep with growing pauses up to a cap.
    #[default]
    Adaptive,
    /// `poll(2)` on the socket until the kernel signals frames: least CPU, highest latency.
    Wakeup,
}

impl Polling {
    /// All policies.
    pub const ALL: [Polling; 3] = [Polling::BusyPoll, Polling::Adaptive, Polling::Wakeup];

    /// The CRD spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Polling::BusyPoll => "busyPoll",
            Polling::Adaptive => "adaptive",
            Polling::Wakeup => "wakeup",
        }
    }
}

impl From<crds::vnfchain::Polling> for Polling {
    fn from(p: crds::vnfchain::Polling) -> Self {
        match p {
            crds::vnfchain::Polling::BusyPoll => Polling::BusyPoll,
            crds::vnfchain::Polling::Adaptive => Polling::Adaptive,
            crds::vnfchain::Polling::Wakeup => Polling::Wakeup,
        }
    }
}

/// Tuning of the adaptive policy. The phases are measured in wall-clock time since the worker
/// last found work, so a loaded machine (where one `sched_yield` can take milliseconds) does not
/// stretch them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveTuning {
    /// How long an idle worker keeps spinning.
    pub spin: Duration,
    /// How long it then keeps calling `sched_yield`.
    pub yield_for: Duration,
    /// First sleep after that.
    pub min_sleep: Duration,
    /// Longest sleep (the latency a packet arriving at an idle tier can see on top).
    pub max_sleep: Duration,
}

impl Default for AdaptiveTuning {
    fn default() -> Self {
        Self {
            spin: Duration::from_micros(50),
            yield_for: Duration::from_micros(200),
            min_sleep: Duration::from_micros(2),
            max_sleep: Duration::from_micros(250),
        }
    }
}

/// What the worker should do after an idle iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// `spin_loop` hint, then poll the rings again.
    Spin,
    /// `sched_yield`.
    Yield,
    /// Sleep this long.
    Sleep(Duration),
    /// `poll(2)` on the socket with this timeout.
    Poll(Duration),
}

/// Backoff state of one worker.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: Polling,
    tuning: AdaptiveTuning,
    idle_since: Option<Instant>,
    sleep: Duration,
    poll_timeout: Duration,
}

impl Backoff {
    /// Backoff for `policy`; `poll_timeout` bounds a `Wakeup` wait (so the worker notices a stop).
    pub fn new(policy: Polling, tuning: AdaptiveTuning, poll_timeout: Duration) -> Self {
        Self {
            policy,
            tuning,
            idle_since: None,
            sleep: tuning.min_sleep,
            poll_timeout,
        }
    }

    /// The iteration moved packets: back to full speed.
    pub fn work(&mut self) {
        self.idle_since = None;
        self.sleep = self.tuning.min_sleep;
    }

    /// The iteration (at `now`) found nothing to do: how to wait.
    pub fn idle(&mut self, now: Instant) -> Idle {
        match self.policy {
            Polling::BusyPoll => Idle::Spin,
            Polling::Wakeup => Idle::Poll(self.poll_timeout),
            Polling::Adaptive => {
                let since = *self.idle_since.get_or_insert(now);
                let idle = now.saturating_duration_since(since);
                let t = &self.tuning;
                if idle < t.spin {
                    Idle::Spin
                } else if idle < t.spin + t.yield_for {
                    Idle::Yield
                } else {
                    let s = self.sleep;
                    self.sleep = (self.sleep * 2).min(t.max_sleep);
                    Idle::Sleep(s)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> AdaptiveTuning {
        AdaptiveTuning {
            spin: Duration::from_micros(30),
            yield_for: Duration::from_micros(20),
            min_sleep: Duration::from_micros(10),
            max_sleep: Duration::from_micros(35),
        }
    }

    #[test]
    fn adaptive_spins_yields_then_sleeps_growing_to_cap() {
        let t0 = Instant::now();
        let at = |us| t0 + Duration::from_micros(us);
        let mut b = Backoff::new(Polling::Adaptive, tuning(), Duration::from_millis(1));
        let got: Vec<Idle> = [0, 10, 29, 30, 49, 50, 60, 70, 80]
            .into_iter()
            .map(|us| b.idle(at(us)))
            .collect();
        let us = |n| Idle::Sleep(Duration::from_micros(n));
        assert_eq!(
            got,
            vec![
                Idle::Spin,
                Idle::Spin,
                Idle::Spin,
                Idle::Yield,
                Idle::Yield,
                us(10),
                us(20),
                us(35),
                us(35)
            ]
        );
        b.work();
        assert_eq!(b.idle(at(1000)), Idle::Spin, "work restarts the idle clock");
        assert_eq!(b.idle(at(1035)), Idle::Yield);
        assert_eq!(b.idle(at(1050)), us(10), "work resets the sleep too");
    }

    #[test]
    fn busy_and_wakeup_are_constant() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Polling::BusyPoll, tuning(), Duration::from_millis(7));
        assert!((0..100).all(|i| b.idle(t0 + Duration::from_millis(i)) == Idle::Spin));
        let mut w = Backoff::new(Polling::Wakeup, tuning(), Duration::from_millis(7));
        assert!(
            (0..100)
                .all(|i| w.idle(t0 + Duration::from_millis(i))
                    == Idle::Poll(Duration::from_millis(7)))
        );
    }

    #[test]
    fn crd_mapping() {
        assert_eq!(
            Polling::from(crds::vnfchain::Polling::BusyPoll),
            Polling::BusyPoll
        );
        assert_eq!(
            Polling::from(crds::vnfchain::Polling::default()),
            Polling::default()
        );
        assert_eq!(Polling::Wakeup.as_str(), "wakeup");
    }
}
