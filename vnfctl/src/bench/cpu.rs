//! Machine-wide CPU time from `/proc/stat`, for CPU per packet.

use super::BenchError;

/// Nanoseconds per `/proc/stat` tick (USER_HZ, 100 on Linux).
pub const NS_PER_TICK: f64 = 1e9 / 100.0;

/// Cumulative ticks of all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// softirq alone.
    pub softirq: u64,
}

/// Ticks between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuDelta {
    pub busy: u64,
    pub softirq: u64,
}

impl CpuSample {
    /// Ticks spent since `earlier`.
    pub fn since(&self, earlier: &CpuSample) -> CpuDelta {
        CpuDelta {
            busy: self.busy.saturating_sub(earlier.busy),
            softirq: self.softirq.saturating_sub(earlier.softirq),
        }
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse(stat: &str) -> Option<CpuSample> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(CpuSample {
        busy: g(0) + g(1) + g(2) + g(5) + g(6) + g(7),
        softirq: g(6),
    })
}

/// Reads `/proc/stat` now.
pub fn sample() -> Result<CpuSample, BenchError> {
    let s = std::fs::read_to_string("/proc/stat").map_err(|source| BenchError::SetupIo {
        context: "/proc/stat".into(),
        source,
    })?;
    parse(&s).ok_or(BenchError::ProcStat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aggregate_line() {
        let s = "cpu  10 1 20 500 3 4 5 6 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        let a = parse(s).expect("parse");
        assert_eq!(
            a,
            CpuSample {
                busy: 10 + 1 + 20 + 4 + 5 + 6,
                softirq: 5
            }
        );
        let b = CpuSample {
            busy: a.busy + 7,
            softirq: a.softirq + 2,
        };
        assert_eq!(
            b.since(&a),
            CpuDelta {
                busy: 7,
                softirq: 2
            }
        );
        assert!(parse("intr 1 2\n").is_none());
    }
}
