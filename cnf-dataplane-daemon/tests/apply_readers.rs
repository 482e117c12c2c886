//! Applies never block readers (issue 14): while the daemon applies a 10,000-rule firewall chain over
//! gRPC, `/readyz`, `/healthz`, `/metrics` and GetStatus keep answering within 50 ms (p99 of the polls made
//! during the apply), from the state published before it, and no exported counter goes back.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{Namespaces, enter};
use dataplane_api::{ApplyChainRequest, ChainRef, GetStatusRequest};

static CHAIN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| testkit::fixtures::deny_udp9_chain("big", "rdr0"));

const METRICS: &str = "127.0.0.1:9190";
const RULES: u32 = 10_000;
/// The p99 of the polls made during the apply.
const BOUND: Duration = Duration::from_millis(50);
/// The slowest single poll (generous: 7 test jobs share 2 cores; a reader waiting for the apply waits
/// for seconds).
const WORST: Duration = Duration::from_millis(500);

/// The chain with `RULES` firewall rules: rule i denies UDP to port 9 from host 10.(i/256).(i%256).1/32,
/// so no rule covers another (the shadowing check passes).
fn big_spec_json() -> String {
    let chain = crds::manifest::parse_single_chain(&CHAIN).expect("chain");
    let mut spec = serde_json::to_value(&chain.spec).expect("json");
    let rules: Vec<serde_json::Value> = (0..RULES)
        .map(|i| {
            serde_json::json!({
                "action": "deny",
                "protocol": "udp",
                "sourceCIDRs": [format!("10.{}.{}.1/32", i >> 8, i & 255)],
                "destinationPorts": [{"from": 9}],
            })
        })
        .collect();
    spec["functions"][0]["firewall"]["rules"] = serde_json::Value::Array(rules);
    let spec_typed: crds::VNFChainSpec = serde_json::from_value(spec.clone()).expect("spec");
    crds::validate_spec(&spec_typed).expect("the big chain is valid");
    spec.to_string()
}

/// `GET path` on the metrics port (from a thread inside the daemon's namespace): status line and body.
fn get(path: &str) -> (String, String) {
    let mut c = TcpStream::connect(METRICS).expect("metrics port");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// Every `*_total` counter line of an exposition, by name and labels.
fn counters(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let name = key.split('{').next()?;
            (name.ends_with("_total") || name.ends_with("_count"))
                .then(|| Some((key.to_owned(), value.parse().ok()?)))
                .flatten()
        })
        .collect()
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let i = (samples.len() * 99).div_ceil(100).max(1) - 1;
    samples[i]
}

#[derive(Default)]
struct Polls {
    readyz: Vec<(Instant, Instant)>,
    healthz: Vec<(Instant, Instant)>,
    metrics: Vec<(Instant, Instant)>,
    status: Vec<(Instant, Instant)>,
}

/// Polls the readers until `done` is set, checking each answer and that counters never go back.
fn poll(
    ns: &str,
    sock: std::path::PathBuf,
    done: &std::sync::atomic::AtomicBool,
    baseline: &BTreeMap<String, f64>,
) -> Polls {
    enter(ns);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = daemon::grpc_unix(&rt, sock);
    let mut polls = Polls::default();
    let mut last = baseline.clone();
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let t = Instant::now();
        let (status, body) = get("/readyz");
        polls.readyz.push((t, Instant::now()));
        assert!(status.contains(" 200 "), "readyz: {status} {body}");
        let t = Instant::now();
        let (status, _) = get("/healthz");
        polls.healthz.push((t, Instant::now()));
        assert!(status.contains(" 200 "), "healthz: {status}");
        let t = Instant::now();
        let (status, body) = get("/metrics");
        polls.metrics.push((t, Instant::now()));
        assert!(status.contains(" 200 "), "metrics: {status}");
        let now = counters(&body);
        for (key, before) in &last {
            let after = now.get(key).copied().unwrap_or(0.0);
            assert!(after >= *before, "{key} went back from {before} to {after}");
        }
        last = now;
        let t = Instant::now();
        let s = rt
            .block_on(client.get_status(GetStatusRequest {}))
            .expect("GetStatus")
            .into_inner();
        polls.status.push((t, Instant::now()));
        assert!(
            s.applied_generation == 1 || s.applied_generation == 2,
            "{s:?}"
        );
        assert_eq!(s.attachments.len(), 1, "{s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    polls
}

#[test]
fn readers_answer_within_50ms_while_a_10000_rule_chain_is_applied() {
    if !common::privileged() {
        return;
    }
    let namespaces = Namespaces::new(&["rdcnf", "rdcli"]);
    let (cnf, cli) = (namespaces.0[0].as_str(), namespaces.0[1].as_str());
    namespaces.link(0, "rdr0", "10.78.0.1/24", 1, "rdc0", "10.78.0.2/24");
    let dir = std::env::temp_dir().join(format!("vnfrd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let config = dir.join("chain.yaml");
    std::fs::write(&config, &*CHAIN).expect("write chain");
    let sock = dir.join("dp.sock");
    let _daemon = daemon::Daemon::start(
        cnf,
        &[
            "--config",
            config.to_str().expect("path"),
            "--grpc-socket",
            sock.to_str().expect("path"),
            "--metrics-listen",
            METRICS,
        ],
        dir.join("daemon.log"),
    );
    // counters that move: 10 packets to the denied port
    common::in_ns(cli, || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for _ in 0..10 {
            s.send_to(b"build-vnf", ("10.78.0.1", 9)).expect("send");
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let baseline = counters(&common::in_ns(cnf, || get("/metrics").1));
    assert!(
        baseline.values().any(|v| *v >= 10.0),
        "the packets were counted: {baseline:?}"
    );

    let spec_json = big_spec_json();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (apply, polls) = std::thread::scope(|s| {
        let applier = s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut client = daemon::grpc_unix(&rt, sock.clone());
            let start = Instant::now();
            let r = rt.block_on(client.apply_chain(ApplyChainRequest {
                chain: Some(ChainRef {
                    namespace: "lab".into(),
                    name: "big".into(),
                }),
                generation: 2,
                spec_json: spec_json.clone(),
            }));
            let end = Instant::now();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (r, start, end)
        });
        let poller = s.spawn(|| poll(cnf, sock.clone(), &done, &baseline));
        (
            applier.join().expect("apply thread"),
            poller.join().expect("poll thread"),
        )
    });
    let (result, start, end) = apply;
    let r = result.expect("the 10,000-rule chain applies").into_inner();
    assert!(r.changed && r.applied_generation == 2, "{r:?}");
    let took = end - start;
    println!("MEASURE apply of {RULES} rules took {took:?}");
    assert!(
        took > Duration::from_secs(1),
        "the apply took {took:?}: too short to show readers overlap it"
    );
    let mut slow = Vec::new();
    for (what, samples) in [
        ("/readyz", &polls.readyz),
        ("/healthz", &polls.healthz),
        ("/metrics", &polls.metrics),
        ("GetStatus", &polls.status),
    ] {
        let during: Vec<Duration> = samples
            .iter()
            // started while the apply ran (one that waited for its end counts too)
            .filter(|(t0, _)| *t0 >= start && *t0 <= end)
            .map(|(t0, t1)| *t1 - *t0)
            .collect();
        if during.len() < 10 {
            slow.push(format!(
                "{what}: only {} polls during the apply ({} in all): the readers waited for it",
                during.len(),
                samples.len()
            ));
            continue;
        }
        let p = p99(during.clone());
        let max = during.iter().max().copied().unwrap_or_default();
        println!(
            "MEASURE {what}: {} polls during the apply, p99 {p:?}, max {max:?}",
            during.len()
        );
        if p >= BOUND || max >= WORST {
            slow.push(format!(
                "{what}: p99 {p:?} (bound {BOUND:?}), max {max:?} (bound {WORST:?}) during the apply"
            ));
        }
    }
    assert!(slow.is_empty(), "{}", slow.join("\n"));
    // after the apply: the new generation is what readers see, and it filters as before
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = daemon::grpc_unix(&rt, sock.clone());
    let s = rt
        .block_on(client.get_status(GetStatusRequest {}))
        .expect("status")
        .into_inner();
    assert_eq!(s.applied_generation, 2, "{s:?}");
    let m = common::in_ns(cnf, || get("/metrics").1);
    assert_eq!(
        common::metric(
            &m,
            "buildvnf_applied_generation{namespace=\"lab\",chain=\"big\"}"
        ),
        Some(2.0),
        "{m}"
    );
    for (key, before) in &baseline {
        let after = counters(&m).get(key).copied().unwrap_or(0.0);
        assert!(after >= *before, "{key} went back from {before} to {after}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
