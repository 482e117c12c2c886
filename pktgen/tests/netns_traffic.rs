//! Real packets between two network namespaces joined by a veth pair: the receiver or
//! reflector runs on a thread inside namespace B, the sender on a thread inside namespace A.
//! Needs root (skips with a printed reason otherwise; with `CI=true` a skip is a failure).

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use pktgen::netns::{Impairment, MAC_A, MAC_B, NetnsError, NetnsPair, spawn_in};
use pktgen::pacing::Pattern;
use pktgen::recv::{Receiver, RecvConfig, ReflectConfig, ReflectSummary, Reflector, StopWhen};
use pktgen::send::{Proto, SendConfig, SendSummary, run_sender};
use pktgen::sizes::SizeSpec;
use pktgen::stats::{LatencySummary, RxSummary};
use pktgen::tcp::TcpReceiver;
use pktgen::xdp_live::{XdpLiveConfig, parse_mac, run_xdp_live};

const PORT: u16 = 9000;

/// The tests in this file take turns. All veth traffic of a CPU shares one kernel backlog
/// (`netdev_max_backlog`, 1000 packets by default); several runs bursting into it at once on a
/// starved two-core machine can overflow it, which shows up as veth TX drops that have nothing
/// to do with what a test measures.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Joined<T> = JoinHandle<Result<Result<T, pktgen::error::Error>, NetnsError>>;

fn join<T>(h: Joined<T>, what: &str) -> T {
    h.join()
        .unwrap_or_else(|_| panic!("{what} thread panicked"))
        .unwrap_or_else(|e| panic!("{what}: namespace: {e}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Starts a receiver in `ns` that stops by itself on `until`, and returns once it is bound.
fn start_receiver(ns: &str, ipv6: bool, until: StopWhen) -> Joined<RxSummary> {
    let bind = if ipv6 {
        format!("[::]:{PORT}")
    } else {
        format!("0.0.0.0:{PORT}")
    };
    start_receiver_on(ns, bind, None, until)
}

/// An IPv4 receiver with a `rcvbuf`-byte socket buffer.
fn start_receiver_with(ns: &str, rcvbuf: usize, until: StopWhen) -> Joined<RxSummary> {
    start_receiver_on(ns, format!("0.0.0.0:{PORT}"), Some(rcvbuf), until)
}

fn start_receiver_on(
    ns: &str,
    bind: String,
    rcvbuf: Option<usize>,
    until: StopWhen,
) -> Joined<RxSummary> {
    let (tx, rx) = mpsc::channel();
    let bind: SocketAddr = bind.parse().expect("bind address");
    let h = spawn_in(ns, move || {
        let mut cfg = RecvConfig::new(bind);
        cfg.stop = until;
        if let Some(b) = rcvbuf {
            cfg.rcvbuf = b;
        }
        let r = Receiver::bind(cfg)?;
        let _ = tx.send(());
        r.run(&AtomicBool::new(false), |_| {})
    });
    // Either the receiver is bound, or the thread ended (the error surfaces on join).
    let _ = rx.recv_timeout(Duration::from_secs(10));
    h
}

fn start_sender(ns: &str, cfg: SendConfig) -> Joined<SendSummary> {
    let stop = AtomicBool::new(false);
    spawn_in(ns, move || run_sender(&cfg, &stop, |_| {}))
}

/// Runs a sender in A against a receiver in B and returns both summaries.
///
/// The receiver stops once `expect` packets arrived (when given), or after a second without
/// traffic. It is not stopped on a timer after the sender finishes: on a loaded machine the
/// kernel may deliver the tail of a run from ksoftirqd hundreds of milliseconds later.
fn send_and_receive(
    pair: &NetnsPair,
    cfg: SendConfig,
    expect: Option<u64>,
) -> (SendSummary, RxSummary) {
    let until = StopWhen {
        count: expect,
        duration: Some(Duration::from_secs(30)),
        idle: Some(Duration::from_secs(1)),
    };
    let receiver = start_receiver(&pair.b, cfg.dst.is_ipv6(), until);
    let sent = join(start_sender(&pair.a, cfg), "sender");
    let got = join(receiver, "receiver");
    (sent, got)
}

/// Kernel counters to explain an unexpected loss: non-zero drop/error counters of both
/// namespaces (`nstat`), both veths' statistics, and the per-CPU backlog drops.
fn drop_counters(pair: &NetnsPair) -> String {
    let mut out = String::new();
    for (ns, dev) in [(&pair.a, &pair.veth_a), (&pair.b, &pair.veth_b)] {
        let nstat = pktgen::netns::exec_in(ns, "nstat", &["-az"])
            .map(|t| {
                t.lines()
                    .filter(|l| {
                        let l = l.to_ascii_lowercase();
                        (l.contains("drop") || l.contains("err") || l.contains("discard"))
                            && l.split_whitespace().nth(1).is_some_and(|v| v != "0")
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_else(|e| e.to_string());
        let link = pktgen::netns::run("ip", &["-n", ns, "-s", "-s", "link", "show", dev])
            .unwrap_or_else(|e| e.to_string());
        out += &format!("{ns}: nstat non-zero drops/errors: [{nstat}]\n{link}");
    }
    let backlog = std::fs::read_to_string("/proc/net/softnet_stat")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|e| e.to_string());
    out + &format!("backlog drops per CPU (hex): {backlog}")
}

fn assert_latency_sane(l: &LatencySummary, samples: u64) {
    assert_eq!(l.count, samples);
    assert!(l.min_ns > 0 && l.p50_ns > 0, "{l:?}");
    assert!(l.min_ns <= l.p50_ns, "{l:?}");
    assert!(l.p50_ns <= l.p90_ns && l.p90_ns <= l.p99_ns, "{l:?}");
    assert!(l.p99_ns <= l.p999_ns && l.p999_ns <= l.max_ns, "{l:?}");
    // Same host, one veth hop: well under a second even on a loaded CI machine.
    assert!(l.p50_ns < 1_000_000_000, "{l:?}");
}

fn sender_config(pair: &NetnsPair, ipv6: bool, rate: f64, count: u64) -> SendConfig {
    let mut cfg = SendConfig::new(SocketAddr::new(pair.addr_b(ipv6), PORT));
    cfg.rate_pps = rate;
    cfg.count = Some(count);
    cfg
}

#[test]
fn loss_free_ipv4_run_receives_exactly_what_was_sent() {
    if !testkit::can_run_netns_tests("loss_free_ipv4_run_receives_exactly_what_was_sent") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    let (rate, count) = (5_000.0, 5_000);
    let (s, r) = send_and_receive(&pair, sender_config(&pair, false, rate, count), Some(count));
    assert_eq!((s.sent, s.dropped), (count, 0));
    assert_eq!(
        r.packets,
        s.sent,
        "{s:#?}\n{r:#?}\n{}",
        drop_counters(&pair)
    );
    assert_eq!(r.unique, s.sent);
    assert_eq!((r.expected, r.lost, r.loss_ratio), (count, 0, 0.0));
    assert_eq!((r.reordered, r.duplicates, r.out_of_window), (0, 0, 0));
    assert_eq!((r.foreign, r.clock_anomalies, r.socket_drops), (0, 0, 0));
    assert_eq!(r.bytes, s.bytes);
    assert_eq!(
        r.bytes,
        count * 36,
        "64-byte IPv4 packets carry 36-byte payloads"
    );
    assert_latency_sane(&r.latency, count);
    // Pacing never sends ahead of the schedule: the last packet is due at (count-1)/rate.
    let last_due = (count - 1) as f64 / rate;
    assert!(s.elapsed_secs >= last_due, "sent too fast: {s:?}");
    assert!(s.elapsed_secs < last_due + 5.0, "sender stalled: {s:?}");
}

#[test]
fn ipv6_poisson_imix_with_four_flows_keeps_per_flow_sequences() {
    if !testkit::can_run_netns_tests("ipv6_poisson_imix_with_four_flows_keeps_per_flow_sequences") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    let mut cfg = sender_config(&pair, true, 4_000.0, 2_400);
    cfg.flows = 4;
    cfg.src_port = 40_000;
    cfg.stream_base = 10;
    cfg.sizes = SizeSpec::Imix;
    // Poisson departures: bursty, yet still loss-free and in order at this rate.
    cfg.pattern = Pattern::Poisson;
    cfg.seed = 7;
    let (s, r) = send_and_receive(&pair, cfg, Some(2_400));
    assert_eq!(s.sent, 2_400);
    assert_eq!(s.per_flow, vec![600; 4]);
    assert_eq!(
        (r.unique, r.lost, r.reordered, r.duplicates),
        (2_400, 0, 0, 0)
    );
    let ids: Vec<u32> = r.streams.iter().map(|st| st.stream_id).collect();
    assert_eq!(ids, vec![10, 11, 12, 13]);
    assert!(
        r.streams
            .iter()
            .all(|st| st.unique == 600 && st.expected == 600)
    );
    // IMIX over IPv6: 7 x 24 (64 B raised to fit the header) + 4 x 528 + 1452 per 12 packets.
    assert_eq!(r.bytes, 200 * (7 * 24 + 4 * 528 + 1452));
    assert_eq!(r.bytes, s.bytes);
    assert_latency_sane(&r.latency, 2_400);
}

#[test]
fn injected_loss_is_measured_within_tolerance() {
    if !testkit::can_run_netns_tests("injected_loss_is_measured_within_tolerance") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    pair.impair_b_ingress(Impairment::Drop(0.10))
        .expect("loss filter");
    let count = 10_000;
    let (s, r) = send_and_receive(&pair, sender_config(&pair, false, 10_000.0, count), None);
    assert_eq!(s.sent, count);
    let true_loss = (s.sent - r.unique) as f64 / s.sent as f64;
    // Binomial std-dev at n=10000, p=0.1 is 0.3%; allow 2 percentage points.
    assert!((true_loss - 0.10).abs() < 0.02, "loss {true_loss}: {r:#?}");
    // The receiver alone sees all losses except any after the last packet that arrived.
    assert!(r.lost <= s.sent - r.unique);
    assert!(s.sent - r.unique - r.lost < 20, "tail losses: {r:#?}");
    assert!((r.loss_ratio - 0.10).abs() < 0.02);
    assert_eq!((r.reordered, r.duplicates), (0, 0));
    assert_latency_sane(&r.latency, r.unique);
}

#[test]
fn injected_duplicates_are_detected() {
    if !testkit::can_run_netns_tests("injected_duplicates_are_detected") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    pair.impair_b_ingress(Impairment::Duplicate(0.05))
        .expect("duplicate filter");
    let count = 5_000;
    let (s, r) = send_and_receive(&pair, sender_config(&pair, false, 5_000.0, count), None);
    assert_eq!(s.sent, count);
    assert_eq!(
        (r.unique, r.lost),
        (count, 0),
        "{r:#?}\n{}",
        drop_counters(&pair)
    );
    assert_eq!(r.packets, count + r.duplicates);
    // Expected p/(1-p) * n = 263, std-dev about 16.
    assert!(
        (160..=370).contains(&r.duplicates),
        "duplicates {}",
        r.duplicates
    );
    // A copy is re-injected right behind its original: duplicates are not reordering.
    assert_eq!(r.reordered, 0);
    assert_latency_sane(&r.latency, count);
}

#[test]
fn reflector_returns_every_packet_and_rtt_is_measured() {
    if !testkit::can_run_netns_tests("reflector_returns_every_packet_and_rtt_is_measured") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let rstop = stop.clone();
    let reflector: Joined<ReflectSummary> = spawn_in(&pair.b, move || {
        let mut cfg = ReflectConfig::new(format!("0.0.0.0:{PORT}").parse().expect("addr"));
        cfg.stop.duration = Some(Duration::from_secs(30));
        let r = Reflector::bind(cfg)?;
        let _ = tx.send(());
        r.run(&rstop, |_| {})
    });
    let _ = rx.recv_timeout(Duration::from_secs(10));
    let mut cfg = sender_config(&pair, false, 2_000.0, 2_000);
    cfg.rtt = true;
    cfg.rtt_grace = Duration::from_secs(5);
    cfg.flows = 2;
    let s = join(start_sender(&pair.a, cfg), "sender");
    stop.store(true, Ordering::Relaxed);
    let refl = join(reflector, "reflector");
    assert_eq!(s.sent, 2_000);
    assert_eq!(
        (
            refl.received,
            refl.reflected,
            refl.dropped,
            refl.socket_drops
        ),
        (2_000, 2_000, 0, 0)
    );
    let rtt = s.rtt.expect("RTT summary");
    assert_eq!(
        (rtt.unique, rtt.lost, rtt.duplicates),
        (2_000, 0, 0),
        "{rtt:#?}"
    );
    assert_eq!(rtt.streams.len(), 2);
    assert_latency_sane(&rtt.latency, 2_000);
}

#[test]
fn tcp_stream_mode_delivers_every_record_over_ipv6() {
    if !testkit::can_run_netns_tests("tcp_stream_mode_delivers_every_record_over_ipv6") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    let (tx, rx) = mpsc::channel();
    let receiver: Joined<RxSummary> = spawn_in(&pair.b, move || {
        let mut cfg = RecvConfig::new(format!("[::]:{PORT}").parse().expect("addr"));
        cfg.stop = StopWhen {
            count: Some(3_000),
            duration: Some(Duration::from_secs(30)),
            idle: Some(Duration::from_secs(2)),
        };
        let r = TcpReceiver::bind(cfg)?;
        let _ = tx.send(());
        r.run(&AtomicBool::new(false), |_| {})
    });
    let _ = rx.recv_timeout(Duration::from_secs(10));
    let mut cfg = sender_config(&pair, true, 3_000.0, 3_000);
    cfg.proto = Proto::Tcp;
    cfg.flows = 2;
    cfg.sizes = SizeSpec::Imix;
    let s = join(start_sender(&pair.a, cfg), "sender");
    let r = join(receiver, "receiver");
    assert_eq!(s.sent, 3_000);
    assert_eq!(
        (r.unique, r.lost, r.duplicates, r.reordered, r.foreign),
        (3_000, 0, 0, 0, 0),
        "{r:#?}"
    );
    assert_eq!(r.streams.len(), 2);
    assert_eq!(r.bytes, s.bytes);
    assert_latency_sane(&r.latency, 3_000);
}

#[test]
fn xdp_live_frames_fast_path_is_received_in_order_with_latency() {
    if !testkit::can_run_netns_tests("xdp_live_frames_fast_path_is_received_in_order_with_latency")
    {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    // The peer must accept XDP frames: GRO on a veth turns on its NAPI receive path.
    pktgen::netns::exec_in(&pair.b, "ethtool", &["-K", &pair.veth_b, "gro", "on"]).expect("gro on");
    let count = 2_000;
    // The burst leaves at millions of frames per second, and each frame arrives in a page-sized
    // buffer: give the socket room for all of them.
    let receiver = start_receiver_with(
        &pair.b,
        64 << 20,
        StopWhen {
            count: Some(count),
            duration: Some(Duration::from_secs(30)),
            idle: Some(Duration::from_secs(1)),
        },
    );
    let cfg = XdpLiveConfig {
        ifname: pair.veth_a.clone(),
        src_mac: parse_mac(MAC_A).expect("mac"),
        dst_mac: parse_mac(MAC_B).expect("mac"),
        src: SocketAddrV4::new(NetnsPair::ADDR4_A, 4000),
        dst: SocketAddrV4::new(NetnsPair::ADDR4_B, PORT),
        stream_id: 77,
        ip_size: 64,
        count,
        batch: 32,
    };
    let s = spawn_in(&pair.a, move || run_xdp_live(&cfg))
        .join()
        .expect("sender thread")
        .expect("namespace")
        .expect("live frames");
    let r = join(receiver, "receiver");
    assert_eq!(s.sent, count, "program's sequence counter");
    assert_eq!(
        (r.unique, r.lost, r.duplicates, r.reordered),
        (count, 0, 0, 0),
        "{r:#?}\n{}",
        drop_counters(&pair)
    );
    assert_eq!(r.socket_drops, 0);
    assert_eq!(r.streams.len(), 1);
    assert_eq!(r.streams[0].stream_id, 77);
    assert_eq!(r.bytes, count * 36);
    // Timestamps come from bpf_ktime_get_ns(): the same clock, so latency is sane.
    assert_latency_sane(&r.latency, count);
    assert_eq!(r.clock_anomalies, 0);
}
