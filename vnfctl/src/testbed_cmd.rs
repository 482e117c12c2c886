//! `vnfctl testbed up|down|status|report`: the command-line side of the laptop testbed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use vnfctl::testbed::{
    self, DownOutcome, Role, STATE_DIR, Shape, State, Testbed, TestbedError, TestbedOptions,
};

/// Exit status for invalid input (EX_DATAERR), as `vnfctl validate` uses.
const EXIT_INVALID: u8 = 65;

/// `vnfctl testbed` subcommands.
#[derive(Subcommand)]
pub enum TestbedCommand {
    /// Bring a VNFChain manifest up in network namespaces: clients, the CNF running cnf-dataplane, and one server
    /// per load-balancer backend / NAT target.
    Up {
        /// The VNFChain manifest.
        file: PathBuf,
        /// Testbed name (namespaces are bvnf-NAME-...); default: the chain's metadata.name.
        #[arg(long)]
        name: Option<String>,
        /// Shape every client link, both directions: e.g. delay=5ms,rate=100mbit,loss=0.1%.
        #[arg(long)]
        shape: Option<String>,
        /// Do not start cnf-dataplane: the CNF namespace only forwards (for kernel peers such as nftables).
        #[arg(long)]
        no_dataplane: bool,
        /// The cnf-dataplane binary (default: next to vnfctl, else on PATH).
        #[arg(long)]
        dataplane_bin: Option<PathBuf>,
        /// Override the manifest's hook: auto, xdp, xdpGeneric or tc.
        #[arg(long, value_parser = parse_hook)]
        hook: Option<crds::Hook>,
        /// Where state files go.
        #[arg(long, default_value = STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Take a testbed down (everything its state file lists); a testbed that is not up is not an error.
    Down {
        /// The testbed's name.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Take every testbed down.
        #[arg(long)]
        all: bool,
        /// Where state files are.
        #[arg(long, default_value = STATE_DIR)]
        state_dir: PathBuf,
    },
    /// List the testbeds that are up, with their namespaces and endpoints.
    Status {
        /// Where state files are.
        #[arg(long, default_value = STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Send UDP from the allowed and the denied client to the chain's UDP service for a few seconds with live
    /// progress; print pktgen's end-to-end numbers and the per-function report; write plots and JSON.
    Traffic {
        /// The testbed's name.
        name: String,
        /// Packets per second from the allowed client.
        #[arg(long, default_value_t = 10000.0)]
        rate: f64,
        /// Packets per second from the denied client.
        #[arg(long, default_value_t = 2000.0)]
        denied_rate: f64,
        /// Seconds of traffic.
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        /// Where plots (PNG, SVG) and the JSON go.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Where state files are.
        #[arg(long, default_value = STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Print per-function counters, drops by reason and latency percentiles from the data plane's /metrics.
    Report {
        /// The testbed's name.
        name: String,
        /// Where state files are.
        #[arg(long, default_value = STATE_DIR)]
        state_dir: PathBuf,
    },
}

fn parse_hook(s: &str) -> Result<crds::Hook, String> {
    match s {
        "auto" => Ok(crds::Hook::Auto),
        "xdp" => Ok(crds::Hook::Xdp),
        "xdpGeneric" | "xdp-generic" => Ok(crds::Hook::XdpGeneric),
        "tc" => Ok(crds::Hook::Tc),
        _ => Err(format!(
            "{s:?} is not a hook (expected auto, xdp, xdpGeneric or tc)"
        )),
    }
}

/// Runs a testbed subcommand.
pub fn run(command: TestbedCommand) -> anyhow::Result<ExitCode> {
    match command {
        TestbedCommand::Up {
            file,
            name,
            shape,
            no_dataplane,
            dataplane_bin,
            hook,
            state_dir,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let chain = match crds::manifest::parse_single_chain(&text) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors.0 {
                        println!("{}: {e}", file.display());
                    }
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            };
            let shape = match shape.as_deref().map(str::parse::<Shape>).transpose() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("vnfctl testbed up: {e}");
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            };
            let opts = TestbedOptions {
                name,
                start_dataplane: !no_dataplane,
                dataplane_bin,
                hook,
                shape,
                state_dir,
                ..Default::default()
            };
            testbed::install_interrupt_handler();
            let tb = match Testbed::up(&chain, &opts) {
                Ok(tb) => tb,
                Err(
                    e @ (TestbedError::Plan { .. }
                    | TestbedError::Manifest(_)
                    | TestbedError::InvalidName { .. }),
                ) => {
                    eprintln!("vnfctl testbed up: {}: {e}", file.display());
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
                Err(e) => return Err(e.into()),
            };
            print_testbed(&tb, &file);
            tb.keep();
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Down {
            name,
            all,
            state_dir,
        } => {
            let names = if all {
                State::list(&state_dir)?
            } else {
                name.into_iter().collect()
            };
            if all && names.is_empty() {
                println!("no testbed is up");
            }
            for n in names {
                match testbed::down(&n, &state_dir)? {
                    DownOutcome::Removed => println!("testbed {n}: down, nothing left behind"),
                    DownOutcome::NotFound => println!("testbed {n}: not up (nothing to do)"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Status { state_dir } => {
            let names = State::list(&state_dir)?;
            if names.is_empty() {
                println!("no testbed is up");
            }
            for n in names {
                let Some(st) = State::load(&state_dir, &n)? else {
                    continue;
                };
                let health = match (st.complete, st.alive()) {
                    (true, true) => "up",
                    (false, true) => "coming up (or interrupted: vnfctl testbed down to clean)",
                    (_, false) => {
                        "broken (something was removed behind its back: vnfctl testbed down)"
                    }
                };
                println!("testbed {n}: {health}");
                print_endpoints(&st);
                if let Some(m) = &st.metrics {
                    println!(
                        "   metrics: ip netns exec {} curl -s http://{m}/metrics",
                        st.plan.cnf_netns
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Report { name, state_dir } => report(&name, &state_dir),
        TestbedCommand::Traffic {
            name,
            rate,
            denied_rate,
            duration,
            results,
            state_dir,
        } => traffic(&name, rate, denied_rate, duration, &results, &state_dir),
    }
}

fn traffic(
    name: &str,
    rate: f64,
    denied_rate: f64,
    duration: f64,
    results: &Path,
    state_dir: &Path,
) -> anyhow::Result<ExitCode> {
    if !(duration > 0.0 && duration <= 3600.0) {
        anyhow::bail!("--duration: {duration} must be between 0 and 3600 seconds");
    }
    if !(rate > 0.0 && denied_rate >= 0.0) {
        anyhow::bail!("--rate and --denied-rate: must be positive");
    }
    let tb = Testbed::open(name, state_dir)?
        .with_context(|| format!("testbed {name:?} is not up (vnfctl testbed up FILE first)"))?;
    let opts = testbed::traffic::TrafficOptions {
        rate_pps: rate,
        denied_rate_pps: denied_rate,
        duration: std::time::Duration::from_secs_f64(duration),
        ..Default::default()
    };
    println!(
        "== Traffic: {rate:.0} pps from {} and {denied_rate:.0} pps from the denied client, {duration} s",
        tb.client().netns
    );
    let r = testbed::traffic::run(&tb, &opts, |line| println!("   {line}"))?;
    println!("== pktgen, end to end (client -> chain -> server)");
    for l in testbed::traffic::summary_lines(&r) {
        println!("   {l}");
    }
    let text = tb.scrape_metrics()?;
    println!(
        "== cnf-dataplane, per function (the kernel's per-CPU counters and latency histograms)"
    );
    print!(
        "{}",
        testbed::metrics::report_table(&testbed::metrics::parse(&text), &tb.function_names())
    );
    let files = testbed::traffic::write_results(results, &format!("testbed-{name}"), &r, &text)?;
    println!("== Plots and numbers");
    for f in files {
        println!("   {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn report(name: &str, state_dir: &Path) -> anyhow::Result<ExitCode> {
    let tb = Testbed::open(name, state_dir)?
        .with_context(|| format!("testbed {name:?} is not up (no state file)"))?;
    let text = tb.scrape_metrics()?;
    print!(
        "{}",
        testbed::metrics::report_table(&testbed::metrics::parse(&text), &tb.function_names())
    );
    Ok(ExitCode::SUCCESS)
}

fn print_endpoints(st: &State) {
    let p = &st.plan;
    for i in &p.cnf_interfaces {
        let addrs: Vec<String> = i.addrs.iter().map(|a| a.to_string()).collect();
        println!(
            "   CNF      {:<22} {:<6} {}  {}",
            p.cnf_netns,
            i.name,
            i.mac,
            addrs.join(" ")
        );
    }
    for e in &p.endpoints {
        let role = match e.role {
            Role::Client => "client",
            Role::DeniedClient => "denied",
            Role::Server => "server",
        };
        let mut addrs: Vec<String> = Vec::new();
        addrs.extend(e.ipv4.map(|a| a.to_string()));
        addrs.extend(e.ipv6.map(|a| a.to_string()));
        let ports = if e.ports.is_empty() {
            String::new()
        } else {
            format!(
                "  serves port {}",
                e.ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        println!(
            "   {role:<8} {:<22} {:<6} {}  {}{ports}",
            e.netns,
            e.interface,
            e.mac,
            addrs.join(" ")
        );
    }
}

fn print_testbed(tb: &Testbed, file: &Path) {
    let st = tb.state();
    if tb.was_already_up() {
        println!(
            "testbed {} is already up with this manifest (nothing changed)",
            tb.name()
        );
    } else {
        println!("testbed {} is up: {}", tb.name(), file.display());
    }
    print_endpoints(st);
    for (iface, hook) in tb.attachments() {
        println!("   chain attached to {iface} with {hook}");
    }
    let client = tb.client();
    let cns = &client.netns;
    println!("send traffic from the client {cns}:");
    for s in tb.services() {
        let targets: Vec<String> = s.targets.iter().map(|(a, p)| format!("{a}:{p}")).collect();
        println!(
            "   {} {} {}:{} -> {}",
            s.function,
            s.protocol,
            s.address,
            s.port,
            targets.join(", ")
        );
    }
    if let Some(s) = tb.services().iter().find(|s| s.protocol == "udp")
        && let Some((a, p)) = s.targets.first()
        && let Some(server) = tb.server(*a)
    {
        println!(
            "   e.g. ip netns exec {} pktgen recv --bind {a}:{p} --idle 3 &",
            server.netns
        );
        println!(
            "        ip netns exec {cns} pktgen send --dst {}:{} --rate 10000 --duration 3",
            s.address, s.port
        );
    }
    if let (Some(m), Some(sock)) = (tb.metrics_addr(), tb.grpc_socket()) {
        println!(
            "metrics: ip netns exec {} curl -s http://{m}/metrics   (or: vnfctl testbed report {})",
            tb.cnf_netns(),
            tb.name()
        );
        println!("gRPC:    unix:{} (mode 0600)", sock.display());
    } else {
        println!(
            "no data plane: the CNF namespace {} only forwards",
            tb.cnf_netns()
        );
    }
    println!("state:   {}", tb.state_path().display());
    println!("down:    vnfctl testbed down {}", tb.name());
}
