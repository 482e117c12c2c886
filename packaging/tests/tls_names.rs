//! The sidecar certificate names the operator issues (operator/src/certs.rs, `chain_dns_names`) are accepted
//! for exactly the server name the operator verifies (operator/src/sidecar.rs:
//! `<pod>.<chain>-dataplane.<namespace>.svc`), under the name-matching rules of rustls-webpki, the verifier
//! tonic's TLS uses: a chain's pods in its own namespace match, the same chain name in another namespace and
//! another chain in the same namespace do not. The SAN formats are read from certs.rs, so a change there is
//! checked here; the certificates are made with rcgen with those SANs.

mod common;

use rustls_pki_types::{CertificateDer, ServerName};

/// The `format!` strings of the DNS SANs in `chain_dns_names` of operator/src/certs.rs.
fn san_formats() -> Vec<String> {
    let src = common::read("operator/src/certs.rs");
    let start = src
        .find("pub fn chain_dns_names(")
        .expect("chain_dns_names in operator/src/certs.rs");
    let body = &src[start..start + src[start..].find("\n}").expect("end of chain_dns_names")];
    let formats: Vec<String> = body
        .split("format!(\"")
        .skip(1)
        .map(|s| s[..s.find('"').expect("closing quote")].to_string())
        .collect();
    assert_eq!(formats.len(), 2, "SAN formats: {formats:?}");
    for f in &formats {
        assert!(
            f.contains("{chain}-dataplane.{namespace}.svc"),
            "{f} is not filled with the chain and namespace"
        );
    }
    formats
}

/// The SANs certs.rs issues for chain `chain` in namespace `ns`.
fn sans(chain: &str, ns: &str) -> Vec<String> {
    san_formats()
        .iter()
        .map(|f| f.replace("{chain}", chain).replace("{namespace}", ns))
        .collect()
}

/// The name the operator verifies for a pod (operator/src/sidecar.rs), with the Service of render.rs.
fn verified_name(pod: &str, chain: &str, ns: &str) -> String {
    format!("{pod}.{chain}-dataplane.{ns}.svc")
}

fn accepts(cert_sans: &[String], name: &str) -> bool {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(cert_sans.to_vec())
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let der = CertificateDer::from(cert.der().to_vec());
    let ee = webpki::EndEntityCert::try_from(&der).expect("parse certificate");
    let server = ServerName::try_from(name).expect("a DNS name");
    ee.verify_is_valid_for_subject_name(&server).is_ok()
}

#[test]
fn sidecar_certificate_matches_its_chain_pods_only() {
    assert!(
        common::read("operator/src/sidecar.rs")
            .contains("format!(\"{}.{}.{}.svc\", pod.pod, pod.service, pod.namespace)"),
        "the operator verifies another name now; update verified_name() and certs.rs"
    );
    let edge = sans("edge", "default");
    // Pods of a Deployment are named <deployment>-<template hash>-<suffix>.
    let pod = "edge-dataplane-7c9f8d6b5-x2x7q";
    assert!(accepts(&edge, &verified_name(pod, "edge", "default")));
    assert!(accepts(
        &edge,
        &verified_name("edge-dataplane-66d4c-abcde", "edge", "default")
    ));
    // Bound to the namespace and the chain.
    assert!(!accepts(&edge, &verified_name(pod, "edge", "team-a")));
    assert!(!accepts(
        &edge,
        &verified_name("fw-dataplane-7c9f8d6b5-x2x7q", "fw", "default")
    ));
    // The cluster-domain form matches its own FQDN only.
    assert!(accepts(
        &edge,
        "edge-dataplane-7c9f8d6b5-x2x7q.edge-dataplane.default.svc.cluster.local"
    ));
    assert!(!accepts(
        &edge,
        "edge-dataplane-7c9f8d6b5-x2x7q.edge-dataplane.team-a.svc.cluster.local"
    ));
    // A wildcard covers one label: a pod name with a dot, or a chain whose name ends like another's, does not
    // match (certs.rs also refuses names that are not DNS labels).
    assert!(!accepts(&edge, "a.b.edge-dataplane.default.svc"));
    assert!(!accepts(
        &sans("x-edge", "default"),
        &verified_name("p", "edge", "default")
    ));
    assert!(!accepts(&edge, &verified_name("p", "x-edge", "default")));
}
