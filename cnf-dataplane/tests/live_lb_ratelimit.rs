//! Live traffic through namespaces the test creates: the load balancer spreads real UDP flows over three
//! backend namespaces within ±10% of their weights and keeps each flow on its backend; the rate limiter
//! holds a UDP stream to the configured bit rate within ±10%.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cnf_dataplane::engine::{
    ChainConfig, ClassifierConfig, Engine, FunctionConfig, FunctionKind, Hook, LbBackendConfig,
    LbConfig, PortRange, RateLimitKey, RateLimiterConfig,
};
use common::*;

#[test]
fn load_balancer_spreads_real_flows_by_weight_and_keeps_affinity() {
    if !privileged() {
        return;
    }
    // client (0) -- router (1) -- backends (2, 3, 4)
    let ns = Namespaces::new(&["lbc", "lbr", "lb1", "lb2", "lb3"]);
    ns.link(0, "vc", "10.95.0.2/24", 1, "rc", "10.95.0.1/24");
    let backends = ["10.95.1.2", "10.95.2.2", "10.95.3.2"];
    let weights = [2u32, 1, 1];
    for (i, b) in backends.iter().enumerate() {
        let r_addr = format!("10.95.{}.1/24", i + 1);
        ns.link(
            1,
            &format!("rb{i}"),
            &r_addr,
            2 + i,
            "vb",
            &format!("{b}/24"),
        );
        let gw = format!("10.95.{}.1", i + 1);
        sh(
            Some(&ns.0[2 + i]),
            &["ip", "route", "add", "default", "via", &gw],
        );
    }
    sh(
        Some(&ns.0[0]),
        &["ip", "route", "add", "10.95.100.0/24", "via", "10.95.0.1"],
    );
    for key in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ] {
        sh(Some(&ns.0[1]), &["sysctl", "-q", "-w", key]);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // backends: answer every datagram with their index
        for (i, b) in backends.iter().enumerate() {
            let (name, stop) = (&ns.0[2 + i], &stop);
            scope.spawn(move || {
                enter(name);
                let sock = UdpSocket::bind(format!("{b}:8080")).expect("bind backend");
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        sock.send_to(&[i as u8], from).expect("reply");
                    }
                }
            });
        }
        // router: the engine on every interface, so replies are translated back
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let router = &ns.0[1];
        let r = scope.spawn(move || {
            enter(router);
            let mut e = Engine::load(Hook::Xdp).expect("load");
            for dev in ["rc", "rb0", "rb1", "rb2"] {
                e.attach(dev).expect("attach");
            }
            let lb = LbConfig {
                vip: ip("10.95.100.100"),
                port: Some(80),
                protocol: Some(UDP),
                backends: backends
                    .iter()
                    .zip(weights)
                    .map(|(b, weight)| LbBackendConfig {
                        addr: ip(b),
                        port: Some(8080),
                        weight,
                    })
                    .collect(),
                affinity_timeout: Duration::ZERO,
                table_size: 65_537,
            };
            let applied = e
                .apply(&ChainConfig {
                    functions: vec![FunctionConfig::new("lb", FunctionKind::LoadBalancer(lb))],
                    ..Default::default()
                })
                .expect("apply");
            ready_tx.send(()).expect("ready");
            let _ = done_rx.recv();
            let stats = e.function_stats(applied.instances[0]).expect("stats");
            e.detach().expect("detach");
            stats
        });
        ready_rx.recv().expect("router ready");

        // client: 3000 flows (source ports); every tenth asks again and must reach the same backend.  The
        // flow hash and the Maglev table are deterministic, so the shares are too.
        let client = &ns.0[0];
        let c = scope.spawn(move || {
            enter(client);
            let mut per_backend: BTreeMap<u8, u32> = BTreeMap::new();
            let mut first: HashMap<u16, u8> = HashMap::new();
            let flows = 3000u16;
            for round in 0..2 {
                for f in (0..flows).filter(|f| round == 0 || f % 10 == 0) {
                    let sock =
                        UdpSocket::bind(format!("10.95.0.2:{}", 20000 + f)).expect("bind client");
                    sock.set_read_timeout(Some(Duration::from_millis(500)))
                        .expect("timeout");
                    let mut buf = [0u8; 8];
                    let mut got = None;
                    for _ in 0..3 {
                        sock.send_to(b"who", "10.95.100.100:80").expect("send");
                        if let Ok((n, from)) = sock.recv_from(&mut buf) {
                            assert_eq!(
                                from.to_string(),
                                "10.95.100.100:80",
                                "reply not from the VIP"
                            );
                            assert_eq!(n, 1);
                            got = Some(buf[0]);
                            break;
                        }
                    }
                    let b = got.unwrap_or_else(|| panic!("flow {f} round {round}: no reply"));
                    if round == 0 {
                        first.insert(f, b);
                        *per_backend.entry(b).or_default() += 1;
                    } else {
                        assert_eq!(first.get(&f), Some(&b), "flow {f} changed backend");
                    }
                }
            }
            (per_backend, u32::from(flows))
        });
        let (per_backend, flows) = c.join().expect("client");
        stop.store(true, Ordering::Relaxed);
        done_tx.send(()).expect("done");
        let stats = r.join().expect("router");
        let total: u32 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let want = f64::from(*w) / f64::from(total);
            let got =
                f64::from(per_backend.get(&(i as u8)).copied().unwrap_or(0)) / f64::from(flows);
            assert!(
                (got - want).abs() <= 0.1 * want,
                "backend {i}: share {got:.3}, weight share {want:.3} ({per_backend:?})"
            );
        }
        assert!(stats.packets_in >= u64::from(flows) * 2, "{stats:?}");
        eprintln!("LB live: {flows} flows over 3 backends: {per_backend:?} (weights {weights:?})");
    });
}

#[test]
fn rate_limiter_holds_the_bit_rate_on_a_live_stream() {
    if !privileged() {
        return;
    }
    let ns = Namespaces::new(&["rls", "rlc"]);
    ns.link(0, "vs", "10.94.0.1/24", 1, "vc", "10.94.0.2/24");
    const LIMIT_BPS: u64 = 8_000_000; // 1 MB/s
    const PAYLOAD: usize = 1000;
    const FRAME: u64 = 14 + 20 + 8 + PAYLOAD as u64; // what the XDP hook counts
    const SEND_PPS: u64 = 3 * LIMIT_BPS / 8 / FRAME; // three times the limit
    let run_for = Duration::from_secs(2);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<(u64, Duration)>();
    std::thread::scope(|scope| {
        let server = &ns.0[0];
        let s = scope.spawn(move || {
            enter(server);
            let mut e = Engine::load_and_attach("vs").expect("attach").0;
            e.apply(&ChainConfig {
                classifier: ClassifierConfig {
                    protocol: Some(UDP),
                    dst_ports: vec![PortRange::single(9000)],
                    ..Default::default()
                },
                functions: vec![FunctionConfig::new(
                    "rl",
                    FunctionKind::RateLimiter(RateLimiterConfig {
                        key: RateLimitKey::Global,
                        bits_per_sec: Some(LIMIT_BPS),
                        // 40 ms at the rate: absorbs the sender's pacing slices, adds at most 2%
                        burst_bytes: 40_000,
                        ..Default::default()
                    }),
                )],
                ..Default::default()
            })
            .expect("apply");
            let sock = UdpSocket::bind("10.94.0.1:9000").expect("bind");
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            ready_tx.send(()).expect("ready");
            let mut buf = vec![0u8; 2048];
            let mut received = 0u64;
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        assert_eq!(n, PAYLOAD);
                        received += 1;
                    }
                    Err(_) => {
                        if let Ok(sent) = sent_rx.try_recv() {
                            e.detach().expect("detach");
                            return (received, sent);
                        }
                    }
                }
            }
        });
        ready_rx.recv().expect("server ready");
        let client = &ns.0[1];
        scope.spawn(move || {
            enter(client);
            let sock = UdpSocket::bind("10.94.0.2:0").expect("bind");
            sock.connect("10.94.0.1:9000").expect("connect");
            let payload = vec![0x5au8; PAYLOAD];
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < run_for {
                // pace in 1 ms slices: send what is due by now
                let due = SEND_PPS * start.elapsed().as_micros() as u64 / 1_000_000;
                while sent < due {
                    sock.send(&payload).expect("send");
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            sent_tx.send((sent, start.elapsed())).expect("report");
        });
        let (received, (sent, elapsed)) = s.join().expect("server");
        let secs = elapsed.as_secs_f64();
        let offered = (sent * FRAME * 8) as f64 / secs;
        let got = (received * FRAME * 8) as f64 / secs;
        eprintln!(
            "RATE live: offered {:.2} Mbit/s, passed {:.2} Mbit/s, limit {:.2} Mbit/s ({received}/{sent} datagrams)",
            offered / 1e6,
            got / 1e6,
            LIMIT_BPS as f64 / 1e6
        );
        assert!(
            offered >= 2.0 * LIMIT_BPS as f64,
            "the sender did not exceed the limit enough"
        );
        let limit = LIMIT_BPS as f64;
        assert!(
            (got - limit).abs() <= 0.1 * limit,
            "passed {got:.0} bit/s, limit {limit:.0} bit/s"
        );
    });
}
