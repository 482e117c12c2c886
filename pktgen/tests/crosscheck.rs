//! Cross-checks of pktgen against independent measurements on real packets between two
//! network namespaces: in loss-free runs every count pktgen reports (sent, received, the XDP
//! sink's per-CPU and per-stream counters) equals the kernel's own counters exactly (veth
//! packet counters from `ip -s -j link`, `Udp`/`Udp6` `InDatagrams` from `/proc/net/snmp*`),
//! for the socket, AF_XDP and live-frames generators; and pktgen's RTT agrees with `sockperf`
//! ping-pong and `ping` on the same path within a stated tolerance.
//! Needs root (skips with a printed reason otherwise; with `CI=true` a skip is a failure).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use pktgen::frame::{Endpoints, parse_mac};
use pktgen::netns::{MAC_A, MAC_B, NetnsPair, exec_in, run, spawn_in};
use pktgen::recv::{Receiver, RecvConfig, ReflectConfig, Reflector, StopWhen};
use pktgen::send::{SendConfig, run_sender};
use pktgen::sizes::SizeSpec;
use pktgen::stats::RxSummary;
use pktgen::xdp_live::{XdpLiveConfig, run_xdp_live};
use pktgen::xdp_sink::{SinkAction, SinkConfig, SinkCounters, XdpMode, XdpSink, run_sink};
use pktgen::xsk::{XskConfig, run_xsk_sender};

const PORT: u16 = 9000;

/// One test at a time: the machine's veth traffic shares per-CPU backlogs, and the latency
/// comparison must not share the CPUs with another test's burst.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Packet counters of `dev` in `ns`, from `ip -s -j link` (the kernel's `stats64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkCounters {
    rx: u64,
    tx: u64,
}

fn link_counters(ns: &str, dev: &str) -> LinkCounters {
    let out = run("ip", &["-n", ns, "-s", "-j", "link", "show", "dev", dev]).expect("ip -s link");
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    let s = &v[0]["stats64"];
    LinkCounters {
        rx: s["rx"]["packets"].as_u64().expect("rx packets"),
        tx: s["tx"]["packets"].as_u64().expect("tx packets"),
    }
}

/// `/proc/net/snmp` (as `UdpInDatagrams`, ...) and `/proc/net/snmp6` counters of `ns`.
fn snmp(ns: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    let v4 = exec_in(ns, "cat", &["/proc/net/snmp"]).expect("snmp");
    let lines: Vec<&str> = v4.lines().collect();
    for pair in lines.chunks(2) {
        if let [head, vals] = pair {
            let (proto, names) = head.split_once(':').expect("snmp header");
            let (_, values) = vals.split_once(':').expect("snmp values");
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                if let Ok(v) = v.parse() {
                    m.insert(format!("{proto}{n}"), v);
                }
            }
        }
    }
    let v6 = exec_in(ns, "cat", &["/proc/net/snmp6"]).expect("snmp6");
    for l in v6.lines() {
        let mut it = l.split_whitespace();
        if let (Some(n), Some(Ok(v))) = (it.next(), it.next().map(str::parse)) {
            m.insert(n.to_string(), v);
        }
    }
    m
}

fn delta(after: &HashMap<String, u64>, before: &HashMap<String, u64>, key: &str) -> u64 {
    after.get(key).copied().expect(key) - before.get(key).copied().expect(key)
}

/// Turns IPv6 off in both namespaces, so nothing but the test traffic crosses the veth (no
/// MLD reports or router solicitations): the link counters then count test frames only.
fn quiet_ipv6(pair: &NetnsPair) {
    for ns in [&pair.a, &pair.b] {
        exec_in(
            ns,
            "sh",
            &["-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"],
        )
        .expect("disable IPv6");
    }
}

/// Attaches the sink to B's veth (from a thread inside B).
fn attach_sink(pair: &NetnsPair, action: SinkAction, mode: XdpMode) -> XdpSink {
    let dev = pair.veth_b.clone();
    spawn_in(&pair.b, move || XdpSink::attach(&dev, action, Some(mode)))
        .join()
        .expect("sink thread")
        .expect("namespace")
        .expect("attach the XDP sink")
}

/// A socket receiver in B that stops after `count` datagrams (or 1 s idle); returns once bound.
fn start_receiver(
    pair: &NetnsPair,
    bind: SocketAddr,
    count: u64,
) -> std::thread::JoinHandle<RxSummary> {
    let (tx, rx) = mpsc::channel();
    let ns = pair.b.clone();
    let h = std::thread::spawn(move || {
        pktgen::netns::enter(&ns).expect("enter B");
        let mut cfg = RecvConfig::new(bind);
        cfg.rcvbuf = 32 << 20;
        cfg.stop = StopWhen {
            count: Some(count),
            duration: Some(Duration::from_secs(30)),
            idle: Some(Duration::from_secs(1)),
        };
        let r = Receiver::bind(cfg).expect("bind receiver");
        let _ = tx.send(());
        r.run(&AtomicBool::new(false), |_| {}).expect("receiver")
    });
    let _ = rx.recv_timeout(Duration::from_secs(10));
    h
}

/// B's link counters and the sink's counters at one moment: retried until no frame reached
/// the sink while the link counters were read (the kernel's own IPv6 frames may arrive at any
/// time in the IPv6 test).
fn stable_snapshot(pair: &NetnsPair, sink: &XdpSink) -> (LinkCounters, SinkCounters) {
    for _ in 0..50 {
        let before = sink.counters().expect("sink counters");
        let link = link_counters(&pair.b, &pair.veth_b);
        let after = sink.counters().expect("sink counters");
        if before == after {
            return (link, after);
        }
    }
    panic!("frames kept arriving at B for 50 attempts: no quiet moment to snapshot");
}

fn endpoints(pair: &NetnsPair, ipv6: bool) -> Endpoints {
    let (src, dst): (IpAddr, IpAddr) = if ipv6 {
        (NetnsPair::ADDR6_A.into(), NetnsPair::ADDR6_B.into())
    } else {
        (NetnsPair::ADDR4_A.into(), NetnsPair::ADDR4_B.into())
    };
    let _ = pair;
    Endpoints {
        src_mac: parse_mac(MAC_A).expect("mac"),
        dst_mac: parse_mac(MAC_B).expect("mac"),
        src: SocketAddr::new(src, 40_000),
        dst: SocketAddr::new(dst, PORT),
    }
}

#[test]
fn socket_generator_counts_equal_the_kernel_counters() {
    if !testkit::can_run_netns_tests("socket_generator_counts_equal_the_kernel_counters") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    quiet_ipv6(&pair);
    // Generic (skb) XDP here; the other tests use native XDP.
    let sink = attach_sink(&pair, SinkAction::Pass, XdpMode::Generic);
    assert_eq!(sink.mode(), XdpMode::Generic);
    let count = 3_000;
    let receiver = start_receiver(
        &pair,
        format!("0.0.0.0:{PORT}").parse().expect("addr"),
        count,
    );
    let (a0, b0, snmp0) = (
        link_counters(&pair.a, &pair.veth_a),
        link_counters(&pair.b, &pair.veth_b),
        snmp(&pair.b),
    );
    let mut cfg = SendConfig::new(SocketAddr::new(pair.addr_b(false), PORT));
    cfg.rate_pps = 10_000.0;
    cfg.count = Some(count);
    cfg.flows = 2;
    cfg.stream_base = 5;
    let s = spawn_in(&pair.a, move || {
        run_sender(&cfg, &AtomicBool::new(false), |_| {})
    })
    .join()
    .expect("sender thread")
    .expect("namespace")
    .expect("sender");
    let r = receiver.join().expect("receiver thread");
    let (a1, b1, snmp1) = (
        link_counters(&pair.a, &pair.veth_a),
        link_counters(&pair.b, &pair.veth_b),
        snmp(&pair.b),
    );
    let c = sink.counters().expect("sink counters");
    let streams = sink.streams().expect("sink streams");
    assert_eq!((s.sent, s.dropped), (count, 0));
    assert_eq!(a1.tx - a0.tx, s.sent, "veth A tx_packets");
    assert_eq!(b1.rx - b0.rx, s.sent, "veth B rx_packets");
    assert_eq!(c.pktgen.packets, s.sent, "XDP sink: {c:?}");
    assert_eq!(c.per_cpu.iter().map(|x| x.packets).sum::<u64>(), s.sent);
    assert_eq!(c.other.packets, 0, "no other frames on the quiet link");
    assert_eq!(c.pktgen.bytes, count * (14 + 64), "whole 64-byte-IP frames");
    let per_stream: Vec<(u32, u64)> = streams
        .iter()
        .map(|x| (x.stream_id, x.count.packets))
        .collect();
    assert_eq!(per_stream, vec![(5, count / 2), (6, count / 2)]);
    assert_eq!(delta(&snmp1, &snmp0, "UdpInDatagrams"), s.sent);
    assert_eq!(delta(&snmp1, &snmp0, "UdpInCsumErrors"), 0);
    assert_eq!((r.packets, r.unique, r.lost), (s.sent, s.sent, 0));
}

#[test]
fn af_xdp_generator_counts_equal_the_kernel_counters_ipv4() {
    if !testkit::can_run_netns_tests("af_xdp_generator_counts_equal_the_kernel_counters_ipv4") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    quiet_ipv6(&pair);
    let count = 4_000u64;
    // The sink runs as the `recv-xdp` command does (run_sink), stopping at `count` frames.
    let sink_cfg = SinkConfig {
        ifname: pair.veth_b.clone(),
        action: SinkAction::Pass,
        mode: None,
        stop: StopWhen {
            count: Some(count),
            duration: Some(Duration::from_secs(30)),
            idle: None,
        },
    };
    let sink = spawn_in(&pair.b, move || {
        run_sink(&sink_cfg, &AtomicBool::new(false), |_| {})
    });
    // wait until the program is attached
    let dev = pair.veth_b.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !run("ip", &["-n", &pair.b, "link", "show", "dev", &dev])
        .expect("ip link")
        .contains("xdp")
    {
        assert!(std::time::Instant::now() < deadline, "sink never attached");
        std::thread::sleep(Duration::from_millis(10));
    }
    let receiver = start_receiver(
        &pair,
        format!("0.0.0.0:{PORT}").parse().expect("addr"),
        count,
    );
    let (a0, b0, snmp0) = (
        link_counters(&pair.a, &pair.veth_a),
        link_counters(&pair.b, &pair.veth_b),
        snmp(&pair.b),
    );
    let mut cfg = XskConfig::new(&pair.veth_a, endpoints(&pair, false));
    cfg.rate_pps = 10_000.0;
    cfg.count = Some(count);
    cfg.flows = 4;
    cfg.sizes = SizeSpec::Imix;
    let (s, xs) = spawn_in(&pair.a, move || {
        run_xsk_sender(&cfg, &AtomicBool::new(false), |_| {})
    })
    .join()
    .expect("sender thread")
    .expect("namespace")
    .expect("AF_XDP sender");
    let r = receiver.join().expect("receiver thread");
    let k = sink
        .join()
        .expect("sink thread")
        .expect("namespace")
        .expect("sink");
    let (a1, b1, snmp1) = (
        link_counters(&pair.a, &pair.veth_a),
        link_counters(&pair.b, &pair.veth_b),
        snmp(&pair.b),
    );
    assert_eq!(
        (s.sent, s.dropped, xs.tx_invalid_descs),
        (count, 0, 0),
        "{s:?} {xs:?}"
    );
    assert_eq!(s.per_flow, vec![count / 4; 4]);
    assert_eq!(a1.tx - a0.tx, s.sent, "veth A tx_packets");
    assert_eq!(b1.rx - b0.rx, s.sent, "veth B rx_packets");
    assert_eq!(k.packets, s.sent, "XDP sink: {k:?}");
    assert_eq!(k.per_cpu.iter().map(|x| x.packets).sum::<u64>(), s.sent);
    assert_eq!(k.other_packets, 0);
    // IMIX frames: 7 x 64 + 4 x 576 + 1500 IP bytes per 12, plus 14 bytes of Ethernet each.
    let frames_bytes: u64 = (0..count)
        .map(|n| 14 + SizeSpec::Imix.ip_size(n) as u64)
        .sum();
    assert_eq!(k.bytes, frames_bytes);
    assert_eq!(k.streams.len(), 4);
    assert!(
        k.streams.iter().all(|x| x.count.packets == count / 4),
        "{k:?}"
    );
    assert_eq!(delta(&snmp1, &snmp0, "UdpInDatagrams"), s.sent);
    assert_eq!(delta(&snmp1, &snmp0, "UdpInCsumErrors"), 0, "checksums");
    assert_eq!(
        (r.packets, r.unique, r.lost, r.duplicates),
        (s.sent, s.sent, 0, 0)
    );
    assert_eq!(r.bytes, s.bytes, "UDP payload bytes");
    assert_eq!(r.streams.len(), 4);
    assert_eq!(
        r.clock_anomalies, 0,
        "tx timestamps on the receiver's clock"
    );
    // One-way latency from the frames' tx timestamps: every frame measured, same-host scale.
    let l = &r.latency;
    assert_eq!(l.count, count);
    assert!(l.min_ns > 0 && l.p50_ns < 1_000_000_000, "{l:?}");
    // Pacing never sends ahead of the schedule: the last packet is due at (count-1)/rate.
    let last_due = (count - 1) as f64 / 10_000.0;
    assert!(s.elapsed_secs >= last_due, "sent too fast: {s:?}");
    // The sink's rate (packets over its active time, 10 ms samples) matches the offered rate.
    assert!(
        (0.7..1.3).contains(&(k.pps / 10_000.0)),
        "sink rate {} pps for 10 kpps: {k:?}",
        k.pps
    );
}

#[test]
fn af_xdp_generator_counts_equal_the_kernel_counters_ipv6() {
    if !testkit::can_run_netns_tests("af_xdp_generator_counts_equal_the_kernel_counters_ipv6") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    // IPv6 stays on here, so the link also carries the kernel's own MLD/ND frames: the sink
    // counts those separately ("other"), and the link counters must equal pktgen + other.
    let sink = attach_sink(&pair, SinkAction::Pass, XdpMode::Native);
    let count = 3_000u64;
    let receiver = start_receiver(&pair, format!("[::]:{PORT}").parse().expect("addr"), count);
    let snmp0 = snmp(&pair.b);
    let (b0, c0) = stable_snapshot(&pair, &sink);
    let mut cfg = XskConfig::new(&pair.veth_a, endpoints(&pair, true));
    cfg.rate_pps = 10_000.0;
    cfg.count = Some(count);
    cfg.flows = 3;
    cfg.stream_base = 20;
    cfg.sizes = SizeSpec::Sweep {
        sizes: vec![64, 1280, 1500],
        per_size: 100,
    };
    let (s, _) = spawn_in(&pair.a, move || {
        run_xsk_sender(&cfg, &AtomicBool::new(false), |_| {})
    })
    .join()
    .expect("sender thread")
    .expect("namespace")
    .expect("AF_XDP sender");
    let r = receiver.join().expect("receiver thread");
    let snmp1 = snmp(&pair.b);
    let (b1, c1) = stable_snapshot(&pair, &sink);
    let pktgen = c1.pktgen.packets - c0.pktgen.packets;
    let other = c1.other.packets - c0.other.packets;
    assert_eq!((s.sent, s.dropped), (count, 0));
    assert_eq!(pktgen, s.sent, "XDP sink");
    assert_eq!(
        b1.rx - b0.rx,
        pktgen + other,
        "veth B rx = sink pktgen + other"
    );
    // 64-byte IPv6 packets are raised to 72 bytes to carry the header.
    let sizes = [72u64, 1280, 1500];
    let frames_bytes: u64 = (0..count).map(|n| 14 + sizes[(n / 100 % 3) as usize]).sum();
    assert_eq!(c1.pktgen.bytes - c0.pktgen.bytes, frames_bytes);
    assert_eq!(delta(&snmp1, &snmp0, "Udp6InDatagrams"), s.sent);
    assert_eq!(delta(&snmp1, &snmp0, "Udp6InCsumErrors"), 0, "checksums");
    assert_eq!(
        (r.packets, r.unique, r.lost, r.duplicates),
        (s.sent, s.sent, 0, 0)
    );
    let ids: Vec<u32> = r.streams.iter().map(|x| x.stream_id).collect();
    assert_eq!(ids, vec![20, 21, 22]);
}

#[test]
fn live_frames_generator_counts_equal_the_kernel_counters() {
    if !testkit::can_run_netns_tests("live_frames_generator_counts_equal_the_kernel_counters") {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    quiet_ipv6(&pair);
    // The sink is also what lets XDP_TX frames into B's veth (its peer needs an XDP program).
    let sink = attach_sink(&pair, SinkAction::Drop, XdpMode::Native);
    let count = 20_000;
    let (a0, b0, snmp0) = (
        link_counters(&pair.a, &pair.veth_a),
        link_counters(&pair.b, &pair.veth_b),
        snmp(&pair.b),
    );
    let cfg = XdpLiveConfig {
        ifname: pair.veth_a.clone(),
        src_mac: parse_mac(MAC_A).expect("mac"),
        dst_mac: parse_mac(MAC_B).expect("mac"),
        src: SocketAddrV4::new(NetnsPair::ADDR4_A, 4000),
        dst: SocketAddrV4::new(NetnsPair::ADDR4_B, PORT),
        stream_id: 9,
        ip_size: 128,
        count,
        batch: 32,
    };
    let s = spawn_in(&pair.a, move || run_xdp_live(&cfg))
        .join()
        .expect("sender thread")
        .expect("namespace")
        .expect("live frames");
    // XDP_TX into a veth is delivered by the peer's NAPI poll: wait until it went quiet.
    let mut last = None;
    for _ in 0..100 {
        let c = sink.counters().expect("counters").pktgen.packets;
        if last == Some(c) && c >= s.sent {
            break;
        }
        last = Some(c);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (a1, b1, snmp1) = (
        link_counters(&pair.a, &pair.veth_a),
        link_counters(&pair.b, &pair.veth_b),
        snmp(&pair.b),
    );
    let c = sink.counters().expect("counters");
    assert_eq!(s.sent, count, "program's sequence counter");
    assert_eq!(a1.tx - a0.tx, s.sent, "veth A tx_packets");
    assert_eq!(b1.rx - b0.rx, s.sent, "veth B rx_packets");
    assert_eq!(c.pktgen.packets, s.sent, "XDP sink {c:?}");
    assert_eq!(c.per_cpu.iter().map(|x| x.packets).sum::<u64>(), s.sent);
    assert_eq!(c.pktgen.bytes, count * (14 + 128));
    assert_eq!(c.other.packets, 0);
    let streams = sink.streams().expect("streams");
    assert_eq!(streams.len(), 1);
    assert_eq!((streams[0].stream_id, streams[0].count.packets), (9, count));
    // Drop mode: nothing reached the UDP stack.
    assert_eq!(delta(&snmp1, &snmp0, "UdpInDatagrams"), 0);
    assert_eq!(delta(&snmp1, &snmp0, "UdpNoPorts"), 0);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `sockperf ping-pong` median (p50) round trip in µs, full RTT (not its default RTT/2).
fn sockperf_p50_us(ns: &str, dst: &str, port: u16) -> f64 {
    let out = exec_in(
        ns,
        "sockperf",
        &[
            "ping-pong",
            "-i",
            dst,
            "-p",
            &port.to_string(),
            "-t",
            "1",
            "--mps",
            "1000",
            "-m",
            "64",
            "--full-rtt",
        ],
    )
    .expect("sockperf ping-pong");
    out.lines()
        .find(|l| l.contains("percentile 50.000"))
        .and_then(|l| l.rsplit('=').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no p50 in sockperf output:\n{out}"))
}

/// `ping` round trips in µs (min, avg) from its summary line.
fn ping_us(ns: &str, dst: &str) -> (f64, f64) {
    let out = exec_in(ns, "ping", &["-q", "-c", "250", "-i", "0.002", dst]).expect("ping");
    let line = out
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .unwrap_or_else(|| panic!("no summary in ping output:\n{out}"));
    let nums: Vec<f64> = line
        .split('=')
        .nth(1)
        .map(|t| {
            t.trim()
                .trim_end_matches(" ms")
                .split('/')
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(nums.len() >= 2, "{line}");
    (nums[0] * 1000.0, nums[1] * 1000.0)
}

/// Tolerance of the pktgen/sockperf comparison of median RTTs: max(100 µs, 200 % of
/// sockperf's). Measured on this 2-core machine with a load average of about 11 (other builds
/// running): sockperf p50 17–47 µs; the test's debug-build pktgen p50 39–133 µs per round, its
/// median of 3 rounds 27–68 µs above sockperf's; a release pktgen 4–19 µs above. pktgen is open
/// loop with a separate echo-collector thread (one more thread wake-up per echo than sockperf's
/// closed loop), which is what a loaded machine and a debug build stretch. The check catches
/// gross errors (wrong clock, missing echoes, ms-scale delays), not a few tens of µs.
const RTT_TOL_US: f64 = 100.0;
const RTT_TOL_REL: f64 = 2.0;

#[test]
fn rtt_agrees_with_sockperf_and_ping() {
    if !testkit::root_and_tools(
        "rtt_agrees_with_sockperf_and_ping",
        &["ip", "tc", "sockperf"],
    ) {
        return;
    }
    let _turn = serial();
    let pair = NetnsPair::create().expect("namespaces");
    let dst = NetnsPair::ADDR4_B.to_string();
    let _server = testkit::KillOnDrop(
        Command::new("ip")
            .args([
                "netns", "exec", &pair.b, "sockperf", "server", "-i", &dst, "-p", "9001",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sockperf server"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let rstop = stop.clone();
    let (tx, rx) = mpsc::channel();
    let reflector = spawn_in(&pair.b, move || {
        let mut cfg = ReflectConfig::new(format!("0.0.0.0:{PORT}").parse().expect("addr"));
        cfg.stop.duration = Some(Duration::from_secs(60));
        let r = Reflector::bind(cfg).expect("bind reflector");
        let _ = tx.send(());
        r.run(&rstop, |_| {}).expect("reflector")
    });
    let _ = rx.recv_timeout(Duration::from_secs(10));
    // let the sockperf server come up
    std::thread::sleep(Duration::from_millis(300));
    let (mut pk, mut sp, mut pmin, mut pgmin) = (vec![], vec![], vec![], vec![]);
    // Interleaved rounds, so both tools see the same machine load.
    for _ in 0..3 {
        let mut cfg = SendConfig::new(SocketAddr::new(pair.addr_b(false), PORT));
        cfg.rate_pps = 1000.0;
        cfg.count = Some(500);
        cfg.rtt = true;
        cfg.rtt_grace = Duration::from_millis(200);
        // 92-byte IP packets carry 64-byte UDP payloads, like `sockperf -m 64`.
        cfg.sizes = SizeSpec::Fixed(92);
        let s = spawn_in(&pair.a, move || {
            run_sender(&cfg, &AtomicBool::new(false), |_| {})
        })
        .join()
        .expect("sender thread")
        .expect("namespace")
        .expect("sender");
        let rtt = s.rtt.expect("rtt summary");
        assert_eq!((rtt.unique, rtt.lost), (500, 0), "{rtt:?}");
        pk.push(rtt.latency.p50_ns as f64 / 1000.0);
        pgmin.push(rtt.latency.min_ns as f64 / 1000.0);
        sp.push(sockperf_p50_us(&pair.a, &dst, 9001));
        pmin.push(ping_us(&pair.a, &dst).0);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reflector.join();
    let (pk_all, sp_all) = (pk.clone(), sp.clone());
    let (p, q) = (median(&mut pk), median(&mut sp));
    let tol = RTT_TOL_US.max(RTT_TOL_REL * q);
    eprintln!(
        "RTT p50 (us): pktgen {pk_all:?} -> {p:.1}; sockperf {sp_all:?} -> {q:.1}; tolerance {tol:.1}; ping min {pmin:?}; pktgen min {pgmin:?}"
    );
    assert!(
        (p - q).abs() <= tol,
        "pktgen RTT p50 {p:.1} us vs sockperf {q:.1} us: differ by more than {tol:.1} us"
    );
    // ping is answered inside the kernel (no user-space reflector): a lower bound.
    let (pm, gm) = (median(&mut pmin), median(&mut pgmin));
    assert!(pm <= gm, "ping min {pm:.1} us above pktgen min {gm:.1} us");
}
