//! `vnfctl bench`: the command-line side of the benchmark suite.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use vnfctl::bench::{Options, run_suite};

/// `vnfctl bench` arguments.
#[derive(Args)]
pub struct BenchArgs {
    /// VNFChain manifest (one chain); its kernel peers are configured from it. The default, the five functions
    /// with a rate limiter that cannot cap the run and sampled histograms, measures the data path.
    #[arg(default_value = "examples/bench-chain.yaml")]
    file: PathBuf,
    /// A manifest whose own rate limiter caps the run, measured as the labelled "chain-capped" scenario with the
    /// benchmark's traffic ("none" leaves it out).
    #[arg(long, default_value = "examples/edge-chain.yaml")]
    capped: PathBuf,
    /// Frame sizes in bytes (Ethernet header included, no FCS), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1400")]
    sizes: Vec<usize>,
    /// Seconds of traffic per scenario and size (throughput and latency each).
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// A short run (fractions of a second per point) that checks behaviour, not speed.
    #[arg(long)]
    quick: bool,
    /// Results folder (bench.json, table.txt, plots).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Output format on stdout (json and yaml: the report that bench.json holds).
    #[arg(long, short, value_enum, default_value_t = crate::Output::Text)]
    output: crate::Output,
}

fn read_chain(file: &std::path::Path) -> anyhow::Result<crds::vnfchain::VNFChain> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    crds::manifest::parse_single_chain(&text).map_err(|errs| {
        let msgs: Vec<String> = errs
            .0
            .iter()
            .map(|e| format!("{}: {e}", file.display()))
            .collect();
        anyhow::anyhow!("{}", msgs.join("\n"))
    })
}

/// Runs the benchmark suite.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 600.0) {
        bail!(
            "--duration: {} is not within (0, 600] seconds",
            args.duration
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("vnfctl bench needs root (namespaces, XDP, nftables, IPVS)");
    }
    let chain = read_chain(&args.file)?;
    let capped = if args.capped.as_os_str() == "none" {
        None
    } else {
        Some((
            args.capped.display().to_string(),
            read_chain(&args.capped)?.spec,
        ))
    };
    let mut o = if args.quick {
        Options::quick(args.out.clone(), args.sizes.clone())
    } else {
        Options::full(
            args.out.clone(),
            args.sizes.clone(),
            Duration::from_secs_f64(args.duration),
        )
    };
    o.capped = capped;
    let report = run_suite(&args.file.display().to_string(), &chain.spec, &o, |line| {
        eprintln!("{line}")
    })?;
    if args.output != crate::Output::Text {
        crate::print_structured(args.output, &report)?;
        return Ok(ExitCode::SUCCESS);
    }
    for g in &report.gaps {
        println!("differs ({}): {}: {}", g.peer, g.field, g.note);
    }
    println!();
    print!("{}", vnfctl::bench::run::table(&report));
    println!();
    println!("wrote {}", args.out.join("bench.json").display());
    for p in &report.plots {
        println!("wrote {} and {}", p.png.display(), p.svg.display());
    }
    Ok(ExitCode::SUCCESS)
}
