//! One room per network function: `nf/<function>.rs` mirrors `ebpf/nf/<function>.h` and holds the
//! function's map bundle (names written once), the encoding of its configuration into the shared ABI
//! (`abi.rs`), its map writes and clears, the purge of its state and the readers of its counters.
//!
//! The composition of a chain (generations, slots, instance and state ids) is `loader.rs`'s; it reaches
//! the functions only through [`NetworkFunction`] and the registry below.

use aya::Ebpf;

use super::config::FunctionKind;
use super::error::{EngineError, Result};
use super::loader::Hook;
use super::maps::Bundle;

pub(crate) mod firewall;
pub(crate) mod forwarder;
pub(crate) mod lb;
pub(crate) mod monitor;
pub(crate) mod nat;
pub(crate) mod ratelimit;
pub(crate) mod userspace;

/// What the composition needs of a network function.
pub(crate) trait NetworkFunction: Sized {
    /// Its kind (`enum vnf_kind`, [`super::abi::kind`]).
    const KIND: u32;
    /// Its program in the eBPF objects (`SEC("xdp") int vnf_…` of `ebpf/nf/<function>.h`).
    const PROGRAM: &'static str;
    /// The validated map values of one instance.
    type Prepared;
    /// Its maps (declared with [`super::maps::map_bundle!`]).
    type Maps: Bundle;

    /// The function around its maps (reading what it needs from them: a re-adopted chain's maps
    /// hold state).
    fn new(maps: Self::Maps) -> Self;
    /// Validates and encodes `kind` when it is this function's configuration (`None` otherwise).
    /// Touches no map: a chain is checked whole before anything is written.
    fn prepare(kind: &FunctionKind) -> Option<Result<Self::Prepared>>;
    /// The state an heir inherits only when this value matches (see [`Prepared::state_class`]).
    fn state_class(_: &Self::Prepared) -> u32 {
        0
    }
    /// Writes instance `inst`'s configuration into the maps.
    fn write(&mut self, inst: u32, prepared: &Self::Prepared, nr_cpus: usize) -> Result<()>;
    /// Forgets instance `inst`'s configuration (its keys, its pool regions) when it is released.
    fn release(&mut self, _inst: u32) -> Result<()> {
        Ok(())
    }
    /// Fresh state for state id `state` (zeroed counters, full buckets).
    fn reset_state(&mut self, _state: u32, _nr_cpus: usize) -> Result<()> {
        Ok(())
    }
    /// Drops the flows, buckets and keyed counters of state id `state`.
    fn purge_state(&mut self, _state: u32) -> Result<()> {
        Ok(())
    }
}

/// The registry: one row per network function (`Prepared` variant, field of [`Functions`], type).
/// A new function is one row here and one `nf/<function>.rs`.
macro_rules! network_functions {
    ($( $variant:ident => $field:ident: $ty:ty, )*) => {
        /// Every network function's maps and bookkeeping.
        pub(crate) struct Functions {
            $( pub(crate) $field: $ty, )*
        }

        /// One function's validated map values, ready to be written.
        pub(crate) enum Prepared {
            $( $variant(<$ty as NetworkFunction>::Prepared), )*
        }

        /// The programs of every function, loaded into every engine.
        pub(crate) const PROGRAMS: &[&str] = &[$( <$ty as NetworkFunction>::PROGRAM, )*];

        /// The program that runs function kind `kind`.
        pub(crate) fn program_of_kind(kind: u32) -> Option<&'static str> {
            $( if kind == <$ty as NetworkFunction>::KIND {
                return Some(<$ty as NetworkFunction>::PROGRAM);
            } )*
            None
        }

        /// Validates and encodes one function's configuration.
        pub(crate) fn prepare(kind: &FunctionKind) -> Result<Prepared> {
            $( if let Some(p) = <$ty as NetworkFunction>::prepare(kind) {
                return Ok(Prepared::$variant(p?));
            } )*
            Err(EngineError::Config(format!("no network function takes {kind:?}")))
        }

        impl Prepared {
            /// The function's kind ([`super::abi::kind`]).
            pub(crate) fn kind(&self) -> u32 {
                match self {
                    $( Self::$variant(_) => <$ty as NetworkFunction>::KIND, )*
                }
            }

            /// The function's program.
            pub(crate) fn program(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => <$ty as NetworkFunction>::PROGRAM, )*
                }
            }

            /// State that a successor can inherit only when this value matches: a monitor that
            /// changes what it counts by starts with fresh counters (the keys would mean something
            /// else).
            pub(crate) fn state_class(&self) -> u32 {
                match self {
                    $( Self::$variant(p) => <$ty as NetworkFunction>::state_class(p), )*
                }
            }
        }

        impl Functions {
            /// Takes every function's maps out of a loaded object.
            pub(crate) fn take(ebpf: &mut Ebpf, hook: Hook) -> Result<Self> {
                Ok(Self {
                    $( $field: <$ty as NetworkFunction>::new(Bundle::take(ebpf, hook)?), )*
                })
            }

            /// The names of every function's maps on `hook`.
            pub(crate) fn map_names(hook: Hook) -> Vec<&'static str> {
                let mut names = Vec::new();
                $( names.extend(<<$ty as NetworkFunction>::Maps as Bundle>::names(hook)); )*
                names
            }

            /// Writes instance `inst`'s configuration.
            pub(crate) fn write(&mut self, inst: u32, p: &Prepared, nr_cpus: usize) -> Result<()> {
                match p {
                    $( Prepared::$variant(p) => self.$field.write(inst, p, nr_cpus), )*
                }
            }

            /// Forgets instance `inst` in every function (only its own holds anything).
            pub(crate) fn release(&mut self, inst: u32) -> Result<()> {
                $( self.$field.release(inst)?; )*
                Ok(())
            }

            /// Fresh state for state id `state` in every function.
            pub(crate) fn reset_state(&mut self, state: u32, nr_cpus: usize) -> Result<()> {
                $( self.$field.reset_state(state, nr_cpus)?; )*
                Ok(())
            }

            /// Drops state id `state` from every function.
            pub(crate) fn purge_state(&mut self, state: u32) -> Result<()> {
                $( self.$field.purge_state(state)?; )*
                Ok(())
            }
        }
    };
}

network_functions! {
    Firewall => firewall: firewall::Firewall,
    Forwarder => forwarder: forwarder::Forwarder,
    Monitor => monitor: monitor::Monitor,
    RateLimiter => ratelimit: ratelimit::RateLimiter,
    Nat => nat: nat::Nat,
    Lb => lb: lb::LoadBalancer,
    Userspace => userspace: userspace::Userspace,
}
