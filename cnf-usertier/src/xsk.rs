//! The AF_XDP socket layer and the tier worker: one UMEM, an RX socket on `(ingress, queue)`,
//! and TX either back out of the same socket (one-armed) or out of a TX-only socket on the
//! egress interface that shares the UMEM (so a frame is never copied in user space).
//!
//! Frame life cycle: free list → fill ring → (kernel) → RX ring → processed in place → TX ring →
//! (kernel) → completion ring → free list; a dropped frame goes straight back to the free list.
//!
//! Everything that holds the UMEM's memory is created and used on the worker thread (the UMEM
//! handle is not `Send`); the caller only gets the RX socket's fd to register in an XSKMAP.

use netkit::umem::Area;
use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::UserspaceError;
use super::cipher::{Aead, Algorithm, Direction, KEY_LEN, NonceSeq};
use super::frame::{CipherFn, DropReason, MacRewrite, process};
use super::poll::{AdaptiveTuning, Backoff, Idle, Polling};
use super::stats::{Shared, Stats};

/// One payload-cipher function of the tier, with its key (the daemon reads the key from the
/// Secret's file).
#[derive(Clone)]
pub struct CipherSpec {
    /// The AEAD.
    pub algorithm: Algorithm,
    /// Seal or open.
    pub direction: Direction,
    /// The 32-byte key.
    pub key: [u8; KEY_LEN],
}

impl std::fmt::Debug for CipherSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipherSpec")
            .field("algorithm", &self.algorithm)
            .field("direction", &self.direction)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Packet I/O back end of the tier (the CRD's `dataplane.userspace.backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// AF_XDP sockets fed by an XSKMAP (the chain's hand-off or [`super::redirect`]).
    #[default]
    AfXdp,
    /// DPDK ports on virtual devices (cargo feature `dpdk`); see [`DpdkDriver`].
    Dpdk,
}

impl Backend {
    /// The CRD spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::AfXdp => "afxdp",
            Backend::Dpdk => "dpdk",
        }
    }
}

impl From<crds::vnfchain::UserspaceBackend> for Backend {
    fn from(b: crds::vnfchain::UserspaceBackend) -> Self {
        match b {
            crds::vnfchain::UserspaceBackend::Afxdp => Backend::AfXdp,
            crds::vnfchain::UserspaceBackend::Dpdk => Backend::Dpdk,
        }
    }
}

/// The DPDK virtual device the [`Backend::Dpdk`] tier opens on its interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DpdkDriver {
    /// `net_af_packet`: a TPACKET ring on the interface; sees every queue, copies every frame,
    /// and the kernel stack still receives the frames as well.
    #[default]
    AfPacket,
    /// `net_af_xdp`: the PMD attaches its own XDP program and takes the queue's frames.
    AfXdp,
}

/// Settings of one tier worker (one socket per `(interface, queue)`).
#[derive(Clone, Debug)]
pub struct TierConfig {
    /// Interface whose queue feeds the socket.
    pub ingress: String,
    /// Queue of the ingress interface.
    pub queue_id: u32,
    /// Egress interface; `None` sends frames back out of the ingress socket (one-armed).
    pub egress: Option<String>,
    /// Queue of the egress interface. The kernel allows one AF_XDP socket per (interface, queue),
    /// so tiers that share an egress interface need distinct egress queues.
    pub egress_queue_id: u32,
    /// MAC addresses written into every sent frame.
    pub mac_rewrite: Option<MacRewrite>,
    /// Functions run on every frame, in order.
    pub functions: Vec<CipherSpec>,
    /// How the worker waits.
    pub polling: Polling,
    /// Tuning of the adaptive policy.
    pub adaptive: AdaptiveTuning,
    /// Largest IP packet the tier sends (the egress MTU).
    pub mtu: usize,
    /// UMEM frames (power of two, at least 2 × `ring_size`).
    pub frame_count: u32,
    /// UMEM frame size: 2048 or 4096.
    pub frame_size: u32,
    /// Size of each ring (power of two).
    pub ring_size: u32,
    /// Most frames taken off the RX ring per iteration.
    pub batch: u32,
    /// Try zero-copy first (falls back to copy mode when the driver refuses).
    pub try_zero_copy: bool,
    /// Packet I/O back end.
    pub backend: Backend,
    /// The DPDK vdev (used only by [`Backend::Dpdk`]).
    pub dpdk_driver: DpdkDriver,
}

impl TierConfig {
    /// Defaults: AF_XDP, one-armed, no functions, adaptive polling, MTU 1500, 4096 frames of
    /// 4 KiB, rings of 1024, batch 64, zero-copy tried first.
    pub fn new(ingress: &str, queue_id: u32) -> Self {
        Self {
            ingress: ingress.to_string(),
            queue_id,
            egress: None,
            egress_queue_id: 0,
            mac_rewrite: None,
            functions: Vec::new(),
            polling: Polling::default(),
            adaptive: AdaptiveTuning::default(),
            mtu: 1500,
            frame_count: 4096,
            frame_size: 4096,
            ring_size: 1024,
            batch: 64,
            try_zero_copy: true,
            backend: Backend::AfXdp,
            dpdk_driver: DpdkDriver::AfPacket,
        }
    }

    fn validate(&self) -> Result<(), UserspaceError> {
        let bad = |m: String| Err(UserspaceError::Config(m));
        if !self.ring_size.is_power_of_two() || self.ring_size < 8 {
            return bad(format!(
                "ring_size {} must be a power of two ≥ 8",
                self.ring_size
            ));
        }
        if !self.frame_count.is_power_of_two() || self.frame_count < 2 * self.ring_size {
            return bad(format!(
                "frame_count {} must be a power of two ≥ 2 × ring_size",
                self.frame_count
            ));
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return bad(format!(
                "frame_size {} must be 2048 or 4096",
                self.frame_size
            ));
        }
        if self.batch == 0 || self.batch > self.ring_size {
            return bad(format!("batch {} must be in 1..=ring_size", self.batch));
        }
        if self.mtu < 68 {
            return bad(format!("mtu {} is below 68", self.mtu));
        }
        if self.ingress.is_empty() || self.egress.as_deref() == Some("") {
            return bad("empty interface name".into());
        }
        Ok(())
    }
}

/// How long a `wakeup` worker waits in `poll(2)` before it checks for a stop request.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the worker refreshes the kernel's socket statistics.
const HOUSEKEEPING: Duration = Duration::from_millis(100);

/// A running tier worker. Dropping it stops the worker and frees the socket.
pub struct UserTier {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    polling: Polling,
    zero_copy: bool,
    xsk_fd: Option<RawFd>,
    queue_id: u32,
    backend: Backend,
}

impl std::fmt::Debug for UserTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserTier")
            .field("backend", &self.backend)
            .field("polling", &self.polling)
            .field("zero_copy", &self.zero_copy)
            .field("queue_id", &self.queue_id)
            .finish()
    }
}

impl UserTier {
    /// Opens the sockets, hands the RX socket's fd for `queue_id` to `register` (which puts it
    /// into the XSKMAP that feeds the socket — the chain's map, or a test program's), and starts
    /// the worker. The worker thread inherits the caller's network namespace.
    ///
    /// `register` gets the queue and the socket as a [`BorrowedFd`] (so e.g.
    /// `|q, fd| engine.register_xsk(q, fd)` plugs in the chain's XSKMAP). The kernel removes the
    /// socket from every XSKMAP when the tier stops and the socket closes.
    ///
    /// With [`Backend::Dpdk`] there is no socket and `register` is not called: the tier's DPDK
    /// port takes frames from the ingress interface itself (see [`super::dpdk`]); without the
    /// cargo feature `dpdk` that back end is an error naming the feature.
    pub fn start<E: std::fmt::Display>(
        cfg: TierConfig,
        register: impl FnOnce(u32, BorrowedFd<'_>) -> Result<(), E>,
    ) -> Result<Self, UserspaceError> {
        cfg.validate()?;
        let mut functions = Vec::with_capacity(cfg.functions.len());
        for f in &cfg.functions {
            functions.push(CipherFn::new(
                Aead::new(f.algorithm, &f.key),
                f.direction,
                NonceSeq::random()?,
            ));
        }
        let shared = Arc::new(Shared::new());
        let stop = Arc::new(AtomicBool::new(false));
        if cfg.backend == Backend::Dpdk {
            return Self::start_dpdk(cfg, functions, shared, stop);
        }
        let (setup_tx, setup_rx) = mpsc::channel::<Result<(RawFd, bool), UserspaceError>>();
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let queue_id = cfg.queue_id;
        let polling = cfg.polling;
        let handle = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("xsk-{}-{}", cfg.ingress, cfg.queue_id))
                .spawn(move || worker(cfg, functions, shared, stop, setup_tx, go_rx))
                .map_err(UserspaceError::Thread)?
        };
        let setup = setup_rx.recv().unwrap_or_else(|_| {
            Err(UserspaceError::Thread(std::io::Error::other(
                "worker exited during setup",
            )))
        });
        let (xsk_fd, zero_copy) = match setup {
            Ok(v) => v,
            Err(e) => {
                let _ = handle.join();
                return Err(e);
            }
        };
        // SAFETY: the worker owns the socket and keeps it open at least until it receives the
        // go/abort message below, which is sent only after `register` returned.
        let borrowed = unsafe { BorrowedFd::borrow_raw(xsk_fd) };
        if let Err(e) = register(queue_id, borrowed) {
            let _ = go_tx.send(false);
            let _ = handle.join();
            return Err(UserspaceError::Register {
                queue: queue_id,
                msg: e.to_string(),
            });
        }
        let _ = go_tx.send(true);
        Ok(Self {
            stop,
            shared,
            handle: Some(handle),
            polling,
            zero_copy,
            xsk_fd: Some(xsk_fd),
            queue_id,
            backend: Backend::AfXdp,
        })
    }

    #[cfg(feature = "dpdk")]
    fn start_dpdk(
        cfg: TierConfig,
        functions: Vec<CipherFn>,
        shared: Arc<Shared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, UserspaceError> {
        let (polling, queue_id) = (cfg.polling, cfg.queue_id);
        let handle = super::dpdk::spawn(cfg, functions, shared.clone(), stop.clone())?;
        Ok(Self {
            stop,
            shared,
            handle: Some(handle),
            polling,
            zero_copy: false,
            xsk_fd: None,
            queue_id,
            backend: Backend::Dpdk,
        })
    }

    #[cfg(not(feature = "dpdk"))]
    fn start_dpdk(
        _cfg: TierConfig,
        _functions: Vec<CipherFn>,
        _shared: Arc<Shared>,
        _stop: Arc<AtomicBool>,
    ) -> Result<Self, UserspaceError> {
        Err(UserspaceError::Config(
            "backend dpdk: this cnf-dataplane was built without the cargo feature `dpdk` \
             (cargo build -p cnf-dataplane --features dpdk, with libdpdk-dev installed)"
                .into(),
        ))
    }

    /// The packet I/O back end.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the socket runs in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The RX socket's fd (valid while the tier runs); `None` for the DPDK back end.
    pub fn xsk_fd(&self) -> Option<RawFd> {
        self.xsk_fd
    }

    /// The queue the socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Whether the worker is still running (it stops on its own only after a fatal ring error).
    pub fn running(&self) -> bool {
        !self.shared.finished.load(Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let cpu = self
            .handle
            .as_ref()
            .filter(|_| !self.shared.finished.load(Relaxed))
            .and_then(thread_cpu_ns_of)
            .unwrap_or_else(|| self.shared.final_cpu_ns.load(Relaxed));
        self.shared.snapshot(self.polling, self.zero_copy, cpu)
    }

    /// Stops the worker and returns the final counters.
    pub fn stop(mut self) -> Stats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for UserTier {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// CPU time of a running thread, via its CPU-time clock.
fn thread_cpu_ns_of(h: &JoinHandle<()>) -> Option<u64> {
    use std::os::unix::thread::JoinHandleExt;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the pthread_t belongs to a thread that is not joined yet (the handle is alive), and
    // `clock` is a valid out pointer.
    let rc = unsafe { libc::pthread_getcpuclockid(h.as_pthread_t(), &mut clock) };
    if rc != 0 {
        return None;
    }
    clock_ns(clock)
}

pub(super) fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

fn if_info(name: &str, queue: u32) -> Result<IfInfo, UserspaceError> {
    let c = CString::new(name).map_err(|_| UserspaceError::Config(format!("bad name {name:?}")))?;
    let mut info = IfInfo::invalid();
    info.from_name(&c).map_err(|e| UserspaceError::Interface {
        iface: name.to_string(),
        source: errno(&e),
    })?;
    info.set_queue(queue);
    Ok(info)
}

fn errno(e: &xdpilone::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.get_raw().abs())
}

/// The sockets and rings of one worker. Field order is drop order: rings and sockets first, then
/// the UMEM registration, then the memory.
struct Io {
    rx: RingRx,
    tx: RingTx,
    /// Fill + completion rings of the ingress queue.
    in_dev: DeviceQueue,
    /// Completion ring of the egress queue (two-armed only).
    out_dev: Option<DeviceQueue>,
    _in_user: User,
    _out_user: Option<User>,
    umem: Umem,
    area: Area,
    zero_copy: bool,
    rx_fd: RawFd,
}

impl Io {
    fn open(cfg: &TierConfig) -> Result<Self, UserspaceError> {
        let xsk = |op: &'static str, iface: &str, queue: u32| {
            let iface = iface.to_string();
            move |e: xdpilone::Errno| UserspaceError::Xsk {
                op,
                iface,
                queue,
                source: errno(&e),
            }
        };
        let modes: &[u16] = if cfg.try_zero_copy {
            &[SocketConfig::XDP_BIND_ZEROCOPY, SocketConfig::XDP_BIND_COPY]
        } else {
            &[SocketConfig::XDP_BIND_COPY]
        };
        let mut last = None;
        for &mode in modes {
            match Self::open_mode(cfg, mode, &xsk) {
                Ok(io) => return Ok(io),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| UserspaceError::Config("no bind mode".into())))
    }

    fn open_mode<F, G>(cfg: &TierConfig, mode: u16, xsk: &F) -> Result<Self, UserspaceError>
    where
        F: Fn(&'static str, &str, u32) -> G,
        G: FnOnce(xdpilone::Errno) -> UserspaceError,
    {
        let (ing, q) = (cfg.ingress.as_str(), cfg.queue_id);
        let area = Area::new(cfg.frame_count as usize * cfg.frame_size as usize)
            .map_err(UserspaceError::Umem)?;
        let umem_cfg = UmemConfig {
            fill_size: cfg.ring_size,
            complete_size: cfg.ring_size,
            frame_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page aligned (mmap), `frame_count × frame_size` bytes long, and
        // outlives the UMEM (it is the last field of `Io`).
        let umem = unsafe { Umem::new(umem_cfg, area.slice()) }.map_err(xsk("UMEM_REG", ing, q))?;
        let in_info = if_info(ing, q)?;
        let in_sock = Socket::with_shared(&in_info, &umem).map_err(xsk("socket", ing, q))?;
        let in_dev = umem
            .fq_cq(&in_sock)
            .map_err(xsk("fill/completion rings", ing, q))?;
        let ring = NonZeroU32::new(cfg.ring_size);
        let one_armed = cfg.egress.is_none();
        let in_user = umem
            .rx_tx(
                &in_sock,
                &SocketConfig {
                    rx_size: ring,
                    tx_size: if one_armed { ring } else { None },
                    bind_flags: mode | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(xsk("rx/tx rings", ing, q))?;
        let rx = in_user.map_rx().map_err(xsk("mmap rx ring", ing, q))?;
        let in_tx = if one_armed {
            Some(in_user.map_tx().map_err(xsk("mmap tx ring", ing, q))?)
        } else {
            None
        };
        umem.bind(&in_user).map_err(xsk("bind", ing, q))?;

        let (tx, out_dev, out_user) = match (&cfg.egress, in_tx) {
            (None, Some(tx)) => (tx, None, None),
            (Some(eg), _) => {
                let eq = cfg.egress_queue_id;
                let out_info = if_info(eg, eq)?;
                let out_sock = Socket::new(&out_info).map_err(xsk("socket", eg, eq))?;
                let out_dev =
                    umem.fq_cq(&out_sock)
                        .map_err(xsk("fill/completion rings", eg, eq))?;
                let out_user = umem
                    .rx_tx(
                        &out_sock,
                        &SocketConfig {
                            rx_size: None,
                            tx_size: ring,
                            // a socket sharing the UMEM inherits copy/zero-copy and need-wakeup
                            bind_flags: 0,
                        },
                    )
                    .map_err(xsk("tx ring", eg, eq))?;
                let tx = out_user.map_tx().map_err(xsk("mmap tx ring", eg, eq))?;
                umem.bind(&out_user)
                    .map_err(xsk("bind (shared UMEM)", eg, eq))?;
                (tx, Some(out_dev), Some(out_user))
            }
            (None, None) => return Err(UserspaceError::Config("no TX ring".into())),
        };
        let rx_fd = rx.as_raw_fd();
        Ok(Self {
            rx,
            tx,
            in_dev,
            out_dev,
            _in_user: in_user,
            _out_user: out_user,
            umem,
            area,
            zero_copy: mode == SocketConfig::XDP_BIND_ZEROCOPY,
            rx_fd,
        })
    }
}

fn worker(
    cfg: TierConfig,
    mut functions: Vec<CipherFn>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    setup: mpsc::Sender<Result<(RawFd, bool), UserspaceError>>,
    go: mpsc::Receiver<bool>,
) {
    let io = match Io::open(&cfg) {
        Ok(io) => io,
        Err(e) => {
            shared.finished.store(true, Relaxed);
            let _ = setup.send(Err(e));
            return;
        }
    };
    let (rx_fd, zero_copy) = (io.rx_fd, io.zero_copy);
    let mut w = Worker::new(&cfg, io, &shared);
    // the fill ring is stocked before the socket is registered, so the first frames find room
    w.refill();
    if setup.send(Ok((rx_fd, zero_copy))).is_err() || go.recv() != Ok(true) {
        drop(w);
        shared.finished.store(true, Relaxed);
        return;
    }
    if cfg.polling == Polling::Adaptive {
        // finer sleeps: the default 50 µs timer slack would swamp the backoff steps
        // SAFETY: PR_SET_TIMERSLACK takes an integer argument and only affects this thread.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        }
    }
    w.run(&mut functions, &cfg, &stop);
    drop(w);
    let cpu = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0);
    shared.final_cpu_ns.store(cpu, Relaxed);
    shared.finished.store(true, Relaxed);
}

struct Worker<'a> {
    io: Io,
    shared: &'a Shared,
    free: Vec<u64>,
    frame_size: u64,
    area_len: u64,
    batch: u32,
    ring_size: u32,
    descs: Vec<XdpDesc>,
    out: Vec<XdpDesc>,
}

impl<'a> Worker<'a> {
    fn new(cfg: &TierConfig, io: Io, shared: &'a Shared) -> Self {
        let frame_size = u64::from(cfg.frame_size);
        let n = io.umem.len_frames();
        let area_len = io.area.len() as u64;
        Self {
            io,
            shared,
            free: (0..u64::from(n)).rev().map(|i| i * frame_size).collect(),
            frame_size,
            area_len,
            batch: cfg.batch,
            ring_size: cfg.ring_size,
            descs: Vec::with_capacity(cfg.batch as usize),
            out: Vec::with_capacity(cfg.batch as usize),
        }
    }

    fn run(&mut self, functions: &mut [CipherFn], cfg: &TierConfig, stop: &AtomicBool) {
        let mut backoff = Backoff::new(cfg.polling, cfg.adaptive, POLL_TIMEOUT);
        let mut last_house = Instant::now();
        let mac = cfg.mac_rewrite;
        loop {
            if stop.load(Relaxed) {
                break;
            }
            let mut work = self.reap() > 0;
            self.refill();
            work |= self.receive(functions, mac.as_ref(), cfg.mtu) > 0;
            // frames the kernel has not taken yet (copy mode sends a budget per kick); progress
            // counts as work, a stuck device does not keep the worker spinning
            let pending = self.io.tx.pending();
            if pending > 0 {
                work |= self.kick() < pending;
            }
            if work {
                backoff.work();
            } else {
                self.publish_depths();
                match backoff.idle(Instant::now()) {
                    Idle::Spin => std::hint::spin_loop(),
                    Idle::Yield => std::thread::yield_now(),
                    Idle::Sleep(d) => {
                        self.shared.sleeps.fetch_add(1, Relaxed);
                        std::thread::sleep(d);
                    }
                    Idle::Poll(t) => {
                        self.shared.polls.fetch_add(1, Relaxed);
                        self.wait_readable(t);
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

    fn publish_depths(&self) {
        self.shared
            .fill_depth
            .store(u64::from(self.io.in_dev.pending()), Relaxed);
        self.shared
            .rx_depth
            .store(u64::from(self.io.rx.available()), Relaxed);
    }

    fn housekeeping(&self) {
        if let Ok(s) = self.io.in_dev.statistics_v2() {
            self.shared.kernel_rx_dropped.store(s.rx_dropped, Relaxed);
            self.shared
                .kernel_rx_ring_full
                .store(s.rx_ring_full, Relaxed);
            self.shared
                .kernel_fill_empty
                .store(s.rx_fill_ring_empty_descs, Relaxed);
        }
        self.publish_depths();
    }

    fn wait_readable(&mut self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.io.rx_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call; the fd is owned by `io`.
        unsafe {
            libc::poll(
                &mut pfd,
                1,
                timeout.as_millis().min(i32::MAX as u128) as i32,
            );
        }
    }

    /// Returns transmitted frames to the free list.
    fn reap(&mut self) -> u32 {
        let fs = self.frame_size;
        let dev = match self.io.out_dev.as_mut() {
            Some(d) => d,
            None => &mut self.io.in_dev,
        };
        let mut n = 0;
        let mut reader = dev.complete(self.batch * 2);
        while let Some(addr) = reader.read() {
            self.free.push(addr - addr % fs);
            n += 1;
        }
        reader.release();
        n
    }

    /// Moves free frames into the fill ring.
    fn refill(&mut self) {
        if self.free.is_empty() {
            return;
        }
        let want = (self.free.len() as u32).min(self.ring_size);
        let inserted = {
            let mut w = self.io.in_dev.fill(want);
            let cap = w.capacity() as usize;
            let start = self.free.len() - cap.min(self.free.len());
            let k = w.insert(self.free[start..].iter().copied()) as usize;
            w.commit();
            k
        };
        self.free.truncate(self.free.len() - inserted);
        if self.io.in_dev.needs_wakeup() {
            self.io.in_dev.wake();
        }
    }

    fn receive(&mut self, functions: &mut [CipherFn], mac: Option<&MacRewrite>, mtu: usize) -> u32 {
        self.descs.clear();
        {
            let mut reader = self.io.rx.receive(self.batch);
            while let Some(d) = reader.read() {
                self.descs.push(d);
            }
            reader.release();
        }
        if self.descs.is_empty() {
            return 0;
        }
        let t_rx = Instant::now();
        let fs = self.frame_size;
        let n = self.descs.len() as u32;
        let mut rx_bytes = 0u64;
        self.out.clear();
        for i in 0..self.descs.len() {
            let d = self.descs[i];
            rx_bytes += u64::from(d.len);
            let off = d.addr % fs;
            let base = d.addr - off;
            if base + fs > self.area_len || u64::from(d.len) > fs - off {
                self.shared.drop(DropReason::Malformed, 1);
                if base + fs <= self.area_len {
                    self.free.push(base);
                }
                continue;
            }
            // `d.addr` is a descriptor the kernel handed back on the RX ring, inside the UMEM area
            // (checked above: `base + frame_size <= area_len`); until the frame goes to the TX or
            // fill ring, user space owns it exclusively, and the slice ends at the end of that frame.
            let buf = self.io.area.bytes_mut(d.addr as usize, (fs - off) as usize);
            match process(functions, mac, buf, d.len as usize, mtu) {
                Ok(len) => self.out.push(XdpDesc {
                    addr: d.addr,
                    len: len as u32,
                    options: 0,
                }),
                Err(r) => {
                    self.shared.drop(r, 1);
                    self.free.push(base);
                }
            }
        }
        self.shared.rx_packets.fetch_add(u64::from(n), Relaxed);
        self.shared.rx_bytes.fetch_add(rx_bytes, Relaxed);
        self.transmit();
        let ns = t_rx.elapsed().as_nanos() as u64;
        let sent = self.out.len() as u64;
        if sent > 0 {
            self.shared.latency(ns, sent);
        }
        n
    }

    fn transmit(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let inserted = {
            let mut w = self.io.tx.transmit(self.out.len() as u32);
            let k = w.insert(self.out.iter().copied()) as usize;
            w.commit();
            k
        };
        let fs = self.frame_size;
        for d in self.out.drain(inserted..) {
            self.shared.drop(DropReason::TxRingFull, 1);
            self.free.push(d.addr - d.addr % fs);
        }
        let bytes: u64 = self.out.iter().map(|d| u64::from(d.len)).sum();
        self.shared.tx_packets.fetch_add(inserted as u64, Relaxed);
        self.shared.tx_bytes.fetch_add(bytes, Relaxed);
        self.kick();
    }

    /// Kicks the TX ring while the kernel has not consumed it (copy mode sends a small budget
    /// of frames per `sendto`); bounded, so a stuck device cannot hang the worker. Returns the
    /// frames still pending.
    fn kick(&mut self) -> u32 {
        for _ in 0..8 {
            if self.io.tx.pending() == 0 || !self.io.tx.needs_wakeup() {
                break;
            }
            self.io.tx.wake();
            self.shared.tx_kicks.fetch_add(1, Relaxed);
        }
        self.io.tx.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the feature the DPDK back end is an error naming the feature, before anything opens.
    #[cfg(not(feature = "dpdk"))]
    #[test]
    fn dpdk_backend_without_the_feature_names_it() {
        let mut cfg = TierConfig::new("lo", 0);
        cfg.backend = Backend::Dpdk;
        let e = UserTier::start(cfg, |_, _| -> Result<(), String> {
            panic!("nothing to register")
        })
        .expect_err("no dpdk feature");
        assert!(e.to_string().contains("cargo feature `dpdk`"), "{e}");
    }

    #[test]
    fn backend_crd_mapping() {
        assert_eq!(
            Backend::from(crds::vnfchain::UserspaceBackend::Dpdk),
            Backend::Dpdk
        );
        assert_eq!(
            Backend::from(crds::vnfchain::UserspaceBackend::default()),
            Backend::default()
        );
        assert_eq!(Backend::Dpdk.as_str(), "dpdk");
    }
}
