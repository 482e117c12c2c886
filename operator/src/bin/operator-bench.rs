//! operator-bench: reconciles many VNFChains through the real controller runtime against the in-memory API
//! server of `operator::fake` and fake sidecars, and prints wall time, reconciles/s and peak RSS.
//!
//! `cargo run --release -p buildvnf-operator --bin operator-bench -- --chains 1000`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use crds::VNFChain;
use serde_json::{Value, json};

use operator::controller::{self, Context, FINALIZER};
use operator::fake::{ClusterState, FakeSidecars, fake_client};
use operator::metrics::Metrics;
use operator::render::{self, Settings};

#[derive(Parser)]
#[command(
    name = "operator-bench",
    about = "Reconciles N VNFChains against an in-memory API server"
)]
struct Flags {
    /// Number of chains.
    #[arg(long, default_value_t = 1000)]
    chains: usize,
    /// Replicas (pods with a sidecar) per chain.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Namespaces the chains are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Reconciles running at once (0: no limit).
    #[arg(long, default_value_t = controller::CONCURRENCY)]
    concurrency: u16,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

fn chain_yaml(ns: &str, name: &str, i: usize, replicas: usize) -> String {
    let port = 1024 + (i % 50000);
    format!(
        "apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata: {{name: {name}, namespace: {ns}}}
spec:
  functions:
    - name: fw
      type: firewall
      firewall:
        defaultAction: deny
        rules: [{{action: allow, protocol: tcp, destinationPorts: [{{from: {port}}}]}}]
    - name: lb
      type: loadBalancer
      loadBalancer: {{vip: 10.0.0.100, port: 80, backends: [{{address: 10.0.2.1}}, {{address: 10.0.2.2, weight: 2}}]}}
    - name: mon
      type: monitor
      monitor: {{}}
  placement: {{replicas: {replicas}}}
"
    )
}

/// Peak resident set size of this process in KiB (`VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn ready_count(state: &Mutex<ClusterState>) -> usize {
    let Ok(s) = state.lock() else { return 0 };
    s.objects
        .iter()
        .filter(|(k, _)| k.contains("/vnfchains/"))
        .filter(|(_, v)| {
            v["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == crds::CONDITION_READY && c["status"] == "True")
            })
        })
        .count()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    if flags.chains == 0 || flags.replicas == 0 || flags.namespaces == 0 {
        bail!("--chains, --replicas and --namespaces must be at least 1");
    }
    let state = Arc::new(Mutex::new(ClusterState {
        crd_installed: true,
        ..ClusterState::default()
    }));
    let sidecars = FakeSidecars::default();
    seed(&flags, &state, &sidecars)?;
    let rss_before = peak_rss_kib();

    let client = fake_client(state.clone());
    let metrics = Metrics::new()?;
    let ctx = Arc::new(Context::new(
        client,
        sidecars.clone(),
        Settings::default(),
        metrics.clone(),
    ));
    let wall = run_until_ready(&flags, ctx, &state, &metrics).await?;
    let report = Report::gather(&state, &sidecars, &metrics)?;
    report.print(&flags, wall, rss_before);
    if report.pushes != flags.chains * flags.replicas {
        bail!(
            "expected {} pushes (one per sidecar), saw {}",
            flags.chains * flags.replicas,
            report.pushes
        );
    }
    Ok(())
}

/// The chains (spread over the namespaces) in the fake API server, with their running pods and a fake
/// sidecar per pod.
fn seed(flags: &Flags, state: &Mutex<ClusterState>, sidecars: &FakeSidecars) -> anyhow::Result<()> {
    let letters: Vec<String> = (0..flags.replicas).map(|r| format!("r{r}")).collect();
    let mut s = state
        .lock()
        .map_err(|_| anyhow::anyhow!("state poisoned"))?;
    for i in 0..flags.chains {
        let ns = format!("bench-{}", i % flags.namespaces);
        let name = format!("chain-{i}");
        let mut chain: VNFChain =
            crds::manifest::parse_single_chain(&chain_yaml(&ns, &name, i, flags.replicas))
                .map_err(|e| anyhow::anyhow!("chain {name}: {e:?}"))?;
        chain.metadata.uid = Some(format!("uid-{i}"));
        chain.metadata.generation = Some(1);
        chain.metadata.finalizers = Some(vec![FINALIZER.into()]);
        let hash = render::restart_hash(&chain)?;
        let path = format!("/apis/buildvnf.io/v1alpha1/namespaces/{ns}/vnfchains/{name}");
        s.objects.insert(path, serde_json::to_value(&chain)?);
        for (r, letter) in letters.iter().enumerate() {
            let pod = format!("{name}-dataplane-{letter}");
            let ip = format!("10.{}.{}.{}", 1 + r % 250, (i / 256) % 256, i % 256);
            s.pods.push(pod_json(&ns, &name, &pod, &hash, &ip));
            sidecars.add(&pod, 0, &["eth0"]);
        }
    }
    Ok(())
}

fn ok_reconciles(metrics: &Metrics) -> u64 {
    metrics
        .reconciles
        .get_metric_with_label_values(&["ok"])
        .map(|c| c.get())
        .unwrap_or(0)
}

/// Runs the controller until every chain is Ready (or the timeout passes), stops it and returns the wall
/// time until Ready.
async fn run_until_ready(
    flags: &Flags,
    ctx: Arc<Context<FakeSidecars>>,
    state: &Mutex<ClusterState>,
    metrics: &Metrics,
) -> anyhow::Result<Duration> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let controller = tokio::spawn(controller::run(ctx, flags.concurrency, async move {
        let _ = stopped.await;
    }));
    let deadline = started + Duration::from_secs(flags.timeout);
    let mut ready = 0;
    while ready < flags.chains {
        if Instant::now() > deadline {
            let _ = stop.send(());
            bail!(
                "only {ready}/{} chains Ready after {} s",
                flags.chains,
                flags.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Scanning the store takes its lock from the fake API server: only once enough reconciles succeeded.
        if ok_reconciles(metrics) >= flags.chains as u64 {
            ready = ready_count(state);
        }
    }
    let wall = started.elapsed();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), controller)
        .await
        .context("the controller did not stop")??;
    Ok(wall)
}

/// What the run cost: API requests (in all and by verb and resource), the fake API server's size, pushes
/// to the sidecars and successful reconciles.
struct Report {
    requests: usize,
    by_kind: std::collections::BTreeMap<String, usize>,
    fake_bytes: usize,
    pushes: usize,
    reconciles: u64,
}

impl Report {
    fn gather(
        state: &Mutex<ClusterState>,
        sidecars: &FakeSidecars,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let s = state
            .lock()
            .map_err(|_| anyhow::anyhow!("state poisoned"))?;
        let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
        for r in &s.requests {
            if let Some((_, resource, verb)) = r.rbac() {
                *by_kind.entry(format!("{verb} {resource}")).or_default() += 1;
            }
        }
        let fake_bytes: usize = s
            .objects
            .values()
            .chain(s.pods.iter())
            .map(|v| v.to_string().len())
            .sum();
        let pushes = sidecars
            .calls()
            .iter()
            .filter(|c| c.starts_with("apply "))
            .count();
        Ok(Self {
            requests: s.requests.len(),
            by_kind,
            fake_bytes,
            pushes,
            reconciles: ok_reconciles(metrics),
        })
    }

    fn print(&self, flags: &Flags, wall: Duration, rss_before: Option<u64>) {
        let rate = flags.chains as f64 / wall.as_secs_f64();
        let mib = |k: Option<u64>| {
            k.map_or("n/a".to_string(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        println!("operator-bench: real controller runtime, in-memory API server, fake sidecars");
        println!("  {:<38} {}", "chains", flags.chains);
        println!("  {:<38} {}", "replicas per chain", flags.replicas);
        println!("  {:<38} {}", "concurrent reconciles", flags.concurrency);
        println!(
            "  {:<38} {:.3} s",
            "wall time until all Ready",
            wall.as_secs_f64()
        );
        println!(
            "  {:<38} {:.0}",
            "chains reconciled to Ready per second", rate
        );
        println!("  {:<38} {}", "successful reconciles", self.reconciles);
        println!(
            "  {:<38} {} ({:.1} per chain)",
            "API requests",
            self.requests,
            self.requests as f64 / flags.chains as f64
        );
        println!("  {:<38} {}", "ApplyChain pushes", self.pushes);
        println!("  {:<38} {}", "peak RSS after setup", mib(rss_before));
        println!("  {:<38} {}", "peak RSS (VmHWM)", mib(peak_rss_kib()));
        println!(
            "  {:<38} {:.1} MiB as JSON (held in this process)",
            "fake API server's objects",
            self.fake_bytes as f64 / 1048576.0
        );
        println!("  API requests by verb and resource:");
        for (k, n) in &self.by_kind {
            println!("    {k:<40} {n}");
        }
    }
}

fn pod_json(ns: &str, chain: &str, pod: &str, hash: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": ns, "labels": {render::CHAIN_LABEL: chain},
                     "annotations": {render::RESTART_HASH_ANNOTATION: hash}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "cnf-dataplane"}]},
        "status": {"phase": "Running", "podIP": ip}
    })
}
