//! The operator's gRPC client (`GrpcSidecars`) against the real `cnf-dataplane` daemon over mutual TLS on
//! the loopback of a network namespace, with the certificates the operator issues (`operator::certs`):
//! status and a live ApplyChain work with the operator's identity, and so does the controller's rollback to the
//! known-good generation of the ConfigMap (issue 12); a chain's certificate signed by the same
//! CA (as issued, and even re-made with clientAuth usage), a certificate of that CA without the operator's
//! identity, one of another CA with it, and a client without a certificate are all refused.
//!
//! Needs root (namespaces, eBPF): skips with a reason otherwise, fails under `CI=true`. The daemon binary is
//! taken from the same target directory (built by `cargo test --workspace`), or built once if absent.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dataplane_api::dataplane_client::DataplaneClient;
use dataplane_api::{ApplyChainRequest, ChainRef, GetStatusRequest};
use operator::certs::{Ca, OPERATOR_IDENTITY, OperatorIdentity, chain_identity};
use operator::sidecar::{GrpcSidecars, PodEndpoint, Sidecars};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const GRPC_PORT: u16 = 50051;
/// The TLS name `GrpcSidecars` expects for pod `t-0` of Service `t-dataplane` in namespace `lab`.
const SERVER_NAME: &str = "t-0.t-dataplane.lab.svc";

static CHAIN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| testkit::fixtures::deny_udp9_firewall("t", "opv0"));

fn sh(args: &[&str]) {
    testkit::sh(None, args);
}

/// A network namespace with a veth pair inside it; deleted on drop (which also removes the veths).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("vnfop-{}-{tag}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        let ns = Self(name);
        sh(&["ip", "-n", &ns.0, "link", "set", "lo", "up"]);
        sh(&[
            "ip", "-n", &ns.0, "link", "add", "opv0", "type", "veth", "peer", "name", "opv1",
        ]);
        sh(&["ip", "-n", &ns.0, "link", "set", "opv0", "up"]);
        sh(&["ip", "-n", &ns.0, "link", "set", "opv1", "up"]);
        ns
    }

    /// Runs `f` on a thread that has entered this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        testkit::in_ns(&self.0, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The daemon: SIGTERM (then SIGKILL) on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill() with the pid of our own child and a standard signal.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA made with rcgen directly: (certificate PEM, key PEM, issuer for hand-made leaves).
fn new_ca(name: &str) -> (String, String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    let key_pem = key.serialize_pem();
    (cert.pem(), key_pem, Issuer::new(params, key))
}

/// A hand-made leaf certificate and key (PEM) signed by `issuer`, with DNS `sans` and URI SANs `uris`.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    sans: &[&str],
    uris: &[&str],
    client: bool,
) -> (String, String) {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    for u in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*u).try_into().expect("URI")));
    }
    params.distinguished_name.push(DnType::CommonName, name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

fn write_tls_dir(dir: &Path, cert: &(String, String), ca: &str) {
    std::fs::create_dir_all(dir).expect("tls dir");
    std::fs::write(dir.join("tls.crt"), &cert.0).expect("tls.crt");
    std::fs::write(dir.join("tls.key"), &cert.1).expect("tls.key");
    std::fs::write(dir.join("ca.crt"), ca).expect("ca.crt");
}

fn endpoint() -> PodEndpoint {
    PodEndpoint {
        pod: "t-0".into(),
        ip: "127.0.0.1".into(),
        service: "t-dataplane".into(),
        namespace: "lab".into(),
    }
}

fn spec_json(rule_port: u16) -> String {
    let chain = crds::manifest::parse_single_chain(
        &CHAIN.replace("from: 9", &format!("from: {rule_port}")),
    )
    .expect("chain");
    serde_json::to_string(&chain.spec).expect("json")
}

fn apply_request(generation: i64, rule_port: u16) -> ApplyChainRequest {
    ApplyChainRequest {
        chain: Some(ChainRef {
            namespace: "lab".into(),
            name: "t".into(),
        }),
        generation,
        spec_json: spec_json(rule_port),
    }
}

/// The request the controller's rollback sends (operator/src/controller.rs, `push`): the known-good chain
/// (CHAIN as `generation`) rendered into the ConfigMap, read back as the controller reads it.
fn rollback_to_known_good(generation: i64) -> ApplyChainRequest {
    let mut chain = crds::manifest::parse_single_chain(&CHAIN).expect("chain");
    chain.metadata.generation = Some(generation);
    chain.metadata.uid = Some("uid-t".into());
    let cm = operator::render::config_map(&chain, &chain).expect("ConfigMap");
    let known_good = operator::controller::known_good_from(&cm).expect("known-good chain");
    assert_eq!(known_good.metadata.generation, Some(generation));
    operator::controller::apply_request(&known_good).expect("request")
}

/// Starts the daemon in `ns` serving mTLS with the material of `server_dir`; waits for its gRPC port.
fn start_daemon(ns: &Netns, bin: &Path, tmp: &Path, server_dir: &Path) -> (Daemon, PathBuf) {
    let config = tmp.join("chain.yaml");
    std::fs::write(&config, &*CHAIN).expect("chain.yaml");
    let log_path = tmp.join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let grpc_listen = format!("127.0.0.1:{GRPC_PORT}");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(bin)
        .arg("--config")
        .arg(&config)
        .args([
            "--grpc-listen",
            &grpc_listen,
            "--metrics-listen",
            "127.0.0.1:9090",
        ])
        .arg("--tls-dir")
        .arg(server_dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start cnf-dataplane");
    let mut daemon = Daemon(child);
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!(
                "cnf-dataplane exited early with {status}:\n{}",
                read_log(&log_path)
            );
        }
        if ns.run(|| TcpStream::connect(("127.0.0.1", GRPC_PORT)).is_ok()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "cnf-dataplane did not listen on {grpc_listen}:\n{}",
            read_log(&log_path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (daemon, log_path)
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    let _ = std::fs::File::open(path).map(|mut f| f.read_to_string(&mut text));
    text
}

/// A client with a fixed certificate that trusts `ca`.
fn client(cert: &(String, String), ca: &str) -> GrpcSidecars {
    GrpcSidecars::from_pem(&cert.0, &cert.1, ca, GRPC_PORT)
}

/// Asserts that `client` can neither read the status nor apply anything.
async fn refused(what: &str, client: &GrpcSidecars, ep: &PodEndpoint) {
    let status = client.status(ep).await;
    assert!(status.is_err(), "{what} was served GetStatus: {status:?}");
    let applied = client.apply(ep, apply_request(9, 11)).await;
    assert!(applied.is_err(), "{what} could apply: {applied:?}");
    let detached = client.detach(ep).await;
    assert!(detached.is_err(), "{what} could detach: {detached:?}");
}

#[test]
fn grpc_sidecars_talk_mtls_to_the_real_daemon_and_strangers_are_refused() {
    if !testkit::privileged() {
        return;
    }
    let bin = testkit::daemon::binary();
    let tmp =
        testkit::TempDir(std::env::temp_dir().join(format!("vnfop-mtls-{}", std::process::id())));
    std::fs::create_dir_all(&tmp.0).expect("tmp dir");

    // The operator's CA, loaded the way the operator loads its CA Secret; the test keeps the rcgen issuer to
    // hand-make certificates the operator would never issue.
    let (ca_pem, ca_key, issuer) = new_ca("build-vnf test CA");
    let ca = Arc::new(Ca::from_pem("test/ca", &ca_pem, &ca_key, None).expect("CA"));
    let (other_ca, _, other_issuer) = new_ca("some other CA");
    let now = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    // The sidecar's Secret, as the operator issues it for chain t in namespace lab.
    let server = ca
        .issue_chain("lab", "t", now, 90 * day)
        .expect("chain certificate");
    let server_dir = tmp.0.join("server");
    write_tls_dir(
        &server_dir,
        &(server.cert_pem.clone(), server.key_pem.clone()),
        ca.bundle(),
    );
    // Another chain's Secret in another namespace, same CA.
    let other_chain = ca
        .issue_chain("team-b", "edge", now, 90 * day)
        .expect("chain certificate");

    let ns = Netns::new("mtls");
    let (mut daemon, log_path) = start_daemon(&ns, &bin, &tmp.0, &server_dir);

    let result = ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let ep = endpoint();
            let identity = OperatorIdentity::new(ca.clone(), 90 * day).expect("operator identity");
            let operator = GrpcSidecars::new(Arc::new(identity), GRPC_PORT);

            // The operator's identity: status, then generation 2 applied live.
            let status = operator.status(&ep).await.expect("GetStatus over mTLS");
            assert_eq!(status.applied_generation, 1, "{status:?}");
            assert_eq!(status.attachments.len(), 1, "{status:?}");
            assert_eq!(status.attachments[0].interface, "opv0");
            let applied = operator
                .apply(&ep, apply_request(2, 10))
                .await
                .expect("ApplyChain generation 2");
            assert_eq!(applied.applied_generation, 2);
            assert!(applied.changed);
            let status = operator.status(&ep).await.expect("GetStatus after apply");
            assert_eq!(status.applied_generation, 2, "{status:?}");
            // The controller's rollback (issue 12): the known-good chain read back from the ConfigMap the
            // operator renders, sent as the controller sends it. The daemon returns to generation 1.
            let back = rollback_to_known_good(1);
            let returned = operator.apply(&ep, back).await.expect("rollback to 1");
            assert_eq!(returned.applied_generation, 1, "{returned:?}");
            assert!(returned.changed);
            let status = operator.status(&ep).await.expect("GetStatus after rollback");
            assert_eq!(status.applied_generation, 1, "{status:?}");
            assert!(status.last_error.is_empty(), "{status:?}");
            // A refusal comes back as Rejected (the operator rolls back and reports Degraded on it): generation
            // 1 ran another spec (port 9).
            let refused_gen = operator.apply(&ep, apply_request(1, 10)).await;
            assert!(
                matches!(&refused_gen, Err(operator::sidecar::SidecarError::Rejected(m)) if m.contains("generation 1 is already applied with another spec")),
                "{refused_gen:?}"
            );
            // Forward again; a "rollback" to a generation with a spec it never ran there is refused.
            let forward = operator.apply(&ep, apply_request(3, 9)).await;
            assert!(forward.is_ok(), "generation 3 goes forward: {forward:?}");
            let wrong = operator.apply(&ep, rollback_to_known_good(2)).await;
            assert!(
                matches!(&wrong, Err(operator::sidecar::SidecarError::Rejected(m)) if m.contains("already applied with another spec")),
                "generation 2 ran port 10, not the ConfigMap's port 9: {wrong:?}"
            );

            // A chain's certificate, signed by the same CA, as a client: refused (issue 12: one namespace's
            // sidecar certificate could call Detach on another's). Its own and another chain's.
            refused(
                "another chain's certificate",
                &client(
                    &(other_chain.cert_pem.clone(), other_chain.key_pem.clone()),
                    ca.bundle(),
                ),
                &ep,
            )
            .await;
            refused(
                "the sidecar's own certificate",
                &client(
                    &(server.cert_pem.clone(), server.key_pem.clone()),
                    ca.bundle(),
                ),
                &ep,
            )
            .await;
            // Hand-made certificates the operator never issues, all refused:
            let forged = [
                // a chain identity with clientAuth usage: the identity check, not only the usage, refuses it;
                (
                    "a chain identity with clientAuth",
                    leaf(
                        &issuer,
                        "edge-dataplane.team-b",
                        &["x.edge-dataplane.team-b.svc"],
                        &[&chain_identity("team-b", "edge")],
                        true,
                    ),
                ),
                // a certificate of the CA without any URI (what the old chart issued to the operator);
                (
                    "a CA certificate without identity",
                    leaf(
                        &issuer,
                        "buildvnf-operator",
                        &["buildvnf-operator"],
                        &[],
                        true,
                    ),
                ),
                // the operator's identity from another CA.
                (
                    "the operator identity of another CA",
                    leaf(
                        &other_issuer,
                        "buildvnf-operator",
                        &[],
                        &[OPERATOR_IDENTITY],
                        true,
                    ),
                ),
            ];
            for (what, cert) in &forged {
                refused(what, &client(cert, ca.bundle()), &ep).await;
            }
            // Control: a hand-made certificate of the CA with the operator's identity is served, so the
            // refusals above are about identity and CA, not about how the test makes certificates.
            let positive = leaf(
                &issuer,
                "buildvnf-operator",
                &[],
                &[OPERATOR_IDENTITY],
                true,
            );
            client(&positive, ca.bundle())
                .status(&ep)
                .await
                .expect("the operator identity of the CA is served");

            // No client certificate at all: refused.
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca.bundle()))
                .domain_name(SERVER_NAME);
            let anonymous = async {
                let channel = Endpoint::from_shared(format!("https://127.0.0.1:{GRPC_PORT}"))?
                    .timeout(Duration::from_secs(5))
                    .tls_config(tls)?
                    .connect()
                    .await?;
                let reply = DataplaneClient::new(channel)
                    .get_status(GetStatusRequest {})
                    .await?;
                Ok::<_, Box<dyn std::error::Error>>(reply.into_inner())
            }
            .await;
            assert!(
                anonymous.is_err(),
                "a client without a certificate was served: {anonymous:?}"
            );

            // The server is who it says it is: trusting only the other CA, the operator refuses it; and the
            // operator refuses the pod when it expects another chain or namespace (server name check).
            let other_trust = leaf(&other_issuer, "op", &[], &[OPERATOR_IDENTITY], true);
            assert!(client(&other_trust, &other_ca).status(&ep).await.is_err());
            for (service, namespace) in [("edge-dataplane", "lab"), ("t-dataplane", "team-b")] {
                let wrong = PodEndpoint {
                    service: service.into(),
                    namespace: namespace.into(),
                    ..endpoint()
                };
                let r = operator.status(&wrong).await;
                assert!(r.is_err(), "served as {service}.{namespace}: {r:?}");
            }

            operator.status(&ep).await.expect("GetStatus at the end")
        })
    });
    assert_eq!(
        result.applied_generation, 3,
        "the refused clients changed nothing (generation 3 was the operator's last)"
    );
    assert!(
        daemon.0.try_wait().ok().flatten().is_none(),
        "cnf-dataplane is still running:\n{}",
        read_log(&log_path)
    );
    let log = read_log(&log_path);
    assert!(
        log.contains("without the identity spiffe://buildvnf.io/operator"),
        "the daemon logs identity refusals:\n{log}"
    );
}
