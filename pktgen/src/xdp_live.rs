//! Fast-path generator: `BPF_PROG_TEST_RUN` in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`).
//!
//! A tiny XDP program (`ebpf/pktgen_live.c`, loaded with aya) is run by the kernel over
//! copies of one prepared Ethernet/IPv4/UDP frame. Live-frames mode recycles its pages without
//! re-initialising them, so for each copy the program first restores the Ethernet, IPv4 and UDP
//! headers from the template ([`live_cfg`], whatever the receiver rewrote on the previous pass
//! through that page), sets the source port of the frame's flow ([`flow_port`]), writes the next
//! sequence number (from a one-slot array map) and `bpf_ktime_get_ns()` — the same
//! `CLOCK_MONOTONIC` the receiver reads — into the pktgen header, and returns `XDP_TX`, which
//! transmits the frame on the interface named in the test context. On a veth the peer must accept
//! XDP frames (an XDP program, or GRO enabled on it: `ethtool -K PEER gro on`).
//!
//! [`XdpLive`] loads the program once and sends any number of bursts with it, each one
//! `BPF_PROG_TEST_RUN` call (the kernel sets its page pool up per call); [`run_xdp_live`] is one
//! burst of one flow.
//!
//! The UDP checksum is 0 ("none", legal for IPv4), so frames stay valid after the program
//! rewrites the payload; the IPv4 header checksum is computed once here.

use std::net::SocketAddrV4;
use std::os::fd::AsFd;

use aya::Ebpf;
use aya::maps::Array;
use aya::programs::Xdp;
use buildvnf_ebpf::test_run::{TestRun, XDP_LIVE_FRAMES, test_run, xdp_md};
use serde::Serialize;

use crate::clock::monotonic_ns;
use crate::error::{Error, bpf_err, io_err};
use crate::frame::{ETH_HEADER, Endpoints, Template, UdpChecksum};
pub use crate::frame::{inet_checksum, parse_mac};
use crate::sizes::{IPV4_HEADER, UDP_HEADER};

/// Offset of the pktgen header in the frame.
pub const PAYLOAD_OFFSET: usize = ETH_HEADER + IPV4_HEADER + UDP_HEADER;
/// Offset of the sequence number the program writes.
pub const SEQ_OFFSET: usize = PAYLOAD_OFFSET + 8;
/// Offset of the timestamp the program writes.
pub const TX_OFFSET: usize = PAYLOAD_OFFSET + 16;
/// Offset of the UDP source port the program sets per frame.
pub const SPORT_OFFSET: usize = ETH_HEADER + IPV4_HEADER;
/// Size of `struct pktgen_live_cfg` (ebpf/include/pktgen.h): the header template, flows, first port.
pub const LIVE_CFG_LEN: usize = PAYLOAD_OFFSET + 4;

/// The generator's configuration as `struct pktgen_live_cfg` lays it out: the first
/// [`PAYLOAD_OFFSET`] bytes of `frame` (restored on every frame), then `flows` and the first
/// source port `sport` (native byte order). Frame `n` leaves with source port
/// [`flow_port`]`(sport, flows, n)`; `flows` must be at least 1 and the ports must fit in 16 bits.
pub fn live_cfg(frame: &[u8], sport: u16, flows: u16) -> Result<[u8; LIVE_CFG_LEN], Error> {
    if frame.len() < TX_OFFSET + 8 {
        return Err(Error::Config(format!(
            "frame of {} bytes is too short for the pktgen header",
            frame.len()
        )));
    }
    if flows == 0 || u32::from(sport) + u32::from(flows) - 1 > u32::from(u16::MAX) {
        return Err(Error::Config(format!(
            "{flows} flows from source port {sport}: need 1..=65536-port flows"
        )));
    }
    let mut c = [0u8; LIVE_CFG_LEN];
    c[..PAYLOAD_OFFSET].copy_from_slice(&frame[..PAYLOAD_OFFSET]);
    c[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 2].copy_from_slice(&flows.to_ne_bytes());
    c[PAYLOAD_OFFSET + 2..].copy_from_slice(&sport.to_ne_bytes());
    Ok(c)
}

/// The source port of frame `seq` (0-based) in a flow pattern of `flows` ports from `sport`, as the
/// program computes it.
pub fn flow_port(sport: u16, flows: u16, seq: u64) -> u16 {
    if flows <= 1 {
        return sport;
    }
    sport.wrapping_add((seq % u64::from(flows)) as u16)
}

/// Builds the template frame: Ethernet + IPv4 (DF, TTL 64) + UDP (checksum 0) + pktgen header
/// (sequence 0, timestamp 0) + zero filler, for an IP packet of `ip_size` bytes (raised to fit
/// the header).
pub fn build_udp4_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    stream_id: u32,
    ip_size: usize,
) -> Result<Vec<u8>, Error> {
    let ep = Endpoints {
        src_mac,
        dst_mac,
        src: src.into(),
        dst: dst.into(),
    };
    Ok(Template::new(&ep, stream_id, ip_size, UdpChecksum::None)?
        .frame()
        .to_vec())
}

/// Live-frames sender settings.
#[derive(Debug, Clone)]
pub struct XdpLiveConfig {
    /// Interface to transmit on (in the calling thread's network namespace).
    pub ifname: String,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC (the next hop's).
    pub dst_mac: [u8; 6],
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// Stream id written into every frame.
    pub stream_id: u32,
    /// IP packet size.
    pub ip_size: usize,
    /// Frames to send. They leave as fast as the kernel can run the program: live-frames
    /// mode has no pacing, and each `BPF_PROG_TEST_RUN` call costs milliseconds of setup, so
    /// all frames go out in as few calls as possible. Use the socket sender for paced runs.
    pub count: u64,
    /// Frames the kernel processes per batch before flushing them out (1..=256). Small
    /// batches let the receiving side's NAPI drain the veth ring in between.
    pub batch: u32,
}

/// What the live-frames sender did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct XdpLiveSummary {
    /// Frames the program processed (its sequence counter at the end).
    pub sent: u64,
    /// Seconds spent.
    pub elapsed_secs: f64,
    /// Frames per second.
    pub pps: f64,
}

/// Index of interface `name` in the calling thread's network namespace.
fn ifindex(name: &str) -> Result<u32, Error> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::Config(format!("bad interface name '{name}'")))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io_err(format!("interface {name}"))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(i)
}

/// Writes `value` into slot 0 of the one-slot array `map` of `ebpf` (object `obj`, for errors).
pub(crate) fn set_config<T: aya::Pod>(
    ebpf: &mut Ebpf,
    obj: &str,
    map: &str,
    value: T,
) -> Result<(), Error> {
    let mut m: Array<_, T> = Array::try_from(
        ebpf.map_mut(map)
            .ok_or_else(|| Error::Config(format!("{obj} has no map {map}")))?,
    )
    .map_err(bpf_err(map.to_string()))?;
    m.set(0, value, 0).map_err(bpf_err(format!("write {map}")))
}

/// A loaded live-frames XDP program, the frame it is run over and where: the part the fast-path
/// generator ([`XdpLive`]) and the new-flow generator (`xdp_cps::CpsGenerator`) share.
pub(crate) struct LiveFrames {
    ebpf: Ebpf,
    /// Object file name, for errors.
    obj: &'static str,
    /// Program name.
    prog: &'static str,
    frame: Vec<u8>,
    ifindex: u32,
    batch: u32,
}

impl LiveFrames {
    /// Loads program `prog` of object `bytes` (named `obj` in errors), to be run over `frame`
    /// transmitting on `ifname` (calling thread's namespace), `batch` (1..=256) frames per flush.
    pub(crate) fn load(
        bytes: &[u8],
        obj: &'static str,
        prog: &'static str,
        ifname: &str,
        batch: u32,
        frame: Vec<u8>,
    ) -> Result<Self, Error> {
        if !(1..=256).contains(&batch) {
            return Err(Error::Config("batch must be within 1..=256".into()));
        }
        let ifindex = ifindex(ifname)?;
        let mut ebpf = Ebpf::load(bytes).map_err(bpf_err(format!("load {obj}")))?;
        buildvnf_ebpf::load_xdp(&mut ebpf, prog).map_err(bpf_err(obj))?;
        Ok(Self {
            ebpf,
            obj,
            prog,
            frame,
            ifindex,
            batch,
        })
    }

    /// Writes `value` into slot 0 of the one-slot array `map` (the program's configuration).
    pub(crate) fn set_config<T: aya::Pod>(&mut self, map: &str, value: T) -> Result<(), Error> {
        set_config(&mut self.ebpf, self.obj, map, value)
    }

    /// Slot 0 of the one-slot `u64` array `map` (the program's sequence counter).
    pub(crate) fn counter(&self, map: &str) -> Result<u64, Error> {
        let seq: Array<_, u64> = Array::try_from(
            self.ebpf
                .map(map)
                .ok_or_else(|| Error::Config(format!("{} has no map {map}", self.obj)))?,
        )
        .map_err(bpf_err(map.to_string()))?;
        seq.get(&0, 0).map_err(bpf_err(format!("read {map}")))
    }

    /// Runs the program over `count` copies of the frame in live-frames mode, one
    /// `BPF_PROG_TEST_RUN` call (more only past `u32::MAX` frames); returns the seconds it took.
    pub(crate) fn run(&mut self, count: u64) -> Result<f64, Error> {
        let prog: &Xdp = self
            .ebpf
            .program(self.prog)
            .ok_or_else(|| Error::Config(format!("{} has no program {}", self.obj, self.prog)))?
            .try_into()
            .map_err(bpf_err(self.prog))?;
        let prog = prog.fd().map_err(bpf_err(format!("{} fd", self.prog)))?;
        let frame_len =
            u32::try_from(self.frame.len()).map_err(|_| Error::Config("frame too large".into()))?;
        let ctx = xdp_md(self.ifindex, 0, frame_len);
        let start = monotonic_ns();
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(u64::from(u32::MAX)) as u32;
            let run = TestRun {
                data_in: &self.frame,
                ctx_in: Some(&ctx),
                repeat: n,
                flags: XDP_LIVE_FRAMES,
                batch_size: self.batch,
                ..TestRun::default()
            };
            test_run(prog.as_fd(), run).map_err(io_err("BPF_PROG_TEST_RUN (live frames)"))?;
            done += u64::from(n);
        }
        Ok(monotonic_ns().saturating_sub(start) as f64 / 1e9)
    }
}

/// A loaded live-frames generator: the program, its template and flow pattern, set up once for
/// any number of bursts (in the network namespace of the thread that created it).
pub struct XdpLive {
    live: LiveFrames,
}

impl XdpLive {
    /// Loads the program for `cfg`'s frame (its `count` is ignored) with `flows` flows: source
    /// ports `cfg.src.port()`, `+1`, … `+flows-1`, round robin frame by frame.
    pub fn new(cfg: &XdpLiveConfig, flows: u16) -> Result<Self, Error> {
        let frame = build_udp4_frame(
            cfg.src_mac,
            cfg.dst_mac,
            cfg.src,
            cfg.dst,
            cfg.stream_id,
            cfg.ip_size,
        )?;
        let value = live_cfg(&frame, cfg.src.port(), flows)?;
        let mut live = LiveFrames::load(
            buildvnf_ebpf::PKTGEN_LIVE,
            "pktgen_live.o",
            "pktgen_live",
            &cfg.ifname,
            cfg.batch,
            frame,
        )?;
        live.set_config("pktgen_live_cfg", value)?;
        Ok(Self { live })
    }

    /// Frames sent so far (the program's sequence counter).
    pub fn sent(&self) -> Result<u64, Error> {
        self.live.counter("pktgen_live_seq")
    }

    /// Sends `count` frames in one `BPF_PROG_TEST_RUN` call (more only past `u32::MAX` frames);
    /// the summary counts this burst alone, timed around the calls.
    pub fn send(&mut self, count: u64) -> Result<XdpLiveSummary, Error> {
        if count == 0 {
            return Err(Error::Config("count must be at least 1".into()));
        }
        let before = self.sent()?;
        let elapsed = self.live.run(count)?;
        let sent = self.sent()?.saturating_sub(before);
        Ok(XdpLiveSummary {
            sent,
            elapsed_secs: elapsed,
            pps: if elapsed > 0.0 {
                sent as f64 / elapsed
            } else {
                0.0
            },
        })
    }
}

/// Sends `cfg.count` frames of one flow with the live-frames fast path (set-up not timed).
pub fn run_xdp_live(cfg: &XdpLiveConfig) -> Result<XdpLiveSummary, Error> {
    if cfg.count == 0 {
        return Err(Error::Config("count must be at least 1".into()));
    }
    XdpLive::new(cfg, 1)?.send(cfg.count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Header;

    /// 192.0.2.1:4000 -> 192.0.2.2:9000, stream 5, 64-byte IP packet.
    fn sample_frame() -> Vec<u8> {
        build_udp4_frame(
            parse_mac("02:00:00:00:00:01").expect("mac"),
            parse_mac("02:00:00:00:00:02").expect("mac"),
            "192.0.2.1:4000".parse().expect("addr"),
            "192.0.2.2:9000".parse().expect("addr"),
            5,
            64,
        )
        .expect("frame")
    }

    #[test]
    fn frame_layout_and_checksums() {
        let f = sample_frame();
        assert_eq!(f.len(), 14 + 64);
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // A correct IPv4 header checksums to zero.
        assert_eq!(inet_checksum(&f[14..34]), 0);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 64);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 9000);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 44);
        assert_eq!(&f[40..42], &[0, 0], "UDP checksum is 'none'");
        let h = Header::decode(&f[PAYLOAD_OFFSET..]).expect("pktgen header");
        assert_eq!((h.stream_id, h.seq, h.tx_ns), (5, 0, 0));
        assert_eq!((SEQ_OFFSET, TX_OFFSET), (50, 58));
    }

    #[test]
    fn the_live_cfg_holds_the_headers_and_the_flow_pattern() {
        let f = sample_frame();
        let c = live_cfg(&f, 4000, 3).expect("cfg");
        assert_eq!(c.len(), 46, "sizeof(struct pktgen_live_cfg)");
        assert_eq!(&c[..PAYLOAD_OFFSET], &f[..PAYLOAD_OFFSET]);
        assert_eq!(u16::from_ne_bytes([c[42], c[43]]), 3);
        assert_eq!(u16::from_ne_bytes([c[44], c[45]]), 4000);
        // the template's own source port is the first flow's
        assert_eq!(
            u16::from_be_bytes([f[SPORT_OFFSET], f[SPORT_OFFSET + 1]]),
            4000
        );
        let ports: Vec<u16> = (0..7).map(|n| flow_port(4000, 3, n)).collect();
        assert_eq!(ports, [4000, 4001, 4002, 4000, 4001, 4002, 4000]);
        assert_eq!(flow_port(4000, 1, 12345), 4000);
        assert!(live_cfg(&f, 4000, 0).is_err(), "no flows");
        assert!(live_cfg(&f, 65535, 2).is_err(), "ports past 65535");
        assert!(live_cfg(&f, 65535, 1).is_ok());
        assert!(live_cfg(&f[..40], 4000, 1).is_err(), "short frame");
    }
}
