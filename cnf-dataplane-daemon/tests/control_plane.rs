//! A chain never cuts its own control plane (`ebpf/lib/control.h`): with a default-deny firewall on the
//! pod's interface, on XDP and on TC, a client in another namespace opens TCP connections to the daemon's
//! metrics port (`GET /readyz` answers 200, as the kubelet's probe would) and its gRPC port (its TLS
//! server answers our bytes), while the same client's TCP to another listening port of the pod and its
//! UDP to the metrics port are dropped (control cases), and UDP the firewall allows still arrives. The
//! passes are counted in `buildvnf_chain_packets_total{result="control_plane"}`, and GetStatus lists the
//! endpoints as allowed.

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Namespaces, in_ns, link_info, metric, scrape_metrics, sh};
use daemon::Daemon;
use dataplane_api::GetStatusRequest;

const POD: &str = "10.79.0.1";
const METRICS_PORT: u16 = 9090;
const GRPC_PORT: u16 = 50051;
/// A port of the pod the chain must keep closed (a test listener accepts there).
const OTHER_PORT: u16 = 7000;
/// A UDP port the firewall allows.
const ALLOWED_UDP: u16 = 53;

fn chain(hook: &str) -> String {
    format!(
        "apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata: {{name: cp, namespace: lab}}
spec:
  functions:
    - name: fw
      type: firewall
      firewall:
        defaultAction: deny
        rules: [{{action: allow, protocol: udp, destinationPorts: [{{from: {ALLOWED_UDP}}}]}}]
  interfaces: {{ingress: cnf0}}
  dataplane: {{hook: {hook}}}
"
    )
}

fn pod(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 79, 0, 1], port))
}

/// A TCP connection from the client to `port` of the pod that sends `request` and reads what comes back
/// until the server closes (or 5 s pass): the bytes, or why nothing came.
fn exchange(cli: &str, port: u16, request: &[u8]) -> Result<Vec<u8>, String> {
    in_ns(cli, || {
        let mut c = TcpStream::connect_timeout(&pod(port), Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        c.write_all(request).map_err(|e| format!("send: {e}"))?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if got.is_empty() => return Err(format!("read: {e}")),
                Err(_) => break,
            }
        }
        Ok(got)
    })
}

/// Datagrams from the client to `port` on the pod, and how many a socket bound there received.
fn udp_delivered(cnf: &str, cli: &str, port: u16, n: usize) -> usize {
    let rx = in_ns(cnf, || {
        UdpSocket::bind(pod(port)).expect("bind udp in the pod")
    });
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    in_ns(cli, || {
        let tx = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for _ in 0..n {
            tx.send_to(b"control-plane test", pod(port)).expect("send");
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut got = 0;
    let mut buf = [0u8; 64];
    while rx.recv(&mut buf).is_ok() {
        got += 1;
    }
    got
}

fn status(sock: &std::path::Path) -> dataplane_api::DataplaneStatus {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = daemon::grpc_unix(&rt, sock.to_path_buf());
    rt.block_on(client.get_status(GetStatusRequest {}))
        .expect("status")
        .into_inner()
}

fn run(hook: &str) {
    let ns = Namespaces::new(&[&format!("cp{hook}d"), &format!("cp{hook}c")]);
    let (cnf, cli) = (ns.0[0].clone(), ns.0[1].clone());
    ns.link(0, "cnf0", &format!("{POD}/24"), 1, "cli0", "10.79.0.2/24");
    // static neighbours: the test does not depend on what the chain does with ARP
    let (_, cnf_mac) = link_info(&cnf, "cnf0");
    let (_, cli_mac) = link_info(&cli, "cli0");
    let mac = |m: [u8; 6]| m.map(|b| format!("{b:02x}")).join(":");
    sh(
        Some(&cli),
        &[
            "ip",
            "neigh",
            "replace",
            POD,
            "lladdr",
            &mac(cnf_mac),
            "dev",
            "cli0",
            "nud",
            "permanent",
        ],
    );
    sh(
        Some(&cnf),
        &[
            "ip",
            "neigh",
            "replace",
            "10.79.0.2",
            "lladdr",
            &mac(cli_mac),
            "dev",
            "cnf0",
            "nud",
            "permanent",
        ],
    );
    let work = std::env::temp_dir().join(format!("vnf-cp-{hook}-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let config = work.join("chain.yaml");
    std::fs::write(&config, chain(hook)).expect("chain");
    let tls = daemon::tls_dir(&work);
    let sock = work.join("dp.sock");
    let metrics_listen = format!("0.0.0.0:{METRICS_PORT}");
    let grpc_listen = format!("0.0.0.0:{GRPC_PORT}");
    let mut d = Daemon::start(
        &cnf,
        &[
            "--config",
            config.to_str().expect("path"),
            "--metrics-listen",
            &metrics_listen,
            "--grpc-listen",
            &grpc_listen,
            "--tls-dir",
            tls.to_str().expect("path"),
            "--grpc-socket",
            sock.to_str().expect("path"),
        ],
        work.join("daemon.log"),
    );
    let log = d.text();
    assert!(
        log.contains(&format!("metrics {POD}:{METRICS_PORT} (cnf0)"))
            && log.contains(&format!("grpc {POD}:{GRPC_PORT} (cnf0)"))
            && log.contains("always passes the chain"),
        "{log}"
    );
    let other = in_ns(&cnf, || {
        TcpListener::bind(pod(OTHER_PORT)).expect("bind other port")
    });

    // the control plane passes: the probe's request and the operator's port
    let probe = exchange(
        &cli,
        METRICS_PORT,
        b"GET /readyz HTTP/1.0\r\nHost: pod\r\n\r\n",
    )
    .map(|b| String::from_utf8_lossy(&b).into_owned());
    assert!(
        probe
            .as_deref()
            .is_ok_and(|r| r.starts_with("HTTP/1.0 200 OK") && r.ends_with("ready")),
        "{hook}: /readyz through a default-deny chain: {probe:?}\n{}",
        scrape_metrics(&cnf, &format!("127.0.0.1:{METRICS_PORT}"))
    );
    // bytes that are no TLS record get the TLS server's alert (content type 21) back
    let grpc = exchange(&cli, GRPC_PORT, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        grpc.as_ref().map(|b| b.first().copied()),
        Ok(Some(21)),
        "{hook}: the gRPC port's answer: {grpc:?}"
    );
    // the chain still filters: allowed UDP arrives, the rest of the pod is closed
    assert_eq!(
        udp_delivered(&cnf, &cli, ALLOWED_UDP, 10),
        10,
        "{hook}: allowed UDP"
    );
    assert_eq!(
        udp_delivered(&cnf, &cli, METRICS_PORT, 20),
        0,
        "{hook}: UDP to the metrics port must be dropped"
    );
    let refused = in_ns(&cli, || {
        TcpStream::connect_timeout(&pod(OTHER_PORT), Duration::from_secs(2)).map(|_| ())
    });
    assert!(
        refused.is_err(),
        "{hook}: TCP to another port of the pod must be dropped"
    );
    other.set_nonblocking(true).expect("nonblocking listener");
    assert!(
        other.accept().is_err(),
        "{hook}: nothing reached port {OTHER_PORT}"
    );

    let m = scrape_metrics(&cnf, &format!("127.0.0.1:{METRICS_PORT}"));
    let cp = metric(
        &m,
        "buildvnf_chain_packets_total{namespace=\"lab\",chain=\"cp\",result=\"control_plane\"}",
    )
    .expect("control_plane counter");
    // two handshakes with data: at least SYN, ACK and a data segment each
    assert!(cp >= 6.0, "{hook}: control_plane passes {cp}\n{m}");
    let denied = metric(
        &m,
        "buildvnf_function_drops_total{namespace=\"lab\",chain=\"cp\",function=\"fw\",type=\"firewall\",reason=\"firewall_default\"}",
    )
    .expect("default drops");
    assert!(
        denied >= 21.0,
        "{hook}: 20 datagrams and a SYN denied, {denied}\n{m}"
    );

    let st = status(&sock);
    for (listener, ep) in [
        ("metrics", format!("{POD}:{METRICS_PORT}")),
        ("grpc", format!("{POD}:{GRPC_PORT}")),
    ] {
        let e = st
            .control_plane
            .iter()
            .find(|e| e.endpoint == ep)
            .unwrap_or_else(|| panic!("{ep} in {:?}", st.control_plane));
        assert_eq!(
            (e.listener.as_str(), e.interface.as_str(), e.allowed),
            (listener, "cnf0", true),
            "{e:?}"
        );
    }
    assert!(
        st.control_plane.iter().all(|e| e.allowed),
        "{:?}",
        st.control_plane
    );
    d.signal(libc::SIGTERM);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_default_deny_chain_keeps_the_probes_and_grpc_on_xdp() {
    if !common::privileged() {
        return;
    }
    run("xdp");
}

#[test]
fn a_default_deny_chain_keeps_the_probes_and_grpc_on_tc() {
    if !common::privileged() {
        return;
    }
    run("tc");
}
