//! The cnf-dataplane daemon as a process: bad config exits 64 naming the field; in a namespace it attaches
//! the chain, serves gRPC on a 0600 Unix socket and /metrics, counts real packets, applies new generations
//! live, refuses invalid and stale ones (the old chain keeps running), and detaches on SIGTERM.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Namespaces, enter, metric, signal_and_wait, xdp_on};
use dataplane_api::dataplane_client::DataplaneClient;
use dataplane_api::{ApplyChainRequest, ChainRef, GetStatusRequest, Hook};
use tonic::transport::Channel;

use daemon::bin;

#[test]
fn bad_config_exits_64_and_names_the_field() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/invalid/06-cidr-host-bits.yaml");
    let out = Command::new(bin())
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "spec.functions[0].firewall.rules[0].sourceCIDRs[0]: \"10.1.2.3/8\" has host bits set"
        ),
        "{err}"
    );
    let out = Command::new(bin())
        .args(["--config", "/nonexistent.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
}

static CHAIN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| testkit::fixtures::deny_udp9_chain("t", "cnf0"));

/// Kills the daemon if the test fails before it is stopped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connect(rt: &tokio::runtime::Runtime, sock: PathBuf) -> DataplaneClient<Channel> {
    daemon::grpc_unix(rt, sock)
}

fn scrape(ns: &str) -> String {
    common::scrape_metrics(ns, "127.0.0.1:9090")
}

fn send_udp(ns: &str, dst: &str, port: u16, count: usize) {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for _ in 0..count {
                sock.send_to(b"build-vnf", (dst, port)).expect("send");
                std::thread::sleep(Duration::from_millis(2));
            }
        })
        .join()
        .expect("sender thread")
    });
    std::thread::sleep(Duration::from_millis(200));
}

fn spec_json(rule_port: u16) -> String {
    let chain = crds::manifest::parse_single_chain(
        &CHAIN.replace("from: 9", &format!("from: {rule_port}")),
    )
    .expect("chain");
    serde_json::to_string(&chain.spec).expect("json")
}

#[test]
fn daemon_runs_a_chain_live_updates_it_and_detaches() {
    if !common::privileged() {
        return;
    }
    let namespaces = Namespaces::new(&["dcnf", "dcli"]);
    let (cnf, cli) = (namespaces.0[0].as_str(), namespaces.0[1].as_str());
    namespaces.link(0, "cnf0", "10.77.0.1/24", 1, "cli0", "10.77.0.2/24");
    let dir = std::env::temp_dir().join(format!("vnfd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let config = dir.join("chain.yaml");
    std::fs::write(&config, &*CHAIN).expect("write chain");
    let sock = dir.join("dp.sock");

    let child = Command::new("ip")
        .args(["netns", "exec", cnf])
        .args([
            bin(),
            "--config",
            config.to_str().expect("path"),
            "--grpc-socket",
            sock.to_str().expect("path"),
            "--metrics-listen",
            "127.0.0.1:9090",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    let mut daemon = Daemon(child);
    common::wait_for_path(&mut daemon.0, &sock);
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the control socket is private to root");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = connect(&rt, sock.clone());
    let status = rt
        .block_on(client.get_status(GetStatusRequest {}))
        .expect("status")
        .into_inner();
    assert_eq!(status.applied_generation, 1);
    assert_eq!(status.attachments.len(), 1);
    assert_eq!(status.attachments[0].interface, "cnf0");
    assert_ne!(status.attachments[0].hook, Hook::None as i32);
    assert!(xdp_on(cnf, "cnf0"), "XDP attached on cnf0");

    // Real packets: 20 to the denied port are dropped by rule 0, 7 to another port pass.
    send_udp(cli, "10.77.0.1", 9, 20);
    send_udp(cli, "10.77.0.1", 10, 7);
    let m = scrape(cnf);
    let drops = "buildvnf_function_drops_total{namespace=\"lab\",chain=\"t\",function=\"fw\",type=\"firewall\",reason=\"firewall_rule\"}";
    assert_eq!(metric(&m, drops), Some(20.0), "{m}");
    let mon_in = "buildvnf_function_packets_total{namespace=\"lab\",chain=\"t\",function=\"mon\",type=\"monitor\"}";
    assert!(metric(&m, mon_in).is_some_and(|n| n >= 7.0), "{m}");
    assert!(
        m.contains(
            "buildvnf_function_latency_seconds_bucket{namespace=\"lab\",chain=\"t\",function=\"fw\""
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "buildvnf_attach_info{namespace=\"lab\",chain=\"t\",interface=\"cnf0\",hook=\"xdp-"
        ),
        "{m}"
    );

    // Generation 2 moves the rule to port 10: applied live; "fw" keeps its name, so its counters carry on.
    let apply = |client: &mut DataplaneClient<Channel>, generation: i64, spec_json: String| {
        rt.block_on(client.apply_chain(ApplyChainRequest {
            chain: Some(ChainRef {
                namespace: "lab".into(),
                name: "t".into(),
            }),
            generation,
            spec_json,
        }))
    };
    let r = apply(&mut client, 2, spec_json(10))
        .expect("apply generation 2")
        .into_inner();
    assert!(r.changed);
    assert_eq!(r.applied_generation, 2);
    send_udp(cli, "10.77.0.1", 9, 5);
    send_udp(cli, "10.77.0.1", 10, 3);
    let m = scrape(cnf);
    assert_eq!(metric(&m, drops), Some(23.0), "{m}");
    assert_eq!(
        metric(
            &m,
            "buildvnf_applied_generation{namespace=\"lab\",chain=\"t\"}"
        ),
        Some(2.0),
        "{m}"
    );
    // The same generation again is a no-op.
    assert!(
        !apply(&mut client, 2, spec_json(10))
            .expect("idempotent")
            .into_inner()
            .changed
    );

    // Invalid specs and a generation's other spec are refused; generation 2 keeps running.
    let dup = spec_json(10).replace("\"name\":\"mon\"", "\"name\":\"fw\"");
    let e = apply(&mut client, 3, dup).expect_err("duplicate names");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message()
            .contains("spec.functions[1].name: duplicate function name \"fw\""),
        "{}",
        e.message()
    );
    // (generation 1 ran port 9: generation 1 with another spec is refused, as a generation names one spec)
    let e = apply(&mut client, 1, spec_json(11)).expect_err("another spec for generation 1");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message()
            .contains("generation 1 is already applied with another spec"),
        "{}",
        e.message()
    );
    let status = rt
        .block_on(client.get_status(GetStatusRequest {}))
        .expect("status")
        .into_inner();
    assert_eq!(status.applied_generation, 2);
    assert!(!status.last_error.is_empty());
    send_udp(cli, "10.77.0.1", 10, 2);
    assert_eq!(
        metric(&scrape(cnf), drops),
        Some(25.0),
        "generation 2 still drops port 10"
    );

    // SIGTERM: clean exit, nothing left attached.
    let code = signal_and_wait(&mut daemon.0, libc::SIGTERM);
    assert!(code.success(), "exit status {code}");
    assert!(!xdp_on(cnf, "cnf0"), "XDP detached");
    assert!(!sock.exists(), "socket removed");
    let _ = std::fs::remove_dir_all(&dir);
}

fn args<'a>(config: &'a Path, metrics: &'a str) -> [&'a str; 4] {
    [
        "--config",
        config.to_str().expect("path"),
        "--metrics-listen",
        metrics,
    ]
}

/// The chain of [`CHAIN`] under another name with `dataplane` settings `dataplane`.
fn chain_named(name: &str, dataplane: &str) -> String {
    CHAIN.replace("name: t,", &format!("name: {name},")) + &format!("  dataplane: {dataplane}\n")
}

#[test]
fn a_daemon_refuses_an_interface_that_already_carries_another_chain() {
    if !common::privileged() {
        return;
    }
    for (hook, found) in [
        ("xdp", "xdp program id"),
        ("tc", "tc ingress (tcx) program id"),
    ] {
        let namespaces = Namespaces::new(&[&format!("occ{hook}")]);
        let cnf = namespaces.0[0].as_str();
        common::sh(
            Some(cnf),
            &[
                "ip", "link", "add", "cnf0", "type", "veth", "peer", "name", "cnf1",
            ],
        );
        for dev in ["cnf0", "cnf1"] {
            common::sh(Some(cnf), &["ip", "link", "set", dev, "up"]);
        }
        let dir = std::env::temp_dir().join(format!("vnfocc-{hook}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let first = dir.join("first.yaml");
        std::fs::write(&first, chain_named("t", &format!("{{hook: {hook}}}"))).expect("write");
        let start = |config: &Path, metrics: &'static str, log: &str| {
            daemon::Daemon::start(cnf, &args(config, metrics), dir.join(log))
        };
        let mut owner = start(&first, "127.0.0.1:9090", "first.log");
        // another chain (hook auto: it used to fall back to TC beside an XDP chain) is refused
        let second = dir.join("second.yaml");
        std::fs::write(&second, chain_named("other", "{hook: auto}")).expect("write");
        let (status, text) = daemon::Daemon::run_to_exit(
            cnf,
            &args(&second, "127.0.0.1:9091"),
            dir.join("second.log"),
        );
        assert_eq!(status.code(), Some(69), "{hook}: {text}");
        assert!(
            text.contains(&format!("interface cnf0 already carries {found}"))
                && text.contains("(vnf_entry), which is not this chain's"),
            "{hook}: {text}"
        );
        assert!(!text.contains("attached to"), "{hook}: {text}");
        // the first chain is untouched and still the only one
        let m = common::scrape_metrics(cnf, "127.0.0.1:9090");
        assert!(m.contains("buildvnf_attach_info"), "{m}");
        let text = owner.signal(libc::SIGTERM);
        assert!(text.contains("chain detached"), "{text}");
        // with the interface free again, the same daemon starts
        let mut d = start(&second, "127.0.0.1:9091", "third.log");
        d.signal(libc::SIGTERM);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
