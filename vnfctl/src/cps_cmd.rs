//! `vnfctl bench-new-flows` and `vnfctl bench-rtt`: the suite's "new flows" table and "RTT added" row on their own.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use vnfctl::bench::bed::{Bed, Flow, probe_flow};
use vnfctl::bench::cps::{self, CpsOptions};
use vnfctl::bench::rtt::{self, RttOptions};
use vnfctl::bench::run::chain_for_bed;

/// `vnfctl bench-new-flows` arguments.
#[derive(Args)]
pub struct NewFlowsArgs {
    /// Seconds per offered-load point.
    #[arg(long, default_value_t = 0.5)]
    duration: f64,
    /// Rounds over all paths (the best counts).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// A short run that checks behaviour, not speed.
    #[arg(long)]
    quick: bool,
    /// Results folder (new-flows.json).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Output format on stdout.
    #[arg(long, short, value_enum, default_value_t = crate::Output::Text)]
    output: crate::Output,
}

/// `vnfctl bench-rtt` arguments.
#[derive(Args)]
pub struct RttArgs {
    /// VNFChain manifest (one chain): the chain measured, and the bed's flow.
    #[arg(default_value = "examples/edge-chain.yaml")]
    file: PathBuf,
    /// Requests per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds per path and round.
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    /// Rounds (the paths alternate within each; samples are pooled).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Results folder (rtt.json).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Output format on stdout.
    #[arg(long, short, value_enum, default_value_t = crate::Output::Text)]
    output: crate::Output,
}

fn root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark needs root (namespaces, XDP, nftables)");
    }
    Ok(())
}

fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v <= 600.0) {
        bail!("{flag}: {v} is not within (0, 600] seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

fn write_json(
    out: &std::path::Path,
    name: &str,
    v: &impl serde::Serialize,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(v)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs the new-flow measurement on a bed of its own (the edge chain's addresses).
pub fn new_flows(args: NewFlowsArgs) -> anyhow::Result<ExitCode> {
    let d = seconds("--duration", args.duration)?;
    root()?;
    let o = if args.quick {
        CpsOptions::quick()
    } else {
        CpsOptions {
            rounds: args.rounds.max(1),
            ..CpsOptions::full(d)
        }
    };
    let flow = Flow {
        src: "10.0.1.2:40000".parse()?,
        dst: "10.0.0.200:9999".parse()?,
        server: "10.0.2.10:9999".parse()?,
        reason: "vnfctl bench-new-flows".into(),
    };
    let bed = Bed::create(flow)?;
    let n = cps::measure(&bed, &o, |l| eprintln!("{l}"))?;
    drop(bed);
    let path = write_json(&args.out, "new-flows.json", &n)?;
    if args.output != crate::Output::Text {
        crate::print_structured(args.output, &n)?;
    } else {
        print!("{}", cps::table(&n));
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the RTT measurement of a manifest's chain on a bed of its own.
pub fn rtt(args: RttArgs) -> anyhow::Result<ExitCode> {
    let d = seconds("--duration", args.duration)?;
    root()?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let chain = crds::manifest::parse_single_chain(&text).map_err(|errs| {
        let msgs: Vec<String> = errs
            .0
            .iter()
            .map(|e| format!("{}: {e}", args.file.display()))
            .collect();
        anyhow::anyhow!("{}", msgs.join("\n"))
    })?;
    let bed = Bed::create(probe_flow(&chain.spec)?)?;
    let (config, _) = chain_for_bed(&chain.spec, &bed)?;
    let o = RttOptions {
        rate_pps: args.rate,
        duration: d,
        rounds: args.rounds.max(1),
    };
    let r = rtt::measure(&bed, &config, &o, |l| eprintln!("{l}"))?;
    drop(bed);
    let path = write_json(&args.out, "rtt.json", &r)?;
    if args.output != crate::Output::Text {
        crate::print_structured(args.output, &r)?;
    } else {
        print!("{}", rtt::table(&r));
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
