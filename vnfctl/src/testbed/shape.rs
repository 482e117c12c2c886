//! Link shaping for the testbed's edge links: `delay=5ms,rate=100mbit,loss=0.1%` parsed and applied with netem.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TestbedError;

/// Impairments of an edge link (each direction of every client's link).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// One-way added delay.
    pub delay: Option<Duration>,
    /// Rate limit in bits per second.
    pub rate_bps: Option<u64>,
    /// Random loss in percent (0 to 100).
    pub loss_percent: Option<f64>,
}

fn shape_err(message: impl Into<String>) -> TestbedError {
    TestbedError::Shape(message.into())
}

fn parse_duration(v: &str) -> Result<Duration, TestbedError> {
    let (num, mul) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(shape_err(format!(
            "delay={v:?}: give a unit (us, ms or s), e.g. delay=5ms"
        )));
    };
    let x: f64 = num
        .parse()
        .map_err(|_| shape_err(format!("delay={v:?}: {num:?} is not a number")))?;
    if !(0.0..=60.0).contains(&(x * mul)) {
        return Err(shape_err(format!(
            "delay={v:?}: must be between 0 and 60 s"
        )));
    }
    Ok(Duration::from_secs_f64(x * mul))
}

fn parse_rate(v: &str) -> Result<u64, TestbedError> {
    let lower = v.to_ascii_lowercase();
    let (num, mul) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.to_string(), *m)))
        .ok_or_else(|| {
            shape_err(format!(
                "rate={v:?}: give a unit (bit, kbit, mbit or gbit), e.g. rate=100mbit"
            ))
        })?;
    let x: f64 = num
        .parse()
        .map_err(|_| shape_err(format!("rate={v:?}: {num:?} is not a number")))?;
    let bps = x * mul;
    if !(8000.0..=1e12).contains(&bps) {
        return Err(shape_err(format!(
            "rate={v:?}: must be between 8kbit and 1000gbit"
        )));
    }
    Ok(bps as u64)
}

fn parse_loss(v: &str) -> Result<f64, TestbedError> {
    let num = v.strip_suffix('%').unwrap_or(v);
    let x: f64 = num
        .parse()
        .map_err(|_| shape_err(format!("loss={v:?}: {num:?} is not a number")))?;
    if !(0.0..=100.0).contains(&x) {
        return Err(shape_err(format!(
            "loss={v:?}: must be between 0% and 100%"
        )));
    }
    Ok(x)
}

impl std::str::FromStr for Shape {
    type Err = TestbedError;

    /// Parses `delay=5ms,rate=100mbit,loss=0.1%` (any subset, any order).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut shape = Shape::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                shape_err(format!(
                    "{part:?}: expected KEY=VALUE (delay, rate or loss)"
                ))
            })?;
            match k.trim() {
                "delay" => shape.delay = Some(parse_duration(v.trim())?),
                "rate" => shape.rate_bps = Some(parse_rate(v.trim())?),
                "loss" => shape.loss_percent = Some(parse_loss(v.trim())?),
                other => {
                    return Err(shape_err(format!(
                        "{other:?}: unknown key (expected delay, rate or loss)"
                    )));
                }
            }
        }
        if shape == Shape::default() {
            return Err(shape_err(
                "empty: give at least one of delay=, rate=, loss= (e.g. delay=5ms,rate=100mbit,loss=0.1%)",
            ));
        }
        Ok(shape)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(d) = self.delay {
            parts.push(format!("delay={}us", d.as_micros()));
        }
        if let Some(r) = self.rate_bps {
            parts.push(format!("rate={r}bit"));
        }
        if let Some(l) = self.loss_percent {
            parts.push(format!("loss={l}%"));
        }
        f.write_str(&parts.join(","))
    }
}

impl Shape {
    /// The `tc qdisc add dev IF root ...` arguments after `root`: netem with what is set, or, for a rate alone, a
    /// token bucket (tbf) so kernels without `sch_netem` can still shape the rate.
    pub fn qdisc_args(&self, netem: bool) -> Vec<String> {
        if !netem {
            let rate = self.rate_bps.unwrap_or(0);
            // burst: at least 10 ms of traffic or one 64 KiB GSO frame
            let burst = (rate / 8 / 100).max(65536);
            return vec![
                "tbf".into(),
                "rate".into(),
                format!("{rate}bit"),
                "burst".into(),
                burst.to_string(),
                "latency".into(),
                "50ms".into(),
            ];
        }
        let mut v = vec!["netem".to_string()];
        if let Some(d) = self.delay {
            v.extend(["delay".into(), format!("{}us", d.as_micros())]);
        }
        if let Some(r) = self.rate_bps {
            v.extend(["rate".into(), format!("{r}bit")]);
        }
        if let Some(l) = self.loss_percent {
            v.extend(["loss".into(), format!("{l}%")]);
        }
        v
    }

    /// Whether only the rate is set (which a token bucket can do without netem).
    pub fn rate_only(&self) -> bool {
        self.delay.is_none() && self.loss_percent.is_none() && self.rate_bps.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form_and_names_bad_keys() {
        let s: Shape = "delay=5ms,rate=100mbit,loss=0.1%".parse().expect("parses");
        assert_eq!(s.delay, Some(Duration::from_millis(5)));
        assert_eq!(s.rate_bps, Some(100_000_000));
        assert_eq!(s.loss_percent, Some(0.1));
        assert_eq!(
            s.qdisc_args(true).join(" "),
            "netem delay 5000us rate 100000000bit loss 0.1%"
        );
        let r: Shape = "rate=10mbit".parse().expect("parses");
        assert!(r.rate_only());
        assert_eq!(
            r.qdisc_args(false).join(" "),
            "tbf rate 10000000bit burst 65536 latency 50ms"
        );
        for (bad, needle) in [
            ("delay=5", "give a unit"),
            ("jitter=1ms", "unknown key"),
            ("loss=150%", "between 0% and 100%"),
            ("rate=fast", "give a unit"),
            ("", "empty"),
            ("delay", "KEY=VALUE"),
        ] {
            let e = bad.parse::<Shape>().expect_err(bad).to_string();
            assert!(e.contains(needle) && e.contains("--shape"), "{bad}: {e}");
        }
    }
}
