//! The throughput runs' traffic: live-frames generators pinned to CPUs, one long `BPF_PROG_TEST_RUN` call per
//! point (set-up and a short warm-up untimed), and where the middle box runs ([`Layout`]).
//!
//! The middle box (the chain, the bare redirect or the kernel's stack) runs in the NAPI poll of the CNF's ingress
//! veth. By default that poll runs inline, in the softirq the generator's own flush raises, on the generator's
//! CPU: cheap for XDP, but the kernel stack's longer softirq work is deferred to ksoftirqd, which the spinning
//! generator starves. With threaded NAPI (`/sys/class/net/DEV/threaded`) the poll runs in a kernel thread this
//! module pins to another CPU at a real-time priority (`SCHED_FIFO`, so other load on a shared machine does not
//! take that CPU from it): the middle box gets a CPU of its own.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use aya::Ebpf;
use pktgen::xdp_live::{XdpLive, XdpLiveConfig};

use super::BenchError;
use super::bed::{Bed, CNF_IN, GEN_DEV};
use super::run::{in_ns, sink_count};

/// Where the generator and the middle box run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One CPU: the generator (unpinned, as chain-bench's) with the middle box inline in its softirq.
    Shared,
    /// The generator on CPU 0, the middle box in its threaded NAPI poll on CPU 1.
    Own,
    /// Both CPUs: a generator per CPU, each with its own flow set, each on its own receive queue of the CNF's
    /// veth; the middle box inline (XDP) or in the queue's NAPI thread on the same CPU (kernel stack).
    TwoQueues,
}

/// Flows per generator (source ports `src`, `src+1`, …): generator `k` sends ports `src + k*FLOWS ..`.
pub const FLOWS: u16 = 16;
/// Frames of the untimed warm-up before a timed call: establishes every flow.
const WARMUP: u64 = 20_000;
/// Frames of the untimed call after the warm-up that measures the rate sizing the timed call (long enough that
/// the call's own set-up, a page pool, is a small part of it).
const CALIBRATE: u64 = 200_000;
/// Frames per paced burst: 10 ms of the target rate, at least one batch.
const PACE_SLICE: f64 = 0.01;

/// The number of frames one call should carry to last `dur` at `pps` (at least one warm-up's worth).
pub fn frames_for(pps: f64, dur: Duration) -> u64 {
    let n = pps * dur.as_secs_f64();
    if n.is_finite() && n > WARMUP as f64 {
        n as u64
    } else {
        WARMUP
    }
}

/// Frames per burst of a point paced to `rate_pps`.
pub fn burst_for(rate_pps: f64) -> u64 {
    let n = rate_pps * PACE_SLICE;
    if n.is_finite() && n > 64.0 {
        n as u64
    } else {
        64
    }
}

/// How long to wait after `sent` frames, `elapsed` into a point paced to `rate_pps` (zero when behind).
pub fn wait_for(sent: u64, rate_pps: f64, elapsed: Duration) -> Duration {
    if !(rate_pps.is_finite() && rate_pps > 0.0) {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(sent as f64 / rate_pps).saturating_sub(elapsed)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> Result<(), BenchError> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of `set`, which lives for the call; `cpu` is below CPU_SETSIZE (checked by
    // the caller's use of CPUs this machine has).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(BenchError::SetupIo {
            context: format!("pin the generator to CPU {cpu}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Real-time priority of the pinned NAPI threads: above every normal task, so the middle box has its CPU the
/// way an inline softirq would, whatever else the machine runs (below the kernel's own real-time threads).
const NAPI_PRIORITY: i32 = 10;

/// Pins thread `tid` (a NAPI kernel thread) to `cpu`, at [`NAPI_PRIORITY`] under `SCHED_FIFO`.
fn pin_tid(tid: i32, cpu: usize) -> Result<(), BenchError> {
    // SAFETY: as in pin_to_cpu.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as in pin_to_cpu.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `tid` is a thread id read from /proc; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(BenchError::SetupIo {
            context: format!("pin NAPI thread {tid} to CPU {cpu}"),
            source: std::io::Error::last_os_error(),
        });
    }
    let param = libc::sched_param {
        sched_priority: NAPI_PRIORITY,
    };
    // SAFETY: `tid` is a thread id read from /proc; `param` is a valid sched_param for the call.
    let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        return Err(BenchError::SetupIo {
            context: format!("SCHED_FIFO for NAPI thread {tid}"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `(tid, name)` of every NAPI kernel thread of an interface called `dev` (in any namespace).
fn napi_threads(dev: &str) -> BTreeSet<(i32, String)> {
    let prefix = format!("napi/{dev}-");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim();
            comm.starts_with(&prefix).then(|| (tid, comm.to_string()))
        })
        .collect()
}

/// The NAPI id in a thread name `napi/DEV-ID` (the order of a device's queues).
fn napi_id(name: &str) -> u64 {
    name.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

fn cstr(s: &str) -> Result<CString, BenchError> {
    CString::new(s).map_err(|_| BenchError::SetupIo {
        context: format!("{s:?}"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

/// Writes `/sys/class/net/{dev}/threaded` of namespace `ns`: from a thread that enters the namespace, unshares
/// its mount namespace (a slave of `/`) and mounts a sysfs of that network namespace on a private folder (sysfs
/// lists the links of the namespace that mounts it), as `ip netns exec` does for `/sys`.
fn write_threaded(ns: &str, dev: &str, on: bool) -> Result<(), BenchError> {
    let dir = std::env::temp_dir().join(format!("vnfctl-bench-sys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::SetupIo {
        context: dir.display().to_string(),
        source,
    })?;
    let (root, none, sysfs) = (cstr("/")?, cstr("none")?, cstr("sysfs")?);
    let target = cstr(&dir.to_string_lossy())?;
    let r = in_ns(ns, || {
        let step = |rc: libc::c_int, what: &str| {
            if rc == 0 {
                Ok(())
            } else {
                Err(BenchError::SetupIo {
                    context: format!("{what} (threaded NAPI on {dev})"),
                    source: std::io::Error::last_os_error(),
                })
            }
        };
        // SAFETY: unshare and mount take NUL-terminated strings that outlive the calls; the new mount namespace
        // belongs to this short-lived thread alone.
        unsafe {
            step(
                libc::unshare(libc::CLONE_NEWNS),
                "unshare the mount namespace",
            )?;
            step(
                libc::mount(
                    none.as_ptr(),
                    root.as_ptr(),
                    none.as_ptr(),
                    libc::MS_SLAVE | libc::MS_REC,
                    std::ptr::null(),
                ),
                "make / a slave",
            )?;
            step(
                libc::mount(
                    sysfs.as_ptr(),
                    target.as_ptr(),
                    sysfs.as_ptr(),
                    0,
                    std::ptr::null(),
                ),
                "mount sysfs",
            )?;
        }
        let path = dir.join("class/net").join(dev).join("threaded");
        let w = std::fs::write(&path, if on { "1" } else { "0" }).map_err(|source| {
            BenchError::SetupIo {
                context: format!("{} in {ns}", path.display()),
                source,
            }
        });
        // SAFETY: `target` is the NUL-terminated folder mounted above.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        w
    });
    let _ = std::fs::remove_dir(&dir);
    r
}

/// Turns threaded NAPI of the CNF's ingress veth on (its threads pinned to `cpus`, queue by queue, cycling) or
/// off.
pub fn threaded_napi(bed: &Bed, on: bool, cpus: &[usize]) -> Result<(), BenchError> {
    if !on {
        return write_threaded(&bed.cnf_ns, CNF_IN, false);
    }
    let before = napi_threads(CNF_IN);
    write_threaded(&bed.cnf_ns, CNF_IN, true)?;
    let mut new: Vec<(i32, String)> = napi_threads(CNF_IN).difference(&before).cloned().collect();
    new.sort_by_key(|(_, name)| napi_id(name));
    for ((tid, _), cpu) in new.iter().zip(cpus.iter().cycle()) {
        pin_tid(*tid, *cpu)?;
    }
    Ok(())
}

/// The generator configuration for `size`-byte frames on the bed, flow set `k`.
fn gen_config(bed: &Bed, size: usize, k: u16) -> XdpLiveConfig {
    let mut src = bed.flow.src;
    src.set_port(src.port().saturating_add(k * FLOWS));
    XdpLiveConfig {
        ifname: GEN_DEV.into(),
        src_mac: bed.gen_mac,
        dst_mac: bed.cnf_in_mac,
        src,
        dst: bed.flow.dst,
        stream_id: 1,
        ip_size: size - 14,
        count: 0,
        batch: 64,
    }
}

/// What one generator did in a point.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    frames: u64,
    secs: f64,
}

/// One generator (on `cpu` if given) with flow set `k`: warm-up, then (after `ready`: both barriers, which the caller
/// passes between to read its counters) `dur` of frames in one call (unpaced) or bursts paced to `rate_pps`.
#[allow(clippy::too_many_arguments)]
fn generate(
    bed: &Bed,
    size: usize,
    cpu: Option<usize>,
    k: u16,
    dur: Duration,
    rate_pps: Option<f64>,
    ready: (&Barrier, &Barrier),
) -> Result<Sent, BenchError> {
    in_ns(&bed.gen_ns, || {
        let prep = cpu.map_or(Ok(()), pin_to_cpu).and_then(|()| {
            let mut g =
                XdpLive::new(&gen_config(bed, size, k), FLOWS).map_err(BenchError::Generator)?;
            g.send(WARMUP).map_err(BenchError::Generator)?;
            let cal = if rate_pps.is_none() {
                g.send(CALIBRATE).map_err(BenchError::Generator)?.pps
            } else {
                0.0
            };
            Ok((g, cal))
        });
        // the barriers are passed whatever happened, so the caller never waits for a failed generator
        ready.0.wait();
        ready.1.wait();
        let (mut g, pps) = prep?;
        let Some(rate) = rate_pps else {
            let s = g
                .send(frames_for(pps, dur))
                .map_err(BenchError::Generator)?;
            return Ok(Sent {
                frames: s.sent,
                secs: s.elapsed_secs,
            });
        };
        let start = Instant::now();
        let mut frames = 0;
        while start.elapsed() < dur {
            frames += g.send(burst_for(rate)).map_err(BenchError::Generator)?.sent;
            std::thread::sleep(wait_for(frames, rate, start.elapsed()));
        }
        Ok(Sent {
            frames,
            secs: start.elapsed().as_secs_f64(),
        })
    })
}

/// A throughput point: what was sent, what the sink counted, how long, and the machine's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Blast {
    pub sent: u64,
    pub received: u64,
    pub secs: f64,
    pub cpu: super::cpu::CpuDelta,
}

impl Blast {
    /// Delivered frames per second.
    pub fn delivered_pps(&self) -> f64 {
        if self.secs > 0.0 {
            self.received as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Sends `size`-byte live frames for `dur` in `layout` (paced to `rate_pps` in total when given) and counts what
/// the sink got. `stack`: the middle box is the kernel's stack (threaded NAPI in the two-queue layout too).
pub fn blast(
    bed: &Bed,
    sink: &Ebpf,
    size: usize,
    dur: Duration,
    rate_pps: Option<f64>,
    layout: Layout,
    stack: bool,
) -> Result<Blast, BenchError> {
    let gens: Vec<Option<usize>> = match layout {
        Layout::Shared => vec![None],
        Layout::Own => vec![Some(0)],
        Layout::TwoQueues => vec![Some(0), Some(1)],
    };
    match layout {
        Layout::Shared => threaded_napi(bed, false, &[])?,
        Layout::Own => threaded_napi(bed, true, &[1])?,
        Layout::TwoQueues if stack => threaded_napi(bed, true, &[0, 1])?,
        Layout::TwoQueues => threaded_napi(bed, false, &[])?,
    }
    let per_gen = rate_pps.map(|r| r / gens.len() as f64);
    let (b1, b2) = (Barrier::new(gens.len() + 1), Barrier::new(gens.len() + 1));
    let mut start: Result<(u64, super::cpu::CpuSample), BenchError> = Err(BenchError::ProcStat);
    let results: Vec<Result<Sent, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = gens
            .iter()
            .enumerate()
            .map(|(k, &cpu)| {
                let ready = (&b1, &b2);
                s.spawn(move || generate(bed, size, cpu, k as u16, dur, per_gen, ready))
            })
            .collect();
        // the warm-up is done and drained: the counters start here
        b1.wait();
        std::thread::sleep(Duration::from_millis(20));
        start = sink_count(sink).and_then(|n| Ok((n, super::cpu::sample()?)));
        b2.wait();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::Panicked {
                        what: "generator".into(),
                    })
                })
            })
            .collect()
    });
    let (before, cpu0) = start?;
    let mut sent = Sent::default();
    for r in results {
        let r = r?;
        sent.frames += r.frames;
        sent.secs = sent.secs.max(r.secs);
    }
    std::thread::sleep(Duration::from_millis(50));
    let cpu = super::cpu::sample()?.since(&cpu0);
    let received = sink_count(sink)?.saturating_sub(before);
    if layout != Layout::Shared {
        threaded_napi(bed, false, &[])?;
    }
    Ok(Blast {
        sent: sent.frames,
        received,
        secs: sent.secs,
        cpu,
    })
}

/// chain-bench's live-frames method on this bed, for the reference rows: `frames` frames of one flow in one
/// [`pktgen::xdp_live::run_xdp_live`] call from an unpinned thread, delivered / seconds of sending, best of `runs`.
pub fn reference(bed: &Bed, sink: &Ebpf, frames: u64, runs: u32) -> Result<f64, BenchError> {
    let mut best = 0.0f64;
    for _ in 0..runs.max(1) {
        let before = sink_count(sink)?;
        let cfg = XdpLiveConfig {
            count: frames,
            ..gen_config(bed, 64, 0)
        };
        let sum = in_ns(&bed.gen_ns, || {
            pktgen::xdp_live::run_xdp_live(&cfg).map_err(BenchError::Generator)
        })?;
        std::thread::sleep(Duration::from_millis(100));
        let delivered = sink_count(sink)?.saturating_sub(before);
        if sum.elapsed_secs > 0.0 {
            best = best.max(delivered as f64 / sum.elapsed_secs);
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_lasts_the_point_and_bursts_pace_it() {
        assert_eq!(frames_for(4e6, Duration::from_secs(2)), 8_000_000);
        assert_eq!(
            frames_for(1e3, Duration::from_millis(10)),
            WARMUP,
            "at least a warm-up"
        );
        assert_eq!(frames_for(f64::NAN, Duration::from_secs(1)), WARMUP);
        assert_eq!(burst_for(1e6), 10_000, "10 ms of the rate");
        assert_eq!(burst_for(100.0), 64, "at least one batch");
        // 10,000 frames at 1 Mpps are due at 10 ms: 4 ms in, wait 6; 12 ms in, behind: no wait
        let w = wait_for(10_000, 1e6, Duration::from_millis(4));
        assert!((w.as_secs_f64() - 0.006).abs() < 1e-9, "{w:?}");
        assert_eq!(
            wait_for(10_000, 1e6, Duration::from_millis(12)),
            Duration::ZERO
        );
        assert_eq!(wait_for(10, 0.0, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn napi_threads_sort_by_id() {
        let mut v = [
            (7, "napi/c0-8195".to_string()),
            (5, "napi/c0-8194".to_string()),
        ];
        v.sort_by_key(|(_, n)| napi_id(n));
        assert_eq!(v[0].0, 5);
        assert_eq!(napi_id("napi/c0-x"), u64::MAX);
    }
}
