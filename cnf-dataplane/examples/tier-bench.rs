//! The user-space tier benchmark (a command, not a test): the AF_XDP and (built with the feature
//! `dpdk`) the DPDK back end side by side, per polling policy — delivered packets, tier and
//! end-to-end latency p50/p99, CPU per packet at a paced rate, and the most packets per second
//! delivered unpaced.
//!
//! ```text
//! cargo run --release -p cnf-dataplane --example tier-bench                  # AF_XDP only, as root
//! cargo run --release -p cnf-dataplane --features dpdk --example tier-bench  # AF_XDP and DPDK
//! ```
//! Options: `--pps N` paced rate (default 20,000), `--secs S` length of each run (default 1),
//! `--dpdk-driver af_packet|af_xdp` the DPDK vdev (default af_packet).
//! Traffic: pktgen in a client namespace sends 128-byte UDP/IPv4 packets through the tier in the
//! cnf namespace (ChaCha20-Poly1305 encrypt) to a server namespace, which opens every payload and
//! takes the one-way latency from pktgen's timestamp (same host clock).

#[path = "../tests/common/tier_lab.rs"]
mod tier_lab;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context as _, bail};
use cnf_dataplane::userspace::redirect::XskRedirect;
use cnf_dataplane::userspace::{
    Aead, Algorithm, Backend, Direction, DpdkDriver, Polling, Stats, UserTier,
};
use tier_lab::{KEY, Lab, in_ns, spec};

struct Row {
    backend: Backend,
    policy: Polling,
    delivered: u64,
    sent: u64,
    tier_p50: u64,
    tier_p99: u64,
    e2e_p50: u64,
    e2e_p99: u64,
    cpu_ns_per_pkt: f64,
    max_pps: f64,
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs pktgen from the client for `secs` at `rate` (0: unpaced); the server opens every payload
/// and returns the one-way latencies (ns) and the sender's count.
fn run(lab: &Lab, rate: f64, secs: f64) -> anyhow::Result<(u64, Vec<u64>)> {
    let dst: SocketAddr = "10.2.0.1:9100".parse()?;
    let server = in_ns(lab.server(), || -> anyhow::Result<UdpSocket> {
        let s = UdpSocket::bind(dst).context("bind the server socket")?;
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        pktgen::mmsg::set_rcvbuf(&s, 8 << 20).context("SO_RCVBUF")?;
        Ok(s)
    })?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let rx = sc.spawn(|| {
            let aead = Aead::new(Algorithm::ChaCha20Poly1305, &KEY);
            let mut lat = Vec::new();
            let mut buf = [0u8; 2048];
            let mut quiet = 0;
            while quiet < 3 {
                match server.recv(&mut buf) {
                    Ok(n) => {
                        quiet = 0;
                        let now = pktgen::clock::monotonic_ns();
                        let Ok(pt) = aead.open(&buf[..n]) else {
                            continue;
                        };
                        if let Ok(h) = pktgen::payload::Header::decode(&pt) {
                            lat.push(now.saturating_sub(h.tx_ns));
                        }
                    }
                    Err(_) => quiet += 1,
                }
            }
            lat
        });
        let sent = in_ns(lab.client(), || {
            let mut cfg = pktgen::send::SendConfig::new(dst);
            cfg.sizes = pktgen::sizes::SizeSpec::Fixed(128);
            cfg.duration = Some(Duration::from_secs_f64(secs));
            if rate > 0.0 {
                cfg.rate_pps = rate;
            } else {
                cfg.pattern = pktgen::pacing::Pattern::Unlimited;
            }
            pktgen::send::run_sender(&cfg, &stop, |_| {})
        });
        let mut lat = rx
            .join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))?;
        lat.sort_unstable();
        Ok((sent.context("pktgen sender")?.sent, lat))
    })
}

/// A running tier of either back end (the AF_XDP one with the XDP program that feeds it).
struct Running(UserTier, Option<XskRedirect>);

fn start(
    lab: &Lab,
    backend: Backend,
    policy: Polling,
    driver: DpdkDriver,
) -> anyhow::Result<Running> {
    let functions = vec![spec(Algorithm::ChaCha20Poly1305, Direction::Encrypt)];
    Ok(match backend {
        Backend::AfXdp => {
            let (t, r) = lab.start_tier(functions, policy);
            Running(t, Some(r))
        }
        Backend::Dpdk => Running(
            lab.start_dpdk_tier(functions, policy, driver)
                .context("start the DPDK tier")?,
            None,
        ),
    })
}

struct Opts {
    rate: f64,
    secs: f64,
    driver: DpdkDriver,
}

fn measure(lab: &Lab, backend: Backend, policy: Polling, o: &Opts) -> anyhow::Result<Row> {
    let (rate, secs) = (o.rate, o.secs);
    let Running(tier, redirect) = start(lab, backend, policy, o.driver)?;
    let before: Stats = tier.stats();
    let (sent, lat) = run(lab, rate, secs)?;
    let mid = tier.stats();
    let (_, max_lat) = run(lab, 0.0, secs)?;
    drop(tier);
    drop(redirect);
    let tier_lat = mid.latency.since(&before.latency);
    let paced = (mid.tx_packets - before.tx_packets).max(1);
    Ok(Row {
        backend,
        policy,
        delivered: lat.len() as u64,
        sent,
        tier_p50: tier_lat.quantile_ns(0.5).unwrap_or(0),
        tier_p99: tier_lat.quantile_ns(0.99).unwrap_or(0),
        e2e_p50: percentile(&lat, 0.5),
        e2e_p99: percentile(&lat, 0.99),
        cpu_ns_per_pkt: (mid.cpu_ns - before.cpu_ns) as f64 / paced as f64,
        max_pps: max_lat.len() as f64 / secs,
    })
}

fn us(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{} µs", ns / 1000)
    }
}

fn main() -> anyhow::Result<()> {
    let mut rate = 20_000.0;
    let mut secs = 1.0;
    let mut driver = DpdkDriver::AfPacket;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().with_context(|| format!("{a} needs a value"))?;
        let num = |flag: &str| -> anyhow::Result<f64> {
            v.parse()
                .with_context(|| format!("{flag}: {v:?} is not a number"))
        };
        match a.as_str() {
            "--pps" => rate = num("--pps")?,
            "--secs" => secs = num("--secs")?,
            "--dpdk-driver" => {
                driver = match v.as_str() {
                    "af_packet" => DpdkDriver::AfPacket,
                    "af_xdp" => DpdkDriver::AfXdp,
                    _ => bail!("--dpdk-driver: {v:?} is not af_packet or af_xdp"),
                }
            }
            other => {
                bail!("unknown argument {other:?} (options: --pps N, --secs S, --dpdk-driver D)")
            }
        }
    }
    if !(rate > 0.0 && secs > 0.0) {
        bail!("--pps and --secs must be positive");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("tier-bench creates network namespaces and loads XDP: run it as root");
    }
    let mut backends = vec![Backend::AfXdp];
    if cfg!(feature = "dpdk") {
        backends.push(Backend::Dpdk);
    } else {
        eprintln!("(built without the feature `dpdk`: AF_XDP only)");
    }
    let lab = Lab::new("tb");
    let mut rows = Vec::new();
    for &backend in &backends {
        for policy in Polling::ALL {
            if backend == Backend::Dpdk && policy == Polling::Wakeup {
                continue; // DPDK is poll-mode only
            }
            let o = Opts { rate, secs, driver };
            rows.push(measure(&lab, backend, policy, &o)?);
        }
    }
    println!(
        "user-space tier ({} build; ChaCha20-Poly1305 encrypt, 128-byte UDP/IPv4 packets on veth; \
         AF_XDP copy mode, DPDK {driver:?}; paced {rate} pps for {secs} s, then unpaced)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "| backend | policy | delivered (paced) | tier p50 / p99 | end-to-end p50 / p99 | CPU per packet | max pps (unpaced) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {}/{} | {} / {} | {} / {} | {:.1} µs | {:.0}k |",
            r.backend.as_str(),
            r.policy.as_str(),
            r.delivered,
            r.sent,
            us(r.tier_p50),
            us(r.tier_p99),
            us(r.e2e_p50),
            us(r.e2e_p99),
            r.cpu_ns_per_pkt / 1000.0,
            r.max_pps / 1000.0
        );
    }
    Ok(())
}
