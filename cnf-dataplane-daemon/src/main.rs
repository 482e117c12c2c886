//! `cnf-dataplane`: the sidecar that runs one VNFChain as eBPF on the pod's interfaces, serves the gRPC
//! control API (mTLS, or a 0600 Unix socket on the laptop) and `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use cnf_dataplane::compose::{ApplyError, Dataplane, OnExit, StartOptions, control};
use crds::VNFChain;
use shared::Shared;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::server::{Connected, Router};

mod caps;
mod grpc;
mod metrics;
mod shared;
mod tls;
use dataplane_api::dataplane_server::DataplaneServer;
use tonic::transport::Server;

/// Exit status for a bad configuration (EX_USAGE): nothing was attached.
const EXIT_CONFIG: u8 = 64;
/// Exit status for a missing capability (EX_NOPERM).
const EXIT_NOPERM: u8 = 77;
/// Exit status when an interface of the chain already carries an XDP or TC ingress program that is not
/// this chain's (EX_UNAVAILABLE): the daemon does not attach beside it.
const EXIT_OCCUPIED: u8 = 69;
/// Exit status when another daemon holds the pin directory's owner lock (EX_TEMPFAIL).
const EXIT_PIN_DIR_BUSY: u8 = 75;

#[derive(Parser)]
#[command(
    name = "cnf-dataplane",
    version,
    about = "Runs a VNFChain as eBPF on this pod's interfaces"
)]
struct Flags {
    /// The chain: a VNFChain manifest (what the operator renders into the pod's ConfigMap).
    #[arg(long, env = "CNF_CONFIG")]
    config: PathBuf,
    /// gRPC on TCP (needs --tls-dir: clients must present a certificate signed by its ca.crt that carries
    /// the --client-identity URI SAN).
    #[arg(long, env = "CNF_GRPC_LISTEN")]
    grpc_listen: Option<SocketAddr>,
    /// gRPC on a Unix socket created with mode 0600 (the laptop testbed).
    #[arg(long, env = "CNF_GRPC_SOCKET")]
    grpc_socket: Option<PathBuf>,
    /// Directory with tls.crt, tls.key and ca.crt for mutual TLS (re-read when they change).
    #[arg(long, env = "CNF_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// The only client identity (URI SAN of the client certificate) the gRPC on TCP serves.
    #[arg(long, env = "CNF_CLIENT_IDENTITY", default_value = tls::OPERATOR_IDENTITY)]
    client_identity: String,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "CNF_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// Keys of user-space functions: Secret S's key K is the file S/K here (where the operator mounts them).
    #[arg(long, env = "CNF_SECRETS_DIR", default_value = crds::KEY_SECRETS_DIR)]
    secrets_dir: PathBuf,
    /// On exit (SIGTERM, Ctrl-C): `detach` the chain and remove its pins, or `keep` it running with
    /// its maps and links pinned in --pin-dir. With `keep` the pins are made at attach time, so a
    /// restarted daemon (also after a crash) re-adopts the running chain without interrupting traffic,
    /// counters and flows continuing; with `detach` a crash leaves the interfaces unfiltered until the
    /// next start. The operator always renders this flag (spec.dataplane.onExit, default keep).
    #[arg(long, env = "CNF_ON_EXIT", value_enum, default_value = "detach")]
    on_exit: ExitPolicy,
    /// bpffs directory for the chain's pins
    /// [default: /sys/fs/bpf/buildvnf/<namespace>/<chain>/netns-<inode of this network namespace>].
    /// Under /sys/fs/bpf, bpffs is mounted when missing; pins live as long as that bpffs mount does.
    #[arg(long, env = "CNF_PIN_DIR")]
    pin_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExitPolicy {
    /// Detach the programs and remove the pins.
    Detach,
    /// Leave the chain attached and pinned for the next daemon.
    Keep,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let flags = Flags::parse();
    let chain = match read_chain(&flags.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = preflight(&flags) {
        return code;
    }
    let started = Instant::now();
    let on_exit = match flags.on_exit {
        ExitPolicy::Detach => OnExit::Detach,
        ExitPolicy::Keep => OnExit::Keep,
    };
    let dataplane = match start(&flags, &chain, on_exit) {
        Ok(d) => d,
        Err(code) => return code,
    };
    log_started(&dataplane, started);
    let state = Arc::new(Shared::new(dataplane));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cnf-dataplane: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(flags, state.clone()));
    leave(&state, on_exit);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cnf-dataplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The chain of the manifest at `path`; errors are printed, the exit status returned.
fn read_chain(path: &Path) -> Result<VNFChain, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("cnf-dataplane: {}: {e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })?;
    crds::manifest::parse_single_chain(&text).map_err(|errors| {
        for e in &errors.0 {
            eprintln!("{}: {e}", path.display());
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Refuses flags that make no sense together and a process without the capabilities it needs.
fn preflight(flags: &Flags) -> Result<(), ExitCode> {
    if flags.grpc_listen.is_some() && flags.tls_dir.is_none() {
        eprintln!(
            "cnf-dataplane: --grpc-listen needs --tls-dir (unauthenticated gRPC is refused); use --grpc-socket on a single host"
        );
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    caps::check().map_err(|e| {
        eprintln!("cnf-dataplane: {e}");
        ExitCode::from(EXIT_NOPERM)
    })
}

/// Loads and attaches `chain` (or re-adopts the kept one); an error is printed and mapped to its exit
/// status.
fn start(flags: &Flags, chain: &VNFChain, on_exit: OnExit) -> Result<Dataplane, ExitCode> {
    if on_exit == OnExit::Detach {
        log::info!(
            "--on-exit detach: if this process dies, the chain goes with it and the interfaces are \
             unfiltered until the next start (--on-exit keep leaves it running)"
        );
    }
    let listeners = flags
        .grpc_listen
        .map(|addr| control::Listener { name: "grpc", addr })
        .into_iter()
        .chain(std::iter::once(control::Listener {
            name: "metrics",
            addr: flags.metrics_listen,
        }))
        .collect();
    let opts = StartOptions {
        secrets_dir: flags.secrets_dir.clone(),
        on_exit,
        pin_dir: flags.pin_dir.clone(),
        listeners,
    };
    Dataplane::start_with(chain, &opts).map_err(|e| {
        let code = match &e {
            ApplyError::Invalid(_) | ApplyError::Unsupported { .. } => {
                for line in e.to_string().lines() {
                    eprintln!("{}: {line}", flags.config.display());
                }
                return ExitCode::from(EXIT_CONFIG);
            }
            ApplyError::Occupied { .. } => ExitCode::from(EXIT_OCCUPIED),
            ApplyError::PinDirBusy(_) => ExitCode::from(EXIT_PIN_DIR_BUSY),
            _ => ExitCode::FAILURE,
        };
        eprintln!("cnf-dataplane: {e}");
        code
    })
}

/// Logs where the chain is attached and how long the start took.
fn log_started(dataplane: &Dataplane, started: Instant) {
    for a in dataplane.attachments() {
        log::info!(
            "attached to {} with {}{}",
            a.interface,
            a.mode,
            if a.fallback_reason.is_empty() {
                String::new()
            } else {
                format!(" (fell back: {})", a.fallback_reason)
            }
        );
    }
    log::info!(
        "chain {}/{} generation {} running ({} ms from start to attached{})",
        dataplane.chain().0,
        dataplane.chain().1,
        dataplane.generation(),
        started.elapsed().as_millis(),
        dataplane
            .adopted()
            .map(|a| format!("; {a}"))
            .unwrap_or_default()
    );
}

/// Keeps or detaches the chain before exiting (an engine that is not kept also detaches when dropped).
fn leave(state: &Shared, on_exit: OnExit) {
    let _ = state.update(|dp| {
        let (what, res) = match on_exit {
            OnExit::Keep => ("keep", dp.keep()),
            OnExit::Detach => ("detach", dp.detach()),
        };
        match res {
            Ok(()) if on_exit == OnExit::Keep => {
                log::info!("chain kept running for the next daemon to re-adopt")
            }
            Ok(()) => log::info!("chain detached"),
            Err(e) => log::warn!("{what}: {e}"),
        }
    });
}

/// The servers' tasks; each ends with its server.
type Tasks = JoinSet<anyhow::Result<()>>;

/// Resolves once `true` was sent on the stop channel.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Serves the gRPC `router` on the connections of `incoming` until `stop` says so; `label` names the
/// server in its error.
fn serve_grpc<I, IO, IE>(
    tasks: &mut Tasks,
    router: Router,
    incoming: I,
    stop: watch::Receiver<bool>,
    label: &'static str,
) where
    I: tokio_stream::Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    tasks.spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, stopped(stop))
            .await
            .context(label)
    });
}

/// The `/metrics`, `/healthz` and `/readyz` routes over `state`.
fn metrics_app(state: Arc<Shared>) -> axum::Router {
    let readiness = state.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                // the last published metrics while an update runs
                match state.metrics() {
                    Ok(text) => (StatusCode::OK, text),
                    Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                match readiness.ready() {
                    Ok(true) => (StatusCode::OK, "ready"),
                    _ => (StatusCode::SERVICE_UNAVAILABLE, "not attached"),
                }
            }),
        )
}

/// Serves the gRPC API (TCP with mutual TLS, a Unix socket, or both) and the metrics endpoint until
/// SIGTERM, Ctrl-C or a server's failure; then refuses updates and drains.
async fn serve(flags: Flags, state: Arc<Shared>) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<DataplaneServer<grpc::Service>>().await;
    let router = Server::builder()
        .add_service(health_service)
        .add_service(DataplaneServer::new(grpc::Service::new(state.clone())));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Tasks::new();

    if let Some(addr) = flags.grpc_listen {
        let dir = flags
            .tls_dir
            .clone()
            .context("--grpc-listen needs --tls-dir")?;
        // Only the operator's client identity is served (daemon/tls.rs).
        let credentials = tls::Credentials::load(&dir, &flags.client_identity)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let incoming = tls::incoming(listener, credentials.server_config()?);
        serve_grpc(
            &mut tasks,
            router.clone(),
            incoming,
            stop_rx.clone(),
            "gRPC (TCP)",
        );
        log::info!(
            "gRPC on {addr} (mutual TLS, clients with identity {})",
            flags.client_identity
        );
    }
    if let Some(path) = &flags.grpc_socket {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)
            .with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", path.display()))?;
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        serve_grpc(
            &mut tasks,
            router.clone(),
            incoming,
            stop_rx.clone(),
            "gRPC (Unix socket)",
        );
        log::info!("gRPC on unix:{} (mode 0600)", path.display());
    }

    let listener = tokio::net::TcpListener::bind(flags.metrics_listen)
        .await
        .with_context(|| format!("binding {}", flags.metrics_listen))?;
    let app = metrics_app(state.clone());
    let stop = stopped(stop_rx);
    tasks.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .context("metrics server")
    });
    log::info!("metrics on http://{}/metrics", flags.metrics_listen);

    let result = run_until_stopped(&mut tasks, &state, &stop_tx).await;
    if let Some(path) = flags.grpc_socket {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Waits for SIGTERM, Ctrl-C or a server's end; then refuses updates, stops the servers and drains
/// them briefly.
async fn run_until_stopped(
    tasks: &mut Tasks,
    state: &Arc<Shared>,
    stop_tx: &watch::Sender<bool>,
) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => log::info!("interrupted"),
        _ = term.recv() => log::info!("SIGTERM"),
        Some(res) = tasks.join_next() => {
            let _ = stop_tx.send(true);
            return res.context("server task")?;
        }
    }
    // No more updates from here on: ApplyChain is refused while the servers drain.
    // (after an update in flight, which runs on its blocking thread)
    let stopping = state.clone();
    let _ = tokio::task::spawn_blocking(move || stopping.update(|dp| dp.stop_updates())).await;
    let _ = stop_tx.send(true);
    // Drain in-flight requests briefly; idle client connections (the operator keeps one) must not hold
    // the shutdown up.
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(res) = tasks.join_next().await {
            res.context("server task")??;
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(res) => res,
        Err(_) => {
            log::info!("closing connections still open after 2 s");
            tasks.abort_all();
            Ok(())
        }
    }
}
