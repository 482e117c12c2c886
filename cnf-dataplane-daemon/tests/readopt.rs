//! Keep and re-adopt: a daemon started with `--on-exit keep` is SIGKILLed and later SIGTERMed under steady
//! pktgen traffic and restarted each time; forwarding never stops (no gap in pktgen's sequence, every
//! denied packet still dropped), the re-adopted chain's counters continue from where they were, a changed
//! configuration moves the re-adopted chain to a new generation (a rolled-back ConfigMap returns it to the
//! known-good one), and `--on-exit detach` leaves no pins and no attachment behind.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Namespaces, enter, metric, scrape_metrics, sh, xdp_on};
use daemon::{Bpffs, Daemon};
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

/// Starts a daemon in `ns` on the chain in `config`, pinned in `pin_dir`, with `--on-exit on_exit` and
/// the extra `args`, and waits until it serves.
fn start_with(
    ns: &str,
    config: &Path,
    pin_dir: &Path,
    on_exit: &str,
    log: PathBuf,
    args: &[&str],
) -> Daemon {
    let mut all = vec![
        "--config",
        config.to_str().expect("path"),
        "--pin-dir",
        pin_dir.to_str().expect("path"),
        "--on-exit",
        on_exit,
        "--metrics-listen",
        METRICS,
    ];
    all.extend_from_slice(args);
    Daemon::start(ns, &all, log)
}

fn start(ns: &str, config: &Path, pin_dir: &Path, on_exit: &str, log: PathBuf) -> Daemon {
    start_with(ns, config, pin_dir, on_exit, log, &[])
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

/// Stops a thread that loops until told when dropped: also when a check fails, so the scope around it
/// ends with that failure instead of waiting forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
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

    let mut d = start(&r, &config, &pin_dir, "keep", log(1));
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
        let stop_on_failure = StopOnDrop(&stop_denied);
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
        d = start(&r, &config, &pin_dir, "keep", log(2));
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
        d = start(&r, &config, &pin_dir, "keep", log(3));
        let text = d.text();
        assert!(text.contains("re-adopted generation 1 from"), "{text}");
        // the manifest has no metadata.generation: the daemon numbers the changed chain, the next one
        assert!(
            text.contains("moved the re-adopted chain to the configured one (generation 2)"),
            "{text}"
        );
        readings.push(counter(&r, FW_IN));

        let kept = kept.join().expect("kept sender");
        let denied = denied.join().expect("denied sender");
        let rx = receiver.join().expect("receiver");
        std::thread::sleep(Duration::from_millis(300));
        drop(stop_on_failure);
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
    assert_eq!(metric(&m, GENERATION), Some(2.0), "{m}");
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
    d = start(&r, &config, &pin_dir, "detach", log(4));
    assert!(
        d.text().contains("re-adopted generation 2 from"),
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
    d = start(&r, &config, &pin_dir, "detach", log(5));
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
    let mut d = start(&r, &tb.config, &tb.pin_dir, "keep", log(1));
    send_udp(&c, DENIED, 50);
    assert_eq!(counter(&r, FW_DROPS), 50);
    d.signal(libc::SIGKILL);

    // a piece goes missing: the next daemon says why and starts afresh, taking over the kept link
    std::fs::remove_file(tb.pin_dir.join("vnf_mon_cfg")).expect("unpin a map");
    d = start(&r, &tb.config, &tb.pin_dir, "keep", log(2));
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
    d = start(&r, &tb.config, &tb.pin_dir, "keep", log(3));
    assert!(d.text().contains("re-adopted generation 1"), "{}", d.text());
    assert_eq!(counter(&r, FW_DROPS), 30);
    let text = d.signal(libc::SIGTERM);
    assert!(text.contains("chain kept running"), "{text}");

    // pins of another chain are not adopted
    let other = std::fs::read_to_string(&tb.config)
        .expect("config")
        .replace("name: ro,", "name: other,");
    std::fs::write(&tb.config, other).expect("other chain");
    d = start(&r, &tb.config, &tb.pin_dir, "detach", log(4));
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
    use cnf_dataplane::compose::{ApplyError, Dataplane};
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

/// Applies the chain manifest `text` as `generation` over the daemon's gRPC socket `sock`.
fn apply_live(sock: &Path, generation: i64, text: &str) -> dataplane_api::ApplyChainResponse {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let chain = crds::manifest::parse_single_chain(text).expect("chain");
    let mut client = daemon::grpc_unix(&rt, sock.to_path_buf());
    rt.block_on(client.apply_chain(dataplane_api::ApplyChainRequest {
        chain: Some(dataplane_api::ChainRef {
            namespace: "lab".into(),
            name: "ro".into(),
        }),
        generation,
        spec_json: serde_json::to_string(&chain.spec).expect("json"),
    }))
    .unwrap_or_else(|e| panic!("apply {generation}: {e}"))
    .into_inner()
}

/// The chain as the operator renders it into the ConfigMap: numbered with `generation`.
fn numbered(text: &str, generation: i64) -> String {
    text.replace(
        "metadata: {name: ro, namespace: lab}",
        &format!("metadata: {{name: ro, namespace: lab, generation: {generation}}}"),
    )
}

/// Issue 12 across a restart: a pod took a generation that then failed elsewhere, and restarts before the
/// operator rolled it back. It starts from the ConfigMap's known-good chain (numbered, older than the kept
/// one): the re-adopted chain returns to it, as the rollback would have. A configured generation this data
/// plane never applied is not taken over the kept one.
#[test]
fn a_readopted_chain_returns_to_the_configured_known_good_generation() {
    if !common::privileged() {
        return;
    }
    let tb = Testbed::new("k");
    let r = tb.ns.0[1].clone();
    let log = |n: u32| tb.work.join(format!("daemon{n}.log"));
    let sock = tb.work.join("dp.sock");
    let sock_arg = ["--grpc-socket", sock.to_str().expect("path")];
    std::fs::write(&tb.config, numbered(CHAIN, 3)).expect("known-good chain");
    let mut d = start_with(&r, &tb.config, &tb.pin_dir, "keep", log(1), &sock_arg);
    assert_eq!(counter(&r, GENERATION), 3);
    assert!(apply_live(&sock, 4, &changed_chain()).changed);
    assert!(scrape_metrics(&r, METRICS).contains("function=\"rl\""));
    d.signal(libc::SIGKILL);

    d = start_with(&r, &tb.config, &tb.pin_dir, "keep", log(2), &sock_arg);
    let text = d.text();
    assert!(text.contains("re-adopted generation 4 from"), "{text}");
    assert!(
        text.contains("moved the re-adopted chain to the configured one (generation 3)"),
        "{text}"
    );
    assert!(
        text.contains(
            "chain generation 3 active: 2 function(s) (returned to a generation applied before)"
        ),
        "{text}"
    );
    assert_eq!(counter(&r, GENERATION), 3);
    let m = scrape_metrics(&r, METRICS);
    assert!(
        !m.contains("function=\"rl\""),
        "generation 3 has no rate limiter:\n{m}"
    );

    // generation 2 never ran here: refused, generation 3 keeps running
    let text = d.signal(libc::SIGTERM);
    assert!(text.contains("chain kept running"), "{text}");
    std::fs::write(&tb.config, numbered(&changed_chain(), 2)).expect("stale chain");
    d = start_with(&r, &tb.config, &tb.pin_dir, "keep", log(3), &sock_arg);
    let text = d.text();
    assert!(
        text.contains(
            "the configured chain was not applied over the re-adopted one: generation 2 is older than the applied generation 4"
        ),
        "{text}"
    );
    assert_eq!(counter(&r, GENERATION), 3);
    let text = d.signal(libc::SIGTERM);
    assert!(text.contains("chain kept running"), "{text}");
}

/// Every counter series of one scrape (`_total`, histogram `_bucket` and `_count`): name{labels} → value.
fn counter_series(ns: &str) -> std::collections::BTreeMap<String, f64> {
    scrape_metrics(ns, METRICS)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let name = k.split('{').next()?;
            let counter =
                name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count");
            Some((k.to_string(), v.parse().ok()?)).filter(|_| counter)
        })
        .collect()
}

/// Samples counters and checks, at every sample, that no series is below any earlier value of it (also
/// one that went away and came back) and that no function passed or saw more packets than the chain
/// classified.
struct Monotonic {
    last: std::collections::BTreeMap<String, f64>,
    samples: usize,
}

impl Monotonic {
    fn sample(&mut self, ns: &str, when: &str) {
        let now = counter_series(ns);
        let classified = *now
            .get("buildvnf_chain_packets_total{namespace=\"lab\",chain=\"ro\",result=\"classified\"}")
            .unwrap_or_else(|| panic!("{when}: no classified counter in {now:?}"));
        for (k, v) in &now {
            if let Some(before) = self.last.get(k) {
                assert!(v >= before, "{when}: {k} went back from {before} to {v}");
            }
            let per_function = k.starts_with("buildvnf_function_passed_total{")
                || k.starts_with("buildvnf_function_packets_total{");
            assert!(
                !per_function || *v <= classified,
                "{when}: {k} = {v} exceeds classified = {classified}"
            );
        }
        self.last.extend(now);
        self.samples += 1;
    }
}

#[test]
fn counters_never_go_back_across_live_updates_and_a_kill_and_readoption() {
    if !common::privileged() {
        return;
    }
    let tb = Testbed::new("m");
    let (c, r) = (tb.ns.0[0].clone(), tb.ns.0[1].clone());
    let log = |n: u32| tb.work.join(format!("daemon{n}.log"));
    let sock = tb.work.join("dp.sock");
    let sock_arg = ["--grpc-socket", sock.to_str().expect("path")];
    let mut d = start_with(&r, &tb.config, &tb.pin_dir, "keep", log(1), &sock_arg);
    // 2: the firewall's rule moves (it keeps its state); 3: the monitor counts by port (fresh state) and
    // a rate limiter joins; 4: the monitor goes. After the kill, the configured chain brings it back (its
    // manifest has no metadata.generation: the daemon numbers it 5, the next generation).
    let gen2 = CHAIN.replace("from: 9001", "from: 9002");
    let gen3 = changed_chain().replace("monitor: {}", "monitor: {countBy: destinationPort}");
    let gen4 = CHAIN.replace(
        "    - name: mon\n      type: monitor\n      monitor: {}\n",
        "",
    );
    assert_ne!(gen4, CHAIN);
    let stop = AtomicBool::new(false);
    let mut m = Monotonic {
        last: Default::default(),
        samples: 0,
    };
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            enter(&c);
            let sock = UdpSocket::bind("10.94.1.2:0").expect("bind");
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let port = if i.is_multiple_of(3) { DENIED } else { KEPT };
                let _ = sock.send_to(&i.to_be_bytes(), ("10.94.2.2", port));
                i += 1;
                if i.is_multiple_of(10) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        let pause = || std::thread::sleep(Duration::from_millis(300));
        pause();
        m.sample(&r, "generation 1");
        for (generation, text) in [(2, &gen2), (3, &gen3), (4, &gen4)] {
            assert!(apply_live(&sock, generation, text).changed);
            m.sample(&r, &format!("right after generation {generation}"));
            pause();
            m.sample(&r, &format!("under generation {generation}"));
        }
        let text = d.text();
        for generation in 2..=4 {
            assert!(
                text.contains(&format!("chain generation {generation} active")),
                "the log names the chain's generation: {text}"
            );
        }
        d.signal(libc::SIGKILL);
        pause();
        d = start_with(&r, &tb.config, &tb.pin_dir, "keep", log(2), &sock_arg);
        let text = d.text();
        assert!(text.contains("re-adopted generation 4 from"), "{text}");
        assert!(
            text.contains("moved the re-adopted chain to the configured one (generation 5)"),
            "{text}"
        );
        m.sample(&r, "after the kill and re-adoption");
        pause();
        m.sample(&r, "after the re-adoption, under traffic");
        let text = d.signal(libc::SIGTERM);
        assert!(text.contains("chain kept running"), "{text}");
        d = start_with(&r, &tb.config, &tb.pin_dir, "keep", log(3), &sock_arg);
        m.sample(&r, "after SIGTERM and re-adoption");
        pause();
        m.sample(&r, "at the end");
    });
    assert_eq!(m.samples, 11);
    let mon = "buildvnf_function_packets_total{namespace=\"lab\",chain=\"ro\",function=\"mon\",type=\"monitor\"}";
    assert!(
        m.last.get(mon).is_some_and(|v| *v > 0.0),
        "the monitor's counter continued: {:?}",
        m.last
    );
    d.signal(libc::SIGTERM);
}

#[test]
fn a_pin_directory_has_one_owner_while_it_lives() {
    if !common::privileged() {
        return;
    }
    let tb = Testbed::new("l");
    let r = tb.ns.0[1].clone();
    let log = |n: u32| tb.work.join(format!("daemon{n}.log"));
    let mut d = start(&r, &tb.config, &tb.pin_dir, "keep", log(1));
    let pid = d.child.id();

    // a second daemon on the same pin directory is refused before it reads the pins or attaches
    let args = [
        "--config",
        tb.config.to_str().expect("path"),
        "--pin-dir",
        tb.pin_dir.to_str().expect("path"),
        "--metrics-listen",
        "127.0.0.1:9092",
    ];
    for on_exit in ["keep", "detach"] {
        let mut all = args.to_vec();
        all.extend(["--on-exit", on_exit]);
        let (status, text) = Daemon::run_to_exit(&r, &all, log(2));
        assert_eq!(status.code(), Some(75), "{on_exit}: {text}");
        assert!(
            text.contains(&format!(
                "pin directory {} is in use by another cnf-dataplane (pid {pid})",
                tb.pin_dir.display()
            )),
            "{on_exit}: {text}"
        );
        assert!(!text.contains("re-adopted"), "{text}");
    }
    assert!(xdp_on(&r, "rc"), "the owner's chain runs on");
    assert!(tb.pin_dir.join("vnf_stats").exists(), "the pins are intact");

    // the lock dies with its owner, however it dies: the next daemon re-adopts
    d.signal(libc::SIGKILL);
    d = start(&r, &tb.config, &tb.pin_dir, "detach", log(3));
    assert!(d.text().contains("re-adopted generation 1"), "{}", d.text());
    let text = d.signal(libc::SIGTERM);
    assert!(text.contains("chain detached"), "{text}");
}
