//! NAT (`ebpf/nf/nat.h`): one SNAT rule (source prefixes in LPM tries, a port pool) and static DNAT
//! mappings per instance; translation entries in `vnf_nat_ct`.

use std::collections::HashMap;
use std::net::IpAddr;

use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData};

use super::NetworkFunction;
use crate::engine::abi::{
    self, Lpm4Data, Lpm6Data, NatCfg, NatDnatKey, NatDnatVal, NatKey, NatVal,
};
use crate::engine::config::{
    FunctionKind, IpCidr, MAX_CLASSIFIER_CIDRS, MAX_DNAT, NatConfig, NatRule,
};
use crate::engine::error::{EngineError, Result};
use crate::engine::loader::Engine;
use crate::engine::maps::{self, PrefixKeys, ignore_missing, lpm4, lpm6, map_bundle};

map_bundle! {
    /// The NAT's maps.
    pub(crate) struct NatMaps {
        cfg: Array<MapData, NatCfg> = CFG("vnf_nat_cfg"),
        ct: BpfHashMap<MapData, NatKey, NatVal> = CT("vnf_nat_ct"),
        dnat: BpfHashMap<MapData, NatDnatKey, NatDnatVal> = DNAT("vnf_nat_dnat"),
        src4: LpmTrie<MapData, Lpm4Data, u32> = SRC4("vnf_nat_src4"),
        src6: LpmTrie<MapData, Lpm6Data, u32> = SRC6("vnf_nat_src6"),
    }
}

/// Validated NAT state: config, SNAT source prefixes, DNAT mappings.
pub(crate) struct PreparedNat {
    cfg: NatCfg,
    snat_src: Vec<IpCidr>,
    dnat: Vec<(NatDnatKey, NatDnatVal)>,
}

/// The NAT's maps and the keys written for each instance.
pub(crate) struct Nat {
    pub(crate) maps: NatMaps,
    /// SNAT prefixes and DNAT keys written for each instance.
    pub(crate) keys: HashMap<u32, (PrefixKeys, Vec<NatDnatKey>)>,
}

impl NetworkFunction for Nat {
    const KIND: u32 = abi::kind::NAT;
    const PROGRAM: &'static str = "vnf_nat";
    type Maps = NatMaps;
    type Prepared = PreparedNat;

    fn new(maps: NatMaps) -> Self {
        Self {
            maps,
            keys: HashMap::new(),
        }
    }

    fn prepare(kind: &FunctionKind) -> Option<Result<PreparedNat>> {
        match kind {
            FunctionKind::Nat(c) => Some(encode(c)),
            _ => None,
        }
    }

    /// Writes SNAT prefixes and DNAT mappings, then the config.
    fn write(&mut self, inst: u32, nat: &PreparedNat, _nr_cpus: usize) -> Result<()> {
        // record before inserting so a failure half-way is still cleaned up on release
        let (prefixes, dnat_keys) = self.keys.entry(inst).or_default();
        for c in &nat.snat_src {
            if c.family() == 4 {
                let (plen, data) = lpm4(inst, c);
                self.maps
                    .src4
                    .insert(&Key::new(plen, data), 1, 0)
                    .map_err(EngineError::map(NatMaps::SRC4))?;
                prefixes.v4.push((plen, data, false));
            } else {
                let (plen, data) = lpm6(inst, c);
                self.maps
                    .src6
                    .insert(&Key::new(plen, data), 1, 0)
                    .map_err(EngineError::map(NatMaps::SRC6))?;
                prefixes.v6.push((plen, data, false));
            }
        }
        for (k, v) in &nat.dnat {
            let key = NatDnatKey {
                instance: inst,
                ..*k
            };
            self.maps
                .dnat
                .insert(key, v, 0)
                .map_err(EngineError::map(NatMaps::DNAT))?;
            dnat_keys.push(key);
        }
        self.maps
            .cfg
            .set(inst, nat.cfg, 0)
            .map_err(EngineError::map(NatMaps::CFG))
    }

    /// Removes the SNAT prefixes and DNAT mappings of the instance.
    fn release(&mut self, inst: u32) -> Result<()> {
        let Some((prefixes, dnat)) = self.keys.remove(&inst) else {
            return Ok(());
        };
        for (plen, data, _) in prefixes.v4 {
            let r = self.maps.src4.remove(&Key::new(plen, data));
            ignore_missing(r, NatMaps::SRC4)?;
        }
        for (plen, data, _) in prefixes.v6 {
            let r = self.maps.src6.remove(&Key::new(plen, data));
            ignore_missing(r, NatMaps::SRC6)?;
        }
        for k in dnat {
            ignore_missing(self.maps.dnat.remove(&k), NatMaps::DNAT)?;
        }
        Ok(())
    }

    fn purge_state(&mut self, state: u32) -> Result<()> {
        maps::purge_instance(&mut self.maps.ct, state, NatMaps::CT)
    }
}

impl Nat {
    /// Translation entries (one per flow direction) of state id `state`.
    pub(crate) fn entries(&self, state: u32) -> usize {
        maps::keys_of(&self.maps.ct, state).len()
    }
}

fn bad<T>(m: impl Into<String>) -> Result<T> {
    Err(EngineError::Config(m.into()))
}

/// Encodes a NAT configuration: checks every rule, builds the config, SNAT prefixes and DNAT keys.
fn encode(c: &NatConfig) -> Result<PreparedNat> {
    let mut out = PreparedNat {
        cfg: NatCfg {
            timeout_ns: u64::try_from(c.timeout.as_nanos()).unwrap_or(u64::MAX),
            ..Default::default()
        },
        snat_src: Vec::new(),
        dnat: Vec::new(),
    };
    if c.rules.is_empty() {
        return bad("NAT needs at least one rule");
    }
    for rule in &c.rules {
        match rule {
            NatRule::Snat {
                match_src,
                to_addr,
                ports,
            } => snat(&mut out, match_src, *to_addr, (ports.lo, ports.hi))?,
            NatRule::Dnat {
                protocol,
                match_dst,
                match_port,
                to_addr,
                to_port,
            } => dnat(
                &mut out,
                *protocol,
                (*match_dst, *match_port),
                (*to_addr, *to_port),
            )?,
        }
    }
    if out.dnat.len() > MAX_DNAT {
        return bad(format!(
            "NAT has {} DNAT mappings, at most {MAX_DNAT} are supported",
            out.dnat.len()
        ));
    }
    out.cfg.nr_dnat = out.dnat.len() as u16;
    Ok(out)
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fn family(a: IpAddr) -> u8 {
    if a.is_ipv4() { 4 } else { 6 }
}

/// The SNAT rule.
fn snat(
    out: &mut PreparedNat,
    match_src: &[IpCidr],
    to_addr: IpAddr,
    ports: (u16, u16),
) -> Result<()> {
    if out.cfg.flags & abi::nat::F_SNAT != 0 {
        return bad("NAT supports one SNAT rule per function");
    }
    if let Some(m) = match_src.iter().find(|m| !same_family(m.addr(), to_addr)) {
        return bad(format!("SNAT {m} -> {to_addr}: address families differ"));
    }
    if match_src.len() > MAX_CLASSIFIER_CIDRS {
        return bad(format!(
            "SNAT has {} source prefixes, at most {MAX_CLASSIFIER_CIDRS} are supported",
            match_src.len()
        ));
    }
    if ports.0 == 0 || ports.0 > ports.1 {
        return bad("SNAT port pool must be a non-empty range without port 0");
    }
    out.cfg.flags |= abi::nat::F_SNAT;
    if match_src.is_empty() {
        out.cfg.flags |= abi::nat::F_SNAT_ANY;
    }
    out.cfg.snat_family = family(to_addr);
    out.cfg.snat_addr = Engine::addr_bytes(to_addr);
    (out.cfg.port_lo, out.cfg.port_hi) = ports;
    out.snat_src = match_src.to_vec();
    Ok(())
}

/// One DNAT mapping.
fn dnat(
    out: &mut PreparedNat,
    protocol: Option<u8>,
    (match_dst, match_port): (IpAddr, Option<u16>),
    (to_addr, to_port): (IpAddr, Option<u16>),
) -> Result<()> {
    if !same_family(match_dst, to_addr) {
        return bad(format!(
            "DNAT {match_dst} -> {to_addr}: address families differ"
        ));
    }
    if match_port == Some(0) || to_port == Some(0) {
        return bad("DNAT ports must be non-zero");
    }
    if !matches!(protocol, None | Some(6) | Some(17)) {
        return bad("DNAT protocol must be TCP (6) or UDP (17)");
    }
    let key = NatDnatKey {
        instance: 0,
        proto: protocol.unwrap_or(0),
        family: family(match_dst),
        port: match_port.unwrap_or(0),
        addr: Engine::addr_bytes(match_dst),
    };
    if out.dnat.iter().any(|(k, _)| *k == key) {
        return bad(format!(
            "two DNAT mappings for {match_dst} port {} protocol {}",
            key.port, key.proto
        ));
    }
    out.dnat.push((
        key,
        NatDnatVal {
            addr: Engine::addr_bytes(to_addr),
            port: to_port.unwrap_or(0),
            _pad: [0; 2],
        },
    ));
    Ok(())
}
