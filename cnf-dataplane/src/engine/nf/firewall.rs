//! The firewall (`ebpf/nf/firewall.h`): rule pools, dimension tries, conntrack, rule hit counters.
//! The rule compiler (API rules → bitmaps) is [`crate::engine::firewall`].

use std::collections::{BTreeMap, HashMap, HashSet};

use aya::maps::{Array, HashMap as BpfHashMap, IterableMap, LpmTrie, MapData, PerCpuArray};

use super::NetworkFunction;
use crate::engine::abi::{self, CtKey, CtVal, FwBm, FwCfg, FwPortSeg, Lpm4Data, Lpm6Data};
use crate::engine::batch;
use crate::engine::config::FunctionKind;
use crate::engine::error::{EngineError, Result};
use crate::engine::firewall::{self as compiler, CompiledFirewall};
use crate::engine::maps::{self, PrefixKeys, Tries, first_fit, map_bundle};

map_bundle! {
    /// The firewall's maps.
    pub(crate) struct FirewallMaps {
        cfg: Array<MapData, FwCfg> = CFG("vnf_fw_cfg"),
        actions: Array<MapData, u32> = ACTIONS("vnf_fw_actions"),
        hits: PerCpuArray<MapData, u64> = HITS("vnf_fw_hits"),
        words: Array<MapData, u64> = WORDS("vnf_fw_words"),
        proto: Array<MapData, FwBm> = PROTO("vnf_fw_proto"),
        ports: Array<MapData, FwPortSeg> = PORTS("vnf_fw_ports"),
        src4: LpmTrie<MapData, Lpm4Data, FwBm> = SRC4("vnf_fw_src4"),
        dst4: LpmTrie<MapData, Lpm4Data, FwBm> = DST4("vnf_fw_dst4"),
        src6: LpmTrie<MapData, Lpm6Data, FwBm> = SRC6("vnf_fw_src6"),
        dst6: LpmTrie<MapData, Lpm6Data, FwBm> = DST6("vnf_fw_dst6"),
        ct: BpfHashMap<MapData, CtKey, CtVal> = CT("vnf_ct"),
    }
}

impl FirewallMaps {
    fn tries(&mut self) -> Tries<'_, FwBm> {
        Tries {
            v4: [&mut self.src4, &mut self.dst4],
            v6: [&mut self.src6, &mut self.dst6],
            names4: [Self::SRC4, Self::DST4],
            names6: [Self::SRC6, Self::DST6],
        }
    }
}

/// Pool regions (offset, length) of one firewall instance: rules, words, port segments.
pub(crate) type Regions = [(u32, u32); 3];

/// The firewall's maps and what the engine remembers of each instance.
pub(crate) struct Firewall {
    pub(crate) maps: FirewallMaps,
    /// Prefixes written for each instance.
    pub(crate) keys: HashMap<u32, PrefixKeys>,
    /// Rule priorities of each instance, in evaluation order.
    pub(crate) priorities: HashMap<u32, Vec<u32>>,
    /// Pool regions of each instance.
    pub(crate) regions: HashMap<u32, Regions>,
    /// Last policy version written (`vnf_fw_cfg.version`); every configuration written gets a
    /// higher one, so conntrack entries stamped under an earlier policy are re-checked.
    pub(crate) policy_version: u32,
}

impl NetworkFunction for Firewall {
    const KIND: u32 = abi::kind::FIREWALL;
    const PROGRAM: &'static str = "vnf_firewall";
    type Maps = FirewallMaps;
    type Prepared = Box<CompiledFirewall>;

    fn new(maps: FirewallMaps) -> Self {
        // a re-adopted chain's pinned configurations hold the highest version any live conntrack
        // entry can carry (each state's newest configuration was written last): continue above it
        let policy_version = (0..abi::MAX_INSTANCES)
            .filter_map(|i| maps.cfg.get(&i, 0).ok())
            .map(|c| c.version)
            .max()
            .unwrap_or(0);
        Self {
            maps,
            keys: HashMap::new(),
            priorities: HashMap::new(),
            regions: HashMap::new(),
            policy_version,
        }
    }

    fn prepare(kind: &FunctionKind) -> Option<Result<Self::Prepared>> {
        match kind {
            FunctionKind::Firewall(c) => Some(compiler::compile(c).map(Box::new)),
            _ => None,
        }
    }

    /// Writes the rules, bitmaps and port segments into fresh pool regions, then the protocol and
    /// prefix entries, then the config; frees the previous regions and removes stale prefixes last.
    fn write(&mut self, inst: u32, fw: &Self::Prepared, nr_cpus: usize) -> Result<()> {
        let regions = self.write_regions(inst, fw, nr_cpus)?;
        let [(rule_off, _), (word_off, _), (port_off, _)] = regions;
        let rebase = |bm: &FwBm| FwBm {
            word_off: bm.word_off + word_off,
            ..*bm
        };
        let mut keys = PrefixKeys::default();
        let mut tries = self.maps.tries();
        for (list, dst) in [(&fw.src4, false), (&fw.dst4, true)] {
            for (c, bm) in list {
                tries.insert(&mut keys, (inst, c, dst), rebase(bm))?;
            }
        }
        for (list, dst) in [(&fw.src6, false), (&fw.dst6, true)] {
            for (c, bm) in list {
                tries.insert(&mut keys, (inst, c, dst), rebase(bm))?;
            }
        }
        self.policy_version = self.policy_version.wrapping_add(1).max(1);
        let cfg = FwCfg {
            version: self.policy_version,
            rule_off,
            sport_off: port_off + fw.cfg.sport_off,
            dport_off: port_off + fw.cfg.dport_off,
            noport: rebase(&fw.cfg.noport),
            any: rebase(&fw.cfg.any),
            ..fw.cfg
        };
        self.maps
            .cfg
            .set(inst, cfg, 0)
            .map_err(EngineError::map(FirewallMaps::CFG))?;
        self.regions.insert(inst, regions);
        self.remove_stale_prefixes(inst, &keys)?;
        self.keys.insert(inst, keys);
        self.priorities.insert(inst, fw.priorities.clone());
        Ok(())
    }

    fn release(&mut self, inst: u32) -> Result<()> {
        self.priorities.remove(&inst);
        self.regions.remove(&inst);
        if let Some(old) = self.keys.remove(&inst) {
            self.maps.tries().remove(old)?;
        }
        Ok(())
    }

    fn purge_state(&mut self, state: u32) -> Result<()> {
        maps::purge_instance(&mut self.maps.ct, state, FirewallMaps::CT)
    }
}

impl Firewall {
    /// Writes the rule actions (and zeroed hit counters), bitmap words, port segments and protocol
    /// bitmaps of `fw` into fresh pool regions; returns the regions.
    fn write_regions(&self, inst: u32, fw: &CompiledFirewall, nr_cpus: usize) -> Result<Regions> {
        let n = fw.actions.len() as u32;
        let nports = (fw.sports.len() + fw.dports.len()) as u32;
        let rule_off = self.alloc(0, n, abi::FW_RULE_POOL, "rule")?;
        let word_off = self.alloc(1, fw.words.len() as u32, abi::FW_WORD_POOL, "bitmap word")?;
        let port_off = self.alloc(2, nports, abi::FW_PORT_POOL, "port segment")?;
        let rebase = |bm: &FwBm| FwBm {
            word_off: bm.word_off + word_off,
            ..*bm
        };
        let m = &self.maps;
        // region writes are one batch call each (10,000 rules would be ~40,000 calls otherwise)
        batch::update_array(
            m.actions.map().fd(),
            FirewallMaps::ACTIONS,
            rule_off,
            &fw.actions,
        )?;
        let zero_hits = vec![0u64; fw.actions.len() * nr_cpus];
        batch::update_array_per_cpu(
            m.hits.map().fd(),
            FirewallMaps::HITS,
            rule_off,
            &zero_hits,
            nr_cpus,
        )?;
        batch::update_array(m.words.map().fd(), FirewallMaps::WORDS, word_off, &fw.words)?;
        let segs: Vec<FwPortSeg> = fw
            .sports
            .iter()
            .chain(&fw.dports)
            .map(|seg| FwPortSeg {
                bm: rebase(&seg.bm),
                ..*seg
            })
            .collect();
        batch::update_array(m.ports.map().fd(), FirewallMaps::PORTS, port_off, &segs)?;
        let protos: Vec<FwBm> = fw.proto.iter().map(rebase).collect();
        batch::update_array(m.proto.map().fd(), FirewallMaps::PROTO, inst * 256, &protos)?;
        Ok([
            (rule_off, n),
            (word_off, fw.words.len() as u32),
            (port_off, nports),
        ])
    }

    /// Removes the prefixes of instance `inst`'s previous rule set that `keys` (the new one) lacks.
    fn remove_stale_prefixes(&mut self, inst: u32, keys: &PrefixKeys) -> Result<()> {
        let Some(mut stale) = self.keys.remove(&inst) else {
            return Ok(());
        };
        let new4: HashSet<_> = keys
            .v4
            .iter()
            .map(|(p, d, x)| (*p, d.addr, d.instance_be, *x))
            .collect();
        let new6: HashSet<_> = keys
            .v6
            .iter()
            .map(|(p, d, x)| (*p, d.addr, d.instance_be, *x))
            .collect();
        stale
            .v4
            .retain(|(p, d, x)| !new4.contains(&(*p, d.addr, d.instance_be, *x)));
        stale
            .v6
            .retain(|(p, d, x)| !new6.contains(&(*p, d.addr, d.instance_be, *x)));
        self.maps.tries().remove(stale)
    }

    /// First-fit region of `size` entries of pool `which` (0 rules, 1 words, 2 port segments) of
    /// `pool` entries, beside every live region.
    fn alloc(&self, which: usize, size: u32, pool: u32, what: &str) -> Result<u32> {
        let used = self.regions.values().map(|r| r[which]).collect();
        first_fit(used, size, pool).ok_or_else(|| {
            EngineError::Config(format!(
                "no room for {size} firewall {what} entries: the pool of {pool} is taken by {} live firewalls",
                self.regions.len()
            ))
        })
    }

    /// Hit counters of instance `inst`'s rules, in priority order.
    pub(crate) fn rule_hits(&self, inst: u32) -> Result<Vec<u64>> {
        let cfg = self
            .maps
            .cfg
            .get(&inst, 0)
            .map_err(EngineError::map(FirewallMaps::CFG))?;
        (0..cfg.nr_rules.min(abi::FW_MAX_RULES))
            .map(|i| {
                self.maps
                    .hits
                    .get(&(cfg.rule_off + i), 0)
                    .map(|v| v.iter().sum())
                    .map_err(EngineError::map(FirewallMaps::HITS))
            })
            .collect()
    }

    /// Hits of instance `inst` summed per rule priority (`None`: not a firewall instance).
    pub(crate) fn hits_by_priority(&self, inst: u32, hits: Vec<u64>) -> Option<BTreeMap<u32, u64>> {
        let prios = self.priorities.get(&inst)?;
        let mut out = BTreeMap::new();
        for (p, h) in prios.iter().zip(hits) {
            *out.entry(*p).or_insert(0) += h;
        }
        Some(out)
    }

    /// Tracked connections of state id `state`.
    pub(crate) fn conntrack_entries(&self, state: u32) -> usize {
        maps::keys_of(&self.maps.ct, state).len()
    }
}
