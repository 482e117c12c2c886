//! Capability check at start-up: the daemon needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, nothing more.

/// A capability the daemon needs, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needed {
    /// Name as in capabilities(7).
    pub name: &'static str,
    /// Bit number.
    pub bit: u32,
    /// What it is for.
    pub why: &'static str,
}

/// Everything the daemon needs (documented in README and the pod's securityContext).
pub const NEEDED: [Needed; 3] = [
    Needed {
        name: "CAP_BPF",
        bit: 39,
        why: "load eBPF programs and create maps",
    },
    Needed {
        name: "CAP_NET_ADMIN",
        bit: 12,
        why: "attach XDP/TC programs to interfaces",
    },
    Needed {
        name: "CAP_PERFMON",
        bit: 38,
        why: "pointer arithmetic on packets and bpf_ktime for latency histograms",
    },
];

/// The effective capability set from a `/proc/<pid>/status` text.
pub fn effective(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The needed capabilities missing from `eff`.
pub fn missing(eff: u64) -> Vec<Needed> {
    NEEDED
        .iter()
        .copied()
        .filter(|n| eff & (1u64 << n.bit) == 0)
        .collect()
}

/// Checks this process; the error names each missing capability and what it is for.
pub fn check() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let eff = effective(&status).ok_or("no CapEff line in /proc/self/status")?;
    let missing = missing(eff);
    if missing.is_empty() {
        return Ok(());
    }
    Err(missing
        .iter()
        .map(|n| format!("missing {} (needed to {})", n.name, n.why))
        .collect::<Vec<_>>()
        .join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_missing_capabilities() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000000c000001000\n";
        let eff = effective(status).expect("CapEff");
        assert!(
            missing(eff).is_empty(),
            "BPF, PERFMON and NET_ADMIN are all set"
        );
        let without_bpf = eff & !(1 << 39);
        let m = missing(without_bpf);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "CAP_BPF");
        assert_eq!(missing(0).len(), 3);
    }
}
