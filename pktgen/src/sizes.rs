//! Packet sizes: fixed, a sweep list, or IMIX.
//!
//! A "packet size" here is the **IP packet length** (IPv4 total length / IPv6 header plus
//! payload), i.e. the frame without the 14-byte Ethernet header and FCS. The UDP payload is that
//! size minus the IP and UDP headers, but never less than the pktgen header (sizes too small to
//! carry it are raised to the smallest size that does; IPv6's minimum is 72 bytes).
//!
//! IMIX is the "simple IMIX" 7:4:1 mix of 64, 576 and 1500-byte IP packets, sent as a fixed
//! interleaved 12-packet cycle (mean 354.33 bytes), so every run is reproducible.

use std::str::FromStr;

use thiserror::Error;

use crate::payload::HEADER_LEN;

/// IPv4 header without options.
pub const IPV4_HEADER: usize = 20;
/// IPv6 fixed header.
pub const IPV6_HEADER: usize = 40;
/// UDP header.
pub const UDP_HEADER: usize = 8;
/// Largest IP packet size accepted (the IPv4 total-length limit).
pub const MAX_SIZE: usize = 65_535;

/// The IMIX cycle: 7 × 64, 4 × 576, 1 × 1500 bytes, interleaved.
pub const IMIX_CYCLE: [usize; 12] = [64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 64, 576];

/// A bad size specification.
#[derive(Debug, Error, PartialEq)]
pub enum SizeError {
    /// Not a number, a comma-separated list or `imix`.
    #[error("bad packet size '{0}': expected a number of bytes, a list like 64,512,1500, or imix")]
    Parse(String),
    /// Zero or too large.
    #[error("packet size {0} out of range 1..={MAX_SIZE}")]
    Range(usize),
}

/// How packet sizes are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeSpec {
    /// Every packet the same IP size.
    Fixed(usize),
    /// Each size in turn for `per_size` packets, cycling.
    Sweep {
        /// The sizes.
        sizes: Vec<usize>,
        /// Packets sent at each size before moving on.
        per_size: u64,
    },
    /// Simple IMIX (see the module docs).
    Imix,
}

fn parse_one(s: &str) -> Result<usize, SizeError> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| SizeError::Parse(s.to_string()))?;
    if n == 0 || n > MAX_SIZE {
        return Err(SizeError::Range(n));
    }
    Ok(n)
}

impl FromStr for SizeSpec {
    type Err = SizeError;

    /// `"64"`, `"64,512,1500"` (a sweep of 1 packet per size; see [`SizeSpec::with_per_size`])
    /// or `"imix"`.
    fn from_str(s: &str) -> Result<Self, SizeError> {
        if s.trim().eq_ignore_ascii_case("imix") {
            return Ok(Self::Imix);
        }
        let sizes = s.split(',').map(parse_one).collect::<Result<Vec<_>, _>>()?;
        match sizes.as_slice() {
            [one] => Ok(Self::Fixed(*one)),
            _ => Ok(Self::Sweep { sizes, per_size: 1 }),
        }
    }
}

impl SizeSpec {
    /// For a sweep, sets how many packets are sent at each size; other specs are unchanged.
    pub fn with_per_size(self, per_size: u64) -> Self {
        match self {
            Self::Sweep { sizes, .. } => Self::Sweep {
                sizes,
                per_size: per_size.max(1),
            },
            other => other,
        }
    }

    /// IP packet size of packet number `n` (counted over the whole run).
    pub fn ip_size(&self, n: u64) -> usize {
        match self {
            Self::Fixed(s) => *s,
            Self::Sweep { sizes, per_size } => {
                let step = n / (*per_size).max(1);
                sizes
                    .get((step % sizes.len().max(1) as u64) as usize)
                    .copied()
                    .unwrap_or(HEADER_LEN)
            }
            Self::Imix => IMIX_CYCLE[(n % IMIX_CYCLE.len() as u64) as usize],
        }
    }

    /// Largest IP size this spec produces.
    pub fn max_ip_size(&self) -> usize {
        match self {
            Self::Fixed(s) => *s,
            Self::Sweep { sizes, .. } => sizes.iter().copied().max().unwrap_or(0),
            Self::Imix => 1500,
        }
    }
}

/// UDP payload length for an IP packet of `ip_size` bytes (clamped up to fit the pktgen header).
pub fn udp_payload_len(ip_size: usize, ipv6: bool) -> usize {
    let overhead = UDP_HEADER + if ipv6 { IPV6_HEADER } else { IPV4_HEADER };
    ip_size.saturating_sub(overhead).max(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_sweep_and_imix() {
        assert_eq!("64".parse(), Ok(SizeSpec::Fixed(64)));
        assert_eq!("IMIX".parse(), Ok(SizeSpec::Imix));
        assert_eq!(
            "64, 512,1500"
                .parse::<SizeSpec>()
                .map(|s| s.with_per_size(10)),
            Ok(SizeSpec::Sweep {
                sizes: vec![64, 512, 1500],
                per_size: 10
            })
        );
        assert!(matches!(
            "abc".parse::<SizeSpec>(),
            Err(SizeError::Parse(_))
        ));
        assert!(matches!(
            "64,".parse::<SizeSpec>(),
            Err(SizeError::Parse(_))
        ));
        assert_eq!("0".parse::<SizeSpec>(), Err(SizeError::Range(0)));
        assert_eq!("70000".parse::<SizeSpec>(), Err(SizeError::Range(70000)));
    }

    #[test]
    fn imix_is_7_4_1_with_the_documented_mean() {
        let spec = SizeSpec::Imix;
        let sizes: Vec<usize> = (0..1200).map(|n| spec.ip_size(n)).collect();
        let count = |v| sizes.iter().filter(|&&s| s == v).count();
        assert_eq!((count(64), count(576), count(1500)), (700, 400, 100));
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!((mean - 4252.0 / 12.0).abs() < 1e-9);
        assert_eq!(spec.max_ip_size(), 1500);
    }

    #[test]
    fn sweep_steps_through_sizes_and_cycles() {
        let spec = SizeSpec::Sweep {
            sizes: vec![100, 200, 300],
            per_size: 2,
        };
        let got: Vec<usize> = (0..8).map(|n| spec.ip_size(n)).collect();
        assert_eq!(got, vec![100, 100, 200, 200, 300, 300, 100, 100]);
        assert_eq!(spec.max_ip_size(), 300);
    }

    #[test]
    fn payload_length_subtracts_headers_and_fits_the_pktgen_header() {
        assert_eq!(udp_payload_len(64, false), 36);
        assert_eq!(udp_payload_len(1500, false), 1472);
        assert_eq!(udp_payload_len(1500, true), 1452);
        assert_eq!(udp_payload_len(64, true), HEADER_LEN);
        assert_eq!(udp_payload_len(1, false), HEADER_LEN);
    }
}
