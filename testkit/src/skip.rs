//! The one skip rule of the project's tests: a test that cannot run here (not root, a tool missing) prints
//! why on the real stderr (not through the harness's captured `eprintln!`) and returns early — except under
//! `CI=true`, where CI has everything installed and a skip is a failure.

use std::io::Write;
use std::path::PathBuf;

/// True under `CI=true`.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips `test` for `reason`: panics under `CI=true`, otherwise prints `SKIPPED <test>: <reason>` and returns
/// `false` (so `if !ok { return skip(..) }` reads naturally).
pub fn skip(test: &str, reason: &str) -> bool {
    assert!(!ci(), "{test}: cannot run with CI=true: {reason}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
    false
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// True when the test runs as root (network namespaces, eBPF, raw sockets); otherwise [`skip`].
pub fn privileged() -> bool {
    let euid = euid();
    euid == 0
        || skip(
            "privileged test",
            &format!("needs root for network namespaces and eBPF (running as uid {euid})"),
        )
}

/// The path of the program `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The path of the program `name` on `PATH`, or `None` after [`skip`] (CI installs every tool:
/// scripts/install-deps.sh).
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = which(name);
    if found.is_none() {
        skip(
            name,
            &format!("{name} is not on PATH (scripts/install-deps.sh installs it)"),
        );
    }
    found
}

/// Root and every program of `tools` on `PATH`; otherwise [`skip`] naming what is missing.
pub fn root_and_tools(test: &str, tools: &[&str]) -> bool {
    let euid = euid();
    if euid != 0 {
        return skip(test, &format!("not running as root (uid {euid})"));
    }
    match tools.iter().find(|t| which(t).is_none()) {
        Some(t) => skip(
            test,
            &format!("`{t}` is not on PATH (scripts/install-deps.sh installs it)"),
        ),
        None => true,
    }
}

/// Root and iproute2 (`ip`, `tc`): what the real-packet tests of namespaces need.
pub fn can_run_netns_tests(test: &str) -> bool {
    root_and_tools(test, &["ip", "tc"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_a_made_up_name() {
        assert!(which("sh").is_some());
        assert!(which("no-such-tool-testkit").is_none());
    }
}
