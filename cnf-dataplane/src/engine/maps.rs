//! Map bundles: each map's name is written once, in the bundle that owns it (the chain-wide ones
//! here, each network function's in `nf/<function>.rs`), and loading, pinning and re-adoption all
//! read it from there.
//!
//! Shared helpers of the per-instance maps live here too: LPM trie keys of an instance, removal of
//! recorded prefixes, purging a state id's entries from a hash map.

use aya::Ebpf;
use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, ProgramArray};

use super::abi::{ChainStats, CtKey, FnStats, GenCfg, InstanceCfg, Lpm4Data, Lpm6Data, NatKey};
use super::abi::{RlKey, Slot};
use super::config::IpCidr;
use super::control::{CtlCfg, CtlKey};
use super::error::{EngineError, Result};
use super::loader::Hook;

/// A set of maps declared with [`map_bundle!`].
pub(crate) trait Bundle: Sized {
    /// The names of the bundle's maps on `hook`.
    fn names(hook: Hook) -> Vec<&'static str>;
    /// Takes the bundle's maps out of a loaded object.
    fn take(ebpf: &mut Ebpf, hook: Hook) -> Result<Self>;
}

/// Declares a bundle of maps: a struct with one field per map and, per map, an associated const
/// holding its name in the eBPF object (the only place the name is written). Maps of the `xdp { … }`
/// part exist only in the XDP object and are `Option`s (`None` on TC).
macro_rules! map_bundle {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty = $cname:ident($lit:literal), )*
        }
        $( xdp { $( $(#[$xmeta:meta])* $xfield:ident: $xty:ty = $xcname:ident($xlit:literal), )* } )?
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* pub(crate) $field: $ty, )*
            $($( $(#[$xmeta])* pub(crate) $xfield: Option<$xty>, )*)?
        }

        #[allow(dead_code)]
        impl $name {
            $( pub(crate) const $cname: &'static str = $lit; )*
            $($( pub(crate) const $xcname: &'static str = $xlit; )*)?
        }

        impl $crate::engine::maps::Bundle for $name {
            fn names(hook: $crate::engine::loader::Hook) -> Vec<&'static str> {
                let mut names: Vec<&'static str> = vec![$( Self::$cname, )*];
                let xdp: &[&'static str] = &[$($( Self::$xcname, )*)?];
                if hook == $crate::engine::loader::Hook::Xdp {
                    names.extend_from_slice(xdp);
                }
                names
            }

            fn take(
                ebpf: &mut aya::Ebpf,
                hook: $crate::engine::loader::Hook,
            ) -> $crate::engine::error::Result<Self> {
                let _ = hook;
                Ok(Self {
                    $( $field: $crate::engine::maps::take(ebpf, Self::$cname)?, )*
                    $($( $xfield: match hook {
                        $crate::engine::loader::Hook::Xdp => {
                            Some($crate::engine::maps::take(ebpf, Self::$xcname)?)
                        }
                        $crate::engine::loader::Hook::Tc => None,
                    }, )*)?
                })
            }
        }
    };
}
pub(crate) use map_bundle;

map_bundle! {
    /// The chain's own maps (`ebpf/lib/chain.h`, `ebpf/lib/control.h`): generations, slots,
    /// instances, counters, the classifier's tries and the control-plane allow.
    pub(crate) struct ChainMaps {
        active_gen: Array<MapData, u32> = ACTIVE_GEN("vnf_active_gen"),
        gen_cfg: Array<MapData, GenCfg> = GEN_CFG("vnf_gen_cfg"),
        gen_flags: Array<MapData, u32> = GEN_FLAGS("vnf_gen_flags"),
        slots: Array<MapData, Slot> = SLOTS("vnf_slots"),
        progs: ProgramArray<MapData> = PROGS("vnf_progs"),
        instances: Array<MapData, InstanceCfg> = INSTANCES("vnf_instances"),
        stats: PerCpuArray<MapData, FnStats> = STATS("vnf_stats"),
        chain_stats: PerCpuArray<MapData, ChainStats> = CHAIN_STATS("vnf_chain_stats"),
        cls_src4: LpmTrie<MapData, Lpm4Data, u32> = CLS_SRC4("vnf_cls_src4"),
        cls_dst4: LpmTrie<MapData, Lpm4Data, u32> = CLS_DST4("vnf_cls_dst4"),
        cls_src6: LpmTrie<MapData, Lpm6Data, u32> = CLS_SRC6("vnf_cls_src6"),
        cls_dst6: LpmTrie<MapData, Lpm6Data, u32> = CLS_DST6("vnf_cls_dst6"),
        /// The control-plane allow (`ebpf/lib/control.h`).
        ctl_cfg: Array<MapData, CtlCfg> = CTL_CFG("vnf_ctl_cfg"),
        ctl_endpoints: BpfHashMap<MapData, CtlKey, u32> = CTL_ENDPOINTS("vnf_ctl_endpoints"),
        ctl_stats: PerCpuArray<MapData, u64> = CTL_STATS("vnf_ctl_stats"),
        /// The fast path's stamps (`ebpf/lib/fastpath.h`): `[0]` the policy epoch the engine bumps
        /// on every change that can alter a decision, `[1]` the data path's flow-state generation.
        fp_epoch: Array<MapData, u32> = FP_EPOCH("vnf_fp_epoch"),
    }
    xdp {
        /// Per-interface flags (key ifindex), [`super::abi::IF_F_XDP_GENERIC`].
        if_flags: BpfHashMap<MapData, u32, u32> = IF_FLAGS("vnf_if_flags"),
    }
}

impl ChainMaps {
    /// The classifier's tries.
    pub(crate) fn cls_tries(&mut self) -> Tries<'_, u32> {
        Tries {
            v4: [&mut self.cls_src4, &mut self.cls_dst4],
            v6: [&mut self.cls_src6, &mut self.cls_dst6],
            names4: [Self::CLS_SRC4, Self::CLS_DST4],
            names6: [Self::CLS_SRC6, Self::CLS_DST6],
        }
    }
}

/// First-fit region of `size` entries in a pool of `pool` entries, beside the `used` regions
/// (offset, length); `None` when no gap is large enough.
pub(crate) fn first_fit(mut used: Vec<(u32, u32)>, size: u32, pool: u32) -> Option<u32> {
    used.sort_unstable();
    let mut start = 0u32;
    for (off, len) in used {
        if off.saturating_sub(start) >= size {
            return Some(start);
        }
        start = start.max(off + len);
    }
    (pool.saturating_sub(start) >= size).then_some(start)
}

/// Maps the engine never reads or writes but pins with a kept chain, so a re-adopted chain keeps
/// them. A new map in the eBPF objects goes into a bundle (when the engine uses it) or here: a kept
/// chain refuses to load an object with a map in neither.
pub(crate) const PINNED_ONLY: &[&str] = &[
    // reply detection of translated flows
    "vnf_replies",
    // the first fragments seen: a re-adopted chain keeps passing the rest of their datagrams
    "vnf_frags",
    // fragments parked until their first fragment arrives (TC; ebpf/lib/fragpark.h)
    "vnf_frag_pend",
    "vnf_frag_park",
    "vnf_park_buf",
    // per-CPU state handed from one tail call to the next: while a re-adoption switches
    // programs, the old entry's packets continue in the new functions through these
    "vnf_scratch",
    "vnf_parsed",
    // the fast path's flow table and its per-CPU recording (ebpf/lib/fastpath.h)
    "vnf_fp_flows",
    "vnf_fp_rec",
];

/// Takes map `name` out of a loaded object as a `T`.
pub(crate) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| EngineError::Missing(format!("map {name}")))?;
    T::try_from(map).map_err(EngineError::map(name))
}

/// Every map of an attach point, as pinned in a kept chain's directory.
pub(crate) fn all_names(hook: Hook) -> Vec<&'static str> {
    let mut names = ChainMaps::names(hook);
    names.extend(super::nf::Functions::map_names(hook));
    names.extend_from_slice(PINNED_ONLY);
    if hook == Hook::Xdp {
        // first fragments with parked followers, read by the replay ([`super::fragreplay`])
        names.push(super::fragreplay::EVENTS);
    }
    names
}

/// Prefixes of one classifier generation, one firewall instance or one NAT instance's SNAT rule,
/// as written into their LPM tries (`bool` = destination trie).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct PrefixKeys {
    pub(crate) v4: Vec<(u32, Lpm4Data, bool)>,
    pub(crate) v6: Vec<(u32, Lpm6Data, bool)>,
}

/// The `[source, destination]` LPM tries of both address families of one user (the classifier, a
/// firewall, a NAT's SNAT rule), with their names.
pub(crate) struct Tries<'a, V: aya::Pod> {
    pub(crate) v4: [&'a mut LpmTrie<MapData, Lpm4Data, V>; 2],
    pub(crate) v6: [&'a mut LpmTrie<MapData, Lpm6Data, V>; 2],
    pub(crate) names4: [&'static str; 2],
    pub(crate) names6: [&'static str; 2],
}

impl<V: aya::Pod> Tries<'_, V> {
    /// Inserts prefix `c` with `value` under `inst` into the source or destination (`dst`) trie of
    /// its family and records the key in `keys`.
    pub(crate) fn insert(
        &mut self,
        keys: &mut PrefixKeys,
        (inst, c, dst): (u32, &IpCidr, bool),
        value: V,
    ) -> Result<()> {
        let side = usize::from(dst);
        if c.family() == 4 {
            let (plen, data) = lpm4(inst, c);
            self.v4[side]
                .insert(&Key::new(plen, data), value, 0)
                .map_err(EngineError::map(self.names4[side]))?;
            keys.v4.push((plen, data, dst));
        } else {
            let (plen, data) = lpm6(inst, c);
            self.v6[side]
                .insert(&Key::new(plen, data), value, 0)
                .map_err(EngineError::map(self.names6[side]))?;
            keys.v6.push((plen, data, dst));
        }
        Ok(())
    }

    /// Removes recorded prefix keys (a missing one is fine).
    pub(crate) fn remove(&mut self, keys: PrefixKeys) -> Result<()> {
        for (plen, data, dst) in keys.v4 {
            let side = usize::from(dst);
            let r = self.v4[side].remove(&Key::new(plen, data));
            ignore_missing(r, self.names4[side])?;
        }
        for (plen, data, dst) in keys.v6 {
            let side = usize::from(dst);
            let r = self.v6[side].remove(&Key::new(plen, data));
            ignore_missing(r, self.names6[side])?;
        }
        Ok(())
    }
}

/// The LPM key of prefix `c` (IPv4) under instance (or generation) `inst`.
pub(crate) fn lpm4(inst: u32, c: &IpCidr) -> (u32, Lpm4Data) {
    let mut addr = [0u8; 4];
    addr.copy_from_slice(&c.masked_bytes()[..4]);
    (
        32 + u32::from(c.prefix_len()),
        Lpm4Data {
            instance_be: inst.to_be(),
            addr,
        },
    )
}

/// The LPM key of prefix `c` (IPv6) under instance (or generation) `inst`.
pub(crate) fn lpm6(inst: u32, c: &IpCidr) -> (u32, Lpm6Data) {
    (
        32 + u32::from(c.prefix_len()),
        Lpm6Data {
            instance_be: inst.to_be(),
            addr: c.masked_bytes(),
        },
    )
}

/// Keys of the state maps that hold entries of many function instances.
pub(crate) trait InstanceKey {
    /// The function instance (state id) the entry belongs to.
    fn instance(&self) -> u32;
}

macro_rules! instance_key {
    ($($t:ty),*) => {
        $(impl InstanceKey for $t {
            fn instance(&self) -> u32 {
                self.instance
            }
        })*
    };
}
instance_key!(CtKey, RlKey, NatKey, super::abi::MonKey);

/// Keys of `map` that belong to state id `state`.
pub(crate) fn keys_of<K, V>(map: &BpfHashMap<MapData, K, V>, state: u32) -> Vec<K>
where
    K: aya::Pod + InstanceKey,
    V: aya::Pod,
{
    map.keys()
        .filter_map(|k| k.ok())
        .filter(|k| k.instance() == state)
        .collect()
}

/// Removes every entry of state id `state` from a per-instance state map (conntrack, buckets, NAT).
pub(crate) fn purge_instance<K, V>(
    map: &mut BpfHashMap<MapData, K, V>,
    state: u32,
    name: &'static str,
) -> Result<()>
where
    K: aya::Pod + InstanceKey,
    V: aya::Pod,
{
    for k in keys_of(map, state) {
        ignore_missing(map.remove(&k), name)?;
    }
    Ok(())
}

/// A map removal where a missing key is success.
pub(crate) fn ignore_missing(
    r: std::result::Result<(), aya::maps::MapError>,
    name: &'static str,
) -> Result<()> {
    match r {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(e) => Err(EngineError::map(name)(e)),
    }
}
