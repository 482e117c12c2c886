//! The `pktgen` binary: bad flags fail with a clear message, and `recv`/`send` run end to end
//! between two network namespaces with `--json` summaries (that part needs root).

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pktgen::netns::NetnsPair;

const BIN: &str = env!("CARGO_BIN_EXE_pktgen");

fn fails_with(args: &[&str], needle: &str) {
    let out = Command::new(BIN).args(args).output().expect("run pktgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    assert!(
        stderr.contains(needle),
        "{args:?}: stderr lacks {needle:?}:\n{stderr}"
    );
}

#[test]
fn bad_flags_exit_non_zero_with_a_clear_message() {
    // Only loopback destinations: none of these may send anything anyway.
    fails_with(&["send"], "--dst");
    fails_with(&["send", "--dst", "nowhere"], "invalid socket address");
    fails_with(
        &["send", "--dst", "127.0.0.1:9", "--size", "0"],
        "out of range",
    );
    fails_with(
        &["send", "--dst", "127.0.0.1:9", "--size", "64,x"],
        "bad packet size",
    );
    fails_with(&["send", "--dst", "127.0.0.1:9", "--rate=-5"], "--rate");
    fails_with(&["send", "--dst", "127.0.0.1:9", "--flows", "0"], "--flows");
    fails_with(
        &["send", "--dst", "127.0.0.1:9", "--duration", "0"],
        "--duration",
    );
    fails_with(
        &[
            "send",
            "--dst",
            "127.0.0.1:9",
            "--pattern",
            "pareto",
            "--pareto-shape",
            "0.5",
            "--count",
            "1",
        ],
        "Pareto shape must be > 1",
    );
    fails_with(
        &[
            "send",
            "--dst",
            "[::1]:9",
            "--src",
            "127.0.0.1",
            "--count",
            "1",
        ],
        "different address families",
    );
    fails_with(
        &["recv", "--bind", "127.0.0.1:0", "--window", "100"],
        "power of two",
    );
    fails_with(
        &["send", "--dst", "127.0.0.1:9", "--tcp", "--rtt"],
        "cannot be used with",
    );
    fails_with(
        &[
            "send-xdp",
            "--dev",
            "lo",
            "--src",
            "127.0.0.1:1",
            "--dst",
            "127.0.0.1:2",
            "--dst-mac",
            "zz",
            "--count",
            "1",
        ],
        "bad MAC address",
    );
    fails_with(
        &[
            "send-xdp",
            "--dev",
            "lo",
            "--src",
            "127.0.0.1:1",
            "--dst",
            "127.0.0.1:2",
            "--dst-mac",
            "02:00:00:00:00:02",
            "--count",
            "1",
            "--batch",
            "300",
        ],
        "--batch",
    );
    // AF_XDP sender and XDP sink: every one of these fails before a socket or program exists.
    fn xsk<'a>(dst: &'a str, mac: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "send-xsk",
            "--dev",
            "lo",
            "--src",
            "127.0.0.1:1",
            "--dst",
            dst,
            "--dst-mac",
            mac,
            "--count",
            "1",
        ];
        v.extend_from_slice(extra);
        v
    }
    let (v4, mac) = ("127.0.0.1:2", "02:00:00:00:00:02");
    fails_with(&xsk(v4, "02:00", &[]), "bad MAC address '02:00'");
    fails_with(&xsk("[::1]:2", mac, &[]), "different address families");
    fails_with(&xsk(v4, mac, &["--ring-size", "1000"]), "power of two");
    fails_with(&xsk(v4, mac, &["--size", "70000"]), "out of range");
    fails_with(&xsk(v4, mac, &["--flows", "0"]), "--flows");
    fails_with(&xsk(v4, mac, &["--rate=-1"]), "--rate");
    fails_with(
        &["recv-xdp", "--dev", "pktgen-no-such-if0"],
        "interface pktgen-no-such-if0",
    );
    fails_with(
        &["recv-xdp", "--dev", "lo", "--duration", "0"],
        "--duration must be a positive number",
    );
    fails_with(&["recv-xdp", "--dev", "lo", "--mode", "turbo"], "--mode");
    fails_with(&["bogus"], "unrecognized subcommand");
}

fn ns_cmd(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, BIN]).args(args);
    c
}

#[test]
fn recv_and_send_binaries_report_json_summaries() {
    if !testkit::can_run_netns_tests("recv_and_send_binaries_report_json_summaries") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let mut recv = ns_cmd(
        &pair.b,
        &[
            "recv",
            "--bind",
            "0.0.0.0:9000",
            "--idle",
            "0.5",
            "--duration",
            "20",
            "--json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start receiver");
    // Wait for "listening on ..." so the sender does not race the bind.
    let mut rx_err = BufReader::new(recv.stderr.take().expect("stderr"));
    let mut first = String::new();
    rx_err.read_line(&mut first).expect("receiver stderr");
    assert!(first.starts_with("listening on"), "{first}");
    let rx_err = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = rx_err.read_to_string(&mut rest);
        rest
    });

    let start = Instant::now();
    let send = ns_cmd(
        &pair.a,
        &[
            "send",
            "--dst",
            "192.0.2.2:9000",
            "--rate",
            "2000",
            "--count",
            "3000",
            "--flows",
            "3",
            "--size",
            "imix",
            "--json",
        ],
    )
    .output()
    .expect("run sender");
    let send_err = String::from_utf8_lossy(&send.stderr);
    assert!(send.status.success(), "sender failed: {send_err}");
    assert!(
        start.elapsed() >= Duration::from_millis(1_400),
        "3000 packets at 2000 pps took under 1.5 s"
    );
    assert!(
        send_err.contains("total"),
        "no progress line on stderr: {send_err}"
    );
    let s: serde_json::Value = serde_json::from_slice(&send.stdout).expect("sender JSON");
    assert_eq!(s["sent"], 3000);
    assert_eq!(s["per_flow"], serde_json::json!([1000, 1000, 1000]));

    let out = recv
        .wait_with_output()
        .expect("receiver exits after --idle");
    let recv_err = rx_err.join().expect("stderr reader");
    assert!(out.status.success(), "receiver failed: {recv_err}");
    assert!(
        recv_err.contains("p99"),
        "no progress line on stderr: {recv_err}"
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("receiver JSON");
    assert_eq!(r["unique"], 3000);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["bytes"], s["bytes"]);
    assert_eq!(r["streams"].as_array().map(Vec::len), Some(3));
    let lat = &r["latency"];
    let p = |k: &str| lat[k].as_u64().unwrap_or(0);
    assert!(
        p("p50_ns") > 0 && p("p50_ns") <= p("p99_ns") && p("p99_ns") <= p("max_ns"),
        "{lat}"
    );
}

#[test]
fn send_xsk_and_recv_xdp_binaries_agree() {
    if !testkit::can_run_netns_tests("send_xsk_and_recv_xdp_binaries_agree") {
        return;
    }
    let pair = NetnsPair::create().expect("namespaces");
    let sink = ns_cmd(
        &pair.b,
        &[
            "recv-xdp",
            "--dev",
            &pair.veth_b,
            "--idle",
            "0.5",
            "--duration",
            "20",
            "--json",
            "-q",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start sink");
    // The sink is ready once B's veth shows an XDP program.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pktgen::netns::run("ip", &["-n", &pair.b, "link", "show", "dev", &pair.veth_b])
        .expect("ip link")
        .contains("xdp")
    {
        assert!(Instant::now() < deadline, "sink never attached");
        std::thread::sleep(Duration::from_millis(10));
    }
    let send = ns_cmd(
        &pair.a,
        &[
            "send-xsk",
            "--dev",
            &pair.veth_a,
            "--src",
            "[2001:db8::1]:40000",
            "--dst",
            "[2001:db8::2]:9000",
            "--dst-mac",
            pktgen::netns::MAC_B,
            "--rate",
            "10000",
            "--count",
            "2000",
            "--flows",
            "2",
            "--stream-id",
            "7",
            "--size",
            "64,1500",
            "--per-size",
            "10",
            "--json",
        ],
    )
    .output()
    .expect("run send-xsk");
    let send_err = String::from_utf8_lossy(&send.stderr);
    assert!(send.status.success(), "send-xsk failed: {send_err}");
    let s: serde_json::Value = serde_json::from_slice(&send.stdout).expect("send-xsk JSON");
    assert_eq!(s["sent"], 2000, "{s}");
    assert_eq!(s["dropped"], 0, "{s}");
    assert_eq!(s["per_flow"], serde_json::json!([1000, 1000]));
    assert_eq!(s["xsk"]["tx_invalid_descs"], 0, "{s}");
    let out = sink.wait_with_output().expect("sink output");
    assert!(
        out.status.success(),
        "recv-xdp failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k: serde_json::Value = serde_json::from_slice(&out.stdout).expect("recv-xdp JSON");
    assert_eq!(k["packets"], 2000, "{k}");
    assert_eq!(k["mode"], "native");
    assert_eq!(k["action"], "drop");
    // 1000 frames of 14 + 72 bytes (64 raised to the IPv6 minimum) and 1000 of 14 + 1500
    assert_eq!(k["bytes"], 1000 * 86 + 1000 * 1514, "{k}");
    let ids: Vec<u64> = k["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|x| x["stream_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, vec![7, 8]);
    let cpu_sum: u64 = k["per_cpu"]
        .as_array()
        .expect("per_cpu")
        .iter()
        .map(|c| c["packets"].as_u64().expect("packets"))
        .sum();
    assert_eq!(cpu_sum, 2000);
}
