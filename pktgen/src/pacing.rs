//! Departure schedules: when the n-th packet should leave, as an offset from the start.
//!
//! Deadlines are absolute (offsets from the run's start), never "now + gap", so a late wake-up
//! is caught up by the next batch instead of drifting the average rate. Constant and on/off
//! schedules are closed-form functions of the packet index; Poisson and Pareto accumulate
//! seeded random gaps whose mean is `1 / rate`.

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Exp, Pareto};
use thiserror::Error;

/// Invalid schedule parameters.
#[derive(Debug, Error, PartialEq)]
pub enum PacingError {
    /// Rate must be finite and positive (use [`Pattern::Unlimited`] for "as fast as possible").
    #[error("rate must be a positive number of packets per second, got {0}")]
    BadRate(f64),
    /// On/off periods must both be positive.
    #[error("on/off periods must be positive, got on={on_ns} ns off={off_ns} ns")]
    BadOnOff {
        /// On period.
        on_ns: u64,
        /// Off period.
        off_ns: u64,
    },
    /// Pareto shape must exceed 1 so the mean gap exists.
    #[error("Pareto shape must be > 1 (finite mean), got {0}")]
    BadShape(f64),
}

/// The inter-departure process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// No pacing: every packet is due immediately.
    Unlimited,
    /// Evenly spaced departures at the rate.
    Constant,
    /// Constant rate during `on_ns`, silence during `off_ns`, repeating (starts "on").
    OnOff {
        /// Length of each burst period, ns.
        on_ns: u64,
        /// Length of each silent period, ns.
        off_ns: u64,
    },
    /// Exponential gaps (a Poisson process) with mean `1 / rate`.
    Poisson,
    /// Pareto gaps with the given shape (> 1) and mean `1 / rate`: heavy-tailed, bursty.
    Pareto {
        /// Shape parameter alpha.
        shape: f64,
    },
}

enum Gaps {
    Fixed,
    Exp(Exp<f64>),
    Pareto(Pareto<f64>),
}

/// Generates departure offsets (ns since start) for packets 0, 1, 2, ...
pub struct Schedule {
    pattern: Pattern,
    gap_ns: f64,
    gaps: Gaps,
    rng: SmallRng,
    n: u64,
    t_ns: f64,
}

impl Schedule {
    /// A schedule at `rate_pps` (ignored for [`Pattern::Unlimited`]) with a seeded RNG.
    pub fn new(pattern: Pattern, rate_pps: f64, seed: u64) -> Result<Self, PacingError> {
        let needs_rate = pattern != Pattern::Unlimited;
        if needs_rate && !(rate_pps.is_finite() && rate_pps > 0.0) {
            return Err(PacingError::BadRate(rate_pps));
        }
        let gap_ns = if needs_rate { 1e9 / rate_pps } else { 0.0 };
        let gaps = match pattern {
            Pattern::Unlimited | Pattern::Constant => Gaps::Fixed,
            Pattern::OnOff { on_ns, off_ns } => {
                if on_ns == 0 || off_ns == 0 {
                    return Err(PacingError::BadOnOff { on_ns, off_ns });
                }
                Gaps::Fixed
            }
            Pattern::Poisson => {
                Gaps::Exp(Exp::new(1.0 / gap_ns).map_err(|_| PacingError::BadRate(rate_pps))?)
            }
            Pattern::Pareto { shape } => {
                if !(shape.is_finite() && shape > 1.0) {
                    return Err(PacingError::BadShape(shape));
                }
                let scale = gap_ns * (shape - 1.0) / shape;
                Gaps::Pareto(Pareto::new(scale, shape).map_err(|_| PacingError::BadShape(shape))?)
            }
        };
        Ok(Self {
            pattern,
            gap_ns,
            gaps,
            rng: SmallRng::seed_from_u64(seed),
            n: 0,
            t_ns: 0.0,
        })
    }

    /// The pattern in use.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// Departure offset of the next packet, ns since the start. Non-decreasing.
    pub fn next_departure(&mut self) -> u64 {
        let n = self.n;
        self.n += 1;
        match (&self.gaps, self.pattern) {
            (_, Pattern::Unlimited) => 0,
            (_, Pattern::OnOff { on_ns, off_ns }) => {
                let active = (n as f64 * self.gap_ns) as u64;
                let period = active / on_ns;
                period * (on_ns + off_ns) + active % on_ns
            }
            (Gaps::Fixed, _) => (n as f64 * self.gap_ns) as u64,
            (Gaps::Exp(d), _) => {
                if n > 0 {
                    self.t_ns += d.sample(&mut self.rng);
                }
                self.t_ns as u64
            }
            (Gaps::Pareto(d), _) => {
                if n > 0 {
                    self.t_ns += d.sample(&mut self.rng);
                }
                self.t_ns as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(s: &mut Schedule, n: usize) -> Vec<u64> {
        (0..n).map(|_| s.next_departure()).collect()
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Schedule::new(Pattern::Constant, 0.0, 1).is_err());
        assert!(Schedule::new(Pattern::Constant, f64::NAN, 1).is_err());
        assert!(Schedule::new(Pattern::Poisson, -5.0, 1).is_err());
        assert!(
            Schedule::new(
                Pattern::OnOff {
                    on_ns: 0,
                    off_ns: 1
                },
                10.0,
                1
            )
            .is_err()
        );
        assert_eq!(
            Schedule::new(Pattern::Pareto { shape: 1.0 }, 10.0, 1).err(),
            Some(PacingError::BadShape(1.0))
        );
        assert!(Schedule::new(Pattern::Unlimited, 0.0, 1).is_ok());
    }

    #[test]
    fn constant_rate_does_not_drift() {
        // 3 pps: a gap of 333333333.33 ns; accumulating rounded gaps would drift.
        let mut s = Schedule::new(Pattern::Constant, 3.0, 0).expect("valid");
        let t = take(&mut s, 3_000_001);
        assert_eq!(t[0], 0);
        assert_eq!(t[1], 333_333_333);
        assert_eq!(t[3], 1_000_000_000);
        assert_eq!(t[3_000_000], 1_000_000 * 1_000_000_000);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn unlimited_is_always_due() {
        let mut s = Schedule::new(Pattern::Unlimited, 0.0, 0).expect("valid");
        assert!(take(&mut s, 100).iter().all(|&t| t == 0));
    }

    #[test]
    fn on_off_sends_only_during_on_periods_at_the_rate() {
        // 1000 pps, 10 ms on / 30 ms off: 10 packets per 40 ms period.
        let on_ns = 10_000_000;
        let off_ns = 30_000_000;
        let mut s = Schedule::new(Pattern::OnOff { on_ns, off_ns }, 1000.0, 0).expect("valid");
        let t = take(&mut s, 100);
        assert!(t.iter().all(|&x| x % (on_ns + off_ns) < on_ns), "{t:?}");
        assert_eq!(
            &t[..11],
            &[
                0, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000, 6_000_000, 7_000_000,
                8_000_000, 9_000_000, 40_000_000
            ]
        );
        assert_eq!(t[99], 9 * 40_000_000 + 9_000_000);
    }

    fn mean_and_cv(t: &[u64]) -> (f64, f64) {
        let gaps: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / n;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn poisson_gaps_have_the_right_mean_and_are_seeded() {
        let mut a = Schedule::new(Pattern::Poisson, 10_000.0, 42).expect("valid");
        let mut b = Schedule::new(Pattern::Poisson, 10_000.0, 42).expect("valid");
        let mut c = Schedule::new(Pattern::Poisson, 10_000.0, 43).expect("valid");
        let ta = take(&mut a, 200_000);
        assert_eq!(ta, take(&mut b, 200_000), "same seed, same schedule");
        assert_ne!(ta, take(&mut c, 200_000), "other seed, other schedule");
        let (mean, cv) = mean_and_cv(&ta);
        // Exponential: mean 100 us, coefficient of variation 1.
        assert!((mean - 100_000.0).abs() < 1_000.0, "mean gap {mean}");
        assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
    }

    #[test]
    fn pareto_gaps_have_the_right_mean_and_a_floor() {
        let shape = 3.0;
        let mut s = Schedule::new(Pattern::Pareto { shape }, 1000.0, 7).expect("valid");
        let t = take(&mut s, 400_000);
        let (mean, _) = mean_and_cv(&t);
        // Mean 1 ms; shape 3 has finite variance so the sample mean converges reasonably.
        assert!((mean - 1_000_000.0).abs() < 20_000.0, "mean gap {mean}");
        let floor = 1_000_000.0 * (shape - 1.0) / shape;
        let min_gap = t.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(0) as f64;
        assert!(
            min_gap >= floor - 1.0,
            "min gap {min_gap} below scale {floor}"
        );
    }
}
