//! The XDP sink receiver: an XDP program (`ebpf/pktgen_sink.c`, loaded with aya) on the
//! receive interface counts pktgen
//! frames (IPv4 or IPv6 UDP whose payload starts with the pktgen magic) per CPU and per stream,
//! then drops them (or passes them up the stack); every other frame is counted separately and
//! always passed, so ARP/NDP and the like keep working. User space reads the per-CPU maps and
//! reports packets, bytes and rates. No sequence tracking here (the socket receiver does that).
//!
//! Counted frames: Ethernet + IPv4 without options (IHL 5) or IPv6 with UDP as the next header,
//! at least as long as the headers plus the 24-byte pktgen header. Bytes are whole frames
//! (Ethernet header included, no FCS), from `bpf_xdp_get_buff_len`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use aya::programs::XdpMode as AttachMode;
use aya::{Ebpf, EbpfLoader};
use serde::Serialize;

use crate::clock::monotonic_ns;
use crate::error::{Error, bpf_err};
use crate::payload::MAGIC;
use crate::recv::StopWhen;

/// Most distinct stream ids tracked per CPU (frames of further streams still count in the
/// totals; the summary's `streams_untracked` says how many).
pub const MAX_STREAMS: u32 = 4096;
/// `enum xdp_action` values (uapi/linux/bpf.h) the program returns for counted frames.
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const SECOND_NS: u64 = 1_000_000_000;
/// How often the counters are sampled (bounds the error of the active time and the rate).
const SAMPLE: Duration = Duration::from_millis(10);

/// What happens to a counted pktgen frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkAction {
    /// Drop it (`XDP_DROP`): the cheapest receiver.
    Drop,
    /// Pass it up the stack (`XDP_PASS`), e.g. to a socket receiver behind the sink.
    Pass,
}

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) XDP; veth supports it.
    Native,
    /// Generic (skb) XDP, for drivers without native support.
    Generic,
}

/// Sink settings.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Receive interface (in the calling thread's network namespace).
    pub ifname: String,
    /// Drop or pass counted frames.
    pub action: SinkAction,
    /// `None`: native, falling back to generic; `Some(m)`: only that mode.
    pub mode: Option<XdpMode>,
    /// Stop conditions (`count` counts pktgen frames).
    pub stop: StopWhen,
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Frames.
    pub packets: u64,
    /// Bytes (whole frames).
    pub bytes: u64,
}

/// One stream's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamCount {
    /// Stream id from the pktgen header.
    pub stream_id: u32,
    /// Frames and bytes over all CPUs.
    #[serde(flatten)]
    pub count: Count,
}

/// A snapshot of the sink's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkCounters {
    /// pktgen frames over all CPUs.
    pub pktgen: Count,
    /// Other frames (passed) over all CPUs.
    pub other: Count,
    /// pktgen frames per CPU (index = CPU number).
    pub per_cpu: Vec<Count>,
}

/// A per-CPU `struct pk_count` of `ebpf/pktgen_sink.c`: packets, bytes.
type Slot = [u64; 2];

/// The XDP program attached to an interface; detached when dropped (with the [`Ebpf`]).
pub struct XdpSink {
    /// Owns the program and its link; dropping it detaches.
    _ebpf: Ebpf,
    streams: PerCpuHashMap<MapData, u32, Slot>,
    totals: PerCpuArray<MapData, Slot>,
    mode: XdpMode,
}

fn count(slot: &Slot) -> Count {
    Count {
        packets: slot[0],
        bytes: slot[1],
    }
}

fn sum(v: &[Count]) -> Count {
    Count {
        packets: v.iter().map(|c| c.packets).sum(),
        bytes: v.iter().map(|c| c.bytes).sum(),
    }
}

impl XdpSink {
    /// Loads the program and attaches it to `ifname` (native first unless a mode is forced).
    pub fn attach(ifname: &str, action: SinkAction, mode: Option<XdpMode>) -> Result<Self, Error> {
        let verdict = match action {
            SinkAction::Drop => XDP_DROP,
            SinkAction::Pass => XDP_PASS,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("pktgen_magic", &MAGIC, true)
            .override_global("sink_verdict", &verdict, true)
            .map_max_entries("pktgen_sink_streams", MAX_STREAMS)
            .load(buildvnf_ebpf::PKTGEN_SINK)
            .map_err(bpf_err("load pktgen_sink.o"))?;
        let prog =
            buildvnf_ebpf::load_xdp(&mut ebpf, "pktgen_sink").map_err(bpf_err("pktgen_sink.o"))?;
        let modes: &[AttachMode] = match mode {
            Some(XdpMode::Native) => &[AttachMode::Driver],
            Some(XdpMode::Generic) => &[AttachMode::Skb],
            None => &[AttachMode::Driver, AttachMode::Skb],
        };
        let mode = match buildvnf_ebpf::attach_xdp(prog, ifname, modes) {
            Ok(AttachMode::Driver) => XdpMode::Native,
            Ok(_) => XdpMode::Generic,
            Err(e) => {
                return Err(bpf_err(format!(
                    "attach XDP to {ifname} (is another XDP program attached?)"
                ))(e));
            }
        };
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| Error::Config(format!("pktgen_sink.o has no map {name}")))
        };
        let (streams, totals) = (take("pktgen_sink_streams")?, take("pktgen_sink_totals")?);
        Ok(Self {
            streams: PerCpuHashMap::try_from(streams).map_err(bpf_err("pktgen_sink_streams"))?,
            totals: PerCpuArray::try_from(totals).map_err(bpf_err("pktgen_sink_totals"))?,
            _ebpf: ebpf,
            mode,
        })
    }

    /// The attach mode in use.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// One totals slot per CPU (index = CPU number).
    fn total(&self, slot: u32) -> Result<Vec<Count>, Error> {
        let v = self
            .totals
            .get(&slot, 0)
            .map_err(bpf_err("read pktgen_sink_totals"))?;
        Ok(v.iter().map(count).collect())
    }

    /// Reads the totals (cheap: one map lookup per slot).
    pub fn counters(&self) -> Result<SinkCounters, Error> {
        let mine = self.total(0)?;
        let other = self.total(1)?;
        Ok(SinkCounters {
            pktgen: sum(&mine),
            other: sum(&other),
            per_cpu: mine,
        })
    }

    /// Reads the per-stream counters, sorted by stream id.
    pub fn streams(&self) -> Result<Vec<StreamCount>, Error> {
        let mut out = Vec::new();
        for entry in self.streams.iter() {
            let (id, v) = entry.map_err(bpf_err("read pktgen_sink_streams"))?;
            let per_cpu: Vec<Count> = v.iter().map(count).collect();
            out.push(StreamCount {
                stream_id: id,
                count: sum(&per_cpu),
            });
        }
        out.sort_by_key(|s| s.stream_id);
        Ok(out)
    }
}

/// Once-per-second sink progress.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SinkProgress {
    /// Seconds since start.
    pub elapsed_secs: f64,
    /// pktgen frames in the interval.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames per second in the interval.
    pub pps: f64,
    /// pktgen frames so far.
    pub total: u64,
}

/// What the sink counted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SinkSummary {
    /// Interface.
    pub dev: String,
    /// Attach mode.
    pub mode: XdpMode,
    /// Drop or pass.
    pub action: SinkAction,
    /// pktgen frames and bytes.
    pub packets: u64,
    /// Bytes of those frames (Ethernet header included).
    pub bytes: u64,
    /// Other frames (passed up the stack).
    pub other_packets: u64,
    /// pktgen frames per CPU.
    pub per_cpu: Vec<Count>,
    /// Per-stream counts.
    pub streams: Vec<StreamCount>,
    /// pktgen frames of streams beyond [`MAX_STREAMS`] (in the totals, not in `streams`).
    pub streams_untracked: u64,
    /// Seconds from the first to the last sample that saw new pktgen frames (10 ms samples).
    pub active_secs: f64,
    /// `packets / active_secs` (0 when too short to tell).
    pub pps: f64,
    /// Megabits per second of frame bytes over the active time.
    pub mbps: f64,
    /// Seconds the sink ran.
    pub elapsed_secs: f64,
}

/// Attaches the sink, counts until a stop condition or `stop`, reports progress once per
/// second, detaches and returns the summary.
pub fn run_sink(
    cfg: &SinkConfig,
    stop: &AtomicBool,
    mut progress: impl FnMut(&SinkProgress),
) -> Result<SinkSummary, Error> {
    let sink = XdpSink::attach(&cfg.ifname, cfg.action, cfg.mode)?;
    let start = monotonic_ns();
    let base = sink.counters()?;
    let (mut first, mut last): (Option<u64>, Option<u64>) = (None, None);
    let mut seen = 0u64;
    let mut next_report = start + SECOND_NS;
    let (mut rep_packets, mut rep_bytes, mut rep_at) = (0u64, 0u64, start);
    loop {
        std::thread::sleep(SAMPLE);
        let now = monotonic_ns();
        let c = sink.counters()?;
        let packets = c.pktgen.packets - base.pktgen.packets;
        if packets != seen {
            first.get_or_insert(now);
            last = Some(now);
            seen = packets;
        }
        if now >= next_report {
            let bytes = c.pktgen.bytes - base.pktgen.bytes;
            let dt = now.saturating_sub(rep_at) as f64 / 1e9;
            progress(&SinkProgress {
                elapsed_secs: now.saturating_sub(start) as f64 / 1e9,
                packets: packets - rep_packets,
                bytes: bytes - rep_bytes,
                pps: if dt > 0.0 {
                    (packets - rep_packets) as f64 / dt
                } else {
                    0.0
                },
                total: packets,
            });
            (rep_packets, rep_bytes, rep_at) = (packets, bytes, now);
            next_report = now + SECOND_NS;
        }
        if stop.load(Ordering::Relaxed) || cfg.stop.reached(packets, start, last, now) {
            break;
        }
    }
    let end = monotonic_ns();
    let c = sink.counters()?;
    let streams = sink.streams()?;
    let mode = sink.mode();
    drop(sink);
    let packets = c.pktgen.packets - base.pktgen.packets;
    let bytes = c.pktgen.bytes - base.pktgen.bytes;
    let tracked: u64 = streams.iter().map(|s| s.count.packets).sum();
    let active_secs = match (first, last) {
        (Some(f), Some(l)) => l.saturating_sub(f) as f64 / 1e9,
        _ => 0.0,
    };
    let per_cpu = c
        .per_cpu
        .iter()
        .zip(
            base.per_cpu
                .iter()
                .chain(std::iter::repeat(&Count::default())),
        )
        .map(|(now, b)| Count {
            packets: now.packets - b.packets,
            bytes: now.bytes - b.bytes,
        })
        .collect();
    Ok(SinkSummary {
        dev: cfg.ifname.clone(),
        mode,
        action: cfg.action,
        packets,
        bytes,
        other_packets: c.other.packets - base.other.packets,
        per_cpu,
        streams,
        streams_untracked: packets.saturating_sub(tracked),
        active_secs,
        pps: if active_secs > 0.0 {
            packets as f64 / active_secs
        } else {
            0.0
        },
        mbps: if active_secs > 0.0 {
            bytes as f64 * 8.0 / active_secs / 1e6
        } else {
            0.0
        },
        elapsed_secs: end.saturating_sub(start) as f64 / 1e9,
    })
}
