//! Sidecar mode's TC egress through the daemon (the engine's part is cnf-dataplane's tests/sidecar_egress.rs):
//! the daemon attaches egress by itself for a chain with `spec.target`, and again when it re-adopts a kept chain.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Namespaces, privileged};

/// In `ns`: `n` datagrams from `from` to `to`, each waiting 300 ms for an answer from `to`; how many were
/// answered.
fn calls(ns: &str, from: SocketAddr, to: SocketAddr, n: usize) -> usize {
    common::udp_calls(ns, from, to, n, Duration::from_millis(300))
}

/// A sidecar-mode chain (spec.target) for the daemon: stateful default deny, UDP to 8080 allowed.
const SIDECAR_CHAIN: &str = "apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata: {name: eg, namespace: shop}
spec:
  target:
    podSelector: {matchLabels: {app: web}}
  functions:
    - name: fw
      type: firewall
      firewall:
        defaultAction: deny
        stateful: true
        rules: [{action: allow, protocol: udp, destinationPorts: [{from: 8080}]}]
  interfaces: {ingress: eth0}
";

/// The daemon derives sidecar mode from spec.target (no flag): it attaches egress at start; a kept chain's
/// egress link is not pinned, so it goes with the daemon (pod entries recorded before stay in the pinned
/// conntrack; a flow opened meanwhile gets no replies: fail-closed) and the daemon that re-adopts the chain
/// attaches it again.
#[test]
fn the_daemon_attaches_egress_for_a_target_chain_and_again_when_it_readopts_it() {
    if !privileged() {
        return;
    }
    let ns = Namespaces::new(&["rdc", "rdp"]);
    ns.link(0, "eth0", "10.96.0.1/24", 1, "eth0", "10.96.0.2/24");
    let (client, pod) = (ns.0[0].clone(), ns.0[1].clone());
    let addr = |s: &str| -> SocketAddr { s.parse().expect("addr") };
    let service = addr("10.96.0.1:7001");
    let bpffs = daemon::Bpffs::mount("egress");
    let tmp = std::env::temp_dir().join(format!("vnf-egress-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let config = tmp.join("chain.yaml");
    std::fs::write(&config, SIDECAR_CHAIN).expect("write chain");
    let pins = bpffs.0.join("eg");
    let args = [
        "--config",
        config.to_str().expect("path"),
        "--metrics-listen",
        "127.0.0.1:9090",
        "--on-exit",
        "keep",
        "--pin-dir",
        pins.to_str().expect("path"),
    ];
    let echo = common::udp_echo(&client, service, Duration::from_secs(8));

    let mut first = daemon::Daemon::start(&pod, &args, tmp.join("first.log"));
    assert!(
        first.text().contains("TC egress on eth0"),
        "{}",
        first.text()
    );
    assert_eq!(calls(&pod, addr("10.96.0.2:41000"), service, 3), 3);
    // control: a new inbound flow to the pod's port is no reply
    assert_eq!(
        calls(&client, addr("10.96.0.1:7002"), addr("10.96.0.2:41000"), 2),
        0
    );
    first.signal(libc::SIGTERM);

    // kept: the chain runs on without a daemon; the recorded flow keeps its replies, a new one gets none
    assert_eq!(
        calls(&pod, addr("10.96.0.2:41000"), service, 3),
        3,
        "a recorded flow between the daemons"
    );
    assert_eq!(
        calls(&pod, addr("10.96.0.2:41001"), service, 2),
        0,
        "a flow opened while no daemon runs (fail-closed)"
    );

    let mut second = daemon::Daemon::start(&pod, &args, tmp.join("second.log"));
    let log = second.text();
    assert!(
        log.contains("re-adopted") && log.contains("TC egress on eth0"),
        "{log}"
    );
    assert_eq!(
        calls(&pod, addr("10.96.0.2:41002"), service, 3),
        3,
        "a new flow after the re-adoption"
    );
    // kept again: the pins go with the bpffs (unmounted on drop), the links with the namespaces
    drop(second.signal(libc::SIGTERM));
    assert_eq!(echo.join().expect("echo"), 3 + 3 + 2 + 3);
    let _ = std::fs::remove_dir_all(&tmp);
}
