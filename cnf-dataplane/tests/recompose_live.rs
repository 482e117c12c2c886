//! Re-composing a live chain loses nothing: a steady UDP stream crosses a router namespace whose XDP
//! chain is rebuilt (functions inserted, removed, reordered) dozens of times while it flows; every
//! packet the sender sent is either received or dropped on purpose by the firewall rule that every
//! generation carries, no packet ever meets a half-built chain, and the firewall's counters carry
//! over from generation to generation.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cnf_dataplane::engine::{
    Action, ChainConfig, ClassifierConfig, Engine, FirewallConfig, FirewallRule, ForwardMode,
    ForwarderConfig, FunctionConfig, FunctionKind, Hook, MonitorConfig, PortRange,
    RateLimiterConfig,
};
use common::*;

const KEPT: u16 = 9000;
const DENIED: u16 = 9001;

fn firewall() -> FunctionConfig {
    FunctionConfig::new(
        "fw",
        FunctionKind::Firewall(FirewallConfig {
            rules: vec![FirewallRule {
                priority: 0,
                action: Action::Deny,
                protocol: Some(UDP),
                src: None,
                dst: None,
                src_ports: None,
                dst_ports: Some(PortRange::single(DENIED)),
            }],
            default_action: Action::Allow,
            ..Default::default()
        }),
    )
}

fn monitor() -> FunctionConfig {
    FunctionConfig::new("mon", FunctionKind::Monitor(MonitorConfig::default()))
}

fn limiter() -> FunctionConfig {
    // far above the offered rate: it must never drop
    FunctionConfig::new(
        "rl",
        FunctionKind::RateLimiter(RateLimiterConfig {
            packets_per_sec: Some(10_000_000),
            burst_packets: 1_000_000,
            ..Default::default()
        }),
    )
}

fn pass() -> FunctionConfig {
    FunctionConfig::new(
        "out",
        FunctionKind::Forwarder(ForwarderConfig {
            mode: ForwardMode::Pass,
            ..Default::default()
        }),
    )
}

/// The compositions cycled through; each keeps the one deny rule.
fn compositions() -> Vec<Vec<FunctionConfig>> {
    vec![
        vec![firewall(), monitor()],
        vec![monitor(), firewall()],
        vec![firewall(), limiter(), monitor()],
        vec![firewall()],
        vec![limiter(), monitor(), firewall(), pass()],
        vec![monitor(), limiter(), firewall()],
    ]
}

#[test]
fn recomposition_under_steady_traffic_loses_no_packet() {
    if !privileged() {
        return;
    }
    let ns = Namespaces::new(&["rcc", "rcr", "rcs"]);
    let (c, r, s) = (ns.0[0].clone(), ns.0[1].clone(), ns.0[2].clone());
    ns.link(0, "vc", "10.93.1.2/24", 1, "rc", "10.93.1.1/24");
    ns.link(1, "rs", "10.93.2.1/24", 2, "vs", "10.93.2.2/24");
    sh(
        Some(&c),
        &["ip", "route", "add", "default", "via", "10.93.1.1"],
    );
    sh(
        Some(&s),
        &["ip", "route", "add", "default", "via", "10.93.2.1"],
    );
    sh(Some(&r), &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    // resolve neighbours before counting starts
    sh(Some(&c), &["ping", "-c", "1", "-W", "2", "10.93.2.2"]);

    let stop = AtomicBool::new(false);
    let (sent, received, denied_received, drops, seen, broken, generations) =
        std::thread::scope(|scope| {
            let receiver = scope.spawn(|| {
                enter(&s);
                let kept = UdpSocket::bind(("10.93.2.2", KEPT)).expect("bind");
                let denied = UdpSocket::bind(("10.93.2.2", DENIED)).expect("bind");
                for sock in [&kept, &denied] {
                    sock.set_read_timeout(Some(Duration::from_millis(20)))
                        .expect("timeout");
                    set_rcvbuf(sock, 8 << 20);
                }
                let (mut n_kept, mut n_denied) = (0u64, 0u64);
                let mut buf = [0u8; 2048];
                let mut quiet_since: Option<Instant> = None;
                loop {
                    let mut got = false;
                    while kept.recv(&mut buf).is_ok() {
                        n_kept += 1;
                        got = true;
                    }
                    if denied.recv(&mut buf).is_ok() {
                        n_denied += 1;
                        got = true;
                    }
                    if stop.load(Ordering::Acquire) {
                        // drain: stop after 300 ms without a packet
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if got {
                            quiet_since = Some(Instant::now());
                        } else if since.elapsed() > Duration::from_millis(300) {
                            break;
                        }
                    }
                }
                (n_kept, n_denied)
            });

            // the router's engine: attach, then keep re-composing while traffic flows
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let router = scope.spawn(move || {
                enter(&r);
                let mut e = Engine::load(Hook::Xdp).expect("load");
                e.attach("rc").expect("attach");
                let chain = |functions| ChainConfig {
                    classifier: ClassifierConfig {
                        family: Some(4),
                        protocol: Some(UDP),
                        ..Default::default()
                    },
                    functions,
                    ..Default::default()
                };
                let mut gens = 0u32;
                e.apply(&chain(compositions()[0].clone())).expect("apply");
                ready_tx.send(()).expect("ready");
                let mut i = 1;
                let mut fw = 0;
                while done_rx.try_recv().is_err() {
                    let functions = compositions()[i % compositions().len()].clone();
                    let fw_pos = functions
                        .iter()
                        .position(|f| f.name == "fw")
                        .expect("fw in every composition");
                    let applied = e.apply(&chain(functions)).expect("re-compose");
                    fw = applied.instances[fw_pos];
                    gens += 1;
                    i += 1;
                    std::thread::sleep(Duration::from_millis(60));
                }
                std::thread::sleep(Duration::from_millis(300));
                // "fw" keeps its name and kind in every generation, so its counters carry over:
                // the last instance has seen every packet since the first generation
                let stats = e.function_stats(fw).expect("stats");
                let fw_drops = stats.dropped_total();
                let fw_seen = stats.packets_in;
                let broken = (0..2)
                    .map(|g| e.chain_counters(g).expect("counters").broken)
                    .sum::<u64>();
                e.detach().expect("detach");
                (fw_drops, fw_seen, broken, gens)
            });
            ready_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("router ready");

            // sender: 20 kpps for 3 s, one in four packets to the denied port
            let sender = scope.spawn(|| {
                enter(&c);
                let sock = UdpSocket::bind("10.93.1.2:0").expect("bind");
                let (mut kept, mut denied) = (0u64, 0u64);
                let start = Instant::now();
                let mut seq = 0u64;
                while start.elapsed() < Duration::from_secs(3) {
                    for _ in 0..20 {
                        let port = if seq % 4 == 3 { DENIED } else { KEPT };
                        let payload = seq.to_be_bytes();
                        if sock.send_to(&payload, ("10.93.2.2", port)).is_ok() {
                            if port == KEPT {
                                kept += 1;
                            } else {
                                denied += 1;
                            }
                        }
                        seq += 1;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                (kept, denied)
            });
            let sent = sender.join().expect("sender");
            done_tx.send(()).expect("done");
            let (drops, seen, broken, gens) = router.join().expect("router");
            stop.store(true, Ordering::Release);
            let (received, denied_received) = receiver.join().expect("receiver");
            (sent, received, denied_received, drops, seen, broken, gens)
        });
    drop(ns);

    eprintln!(
        "sent {sent:?} (kept, denied), received {received} + {denied_received} denied, \
         firewall saw {seen} and dropped {drops}, broken tail calls {broken}, \
         {generations} re-compositions"
    );
    assert!(
        generations >= 20,
        "only {generations} re-compositions happened"
    );
    assert_eq!(broken, 0, "a packet met an incomplete chain");
    assert_eq!(denied_received, 0, "denied packets got through");
    assert_eq!(received, sent.0, "kept packets lost during re-composition");
    assert_eq!(drops, sent.1, "drops other than the intended ones");
    assert_eq!(sent.0 + sent.1, received + drops);
    assert_eq!(
        seen,
        sent.0 + sent.1,
        "firewall counters did not carry over"
    );
}

fn set_rcvbuf(sock: &UdpSocket, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt with a pointer to a live i32 and its size on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE");
}
