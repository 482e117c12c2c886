//! The packaging scripts pass shellcheck (every severity, including style), and stay executable.

mod common;

use std::process::Command;

const SCRIPTS: [&str; 7] = [
    "scripts/e2e.sh",
    "scripts/build-images.sh",
    "vagrant/provision.sh",
    "scripts/install-deps.sh",
    "scripts/install-chart-tools.sh",
    "test.sh",
    ".ci/run",
];

#[test]
fn scripts_pass_shellcheck() {
    let out = Command::new("shellcheck")
        .args(["--severity=style", "--external-sources"])
        .args(SCRIPTS)
        .current_dir(common::repo())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run shellcheck ({e}); install it (scripts/install-deps.sh does)")
        });
    assert!(
        out.status.success(),
        "shellcheck reports problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scripts_are_executable_bash_with_strict_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    for s in SCRIPTS {
        let meta = std::fs::metadata(common::repo().join(s)).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(
            meta.permissions().mode() & 0o111 != 0,
            "{s} is not executable"
        );
        let text = common::read(s);
        assert!(
            text.starts_with("#!/usr/bin/env bash\n"),
            "{s} is not a bash script"
        );
        assert!(
            text.contains("\nset -euo pipefail\n") || text.contains("\nset -Eeuo pipefail\n"),
            "{s} does not fail loudly (set -euo pipefail)"
        );
    }
}
