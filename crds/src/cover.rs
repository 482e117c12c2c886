//! Coverage of matches (the classifier, firewall rules) and the shadowed-rule analysis of a firewall.
//!
//! A rule is shadowed when an earlier rule matches every packet it matches. Comparing each rule with every
//! earlier one is quadratic (issue 14: 7 s on a 1.4 MB manifest), so earlier rules are indexed per dimension
//! (protocol, source and destination prefixes, source and destination ports) and a rule is only compared with
//! the candidates of its most selective dimension: the rules that could cover it there. Identical rules share
//! one answer. A fixed work budget bounds the worst case (rules built so that every dimension keeps every
//! earlier rule a candidate): past it, the remaining rules are not analysed. The analysis is a help against
//! mistakes, not a security property, and the budget is far above what real rule sets need (see
//! `examples/bench-validate.rs`).

use std::net::IpAddr;

// foldhash rather than SipHash: the maps are keyed by the manifest's prefixes, ports and whole matches, hashed
// once per rule and per candidate lookup (SipHash was a tenth of the analysis); foldhash is seeded per process,
// so a manifest cannot be written to collide.
use foldhash::HashMap;

use ipnet::IpNet;

use crate::functions::Protocol;
use crate::net::PortRange;

/// A prefix list as matched: empty means "any address".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Prefixes(pub(crate) Vec<IpNet>);

impl Prefixes {
    pub(crate) fn any(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every address this list matches is matched by `self`.
    pub(crate) fn covers(&self, other: &Prefixes) -> bool {
        if self.any() {
            return true;
        }
        if other.any() {
            return covers_all_of_family(&self.0, true) && covers_all_of_family(&self.0, false);
        }
        other.0.iter().all(|o| self.0.iter().any(|s| s.contains(o)))
    }

    /// Which families this list can match: (IPv4, IPv6).
    pub(crate) fn families(&self) -> (bool, bool) {
        if self.any() {
            return (true, true);
        }
        (
            self.0.iter().any(|n| matches!(n, IpNet::V4(_))),
            self.0.iter().any(|n| matches!(n, IpNet::V6(_))),
        )
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.any() || self.0.iter().any(|n| n.contains(&ip))
    }
}

fn covers_all_of_family(nets: &[IpNet], v4: bool) -> bool {
    nets.iter()
        .any(|n| n.prefix_len() == 0 && matches!(n, IpNet::V4(_)) == v4)
}

/// A port list as matched: empty means "any port".
fn ports_cover(outer: &[PortRange], inner: &[PortRange]) -> bool {
    if outer.is_empty() {
        return true;
    }
    if inner.is_empty() {
        return outer.iter().any(covers_every_port);
    }
    inner.iter().all(|i| outer.iter().any(|o| o.covers(i)))
}

fn covers_every_port(r: &PortRange) -> bool {
    r.from <= 1 && r.end() == u16::MAX
}

/// The parsed form of a match (classifier or firewall rule), for coverage and reachability checks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Match {
    pub(crate) protocol: Protocol,
    pub(crate) src: Prefixes,
    pub(crate) dst: Prefixes,
    pub(crate) sports: Vec<PortRange>,
    pub(crate) dports: Vec<PortRange>,
}

impl Match {
    /// Whether every packet `other` matches is matched by `self`.
    pub(crate) fn covers(&self, other: &Match) -> bool {
        self.protocol.covers(other.protocol)
            && self.src.covers(&other.src)
            && self.dst.covers(&other.dst)
            && ports_cover(&self.sports, &other.sports)
            && ports_cover(&self.dports, &other.dports)
    }

    /// What one `covers` call against `other` may cost, in elementary comparisons.
    fn work(&self, other: &Match) -> u64 {
        let product = |a: usize, b: usize| (a.max(1) * b.max(1)) as u64;
        1 + product(self.src.0.len(), other.src.0.len())
            + product(self.dst.0.len(), other.dst.0.len())
            + product(self.sports.len(), other.sports.len())
            + product(self.dports.len(), other.dports.len())
    }

    /// The match with its lists in a canonical order: equal keys match the same packets.
    fn key(&self) -> MatchKey {
        let mut src = self.src.0.clone();
        let mut dst = self.dst.0.clone();
        src.sort_unstable();
        src.dedup();
        dst.sort_unstable();
        dst.dedup();
        let ports = |l: &[PortRange]| {
            let mut v: Vec<(u16, u16)> = l.iter().map(|r| (r.from, r.end())).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        MatchKey {
            protocol: self.protocol,
            src,
            dst,
            sports: ports(&self.sports),
            dports: ports(&self.dports),
        }
    }
}

#[derive(PartialEq, Eq, Hash)]
struct MatchKey {
    protocol: Protocol,
    src: Vec<IpNet>,
    dst: Vec<IpNet>,
    sports: Vec<(u16, u16)>,
    dports: Vec<(u16, u16)>,
}

/// Earlier rules by the prefixes of one dimension.
#[derive(Default)]
struct PrefixIndex {
    /// Rules that match any address.
    any: Vec<usize>,
    by_net: HashMap<IpNet, Vec<usize>>,
    /// Which prefix lengths occur, per family, so supernets of absent lengths are not looked up.
    lengths_v4: u64,
    lengths_v6: u128,
}

impl PrefixIndex {
    fn insert(&mut self, i: usize, p: &Prefixes) {
        if p.any() {
            self.any.push(i);
            return;
        }
        for n in &p.0 {
            let list = self.by_net.entry(*n).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
            match n {
                IpNet::V4(_) => self.lengths_v4 |= 1 << n.prefix_len(),
                IpNet::V6(_) => self.lengths_v6 |= 1 << n.prefix_len(),
            }
        }
    }

    /// The indexed supernets of `n` (itself included).
    fn supernets(&self, n: &IpNet) -> impl Iterator<Item = &[usize]> {
        let v4 = matches!(n, IpNet::V4(_));
        (0..=n.prefix_len())
            .filter(move |&len| {
                if v4 {
                    self.lengths_v4 & (1 << len) != 0
                } else {
                    self.lengths_v6 & (1 << len) != 0
                }
            })
            .filter_map(move |len| IpNet::new(n.addr(), len).ok().map(|s| s.trunc()))
            .filter_map(|s| self.by_net.get(&s).map(Vec::as_slice))
    }

    /// Lists that hold every rule that could cover `p` in this dimension (and maybe more).
    fn candidates(&self, p: &Prefixes) -> Vec<&[usize]> {
        let mut lists = vec![self.any.as_slice()];
        if p.any() {
            // Only a rule holding both default routes covers "any address".
            if let Ok(all) = "0.0.0.0/0".parse::<IpNet>()
                && let Some(l) = self.by_net.get(&all)
            {
                lists.push(l);
            }
            return lists;
        }
        // Every prefix of `p` needs a supernet in the covering rule: the rarest one selects best.
        let best =
            p.0.iter()
                .map(|n| self.supernets(n).collect::<Vec<_>>())
                .min_by_key(|l| l.iter().map(|s| s.len()).sum::<usize>());
        lists.extend(best.into_iter().flatten());
        lists
    }
}

/// Earlier rules by the port ranges of one dimension.
#[derive(Default)]
struct PortIndex {
    any: Vec<usize>,
    single: HashMap<u16, Vec<usize>>,
    /// Rules with a range of more than one port, and the full range among them.
    ranges: Vec<usize>,
    every_port: Vec<usize>,
}

impl PortIndex {
    fn insert(&mut self, i: usize, ports: &[PortRange]) {
        if ports.is_empty() {
            self.any.push(i);
            return;
        }
        for r in ports {
            let list = if r.from == r.end() {
                self.single.entry(r.from).or_default()
            } else if covers_every_port(r) {
                &mut self.every_port
            } else {
                &mut self.ranges
            };
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }

    fn candidates(&self, ports: &[PortRange]) -> Vec<&[usize]> {
        let mut lists = vec![self.any.as_slice(), self.every_port.as_slice()];
        let Some(first) = ports.first() else {
            return lists;
        };
        if first.from == first.end()
            && let Some(l) = self.single.get(&first.from)
        {
            lists.push(l);
        }
        lists.push(&self.ranges);
        lists
    }
}

/// Earlier rules by protocol.
#[derive(Default)]
struct ProtocolIndex {
    any: Vec<usize>,
    by_protocol: HashMap<Protocol, Vec<usize>>,
}

/// Finds, for each rule, the first earlier rule that covers it.
pub(crate) struct ShadowAnalysis {
    protocol: ProtocolIndex,
    src: PrefixIndex,
    dst: PrefixIndex,
    sports: PortIndex,
    dports: PortIndex,
    seen: HashMap<MatchKey, (usize, Option<usize>)>,
    budget: u64,
}

/// Elementary comparisons the analysis of one firewall may spend (tens of milliseconds in a release build).
pub(crate) const SHADOW_WORK_BUDGET: u64 = 30_000_000;

impl ShadowAnalysis {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            protocol: ProtocolIndex::default(),
            src: PrefixIndex::default(),
            dst: PrefixIndex::default(),
            sports: PortIndex::default(),
            dports: PortIndex::default(),
            seen: HashMap::default(),
            budget,
        }
    }

    /// Whether the budget ran out (the rules after that point were not analysed).
    pub(crate) fn exhausted(&self) -> bool {
        self.budget == 0
    }

    /// For each rule, the first earlier rule that covers it, if any.
    pub(crate) fn first_covers(mut self, rules: &[Match]) -> (Vec<Option<usize>>, bool) {
        let mut out = Vec::with_capacity(rules.len());
        for (j, m) in rules.iter().enumerate() {
            out.push(self.first_cover(rules, j, m));
        }
        let exhausted = self.exhausted();
        (out, exhausted)
    }

    fn first_cover(&mut self, rules: &[Match], j: usize, m: &Match) -> Option<usize> {
        let key = m.key();
        if let Some(&(first, cover)) = self.seen.get(&key) {
            // Whatever covers the identical earlier rule covers this one, and that rule itself does.
            return Some(cover.unwrap_or(first));
        }
        let found = if self.exhausted() {
            None
        } else {
            self.search(rules, m)
        };
        self.seen.insert(key, (j, found));
        self.insert(j, m);
        found
    }

    fn insert(&mut self, j: usize, m: &Match) {
        if m.protocol == Protocol::Any {
            self.protocol.any.push(j);
        } else {
            self.protocol
                .by_protocol
                .entry(m.protocol)
                .or_default()
                .push(j);
        }
        self.src.insert(j, &m.src);
        self.dst.insert(j, &m.dst);
        self.sports.insert(j, &m.sports);
        self.dports.insert(j, &m.dports);
    }

    fn search(&mut self, rules: &[Match], m: &Match) -> Option<usize> {
        let mut protocol = vec![self.protocol.any.as_slice()];
        if let Some(l) = self.protocol.by_protocol.get(&m.protocol)
            && m.protocol != Protocol::Any
        {
            protocol.push(l);
        }
        let dimensions = [
            protocol,
            self.src.candidates(&m.src),
            self.dst.candidates(&m.dst),
            self.sports.candidates(&m.sports),
            self.dports.candidates(&m.dports),
        ];
        let size = |lists: &Vec<&[usize]>| lists.iter().map(|l| l.len()).sum::<usize>();
        let narrowest = dimensions.iter().min_by_key(|d| size(d))?;
        let mut candidates: Vec<usize> = narrowest.iter().flat_map(|l| l.iter().copied()).collect();
        let mut spent = candidates.len() as u64 + 1;
        candidates.sort_unstable();
        candidates.dedup();
        let mut found = None;
        for i in candidates {
            let r = &rules[i];
            spent += r.work(m);
            if spent > self.budget {
                break;
            }
            if r.covers(m) {
                found = Some(i);
                break;
            }
        }
        self.budget = self.budget.saturating_sub(spent);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn m(p: Protocol, src: &[&str], dports: &[(u16, u16)]) -> Match {
        Match {
            protocol: p,
            src: Prefixes(src.iter().map(|s| s.parse().expect("test CIDR")).collect()),
            dst: Prefixes::default(),
            sports: vec![],
            dports: dports
                .iter()
                .map(|(a, b)| PortRange {
                    from: *a,
                    to: Some(*b),
                })
                .collect(),
        }
    }

    #[test]
    fn coverage() {
        let wide = m(Protocol::Any, &["10.0.0.0/8"], &[]);
        let narrow = m(Protocol::Tcp, &["10.1.0.0/16"], &[(80, 80)]);
        assert!(wide.covers(&narrow));
        assert!(!narrow.covers(&wide));
        // A v4 default route does not cover IPv6 sources.
        let v4_any = m(Protocol::Any, &["0.0.0.0/0"], &[]);
        assert!(!v4_any.covers(&m(Protocol::Any, &[], &[])));
        let both_any = m(Protocol::Any, &["0.0.0.0/0", "::/0"], &[]);
        assert!(both_any.covers(&m(Protocol::Any, &[], &[])));
        // Full port range covers "any port".
        let all_ports = m(Protocol::Tcp, &[], &[(1, 65535)]);
        assert!(all_ports.covers(&m(Protocol::Tcp, &[], &[])));
        assert!(!m(Protocol::Tcp, &[], &[(1, 1000)]).covers(&m(Protocol::Tcp, &[], &[])));
    }

    /// The indexed analysis finds exactly what comparing every pair finds.
    #[test]
    fn indexed_analysis_agrees_with_comparing_every_pair() {
        let srcs: [&[&str]; 6] = [
            &[],
            &["10.0.0.0/8"],
            &["10.1.0.0/16"],
            &["10.1.2.0/24", "192.0.2.0/24"],
            &["0.0.0.0/0", "::/0"],
            &["2001:db8::/32"],
        ];
        let ports: [&[(u16, u16)]; 5] =
            [&[], &[(80, 80)], &[(1, 65535)], &[(80, 90)], &[(443, 443)]];
        let protos = [Protocol::Any, Protocol::Tcp, Protocol::Udp];
        let mut rules = Vec::new();
        // A deterministic walk through the combinations, in an order that mixes wide and narrow rules.
        let mut x: usize = 7;
        for _ in 0..300 {
            x = (x * 1103515245 + 12345) % 2147483648;
            let p = protos[x % 3];
            let s = srcs[(x / 3) % 6];
            let d = ports[(x / 18) % 5];
            // Ports need tcp or udp.
            let p = if d.is_empty() || p.has_ports() {
                p
            } else {
                Protocol::Tcp
            };
            rules.push(m(p, s, d));
        }
        let (indexed, exhausted) = ShadowAnalysis::new(SHADOW_WORK_BUDGET).first_covers(&rules);
        assert!(!exhausted);
        for (j, got) in indexed.iter().enumerate() {
            let expected = (0..j).find(|&i| rules[i].covers(&rules[j]));
            assert_eq!(*got, expected, "rule {j}: {:?}", rules[j]);
        }
    }

    #[test]
    fn the_budget_bounds_the_work() {
        // Every rule a candidate of every other in every dimension, none covering: the worst case.
        let rules: Vec<Match> = (0..2000u16)
            .map(|i| {
                let mut r = m(Protocol::Tcp, &["10.0.0.0/8"], &[(1000, 2000)]);
                r.sports = vec![PortRange::single(i + 1)];
                r.sports.push(PortRange {
                    from: 3000,
                    to: Some(4000),
                });
                r
            })
            .collect();
        let (_, exhausted) = ShadowAnalysis::new(10_000).first_covers(&rules);
        assert!(exhausted);
    }
}
