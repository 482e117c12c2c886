//! `vnfctl`: the build-vnf command line — validate manifests, print the CRD, run the laptop testbed and the
//! benchmark suite.

mod bench_cmd;
mod cps_cmd;
mod testbed_cmd;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
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
        /// Output format: text lines, or one JSON/YAML document listing every file's result.
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print a shell completion script: `vnfctl completions bash > /etc/bash_completion.d/vnfctl`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
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
    /// New flows per second through NAT + LB: the chain on XDP vs nftables NAT (the suite's "new flows" table).
    BenchNewFlows(cps_cmd::NewFlowsArgs),
    /// The round trip a chain adds over a bare XDP redirect at a fixed rate (the suite's "RTT added" row).
    BenchRtt(cps_cmd::RttArgs),
}

/// Exit status for invalid input (EX_DATAERR).
pub(crate) const EXIT_INVALID: u8 = 65;
/// Exit status for a file that cannot be read (EX_NOINPUT), which takes precedence over an invalid one.
pub(crate) const EXIT_NOINPUT: u8 = 66;

/// How a command prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for people.
    Text,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// Prints `value` as JSON or YAML on stdout.
pub fn print_structured(output: Output, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = match output {
        Output::Yaml => serde_saphyr::to_string(value)?,
        _ => serde_json::to_string_pretty(value)? + "\n",
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate {
            files,
            quiet,
            output,
        } => validate_files(&files, quiet, output),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vnfctl", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Crd => print_crd(),
        Command::Testbed { command } => testbed_cmd::run(command),
        Command::Bench(args) => bench_cmd::run(args),
        Command::BenchNewFlows(args) => cps_cmd::new_flows(args),
        Command::BenchRtt(args) => cps_cmd::rtt(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vnfctl: {}", chain_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `top: cause: cause…` (as `{:#}` prints them), leaving out a cause whose
/// text the line already holds: the library errors name their source in their own message and keep it as
/// `source()` too.
fn chain_message(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
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

/// One document's result for `--output json|yaml`.
#[derive(serde::Serialize)]
struct DocResult {
    file: String,
    document: usize,
    kind: String,
    name: Option<String>,
    valid: bool,
    problems: Vec<String>,
}

/// Validates every file, reporting each problem on its own line (or, with `--output json|yaml`, one document
/// listing every result); non-zero exit when any file has one.
fn validate_files(files: &[PathBuf], quiet: bool, output: Output) -> anyhow::Result<ExitCode> {
    let mut lines: Vec<String> = Vec::new();
    let mut results: Vec<DocResult> = Vec::new();
    let mut failed = false;
    let mut unreadable = false;
    for path in files {
        let name = path.display().to_string();
        let bad_file = |message: String, lines: &mut Vec<String>, results: &mut Vec<DocResult>| {
            lines.push(format!("{name}: {message}"));
            results.push(DocResult {
                file: name.clone(),
                document: 0,
                kind: String::new(),
                name: None,
                valid: false,
                problems: vec![message],
            });
        };
        let text = match read(path) {
            Ok(t) => t,
            Err(e) => {
                bad_file(format!("{e:#}"), &mut lines, &mut results);
                unreadable = true;
                continue;
            }
        };
        let docs = match parse_documents(&text) {
            Ok(d) => d,
            Err(e) => {
                bad_file(e.to_string(), &mut lines, &mut results);
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
            let mut r = DocResult {
                file: name.clone(),
                document: i + 1,
                kind: "VNFChain".into(),
                name: None,
                valid: true,
                problems: Vec::new(),
            };
            match doc {
                Document::Chain(c) => {
                    chains += 1;
                    r.name = c.metadata.name.clone();
                    if !quiet {
                        lines.push(format!(
                            "{label}: VNFChain {:?} is valid ({} function{})",
                            c.metadata.name.as_deref().unwrap_or_default(),
                            c.spec.functions.len(),
                            if c.spec.functions.len() == 1 { "" } else { "s" }
                        ));
                    }
                }
                Document::Invalid(errors) => {
                    chains += 1;
                    failed = true;
                    r.valid = false;
                    for e in &errors.0 {
                        lines.push(format!("{label}: {e}"));
                        r.problems.push(e.to_string());
                    }
                }
                Document::Other { kind } => {
                    r.kind = kind.clone();
                    if !quiet {
                        lines.push(format!("{label}: skipped kind {kind} (not a VNFChain)"));
                    }
                }
            }
            results.push(r);
        }
        if chains == 0 {
            bad_file(
                "kind: no VNFChain document found".into(),
                &mut lines,
                &mut results,
            );
            failed = true;
        }
    }
    if output == Output::Text {
        let mut out = std::io::stdout().lock();
        for l in lines {
            writeln!(out, "{l}")?;
        }
    } else {
        print_structured(output, &results)?;
    }
    Ok(if unreadable {
        ExitCode::from(EXIT_NOINPUT)
    } else if failed {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::chain_message;

    #[derive(Debug, thiserror::Error)]
    #[error("state file x.json: {source}")]
    struct NamesItsSource {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_printed_once() {
        let inner = NamesItsSource {
            source: std::io::Error::other("disk full"),
        };
        let e = anyhow::Error::new(inner).context("testbed up");
        assert_eq!(
            chain_message(&e),
            "testbed up: state file x.json: disk full",
            "the io error appears once"
        );
        let plain = anyhow::Error::new(std::io::Error::other("denied")).context("reading f.yaml");
        assert_eq!(chain_message(&plain), "reading f.yaml: denied");
    }
}
