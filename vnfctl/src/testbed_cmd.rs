//! `vnfctl testbed up|down|status|report`: the command-line side of the laptop testbed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{Output, print_structured};
use anyhow::Context;
use clap::Subcommand;
use vnfctl::testbed::{
    self, DownOutcome, Role, STATE_DIR, Shape, State, Testbed, TestbedError, TestbedOptions,
};

use crate::{EXIT_INVALID, EXIT_NOINPUT};
/// Exit status of `traffic` when some flow did not get what the chain says.
const EXIT_UNEXPECTED: u8 = 3;

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
        /// The pktgen binary that runs the servers' listeners (default: next to vnfctl, else on PATH).
        #[arg(long)]
        pktgen_bin: Option<PathBuf>,
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
        /// Output format (json and yaml: each testbed's health and its whole state file).
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
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
        /// Output format (json and yaml: counters, drops, buckets and percentiles per function).
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
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
            pktgen_bin,
            hook,
            state_dir,
        } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("vnfctl testbed up: cannot read {}: {e}", file.display());
                    return Ok(ExitCode::from(EXIT_NOINPUT));
                }
            };
            let chain = match crds::manifest::parse_single_chain(&text) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{}: {e}", file.display());
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
            let secrets = match testbed::secrets::Secrets::from_manifest(&text) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("vnfctl testbed up: {}: {e}", file.display());
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            };
            let opts = TestbedOptions {
                name,
                start_dataplane: !no_dataplane,
                dataplane_bin,
                pktgen_bin,
                hook,
                shape,
                state_dir,
                secrets,
                ..Default::default()
            };
            testbed::install_interrupt_handler();
            let tb = match Testbed::up(&chain, &opts) {
                Ok(tb) => tb,
                Err(
                    e @ (TestbedError::Plan { .. }
                    | TestbedError::Manifest(_)
                    | TestbedError::ManifestYaml(_)
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
        TestbedCommand::Status { state_dir, output } => status(&state_dir, output),
        TestbedCommand::Report {
            name,
            state_dir,
            output,
        } => report(&name, &state_dir, output),
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
    if !(rate > 0.0 && denied_rate > 0.0) {
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
    testbed::install_interrupt_handler();
    // Everything printed is also kept for the JSON.
    let mut shown: Vec<String> = Vec::new();
    let mut say = |line: String| {
        println!("{line}");
        shown.push(line);
    };
    let n = tb.flows().len();
    say(format!(
        "== Traffic: {n} flows for {duration} s: the main flow at {rate:.0} pps, every other UDP flow at \
         {denied_rate:.0} pps, {} requests per TCP flow",
        testbed::traffic::TCP_REQUESTS
    ));
    for f in tb.flows() {
        say(format!(
            "   {}{}  expect: {}",
            f.label(),
            if f.main { " (main)" } else { "" },
            match f.expect {
                testbed::flows::Expect::Delivered => "delivered",
                testbed::flows::Expect::Dropped => "dropped",
            }
        ));
    }
    let r = testbed::traffic::run(&tb, &opts, |line| say(format!("   {line}")))?;
    if r.interrupted {
        say(format!(
            "== Interrupted (Ctrl-C) after {:.1} s: the numbers below cover only that part; the testbed stays up \
             (vnfctl testbed down {name})",
            r.elapsed_s
        ));
    }
    say("== Each flow: expected → got (pktgen end to end; TCP: requests answered)".into());
    for l in testbed::traffic::summary_lines(&r) {
        say(format!("   {l}"));
    }
    let text = tb.scrape_metrics()?;
    say("== cnf-dataplane, per function in chain order (the kernel's per-CPU counters and latency histograms)".into());
    let order = tb.function_names();
    let table = testbed::metrics::report_table(&testbed::metrics::parse(&text), &order);
    for l in table.lines() {
        say(l.to_string());
    }
    let files = testbed::traffic::write_results(
        results,
        &format!("testbed-{name}"),
        &r,
        &text,
        &order,
        &shown,
    )?;
    println!("== Plots and numbers");
    for f in files {
        println!("   {}", f.display());
    }
    Ok(if r.all_ok() && !r.interrupted {
        ExitCode::SUCCESS
    } else if r.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::from(EXIT_UNEXPECTED)
    })
}

fn report(name: &str, state_dir: &Path, output: Output) -> anyhow::Result<ExitCode> {
    let tb = Testbed::open(name, state_dir)?
        .with_context(|| format!("testbed {name:?} is not up (no state file)"))?;
    let text = tb.scrape_metrics()?;
    let order = tb.function_names();
    if output != Output::Text {
        let functions = testbed::traffic::ordered_functions(&text, &order);
        let doc = serde_json::json!({
            "testbed": name,
            "attached": testbed::metrics::attachments(&testbed::metrics::parse(&text)),
            "functions": testbed::traffic::functions_json(&functions),
        });
        print_structured(output, &doc)?;
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        testbed::metrics::report_table(&testbed::metrics::parse(&text), &order)
    );
    Ok(ExitCode::SUCCESS)
}

fn status(state_dir: &Path, output: Output) -> anyhow::Result<ExitCode> {
    let names = State::list(state_dir)?;
    let mut docs = Vec::new();
    if names.is_empty() && output == Output::Text {
        println!("no testbed is up");
    }
    for n in names {
        let Some(st) = State::load(state_dir, &n)? else {
            continue;
        };
        let (health, text) = match (st.complete, st.alive()) {
            (true, true) => ("up", "up"),
            (false, true) => (
                "incomplete",
                "coming up (or interrupted: vnfctl testbed down to clean)",
            ),
            (_, false) => (
                "broken",
                "broken (something was removed behind its back: vnfctl testbed down)",
            ),
        };
        if output != Output::Text {
            docs.push(serde_json::json!({ "name": n, "health": health, "state": st }));
            continue;
        }
        println!("testbed {n}: {text}");
        print_endpoints(&st);
        for sc in &st.sidecars {
            println!(
                "   sidecar: ip netns exec {} curl -s http://{}/metrics",
                sc.netns, sc.metrics
            );
        }
        if let Some(m) = st.metrics.as_ref().filter(|_| st.sidecars.is_empty()) {
            println!(
                "   metrics: ip netns exec {} curl -s http://{m}/metrics",
                st.plan.cnf_netns
            );
        }
    }
    if output != Output::Text {
        print_structured(output, &docs)?;
    }
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
            Role::Sink => "sink",
        };
        let mut addrs: Vec<String> = Vec::new();
        addrs.extend(e.ipv4.map(|a| a.to_string()));
        addrs.extend(e.ipv6.map(|a| a.to_string()));
        let ports = if e.ports.is_empty() {
            String::new()
        } else {
            format!(
                "  listens (udp echo, http) on {}",
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
    for s in tb.services() {
        let targets: Vec<String> = s.targets.iter().map(|(a, p)| format!("{a}:{p}")).collect();
        println!(
            "   service  {} {} {}:{} -> {}",
            s.function,
            s.protocol,
            s.address,
            s.port,
            targets.join(", ")
        );
    }
    println!("flows (traffic sends them and checks each):");
    for f in tb.flows() {
        let expect = match f.expect {
            testbed::flows::Expect::Delivered => "delivered",
            testbed::flows::Expect::Dropped => "dropped",
        };
        println!("   {}  expect {expect}: {}", f.label(), f.why);
    }
    // One flow of each protocol to try by hand, preferring allowed ones.
    let pick = |p: testbed::flows::Proto| {
        tb.flows()
            .iter()
            .filter(|f| f.protocol == p)
            .min_by_key(|f| f.expect != testbed::flows::Expect::Delivered)
    };
    let pktgen = testbed::find_binary("pktgen", None)
        .ok()
        .map(|p| on_path_or_full(&p, "pktgen"));
    if let (Some(f), Some(pktgen)) = (pick(testbed::flows::Proto::Udp), pktgen) {
        println!("try it (the servers echo UDP, so pktgen measures the round trip):");
        println!(
            "   ip netns exec {} {pktgen} send --dst {} --rate 1000 --duration 3 --rtt",
            f.client, f.destination
        );
    }
    if let Some(f) = pick(testbed::flows::Proto::Tcp) {
        println!(
            "   ip netns exec {} curl -s -m 2 http://{}/",
            f.client, f.destination
        );
    }
    let vnfctl = std::env::current_exe()
        .map(|p| on_path_or_full(&p, "vnfctl"))
        .unwrap_or_else(|_| "vnfctl".into());
    let dir = if tb.state_path().parent() == Some(Path::new(STATE_DIR)) {
        String::new()
    } else {
        tb.state_path()
            .parent()
            .map(|d| format!(" --state-dir {}", d.display()))
            .unwrap_or_default()
    };
    println!("traffic: {vnfctl} testbed traffic {}{dir}", tb.name());
    if !tb.sidecars().is_empty() {
        println!(
            "sidecar mode: the chain runs in each server namespace, the CNF namespace only routes"
        );
        for sc in tb.sidecars() {
            println!(
                "sidecar: {} on {}: metrics ip netns exec {} curl -s http://{}/metrics, gRPC unix:{} (mode 0600)",
                sc.netns,
                sc.interface,
                sc.netns,
                sc.metrics,
                sc.grpc_socket.display()
            );
        }
        println!(
            "report:  {vnfctl} testbed report {}{dir}   (the pods' counters, summed)",
            tb.name()
        );
    } else if let (Some(m), Some(sock)) = (tb.metrics_addr(), tb.grpc_socket()) {
        println!(
            "metrics: ip netns exec {} curl -s http://{m}/metrics   (or: {vnfctl} testbed report {}{dir})",
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
    println!("down:    {vnfctl} testbed down {}{dir}", tb.name());
}

/// `name` when `PATH` finds that very file, else its full path: a printed command then runs as printed.
fn on_path_or_full(found: &Path, name: &str) -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name) == found));
    if on_path {
        name.to_string()
    } else {
        found.display().to_string()
    }
}
