//! Fast-path generator: `BPF_PROG_TEST_RUN` in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`).
//!
//! A tiny XDP program (hand-assembled below, no compiler needed) is run by the kernel over
//! copies of one prepared Ethernet/IPv4/UDP frame. For each copy it writes the next sequence
//! number (from a one-slot array map) and `bpf_ktime_get_ns()` — the same `CLOCK_MONOTONIC`
//! the receiver reads — into the pktgen header, and returns `XDP_TX`, which transmits the
//! frame on the interface named in the test context. On a veth the peer must accept XDP
//! frames (an XDP program, or GRO enabled on it: `ethtool -K PEER gro on`).
//!
//! The UDP checksum is 0 ("none", legal for IPv4), so frames stay valid after the program
//! rewrites the payload; the IPv4 header checksum is computed once here.

use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;

use serde::Serialize;

use crate::bpf::{
    Attr, BPF_MAP_TYPE_ARRAY, BPF_PROG_TEST_RUN, XDP_DROP, XDP_TX, bpf, ifindex, insn, load_xdp,
    map_create, map_lookup,
};
use crate::clock::monotonic_ns;
use crate::error::{Error, io_err};
use crate::frame::{ETH_HEADER, Endpoints, Template, UdpChecksum};
pub use crate::frame::{inet_checksum, parse_mac};
use crate::sizes::{IPV4_HEADER, UDP_HEADER};

/// Offset of the pktgen header in the frame.
pub const PAYLOAD_OFFSET: usize = ETH_HEADER + IPV4_HEADER + UDP_HEADER;
/// Offset of the sequence number the program writes.
pub const SEQ_OFFSET: usize = PAYLOAD_OFFSET + 8;
/// Offset of the timestamp the program writes.
pub const TX_OFFSET: usize = PAYLOAD_OFFSET + 16;

const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

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

/// The XDP program: bounds-check the frame, `seq = map[0]++`, write seq and
/// `bpf_ktime_get_ns()` into the pktgen header, return `XDP_TX` (`XDP_DROP` if too short).
pub fn program(map_fd: i32) -> Vec<u64> {
    let end = (TX_OFFSET + 8) as i32;
    vec![
        insn(0xbf, 6, 1, 0, 0),                 // 0: r6 = r1 (ctx)
        insn(0x61, 7, 6, 0, 0),                 // 1: r7 = ctx->data
        insn(0x61, 3, 6, 4, 0),                 // 2: r3 = ctx->data_end
        insn(0xbf, 4, 7, 0, 0),                 // 3: r4 = r7
        insn(0x07, 4, 0, 0, end),               // 4: r4 += end
        insn(0x2d, 4, 3, 16, 0),                // 5: if r4 > r3 goto 22
        insn(0x62, 10, 0, -4, 0),               // 6: *(u32 *)(r10 - 4) = 0
        insn(0x18, 1, 1, 0, map_fd),            // 7: r1 = map (ld_imm64, pseudo map fd)
        0,                                      // 8:   (second half of ld_imm64)
        insn(0xbf, 2, 10, 0, 0),                // 9: r2 = r10
        insn(0x07, 2, 0, 0, -4),                // 10: r2 -= 4
        insn(0x85, 0, 0, 0, 1),                 // 11: call bpf_map_lookup_elem
        insn(0x15, 0, 0, 9, 0),                 // 12: if r0 == 0 goto 22
        insn(0x79, 1, 0, 0, 0),                 // 13: r1 = *(u64 *)r0
        insn(0xbf, 2, 1, 0, 0),                 // 14: r2 = r1
        insn(0x07, 2, 0, 0, 1),                 // 15: r2 += 1
        insn(0x7b, 0, 2, 0, 0),                 // 16: *(u64 *)r0 = r2
        insn(0x7b, 7, 1, SEQ_OFFSET as i16, 0), // 17: frame seq = r1
        insn(0x85, 0, 0, 0, 5),                 // 18: call bpf_ktime_get_ns
        insn(0x7b, 7, 0, TX_OFFSET as i16, 0),  // 19: frame tx_ns = r0
        insn(0xb7, 0, 0, 0, XDP_TX),            // 20: r0 = XDP_TX
        insn(0x95, 0, 0, 0, 0),                 // 21: exit
        insn(0xb7, 0, 0, 0, XDP_DROP),          // 22: r0 = XDP_DROP
        insn(0x95, 0, 0, 0, 0),                 // 23: exit
    ]
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

/// Sends `cfg.count` frames with the live-frames fast path.
pub fn run_xdp_live(cfg: &XdpLiveConfig) -> Result<XdpLiveSummary, Error> {
    if cfg.count == 0 || !(1..=256).contains(&cfg.batch) {
        return Err(Error::Config(
            "count must be at least 1 and batch within 1..=256".into(),
        ));
    }
    let ifindex = ifindex(&cfg.ifname)?;
    let frame = build_udp4_frame(
        cfg.src_mac,
        cfg.dst_mac,
        cfg.src,
        cfg.dst,
        cfg.stream_id,
        cfg.ip_size,
    )?;

    let map = map_create(BPF_MAP_TYPE_ARRAY, 8, 1)?;
    let prog = load_xdp(&program(map.as_raw_fd()))?;

    // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }:
    // the kernel wants data_end == the frame length and no metadata.
    let frame_len =
        u32::try_from(frame.len()).map_err(|_| Error::Config("frame too large".into()))?;
    let ctx: [u32; 6] = [0, frame_len, 0, ifindex, 0, 0];
    let start = monotonic_ns();
    let mut done = 0u64;
    while done < cfg.count {
        let n = (cfg.count - done).min(u64::from(u32::MAX)) as u32;
        let mut attr = Attr::new();
        attr.u32(0, prog.as_raw_fd() as u32)
            .u32(8, frame_len)
            .u64(16, frame.as_ptr() as u64)
            .u32(32, n)
            .u32(40, std::mem::size_of_val(&ctx) as u32)
            .u64(48, ctx.as_ptr() as u64)
            .u32(64, BPF_F_TEST_XDP_LIVE_FRAMES)
            .u32(72, cfg.batch);
        bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(io_err("BPF_PROG_TEST_RUN (live frames)"))?;
        done += u64::from(n);
    }
    let elapsed = monotonic_ns().saturating_sub(start) as f64 / 1e9;

    let mut value = [0u8; 8];
    map_lookup(&map, 0, &mut value)?;
    let value = u64::from_ne_bytes(value);
    Ok(XdpLiveSummary {
        sent: value,
        elapsed_secs: elapsed,
        pps: if elapsed > 0.0 {
            value as f64 / elapsed
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Header;

    #[test]
    fn frame_layout_and_checksums() {
        let f = build_udp4_frame(
            parse_mac("02:00:00:00:00:01").expect("mac"),
            parse_mac("02:00:00:00:00:02").expect("mac"),
            "192.0.2.1:4000".parse().expect("addr"),
            "192.0.2.2:9000".parse().expect("addr"),
            5,
            64,
        )
        .expect("frame");
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
    fn program_encoding() {
        let p = program(7);
        assert_eq!(p.len(), 24);
        // ld_imm64 with BPF_PSEUDO_MAP_FD (src 1) and the fd in imm.
        assert_eq!(p[7] & 0xff, 0x18);
        assert_eq!((p[7] >> 12) & 0xf, 1);
        assert_eq!(p[7] >> 32, 7);
        // Both jumps land on the XDP_DROP instruction.
        assert_eq!(5 + 1 + ((p[5] >> 16) as u16 as i16) as usize, 22);
        assert_eq!(12 + 1 + ((p[12] >> 16) as u16 as i16) as usize, 22);
        assert_eq!(p[22] >> 32, XDP_DROP as u64);
    }
}
