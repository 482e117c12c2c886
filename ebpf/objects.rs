//! The compiled eBPF objects of build-vnf, embedded at build time by `build.rs` (clang over
//! the attach points in this directory), and the one `bpf(2)` command aya 0.14 has no API for,
//! `BPF_PROG_TEST_RUN` ([`test_run`]). The data plane and pktgen both load their programs from
//! here with aya.

use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, include_bytes_aligned};

pub mod test_run;

/// XDP attach point of the chain (`xdp_chain.c`).
pub static XDP_CHAIN: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_chain.o"));

/// TC attach point of the chain (`tc_chain.c`).
pub static TC_CHAIN: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tc_chain.o"));

/// Standalone AF_XDP redirect of the user-space tier (`xsk_redirect.c`).
pub static XSK_REDIRECT: &[u8] =
    include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsk_redirect.o"));

/// Reference programs of the chain benchmark (`bench.c`): a bare one-hop redirect, a
/// counting sink, and the alternative firewall classifiers (linear scan, tuple-space search).
pub static BENCH: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench.o"));

/// pktgen's XDP sink receiver (`pktgen_sink.c`): program `pktgen_sink`, maps
/// `pktgen_sink_streams` and `pktgen_sink_totals`, globals `pktgen_magic` and `sink_verdict`.
pub static PKTGEN_SINK: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pktgen_sink.o"));

/// pktgen's live-frames generator (`pktgen_live.c`): program `pktgen_live`, map
/// `pktgen_live_seq`.
pub static PKTGEN_LIVE: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pktgen_live.o"));

/// The new-flow generator, its counting sink and the RTT reflector (`pktgen_cps.c`): programs
/// `pktgen_cps`, `cps_sink`, `cps_echo` and `cps_pass`, maps `pktgen_cps_cfg`, `pktgen_cps_seq`,
/// `cps_sink_cfg`, `cps_sink_count`, `cps_sink_ports` and `cps_echo_cfg`.
pub static PKTGEN_CPS: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pktgen_cps.o"));

/// Why [`load_xdp`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The object has no program of that name.
    #[error("the object has no program {0}")]
    Missing(String),
    /// The program is not XDP, or the kernel refused it (the verifier's log is in the source).
    #[error("program {name}: {source}")]
    Program {
        /// The program.
        name: String,
        /// aya's error.
        #[source]
        source: ProgramError,
    },
}

/// Loads the XDP program `name` of `ebpf` into the kernel (not attached).
pub fn load_xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, LoadError> {
    let program = |source| LoadError::Program {
        name: name.to_string(),
        source,
    };
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| LoadError::Missing(name.to_string()))?
        .try_into()
        .map_err(program)?;
    prog.load().map_err(program)?;
    Ok(prog)
}

/// Attaches `prog` to `iface` (in the calling thread's network namespace) with the first of
/// `modes` the interface takes, e.g. native then generic; returns that mode, or the last
/// mode's error. No modes: the kernel's choice ([`XdpMode::Default`]).
pub fn attach_xdp(prog: &mut Xdp, iface: &str, modes: &[XdpMode]) -> Result<XdpMode, ProgramError> {
    let (last, first) = modes.split_last().unwrap_or((&XdpMode::Default, &[]));
    for &mode in first {
        if prog.attach(iface, mode).is_ok() {
            return Ok(mode);
        }
    }
    prog.attach(iface, *last).map(|_| *last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object, the programs and the maps the Rust side takes from it by name.
    type Names = (
        &'static str,
        &'static [u8],
        &'static [&'static str],
        &'static [&'static str],
    );

    /// The programs and maps the Rust side loads by name are in the objects it loads them from.
    #[test]
    fn objects_hold_the_programs_and_maps_loaded_by_name() {
        let cases: [Names; 5] = [
            (
                "pktgen_sink",
                PKTGEN_SINK,
                &["pktgen_sink"],
                &["pktgen_sink_streams", "pktgen_sink_totals"],
            ),
            (
                "pktgen_live",
                PKTGEN_LIVE,
                &["pktgen_live"],
                &["pktgen_live_seq"],
            ),
            (
                "bench",
                BENCH,
                &[
                    "bench_redirect",
                    "bench_sink",
                    "bench_fw_linear",
                    "bench_fw_tss",
                ],
                &[
                    "bench_port",
                    "bench_count",
                    "bench_fw_rules",
                    "bench_fw_n",
                    "bench_tss_tuples",
                    "bench_tss_rules",
                ],
            ),
            ("xsk_redirect", XSK_REDIRECT, &["xsk_redirect"], &["xsks"]),
            (
                "pktgen_cps",
                PKTGEN_CPS,
                &["pktgen_cps", "cps_sink", "cps_echo", "cps_pass"],
                &[
                    "pktgen_cps_cfg",
                    "pktgen_cps_seq",
                    "cps_sink_cfg",
                    "cps_sink_count",
                    "cps_sink_ports",
                    "cps_echo_cfg",
                ],
            ),
        ];
        for (object, bytes, programs, maps) in cases {
            let obj = aya_obj::Object::parse(bytes).expect(object);
            for p in programs {
                assert!(
                    obj.programs.contains_key(*p),
                    "{object}.o has no program {p}"
                );
            }
            for m in maps {
                assert!(obj.maps.contains_key(*m), "{object}.o has no map {m}");
            }
        }
        // the sink's load-time settings are globals in .rodata
        let sink = aya_obj::Object::parse(PKTGEN_SINK).expect("pktgen_sink");
        assert!(
            sink.maps.contains_key(".rodata"),
            "pktgen_sink.o has no .rodata"
        );
        assert!(aya_obj::Object::parse(b"not an ELF object").is_err());
    }
}
