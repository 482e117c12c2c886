//! The cnf-dataplane daemon as a process inside a test namespace (its log in a file, killed when the
//! test ends early), a host-namespace bpffs for kept chains, and a throwaway TLS directory.
//! Include with `#[path = "common/daemon.rs"] mod daemon;` next to `mod common;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{sh, signal_and_wait};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cnf-dataplane")
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
        let child = Command::new("ip")
            .args(["netns", "exec", ns, bin()])
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(file))
            .stdout(Stdio::null())
            .spawn()
            .expect("start daemon");
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

/// A directory with a self-signed tls.crt/tls.key (and the same certificate as ca.crt): enough for the
/// daemon to serve gRPC over TCP (`--grpc-listen` needs `--tls-dir`).
pub fn tls_dir(dir: &Path) -> PathBuf {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    std::fs::write(tls.join("tls.crt"), ck.cert.pem()).expect("tls.crt");
    std::fs::write(tls.join("tls.key"), ck.signing_key.serialize_pem()).expect("tls.key");
    std::fs::write(tls.join("ca.crt"), ck.cert.pem()).expect("ca.crt");
    tls
}

/// A gRPC client on the daemon's Unix socket `sock`.
pub fn grpc_unix(
    rt: &tokio::runtime::Runtime,
    sock: PathBuf,
) -> dataplane_api::dataplane_client::DataplaneClient<tonic::transport::Channel> {
    let channel = rt
        .block_on(dataplane_api::unix::connect_unix(sock))
        .expect("connect to the daemon's socket");
    dataplane_api::dataplane_client::DataplaneClient::new(channel)
}
