//! Generates the gRPC client and server from `proto/dataplane.proto` (needs `protoc`: Debian `protobuf-compiler`).

#[cfg(not(feature = "grpc"))]
fn main() {}

#[cfg(feature = "grpc")]
fn main() {
    if std::process::Command::new(std::env::var("PROTOC").unwrap_or_else(|_| "protoc".into()))
        .arg("--version")
        .output()
        .is_err()
    {
        println!(
            "cargo::error=protoc not found: install Debian's protobuf-compiler (scripts/install-deps.sh does) or set PROTOC"
        );
        return;
    }
    if let Err(e) =
        tonic_prost_build::configure().compile_protos(&["proto/dataplane.proto"], &["proto"])
    {
        println!("cargo::error=cannot compile proto/dataplane.proto: {e}");
    }
}
