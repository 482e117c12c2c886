//! The cnf-dataplane daemon as a process inside a test namespace (its log in a file, killed when the test
//! ends early), the one way to find its binary, and a host-namespace bpffs for kept chains.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{sh, signal_and_wait};

/// The `cnf-dataplane` binary of the running test's target directory (`<target>/<profile>/cnf-dataplane`,
/// where cargo puts it for the tests of its package, cnf-dataplane-daemon, and `cargo test --workspace` for
/// the others). When it is not there it is built once, into a target directory of its own
/// (`<target>/testkit-daemon`) so that it does not wait for the lock the running `cargo test` holds.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // <target>/<profile>/deps/<test>-<hash> or <target>/<profile>/examples/<example>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let built = profile_dir.join("cnf-dataplane");
    if built.exists() {
        return built;
    }
    let own_target = profile_dir
        .parent()
        .expect("target directory")
        .join("testkit-daemon");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let fallback = own_target
        .join(if release { "release" } else { "debug" })
        .join("cnf-dataplane");
    eprintln!(
        "{} is missing: building cnf-dataplane into {}",
        built.display(),
        own_target.display()
    );
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args([
            "build",
            "-p",
            "cnf-dataplane-daemon",
            "--bin",
            "cnf-dataplane",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &own_target);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo build");
    assert!(status.success(), "building cnf-dataplane failed: {status}");
    assert!(fallback.exists(), "{} not built", fallback.display());
    fallback
}

/// [`binary`] as text, found once per test process.
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        binary()
            .into_os_string()
            .into_string()
            .expect("a UTF-8 target directory")
    })
}

/// A bpffs mounted on a temporary directory of the host's mount namespace: it outlives every daemon
/// (each `ip netns exec` has a mount namespace of its own, that bpffs is shared with it).
pub struct Bpffs(pub PathBuf);

impl Bpffs {
    pub fn mount(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vnf-bpffs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bpffs dir");
        sh(
            None,
            &["mount", "-t", "bpf", "bpf", dir.to_str().expect("path")],
        );
        Self(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A daemon process (killed if the test fails first) and its log file.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cnf-dataplane ARGS` in namespace `ns`, logging to `log`, without waiting.
    pub fn spawn(ns: &str, args: &[&str], log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(file))
            .stdout(Stdio::null());
        let child =
            netkit::netns::spawn(ns, &mut cmd).unwrap_or_else(|e| panic!("start daemon: {e}"));
        Self { child, log }
    }

    /// Starts it and waits until it serves (its log says "metrics on http").
    pub fn start(ns: &str, args: &[&str], log: PathBuf) -> Self {
        let mut d = Self::spawn(ns, args, log);
        let started = Instant::now();
        while !d.text().contains("metrics on http") {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("daemon exited early with {st}: {}", d.text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "daemon did not start: {}",
                d.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    }

    /// Starts it and waits for it to exit by itself (at most 60 s): its status and log.
    pub fn run_to_exit(ns: &str, args: &[&str], log: PathBuf) -> (ExitStatus, String) {
        let mut d = Self::spawn(ns, args, log);
        let started = Instant::now();
        loop {
            if let Ok(Some(st)) = d.child.try_wait() {
                return (st, d.text());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "daemon did not exit: {}",
                d.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` and waits for the exit; a SIGTERM must end in success. Returns the log.
    pub fn signal(&mut self, sig: i32) -> String {
        // `ip netns exec` execs the daemon: the child's pid is the daemon's
        let status = signal_and_wait(&mut self.child, sig);
        if sig == libc::SIGTERM {
            assert!(status.success(), "exit status {status}: {}", self.text());
        }
        self.text()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
