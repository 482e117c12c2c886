//! Replay of parked fragments on XDP (issue 13 point 3, `ebpf/lib/fragpark.h`, docs/security.md §4).
//!
//! A non-first fragment that overtakes its first fragment is parked by the chain's firewall (copied
//! into the hash `vnf_frag_park`, the original dropped as `fragment_parked`). On TC the entry program
//! itself clones the parked frames back into the ingress when the first fragment arrives. An XDP
//! program cannot emit a frame it did not receive, so on XDP the entry only writes an event (datagram,
//! interface, rx queue) into the ring buffer `vnf_frag_events`, and this thread:
//!
//! - takes each parked frame of that datagram out of the park and runs it through the entry program
//!   with `BPF_PROG_TEST_RUN` in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18+) with
//!   the `xdp_md` of the interface it came in on: the frame runs the whole chain again and its
//!   verdict acts as a received frame's would (`XDP_PASS` builds an skb on that interface and hands
//!   it to the stack, `XDP_TX`/`XDP_REDIRECT` transmit, `XDP_DROP` drops; net/bpf/test_run.c). The
//!   datagram is now known, so the frame gets its datagram's verdict; nothing passes for having
//!   been parked;
//! - every [`SWEEP_EVERY`] runs the program `vnf_frag_sweep` (with `BPF_PROG_TEST_RUN`, not live),
//!   which deletes the frames parked longer than the timeout and counts them `fragment_expired` in
//!   the firewall's counters (the same reclaim the park runs when it is full).
//!
//! The thread lives in the network namespace of the thread that started it (the one that attached
//! the chain), where the interface indexes of the events are valid.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::Pod;
use aya::maps::{HashMap as BpfHashMap, Map, MapData, RingBuf};
use buildvnf_ebpf::test_run::{TestRun, XDP_LIVE_FRAMES, test_run, xdp_md};
use log::{debug, warn};

use super::abi::FragKey;
use super::error::{EngineError, Result};
use super::loader::{Engine, Hook};

/// `VNF_PARK_PER_DGRAM` (vnf_shared.h): parked frames per datagram, sequence numbers `0..8`.
pub const PARK_PER_DGRAM: u32 = 8;
/// `VNF_PARK_BYTES` (vnf_shared.h): the longest frame parked.
pub const PARK_BYTES: usize = 1536;
/// `VNF_PARK_TIMEOUT_NS` (fragpark.h): how long a parked fragment waits for its first fragment.
pub const PARK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the expired parked frames are swept (a frame waits at most the timeout plus this).
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// The ring buffer of first fragments with parked followers (XDP only).
pub(crate) const EVENTS: &str = "vnf_frag_events";
const PARK: &str = "vnf_frag_park";
const SWEEP: &str = "vnf_frag_sweep";

/// `struct vnf_park_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct ParkKey {
    dgram: FragKey,
    seq: u32,
}

/// `struct vnf_park_val`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct ParkVal {
    parked_ns: u64,
    len: u32,
    state: u32,
    vlan: u32,
    ifindex: u32,
    data: [u8; PARK_BYTES],
}

/// `struct vnf_frag_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FragEvent {
    dgram: FragKey,
    ifindex: u32,
    rx_queue: u32,
}

// SAFETY: plain `#[repr(C)]` integers and byte arrays without padding (sizes checked in the tests
// below against the C `_Static_assert`s), valid for every bit pattern.
unsafe impl Pod for ParkKey {}
// SAFETY: as above.
unsafe impl Pod for ParkVal {}

/// What the replay did since it started.
#[derive(Debug, Default)]
pub struct ReplayCounters {
    /// Events read (datagrams whose first fragment arrived while frames of theirs were parked).
    pub events: AtomicU64,
    /// Parked frames run through the chain again.
    pub replayed: AtomicU64,
    /// Parked frames the live run refused (an error of `BPF_PROG_TEST_RUN`; the frame is gone).
    pub failed: AtomicU64,
    /// Sweeps run.
    pub sweeps: AtomicU64,
}

/// The replay thread of an XDP engine; stopped and joined when dropped.
#[derive(Debug)]
pub struct FragReplay {
    stop: Arc<AtomicBool>,
    counters: Arc<ReplayCounters>,
    thread: Option<JoinHandle<()>>,
}

impl FragReplay {
    /// Starts the replay for the XDP object `ebpf` (its program `vnf_entry` loaded as `entry`): takes
    /// the ring buffer, opens the park and loads the sweep program.
    pub(crate) fn start(ebpf: &mut Ebpf, entry: BorrowedFd<'_>) -> Result<Self> {
        let events = ebpf
            .take_map(EVENTS)
            .ok_or_else(|| EngineError::Missing(format!("map {EVENTS}")))?;
        let events = RingBuf::try_from(events).map_err(EngineError::map(EVENTS))?;
        let park = match ebpf.map(PARK) {
            Some(Map::HashMap(m)) => m.info().map_err(EngineError::map(PARK))?.id(),
            _ => return Err(EngineError::Missing(format!("hash map {PARK}"))),
        };
        // a handle of our own on the same map: the engine keeps its (it pins and re-adopts it)
        let park = MapData::from_id(park).map_err(EngineError::map(PARK))?;
        let park: BpfHashMap<MapData, ParkKey, ParkVal> =
            BpfHashMap::try_from(Map::HashMap(park)).map_err(EngineError::map(PARK))?;
        let sweep = buildvnf_ebpf::load_xdp(ebpf, SWEEP)
            .map_err(|e| EngineError::Missing(format!("program {SWEEP}: {e}")))?
            .fd()
            .map_err(EngineError::prog(SWEEP))?
            .as_fd()
            .try_clone_to_owned()?;
        let mut worker = Worker {
            events,
            park,
            entry: entry.try_clone_to_owned()?,
            sweep,
            counters: Arc::default(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let counters = worker.counters.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("frag-replay".into())
            .spawn(move || worker.run(&flag))?;
        Ok(Self {
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// What the replay did so far.
    pub fn counters(&self) -> &ReplayCounters {
        &self.counters
    }
}

impl Drop for FragReplay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!("the fragment replay thread panicked");
        }
    }
}

struct Worker {
    events: RingBuf<MapData>,
    park: BpfHashMap<MapData, ParkKey, ParkVal>,
    entry: OwnedFd,
    sweep: OwnedFd,
    counters: Arc<ReplayCounters>,
}

/// `CLOCK_MONOTONIC_COARSE`, the clock of `bpf_ktime_get_coarse_ns()` that stamps parked frames.
fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) {
        let mut last_sweep = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let wait = SWEEP_EVERY.saturating_sub(last_sweep.elapsed());
            self.wait_readable(wait.min(SWEEP_EVERY));
            let mut batch = Vec::new();
            while let Some(item) = self.events.next() {
                if item.len() >= size_of::<FragEvent>() {
                    // SAFETY: the item holds at least size_of::<FragEvent>() bytes written by the
                    // entry program as a `struct vnf_frag_event`; read_unaligned copies them out
                    // (every bit pattern is a valid FragEvent).
                    batch.push(unsafe {
                        std::ptr::read_unaligned(item.as_ptr().cast::<FragEvent>())
                    });
                }
            }
            for ev in batch {
                self.counters.events.fetch_add(1, Ordering::Relaxed);
                self.replay(&ev);
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.run_sweep();
                last_sweep = Instant::now();
            }
        }
    }

    /// Waits until the ring buffer has data or `timeout` passed.
    fn wait_readable(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: poll reads and writes the one valid, exclusively borrowed pollfd for the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }

    /// Runs the parked frames of the event's datagram through the chain, taking them out of the park.
    fn replay(&mut self, ev: &FragEvent) {
        let now = coarse_now_ns();
        for seq in 0..PARK_PER_DGRAM {
            let key = ParkKey {
                dgram: ev.dgram,
                seq,
            };
            let Ok(v) = self.park.get(&key, 0) else {
                continue;
            };
            if now.saturating_sub(v.parked_ns) > PARK_TIMEOUT.as_nanos() as u64 {
                continue; // the sweep deletes and counts it
            }
            // whoever deletes it replays it (a sweep or a second event may race with us)
            if self.park.remove(&key).is_err() {
                continue;
            }
            let len = (v.len as usize).min(PARK_BYTES);
            let queue = if v.ifindex == ev.ifindex {
                ev.rx_queue
            } else {
                0
            };
            let ctx = xdp_md(v.ifindex, queue, len as u32);
            let run = TestRun {
                data_in: &v.data[..len],
                ctx_in: Some(&ctx),
                repeat: 1,
                flags: XDP_LIVE_FRAMES,
                ..TestRun::default()
            };
            match test_run(self.entry.as_fd(), run) {
                Ok(_) => {
                    self.counters.replayed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        "replaying a parked fragment on interface {}: {e}",
                        v.ifindex
                    );
                }
            }
        }
    }

    /// Deletes (and counts) the parked frames past the timeout.
    fn run_sweep(&mut self) {
        // the program reads no packet: the shortest frame the kernel takes (an Ethernet header)
        let frame = [0u8; 14];
        let run = TestRun {
            data_in: &frame,
            repeat: 1,
            ..TestRun::default()
        };
        match test_run(self.sweep.as_fd(), run) {
            Ok(_) => {
                self.counters.sweeps.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => debug!("sweeping the fragment park: {e}"),
        }
    }
}

impl Engine {
    /// Starts the replay of parked fragments of an XDP engine (once; a TC engine releases them itself).
    pub(super) fn start_frag_replay(&mut self) -> Result<()> {
        if self.hook != Hook::Xdp || self.frag_replay.is_some() {
            return Ok(());
        }
        let entry = self
            .prog_fds
            .get(super::loader::ENTRY)
            .ok_or_else(|| EngineError::Missing(format!("program {}", super::loader::ENTRY)))?
            .as_fd();
        self.frag_replay = Some(FragReplay::start(&mut self.ebpf, entry)?);
        Ok(())
    }

    /// The replay of parked fragments (XDP engines once attached).
    pub fn frag_replay(&self) -> Option<&FragReplay> {
        self.frag_replay.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_vnf_shared_h() {
        assert_eq!(size_of::<ParkKey>(), 44);
        assert_eq!(size_of::<ParkVal>(), 24 + PARK_BYTES);
        assert_eq!(size_of::<FragEvent>(), 48);
        assert_eq!(std::mem::offset_of!(ParkVal, ifindex), 20);
        assert_eq!(std::mem::offset_of!(FragEvent, rx_queue), 44);
    }
}
