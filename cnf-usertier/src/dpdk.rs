//! The DPDK back end of the user-space tier (cargo feature `dpdk`): the same frame processing,
//! counters and polling policies as the AF_XDP worker, on DPDK ports over virtual devices.
//!
//! Unlike the AF_XDP back end it is not fed by the chain's XSKMAP: the ingress port is a DPDK vdev
//! on the ingress interface (`net_af_packet`: a copy of every frame through a TPACKET ring — the
//! kernel stack still receives the frame too; or `net_af_xdp`: the PMD's own XDP program steals
//! the queue's frames), frames are processed in the mbufs and leave through a port on the egress
//! interface (or back out of the ingress port, one-armed). DPDK is poll-mode: `busyPoll` and
//! `adaptive` apply; `wakeup` is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cnf_dpdk::{Eal, Mbuf, Mempool, Port, Vdev};

use super::UserspaceError;
use super::frame::{CipherFn, DropReason, process};
use super::poll::{Backoff, Idle, Polling};
use super::stats::Shared;
use super::xsk::{DpdkDriver, TierConfig, clock_ns};

/// How often the worker copies the ports' counters into the tier's.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Headroom DPDK keeps in front of every frame (`RTE_PKTMBUF_HEADROOM`).
const HEADROOM: u32 = 128;

impl From<cnf_dpdk::DpdkError> for UserspaceError {
    fn from(e: cnf_dpdk::DpdkError) -> Self {
        UserspaceError::Dpdk(e.to_string())
    }
}

/// Checks what only the DPDK back end requires.
pub(super) fn validate(cfg: &TierConfig) -> Result<(), UserspaceError> {
    if cfg.polling == Polling::Wakeup {
        return Err(UserspaceError::Config(
            "polling wakeup: the dpdk backend is poll-mode only (use busyPoll or adaptive)".into(),
        ));
    }
    if cfg.dpdk_driver == DpdkDriver::AfPacket && cfg.queue_id != 0 {
        return Err(UserspaceError::Config(format!(
            "queue_id {}: net_af_packet receives from every queue of {}; run one dpdk tier per \
             interface with queue_id 0",
            cfg.queue_id, cfg.ingress
        )));
    }
    Ok(())
}

fn vdev(driver: DpdkDriver, iface: &str, queue: u32) -> Vdev {
    match driver {
        DpdkDriver::AfPacket => Vdev::AfPacket {
            iface: iface.to_string(),
        },
        DpdkDriver::AfXdp => Vdev::AfXdp {
            iface: iface.to_string(),
            queue,
        },
    }
}

/// Opens the ports (in the calling thread's network namespace) and starts the worker thread.
pub(super) fn spawn(
    cfg: TierConfig,
    functions: Vec<CipherFn>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, UserspaceError> {
    validate(&cfg)?;
    let eal = Eal::init(&[])?;
    let room = u16::try_from(cfg.frame_size + HEADROOM)
        .map_err(|_| UserspaceError::Config(format!("frame_size {} too big", cfg.frame_size)))?;
    let pool = Arc::new(Mempool::new(eal, cfg.frame_count - 1, room)?);
    let desc = u16::try_from(cfg.ring_size)
        .map_err(|_| UserspaceError::Config(format!("ring_size {} too big", cfg.ring_size)))?;
    let rx = Port::open(
        eal,
        vdev(cfg.dpdk_driver, &cfg.ingress, cfg.queue_id),
        pool.clone(),
        desc,
        desc,
    )?;
    let tx = match &cfg.egress {
        Some(eg) => Some(Port::open(
            eal,
            vdev(cfg.dpdk_driver, eg, cfg.egress_queue_id),
            pool.clone(),
            desc,
            desc,
        )?),
        None => None,
    };
    let name = format!("dpdk-{}", cfg.ingress);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut w = Worker {
                inbox: Vec::with_capacity(cfg.batch as usize),
                out: Vec::with_capacity(cfg.batch as usize),
                rx,
                tx,
                pool,
                shared: &shared,
            };
            w.run(functions, &cfg, &stop);
            drop(w);
            shared.final_cpu_ns.store(
                clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0),
                Relaxed,
            );
            shared.finished.store(true, Relaxed);
        })
        .map_err(UserspaceError::Thread)
}

/// The worker's ports and buffers. Field order is drop order: mbufs, then ports, then the pool.
struct Worker<'a> {
    inbox: Vec<Mbuf>,
    out: Vec<Mbuf>,
    rx: Port,
    tx: Option<Port>,
    pool: Arc<Mempool>,
    shared: &'a Shared,
}

impl Worker<'_> {
    fn run(&mut self, mut functions: Vec<CipherFn>, cfg: &TierConfig, stop: &AtomicBool) {
        // a wakeup policy never gets here (validate); its poll timeout is unused
        let mut backoff = Backoff::new(cfg.polling, cfg.adaptive, Duration::from_millis(50));
        if cfg.polling == Polling::Adaptive {
            // SAFETY: PR_SET_TIMERSLACK takes an integer argument and only affects this thread.
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
            }
        }
        let batch = u16::try_from(cfg.batch).unwrap_or(u16::MAX);
        let mut last_house = Instant::now();
        while !stop.load(Relaxed) {
            if self.burst(&mut functions, cfg, batch) > 0 {
                backoff.work();
            } else {
                match backoff.idle(Instant::now()) {
                    Idle::Spin | Idle::Poll(_) => std::hint::spin_loop(),
                    Idle::Yield => std::thread::yield_now(),
                    Idle::Sleep(d) => {
                        self.shared.sleeps.fetch_add(1, Relaxed);
                        std::thread::sleep(d);
                    }
                }
            }
            if last_house.elapsed() >= HOUSEKEEPING {
                last_house = Instant::now();
                self.housekeeping();
            }
        }
        self.housekeeping();
    }

    /// One rx burst, processed and sent; returns the frames received.
    fn burst(&mut self, functions: &mut [CipherFn], cfg: &TierConfig, batch: u16) -> usize {
        self.inbox.clear();
        let n = self.rx.rx_burst(&mut self.inbox, batch);
        if n == 0 {
            return 0;
        }
        let t_rx = Instant::now();
        let mut rx_bytes = 0u64;
        for mut m in self.inbox.drain(..) {
            let Some((buf, len)) = m.data_mut() else {
                self.shared.drop(DropReason::Malformed, 1);
                continue;
            };
            rx_bytes += len as u64;
            match process(functions, cfg.mac_rewrite.as_ref(), buf, len, cfg.mtu) {
                Ok(new_len) => {
                    if m.set_len(new_len).is_ok() {
                        self.out.push(m);
                    } else {
                        self.shared.drop(DropReason::TooBig, 1);
                    }
                }
                Err(r) => self.shared.drop(r, 1),
            }
        }
        self.shared.rx_packets.fetch_add(n as u64, Relaxed);
        self.shared.rx_bytes.fetch_add(rx_bytes, Relaxed);
        if !self.out.is_empty() {
            let bytes: u64 = self
                .out
                .iter_mut()
                .map(|m| m.data_mut().map_or(0, |(_, l)| l as u64))
                .sum();
            let port = self.tx.as_mut().unwrap_or(&mut self.rx);
            let sent = port.tx_burst(&mut self.out);
            self.shared.tx_kicks.fetch_add(1, Relaxed);
            let unsent_bytes: u64 = self
                .out
                .iter_mut()
                .map(|m| m.data_mut().map_or(0, |(_, l)| l as u64))
                .sum();
            let unsent = self.out.len() as u64;
            // frames the tx queue had no room for go back to the pool
            self.out.clear();
            if unsent > 0 {
                self.shared.drop(DropReason::TxRingFull, unsent);
            }
            self.shared.tx_packets.fetch_add(sent as u64, Relaxed);
            self.shared
                .tx_bytes
                .fetch_add(bytes - unsent_bytes, Relaxed);
            if sent > 0 {
                self.shared
                    .latency(t_rx.elapsed().as_nanos() as u64, sent as u64);
            }
        }
        n
    }

    /// Port counters into the tier's: receive drops of the device (ring full, errors) as the
    /// kernel drops, receive failures for lack of mbufs as "fill ring empty", free mbufs as the
    /// fill depth (buffers ready for the device).
    fn housekeeping(&self) {
        if let Ok(s) = self.rx.stats() {
            self.shared
                .kernel_rx_dropped
                .store(s.imissed + s.ierrors, Relaxed);
            self.shared.kernel_rx_ring_full.store(s.imissed, Relaxed);
            self.shared.kernel_fill_empty.store(s.rx_nombuf, Relaxed);
        }
        self.shared
            .fill_depth
            .store(u64::from(self.pool.available()), Relaxed);
    }
}
