//! Compiles a [`FirewallConfig`] into the aggregated bit vectors the eBPF firewall reads (see the design
//! comment of `ebpf/nf/firewall.h`).
//!
//! Rules are numbered in priority order (bit `i` = rule `i`).  For each dimension — source prefix, destination
//! prefix (per family), protocol, source and destination port interval — every possible packet value maps to
//! the bitmap of the rules it satisfies: prefix bitmaps fold in every rule whose prefix contains the entry's
//! prefix (so one longest-prefix lookup suffices), port bitmaps are computed by a sweep over the elementary
//! intervals cut by all rule bounds.  Identical bitmaps are stored once.  All offsets in the result are
//! relative (words from 0, segments from 0, rules from 0); the loader rebases them onto its pool regions.

use std::collections::{BTreeSet, HashMap};

use super::abi::{self, FwBm, FwCfg, FwPortSeg};
use super::config::{Action, FirewallConfig, FirewallRule, IpCidr};
use super::error::{EngineError, Result};

/// LPM entries of one (family, direction): prefix -> bitmap.
pub type PrefixBitmaps = Vec<(IpCidr, FwBm)>;

/// Everything the data plane needs for one firewall instance (offsets relative to 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledFirewall {
    /// `vnf_fw_cfg` value (`rule_off`, `sport_off`, `dport_off` and word offsets relative).
    pub cfg: FwCfg,
    /// Action of each rule in evaluation order (`vnf_fw_actions`).
    pub actions: Vec<u32>,
    /// The priority of each rule in evaluation order (hit counters are reported per priority).
    pub priorities: Vec<u32>,
    /// All distinct bitmaps, `nwords` words each (`vnf_fw_words`).
    pub words: Vec<u64>,
    /// `vnf_fw_src4` entries.
    pub src4: PrefixBitmaps,
    /// `vnf_fw_dst4` entries.
    pub dst4: PrefixBitmaps,
    /// `vnf_fw_src6` entries.
    pub src6: PrefixBitmaps,
    /// `vnf_fw_dst6` entries.
    pub dst6: PrefixBitmaps,
    /// `vnf_fw_proto` entries, index = protocol number (256 entries when there are rules).
    pub proto: Vec<FwBm>,
    /// Source-port segments, sorted, the first at port 0.
    pub sports: Vec<FwPortSeg>,
    /// Destination-port segments, sorted, the first at port 0.
    pub dports: Vec<FwPortSeg>,
}

fn action(a: Action) -> u8 {
    match a {
        Action::Allow => abi::ACT_ALLOW,
        Action::Deny => abi::ACT_DENY,
    }
}

/// Stores each distinct bitmap once and computes its aggregate.
struct Interner {
    nwords: usize,
    words: Vec<u64>,
    seen: HashMap<Vec<u64>, FwBm>,
}

impl Interner {
    fn intern(&mut self, bits: &[u64]) -> FwBm {
        if let Some(bm) = self.seen.get(bits) {
            return *bm;
        }
        let mut agg = [0u64; abi::FW_AGG_WORDS];
        for (j, w) in bits.iter().enumerate() {
            if *w != 0 {
                agg[j / 64] |= 1 << (j % 64);
            }
        }
        let bm = FwBm {
            word_off: self.words.len() as u32,
            _pad: 0,
            agg,
        };
        self.words.extend_from_slice(bits);
        self.seen.insert(bits.to_vec(), bm);
        bm
    }

    fn empty(&self) -> Vec<u64> {
        vec![0; self.nwords]
    }
}

fn set(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn clear(bits: &mut [u64], i: usize) {
    bits[i / 64] &= !(1 << (i % 64));
}

/// Prefixes of one (family, direction), keyed by (length, masked bytes), with the rules naming each.
type Direct = HashMap<(u8, [u8; 16]), (IpCidr, Vec<usize>)>;

/// Bitmaps of one address dimension of one family: each prefix gets its own rules and those of every
/// containing prefix.  `direct` maps each prefix to the rules naming it; `/0` must be present.
fn fold(direct: &Direct, int: &mut Interner) -> PrefixBitmaps {
    let mut by_len: Vec<&(IpCidr, Vec<usize>)> = direct.values().collect();
    by_len.sort_by_key(|(c, _)| (c.prefix_len(), c.masked_bytes()));
    let mut full: HashMap<(u8, [u8; 16]), Vec<u64>> = HashMap::new();
    let mut out = Vec::with_capacity(by_len.len());
    for (c, rules) in by_len {
        // the longest shorter prefix in the set that contains c (ancestors were done first)
        let parent = (0..c.prefix_len()).rev().find_map(|len| {
            let anc = IpCidr::new(c.addr(), len).ok()?;
            full.get(&(len, anc.masked_bytes()))
        });
        let mut bits = parent.cloned().unwrap_or_else(|| int.empty());
        for &r in rules {
            set(&mut bits, r);
        }
        out.push((*c, int.intern(&bits)));
        full.insert((c.prefix_len(), c.masked_bytes()), bits);
    }
    out
}

/// Port segments of one dimension: `ranges[i]` is rule `i`'s range (`None` = any port).
fn port_segments(ranges: &[(u16, u16)], int: &mut Interner) -> Vec<FwPortSeg> {
    let mut bounds: BTreeSet<u32> = BTreeSet::from([0]);
    let mut starts: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut ends: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let (lo, end) = (u32::from(lo), u32::from(hi) + 1);
        bounds.insert(lo);
        starts.entry(lo).or_default().push(i);
        if end <= u32::from(u16::MAX) {
            bounds.insert(end);
            ends.entry(end).or_default().push(i);
        }
    }
    let mut bits = int.empty();
    let mut out = Vec::with_capacity(bounds.len());
    for b in bounds {
        for &i in ends.get(&b).into_iter().flatten() {
            clear(&mut bits, i);
        }
        for &i in starts.get(&b).into_iter().flatten() {
            set(&mut bits, i);
        }
        out.push(FwPortSeg {
            lo: b as u16,
            _pad: 0,
            _pad2: 0,
            bm: int.intern(&bits),
        });
    }
    out
}

/// The IP family a rule is restricted to by its prefixes (0 = both).
fn rule_family(r: &FirewallRule) -> Result<u8> {
    Ok(match (r.src, r.dst) {
        (Some(s), Some(d)) if s.family() != d.family() => {
            return Err(EngineError::Config(format!(
                "rule priority {}: source {s} and destination {d} are of different IP families",
                r.priority
            )));
        }
        (Some(c), _) | (None, Some(c)) => c.family(),
        (None, None) => 0,
    })
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
    let rules: Vec<&FirewallRule> = order.iter().map(|&i| &fw.rules[i]).collect();
    let n = rules.len();
    let nwords = n.div_ceil(64).max(1);
    let mut int = Interner {
        nwords,
        words: Vec::new(),
        seen: HashMap::new(),
    };

    // (family 4/6, is_dst) -> prefix -> rules naming it
    let mut direct: [Direct; 4] = Default::default();
    for f in [4u8, 6] {
        let base = if f == 4 { 0 } else { 2 };
        for dir in 0..2 {
            let any = IpCidr::any(f);
            direct[base + dir].insert((0, any.masked_bytes()), (any, Vec::new()));
        }
    }
    let mut has_ports = Vec::with_capacity(n);
    let mut sranges = Vec::with_capacity(n);
    let mut dranges = Vec::with_capacity(n);
    for (bit, r) in rules.iter().enumerate() {
        let family = rule_family(r)?;
        let ports = r.src_ports.is_some() || r.dst_ports.is_some();
        if ports && !matches!(r.protocol, None | Some(6) | Some(17)) {
            return Err(EngineError::Config(format!(
                "rule priority {}: port ranges need protocol TCP (6) or UDP (17)",
                r.priority
            )));
        }
        has_ports.push(ports);
        sranges.push(r.src_ports.map_or((0, u16::MAX), |p| (p.lo, p.hi)));
        dranges.push(r.dst_ports.map_or((0, u16::MAX), |p| (p.lo, p.hi)));
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
                    .or_insert((c, Vec::new()))
                    .1
                    .push(bit);
            }
        }
    }

    let mut out = CompiledFirewall {
        cfg: FwCfg {
            default_action: action(fw.default_action),
            flags: if fw.conntrack { abi::FW_F_CONNTRACK } else { 0 },
            nwords: nwords as u16,
            nr_rules: n as u32,
            ct_timeout_ns: u64::try_from(fw.conntrack_timeout.as_nanos()).unwrap_or(u64::MAX),
            ..Default::default()
        },
        actions: rules.iter().map(|r| u32::from(action(r.action))).collect(),
        priorities: rules.iter().map(|r| r.priority).collect(),
        words: Vec::new(),
        src4: Vec::new(),
        dst4: Vec::new(),
        src6: Vec::new(),
        dst6: Vec::new(),
        proto: Vec::new(),
        sports: Vec::new(),
        dports: Vec::new(),
    };
    if n == 0 {
        return Ok(out); // the data plane applies the default action without lookups
    }
    out.src4 = fold(&direct[0], &mut int);
    out.dst4 = fold(&direct[1], &mut int);
    out.src6 = fold(&direct[2], &mut int);
    out.dst6 = fold(&direct[3], &mut int);

    out.proto = proto_bitmaps(&rules, &mut int);

    let mut noport = int.empty();
    for (i, p) in has_ports.iter().enumerate() {
        if !p {
            set(&mut noport, i);
        }
    }
    out.cfg.noport = int.intern(&noport);
    let mut every = int.empty();
    for i in 0..n {
        set(&mut every, i);
    }
    out.cfg.any = int.intern(&every);
    if rules.iter().all(|r| r.src.is_none()) {
        out.cfg.flags |= abi::FW_F_ANY_SRC;
    }
    if rules.iter().all(|r| r.dst.is_none()) {
        out.cfg.flags |= abi::FW_F_ANY_DST;
    }
    out.sports = port_segments(&sranges, &mut int);
    out.dports = port_segments(&dranges, &mut int);
    out.cfg.sport_n = out.sports.len() as u32;
    out.cfg.dport_off = out.sports.len() as u32;
    out.cfg.dport_n = out.dports.len() as u32;
    out.words = int.words;
    Ok(out)
}

/// The rule bitmap of each IP protocol (0..=255): the rules naming it and the rules naming none.
fn proto_bitmaps(rules: &[&FirewallRule], int: &mut Interner) -> Vec<FwBm> {
    let mut any_proto = int.empty();
    let mut by_proto: HashMap<u8, Vec<u64>> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        if r.protocol.is_none() {
            set(&mut any_proto, i);
        }
    }
    for (i, r) in rules.iter().enumerate() {
        if let Some(p) = r.protocol {
            set(by_proto.entry(p).or_insert_with(|| any_proto.clone()), i);
        }
    }
    (0..=255u8)
        .map(|p| int.intern(by_proto.get(&p).unwrap_or(&any_proto)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::PortRange;

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

    /// First word of the bitmap of `cidr` in `list`.
    fn bits(c: &CompiledFirewall, list: &PrefixBitmaps, cidr: &str) -> u64 {
        let p: IpCidr = cidr.parse().expect("cidr");
        let bm = list
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, b)| *b)
            .expect("prefix present");
        c.words[bm.word_off as usize]
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
        assert_eq!(c.priorities, [10, 20, 30]);
        // bit 0 = priority 10 (/8), bit 1 = priority 20 (any), bit 2 = priority 30 (/16)
        assert_eq!(bits(&c, &c.src4, "10.0.0.0/8"), 0b011);
        assert_eq!(bits(&c, &c.src4, "10.1.0.0/16"), 0b111);
        assert_eq!(bits(&c, &c.src4, "0.0.0.0/0"), 0b010);
        assert_eq!(bits(&c, &c.dst4, "0.0.0.0/0"), 0b111);
        // only the family-less rule exists for IPv6
        assert_eq!(bits(&c, &c.src6, "::/0"), 0b010);
        assert_eq!(c.src6.len(), 1);
        // identical bitmaps are stored once: {0b011, 0b111, 0b010} plus proto/port ones equal to 0b111
        assert_eq!(c.words.len(), 3);
    }

    #[test]
    fn ports_are_cut_into_segments() {
        let mut a = rule(1, None, None);
        a.protocol = Some(6);
        a.dst_ports = Some(PortRange::new(80, 90).expect("range"));
        let mut b = rule(2, None, None);
        b.protocol = Some(6);
        b.dst_ports = Some(PortRange::new(85, 65535).expect("range"));
        let c = rule(3, None, None);
        let fw = FirewallConfig {
            rules: vec![a, b, c],
            ..Default::default()
        };
        let c = compile(&fw).expect("compiles");
        let seg: Vec<(u16, u64)> = c
            .dports
            .iter()
            .map(|s| (s.lo, c.words[s.bm.word_off as usize]))
            .collect();
        assert_eq!(seg, vec![(0, 0b100), (80, 0b101), (85, 0b111), (91, 0b110)]);
        // source ports: every rule covers everything
        assert_eq!(c.sports.len(), 1);
        assert_eq!(c.words[c.cfg.noport.word_off as usize], 0b100);
        assert_eq!(c.words[c.proto[6].word_off as usize], 0b111);
        assert_eq!(c.words[c.proto[17].word_off as usize], 0b100);
        assert_eq!(c.cfg.noport.agg, [1, 0, 0]);
    }

    #[test]
    fn wide_rule_sets_use_several_words_and_aggregates() {
        let rules: Vec<FirewallRule> = (0..200u32)
            .map(|i| rule(i, Some(&format!("10.0.{i}.0/24")), None))
            .collect();
        let c = compile(&FirewallConfig {
            rules,
            ..Default::default()
        })
        .expect("compiles");
        assert_eq!(c.cfg.nwords, 4);
        let p: IpCidr = "10.0.130.0/24".parse().expect("cidr");
        let bm = c.src4.iter().find(|(q, _)| *q == p).expect("present").1;
        // rule 130 = word 2, bit 2
        assert_eq!(bm.agg, [0b100, 0, 0]);
        assert_eq!(c.words[bm.word_off as usize + 2], 1 << 2);
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
            rules: (0..=abi::FW_MAX_RULES)
                .map(|i| rule(i, None, None))
                .collect(),
            ..Default::default()
        };
        assert!(compile(&too_many).is_err());
    }
}
