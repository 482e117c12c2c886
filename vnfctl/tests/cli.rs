//! `vnfctl validate` and `vnfctl crd` as a user runs them: output lines, exit status, standard input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vnfctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vnfctl"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("vnfctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn valid_examples_exit_zero() {
    let o = vnfctl(&[
        "validate",
        "examples/firewall.yaml",
        "examples/edge-chain.yaml",
        "examples/userspace-cipher.yaml",
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("examples/edge-chain.yaml: VNFChain \"edge\" is valid (5 functions)"),
        "{out}"
    );
    assert!(
        out.contains("examples/userspace-cipher.yaml (document 1): skipped kind Secret"),
        "{out}"
    );
}

#[test]
fn every_problem_is_a_file_path_message_line_and_the_exit_status_is_nonzero() {
    let o = vnfctl(&[
        "validate",
        "examples/firewall.yaml",
        "examples/invalid/06-cidr-host-bits.yaml",
        "examples/invalid/13-lb-family-mismatch.yaml",
    ]);
    assert_eq!(o.status.code(), Some(65), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains(
        "examples/invalid/06-cidr-host-bits.yaml: spec.functions[0].firewall.rules[0].sourceCIDRs[0]: \"10.1.2.3/8\" has host bits set; did you mean 10.0.0.0/8?"
    ), "{out}");
    assert!(out.contains(
        "examples/invalid/13-lb-family-mismatch.yaml: spec.functions[0].loadBalancer.backends[1].address: must be of the same address family as the vip"
    ), "{out}");
    // The valid file is still reported valid: one bad file does not hide the others.
    assert!(
        out.contains("examples/firewall.yaml: VNFChain \"firewall\" is valid"),
        "{out}"
    );
}

#[test]
fn several_problems_in_one_document_are_all_reported() {
    let text = "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata: {name: multi}\nspec:\n  functions:\n    - {name: a, type: monitor, monitor: {}}\n    - {name: a, type: rateLimiter, rateLimiter: {packetsPerSecond: 10, burstBytes: 100}}\n  placement: {replicas: 0}\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_vnfctl"))
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(65));
    let out = stdout(&o);
    for want in [
        "-: spec.placement.replicas: must be between 1 and 100, got 0",
        "-: spec.functions[1].name: duplicate function name \"a\"",
        "-: spec.functions[1].rateLimiter.burstBytes: needs bitsPerSecond",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn missing_file_and_non_yaml_are_errors_not_panics() {
    // a file that cannot be read is 66 (EX_NOINPUT), distinct from an invalid one (65)
    let o = vnfctl(&["validate", "does/not/exist.yaml"]);
    assert_eq!(o.status.code(), Some(66));
    assert!(
        stdout(&o).starts_with("does/not/exist.yaml: reading does/not/exist.yaml:"),
        "{}",
        stdout(&o)
    );
    let o = vnfctl(&["validate", "Cargo.toml"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(stdout(&o).starts_with("Cargo.toml: "), "{}", stdout(&o));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn crd_command_prints_the_committed_crd() {
    let o = vnfctl(&["crd"]);
    assert!(o.status.success());
    let committed =
        std::fs::read_to_string(repo().join("crds/buildvnf.io_vnfchains.yaml")).expect("read");
    assert_eq!(stdout(&o), committed);
}

#[test]
fn validate_prints_one_json_or_yaml_document_of_every_result() {
    let o = vnfctl(&[
        "validate",
        "--output",
        "json",
        "examples/userspace-cipher.yaml",
        "examples/invalid/06-cidr-host-bits.yaml",
    ]);
    assert_eq!(o.status.code(), Some(65));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let docs = v.as_array().expect("a list");
    assert_eq!(docs[0]["kind"], "Secret");
    assert_eq!(docs[1]["name"], "secure-tunnel");
    assert_eq!(docs[1]["valid"], true);
    let bad = &docs[2];
    assert_eq!(bad["valid"], false);
    assert!(
        bad["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("host bits")),
        "{bad}"
    );
    let o = vnfctl(&["validate", "-o", "yaml", "examples/lab.yaml"]);
    assert!(o.status.success());
    let y = String::from_utf8_lossy(&o.stdout);
    assert!(y.contains("name: lab") && y.contains("valid: true"), "{y}");
}

#[test]
fn completions_are_scripts_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef vnfctl"),
        ("fish", "complete -c vnfctl"),
    ] {
        let o = vnfctl(&["completions", shell]);
        assert!(o.status.success(), "{shell}");
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains(marker) && s.contains("testbed"), "{shell}: {s}");
    }
    let o = vnfctl(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "clap refuses an unknown shell");
}

#[test]
fn testbed_up_of_an_unreadable_file_exits_66_on_stderr() {
    let o = vnfctl(&["testbed", "up", "does/not/exist.yaml"]);
    assert_eq!(o.status.code(), Some(66));
    assert!(o.stdout.is_empty());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("cannot read does/not/exist.yaml"), "{e}");
    // an invalid manifest is 65, its problems on stderr
    let o = vnfctl(&["testbed", "up", "examples/invalid/06-cidr-host-bits.yaml"]);
    assert_eq!(o.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("host bits"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
