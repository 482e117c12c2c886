//! AF_XDP transmit generator: paced pktgen frames written straight into a UMEM and handed to
//! the kernel on a TX-only AF_XDP socket (copy mode works on any driver, veth included).
//!
//! Same traffic model as the socket sender ([`crate::send`]): flow `i` uses source port
//! `src.port() + i` and stream id `stream_base + i` with its own sequence numbers from 0;
//! packet `n` goes to flow `n % flows`; sizes and pacing come from [`SizeSpec`] and
//! [`Schedule`]. Every frame of a batch is stamped with the same `tx_ns`, read just before the
//! batch's frames are written into the UMEM (they are then committed to the TX ring and the
//! kernel is kicked with `sendto`). IP and UDP checksums
//! are correct (see [`crate::frame`]), so the receiving stack accepts the frames as they are.
//!
//! `sent` counts frames the kernel reported done on the completion ring (in copy mode that
//! includes frames the driver then dropped; compare with the interface's TX counters);
//! `dropped` counts frames still not completed one second after the last commit, `per_flow`
//! the frames committed per flow, and `send_errors` the descriptors the kernel rejected.

use netkit::umem::Area;
use std::ffi::CString;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use xdpilone::xdp::XdpDesc;
use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig};

use crate::clock::{monotonic_ns, wait_until};
use crate::error::{Error, io_err};
use crate::frame::{Endpoints, Template, UdpChecksum};
use crate::pacing::{Pattern, Schedule};
use crate::send::{SendCounts, SendProgress, SendSummary};
use crate::sizes::SizeSpec;

const SECOND_NS: u64 = 1_000_000_000;
const SPIN_NS: u64 = 20_000;
/// UMEM frame size (one frame per packet; the largest frame is 14 + MTU).
const FRAME_SIZE: u32 = 2048;
/// After the last packet, how long to wait for the kernel to complete outstanding frames.
const DRAIN: Duration = Duration::from_secs(1);

/// AF_XDP sender settings.
#[derive(Debug, Clone)]
pub struct XskConfig {
    /// Interface to transmit on (in the calling thread's network namespace).
    pub ifname: String,
    /// Queue of the interface.
    pub queue_id: u32,
    /// MACs and the first flow's addresses (flow `i` uses source port `src.port() + i`).
    pub endpoints: Endpoints,
    /// Number of flows.
    pub flows: u32,
    /// Stream id of flow 0.
    pub stream_base: u32,
    /// Inter-departure process.
    pub pattern: Pattern,
    /// Packets per second over all flows (ignored for [`Pattern::Unlimited`]).
    pub rate_pps: f64,
    /// RNG seed for Poisson/Pareto.
    pub seed: u64,
    /// IP packet sizes.
    pub sizes: SizeSpec,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Most frames per TX-ring commit.
    pub batch: u32,
    /// TX and completion ring size (power of two); the UMEM has twice as many frames.
    pub ring_size: u32,
}

impl XskConfig {
    /// Defaults like the socket sender's: one flow, constant 1000 pps, 64-byte packets, batch
    /// 32, rings of 2048, queue 0; set `count` or `duration`.
    pub fn new(ifname: &str, endpoints: Endpoints) -> Self {
        Self {
            ifname: ifname.to_string(),
            queue_id: 0,
            endpoints,
            flows: 1,
            stream_base: 0,
            pattern: Pattern::Constant,
            rate_pps: 1000.0,
            seed: 1,
            sizes: SizeSpec::Fixed(64),
            count: None,
            duration: None,
            batch: 32,
            ring_size: 2048,
        }
    }

    fn validate(&self, mtu: Option<usize>) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.flows == 0 {
            return bad("flows must be at least 1".into());
        }
        if u32::from(self.endpoints.src.port()) + self.flows - 1 > u32::from(u16::MAX) {
            return bad(format!(
                "source ports {}..{} exceed 65535",
                self.endpoints.src.port(),
                u32::from(self.endpoints.src.port()) + self.flows
            ));
        }
        if self.endpoints.src.is_ipv4() != self.endpoints.dst.is_ipv4() {
            return bad(format!(
                "source {} and destination {} are different address families",
                self.endpoints.src, self.endpoints.dst
            ));
        }
        if !self.ring_size.is_power_of_two() || !(64..=16384).contains(&self.ring_size) {
            return bad(format!(
                "ring size {} must be a power of two in 64..=16384",
                self.ring_size
            ));
        }
        if self.batch == 0 || self.batch > self.ring_size {
            return bad(format!("batch {} must be in 1..=ring size", self.batch));
        }
        if self.count.is_none() && self.duration.is_none() {
            return bad("set a packet count or a duration".into());
        }
        let max = self.sizes.max_ip_size();
        if let Some(mtu) = mtu
            && max > mtu
        {
            return bad(format!(
                "packet size {max} exceeds the MTU {mtu} of {}",
                self.ifname
            ));
        }
        if 14 + max > FRAME_SIZE as usize {
            return bad(format!(
                "packet size {max} does not fit a {FRAME_SIZE}-byte UMEM frame"
            ));
        }
        Ok(())
    }
}

/// Distinct IP sizes of a spec, in first-use order.
fn distinct_sizes(spec: &SizeSpec) -> Vec<usize> {
    let all: Vec<usize> = match spec {
        SizeSpec::Fixed(s) => vec![*s],
        SizeSpec::Sweep { sizes, .. } => sizes.clone(),
        SizeSpec::Imix => crate::sizes::IMIX_CYCLE.to_vec(),
    };
    let mut out: Vec<usize> = Vec::new();
    for s in all {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn xsk_err(op: &'static str, ifname: &str) -> impl FnOnce(xdpilone::Errno) -> Error {
    let ctx = format!("AF_XDP {op} on {ifname}");
    move |e| io_err(ctx)(std::io::Error::from_raw_os_error(e.get_raw().abs()))
}

fn mtu_of(ifname: &str) -> Option<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// Extra AF_XDP counters of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct XskStats {
    /// Descriptors the kernel rejected (`XDP_STATISTICS` tx_invalid_descs).
    pub tx_invalid_descs: u64,
    /// Times the kernel found the TX ring empty when woken.
    pub tx_ring_empty_descs: u64,
    /// `sendto` kicks.
    pub kicks: u64,
}

/// Runs the AF_XDP sender until its count or duration is reached (or `stop` is set), calling
/// `progress` about once per second. `rtt` in the summary is always `None`.
pub fn run_xsk_sender(
    cfg: &XskConfig,
    stop: &AtomicBool,
    mut progress: impl FnMut(&SendProgress),
) -> Result<(SendSummary, XskStats), Error> {
    cfg.validate(mtu_of(&cfg.ifname))?;
    let sizes = distinct_sizes(&cfg.sizes);
    let templates = flow_templates(cfg, &sizes)?;
    let mut sched = Schedule::new(cfg.pattern, cfg.rate_pps, cfg.seed)?;

    let frames = cfg.ring_size * 2;
    // Declaration order is drop order in reverse: rings, sockets and the UMEM go before `area`.
    let mut area = Area::new(frames as usize * FRAME_SIZE as usize).map_err(io_err("mmap UMEM"))?;
    let mut xsk = XskSocket::open(cfg, &area)?;

    let mut free: Vec<u64> = (0..u64::from(frames))
        .rev()
        .map(|i| i * u64::from(FRAME_SIZE))
        .collect();
    let mut t = Tally::new(cfg.flows as usize);
    let mut stats = XskStats::default();
    let limit = cfg.count.unwrap_or(u64::MAX);
    let paced = cfg.pattern != Pattern::Unlimited;
    let mut descs: Vec<XdpDesc> = Vec::with_capacity(cfg.batch as usize);

    super::send::tighten_timer_slack();
    let start = monotonic_ns();
    let end = cfg
        .duration
        .map(|d| start.saturating_add(d.as_nanos() as u64));
    let mut due = start + sched.next_departure();
    let mut last_send = start;
    let (mut next_report, mut last_report) = (start + SECOND_NS, start);

    while t.n < limit && !stop.load(Ordering::Relaxed) {
        t.completed += reap(&mut xsk.dev, &mut free, cfg.ring_size);
        let now = monotonic_ns();
        if end.is_some_and(|e| now >= e || due >= e) {
            break;
        }
        if now >= next_report {
            progress(&SendProgress {
                elapsed_secs: (now - start) as f64 / 1e9,
                interval_secs: (now - last_report) as f64 / 1e9,
                packets: t.iv_packets,
                bytes: t.iv_bytes,
                total: t.submitted,
                rtt: None,
            });
            (t.iv_packets, t.iv_bytes) = (0, 0);
            last_report = now;
            next_report = now + SECOND_NS;
        }
        if due > now {
            if xsk.tx.pending() > 0 {
                kick(&xsk.tx, &mut stats);
            } else {
                wait_until(due.min(next_report), SPIN_NS);
            }
            continue;
        }
        // Room on the TX ring: frames the kernel has not consumed yet still hold their slots.
        let room = cfg
            .ring_size
            .saturating_sub(xsk.tx.pending())
            .min(cfg.batch) as usize;
        if free.is_empty() || room == 0 {
            // every frame (or every ring slot) is in flight: let the kernel catch up
            kick(&xsk.tx, &mut stats);
            continue;
        }
        let tx_ns = monotonic_ns();
        descs.clear();
        while t.n < limit && due <= now && end.is_none_or(|e| due < e) && descs.len() < room {
            let Some(addr) = free.pop() else { break };
            let flow = (t.n % u64::from(cfg.flows)) as usize;
            let size = cfg.sizes.ip_size(t.n);
            let si = sizes.iter().position(|&s| s == size).unwrap_or(0);
            let tpl = &templates[flow][si];
            let frame = area.bytes_mut(addr as usize, FRAME_SIZE as usize);
            let len = tpl.write(frame, t.next_seq[flow], tx_ns)?;
            descs.push(XdpDesc {
                addr,
                len: len as u32,
                options: 0,
            });
            t.written(flow, tpl.payload_len() as u64, paced.then(|| now - due));
            due = start + sched.next_departure();
        }
        let inserted = commit(cfg, &mut xsk.tx, &descs, &mut stats)?;
        t.submitted += inserted as u64;
        t.iv_packets += inserted as u64;
        last_send = monotonic_ns();
        kick(&xsk.tx, &mut stats);
    }
    // Let the kernel finish what was submitted.
    let drain_until = monotonic_ns() + DRAIN.as_nanos() as u64;
    while t.completed < t.submitted && monotonic_ns() < drain_until {
        kick(&xsk.tx, &mut stats);
        let got = reap(&mut xsk.dev, &mut free, cfg.ring_size);
        t.completed += got;
        if got == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    if let Ok(s) = xsk.user.statistics_v2() {
        stats.tx_invalid_descs = s.tx_invalid_descs;
        stats.tx_ring_empty_descs = s.tx_ring_empty_descs;
    }
    let elapsed = last_send.saturating_sub(start) as f64 / 1e9;
    let summary = t.summary(elapsed, stats.tx_invalid_descs);
    drop(xsk);
    drop(area);
    Ok((summary, stats))
}

/// One template per flow and distinct size: `templates[flow][size index]`.
fn flow_templates(cfg: &XskConfig, sizes: &[usize]) -> Result<Vec<Vec<Template>>, Error> {
    (0..cfg.flows)
        .map(|i| {
            let mut ep = cfg.endpoints;
            ep.src.set_port(cfg.endpoints.src.port() + i as u16);
            sizes
                .iter()
                .map(|&s| Template::new(&ep, cfg.stream_base.wrapping_add(i), s, UdpChecksum::Full))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect()
}

/// A TX-only AF_XDP socket bound in copy mode on `cfg.ifname`/`cfg.queue_id`. Fields drop in
/// declaration order: the rings and the socket before the UMEM.
struct XskSocket {
    tx: xdpilone::RingTx,
    user: xdpilone::User,
    dev: xdpilone::DeviceQueue,
    _sock: Socket,
    _umem: Umem,
}

impl XskSocket {
    /// Registers `area` as the UMEM (which `area` must outlive) and binds the socket.
    fn open(cfg: &XskConfig, area: &Area) -> Result<Self, Error> {
        let name = CString::new(cfg.ifname.as_str())
            .map_err(|_| Error::Config(format!("bad interface name '{}'", cfg.ifname)))?;
        let mut info = IfInfo::invalid();
        info.from_name(&name)
            .map_err(xsk_err("interface", &cfg.ifname))?;
        info.set_queue(cfg.queue_id);
        let umem_cfg = UmemConfig {
            fill_size: cfg.ring_size,
            complete_size: cfg.ring_size,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page aligned (mmap), `ring_size × 2 × FRAME_SIZE` bytes long, and
        // outlives the UMEM (the caller declares it before this socket, so drops it after).
        let umem = unsafe { Umem::new(umem_cfg, area.slice()) }
            .map_err(xsk_err("UMEM registration", &cfg.ifname))?;
        let sock = Socket::with_shared(&info, &umem).map_err(xsk_err("socket", &cfg.ifname))?;
        let dev = umem
            .fq_cq(&sock)
            .map_err(xsk_err("fill/completion rings", &cfg.ifname))?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: None,
                    tx_size: NonZeroU32::new(cfg.ring_size),
                    bind_flags: SocketConfig::XDP_BIND_COPY | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(xsk_err("tx ring", &cfg.ifname))?;
        let tx = user
            .map_tx()
            .map_err(xsk_err("mmap tx ring", &cfg.ifname))?;
        umem.bind(&user).map_err(xsk_err("bind", &cfg.ifname))?;
        Ok(XskSocket {
            tx,
            user,
            dev,
            _sock: sock,
            _umem: umem,
        })
    }
}

/// Takes the completed frames back into `free`; returns how many.
fn reap(dev: &mut xdpilone::DeviceQueue, free: &mut Vec<u64>, ring_size: u32) -> u64 {
    let mut n = 0;
    let mut r = dev.complete(ring_size);
    while let Some(addr) = r.read() {
        free.push(addr - addr % u64::from(FRAME_SIZE));
        n += 1;
    }
    r.release();
    n
}

/// Wakes the kernel while the TX ring holds frames.
fn kick(tx: &xdpilone::RingTx, stats: &mut XskStats) {
    // copy mode sends a bounded budget per sendto; a few kicks drain a batch
    for _ in 0..16 {
        if tx.pending() == 0 {
            break;
        }
        tx.wake();
        stats.kicks += 1;
    }
}

/// Puts `descs` on the TX ring; returns how many went on (all of them, or an error).
fn commit(
    cfg: &XskConfig,
    tx: &mut xdpilone::RingTx,
    descs: &[XdpDesc],
    stats: &mut XskStats,
) -> Result<usize, Error> {
    // The ring has `room` free slots, but a reservation may see a stale view of the
    // kernel's consumer head and take fewer: offer the rest again (the next reservation
    // refreshes that view), kicking the kernel if the ring really is full.
    let mut inserted = 0usize;
    let mut attempts = 0u32;
    while inserted < descs.len() {
        let k = {
            let mut w = tx.transmit((descs.len() - inserted) as u32);
            let k = w.insert(descs[inserted..].iter().copied());
            w.commit();
            k as usize
        };
        inserted += k;
        if k == 0 {
            attempts += 1;
            if attempts > 10_000 {
                return Err(Error::Config(format!(
                    "the kernel stopped consuming the TX ring of {} ({} of {} frames queued)",
                    cfg.ifname,
                    inserted,
                    descs.len()
                )));
            }
            kick(tx, stats);
        }
    }
    Ok(inserted)
}

/// The counters of a run.
struct Tally {
    /// Packets written so far.
    n: u64,
    next_seq: Vec<u64>,
    per_flow: Vec<u64>,
    /// Payload bytes of the frames written (counted when submitted).
    bytes: u64,
    submitted: u64,
    completed: u64,
    lateness_sum: u128,
    max_lateness: u64,
    /// Packets and bytes since the last progress report.
    iv_packets: u64,
    iv_bytes: u64,
}

impl Tally {
    fn new(flows: usize) -> Self {
        Tally {
            n: 0,
            next_seq: vec![0; flows],
            per_flow: vec![0; flows],
            bytes: 0,
            submitted: 0,
            completed: 0,
            lateness_sum: 0,
            max_lateness: 0,
            iv_packets: 0,
            iv_bytes: 0,
        }
    }

    /// One frame of `flow` with `payload` bytes written, `late` ns after its departure time when paced.
    fn written(&mut self, flow: usize, payload: u64, late: Option<u64>) {
        self.next_seq[flow] += 1;
        self.per_flow[flow] += 1;
        self.bytes += payload;
        self.iv_bytes += payload;
        if let Some(late) = late {
            self.lateness_sum += u128::from(late);
            self.max_lateness = self.max_lateness.max(late);
        }
        self.n += 1;
    }

    fn summary(self, elapsed: f64, send_errors: u64) -> SendSummary {
        SendSummary::new(
            SendCounts {
                sent: self.completed,
                bytes: self.bytes,
                dropped: self.submitted - self.completed,
                send_errors,
                // lateness is summed only when paced
                departures: self.submitted,
                lateness_sum_ns: self.lateness_sum,
                max_lateness_ns: self.max_lateness,
                per_flow: self.per_flow,
            },
            elapsed,
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: "192.0.2.1:40000".parse().expect("src"),
            dst: "192.0.2.2:9000".parse().expect("dst"),
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = XskConfig::new("veth0", ep());
        assert!(c.validate(Some(1500)).is_err(), "no count or duration");
        c.count = Some(10);
        assert!(c.validate(Some(1500)).is_ok());
        c.sizes = SizeSpec::Fixed(9000);
        let e = c.validate(Some(1500)).expect_err("mtu").to_string();
        assert!(e.contains("MTU 1500"), "{e}");
        c.sizes = SizeSpec::Fixed(64);
        c.flows = 30_000;
        assert!(
            c.validate(None)
                .expect_err("ports")
                .to_string()
                .contains("65535")
        );
        c.flows = 1;
        c.ring_size = 1000;
        assert!(
            c.validate(None)
                .expect_err("ring")
                .to_string()
                .contains("power of two")
        );
        c.ring_size = 64;
        c.batch = 65;
        assert!(
            c.validate(None)
                .expect_err("batch")
                .to_string()
                .contains("batch")
        );
        c.batch = 8;
        c.endpoints.dst = "[2001:db8::2]:9000".parse().expect("v6");
        assert!(
            c.validate(None)
                .expect_err("family")
                .to_string()
                .contains("families")
        );
    }

    #[test]
    fn distinct_sizes_keep_first_use_order() {
        assert_eq!(distinct_sizes(&SizeSpec::Imix), vec![64, 576, 1500]);
        assert_eq!(distinct_sizes(&SizeSpec::Fixed(100)), vec![100]);
        assert_eq!(
            distinct_sizes(&SizeSpec::Sweep {
                sizes: vec![512, 64, 512],
                per_size: 3
            }),
            vec![512, 64]
        );
    }
}
