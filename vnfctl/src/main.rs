//! `vnfctl`: the build-vnf command line — validate manifests, print the CRD, run the laptop testbed and the
//! benchmark suite.

mod bench_cmd;
mod testbed_cmd;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crds::manifest::{Document, parse_documents};

#[derive(Parser)]
#[command(
    name = "vnfctl",
    version,
    about = "build-vnf: network-function chains for Kubernetes and the laptop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate VNFChain manifests (multi-document YAML too); prints `file: path: message` per problem.
    Validate {
        /// Manifest files; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print nothing for valid files.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the VNFChain CustomResourceDefinition (the same YAML as crds/buildvnf.io_vnfchains.yaml).
    Crd,
    /// The laptop testbed: bring a VNFChain up in network namespaces on this machine, or take it down.
    Testbed {
        #[command(subcommand)]
        command: testbed_cmd::TestbedCommand,
    },
    /// The benchmark suite: the chain against a bare XDP redirect and the kernel's own tools, same traffic.
    Bench(bench_cmd::BenchArgs),
}

/// Exit status for invalid input (EX_DATAERR).
const EXIT_INVALID: u8 = 65;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { files, quiet } => validate_files(&files, quiet),
        Command::Crd => print_crd(),
        Command::Testbed { command } => testbed_cmd::run(command),
        Command::Bench(args) => bench_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vnfctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_crd() -> anyhow::Result<ExitCode> {
    let yaml = crds::crd_yaml()?;
    std::io::stdout().write_all(yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading standard input")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Validates every file, reporting each problem on its own line; non-zero exit when any file has one.
fn validate_files(files: &[PathBuf], quiet: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for path in files {
        let name = path.display().to_string();
        let text = match read(path) {
            Ok(t) => t,
            Err(e) => {
                writeln!(out, "{name}: {e:#}")?;
                failed = true;
                continue;
            }
        };
        let docs = match parse_documents(&text) {
            Ok(d) => d,
            Err(e) => {
                writeln!(out, "{name}: {e}")?;
                failed = true;
                continue;
            }
        };
        let multi = docs.len() > 1;
        let mut chains = 0;
        for (i, doc) in docs.iter().enumerate() {
            let label = if multi {
                format!("{name} (document {})", i + 1)
            } else {
                name.clone()
            };
            match doc {
                Document::Chain(c) => {
                    chains += 1;
                    if !quiet {
                        writeln!(
                            out,
                            "{label}: VNFChain {:?} is valid ({} function{})",
                            c.metadata.name.as_deref().unwrap_or_default(),
                            c.spec.functions.len(),
                            if c.spec.functions.len() == 1 { "" } else { "s" }
                        )?;
                    }
                }
                Document::Invalid(errors) => {
                    chains += 1;
                    failed = true;
                    for e in &errors.0 {
                        writeln!(out, "{label}: {e}")?;
                    }
                }
                Document::Other { kind } => {
                    if !quiet {
                        writeln!(out, "{label}: skipped kind {kind} (not a VNFChain)")?;
                    }
                }
            }
        }
        if chains == 0 {
            writeln!(out, "{name}: kind: no VNFChain document found")?;
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}
