//! Keep and re-adopt: a daemon started with `--on-exit keep` is SIGKILLed and later SIGTERMed under steady
//! pktgen traffic and restarted each time; forwarding never stops (no gap in pktgen's sequence, every
//! denied packet still dropped), the re-adopted chain's counters continue from where they were, a changed
//! configuration moves the re-adopted chain to a new generation, and `--on-exit detach` leaves no pins
//! and no attachment behind.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Namespaces, enter, metric, scrape_metrics, sh, signal_and_wait, xdp_on};
use pktgen::recv::{Receiver, RecvConfig, StopWhen};
use pktgen::send::{SendConfig, run_sender};

const KEPT: u16 = 9000;
const DENIED: u16 = 9001;
const METRICS: &str = "127.0.0.1:9090";

const CHAIN: &str = "apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata: {name: ro, namespace: lab}
spec:
  classifier: {destinationCIDRs: [\"10.94.2.0/24\"]}
  functions:
    - name: fw
      type: firewall
      firewall:
        defaultAction: allow
        rules: [{action: deny, protocol: udp, destinationPorts: [{from: 9001}]}]
    - name: mon
      type: monitor
      monitor: {}
  interfaces: {ingress: rc}
";

/// The chain with one more function (far above the offered rate: it never drops).
fn changed_chain() -> String {
    CHAIN.replace(
        "  interfaces:",
        "    - name: rl\n      type: rateLimiter\n      rateLimiter: {packetsPerSecond: 10000000, burstPackets: 100000}\n  interfaces:",
    )
}

const FW_IN: &str = "buildvnf_function_packets_total{namespace=\"lab\",chain=\"ro\",function=\"fw\",type=\"firewall\"}";
const FW_DROPS: &str = "buildvnf_function_drops_total{namespace=\"lab\",chain=\"ro\",function=\"fw\",type=\"firewall\",reason=\"firewall_rule\"}";
const MON_IN: &str = "buildvnf_function_packets_total{namespace=\"lab\",chain=\"ro\",function=\"mon\",type=\"monitor\"}";
const GENERATION: &str = "buildvnf_applied_generation{namespace=\"lab\",chain=\"ro\"}";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cnf-dataplane")
}

/// A bpffs mounted on a temporary directory of the host's mount namespace: it outlives every daemon
/// (each `ip netns exec` has a mount namespace of its own, that bpffs is shared with it).
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vnf-readopt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bpffs dir");
        sh(
            None,
            &["mount", "-t", "bpf", "bpf", dir.to_str().expect("path")],
        );
        Self(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A daemon process (killed if the test fails first) and its log file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(ns: &str, config: &Path, pin_dir: &Path, on_exit: &str, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, bin()])
            .arg("--config")
            .arg(config)
            .arg("--pin-dir")
            .arg(pin_dir)
            .args(["--on-exit", on_exit, "--metrics-listen", METRICS])
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(file))
            .stdout(Stdio::null())
            .spawn()
            .expect("start daemon");
        let mut d = Self { child, log };
        let started = Instant::now();
        while !d.text().contains("metrics on http") {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("daemon exited early with {st}: {}", d.text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "daemon did not start: {}",
                d.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&mut self, sig: i32) -> String {
        // `ip netns exec` execs the daemon: the child's pid is the daemon's
        let status = signal_and_wait(&mut self.child, sig);
        if sig == libc::SIGTERM {
            assert!(status.success(), "exit status {status}: {}", self.text());
        }
        self.text()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client, router (the daemon's namespace, chain on `rc`) and server namespaces, routed through the
/// router; a bpffs for the pins; a work directory with the chain's config. All removed on drop.
struct Testbed {
    // field order is drop order: the namespaces (and the kept links on their interfaces) go first
    ns: Namespaces,
    _bpffs: Bpffs,
    pin_dir: PathBuf,
    config: PathBuf,
    work: PathBuf,
}

impl Testbed {
    fn new(tag: &str) -> Self {
        let bpffs = Bpffs::mount(tag);
        let pin_dir = bpffs.0.join("lab/ro");
        let ns = Namespaces::new(&[&format!("{tag}c"), &format!("{tag}r"), &format!("{tag}s")]);
        let (c, r, s) = (&ns.0[0], &ns.0[1], &ns.0[2]);
        ns.link(0, "vc", "10.94.1.2/24", 1, "rc", "10.94.1.1/24");
        ns.link(1, "rs", "10.94.2.1/24", 2, "vs", "10.94.2.2/24");
        sh(
            Some(c),
            &["ip", "route", "add", "default", "via", "10.94.1.1"],
        );
        sh(
            Some(s),
            &["ip", "route", "add", "default", "via", "10.94.2.1"],
        );
        sh(Some(r), &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        sh(Some(c), &["ping", "-c", "1", "-W", "2", "10.94.2.2"]);
        let work =
            std::env::temp_dir().join(format!("vnf-readopt-work-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&work).expect("work dir");
        let config = work.join("chain.yaml");
        std::fs::write(&config, CHAIN).expect("chain");
        Self {
            ns,
            _bpffs: bpffs,
            pin_dir,
            config,
            work,
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn counter(ns: &str, name: &str) -> u64 {
    let m = scrape_metrics(ns, METRICS);
    metric(&m, name).unwrap_or_else(|| panic!("no {name} in\n{m}")) as u64
}

#[test]
fn a_kept_chain_survives_sigkill_and_sigterm_and_is_readopted_without_a_gap() {
    if !common::privileged() {
        return;
    }
    let tb = Testbed::new("a");
    let (c, r, s) = (tb.ns.0[0].clone(), tb.ns.0[1].clone(), tb.ns.0[2].clone());
    let (pin_dir, config, work) = (tb.pin_dir.clone(), tb.config.clone(), tb.work.clone());
    let log = |n: u32| work.join(format!("daemon{n}.log"));

    let mut d = Daemon::start(&r, &config, &pin_dir, "keep", log(1));
    assert!(xdp_on(&r, "rc"), "chain attached");
    assert!(pin_dir.join("vnf_stats").exists() && pin_dir.join("link_rc").exists());
    let base_in = counter(&r, FW_IN);
    let base_mon = counter(&r, MON_IN);

    // steady traffic: 4 kpps kept (pktgen, sequence-checked) and 1 kpps denied, for 8 s
    let stop_denied = AtomicBool::new(false);
    let denied_seen = AtomicU64::new(0);
    let dst = |port| SocketAddr::from(([10, 94, 2, 2], port));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (sent, denied_sent, rx, readings) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            enter(&s);
            let mut cfg = RecvConfig::new(SocketAddr::from(([0, 0, 0, 0], KEPT)));
            cfg.stop = StopWhen {
                idle: Some(Duration::from_secs(2)),
                ..StopWhen::default()
            };
            let rx = Receiver::bind(cfg).expect("bind receiver");
            ready_tx.send(()).expect("ready");
            rx.run(&AtomicBool::new(false), |_| {}).expect("receiver")
        });
        let denied_listener = scope.spawn(|| {
            enter(&s);
            let sock = UdpSocket::bind(("0.0.0.0", DENIED)).expect("bind denied");
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            let mut buf = [0u8; 2048];
            while !stop_denied.load(Ordering::Acquire) {
                if sock.recv(&mut buf).is_ok() {
                    denied_seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("receiver ready");
        let kept = scope.spawn(|| {
            enter(&c);
            let mut cfg = SendConfig::new(dst(KEPT));
            cfg.rate_pps = 4000.0;
            cfg.duration = Some(Duration::from_secs(8));
            run_sender(&cfg, &AtomicBool::new(false), |_| {}).expect("kept sender")
        });
        let denied = scope.spawn(|| {
            enter(&c);
            let mut cfg = SendConfig::new(dst(DENIED));
            cfg.rate_pps = 1000.0;
            cfg.duration = Some(Duration::from_secs(8));
            cfg.stream_base = 1;
            run_sender(&cfg, &AtomicBool::new(false), |_| {}).expect("denied sender")
        });

        // under traffic: SIGKILL, restart (re-adopts), SIGTERM, restart with a changed chain
        let mut readings = Vec::new();
        std::thread::sleep(Duration::from_millis(800));
        readings.push(counter(&r, FW_IN));
        d.signal(libc::SIGKILL);
        assert!(xdp_on(&r, "rc"), "the chain stays attached after SIGKILL");
        std::thread::sleep(Duration::from_millis(300));
        d = Daemon::start(&r, &config, &pin_dir, "keep", log(2));
        assert!(
            d.text().contains(&format!(
                "re-adopted generation 1 from {}",
                pin_dir.display()
            )),
            "{}",
            d.text()
        );
        readings.push(counter(&r, FW_IN));
        std::thread::sleep(Duration::from_millis(800));
        readings.push(counter(&r, FW_IN));
        let text = d.signal(libc::SIGTERM);
        assert!(text.contains("chain kept running"), "{text}");
        assert!(
            xdp_on(&r, "rc"),
            "the chain stays attached after SIGTERM with keep"
        );
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&config, changed_chain()).expect("changed chain");
        d = Daemon::start(&r, &config, &pin_dir, "keep", log(3));
        let text = d.text();
        assert!(text.contains("re-adopted generation 1 from"), "{text}");
        assert!(text.contains("moved the re-adopted chain"), "{text}");
        readings.push(counter(&r, FW_IN));

        let kept = kept.join().expect("kept sender");
        let denied = denied.join().expect("denied sender");
        let rx = receiver.join().expect("receiver");
        std::thread::sleep(Duration::from_millis(300));
        stop_denied.store(true, Ordering::Release);
        denied_listener.join().expect("denied listener");
        readings.push(counter(&r, FW_IN));
        (kept, denied, rx, readings)
    });
    let m = scrape_metrics(&r, METRICS);
    let fw_in = metric(&m, FW_IN).expect("fw counter") as u64 - base_in;
    let fw_drops = metric(&m, FW_DROPS).expect("fw drops") as u64;
    let mon_in = metric(&m, MON_IN).expect("mon counter") as u64 - base_mon;
    eprintln!(
        "sent {} kept + {} denied; received {} (lost {}, expected {}), denied received {}; \
         firewall saw {fw_in} and dropped {fw_drops}, monitor saw {mon_in}; readings {readings:?}",
        sent.sent,
        denied_sent.sent,
        rx.unique,
        rx.lost,
        rx.expected,
        denied_seen.load(Ordering::Relaxed)
    );
    assert!(
        readings.windows(2).all(|w| w[0] <= w[1]) && readings[0] >= base_in,
        "counters went back after a re-adoption: {readings:?}"
    );
    assert!(readings[0] > base_in, "traffic flowed before the kill");
    assert_eq!(metric(&m, GENERATION), Some(1.0), "{m}");
    assert_eq!(rx.lost, 0, "a gap in the sequence: forwarding stopped");
    assert_eq!(rx.unique, sent.sent, "kept packets lost");
    assert_eq!(
        denied_seen.load(Ordering::Relaxed),
        0,
        "denied packets got through: the chain was not running"
    );
    assert_eq!(
        fw_drops, denied_sent.sent,
        "drops other than the intended ones"
    );
    assert_eq!(
        fw_in,
        sent.sent + denied_sent.sent,
        "the firewall's counter did not continue over the re-adoptions"
    );
    assert_eq!(mon_in, sent.sent, "the monitor's counter did not continue");

    // detach: the daemon re-adopts the kept chain, then leaves nothing behind
    let text = d.signal(libc::SIGTERM);
    assert!(text.contains("chain kept running"), "{text}");
    d = Daemon::start(&r, &config, &pin_dir, "detach", log(4));
    assert!(
        d.text().contains("re-adopted generation 1 from"),
        "{}",
        d.text()
    );
    assert_eq!(counter(&r, FW_IN), readings[readings.len() - 1]);
    let text = d.signal(libc::SIGTERM);
    assert!(text.contains("chain detached"), "{text}");
    assert!(!xdp_on(&r, "rc"), "XDP detached");
    assert!(
        !pin_dir.exists(),
        "pins removed: {:?}",
        std::fs::read_dir(&pin_dir).map(|d| d.count())
    );
    // a detaching daemon pins nothing in the first place
    d = Daemon::start(&r, &config, &pin_dir, "detach", log(5));
    assert!(!pin_dir.exists(), "a detaching daemon pinned its chain");
    assert!(xdp_on(&r, "rc"));
    d.signal(libc::SIGTERM);
    assert!(!xdp_on(&r, "rc"));
}

/// Sends `n` datagrams from the client to the server's port `port`, paced at about 2 kpps.
fn send_udp(ns: &str, port: u16, n: u64) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns);
                let sock = UdpSocket::bind("10.94.1.2:0").expect("bind");
                for i in 0..n {
                    sock.send_to(&i.to_be_bytes(), ("10.94.2.2", port))
                        .expect("send");
                    if i % 20 == 19 {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
            .join()
            .expect("sender")
    });
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn unusable_pins_are_reported_and_replaced_by_a_fresh_chain() {
    if !common::privileged() {
        return;
    }
    let tb = Testbed::new("b");
    let (c, r) = (tb.ns.0[0].clone(), tb.ns.0[1].clone());
    let log = |n: u32| tb.work.join(format!("daemon{n}.log"));
    let mut d = Daemon::start(&r, &tb.config, &tb.pin_dir, "keep", log(1));
    send_udp(&c, DENIED, 50);
    assert_eq!(counter(&r, FW_DROPS), 50);
    d.signal(libc::SIGKILL);

    // a piece goes missing: the next daemon says why and starts afresh, taking over the kept link
    std::fs::remove_file(tb.pin_dir.join("vnf_mon_cfg")).expect("unpin a map");
    d = Daemon::start(&r, &tb.config, &tb.pin_dir, "keep", log(2));
    let text = d.text();
    assert!(
        text.contains(&format!(
            "cannot re-adopt the chain kept in {}: pinned chain in {}: missing pinned map",
            tb.pin_dir.display(),
            tb.pin_dir.display()
        )),
        "{text}"
    );
    assert!(text.contains("loading it afresh"), "{text}");
    assert!(!text.contains("re-adopted generation"), "{text}");
    assert!(xdp_on(&r, "rc"), "attached");
    assert!(
        tb.pin_dir.join("vnf_mon_cfg").exists(),
        "pins complete again"
    );
    // fresh counters, and the fresh chain is the one that runs
    assert_eq!(counter(&r, FW_DROPS), 0);
    send_udp(&c, DENIED, 30);
    send_udp(&c, KEPT, 20);
    assert_eq!(counter(&r, FW_DROPS), 30);
    assert_eq!(counter(&r, MON_IN), 20);

    // the fresh chain is kept and re-adopted like any other
    d.signal(libc::SIGKILL);
    d = Daemon::start(&r, &tb.config, &tb.pin_dir, "keep", log(3));
    assert!(d.text().contains("re-adopted generation 1"), "{}", d.text());
    assert_eq!(counter(&r, FW_DROPS), 30);
    let text = d.signal(libc::SIGTERM);
    assert!(text.contains("chain kept running"), "{text}");

    // pins of another chain are not adopted
    let other = std::fs::read_to_string(&tb.config)
        .expect("config")
        .replace("name: ro,", "name: other,");
    std::fs::write(&tb.config, other).expect("other chain");
    d = Daemon::start(&r, &tb.config, &tb.pin_dir, "detach", log(4));
    let text = d.text();
    assert!(
        text.contains("it holds chain lab/ro, this daemon runs lab/other"),
        "{text}"
    );
    assert_eq!(counter_of(&r, "other", "fw"), 0);
    let text = d.signal(libc::SIGTERM);
    assert!(text.contains("chain detached"), "{text}");
    assert!(!xdp_on(&r, "rc"), "XDP detached");
    assert!(!tb.pin_dir.exists(), "the replaced pins were removed");
}

fn counter_of(ns: &str, chain: &str, function: &str) -> u64 {
    let name = format!(
        "buildvnf_function_drops_total{{namespace=\"lab\",chain=\"{chain}\",function=\"{function}\",type=\"firewall\",reason=\"firewall_rule\"}}"
    );
    counter(ns, &name)
}

#[test]
fn a_stopping_daemon_refuses_updates_and_keeps_its_generation() {
    use cnf_dataplane::daemon::{ApplyError, Dataplane};
    if !common::privileged() {
        return;
    }
    let ns = Namespaces::new(&["stpa", "stpb"]);
    ns.link(0, "rc", "10.95.0.1/24", 1, "x0", "10.95.0.2/24");
    let chain = crds::manifest::parse_single_chain(CHAIN).expect("chain");
    let changed = crds::manifest::parse_single_chain(&changed_chain()).expect("changed chain");
    let router = ns.0[0].clone();
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(&router);
            let mut dp = Dataplane::start(&chain).expect("start");
            dp.stop_updates();
            let e = dp
                .apply(2, &changed.spec)
                .expect_err("refused while stopping");
            assert!(matches!(e, ApplyError::ShuttingDown), "{e}");
            assert_eq!(
                e.to_string(),
                "the data plane is shutting down and accepts no updates"
            );
            assert_eq!(dp.generation(), 1);
            assert_eq!(dp.function_stats().len(), 2, "generation 1 still runs");
            dp.detach().expect("detach");
        })
        .join()
        .expect("daemon thread");
    });
}
