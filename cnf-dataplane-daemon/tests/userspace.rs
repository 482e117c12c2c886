//! The daemon runs a chain with a user-space function: the AF_XDP tier of the library
//! (cnf-dataplane's tests/userspace.rs test the tier itself) started by the daemon from a manifest.

mod common;

use cnf_dataplane::userspace::Algorithm;
use common::{privileged, signal_and_wait};
#[path = "../../cnf-dataplane/tests/common/tier_lab.rs"]
mod tier_lab;
use tier_lab::*;

/// The daemon runs a manifest with a payload cipher: it attaches the kernel part of the chain, starts
/// the AF_XDP tier with the key from its secrets directory, and what the client sends arrives sealed.
#[test]
fn daemon_runs_a_manifest_with_a_payload_cipher() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    if !privileged() {
        return;
    }
    let lab = Lab::new("ud");
    let dir = std::env::temp_dir().join(format!("vnfud-{}", std::process::id()));
    let secrets = dir.join("secrets/tunnel-key");
    std::fs::create_dir_all(&secrets).expect("tmp dir");
    std::fs::write(secrets.join("key"), KEY).expect("key");
    let manifest = format!(
        "apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata: {{name: sealed, namespace: lab}}
spec:
  classifier: {{protocol: udp, destinationPorts: [{{from: 9000}}]}}
  functions:
    - {{name: mon, type: monitor, monitor: {{}}}}
    - name: seal
      type: payloadCipher
      payloadCipher:
        algorithm: chacha20Poly1305
        direction: encrypt
        keySecretRef: {{name: tunnel-key, key: key}}
    - name: out
      type: forwarder
      forwarder: {{mode: redirect, egressInterface: fe, nextHopMAC: \"{}\"}}
  interfaces: {{ingress: fi, egress: fe}}
  dataplane: {{hook: xdp, userspace: {{backend: afxdp, polling: wakeup}}}}
",
        mac_str(S0_MAC)
    );
    let config = dir.join("chain.yaml");
    std::fs::write(&config, manifest).expect("manifest");
    let sock = dir.join("dp.sock");
    struct Daemon(std::process::Child, std::path::PathBuf);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let child = Command::new("ip")
        .args(["netns", "exec", lab.cnf()])
        .args([
            common::daemon::bin(),
            "--config",
            config.to_str().expect("path"),
            "--grpc-socket",
            sock.to_str().expect("path"),
            "--metrics-listen",
            "127.0.0.1:9090",
            "--secrets-dir",
            dir.join("secrets").to_str().expect("path"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    let mut daemon = Daemon(child, dir.clone());
    common::wait_for_path(&mut daemon.0, &sock);
    let got = exchange(&lab, "10.2.0.1:9000".parse().expect("addr"), 100);
    check_encrypted(&got, 100, Algorithm::ChaCha20Poly1305);
    // the tier's own counters are on /metrics
    let metrics = in_ns(lab.cnf(), || {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect("127.0.0.1:9090").expect("connect /metrics");
        c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut text = String::new();
        c.read_to_string(&mut text).expect("response");
        text
    });
    let labels = "namespace=\"lab\",chain=\"sealed\",interface=\"fi\",queue=\"0\"";
    assert!(
        metrics.contains(&format!(
            "buildvnf_userspace_packets_total{{{labels},direction=\"tx\"}} 100"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "buildvnf_userspace_info{{{labels},polling=\"wakeup\",mode=\"copy\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("buildvnf_userspace_cpu_seconds_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "buildvnf_function_packets_total{namespace=\"lab\",chain=\"sealed\",function=\"seal\",type=\"userspaceHandoff\"} 100"
        ),
        "{metrics}"
    );
    let status = signal_and_wait(&mut daemon.0, libc::SIGTERM);
    let mut err = String::new();
    let _ = daemon
        .0
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut err));
    assert!(status.success(), "{status}: {err}");
    assert!(
        err.contains("user-space tier: 1 function(s) on fi"),
        "{err}"
    );
}
