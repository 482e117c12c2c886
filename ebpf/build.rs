//! Build script: compiles the eBPF attach points in this directory with clang into
//! `OUT_DIR`, where `objects.rs` embeds them. The one clang invocation of the project (the
//! Makefile mirrors its flags for standalone builds).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Attach-point sources, relative to the ebpf directory.
const ATTACH_POINTS: &[&str] = &[
    "xdp_chain.c",
    "tc_chain.c",
    "xsk_redirect.c",
    "bench.c",
    "pktgen_sink.c",
    "pktgen_live.c",
    "pktgen_cps.c",
];

fn fail(msg: &str) -> ! {
    eprintln!("error: buildvnf-ebpf build: {msg}");
    std::process::exit(1);
}

/// The Debian multiarch include directory that holds `asm/types.h`.
fn multiarch_include(target_arch: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("gcc").arg("-print-multiarch").output()
        && out.status.success()
    {
        let triple = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !triple.is_empty() {
            candidates.push(PathBuf::from("/usr/include").join(triple));
        }
    }

    candidates.push(PathBuf::from(format!(
        "/usr/include/{target_arch}-linux-gnu"
    )));
    candidates
        .into_iter()
        .find(|dir| dir.join("asm/types.h").is_file())
        .unwrap_or_else(|| {
            fail(
                "kernel UAPI header asm/types.h not found under /usr/include/<multiarch>; \
                 install linux-libc-dev (apt-get install linux-libc-dev)",
            )
        })
}

fn bpf_target_arch(target_arch: &str) -> &'static str {
    match target_arch {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        _ => fail(&format!("unsupported target architecture {target_arch}")),
    }
}

fn main() {
    let ebpf_dir = PathBuf::from(
        env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| fail("CARGO_MANIFEST_DIR unset")),
    );
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR unset")));
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());

    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!("cargo:rerun-if-env-changed=CLANG");

    match Command::new(&clang).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => fail(&format!(
            "`{clang}` not found or not runnable; the eBPF programs need clang with the BPF \
             target (apt-get install clang llvm), or set CLANG=/path/to/clang"
        )),
    }
    if !Path::new("/usr/include/bpf/bpf_helpers.h").is_file() {
        fail("libbpf headers missing (/usr/include/bpf/bpf_helpers.h); apt-get install libbpf-dev");
    }
    let include = multiarch_include(&target_arch);
    let arch_define = format!("-D__TARGET_ARCH_{}", bpf_target_arch(&target_arch));

    for src in ATTACH_POINTS {
        let input = ebpf_dir.join(src);
        let output = out_dir.join(Path::new(src).with_extension("o"));
        let status = Command::new(&clang)
            .args([
                "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
            ])
            .arg(&arch_define)
            .arg(format!("-I{}", include.display()))
            .arg("-c")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .status()
            .unwrap_or_else(|e| fail(&format!("running {clang}: {e}")));
        if !status.success() {
            fail(&format!("clang failed to compile {}", input.display()));
        }
    }
}
