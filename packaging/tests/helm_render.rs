//! The chart's certificate values with a real `helm` (found on PATH; a skip under `CI=true` fails): the chart
//! renders no Secret for any values combination of `ci/` (the operator issues every certificate; that two renders
//! are byte-identical is tests/helm.rs), `tls.caSecret` and `tls.certManager` reach the operator's flags, and the
//! removed `tls.chains`, `tls.secretName` and `operator.insecureGrpc` are refused by name.

mod common;

use std::path::Path;
use std::process::Command;

const CHART: &str = "charts/build-vnf";

fn render(helm: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm)
        .args(["template", "edge", CHART, "--namespace", "buildvnf-system"])
        .args(args)
        .current_dir(common::repo())
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn no_values_combination_renders_a_secret() {
    let Some(helm) = common::tool("helm") else {
        return;
    };
    let files = common::files(&format!("{CHART}/ci"), "-values.yaml");
    assert!(files.len() >= 5, "the ci/ values matrix: {files:?}");
    for values in files {
        let out = render(&helm, &["--values", &values]).unwrap_or_else(|e| panic!("{values}: {e}"));
        assert!(out.len() > 1000, "a tiny render for {values}:\n{out}");
        assert!(
            !out.contains("\nkind: Secret\n"),
            "{values}: the chart renders a Secret; the operator issues the certificates"
        );
    }
}

#[test]
fn certificate_values_reach_the_operator_flags() {
    let Some(helm) = common::tool("helm") else {
        return;
    };
    let default = render(&helm, &[]).expect("default render");
    assert!(default.contains("- --cert-validity-days=90\n"));
    assert!(default.contains("- --ca-validity-days=3650\n"));
    for absent in ["--ca-secret", "--no-create-ca", "--cert-manager-issuer"] {
        assert!(!default.contains(absent), "{absent} by default");
    }
    let supplied = render(
        &helm,
        &[
            "--set",
            "tls.caSecret=corp-ca",
            "--set",
            "tls.certManager.issuerName=corp",
            "--set",
            "tls.certValidityDays=30",
        ],
    )
    .expect("render");
    for flag in [
        "- --ca-secret=corp-ca\n",
        "- --no-create-ca\n",
        "- --cert-manager-issuer=ClusterIssuer/corp\n",
        "- --cert-validity-days=30\n",
    ] {
        assert!(supplied.contains(flag), "{flag} missing:\n{supplied}");
    }
    let e = render(&helm, &["--set", "tls.certManager.issuerKind=Certificate"])
        .expect_err("an unknown issuer kind");
    assert!(e.contains("issuerKind"), "{e}");
}

#[test]
fn removed_tls_values_are_refused_by_name() {
    let Some(helm) = common::tool("helm") else {
        return;
    };
    for (set, key) in [
        ("tls.chains[0].namespace=default", "chains"),
        ("tls.secretName=x", "secretName"),
        ("operator.insecureGrpc=true", "insecureGrpc"),
    ] {
        let e = render(&helm, &["--set", set]).expect_err(set);
        assert!(
            e.contains(&format!("'{key}' not allowed")),
            "--set {set}: {e}"
        );
    }
}
