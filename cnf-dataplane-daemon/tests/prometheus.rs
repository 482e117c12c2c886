//! A real Prometheus (the distribution's `prometheus` 2.x) scrapes the daemon inside the CNF namespace:
//! after a known number of UDP packets, its HTTP API must report exactly that many packets per function
//! and a finite, positive p99 latency from the exported histogram. The CNF's veth starts with transmit
//! checksum offload on; the daemon turns it off at attach, logs it and exports it.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, Namespaces, TempDir, enter, sh};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const METRICS: &str = "127.0.0.1:9090";
const PROM_WEB: &str = "127.0.0.1:9091";
/// Packets sent (paced, so none are lost on the veth).
const SENT: usize = 400;

static CHAIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    testkit::fixtures::deny_udp9_chain_with(
        "prom",
        "cnf0",
        Some("{protocol: udp, destinationCIDRs: [\"10.78.0.1/32\"]}"),
        Some("telemetry: {latencyHistograms: true, sampleOneIn: 1}"),
    )
});

/// Percent-encodes a query parameter value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET inside namespace `ns`: (status code, body), or None when nothing listens yet.
fn get(ns: &str, addr: &str, path: &str) -> Option<(u16, String)> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            let mut c = TcpStream::connect(addr).ok()?;
            c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            c.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
                .ok()?;
            let mut resp = String::new();
            c.read_to_string(&mut resp).ok()?;
            let code = resp.split(' ').nth(1)?.parse().ok()?;
            let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
            Some((code, body))
        })
        .join()
        .expect("http thread")
    })
}

/// An instant query through Prometheus' HTTP API: the value of each returned series.
fn query(ns: &str, promql: &str) -> Vec<f64> {
    let (code, body) = get(
        ns,
        PROM_WEB,
        &format!("/api/v1/query?query={}", encode(promql)),
    )
    .expect("prometheus answers");
    assert_eq!(code, 200, "{promql}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"]
        .as_array()
        .expect("vector result")
        .iter()
        .map(|r| {
            r["value"][1]
                .as_str()
                .expect("sample value")
                .parse::<f64>()
                .expect("number")
        })
        .collect()
}

/// Polls `promql` until it returns exactly one series with value `want` or `timeout` passes; the last
/// answer either way.
fn wait_for(ns: &str, promql: &str, want: f64, timeout: Duration) -> Vec<f64> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = query(ns, promql);
        if got == [want] || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn spawn_in(ns: &str, program: &str, args: &[&str], log: &Path) -> KillOnDrop {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    KillOnDrop(child)
}

fn send_udp(ns: &str, dst: &str, port: u16, count: usize) {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for _ in 0..count {
                sock.send_to(b"build-vnf prometheus", (dst, port))
                    .expect("send");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .join()
        .expect("sender thread")
    });
}

fn available() -> bool {
    Path::new(PROMETHEUS).exists()
        || testkit::skip(
            "prometheus_scrapes_exact_counts_and_a_p99_latency",
            &format!("{PROMETHEUS} is missing (scripts/install-deps.sh installs it)"),
        )
}

#[test]
fn prometheus_scrapes_exact_counts_and_a_p99_latency() {
    if !common::privileged() || !available() {
        return;
    }
    let namespaces = Namespaces::new(&["pcnf", "pcli"]);
    let (cnf, cli) = (namespaces.0[0].as_str(), namespaces.0[1].as_str());
    // The veth by hand: the client end with tx checksum offload off (as the testbed does), the CNF end left
    // at the kernel default (on), for the data plane to turn off at attach.
    sh(
        None,
        &[
            "ip", "-n", cnf, "link", "add", "cnf0", "type", "veth", "peer", "name", "cli0",
            "netns", cli,
        ],
    );
    for (ns, dev, addr) in [(cnf, "cnf0", "10.78.0.1/24"), (cli, "cli0", "10.78.0.2/24")] {
        sh(Some(ns), &["ip", "addr", "add", addr, "dev", dev]);
        sh(Some(ns), &["ip", "link", "set", dev, "up"]);
    }
    sh(Some(cli), &["ethtool", "-K", "cli0", "tx", "off"]);
    let dir = TempDir(std::env::temp_dir().join(format!("vnfprom-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("tmp dir");
    let config = dir.0.join("chain.yaml");
    std::fs::write(&config, &*CHAIN).expect("write chain");
    let prom_config = dir.0.join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: cnf\n    static_configs: [{{targets: [\"{METRICS}\"]}}]\n"
        ),
    )
    .expect("write prometheus config");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();

    let daemon = spawn_in(
        cnf,
        common::daemon::bin(),
        &[
            "--config",
            &path(&config),
            "--grpc-socket",
            &path(&dir.0.join("dp.sock")),
            "--metrics-listen",
            METRICS,
        ],
        &dir.0.join("daemon.log"),
    );
    let prometheus = spawn_in(
        cnf,
        PROMETHEUS,
        &[
            &format!("--config.file={}", path(&prom_config)),
            &format!("--storage.tsdb.path={}", path(&dir.0.join("tsdb"))),
            &format!("--web.listen-address={PROM_WEB}"),
        ],
        &dir.0.join("prometheus.log"),
    );
    let mut procs = [("daemon", daemon), ("prometheus", prometheus)];
    let log_of =
        |name: &str| std::fs::read_to_string(dir.0.join(format!("{name}.log"))).unwrap_or_default();

    // Both up: the daemon attached (/readyz), Prometheus ready and its first scrape of the daemon done.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (addr, path) in [(METRICS, "/readyz"), (PROM_WEB, "/-/ready")] {
        while get(cnf, addr, path).map(|(c, _)| c) != Some(200) {
            for (name, p) in &mut procs {
                if let Ok(Some(st)) = p.0.try_wait() {
                    panic!("{name} exited with {st}: {}", log_of(name));
                }
            }
            assert!(
                Instant::now() < deadline,
                "{addr}{path} not ready: {} {}",
                log_of("daemon"),
                log_of("prometheus")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let up = wait_for(cnf, "up{job=\"cnf\"}", 1.0, Duration::from_secs(30));
    assert_eq!(
        up,
        [1.0],
        "Prometheus scrapes the daemon: {}",
        log_of("prometheus")
    );
    // Counters exist (at zero) before any traffic, so rate()/increase() have a baseline.
    let fw = "function=\"fw\",namespace=\"lab\",chain=\"prom\"";
    let before = wait_for(
        cnf,
        &format!("buildvnf_function_packets_total{{{fw}}}"),
        0.0,
        Duration::from_secs(10),
    );
    assert_eq!(before, [0.0], "no traffic yet");

    let sent_at = Instant::now();
    send_udp(cli, "10.78.0.1", 7000, SENT);
    let n = SENT as f64;
    // Counters read by Prometheus after at least two scrapes once traffic stopped.
    std::thread::sleep(Duration::from_millis(2500));
    for (name, series) in [
        (
            "fw packets",
            format!("buildvnf_function_packets_total{{{fw}}}"),
        ),
        (
            "fw passed",
            format!("buildvnf_function_passed_total{{{fw}}}"),
        ),
        (
            "mon packets",
            "buildvnf_function_packets_total{function=\"mon\",chain=\"prom\"}".to_string(),
        ),
        (
            // the flow's slow-path packets are timed function by function, its fast-path packets
            // as a whole (docs/architecture.md, "Fast path"): together, every packet
            "fw + fast-path latency samples",
            format!(
                "sum(buildvnf_function_latency_seconds_count{{{fw}}}) + \
                 sum(buildvnf_chain_fast_path_latency_seconds_count{{chain=\"prom\"}})"
            ),
        ),
        (
            "classified",
            "buildvnf_chain_packets_total{result=\"classified\",chain=\"prom\"}".to_string(),
        ),
    ] {
        let got = wait_for(cnf, &series, n, Duration::from_secs(10));
        assert_eq!(got, [n], "{name}: Prometheus has {got:?}, {SENT} were sent");
    }
    // The p99 over a window covering the traffic, from the exported buckets.
    let window = sent_at.elapsed().as_secs() + 10;
    for metric in [
        format!("buildvnf_function_latency_seconds_bucket{{{fw}}}"),
        "buildvnf_chain_latency_seconds_bucket{chain=\"prom\"}".to_string(),
    ] {
        let q = format!("histogram_quantile(0.99, sum by (le) (increase({metric}[{window}s])))");
        let p99 = query(cnf, &q);
        assert_eq!(p99.len(), 1, "{q}: {p99:?}");
        assert!(
            p99[0].is_finite() && p99[0] > 0.0 && p99[0] < 1.0,
            "{q} = {} s",
            p99[0]
        );
        eprintln!("{q} = {:.3} us", p99[0] * 1e6);
    }
    // The attach facts carry the interface label, and the veth's checksum offload is off.
    let attached = query(
        cnf,
        "buildvnf_attach_info{interface=\"cnf0\",chain=\"prom\"}",
    );
    assert_eq!(attached, [1.0]);
    let csum = query(
        cnf,
        "buildvnf_interface_tx_checksum_offload{interface=\"cnf0\",chain=\"prom\"}",
    );
    assert_eq!(csum, [0.0], "tx checksum offload off on the attached veth");
    let fixed = query(
        cnf,
        "buildvnf_offload_disabled_info{interface=\"cnf0\",driver=\"veth\",feature=\"tx-checksumming\"}",
    );
    assert_eq!(fixed, [1.0], "the data plane says it turned it off");
    assert!(
        log_of("daemon").contains("cnf0: turned tx-checksumming off (veth driver)"),
        "and logs it: {}",
        log_of("daemon")
    );
}
