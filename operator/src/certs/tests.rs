//! Unit tests of certs.rs: what the issued certificates contain (SANs, identity, usages, validity, the CA
//! that signed them), the renewal decision, the Secrets, and the API calls against the in-memory API server
//! of [`crate::fake`] (whose requests also feed the RBAC rules test of fixtures.rs).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::*;
use crate::fake::{ClusterState, Recorded, fake_client};

const DAY: Duration = Duration::from_secs(24 * 3600);
const CA_PATH: &str = "/api/v1/namespaces/buildvnf-system/secrets/buildvnf-operator-ca";
const SECRET_PATH: &str = "/api/v1/namespaces/team-a/secrets/edge-dataplane-tls";

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn der_of(pem_text: &str) -> Vec<u8> {
    first_cert_der(pem_text).expect("a certificate")
}

/// Runs `f` on the parsed certificate.
fn with_cert<T>(pem_text: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = der_of(pem_text);
    let (_, x509) = x509_parser::parse_x509_certificate(&der).expect("parses");
    f(&x509)
}

fn dns_sans(pem_text: &str) -> Vec<String> {
    with_cert(pem_text, |x| {
        x.subject_alternative_name()
            .expect("SAN extension")
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .filter_map(|g| match g {
                        GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// (serverAuth, clientAuth).
fn usages(pem_text: &str) -> (bool, bool) {
    with_cert(pem_text, |x| {
        let eku = x.extended_key_usage().expect("EKU extension").expect("EKU");
        assert!(!eku.value.any, "anyExtendedKeyUsage");
        (eku.value.server_auth, eku.value.client_auth)
    })
}

fn signed_by(leaf: &str, ca: &str) -> bool {
    let ca_der = der_of(ca);
    let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).expect("CA parses");
    with_cert(leaf, |x| {
        x.verify_signature(Some(ca_x509.public_key())).is_ok() && x.issuer() == ca_x509.subject()
    })
}

fn chain(name: &str, ns: &str) -> VNFChain {
    let mut c = VNFChain::new(name, serde_json::from_value(serde_json::json!({
        "functions": [{"name": "fw", "type": "firewall", "firewall": {"defaultAction": "allow"}}]
    })).expect("spec"));
    c.metadata.namespace = Some(ns.into());
    c.metadata.uid = Some(format!("uid-{name}"));
    c
}

#[test]
fn a_chain_certificate_names_its_chain_serves_only_and_chains_to_the_ca() {
    let ca = Ca::generate(t0(), 3650 * DAY).expect("CA");
    let issued = ca
        .issue_chain("team-a", "edge", t0(), 90 * DAY)
        .expect("issue");
    assert_eq!(
        dns_sans(&issued.cert_pem),
        [
            "*.edge-dataplane.team-a.svc",
            "*.edge-dataplane.team-a.svc.cluster.local"
        ]
    );
    assert_eq!(
        uri_sans(&der_of(&issued.cert_pem)),
        ["spiffe://buildvnf.io/ns/team-a/chain/edge"]
    );
    assert_eq!(usages(&issued.cert_pem), (true, false), "serverAuth only");
    with_cert(&issued.cert_pem, |x| {
        assert!(!x.is_ca());
        let (nb, na) = validity_of(x);
        assert_eq!(nb, t0() - BACKDATE);
        assert_eq!(na, t0() + 90 * DAY);
    });
    assert!(signed_by(&issued.cert_pem, ca.cert_pem()));
    let other = Ca::generate(t0(), DAY * 10).expect("other CA");
    assert!(!signed_by(&issued.cert_pem, other.cert_pem()));
    // The key is the certificate's.
    let key = KeyPair::from_pem(&issued.key_pem).expect("key");
    with_cert(&issued.cert_pem, |x| {
        assert_eq!(
            x.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        )
    });
}

#[test]
fn the_operator_certificate_is_a_client_identity_no_chain_carries() {
    let ca = Ca::generate(t0(), 3650 * DAY).expect("CA");
    let op = ca.issue_operator(t0(), 90 * DAY).expect("issue");
    assert_eq!(uri_sans(&der_of(&op.cert_pem)), [OPERATOR_IDENTITY]);
    assert!(dns_sans(&op.cert_pem).is_empty());
    assert_eq!(usages(&op.cert_pem), (false, true), "clientAuth only");
    assert!(signed_by(&op.cert_pem, ca.cert_pem()));
    // No namespace/chain pair yields the operator's identity.
    for (ns, c) in [
        ("operator", "x"),
        ("x", "operator"),
        ("buildvnf-system", "operator"),
    ] {
        assert_ne!(chain_identity(ns, c), OPERATOR_IDENTITY);
    }
}

#[test]
fn names_that_would_widen_a_san_are_refused() {
    let ca = Ca::generate(t0(), DAY * 10).expect("CA");
    for (ns, c) in [
        ("team-a", "a.b"),
        ("team-a", "Edge"),
        ("team-a", ""),
        ("team-a", "-x"),
        ("team-a", "*"),
        ("a.b", "edge"),
        ("team-a", "x/../operator"),
        ("team-a", &"x".repeat(64)),
    ] {
        let e = ca
            .issue_chain(ns, c, t0(), DAY)
            .expect_err(&format!("{ns}/{c}"));
        assert!(
            matches!(e, CertError::BadName { .. }) && e.to_string().contains("not a DNS label"),
            "{e}"
        );
    }
}

#[test]
fn a_ca_secret_round_trips_and_a_wrong_one_is_refused_naming_the_problem() {
    let ca = Ca::generate(t0(), 3650 * DAY).expect("CA");
    let key = ca.issuer.key().serialize_pem();
    let back = Ca::from_pem("ns/ca", ca.cert_pem(), &key, None).expect("round trip");
    assert_eq!(back.bundle(), ca.cert_pem());
    let leaf = back.issue_chain("ns", "c", t0(), DAY).expect("issue");
    assert!(signed_by(&leaf.cert_pem, ca.cert_pem()));

    // The previous CA in ca.crt is trusted too (rotation), once.
    let old = Ca::generate(t0(), DAY * 10).expect("old CA");
    let extra = format!("{}{}", old.cert_pem(), ca.cert_pem());
    let rotated = Ca::from_pem("ns/ca", ca.cert_pem(), &key, Some(&extra)).expect("rotated");
    assert_eq!(
        rotated.bundle(),
        format!("{}{}", ca.cert_pem(), old.cert_pem())
    );

    let other_key = KeyPair::generate().expect("key").serialize_pem();
    let e = Ca::from_pem("ns/ca", ca.cert_pem(), &other_key, None).expect_err("key mismatch");
    assert!(
        e.to_string().contains("ns/ca") && e.to_string().contains("not the key"),
        "{e}"
    );
    let e = Ca::from_pem("ns/ca", &leaf.cert_pem, &leaf.key_pem, None).expect_err("not a CA");
    assert!(e.to_string().contains("not a CA"), "{e}");
    let e = Ca::from_pem("ns/ca", "garbage", &key, None).expect_err("no certificate");
    assert!(e.to_string().contains("no certificate"), "{e}");
    let e = Ca::from_pem("ns/ca", ca.cert_pem(), "garbage", None).expect_err("no key");
    assert!(e.to_string().contains("tls.key"), "{e}");
}

fn data_of(secret: &Secret) -> &BTreeMap<String, ByteString> {
    secret.data.as_ref().expect("data")
}

#[test]
fn the_chain_secret_holds_the_certificate_key_and_bundle_and_is_owned_by_the_chain() {
    let ca = Ca::generate(t0(), 3650 * DAY).expect("CA");
    let c = chain("edge", "team-a");
    let issued = ca
        .issue_chain("team-a", "edge", t0(), 90 * DAY)
        .expect("issue");
    let s = chain_secret(&c, &ca, &issued).expect("secret");
    assert_eq!(s.metadata.name.as_deref(), Some("edge-dataplane-tls"));
    assert_eq!(s.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = data_of(&s);
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["ca.crt", "tls.crt", "tls.key"]
    );
    assert_eq!(data["tls.crt"].0, issued.cert_pem.as_bytes());
    assert_eq!(data["tls.key"].0, issued.key_pem.as_bytes());
    assert_eq!(data["ca.crt"].0, ca.bundle().as_bytes());
    let owner = &s.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("VNFChain", "edge", "uid-edge")
    );
    assert_eq!(owner.controller, Some(true));
    let labels = s.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "buildvnf-operator");
    assert_eq!(labels["buildvnf.io/chain"], "edge");
    // A chain the API server has not stored (no uid) has no owner to name: an error, not an orphan.
    let mut orphan = c.clone();
    orphan.metadata.uid = None;
    assert!(chain_secret(&orphan, &ca, &issued).is_err());
}

#[test]
fn renewal_is_due_at_two_thirds_of_the_lifetime_or_when_the_secret_is_wrong() {
    let ca = Ca::generate(t0(), 3650 * DAY).expect("CA");
    let c = chain("edge", "team-a");
    let issued = ca
        .issue_chain("team-a", "edge", t0(), 90 * DAY)
        .expect("issue");
    let good = data_of(&chain_secret(&c, &ca, &issued).expect("secret")).clone();
    let at = t0() - BACKDATE + (90 * DAY + BACKDATE) * 2 / 3;
    assert_eq!(renew_at(t0() - BACKDATE, t0() + 90 * DAY), at);
    let decide = |data: Option<&BTreeMap<String, ByteString>>, now| {
        renewal(data, "team-a", "edge", &ca, now)
    };
    assert_eq!(decide(Some(&good), t0()), Renewal::Keep(at));
    assert_eq!(
        decide(Some(&good), at - Duration::from_secs(1)),
        Renewal::Keep(at)
    );
    let due = |r: Renewal, why: &str| match r {
        Renewal::Issue(reason) => assert!(reason.contains(why), "{reason}"),
        Renewal::Keep(at) => panic!("kept until {at:?}, expected: {why}"),
    };
    due(decide(Some(&good), at), "2/3");
    due(decide(Some(&good), t0() + 100 * DAY), "2/3");
    due(decide(None, t0()), "does not exist");
    // Another namespace's or chain's certificate in this Secret.
    due(
        renewal(Some(&good), "team-b", "edge", &ca, t0()),
        "does not name",
    );
    due(
        renewal(Some(&good), "team-a", "fw", &ca, t0()),
        "does not name",
    );
    // The CA changed (or its Secret's ca.crt gained a CA).
    let new_ca = Ca::generate(t0(), DAY * 10).expect("new CA");
    due(
        renewal(Some(&good), "team-a", "edge", &new_ca, t0()),
        "ca.crt",
    );
    let mut broken = good.clone();
    broken.insert("tls.crt".into(), ByteString(b"garbage".to_vec()));
    due(decide(Some(&broken), t0()), "tls.crt");
    let mut broken = good.clone();
    broken.remove("tls.key");
    due(decide(Some(&broken), t0()), "tls.key");
    let mut broken = good;
    broken.remove("ca.crt");
    due(decide(Some(&broken), t0()), "ca.crt");
}

#[test]
fn the_operator_identity_is_reissued_when_due() {
    let ca = Arc::new(Ca::generate(SystemTime::now(), 3650 * DAY).expect("CA"));
    let id = OperatorIdentity::new(ca.clone(), 3 * DAY).expect("identity");
    let now = SystemTime::now();
    let (first, bundle) = id.current(now).expect("current");
    assert_eq!(bundle, ca.bundle());
    let (same, _) = id.current(now + DAY).expect("current");
    assert_eq!(first.cert_pem, same.cert_pem, "not due before 2/3");
    let (renewed, _) = id
        .current(now + 2 * DAY + Duration::from_secs(60))
        .expect("current");
    assert_ne!(first.cert_pem, renewed.cert_pem, "re-issued at 2/3");
    assert_eq!(uri_sans(&der_of(&renewed.cert_pem)), [OPERATOR_IDENTITY]);
}

#[test]
fn cert_manager_issuer_flag_parses_and_refuses_what_it_is_not() {
    let i: CertManagerIssuer = "ClusterIssuer/buildvnf-ca".parse().expect("parses");
    assert_eq!(
        (i.kind.as_str(), i.name.as_str()),
        ("ClusterIssuer", "buildvnf-ca")
    );
    let i: CertManagerIssuer = "Issuer/ca".parse().expect("parses");
    assert_eq!(i.kind, "Issuer");
    for bad in ["ca", "Certificate/ca", "Issuer/", "Issuer/a/b", "/ca"] {
        let e = bad.parse::<CertManagerIssuer>().expect_err(bad);
        assert!(e.contains(bad), "{e}");
    }
}

#[test]
fn the_cert_manager_certificate_asks_for_the_same_names_and_secret() {
    let c = chain("edge", "team-a");
    let issuer = CertManagerIssuer {
        kind: "ClusterIssuer".into(),
        name: "ca".into(),
    };
    let cert = cert_manager_certificate(&c, &issuer, 90 * DAY).expect("certificate");
    assert_eq!(cert.metadata.name.as_deref(), Some("edge-dataplane-tls"));
    assert_eq!(cert.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(
        cert.metadata.owner_references.as_ref().expect("owner")[0].controller,
        Some(true)
    );
    let spec = &cert.data["spec"];
    assert_eq!(spec["secretName"], "edge-dataplane-tls");
    assert_eq!(
        spec["dnsNames"],
        serde_json::json!(chain_dns_names("team-a", "edge"))
    );
    assert_eq!(
        spec["uris"],
        serde_json::json!(["spiffe://buildvnf.io/ns/team-a/chain/edge"])
    );
    assert_eq!(
        spec["usages"],
        serde_json::json!(["digital signature", "server auth"])
    );
    assert_eq!(spec["duration"], "2160h");
    assert_eq!(spec["renewBefore"], "720h");
    assert_eq!(
        spec["issuerRef"],
        serde_json::json!({"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "ca"})
    );
    let bad = chain("a.b", "team-a");
    assert!(cert_manager_certificate(&bad, &issuer, DAY).is_err());
}

fn state() -> Arc<Mutex<ClusterState>> {
    Arc::new(Mutex::new(ClusterState::default()))
}

fn ca_api(state: &Arc<Mutex<ClusterState>>) -> Api<Secret> {
    Api::namespaced(fake_client(state.clone()), "buildvnf-system")
}

fn methods(state: &Arc<Mutex<ClusterState>>) -> Vec<(String, String)> {
    state
        .lock()
        .expect("state")
        .requests
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

#[tokio::test]
async fn the_ca_is_created_once_and_then_read() {
    let st = state();
    let api = ca_api(&st);
    let ca = load_or_create_ca(&api, CA_SECRET, true, t0(), 3650 * DAY)
        .await
        .expect("created");
    let collection = CA_PATH.trim_end_matches("/buildvnf-operator-ca");
    assert_eq!(
        methods(&st),
        [
            ("GET".to_string(), CA_PATH.to_string()),
            ("POST".to_string(), collection.to_string())
        ]
    );
    let stored = st.lock().expect("state").objects[CA_PATH].clone();
    assert_eq!(stored["type"], "kubernetes.io/tls");
    // A second start (or replica) reads the same CA and creates nothing.
    let again = load_or_create_ca(&api, CA_SECRET, true, t0(), 3650 * DAY)
        .await
        .expect("read");
    assert_eq!(again.cert_pem(), ca.cert_pem());
    assert_eq!(methods(&st).len(), 3);
    // Supplied by the user but absent: an error naming it, nothing created.
    let st = state();
    let e = load_or_create_ca(&ca_api(&st), "my-ca", false, t0(), DAY)
        .await
        .expect_err("missing");
    assert!(e.to_string().contains("buildvnf-system/my-ca"), "{e}");
    assert_eq!(methods(&st).len(), 1);
}

/// Two replicas start at once: both see no CA and both create one; the API server refuses the second
/// create with 409 AlreadyExists (https://kubernetes.io/docs/reference/using-api/api-concepts/, "create":
/// the name must be unique), so that replica reads and uses the winner's CA, never overwrites it. The double
/// answers GET 404 → POST 409 → GET the winner's Secret, as the API server does in that interleaving.
#[tokio::test]
async fn a_replica_losing_the_ca_creation_race_uses_the_winners_ca() {
    let winner = Ca::generate(t0(), 3650 * DAY).expect("CA");
    let winner_secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": CA_SECRET, "namespace": "buildvnf-system"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64(winner.cert_pem().as_bytes()),
            "tls.key": base64(winner.issuer.key().serialize_pem().as_bytes()),
        }
    });
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = calls.clone();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let seen = seen.clone();
        let winner_secret = winner_secret.clone();
        async move {
            let method = req.method().to_string();
            let n = {
                let mut s = seen.lock().expect("calls");
                s.push(method.clone());
                s.len()
            };
            let (code, body) = match (n, method.as_str()) {
                (1, "GET") => (
                    404,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
                (2, "POST") => (
                    409,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "already exists"}),
                ),
                (3, "GET") => (200, winner_secret),
                _ => (
                    500,
                    serde_json::json!({"kind": "Status", "code": 500, "message": "unexpected"}),
                ),
            };
            let mut resp = http::Response::new(kube::client::Body::from(
                serde_json::to_vec(&body).expect("json"),
            ));
            *resp.status_mut() = http::StatusCode::from_u16(code).expect("status");
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let client = kube::Client::new(service, "default");
    let api: Api<Secret> = Api::namespaced(client, "buildvnf-system");
    let ca = load_or_create_ca(&api, CA_SECRET, true, t0(), 3650 * DAY)
        .await
        .expect("uses the winner's CA");
    assert_eq!(ca.cert_pem(), winner.cert_pem());
    assert_eq!(*calls.lock().expect("calls"), ["GET", "POST", "GET"]);
}

fn base64(bytes: &[u8]) -> String {
    // The API server's JSON encoding of Secret data ([]byte → standard base64).
    let v = serde_json::to_value(ByteString(bytes.to_vec())).expect("encode");
    v.as_str().expect("string").to_string()
}

async fn ensure_once(st: &Arc<Mutex<ClusterState>>, certs: &ChainCerts, now: SystemTime) {
    certs
        .ensure(&fake_client(st.clone()), &chain("edge", "team-a"), now)
        .await
        .expect("ensure");
}

fn stored_secret(st: &Arc<Mutex<ClusterState>>) -> Secret {
    serde_json::from_value(st.lock().expect("state").objects[SECRET_PATH].clone()).expect("secret")
}

#[tokio::test]
async fn a_chain_gets_its_secret_once_and_a_new_one_when_due() {
    let st = state();
    let certs = ChainCerts {
        ca: Arc::new(Ca::generate(t0(), 3650 * DAY).expect("CA")),
        issuer: ChainIssuer::Operator,
        validity: 90 * DAY,
    };
    ensure_once(&st, &certs, t0()).await;
    let first = stored_secret(&st);
    assert_eq!(
        renewal(first.data.as_ref(), "team-a", "edge", &certs.ca, t0()),
        Renewal::Keep(renew_at(t0() - BACKDATE, t0() + 90 * DAY))
    );
    assert_eq!(
        methods(&st),
        [
            ("GET".to_string(), SECRET_PATH.to_string()),
            (
                "POST".to_string(),
                SECRET_PATH
                    .trim_end_matches("/edge-dataplane-tls")
                    .to_string()
            )
        ]
    );
    // Valid: only looked at.
    ensure_once(&st, &certs, t0() + DAY).await;
    assert_eq!(methods(&st).len(), 3);
    assert_eq!(stored_secret(&st), first);
    // Due: re-issued in place by server-side apply.
    ensure_once(&st, &certs, t0() + 61 * DAY).await;
    let reqs = methods(&st);
    assert_eq!(reqs[4], ("PATCH".to_string(), SECRET_PATH.to_string()));
    let renewed = stored_secret(&st);
    assert_ne!(data_of(&renewed)["tls.crt"], data_of(&first)["tls.crt"]);
    assert_ne!(data_of(&renewed)["tls.key"], data_of(&first)["tls.key"]);
    assert!(matches!(
        renewal(
            renewed.data.as_ref(),
            "team-a",
            "edge",
            &certs.ca,
            t0() + 61 * DAY
        ),
        Renewal::Keep(_)
    ));
}

#[tokio::test]
async fn with_cert_manager_the_operator_applies_a_certificate_and_signs_nothing() {
    let st = state();
    let certs = ChainCerts {
        ca: Arc::new(Ca::generate(t0(), 3650 * DAY).expect("CA")),
        issuer: ChainIssuer::CertManager(CertManagerIssuer {
            kind: "Issuer".into(),
            name: "ca".into(),
        }),
        validity: 90 * DAY,
    };
    ensure_once(&st, &certs, t0()).await;
    let path = "/apis/cert-manager.io/v1/namespaces/team-a/certificates/edge-dataplane-tls";
    assert_eq!(methods(&st), [("PATCH".to_string(), path.to_string())]);
    let s = st.lock().expect("state");
    assert_eq!(s.objects[path]["spec"]["issuerRef"]["name"], "ca");
    assert!(!s.objects.contains_key(SECRET_PATH));
}

/// One CA and issuer for every controller test harness (fixtures.rs): a restarted operator keeps its CA, as
/// it does when the CA Secret exists.
pub(crate) fn shared_certs() -> Arc<ChainCerts> {
    static CERTS: std::sync::OnceLock<Arc<ChainCerts>> = std::sync::OnceLock::new();
    CERTS
        .get_or_init(|| {
            Arc::new(ChainCerts {
                ca: Arc::new(Ca::generate(SystemTime::now(), 3650 * DAY).expect("CA")),
                issuer: ChainIssuer::Operator,
                validity: 90 * DAY,
            })
        })
        .clone()
}

/// Every request certs.rs makes, for the RBAC rules test of fixtures.rs: the CA created and read, a chain's
/// Secret created, read and renewed, a cert-manager Certificate applied.
pub(crate) async fn api_requests() -> Vec<Recorded> {
    let st = state();
    let ca = load_or_create_ca(&ca_api(&st), CA_SECRET, true, t0(), 3650 * DAY)
        .await
        .expect("CA");
    let mut certs = ChainCerts {
        ca: Arc::new(ca),
        issuer: ChainIssuer::Operator,
        validity: 90 * DAY,
    };
    ensure_once(&st, &certs, t0()).await;
    ensure_once(&st, &certs, t0() + 61 * DAY).await;
    certs.issuer = ChainIssuer::CertManager(CertManagerIssuer {
        kind: "ClusterIssuer".into(),
        name: "ca".into(),
    });
    ensure_once(&st, &certs, t0()).await;
    st.lock().expect("state").requests.clone()
}
