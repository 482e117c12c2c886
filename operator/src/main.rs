//! The buildvnf-operator binary: flags, the CRD check, `/metrics` `/healthz` `/readyz`, and the controller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::routing::get;
use clap::Parser;
use std::time::Duration;

use operator::controller::{self, Context};
use operator::leader::Elector;
use operator::metrics::Metrics;
use operator::render::Settings;
use operator::sidecar::GrpcSidecars;

#[derive(Parser)]
#[command(
    name = "buildvnf-operator",
    version,
    about = "Reconciles VNFChains into cnf-dataplane pods"
)]
struct Flags {
    /// Image of the cnf-dataplane sidecar for chains that do not name one.
    #[arg(
        long,
        env = "BUILDVNF_DATAPLANE_IMAGE",
        default_value = "ghcr.io/build-vnf/cnf-dataplane:0.1.0"
    )]
    dataplane_image: String,
    /// Secret (in each chain's namespace) with the sidecars' mTLS certificate, key and CA.
    #[arg(
        long,
        env = "BUILDVNF_TLS_SECRET",
        default_value = "buildvnf-dataplane-tls"
    )]
    tls_secret: String,
    /// Directory with the operator's client tls.crt, tls.key and ca.crt.
    #[arg(long, env = "BUILDVNF_TLS_DIR", default_value = "/etc/buildvnf/tls")]
    tls_dir: PathBuf,
    /// Talk plain-text gRPC to sidecars (development only).
    #[arg(long)]
    insecure_grpc: bool,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "BUILDVNF_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Run without leader election (only one replica may run then).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "buildvnf-system")]
    lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "buildvnf-operator")]
    identity: String,
    /// Reconciles running at once (0: no limit).
    #[arg(long, env = "BUILDVNF_CONCURRENCY", default_value_t = controller::CONCURRENCY)]
    concurrency: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if flags.log_json {
        builder.json().init();
    } else {
        builder.init();
    }

    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    controller::check_crd(&client).await?;
    let client_for_lease = client.clone();
    let settings = Settings {
        default_image: flags.dataplane_image,
        tls_secret: flags.tls_secret,
        pod_monitor: controller::pod_monitor_available(&client).await,
        ..Settings::default()
    };
    tracing::info!(pod_monitor = settings.pod_monitor, "starting");
    let sidecars = if flags.insecure_grpc {
        GrpcSidecars::insecure(operator::render::GRPC_PORT as u16)
    } else {
        GrpcSidecars::with_tls_dir(&flags.tls_dir, operator::render::GRPC_PORT as u16)
            .with_context(|| format!("reading mTLS material from {}", flags.tls_dir.display()))?
    };
    let metrics = Metrics::new()?;
    let ctx = Arc::new(Context::new(client, sidecars, settings, metrics.clone()));

    let ready = Arc::new(AtomicBool::new(false));
    let app = axum::Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get({
                let ready = ready.clone();
                move || async move {
                    if ready.load(Ordering::Relaxed) {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(flags.metrics_listen)
        .await
        .with_context(|| format!("binding {}", flags.metrics_listen))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    ready.store(true, Ordering::Relaxed);
    if flags.no_leader_election {
        controller::run(ctx, flags.concurrency, shutdown_signal()).await;
        tracing::info!("stopped");
        return Ok(());
    }
    let leases = kube::Api::namespaced(client_for_lease, &flags.lease_namespace);
    let elector = Elector::new(
        leases,
        "buildvnf-operator",
        &flags.identity,
        Duration::from_secs(15),
    );
    elector.acquire(Duration::from_secs(5)).await?;
    tracing::info!(identity = %flags.identity, "leading");
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let reason = elector.keep(Duration::from_secs(5)).await;
        let _ = lost_tx.send(reason);
    });
    let lost = Arc::new(std::sync::Mutex::new(None));
    let lost_reason = lost.clone();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {},
            reason = lost_rx => {
                if let Ok(mut l) = lost_reason.lock() {
                    *l = reason.ok();
                }
            }
        }
    };
    controller::run(ctx, flags.concurrency, shutdown).await;
    if let Some(reason) = lost.lock().ok().and_then(|mut l| l.take()) {
        // Exit so Kubernetes restarts this replica as a candidate; another replica leads meanwhile.
        anyhow::bail!("lost leadership: {reason}");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
