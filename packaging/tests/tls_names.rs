//! The sidecar certificate names the chart issues (templates/tls-secrets.yaml) are accepted for exactly the
//! server name the operator verifies (operator/src/sidecar.rs: `<pod>.<chain>-dataplane.<namespace>.svc`),
//! under the name-matching rules of rustls-webpki, the verifier tonic's TLS uses: a chain's pods in its own
//! namespace match, the same chain name in another namespace and another chain in the same namespace do not.
//! The SAN patterns are read from the template, so a change there is checked here. (Helm itself is not run:
//! the certificates here are made with rcgen with the same SANs.)

mod common;

use rustls_pki_types::{CertificateDer, ServerName};

/// The `printf` formats of the sidecar SANs in the template's `$dns = concat $dns (list …)` line.
fn san_formats() -> Vec<String> {
    let tpl = common::read("charts/build-vnf/templates/tls-secrets.yaml");
    let line = tpl
        .lines()
        .find(|l| l.contains("$dns = concat $dns (list"))
        .expect("the SAN list in tls-secrets.yaml");
    let formats: Vec<String> = line
        .split("(printf \"")
        .skip(1)
        .map(|s| s[..s.find('"').expect("closing quote")].to_string())
        .collect();
    assert!(formats.len() >= 2, "SAN formats: {formats:?}");
    for f in &formats {
        assert!(
            line.contains(&format!("(printf \"{f}\" $svc $ns)")),
            "{f} is not filled with $svc $ns"
        );
    }
    formats
}

/// The SANs the template issues for chain `chain` in namespace `ns` (`$svc` is `<chain>-dataplane`).
fn sans(chain: &str, ns: &str) -> Vec<String> {
    let svc = format!("{chain}-dataplane");
    san_formats()
        .iter()
        .map(|f| f.replacen("%s", &svc, 1).replacen("%s", ns, 1))
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
        "the operator verifies another name now; update verified_name() and the template"
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
    // Several chains of one namespace in one certificate, as the template writes them.
    let mut both = sans("edge", "default");
    both.extend(sans("fw", "default"));
    assert!(accepts(
        &both,
        &verified_name("fw-dataplane-1-a", "fw", "default")
    ));
    assert!(accepts(&both, &verified_name(pod, "edge", "default")));
}
