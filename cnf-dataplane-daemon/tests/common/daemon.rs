//! The cnf-dataplane daemon as a process (`testkit::daemon`: the launcher, the binary, a host bpffs) and what
//! needs this crate's dev-dependencies: a throwaway TLS directory and a gRPC client on the daemon's socket.
//! Include with `#[path = "common/daemon.rs"] mod daemon;` next to `mod common;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use testkit::daemon::*;

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
