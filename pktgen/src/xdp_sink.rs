//! The XDP sink receiver: a hand-assembled XDP program on the receive interface counts pktgen
//! frames (IPv4 or IPv6 UDP whose payload starts with the pktgen magic) per CPU and per stream,
//! then drops them (or passes them up the stack); every other frame is counted separately and
//! always passed, so ARP/NDP and the like keep working. User space reads the per-CPU maps and
//! reports packets, bytes and rates. No sequence tracking here (the socket receiver does that).
//!
//! Counted frames: Ethernet + IPv4 without options (IHL 5) or IPv6 with UDP as the next header,
//! at least as long as the headers plus the 24-byte pktgen header. Bytes are whole frames
//! (Ethernet header included, no FCS), from `bpf_xdp_get_buff_len`.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::bpf::{
    BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, XDP_DROP, XDP_PASS, ifindex, insn,
    load_xdp, map_create, map_keys, map_lookup, possible_cpus, xdp_link,
};
use crate::clock::monotonic_ns;
use crate::error::{Error, io_err};
use crate::payload::MAGIC;
use crate::recv::StopWhen;

/// Most distinct stream ids tracked per CPU (frames of further streams still count in the
/// totals; the summary's `streams_untracked` says how many).
pub const MAX_STREAMS: u32 = 4096;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
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

/// A tiny assembler item: an instruction, a jump to a label, a label, or a map-fd load.
enum Asm {
    Op(u64),
    /// Conditional or unconditional jump (`code`, `dst`, `src`, `imm`) to a label.
    Jmp(u8, u8, u8, i32, &'static str),
    Label(&'static str),
    /// `ld_imm64 reg, map fd` (two instruction slots).
    Map(u8, i32),
}

fn assemble(items: &[Asm]) -> Vec<u64> {
    let mut at = BTreeMap::new();
    let mut pc = 0usize;
    for it in items {
        match it {
            Asm::Label(l) => {
                at.insert(*l, pc);
            }
            Asm::Map(..) => pc += 2,
            _ => pc += 1,
        }
    }
    let mut out = Vec::with_capacity(pc);
    for it in items {
        match it {
            Asm::Op(i) => out.push(*i),
            Asm::Jmp(code, dst, src, imm, to) => {
                // every label used is defined below; a typo fails the encoding unit test
                let target = at.get(to).copied().unwrap_or(usize::MAX);
                let off = target as i64 - (out.len() as i64 + 1);
                out.push(insn(*code, *dst, *src, off as i16, *imm));
            }
            Asm::Label(_) => {}
            Asm::Map(reg, fd) => {
                out.push(insn(0x18, *reg, 1, 0, *fd)); // BPF_PSEUDO_MAP_FD
                out.push(0);
            }
        }
    }
    out
}

// Frame offsets.
const V4_END: i32 = 14 + 20 + 8 + 24;
const V6_END: i32 = 14 + 40 + 8 + 24;
const V4_PAYLOAD: i16 = 14 + 20 + 8;
const V6_PAYLOAD: i16 = 14 + 40 + 8;

/// The sink program. `streams`: per-CPU hash stream id → `[packets, bytes]`; `totals`: per-CPU
/// array, slot 0 pktgen frames, slot 1 other frames, each `[packets, bytes]`.
fn program(streams: i32, totals: i32, action: SinkAction) -> Vec<u64> {
    use Asm::*;
    let verdict = match action {
        SinkAction::Drop => XDP_DROP,
        SinkAction::Pass => XDP_PASS,
    };
    let magic = MAGIC as i32;
    assemble(&[
        Op(insn(0xbf, 6, 1, 0, 0)),   // r6 = ctx
        Op(insn(0x85, 0, 0, 0, 188)), // r0 = bpf_xdp_get_buff_len(ctx)
        Op(insn(0xbf, 9, 0, 0, 0)),   // r9 = frame length
        Op(insn(0x61, 7, 6, 0, 0)),   // r7 = data
        Op(insn(0x61, 8, 6, 4, 0)),   // r8 = data_end
        Op(insn(0xbf, 2, 7, 0, 0)),   // r2 = data
        Op(insn(0x07, 2, 0, 0, V4_END)),
        Jmp(0x2d, 2, 8, 0, "other"), // if data + V4_END > data_end: other
        Op(insn(0x69, 2, 7, 12, 0)), // r2 = ethertype (network order, read LE)
        Jmp(0x55, 2, 0, 0x0008, "v6"), // if != 0x0800: try IPv6
        Op(insn(0x71, 2, 7, 14, 0)), // r2 = version/IHL
        Jmp(0x55, 2, 0, 0x45, "other"),
        Op(insn(0x71, 2, 7, 23, 0)), // r2 = protocol
        Jmp(0x55, 2, 0, 17, "other"),
        Op(insn(0x61, 2, 7, V4_PAYLOAD, 0)), // r2 = magic
        Jmp(0x55, 2, 0, magic, "other"),
        Op(insn(0x61, 1, 7, V4_PAYLOAD + 4, 0)), // r1 = stream id
        Jmp(0x05, 0, 0, 0, "count"),
        Label("v6"),
        Jmp(0x55, 2, 0, 0xdd86, "other"), // if != 0x86dd: other
        Op(insn(0xbf, 2, 7, 0, 0)),
        Op(insn(0x07, 2, 0, 0, V6_END)),
        Jmp(0x2d, 2, 8, 0, "other"),
        Op(insn(0x71, 2, 7, 20, 0)), // r2 = next header
        Jmp(0x55, 2, 0, 17, "other"),
        Op(insn(0x61, 2, 7, V6_PAYLOAD, 0)),
        Jmp(0x55, 2, 0, magic, "other"),
        Op(insn(0x61, 1, 7, V6_PAYLOAD + 4, 0)),
        Label("count"),
        Op(insn(0x63, 10, 1, -4, 0)), // key = stream id
        Map(1, streams),
        Op(insn(0xbf, 2, 10, 0, 0)),
        Op(insn(0x07, 2, 0, 0, -4)),
        Op(insn(0x85, 0, 0, 0, 1)), // bpf_map_lookup_elem
        Jmp(0x15, 0, 0, 0, "new"),
        Op(insn(0x79, 1, 0, 0, 0)),
        Op(insn(0x07, 1, 0, 0, 1)),
        Op(insn(0x7b, 0, 1, 0, 0)), // packets += 1
        Op(insn(0x79, 1, 0, 8, 0)),
        Op(insn(0x0f, 1, 9, 0, 0)),
        Op(insn(0x7b, 0, 1, 8, 0)), // bytes += len
        Jmp(0x05, 0, 0, 0, "mine"),
        Label("new"),
        Op(insn(0x7a, 10, 0, -24, 1)), // value = [1, len]
        Op(insn(0x7b, 10, 9, -16, 0)),
        Map(1, streams),
        Op(insn(0xbf, 2, 10, 0, 0)),
        Op(insn(0x07, 2, 0, 0, -4)),
        Op(insn(0xbf, 3, 10, 0, 0)),
        Op(insn(0x07, 3, 0, 0, -24)),
        Op(insn(0xb7, 4, 0, 0, 0)), // BPF_ANY
        Op(insn(0x85, 0, 0, 0, 2)), // bpf_map_update_elem (fails only when the table is full)
        Label("mine"),
        Op(insn(0xb7, 8, 0, 0, 0)),       // slot 0
        Op(insn(0xb7, 7, 0, 0, verdict)), // verdict
        Jmp(0x05, 0, 0, 0, "total"),
        Label("other"),
        Op(insn(0xb7, 8, 0, 0, 1)), // slot 1
        Op(insn(0xb7, 7, 0, 0, XDP_PASS)),
        Label("total"),
        Op(insn(0x63, 10, 8, -4, 0)),
        Map(1, totals),
        Op(insn(0xbf, 2, 10, 0, 0)),
        Op(insn(0x07, 2, 0, 0, -4)),
        Op(insn(0x85, 0, 0, 0, 1)),
        Jmp(0x15, 0, 0, 0, "ret"),
        Op(insn(0x79, 1, 0, 0, 0)),
        Op(insn(0x07, 1, 0, 0, 1)),
        Op(insn(0x7b, 0, 1, 0, 0)),
        Op(insn(0x79, 1, 0, 8, 0)),
        Op(insn(0x0f, 1, 9, 0, 0)),
        Op(insn(0x7b, 0, 1, 8, 0)),
        Label("ret"),
        Op(insn(0xbf, 0, 7, 0, 0)),
        Op(insn(0x95, 0, 0, 0, 0)),
    ])
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

/// The XDP program attached to an interface; detached when dropped (closing the link).
pub struct XdpSink {
    _link: OwnedFd,
    _prog: OwnedFd,
    streams: OwnedFd,
    totals: OwnedFd,
    ncpu: usize,
    mode: XdpMode,
}

fn per_cpu(buf: &[u8], cpu: usize) -> Count {
    let at = cpu * 16;
    let word = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&buf[at + o..at + o + 8]);
        u64::from_ne_bytes(a)
    };
    Count {
        packets: word(0),
        bytes: word(8),
    }
}

impl XdpSink {
    /// Loads the program and attaches it to `ifname` (native first unless a mode is forced).
    pub fn attach(ifname: &str, action: SinkAction, mode: Option<XdpMode>) -> Result<Self, Error> {
        let ifindex = ifindex(ifname)?;
        let streams = map_create(BPF_MAP_TYPE_PERCPU_HASH, 16, MAX_STREAMS)?;
        let totals = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 16, 2)?;
        let prog = load_xdp(&program(streams.as_raw_fd(), totals.as_raw_fd(), action))?;
        let modes: &[XdpMode] = match mode {
            Some(XdpMode::Native) => &[XdpMode::Native],
            Some(XdpMode::Generic) => &[XdpMode::Generic],
            None => &[XdpMode::Native, XdpMode::Generic],
        };
        let mut last = None;
        for &m in modes {
            let flags = match m {
                XdpMode::Native => XDP_FLAGS_DRV_MODE,
                XdpMode::Generic => XDP_FLAGS_SKB_MODE,
            };
            match xdp_link(&prog, ifindex, flags) {
                Ok(link) => {
                    return Ok(Self {
                        _link: link,
                        _prog: prog,
                        streams,
                        totals,
                        ncpu: possible_cpus()?,
                        mode: m,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(io_err(format!(
            "attach XDP to {ifname} (is another XDP program attached?)"
        ))(
            last.unwrap_or_else(|| std::io::Error::other("no mode"))
        ))
    }

    /// The attach mode in use.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    fn slot(&self, map: &OwnedFd, key: u32) -> Result<Option<Vec<Count>>, Error> {
        let mut buf = vec![0u8; 16 * self.ncpu];
        if !map_lookup(map, key, &mut buf)? {
            return Ok(None);
        }
        Ok(Some((0..self.ncpu).map(|c| per_cpu(&buf, c)).collect()))
    }

    /// Reads the totals (cheap: one map lookup per slot).
    pub fn counters(&self) -> Result<SinkCounters, Error> {
        let sum = |v: &[Count]| Count {
            packets: v.iter().map(|c| c.packets).sum(),
            bytes: v.iter().map(|c| c.bytes).sum(),
        };
        let mine = self.slot(&self.totals, 0)?.unwrap_or_default();
        let other = self.slot(&self.totals, 1)?.unwrap_or_default();
        Ok(SinkCounters {
            pktgen: sum(&mine),
            other: sum(&other),
            per_cpu: mine,
        })
    }

    /// Reads the per-stream counters, sorted by stream id.
    pub fn streams(&self) -> Result<Vec<StreamCount>, Error> {
        let mut out = Vec::new();
        for id in map_keys(&self.streams)? {
            if let Some(v) = self.slot(&self.streams, id)? {
                out.push(StreamCount {
                    stream_id: id,
                    count: Count {
                        packets: v.iter().map(|c| c.packets).sum(),
                        bytes: v.iter().map(|c| c.bytes).sum(),
                    },
                });
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_jumps_land_on_their_labels() {
        let p = program(7, 8, SinkAction::Drop);
        // no unresolved label (an unresolved jump would have a huge offset)
        for (pc, &i) in p.iter().enumerate() {
            let code = (i & 0xff) as u8;
            if code & 0x07 == 0x05 && code != 0x85 && code != 0x95 {
                let off = ((i >> 16) as u16 as i16) as i64;
                let target = pc as i64 + 1 + off;
                assert!(
                    target > pc as i64 && (target as usize) < p.len(),
                    "jump at {pc} to {target}"
                );
            }
        }
        // the last two instructions return r7
        assert_eq!(p[p.len() - 1] & 0xff, 0x95);
        // both map loads reference the right fds
        let loads: Vec<u64> = p
            .iter()
            .filter(|&&i| i & 0xff == 0x18)
            .map(|&i| i >> 32)
            .collect();
        assert_eq!(loads, vec![7, 7, 8]);
        // the verdict of counted frames is the configured action
        let pass = program(7, 8, SinkAction::Pass);
        assert_ne!(p, pass);
        assert!(pass.contains(&insn(0xb7, 7, 0, 0, XDP_PASS)));
        assert!(p.contains(&insn(0xb7, 7, 0, 0, XDP_DROP)));
    }
}
