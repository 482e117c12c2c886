//! New-flow generator: live frames (`BPF_PROG_TEST_RUN`, `BPF_F_TEST_XDP_LIVE_FRAMES`) in which every frame
//! is a new UDP 5-tuple, and the XDP sink that counts what arrives translated as expected.
//!
//! The program (`ebpf/pktgen_cps.c`, `pktgen_cps`) rewrites the whole Ethernet + IPv4 + UDP header of each
//! frame from a template (recycled pages carry whatever a middle box wrote into them) and takes the source
//! address and port from a flow counter that survives calls: flow `n` has source port
//! `port_lo + n % ports` and source address `src_base + (n / ports) % hosts` ([`FlowSpace::tuple`]). A
//! [`CpsGenerator`] keeps the program loaded, so successive [`CpsGenerator::send`] calls continue the
//! sequence; no tuple repeats before [`FlowSpace::len`] frames.
//!
//! [`CpsSink`] (`cps_sink`) is attached to the receiving interface: it counts every frame, the frames whose
//! addresses match [`SinkExpect`] (the translation the path under test must perform) and the distinct
//! source ports of those, and drops them.

use std::net::{Ipv4Addr, SocketAddrV4};

use aya::Ebpf;
use aya::maps::{Array, PerCpuArray};
use aya::programs::XdpMode;

use crate::error::{Error, bpf_err};
use crate::xdp_live::{LiveFrames, build_udp4_frame, set_config};

/// Ethernet + IPv4 + UDP header bytes the program rewrites.
pub const HEADER_BYTES: usize = 14 + 20 + 8;

/// The source addresses and ports the generator walks through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpace {
    /// First source address.
    pub src_base: Ipv4Addr,
    /// Source addresses (`src_base`, `src_base + 1`, ...), at least 1.
    pub hosts: u32,
    /// First source port.
    pub port_lo: u16,
    /// Source ports per address, at least 1, `port_lo + ports - 1 <= 65535`.
    pub ports: u32,
}

impl FlowSpace {
    /// Distinct tuples before the sequence repeats.
    pub fn len(&self) -> u64 {
        u64::from(self.hosts) * u64::from(self.ports)
    }

    /// True when the space holds no tuple (never, once [`FlowSpace::check`] passed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses an empty space or one whose ports or addresses overflow.
    pub fn check(&self) -> Result<(), Error> {
        if self.hosts == 0 || self.ports == 0 {
            return Err(Error::Config(
                "flow space: at least one source address and one source port".into(),
            ));
        }
        if u32::from(self.port_lo) + self.ports - 1 > u32::from(u16::MAX) {
            return Err(Error::Config(format!(
                "flow space: ports {}+{} exceed 65535",
                self.port_lo, self.ports
            )));
        }
        if u64::from(u32::from(self.src_base)) + u64::from(self.hosts) - 1 > u64::from(u32::MAX) {
            return Err(Error::Config(
                "flow space: source addresses overflow".into(),
            ));
        }
        Ok(())
    }

    /// The source of flow `n`, as the program computes it.
    pub fn tuple(&self, n: u64) -> SocketAddrV4 {
        let ports = u64::from(self.ports.max(1));
        let hosts = u64::from(self.hosts.max(1));
        let port = u64::from(self.port_lo) + n % ports;
        let host = u64::from(u32::from(self.src_base)) + (n / ports) % hosts;
        SocketAddrV4::new(Ipv4Addr::from(host as u32), port as u16)
    }
}

/// `struct cps_cfg` of `ebpf/pktgen_cps.c`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CpsCfg {
    hdr: [u8; HEADER_BYTES],
    port_lo: u16,
    ports: u32,
    hosts: u32,
    src_base: u32,
}
const _: () = assert!(std::mem::size_of::<CpsCfg>() == 56);

// SAFETY: repr(C), integer fields only, no padding (42 + 2 + 4 + 4 + 4 = 56 bytes, asserted above).
unsafe impl aya::Pod for CpsCfg {}

/// `struct cps_sink_cfg` of `ebpf/pktgen_cps.c`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SinkCfg {
    saddr_be: u32,
    daddr_lo: u32,
    daddr_hi: u32,
    dport: u16,
    pad: u16,
}
const _: () = assert!(std::mem::size_of::<SinkCfg>() == 16);

// SAFETY: repr(C), integer fields only, no padding (asserted size 16 = 4 + 4 + 4 + 2 + 2).
unsafe impl aya::Pod for SinkCfg {}

/// New-flow generator settings.
#[derive(Debug, Clone)]
pub struct CpsConfig {
    /// Interface to transmit on (in the calling thread's network namespace).
    pub ifname: String,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC (the next hop's).
    pub dst_mac: [u8; 6],
    /// Sources.
    pub flows: FlowSpace,
    /// Destination address and port (the same for every flow).
    pub dst: SocketAddrV4,
    /// IP packet size.
    pub ip_size: usize,
    /// Frames per batch before the kernel flushes them out (1..=256).
    pub batch: u32,
}

/// A loaded new-flow generator; its flow counter runs on across [`CpsGenerator::send`] calls.
pub struct CpsGenerator {
    live: LiveFrames,
}

impl CpsGenerator {
    /// Loads the program and writes the template and flow space into its configuration.
    pub fn new(cfg: &CpsConfig) -> Result<Self, Error> {
        cfg.flows.check()?;
        let frame = build_udp4_frame(
            cfg.src_mac,
            cfg.dst_mac,
            SocketAddrV4::new(cfg.flows.src_base, cfg.flows.port_lo),
            cfg.dst,
            0,
            cfg.ip_size,
        )?;
        let mut hdr = [0u8; HEADER_BYTES];
        hdr.copy_from_slice(&frame[..HEADER_BYTES]);
        let mut live = LiveFrames::load(
            buildvnf_ebpf::PKTGEN_CPS,
            "pktgen_cps.o",
            "pktgen_cps",
            &cfg.ifname,
            cfg.batch,
            frame,
        )?;
        live.set_config(
            "pktgen_cps_cfg",
            CpsCfg {
                hdr,
                port_lo: cfg.flows.port_lo,
                ports: cfg.flows.ports,
                hosts: cfg.flows.hosts,
                src_base: u32::from(cfg.flows.src_base),
            },
        )?;
        Ok(Self { live })
    }

    /// Sends `count` frames (each a new flow), as fast as the kernel runs the program; returns the seconds
    /// it took.
    pub fn send(&mut self, count: u64) -> Result<f64, Error> {
        self.live.run(count)
    }

    /// Flows started so far (the program's counter).
    pub fn flows_sent(&self) -> Result<u64, Error> {
        self.live.counter("pktgen_cps_seq")
    }
}

/// What the sink treats as a correctly translated frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkExpect {
    /// Source address (`None`: any).
    pub saddr: Option<Ipv4Addr>,
    /// Lowest destination address.
    pub daddr_lo: Ipv4Addr,
    /// Highest destination address.
    pub daddr_hi: Ipv4Addr,
    /// Destination port (`None`: any).
    pub dport: Option<u16>,
}

/// The sink's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkCounts {
    /// Every frame.
    pub frames: u64,
    /// Frames that matched [`SinkExpect`].
    pub expected: u64,
    /// Distinct source ports among those.
    pub distinct_ports: u64,
}

/// Loads program `prog` of pktgen_cps.o, writes `cfg` (map name, value) if any and attaches the program
/// to `iface` in the first of `modes` that works, in the calling thread's network namespace.
fn attach_cps<T: aya::Pod>(
    prog: &str,
    cfg: Option<(&str, T)>,
    iface: &str,
    modes: &[XdpMode],
) -> Result<Ebpf, Error> {
    let mut ebpf = Ebpf::load(buildvnf_ebpf::PKTGEN_CPS).map_err(bpf_err("load pktgen_cps.o"))?;
    if let Some((map, value)) = cfg {
        set_config(&mut ebpf, "pktgen_cps.o", map, value)?;
    }
    let p = buildvnf_ebpf::load_xdp(&mut ebpf, prog).map_err(bpf_err(prog.to_string()))?;
    buildvnf_ebpf::attach_xdp(p, iface, modes)
        .map_err(bpf_err(format!("attach {prog} to {iface}")))?;
    Ok(ebpf)
}

/// The counting sink, attached while it lives (detached on drop).
pub struct CpsSink {
    ebpf: Ebpf,
}

impl CpsSink {
    /// Loads `cps_sink`, configures it and attaches it to `iface` (native XDP, else generic) in the calling
    /// thread's network namespace.
    pub fn attach(iface: &str, expect: &SinkExpect) -> Result<Self, Error> {
        let cfg = SinkCfg {
            saddr_be: expect.saddr.map_or(0, |a| u32::from(a).to_be()),
            daddr_lo: u32::from(expect.daddr_lo),
            daddr_hi: u32::from(expect.daddr_hi),
            dport: expect.dport.unwrap_or(0),
            pad: 0,
        };
        let ebpf = attach_cps(
            "cps_sink",
            Some(("cps_sink_cfg", cfg)),
            iface,
            &[XdpMode::Driver, XdpMode::Skb],
        )?;
        Ok(Self { ebpf })
    }

    /// The counters so far.
    pub fn counts(&self) -> Result<SinkCounts, Error> {
        let c: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("cps_sink_count")
                .ok_or_else(|| Error::Config("pktgen_cps.o has no map cps_sink_count".into()))?,
        )
        .map_err(bpf_err("cps_sink_count"))?;
        let sum = |i: u32| -> Result<u64, Error> {
            Ok(c.get(&i, 0)
                .map_err(bpf_err("read cps_sink_count"))?
                .iter()
                .sum())
        };
        let bits: Array<_, u64> = Array::try_from(
            self.ebpf
                .map("cps_sink_ports")
                .ok_or_else(|| Error::Config("pktgen_cps.o has no map cps_sink_ports".into()))?,
        )
        .map_err(bpf_err("cps_sink_ports"))?;
        let mut distinct = 0u64;
        for w in bits.iter() {
            distinct += u64::from(w.map_err(bpf_err("read cps_sink_ports"))?.count_ones());
        }
        Ok(SinkCounts {
            frames: sum(0)?,
            expected: sum(1)?,
            distinct_ports: distinct,
        })
    }
}

/// `struct cps_echo_cfg` of `ebpf/pktgen_cps.c`.
#[repr(C)]
#[derive(Clone, Copy)]
struct EchoCfg {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    dport: u16,
    pad: u16,
}
const _: () = assert!(std::mem::size_of::<EchoCfg>() == 16);

// SAFETY: repr(C), byte arrays and integers only, no padding (asserted size 16 = 6 + 6 + 2 + 2).
unsafe impl aya::Pod for EchoCfg {}

/// The in-kernel UDP reflector (`cps_echo`), attached while it lives: IPv4/UDP frames to `dport` go back out of
/// the interface with addresses and ports swapped and the given MACs; other frames pass.
pub struct CpsEcho {
    _ebpf: Ebpf,
}

impl CpsEcho {
    /// Loads, configures and attaches `cps_echo` to `iface` (native XDP, else generic) in the calling thread's
    /// network namespace.
    pub fn attach(
        iface: &str,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        dport: u16,
    ) -> Result<Self, Error> {
        let cfg = EchoCfg {
            src_mac,
            dst_mac,
            dport,
            pad: 0,
        };
        let ebpf = attach_cps(
            "cps_echo",
            Some(("cps_echo_cfg", cfg)),
            iface,
            &[XdpMode::Driver, XdpMode::Skb],
        )?;
        Ok(Self { _ebpf: ebpf })
    }
}

/// `cps_pass` attached while it lives: passes every frame, and so lets a veth take the XDP frames its peer sends
/// with `XDP_TX` (veth schedules the receiver's NAPI for them only when it has an XDP program).
pub struct XdpPass {
    _ebpf: Ebpf,
}

impl XdpPass {
    /// Loads and attaches `cps_pass` to `iface` (native XDP) in the calling thread's network namespace.
    pub fn attach(iface: &str) -> Result<Self, Error> {
        let ebpf = attach_cps::<EchoCfg>("cps_pass", None, iface, &[XdpMode::Driver])?;
        Ok(Self { _ebpf: ebpf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_numbers_walk_ports_then_hosts_and_wrap_after_the_space() {
        let s = FlowSpace {
            src_base: Ipv4Addr::new(10, 0, 1, 2),
            hosts: 3,
            port_lo: 1024,
            ports: 4,
        };
        s.check().expect("valid");
        assert_eq!(s.len(), 12);
        assert_eq!(s.tuple(0), "10.0.1.2:1024".parse().expect("addr"));
        assert_eq!(s.tuple(3), "10.0.1.2:1027".parse().expect("addr"));
        assert_eq!(s.tuple(4), "10.0.1.3:1024".parse().expect("addr"));
        assert_eq!(s.tuple(11), "10.0.1.4:1027".parse().expect("addr"));
        assert_eq!(s.tuple(12), s.tuple(0), "wraps after hosts * ports");
        let all: std::collections::HashSet<_> = (0..12).map(|n| s.tuple(n)).collect();
        assert_eq!(
            all.len(),
            12,
            "every flow number below len() is a new tuple"
        );
    }

    #[test]
    fn bad_flow_spaces_are_refused() {
        let ok = FlowSpace {
            src_base: Ipv4Addr::new(10, 0, 1, 2),
            hosts: 1,
            port_lo: 65535,
            ports: 1,
        };
        ok.check().expect("the last port alone is fine");
        assert!(FlowSpace { ports: 2, ..ok }.check().is_err());
        assert!(FlowSpace { ports: 0, ..ok }.check().is_err());
        assert!(FlowSpace { hosts: 0, ..ok }.check().is_err());
        assert!(
            FlowSpace {
                src_base: Ipv4Addr::new(255, 255, 255, 255),
                hosts: 2,
                port_lo: 1,
                ports: 1
            }
            .check()
            .is_err()
        );
    }
}
