//! Writes the `VNFChain` CRD YAML into `crds/` (or prints it with `-`); the committed file is drift-tested.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match crds::crd_yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let target = std::env::args().nth(1);
    if target.as_deref() == Some("-") {
        print!("{yaml}");
        return ExitCode::SUCCESS;
    }
    let path = target
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(crds::CRD_FILE));
    match std::fs::write(&path, yaml) {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
