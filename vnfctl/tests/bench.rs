//! The benchmark suite with real packets: each kernel peer does what the chain does, and a `--quick` run reports
//! every scenario with sane numbers and writes its files.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pktgen::netns::enter;
use vnfctl::bench::bed::{Bed, CNF_IN, probe_flow, sh};
use vnfctl::bench::peers::kernel_peers;
use vnfctl::bench::run::{apply, probe_caps};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn edge() -> crds::VNFChainSpec {
    let text =
        std::fs::read_to_string(repo().join("examples/edge-chain.yaml")).expect("edge chain");
    crds::manifest::parse_single_chain(&text)
        .expect("valid")
        .spec
}

/// Root and iproute2 plus the peers' tools (testkit's rule: a skip prints why, and fails under CI=true).
fn can_run(test: &str) -> bool {
    testkit::root_and_tools(
        test,
        &["ip", "tc", "nft", "ipvsadm", "xdp-filter", "ethtool"],
    )
}

/// Runs `f` in a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns).expect("enter namespace");
        f()
    })
}

/// Sends `n` UDP datagrams from the generator to `dst` and returns the sources the server saw on `port`.
fn udp_through(bed: &Bed, dst: SocketAddr, port: u16, n: usize) -> Vec<SocketAddr> {
    let rx = in_ns(&bed.srv_ns, move || {
        let s = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port))).expect("bind server");
        s.set_read_timeout(Some(Duration::from_millis(400)))
            .expect("timeout");
        let mut seen = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            seen.push(from);
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(100));
    let src = bed.flow.src;
    in_ns(&bed.gen_ns, move || {
        let s = UdpSocket::bind(SocketAddr::V4(src)).expect("bind client");
        for _ in 0..n {
            s.send_to(b"probe", dst).expect("send");
        }
    })
    .join()
    .expect("sender");
    rx.join().expect("receiver")
}

#[test]
fn nftables_peer_drops_what_the_firewall_denies_and_translates_what_it_allows() {
    if !can_run("nftables_peer") {
        return;
    }
    let spec = edge();
    let bed = Bed::create(probe_flow(&spec).expect("flow")).expect("bed");
    let peers = kernel_peers(&spec, CNF_IN).expect("peers");
    // Before any rule: plain forwarding delivers to the pre-NAT address (the server also owns it).
    let dst = SocketAddr::V4(bed.flow.dst);
    let seen = udp_through(&bed, SocketAddr::from(([10, 0, 0, 200], 9998)), 9998, 5);
    assert_eq!(
        seen.len(),
        5,
        "plain forwarding must deliver port 9998: {seen:?}"
    );

    let caps = probe_caps(&bed);
    apply(&bed, &peers, &caps, true, false, false).expect("apply nft");
    // allowed: UDP 9999 to the DNAT service → 10.0.2.10:9999, source translated to 10.0.0.1:20000-59999
    let seen = udp_through(&bed, dst, bed.flow.server.port(), 5);
    assert_eq!(seen.len(), 5, "allowed UDP 9999 lost: {seen:?}");
    for s in &seen {
        assert_eq!(s.ip().to_string(), "10.0.0.1", "not SNATed: {s}");
        assert!(
            (20000..=59999).contains(&s.port()),
            "SNAT port outside the manifest's range: {s}"
        );
    }
    // denied: UDP 9998 (default deny), the same path that delivered before
    let seen = udp_through(&bed, SocketAddr::from(([10, 0, 0, 200], 9998)), 9998, 5);
    assert!(
        seen.is_empty(),
        "the firewall's default deny let {seen:?} through"
    );
    let counters = sh(
        &bed.cnf_ns,
        "nft",
        &["list", "table", "inet", vnfctl::bench::peers::NFT_TABLE],
    )
    .expect("list");
    assert!(counters.contains("dnat ip to 10.0.2.10:9999"), "{counters}");
}

#[test]
fn ipvs_peer_balances_the_vip_over_the_weighted_backends() {
    if !can_run("ipvs_peer") {
        return;
    }
    let spec = edge();
    let bed = Bed::create(probe_flow(&spec).expect("flow")).expect("bed");
    let peers = kernel_peers(&spec, CNF_IN).expect("peers");
    for b in ["10.0.2.1", "10.0.2.2", "10.0.2.3"] {
        sh(
            &bed.srv_ns,
            "ip",
            &["addr", "add", &format!("{b}/32"), "dev", "lo"],
        )
        .expect("backend address");
    }
    let caps = probe_caps(&bed);
    if let Some(why) = &caps.no_ipvs {
        // The kernel lacks IPVS: the suite must say so instead of measuring something else.
        assert!(why.contains("CONFIG_IP_VS"), "{why}");
        let _ = writeln!(
            std::io::stderr(),
            "ipvs_peer: {why}; checked that the suite reports it"
        );
        return;
    }
    let notes = apply(&bed, &peers, &caps, false, true, false).expect("apply ipvs");
    assert!(notes.is_empty(), "{notes:?}");
    // each backend answers with its own address
    let server = in_ns(&bed.srv_ns, || {
        let l = TcpListener::bind("0.0.0.0:8080").expect("listen");
        l.set_nonblocking(false).expect("blocking");
        for c in l.incoming().take(40) {
            let mut c = c.expect("accept");
            let me = c.local_addr().expect("local").ip().to_string();
            c.write_all(me.as_bytes()).expect("reply");
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let answers = in_ns(&bed.gen_ns, move || {
        let mut out = Vec::new();
        for _ in 0..40 {
            let mut s = connect_vip();
            let mut buf = String::new();
            s.read_to_string(&mut buf).expect("read");
            out.push(buf);
        }
        out
    })
    .join()
    .expect("client");
    server.join().expect("server");
    let count = |a: &str| answers.iter().filter(|x| x.as_str() == a).count();
    let (b1, b2, b3) = (count("10.0.2.1"), count("10.0.2.2"), count("10.0.2.3"));
    assert_eq!(
        b1 + b2 + b3,
        40,
        "every connection reaches a backend: {answers:?}"
    );
    assert!(
        b1 > 0 && b2 > 0 && b3 > 0,
        "all three backends serve: {b1}/{b2}/{b3}"
    );
    assert!(
        b1 > b2 && b1 > b3,
        "weight 2 gets the most connections: {b1}/{b2}/{b3}"
    );
}

/// A new TCP connection to the edge chain's VIP 10.0.0.100:80 (a new source port, so a new flow).
fn connect_vip() -> TcpStream {
    let s = TcpStream::connect_timeout(
        &"10.0.0.100:80".parse().expect("vip"),
        Duration::from_secs(2),
    )
    .expect("connect VIP");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s
}

#[test]
fn quick_suite_reports_every_scenario_and_writes_its_files() {
    if !can_run("quick_suite") {
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let child = Command::new(env!("CARGO_BIN_EXE_vnfctl"))
        .args([
            "bench",
            "examples/edge-chain.yaml",
            "--quick",
            "--sizes",
            "64,256",
            "--out",
        ])
        .arg(out.path())
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vnfctl bench starts");
    let pid = child.id();
    let o = child.wait_with_output().expect("vnfctl bench runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "vnfctl bench failed\n{stdout}\n{stderr}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("bench.json")).expect("bench.json"),
    )
    .expect("JSON");
    let scenarios = json["scenarios"].as_array().expect("scenarios");
    let by_name = |n: &str| {
        scenarios
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("no scenario {n}"))
    };
    // every scenario is listed; those the edge chain has a peer for ran, the others say why not
    let ipvs_ran = json["caps"]["no_ipvs"].is_null();
    for n in [
        "ceiling",
        "chain-xdp",
        "chain-capped",
        "chain-tc",
        "kernel-forward",
        "kernel-peers",
        "nftables",
        "ipvs",
        "kernel-ratelimit",
        "userspace",
    ] {
        if n == "ipvs" && !ipvs_ran {
            let why = by_name(n)["skipped"]
                .as_str()
                .expect("ipvs says why it did not run");
            assert!(why.contains("CONFIG_IP_VS"), "{why}");
            continue;
        }
        let s = by_name(n);
        assert!(s["skipped"].is_null(), "{n} skipped: {}", s["skipped"]);
        let sizes = s["sizes"].as_array().expect("sizes");
        assert_eq!(sizes.len(), 2, "{n}: one row per size");
        for z in sizes {
            // the user-space tier's worker is starved by an unpaced generator in one long call (its
            // unpaced point can deliver nothing on 2 busy cores): its figure is the paced sweep's, which
            // must deliver; every other row delivers unpaced
            let delivered = if n == "userspace" {
                z["mpps"].as_f64().is_some_and(|m| m > 0.0)
            } else {
                z["received"].as_u64().expect("received") > 0
            };
            assert!(delivered, "{n}: nothing received: {z}");
            // the sink also counts the odd stray frame of the bed itself (IPv6 neighbour discovery and such)
            assert!(
                z["sent"].as_u64().expect("sent") + 64 >= z["received"].as_u64().expect("received"),
                "{n}: more received than sent: {z}"
            );
            let ratio = z["ratio_ceiling"].as_f64().expect("ratio to the ceiling");
            assert!(ratio > 0.0 && ratio < 2.0, "{n}: ratio {ratio}");
            assert!(
                z["ratio_kernel"]
                    .as_f64()
                    .expect("ratio to the kernel path")
                    > 0.0
            );
            assert!(z["cpu_ns_per_pkt"].as_f64().expect("cpu") >= 0.0);
            // both CPUs: the middle box on its own CPU, and a generator per receive queue
            for k in ["own_mpps", "two_queue_mpps"] {
                assert!(
                    z[k].as_f64().is_some_and(|m| m > 0.0),
                    "{n}: {k} missing or zero: {z}"
                );
            }
            let layout = if ["ceiling", "chain-xdp", "chain-capped", "userspace"].contains(&n) {
                "shared"
            } else {
                "own"
            };
            assert_eq!(z["layout"], layout, "{n}: headline layout");
            let sweep = z["sweep"].as_array().expect("sweep");
            assert_eq!(sweep.len(), 3, "{n}: one point per offered load");
            let best = sweep
                .iter()
                .map(|p| p[1].as_f64().expect("delivered"))
                .fold(0.0, f64::max);
            let mpps = z["mpps"].as_f64().expect("mpps");
            assert!(
                mpps >= best && mpps >= z["unpaced_mpps"].as_f64().expect("unpaced"),
                "{n}: Mpps is the best rate"
            );
            let lat = &z["latency"];
            assert!(
                lat["received"].as_u64().expect("latency received") > 0,
                "{n}: no latency samples: {lat}"
            );
            let (p50, p99) = (
                lat["p50_us"].as_f64().expect("p50"),
                lat["p99_us"].as_f64().expect("p99"),
            );
            assert!(p50 > 0.0 && p50 <= p99, "{n}: p50 {p50} p99 {p99}");
        }
    }
    assert_eq!(
        by_name("ceiling")["sizes"][0]["ratio_ceiling"].as_f64(),
        Some(1.0)
    );
    assert!(
        by_name("xdp-filter")["skipped"]
            .as_str()
            .is_some_and(|w| !w.is_empty()),
        "xdp-filter must say why it did not run"
    );
    // chain-bench's method beside the ceiling and plain forwarding, from the same run
    let refs = json["references"].as_array().expect("references");
    for row in ["ceiling", "kernel-forward"] {
        let r = refs
            .iter()
            .find(|r| r["row"] == row)
            .unwrap_or_else(|| panic!("no reference beside {row}: {refs:?}"));
        assert!(r["mpps"].as_f64().expect("mpps") > 0.0, "{r}");
    }
    // every frame is the template again: NAT translates on its established path, not its miss path
    for n in ["chain-xdp", "chain-capped"] {
        let nat = &by_name(n)["nat_established"];
        let (hits, pkts) = (
            nat[0].as_u64().expect("hits"),
            nat[1].as_u64().expect("packets"),
        );
        assert!(
            pkts > 1000 && hits * 100 >= pkts * 99,
            "{n}: NAT established {hits} of {pkts}"
        );
    }
    // the rate limiter caps the chain and tc police alike (100 kpps + burst per the manifest)
    for n in ["chain-xdp", "chain-capped", "kernel-ratelimit"] {
        let mpps = by_name(n)["sizes"][0]["mpps"].as_f64().expect("mpps");
        assert!(
            mpps < 0.2,
            "{n}: {mpps} Mpps exceeds the manifest's 100 kpps limit"
        );
    }
    assert!(
        !json["gaps"].as_array().expect("gaps").is_empty(),
        "differences are reported"
    );
    for f in [
        "table.txt",
        "latency-cdf.png",
        "latency-cdf.svg",
        "latency-percentiles.png",
        "latency-percentiles.svg",
        "throughput.png",
        "throughput.svg",
    ] {
        let len = std::fs::metadata(out.path().join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "{f} missing or empty");
    }
    let svg = std::fs::read_to_string(out.path().join("latency-cdf.svg")).expect("svg");
    assert!(
        svg.contains("chain-xdp") && svg.contains("nftables"),
        "series names in the CDF"
    );
    assert!(
        stdout.contains("chain-xdp")
            && stdout.contains("x ceil")
            && stdout.contains("load average"),
        "table on stdout:\n{stdout}"
    );
    // the bed is gone
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    let ns = String::from_utf8_lossy(&ns.stdout);
    assert!(
        !ns.contains(&format!("vb{pid}-")),
        "namespaces left behind:\n{ns}"
    );
}

#[test]
fn quick_suite_measures_a_firewall_only_chain_against_xdp_filter() {
    if !can_run("quick_suite_firewall") {
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_vnfctl"))
        .args([
            "bench",
            "examples/dns-firewall.yaml",
            "--quick",
            "--sizes",
            "64",
            "--out",
        ])
        .arg(out.path())
        .current_dir(repo())
        .output()
        .expect("vnfctl bench runs");
    assert!(
        o.status.success(),
        "vnfctl bench failed\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("bench.json")).expect("bench.json"),
    )
    .expect("JSON");
    let scenarios = json["scenarios"].as_array().expect("scenarios");
    // the probe flow is the UDP port the firewall allows; xdp-filter gets the same rules and traffic
    for n in ["chain-xdp", "xdp-filter"] {
        let s = scenarios
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("no scenario {n}"));
        assert!(s["skipped"].is_null(), "{n} skipped: {}", s["skipped"]);
        let z = &s["sizes"][0];
        assert!(
            z["received"].as_u64().expect("received") > 0,
            "{n}: the allowed flow got through: {z}"
        );
        assert!(
            z["latency"]["received"].as_u64().expect("latency") > 0,
            "{n}: latency samples: {z}"
        );
    }
}
