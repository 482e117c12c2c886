//! The laptop testbed with real packets: the edge chain up in namespaces, traffic from its clients, and nothing
//! left behind by `down`, a failure half-way, an interrupted `up` or a refused one.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crds::VNFChain;
use vnfctl::testbed::{self, Testbed, TestbedError, TestbedOptions, metrics};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn edge_chain() -> VNFChain {
    example("edge-chain.yaml")
}

/// The cnf-dataplane binary of this build (`cargo test --workspace`, as `./test.sh` runs it, builds it), or the
/// one `CNF_DATAPLANE_BIN` names.
fn dataplane_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CNF_DATAPLANE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/PROFILE");
    let p = profile_dir.join("cnf-dataplane");
    assert!(
        p.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (./test.sh), or build it first \
         (cargo build -p cnf-dataplane-daemon), or set CNF_DATAPLANE_BIN",
        p.display()
    );
    p
}

/// Options for a test testbed: a unique name (also returned) and a private state directory.
fn options(tag: &str) -> (TestbedOptions, String) {
    let name = format!("t{}{tag}", std::process::id());
    let state_dir = std::env::temp_dir().join(format!("bvnf-testbed-{name}"));
    let opts = TestbedOptions {
        name: Some(name.clone()),
        dataplane_bin: Some(dataplane_bin()),
        state_dir,
        ..Default::default()
    };
    (opts, name)
}

/// The start of a test that brings a testbed up: `None` when it is to be skipped (testkit's rule, which
/// says why), else [`options`] with tag `tag`.
fn testbed_test(test: &str, tag: &str) -> Option<(TestbedOptions, String)> {
    testkit::can_run_netns_tests(test).then(|| options(tag))
}

/// Takes `tb` down and checks that nothing of testbed `name` is left.
fn down_and_clean(tb: Testbed, name: &str, opts: &TestbedOptions, when: &str) {
    tb.down().expect("down");
    assert_clean(name, &opts.state_dir, when);
}

/// The chain of `examples/FILE`.
fn example(file: &str) -> VNFChain {
    let text = std::fs::read_to_string(repo().join("examples").join(file)).expect("example");
    crds::manifest::parse_single_chain(&text).expect("valid")
}

/// A stand-in for the data plane of testbed `name`: an executable shell script, removed on drop.
struct FakeDataplane(PathBuf);

impl FakeDataplane {
    fn new(name: &str, what: &str, body: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let bin = std::env::temp_dir().join(format!("bvnf-testbed-{name}-{what}.sh"));
        std::fs::write(&bin, body).expect("script");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self(bin)
    }
}

impl Drop for FakeDataplane {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a testbed could leave behind, restricted to names that carry the testbed's name.
#[derive(Debug, PartialEq)]
struct Traces {
    namespaces: BTreeSet<String>,
    host_links: BTreeSet<String>,
    bpffs: BTreeSet<String>,
    processes: BTreeSet<String>,
    state_files: BTreeSet<String>,
}

fn walk(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        out.insert(p.display().to_string());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, out);
        }
    }
}

fn traces(name: &str, state_dir: &Path) -> Traces {
    let prefix = format!("bvnf-{name}-");
    let namespaces = testbed::state::existing_namespaces()
        .expect("ip netns list")
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    // The testbed's links live in its own namespaces; the host namespace must never see one.
    let host_links = pktgen::netns::run("ip", &["-o", "link", "show"])
        .expect("ip link")
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .filter(|n| {
            n.contains(name)
                || ["cnf0", "cnf1", "cnf2", "client", "denied", "sink"].contains(&n.as_str())
                || n.starts_with("server")
        })
        .collect();
    let mut bpffs = BTreeSet::new();
    walk(Path::new("/sys/fs/bpf"), &mut bpffs);
    let bpffs = bpffs.into_iter().filter(|p| p.contains(name)).collect();
    // Processes whose command line names this testbed's files.
    let mut processes = BTreeSet::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&format!("bvnf-testbed-{name}")) {
            processes.insert(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    let mut state_files = BTreeSet::new();
    walk(state_dir, &mut state_files);
    Traces {
        namespaces,
        host_links,
        bpffs,
        processes,
        state_files,
    }
}

fn assert_clean(name: &str, state_dir: &Path, when: &str) {
    let t = traces(name, state_dir);
    let empty = Traces {
        namespaces: BTreeSet::new(),
        host_links: BTreeSet::new(),
        bpffs: BTreeSet::new(),
        processes: BTreeSet::new(),
        state_files: BTreeSet::new(),
    };
    assert_eq!(t, empty, "{when}: the testbed left something behind");
}

/// The testbed's own listener (`pktgen serve`) answers TCP on `addr` in `ns`: checked from inside that namespace.
fn tcp_server(ns: &str, addr: SocketAddr) {
    let reply = tcp_request(ns, addr).expect("the listener answers in its namespace");
    assert_eq!(
        reply,
        addr.ip().to_string(),
        "the listener names the address reached"
    );
}

/// In namespace `ns`: connect to `to`, send a request, return the address of the server that answered (the
/// listeners reply `served by ADDR:PORT`), or the error.
fn tcp_request(ns: &str, to: SocketAddr) -> Result<String, String> {
    pktgen::netns::spawn_in(ns, move || -> Result<String, String> {
        let mut c =
            TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        c.write_all(b"hello\n").map_err(|e| e.to_string())?;
        let mut s = String::new();
        c.read_to_string(&mut s).map_err(|e| e.to_string())?;
        pktgen::serve::served_by(&s)
            .map(|a| a.ip().to_string())
            .ok_or_else(|| format!("not a listener's reply: {s:?}"))
    })
    .join()
    .expect("client thread")
    .expect("enter client ns")
}

/// In `ns`: send `n` UDP datagrams to `to` from port `sport`.
fn udp_send(ns: &str, to: SocketAddr, n: usize) {
    pktgen::netns::spawn_in(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..n {
            s.send_to(format!("datagram {i}").as_bytes(), to)
                .expect("send");
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .join()
    .expect("sender")
    .expect("enter ns");
}

/// In `ns`: receive UDP on `addr` until `idle` passes without a datagram; returns the sources seen. The exact
/// bind takes the datagrams from the server's echo listener on the wildcard address while it lasts.
fn udp_receiver(
    ns: &str,
    addr: SocketAddr,
    idle: Duration,
) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        pktgen::netns::enter(&ns).expect("enter");
        let s = pktgen::serve::bind_udp_reuse(addr).expect("bind");
        s.set_read_timeout(Some(idle)).expect("timeout");
        tx.send(()).expect("ready");
        let mut from = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((_, src)) = s.recv_from(&mut buf) {
            from.push(src);
        }
        from
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("receiver bound");
    h
}

/// 1.5 s of the planned flows, TCP included, at rates far below the examples' limits.
fn short_traffic() -> testbed::traffic::TrafficOptions {
    testbed::traffic::TrafficOptions {
        rate_pps: 2000.0,
        denied_rate_pps: 500.0,
        duration: Duration::from_millis(1500),
        flows: 2,
        tcp: true,
    }
}

fn counter(tb: &Testbed, function: &str) -> metrics::FunctionReport {
    let text = tb.scrape_metrics().expect("metrics");
    metrics::functions(&metrics::parse(&text))
        .into_iter()
        .find(|f| f.name == function)
        .unwrap_or_else(|| panic!("no counters for {function}"))
}

#[test]
fn edge_chain_testbed_carries_real_traffic_and_down_leaves_nothing() {
    let Some((opts, name)) = testbed_test("edge_chain_testbed_carries_real_traffic", "e") else {
        return;
    };
    assert_clean(&name, &opts.state_dir, "before");
    let chain = edge_chain();
    let tb = Testbed::up(&chain, &opts).expect("up");
    assert!(!tb.was_already_up());
    assert_eq!(tb.attachments().len(), 1, "{:?}", tb.attachments());
    assert_eq!(tb.client().ipv4_addr(), Some(Ipv4Addr::new(10, 0, 1, 10)));
    let state = tb.state_path();
    assert!(state.is_file());

    // Up again with the same manifest: recognised, nothing built.
    let again = Testbed::up(&chain, &opts).expect("idempotent up");
    assert!(again.was_already_up());
    again.keep();

    edge_udp_through_dnat(&tb);
    edge_traffic_run(&tb, &opts);
    edge_tcp_to_the_vip(&tb);

    // Down: nothing of it is left.
    let pid = tb.dataplane_pid().expect("pid");
    tb.down().expect("down");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !s.contains("cnf-dataplane")
        }
    );
    assert!(!state.exists());
    assert_clean(&name, &opts.state_dir, "after down");
    // Down of a testbed that is not up succeeds.
    assert_eq!(
        testbed::down(&name, &opts.state_dir).expect("down again"),
        testbed::DownOutcome::NotFound
    );
}

/// The edge chain's UDP DNAT path: client -> 10.0.0.200:9999 reaches 10.0.2.10:9999 from the client's
/// address; the denied client's datagrams are dropped by the firewall rule.
fn edge_udp_through_dnat(tb: &Testbed) {
    // The UDP DNAT path: client -> 10.0.0.200:9999 reaches 10.0.2.10:9999 (a DNAT'd flow keeps its source:
    // the NAT applies DNAT or SNAT to a new flow, DNAT first).
    let dnat = tb
        .services()
        .iter()
        .find(|s| s.kind == "dnat")
        .expect("dnat service")
        .clone();
    let (target, tport) = dnat.targets[0];
    let server = tb
        .server(target)
        .expect("DNAT target namespace")
        .netns
        .clone();
    let rx = udp_receiver(
        &server,
        SocketAddr::new(target, tport),
        Duration::from_millis(700),
    );
    udp_send(
        &tb.client().netns,
        SocketAddr::new(dnat.address, dnat.port),
        200,
    );
    // The denied client's datagrams must not arrive.
    let denied = tb.denied_client().expect("denied client").netns.clone();
    udp_send(&denied, SocketAddr::new(dnat.address, dnat.port), 50);
    let from = rx.join().expect("receiver");
    assert_eq!(
        from.len(),
        200,
        "every allowed datagram arrives, no denied one"
    );
    assert!(
        from.iter()
            .all(|s| s.ip() == IpAddr::V4(Ipv4Addr::new(10, 0, 1, 10))),
        "sources must be the client: {:?}",
        &from[..3]
    );
    let fw = counter(tb, "fw");
    assert_eq!(fw.drops.get("firewall_rule"), Some(&50), "{fw:?}");
}

/// The main job's traffic run over the edge chain: loss-free, the firewall counts agree with pktgen's, and
/// the plots are written.
fn edge_traffic_run(tb: &Testbed, opts: &TestbedOptions) {
    // The main job's traffic run: loss-free at a modest rate, every denied packet dropped by the firewall rule,
    // and the plots written.
    let fw_before = counter(tb, "fw");
    // (UDP only: every TCP packet would cross the firewall too)
    let opts_t = testbed::traffic::TrafficOptions {
        rate_pps: 2000.0,
        denied_rate_pps: 500.0,
        duration: Duration::from_secs(1),
        flows: 2,
        tcp: false,
    };
    let r = testbed::traffic::run(tb, &opts_t, |_| {}).expect("traffic");
    let main = r.main().expect("the main flow");
    let received = main.received.clone().expect("received");
    let sent = main.sender.clone().expect("sent");
    assert_eq!(received.unique, sent.sent, "loss-free: {received:?}");
    assert_eq!(received.lost, 0);
    let denied_sent = r
        .flows
        .iter()
        .find(|f| f.flow.expect == testbed::flows::Expect::Dropped)
        .expect("denied flow")
        .sent;
    let fw_after = counter(tb, "fw");
    let d = |f: &metrics::FunctionReport| f.drops.get("firewall_rule").copied().unwrap_or(0);
    assert_eq!(d(&fw_after) - d(&fw_before), denied_sent, "{fw_after:?}");
    assert_eq!(
        fw_after.passed - fw_before.passed,
        sent.sent,
        "kernel count = pktgen count"
    );
    let results = opts.state_dir.join("results");
    let files = testbed::traffic::write_results(
        &results,
        "t",
        &r,
        &tb.scrape_metrics().expect("metrics"),
        &tb.function_names(),
        &[],
    )
    .expect("plots");
    for f in &files {
        assert!(
            std::fs::metadata(f).expect("written").len() > 100,
            "{}",
            f.display()
        );
    }
    std::fs::remove_dir_all(&results).expect("rm results");
}

/// TCP to the edge chain's VIP, both ways, and the denied client's SYNs dropped.
fn edge_tcp_to_the_vip(tb: &Testbed) {
    // TCP to the VIP, both ways: the SYN crosses firewall, SNAT and load balancer to a backend; the
    // backend's replies meet the load balancer, NAT and the firewall's conntrack in reverse order and
    // reach the client from the VIP.
    let lb = tb
        .services()
        .iter()
        .find(|s| s.kind == "loadBalancer")
        .expect("lb")
        .clone();
    for (a, p) in &lb.targets {
        tcp_server(
            &tb.server(*a).expect("backend").netns,
            SocketAddr::new(*a, *p),
        );
    }
    let mut served = BTreeSet::new();
    for _ in 0..6 {
        let answer = tcp_request(&tb.client().netns, SocketAddr::new(lb.address, lb.port))
            .unwrap_or_else(|e| panic!("TCP to the VIP through the edge chain: {e}"));
        served.insert(answer);
    }
    assert!(
        served
            .iter()
            .all(|a| lb.targets.iter().any(|(t, _)| t.to_string() == *a)),
        "every answer comes from a backend: {served:?}"
    );
    // The denied client's SYNs never reach a backend.
    let before = counter(tb, "fw")
        .drops
        .get("firewall_rule")
        .copied()
        .unwrap_or(0);
    let denied = &tb.denied_client().expect("denied client").netns;
    assert!(tcp_request(denied, SocketAddr::new(lb.address, lb.port)).is_err());
    let after = counter(tb, "fw")
        .drops
        .get("firewall_rule")
        .copied()
        .unwrap_or(0);
    assert!(
        after > before,
        "the denied client's SYN was dropped by the firewall rule"
    );
}

#[test]
fn tcp_through_the_load_balancer_reaches_every_backend_and_the_replies_return() {
    if !testkit::can_run_netns_tests("tcp_through_the_load_balancer") {
        return;
    }
    // The edge chain's load balancer, rate limiter and monitor: a chain whose TCP replies the engine restores.
    let mut chain = edge_chain();
    chain
        .spec
        .functions
        .retain(|f| !matches!(f.name.as_str(), "fw" | "nat"));
    let (opts, name) = options("l");
    let tb = Testbed::up(&chain, &opts).expect("up");
    let lb = tb.services()[0].clone();
    for (a, p) in &lb.targets {
        tcp_server(
            &tb.server(*a).expect("backend").netns,
            SocketAddr::new(*a, *p),
        );
    }
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let reply = tcp_request(&tb.client().netns, SocketAddr::new(lb.address, lb.port))
            .expect("a TCP connection to the VIP gets its reply");
        seen.insert(reply);
    }
    let backends: BTreeSet<String> = lb.targets.iter().map(|(a, _)| a.to_string()).collect();
    assert!(
        seen.is_subset(&backends) && seen.len() >= 2,
        "replies from {seen:?}"
    );
    let f = counter(&tb, "lb");
    assert!(
        f.passed >= 30 * 4,
        "both directions crossed the chain: {f:?}"
    );
    drop(tb); // Drop tears down too
    assert_clean(&name, &opts.state_dir, "after drop");
}

#[test]
fn a_failure_half_way_leaves_nothing() {
    // Every namespace and link is created, then the "data plane" exits at once.
    let Some((mut opts, name)) = testbed_test("a_failure_half_way_leaves_nothing", "f") else {
        return;
    };
    let bin = FakeDataplane::new(
        &name,
        "false",
        "#!/bin/sh\necho 'refusing on purpose' >&2\nexit 3\n",
    );
    opts.dataplane_bin = Some(bin.0.clone());
    let e = Testbed::up(&edge_chain(), &opts).expect_err("the data plane fails");
    let msg = e.to_string();
    assert!(
        msg.contains("exited") && msg.contains("refusing on purpose"),
        "{msg}"
    );
    assert_clean(&name, &opts.state_dir, "after a failed up");

    // A manifest whose backend collides with a service address: refused before anything is built.
    let mut chain = edge_chain();
    let lb = chain.spec.functions[2].load_balancer.as_mut().expect("lb");
    lb.backends[0].address = crds::net::IpAddress::from("10.0.1.66");
    let msg = Testbed::up(&chain, &opts)
        .expect_err("conflict")
        .to_string();
    assert!(
        msg.contains("spec.functions[2].loadBalancer.backends[0].address"),
        "{msg}"
    );
    assert_clean(&name, &opts.state_dir, "after a refused plan");
}

#[test]
fn an_interrupted_up_leaves_nothing() {
    // The "data plane" never attaches; Ctrl-C (SIGINT) arrives while `up` waits for it.
    let Some((opts, name)) = testbed_test("an_interrupted_up_leaves_nothing", "i") else {
        return;
    };
    let bin = FakeDataplane::new(&name, "sleep", "#!/bin/sh\nexec sleep 60\n");
    let child = Command::new(env!("CARGO_BIN_EXE_vnfctl"))
        .args([
            "testbed",
            "up",
            "examples/edge-chain.yaml",
            "--name",
            &name,
            "--dataplane-bin",
        ])
        .arg(&bin.0)
        .arg("--state-dir")
        .arg(&opts.state_dir)
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vnfctl runs");
    // Wait until the state file lists the data plane process (everything else is built by then).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = testbed::State::load(&opts.state_dir, &name).ok().flatten();
        if st.is_some_and(|s| !s.processes.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "up never reached the data plane");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("vnfctl exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("interrupted"),
        "{err}"
    );
    assert_clean(&name, &opts.state_dir, "after an interrupted up");
}

#[test]
fn refuses_a_taken_name_and_a_non_root_user() {
    let Some((opts, name)) = testbed_test("refuses_a_taken_name", "n") else {
        return;
    };
    // Someone else's namespace with a name the testbed needs.
    let theirs = format!("bvnf-{name}-cnf");
    pktgen::netns::run("ip", &["netns", "add", &theirs]).expect("netns add");
    let r = Testbed::up(&edge_chain(), &opts);
    let kept = testbed::state::existing_namespaces()
        .expect("list")
        .contains(&theirs);
    pktgen::netns::run("ip", &["netns", "del", &theirs]).expect("netns del");
    match r {
        Err(e @ TestbedError::NameTaken { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&theirs) && msg.contains("not part of testbed"),
                "{msg}"
            );
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert!(kept, "a namespace that is not ours is left alone");
    assert_clean(&name, &opts.state_dir, "after a refused up");

    // Not root: a clear refusal (setpriv drops to nobody).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_vnfctl"))
        .args([
            "testbed",
            "up",
            "examples/edge-chain.yaml",
            "--name",
            &name,
            "--state-dir",
        ])
        .arg(&opts.state_dir)
        .current_dir(repo())
        .output()
        .expect("setpriv runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("needs root"), "{err}");
}

#[test]
fn kernel_only_testbed_forwards_and_shapes_the_client_links() {
    let Some((mut opts, name)) = testbed_test("kernel_only_testbed_forwards_and_shapes", "k")
    else {
        return;
    };
    opts.start_dataplane = false;

    // Delay and loss need netem; a kernel without it gets a clear refusal and nothing is built.
    opts.shape = Some("delay=5ms,loss=1%".parse().expect("shape"));
    match Testbed::up(&edge_chain(), &opts) {
        Ok(tb) => {
            let q = pktgen::netns::run(
                "tc",
                &["-n", &tb.client().netns, "qdisc", "show", "dev", "eth0"],
            )
            .expect("tc");
            assert!(q.contains("netem") && q.contains("delay 5ms"), "{q}");
            tb.down().expect("down");
        }
        Err(e @ TestbedError::ShapeUnsupported(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("--shape") && msg.contains("netem"), "{msg}");
        }
        Err(e) => panic!("unexpected: {e}"),
    }
    assert_clean(&name, &opts.state_dir, "after the netem case");

    // A rate alone works on any kernel; the CNF namespace forwards by itself (no data plane).
    opts.shape = Some("rate=50mbit".parse().expect("shape"));
    let tb = Testbed::up(&edge_chain(), &opts).expect("up");
    assert!(tb.metrics_addr().is_none() && tb.dataplane_pid().is_none());
    let q = pktgen::netns::run(
        "tc",
        &["-n", &tb.client().netns, "qdisc", "show", "dev", "eth0"],
    )
    .expect("tc");
    assert!(q.contains("50Mbit"), "client side shaped: {q}");
    let q = pktgen::netns::run(
        "tc",
        &["-n", tb.bridge_netns(), "qdisc", "show", "dev", "client"],
    )
    .expect("tc");
    assert!(q.contains("50Mbit"), "bridge side shaped: {q}");
    let backend = tb.servers()[1].ipv4_addr().expect("v4").to_string();
    let ping = pktgen::netns::exec_in(
        &tb.client().netns,
        "ping",
        &["-c", "1", "-W", "2", &backend],
    )
    .expect("the kernel forwards client -> server");
    assert!(ping.contains("1 received"), "{ping}");
    down_and_clean(tb, &name, &opts, "after down");
}

/// Every file in `examples/` goes up, carries the traffic planned from its manifest and comes down clean: each
/// flow gets what the chain says (allowed ones delivered, denied ones dropped), and the allowed flows are the
/// control that the chain is not simply dropping everything.
#[test]
fn every_example_chain_carries_its_planned_traffic_and_down_leaves_nothing() {
    if !testkit::can_run_netns_tests("every_example_chain_carries_its_planned_traffic") {
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    let mut failures = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).expect("example");
        let chain = crds::manifest::parse_single_chain(&text).expect("valid example");
        let (mut opts, name) = options(&format!("x{i}"));
        opts.secrets = testbed::secrets::Secrets::from_manifest(&text).expect("secrets");
        let label = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let tb = match Testbed::up(&chain, &opts) {
            Ok(tb) => tb,
            Err(e) => {
                failures.push(format!("{label}: up: {e}"));
                assert_clean(
                    &name,
                    &opts.state_dir,
                    &format!("{label}: after a failed up"),
                );
                continue;
            }
        };
        // The up text's listeners are real: every server port answers HTTP in its namespace.
        for e in tb.plan().endpoints.iter().filter(|e| !e.ports.is_empty()) {
            let addr = e
                .ipv4_addr()
                .map(IpAddr::V4)
                .or(e.ipv6_addr().map(IpAddr::V6));
            let addr = addr.expect("a server address");
            for p in &e.ports {
                tcp_server(&e.netns, SocketAddr::new(addr, *p));
            }
        }
        let t = short_traffic();
        match testbed::traffic::run(&tb, &t, |_| {}) {
            Ok(r) => {
                for f in &r.flows {
                    if !f.ok {
                        failures.push(format!(
                            "{label}: {}",
                            testbed::traffic::flow_lines(f).join(" | ")
                        ));
                    }
                }
                let delivered = r
                    .flows
                    .iter()
                    .any(|f| f.flow.expect == testbed::flows::Expect::Delivered && f.delivered > 0);
                if !delivered {
                    failures.push(format!("{label}: no allowed flow was delivered"));
                }
                // both families and both protocols are exercised where the plan has them
                let udp = r
                    .flows
                    .iter()
                    .any(|f| f.flow.protocol == testbed::flows::Proto::Udp);
                if !udp {
                    failures.push(format!("{label}: no UDP flow"));
                }
            }
            Err(e) => failures.push(format!("{label}: traffic: {e}")),
        }
        down_and_clean(tb, &name, &opts, &format!("{label}: after down"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A gRPC client on a data plane's Unix socket (as the operator reaches a sidecar, but without TLS: the testbed's
/// socket is 0600 and local, like `cnf-dataplane --grpc-socket` documents).
fn grpc_unix(
    rt: &tokio::runtime::Runtime,
    sock: PathBuf,
) -> dataplane_api::dataplane_client::DataplaneClient<tonic::transport::Channel> {
    let channel = rt
        .block_on(dataplane_api::unix::connect_unix(sock))
        .expect("connect to the data plane's socket");
    dataplane_api::dataplane_client::DataplaneClient::new(channel)
}

/// Sidecar mode (`spec.target`): the chain runs in the server ("pod") namespace on its own eth0, not in the
/// router; the planned flows get what the chain says (allowed delivered, denied dropped), the pod's counters
/// count them, a live update to the pod's data plane takes effect on the next packets (TCP to the still allowed
/// port is the control), and down removes everything.
#[test]
fn sidecar_mode_runs_the_chain_on_the_server_namespaces_own_interface() {
    if !testkit::can_run_netns_tests("sidecar_mode_runs_the_chain") {
        return;
    }
    let chain = example("sidecar-web.yaml");
    let (opts, name) = options("sc");
    let tb = Testbed::up(&chain, &opts).expect("up");
    let sink = tb.sink().expect("the sink is the pod").clone();
    assert_eq!(tb.plan().sidecar_pods, vec![sink.netns.clone()]);
    assert_eq!(tb.sidecars().len(), 1);
    assert_eq!(tb.sidecars()[0].netns, sink.netns);
    assert!(
        tb.attachments().iter().any(|(i, _)| i == "eth0"),
        "{:?}",
        tb.attachments()
    );
    // XDP on the pod's eth0, nothing on the router's interfaces.
    let links = |ns: &str| {
        let out = Command::new("ip")
            .args(["-n", ns, "-d", "link", "show"])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(links(&sink.netns).contains("xdp"), "{}", links(&sink.netns));
    assert!(
        !links(tb.cnf_netns()).contains("xdp"),
        "{}",
        links(tb.cnf_netns())
    );
    assert!(
        metrics::scrape(tb.cnf_netns(), tb.metrics_addr().expect("metrics")).is_err(),
        "no data plane in the router namespace"
    );

    let t = short_traffic();
    let r = testbed::traffic::run(&tb, &t, |_| {}).expect("traffic");
    let bad: Vec<String> = r
        .flows
        .iter()
        .filter(|f| !f.ok)
        .map(|f| testbed::traffic::flow_lines(f).join(" | "))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let expect = |e| r.flows.iter().filter(move |f| f.flow.expect == e);
    assert!(
        expect(testbed::flows::Expect::Delivered).any(|f| f.delivered > 0),
        "control: an allowed flow was delivered"
    );
    assert!(
        expect(testbed::flows::Expect::Dropped).count() > 0
            && expect(testbed::flows::Expect::Dropped).all(|f| f.delivered == 0),
        "denied flows: nothing delivered"
    );
    let fw = counter(&tb, "fw");
    assert!(
        fw.passed > 0 && fw.drops.values().sum::<u64>() > 0,
        "the pod's counters: {fw:?}"
    );

    // Live update through the pod's gRPC socket: UDP to 8080 becomes denied.
    let client = tb.client().netns.clone();
    let to4 = SocketAddr::new(IpAddr::V4(sink.ipv4_addr().expect("v4")), 8080);
    let rx = udp_receiver(&sink.netns, to4, Duration::from_millis(700));
    udp_send(&client, to4, 20);
    assert_eq!(
        rx.join().expect("receiver").len(),
        20,
        "generation 1 allows"
    );
    let mut spec = chain.spec.clone();
    let fw_cfg = spec.functions[0].firewall.as_mut().expect("fw");
    fw_cfg.rules[1].action = crds::Action::Deny;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut grpc = grpc_unix(&rt, tb.sidecars()[0].grpc_socket.clone());
    // the data plane names the chain as its manifest does (no namespace: empty)
    let chain_ns = chain.metadata.namespace.clone().unwrap_or_default();
    let applied = rt
        .block_on(grpc.apply_chain(dataplane_api::ApplyChainRequest {
            chain: Some(dataplane_api::ChainRef {
                namespace: chain_ns.clone(),
                name: "sidecar-web".into(),
            }),
            generation: 2,
            spec_json: serde_json::to_string(&spec).expect("json"),
        }))
        .expect("generation 2 applied")
        .into_inner();
    assert_eq!(applied.applied_generation, 2);
    let before = counter(&tb, "fw");
    let rx = udp_receiver(&sink.netns, to4, Duration::from_millis(700));
    udp_send(&client, to4, 20);
    assert!(
        rx.join().expect("receiver").is_empty(),
        "generation 2 denies"
    );
    let after = counter(&tb, "fw");
    assert_eq!(
        after.drops.values().sum::<u64>() - before.drops.values().sum::<u64>(),
        20,
        "{after:?}"
    );
    assert_eq!(
        tcp_request(&client, to4).expect("TCP to 8080 is still allowed"),
        to4.ip().to_string()
    );
    assert!(tb.scrape_metrics().expect("metrics").contains(&format!(
        "buildvnf_applied_generation{{namespace=\"{chain_ns}\",chain=\"sidecar-web\"}} 2"
    )));
    drop(grpc);
    down_and_clean(tb, &name, &opts, "after down");
}

/// In `ns`: a TCP listener on `addr` that answers each connection's first line with `pong from ADDR`, until
/// `idle` passes without a connection; returns how many connections it served.
fn tcp_pong(ns: &str, addr: SocketAddr, idle: Duration) -> std::thread::JoinHandle<usize> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        pktgen::netns::enter(&ns).expect("enter");
        let l = std::net::TcpListener::bind(addr).expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        tx.send(()).expect("ready");
        let mut served = 0;
        let mut last = Instant::now();
        while last.elapsed() < idle {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).expect("blocking");
                    c.set_read_timeout(Some(Duration::from_secs(2)))
                        .expect("timeout");
                    let mut buf = [0u8; 64];
                    let _ = c.read(&mut buf);
                    let _ = c.write_all(format!("pong from {addr}\n").as_bytes());
                    served += 1;
                    last = Instant::now();
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        served
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("listener bound");
    h
}

/// In `ns`: connect to `to`, send a line, return the whole answer or the error.
fn tcp_call(ns: &str, to: SocketAddr) -> Result<String, String> {
    pktgen::netns::spawn_in(ns, move || -> Result<String, String> {
        let mut c =
            TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        c.write_all(b"ping\n").map_err(|e| e.to_string())?;
        let mut s = String::new();
        c.read_to_string(&mut s).map_err(|e| e.to_string())?;
        Ok(s)
    })
    .join()
    .expect("caller thread")
    .expect("enter ns")
}

/// In `ns`: from a socket bound to `from`, send `n` datagrams to `to`, each waiting up to 500 ms for an answer
/// In `ns`: `n` datagrams from `from` to `to`, each waiting up to 500 ms for an answer from `to`; how many
/// were answered.
fn udp_calls(ns: &str, from: SocketAddr, to: SocketAddr, n: usize) -> usize {
    testkit::udp_calls(ns, from, to, n, Duration::from_millis(500))
}

/// Issue 18: in sidecar mode the chain also sees what the pod sends (TC egress), so a stateful default-deny
/// firewall in front of the pod admits the replies of the connections the pod opens itself, and only those.
#[test]
fn sidecar_mode_admits_the_replies_of_the_pods_own_flows_and_only_those() {
    if !testkit::can_run_netns_tests("sidecar_mode_admits_the_replies") {
        return;
    }
    // examples/sidecar-web.yaml: stateful, default deny, TCP/UDP to 8080 allowed, UDP to 9000 denied by rule;
    // the pod calls services on the client's side (ports 7000 and 7001), which no inbound rule allows
    let chain = example("sidecar-web.yaml");
    let (opts, name) = options("eg");
    let tb = Testbed::up(&chain, &opts).expect("up");
    let pod = tb.sink().expect("the sink is the pod").clone();
    let client = tb.client().clone();
    let pod4 = IpAddr::V4(pod.ipv4_addr().expect("pod v4"));
    let client4 = IpAddr::V4(client.ipv4_addr().expect("client v4"));

    // the pod's sidecar attached vnf_egress to the TC egress of eth0 (bpftool 7.1 does not list TCX links)
    let log = std::fs::read_to_string(&tb.sidecars()[0].log).expect("sidecar log");
    assert!(log.contains("TC egress on eth0"), "{log}");

    // control: an allowed inbound flow passes, so what follows cannot pass by dropping everything
    let to8080 = SocketAddr::new(pod4, 8080);
    assert_eq!(
        tcp_request(&client.netns, to8080).expect("TCP to 8080 is allowed"),
        pod4.to_string()
    );

    // TCP the pod opens: its SYN-ACK and the answer come back through the default-deny firewall
    let svc_tcp = SocketAddr::new(client4, 7000);
    let srv = tcp_pong(&client.netns, svc_tcp, Duration::from_secs(3));
    assert_eq!(
        tcp_call(&pod.netns, svc_tcp).as_deref(),
        Ok(format!("pong from {svc_tcp}\n").as_str()),
        "the pod's own TCP connection gets its replies"
    );
    assert_eq!(srv.join().expect("server"), 1);

    // UDP the pod opens: every datagram's echo comes back
    let svc_udp = SocketAddr::new(client4, 7001);
    let pod_sock = SocketAddr::new(pod4, 41_001);
    let echo = testkit::udp_echo(&client.netns, svc_udp, Duration::from_millis(1500));
    assert_eq!(
        udp_calls(&pod.netns, pod_sock, svc_udp, 10),
        10,
        "the pod's own UDP flow gets its replies"
    );
    assert_eq!(echo.join().expect("echo"), 10);

    // new inbound flows are still judged by the rules: from another client port to the port of the pod's own
    // flow (not a reply of it), to the denied UDP port 9000, TCP to a port the pod listens on that no rule allows
    let fw_before = counter(&tb, "fw");
    let rx = udp_receiver(&pod.netns, pod_sock, Duration::from_millis(700));
    assert_eq!(
        udp_calls(&client.netns, SocketAddr::new(client4, 7002), pod_sock, 5),
        0
    );
    assert!(
        rx.join().expect("receiver").is_empty(),
        "a new inbound flow to the port of the pod's own flow is dropped"
    );
    let to9000 = SocketAddr::new(pod4, 9000);
    let rx = udp_receiver(&pod.netns, to9000, Duration::from_millis(700));
    udp_send(&client.netns, to9000, 10);
    assert!(
        rx.join().expect("receiver").is_empty(),
        "UDP to the denied port is dropped"
    );
    let to7100 = SocketAddr::new(pod4, 7100);
    let pod_srv = tcp_pong(&pod.netns, to7100, Duration::from_secs(3));
    assert!(
        tcp_call(&client.netns, to7100).is_err(),
        "TCP to a port no rule allows is dropped"
    );
    assert_eq!(pod_srv.join().expect("pod server"), 0);
    let fw_after = counter(&tb, "fw");
    assert!(
        fw_after.drops.values().sum::<u64>() >= fw_before.drops.values().sum::<u64>() + 15,
        "the firewall dropped the new inbound flows: {fw_before:?} -> {fw_after:?}"
    );

    down_and_clean(tb, &name, &opts, "after down");
}

/// Issue 18: a translating function in front of the pod (examples/sidecar-portmap.yaml: DNAT 10.0.0.80:80 to the
/// pod's 8080, TCP and UDP): the pod's replies leave by its egress, where the chain translates them back, so the
/// client sees them come from the address and port it called.
#[test]
fn sidecar_mode_translates_the_pods_replies_back_to_the_address_the_client_called() {
    if !testkit::can_run_netns_tests("sidecar_mode_translates_the_pods_replies") {
        return;
    }
    let chain = example("sidecar-portmap.yaml");
    let (opts, name) = options("pm");
    let tb = Testbed::up(&chain, &opts).expect("up");
    let client = tb.client().clone();
    let service = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 80)), 80);
    let pod = tb
        .servers()
        .into_iter()
        .find(|s| s.ipv4_addr() == Some(Ipv4Addr::new(10, 0, 2, 10)))
        .expect("the DNAT target is the pod")
        .clone();
    assert_eq!(tb.plan().sidecar_pods, vec![pod.netns.clone()]);

    // TCP: the connection only opens if the SYN-ACK comes from 10.0.0.80:80 (the client's kernel matches the
    // reply to the socket by the address it connected to); the listener on 8080 answers
    assert_eq!(
        tcp_request(&client.netns, service).expect("TCP to the mapped port"),
        "10.0.2.10",
        "served by the pod's 8080, through the mapping"
    );
    // UDP: every echo comes from the address and port the client sent to
    let from = SocketAddr::new(IpAddr::V4(client.ipv4_addr().expect("v4")), 41_080);
    assert_eq!(
        udp_calls(&client.netns, from, service, 10),
        10,
        "UDP replies from {service}"
    );
    // control: a port neither mapped nor allowed gets nothing
    let other = SocketAddr::new(service.ip(), 81);
    assert_eq!(
        udp_calls(&client.netns, SocketAddr::new(from.ip(), 41_081), other, 3),
        0
    );
    let portmap = counter(&tb, "portmap");
    assert!(
        portmap.passed >= 11,
        "the mapping translated the inbound packets: {portmap:?}"
    );

    // the planned flows of the example (vnfctl testbed traffic) get what the chain says
    let r = testbed::traffic::run(&tb, &short_traffic(), |_| {}).expect("traffic");
    let bad: Vec<String> = r
        .flows
        .iter()
        .filter(|f| !f.ok)
        .map(|f| testbed::traffic::flow_lines(f).join(" | "))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    down_and_clean(tb, &name, &opts, "after down");
}
