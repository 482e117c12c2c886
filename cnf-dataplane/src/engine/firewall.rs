//! Compiles a [`FirewallConfig`] into the rule array and LPM-trie entries the eBPF firewall reads.
//!
//! Each trie entry's value is the bitmap of every rule whose CIDR *contains*
//! the entry's prefix (the rule's own prefix and all shorter ancestors), so
//! the data plane's single longest-prefix lookup per address yields all rules
//! whose address criterion matches.

use std::collections::BTreeMap;

use super::abi::{self, FwCfg, FwRule};
use super::config::{Action, FirewallConfig, IpCidr};
use super::error::{EngineError, Result};

/// LPM entries of one (family, direction): prefix -> rule bitmap.
pub type PrefixBitmaps = Vec<(IpCidr, u64)>;

/// Everything the data plane needs for one firewall instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledFirewall {
    /// `vnf_fw_cfg` value.
    pub cfg: FwCfg,
    /// Rules in priority order (index = bit = evaluation order).
    pub rules: Vec<FwRule>,
    /// `vnf_fw_src4` entries.
    pub src4: PrefixBitmaps,
    /// `vnf_fw_dst4` entries.
    pub dst4: PrefixBitmaps,
    /// `vnf_fw_src6` entries.
    pub src6: PrefixBitmaps,
    /// `vnf_fw_dst6` entries.
    pub dst6: PrefixBitmaps,
}

fn action(a: Action) -> u8 {
    match a {
        Action::Allow => abi::ACT_ALLOW,
        Action::Deny => abi::ACT_DENY,
    }
}

/// Prefixes of one (family, direction) with the bits of the rules that name them directly.
type DirectBits = BTreeMap<(u8, [u8; 16]), (IpCidr, u64)>;

/// Fold ancestor bits into every prefix.
fn fold(direct: &DirectBits) -> PrefixBitmaps {
    direct
        .values()
        .map(|(node, _)| {
            let bits = direct
                .values()
                .filter(|(anc, _)| anc.contains_cidr(node))
                .fold(0u64, |acc, (_, b)| acc | b);
            (*node, bits)
        })
        .collect()
}

/// Validates and compiles a firewall configuration.
pub fn compile(fw: &FirewallConfig) -> Result<CompiledFirewall> {
    let max = abi::FW_MAX_RULES as usize;
    if fw.rules.len() > max {
        return Err(EngineError::Config(format!(
            "firewall has {} rules, at most {max} are supported",
            fw.rules.len()
        )));
    }
    let mut order: Vec<usize> = (0..fw.rules.len()).collect();
    order.sort_by_key(|&i| fw.rules[i].priority); // stable: ties keep list order

    let mut rules = Vec::with_capacity(order.len());
    // (family, is_dst) -> prefix key -> (prefix, direct bits)
    let mut direct: [DirectBits; 4] = Default::default();
    for (bit, &i) in order.iter().enumerate() {
        let r = &fw.rules[i];
        let family = match (r.src, r.dst) {
            (Some(s), Some(d)) if s.family() != d.family() => {
                return Err(EngineError::Config(format!(
                    "rule priority {}: source {s} and destination {d} are of different IP families",
                    r.priority
                )));
            }
            (Some(c), _) | (None, Some(c)) => c.family(),
            (None, None) => 0,
        };
        let has_ports = r.src_ports.is_some() || r.dst_ports.is_some();
        if has_ports && !matches!(r.protocol, None | Some(6) | Some(17)) {
            return Err(EngineError::Config(format!(
                "rule priority {}: port ranges need protocol TCP (6) or UDP (17)",
                r.priority
            )));
        }
        let sp = r.src_ports.map_or((0, u16::MAX), |p| (p.lo, p.hi));
        let dp = r.dst_ports.map_or((0, u16::MAX), |p| (p.lo, p.hi));
        rules.push(FwRule {
            proto: r.protocol.unwrap_or(0),
            action: action(r.action),
            family,
            flags: abi::FW_RULE_VALID | if has_ports { abi::FW_RULE_PORTS } else { 0 },
            sport_lo: sp.0,
            sport_hi: sp.1,
            dport_lo: dp.0,
            dport_hi: dp.1,
        });
        let families: &[u8] = match family {
            4 => &[4],
            6 => &[6],
            _ => &[4, 6],
        };
        for &f in families {
            let base = if f == 4 { 0 } else { 2 };
            for (dir, cidr) in [(0, r.src), (1, r.dst)] {
                let c = cidr.unwrap_or_else(|| IpCidr::any(f));
                direct[base + dir]
                    .entry((c.prefix_len(), c.masked_bytes()))
                    .or_insert((c, 0))
                    .1 |= 1u64 << bit;
            }
        }
    }
    let timeout = u64::try_from(fw.conntrack_timeout.as_nanos()).unwrap_or(u64::MAX);
    Ok(CompiledFirewall {
        cfg: FwCfg {
            default_action: action(fw.default_action),
            flags: if fw.conntrack { abi::FW_F_CONNTRACK } else { 0 },
            _pad: [0; 2],
            nr_rules: rules.len() as u32,
            ct_timeout_ns: timeout,
        },
        rules,
        src4: fold(&direct[0]),
        dst4: fold(&direct[1]),
        src6: fold(&direct[2]),
        dst6: fold(&direct[3]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::{FirewallRule, PortRange};

    fn rule(priority: u32, src: Option<&str>, dst: Option<&str>) -> FirewallRule {
        FirewallRule {
            priority,
            action: Action::Deny,
            protocol: None,
            src: src.map(|s| s.parse().expect("cidr")),
            dst: dst.map(|s| s.parse().expect("cidr")),
            src_ports: None,
            dst_ports: None,
        }
    }

    fn bits(list: &PrefixBitmaps, cidr: &str) -> u64 {
        let c: IpCidr = cidr.parse().expect("cidr");
        list.iter()
            .find(|(p, _)| *p == c)
            .map(|(_, b)| *b)
            .expect("prefix present")
    }

    #[test]
    fn ancestors_are_folded_and_priority_orders_bits() {
        let fw = FirewallConfig {
            rules: vec![
                rule(30, Some("10.1.0.0/16"), None),
                rule(10, Some("10.0.0.0/8"), None),
                rule(20, None, None),
            ],
            ..Default::default()
        };
        let c = compile(&fw).expect("compiles");
        // bit 0 = priority 10 (/8), bit 1 = priority 20 (any), bit 2 = priority 30 (/16)
        assert_eq!(bits(&c.src4, "10.0.0.0/8"), 0b011);
        assert_eq!(bits(&c.src4, "10.1.0.0/16"), 0b111);
        assert_eq!(bits(&c.src4, "0.0.0.0/0"), 0b010);
        assert_eq!(bits(&c.dst4, "0.0.0.0/0"), 0b111);
        // only the family-less rule exists for IPv6
        assert_eq!(bits(&c.src6, "::/0"), 0b010);
        assert_eq!(c.src6.len(), 1);
    }

    #[test]
    fn rejects_invalid_rules() {
        let mixed = FirewallConfig {
            rules: vec![rule(1, Some("10.0.0.0/8"), Some("2001:db8::/32"))],
            ..Default::default()
        };
        assert!(compile(&mixed).is_err());
        let mut icmp_ports = rule(1, None, None);
        icmp_ports.protocol = Some(1);
        icmp_ports.dst_ports = Some(PortRange::single(80));
        let fw = FirewallConfig {
            rules: vec![icmp_ports],
            ..Default::default()
        };
        assert!(compile(&fw).is_err());
        let too_many = FirewallConfig {
            rules: (0..65).map(|i| rule(i, None, None)).collect(),
            ..Default::default()
        };
        assert!(compile(&too_many).is_err());
    }
}
