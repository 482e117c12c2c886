//! The buildvnf-operator binary: flags, the CRD check, `/metrics` `/healthz` `/readyz`, and the controller.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::routing::get;
use clap::Parser;
use std::time::Duration;

use operator::controller::{self, Context};
use operator::leader::Elector;
use operator::metrics::Metrics;
use operator::policy::ImagePolicy;
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
    /// Images chains may name in spec.dataplane.image besides --dataplane-image (always allowed),
    /// comma-separated: REPOSITORY:TAG, REPOSITORY@DIGEST, REPOSITORY (any tag), or PREFIX/ (any
    /// repository under it). Empty: only --dataplane-image.
    #[arg(long, env = "BUILDVNF_ALLOWED_IMAGES", value_delimiter = ',')]
    allowed_images: Vec<String>,
    /// Secret (in the operator's namespace, --lease-namespace) with the CA that signs the operator's client
    /// certificate and the chains' serving certificates (tls.crt, tls.key; extra trusted CAs in ca.crt).
    #[arg(
        long,
        env = "BUILDVNF_CA_SECRET",
        default_value = "buildvnf-operator-ca"
    )]
    ca_secret: String,
    /// Use the CA Secret as supplied: fail when it is missing instead of creating one.
    #[arg(long)]
    no_create_ca: bool,
    /// Lifetime of the certificates the operator issues, in days (renewed at 2/3 of it).
    #[arg(long, env = "BUILDVNF_CERT_VALIDITY_DAYS", default_value = "90", value_parser = clap::value_parser!(u32).range(3..=3650))]
    cert_validity_days: u32,
    /// Lifetime of a CA the operator creates, in days.
    #[arg(long, env = "BUILDVNF_CA_VALIDITY_DAYS", default_value = "3650", value_parser = clap::value_parser!(u32).range(30..=36500))]
    ca_validity_days: u32,
    /// Let cert-manager sign the chains' serving certificates: `Issuer/<name>` (in each chain's
    /// namespace) or `ClusterIssuer/<name>`. The operator then renders a cert-manager Certificate per chain;
    /// its own client certificate still comes from --ca-secret, which must be the issuer's CA.
    #[arg(long, env = "BUILDVNF_CERT_MANAGER_ISSUER")]
    cert_manager_issuer: Option<operator::certs::CertManagerIssuer>,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "BUILDVNF_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Run without leader election (only one replica may run then).
    #[arg(long)]
    no_leader_election: bool,
    /// The operator's own namespace: of the leader Lease and of the CA Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "buildvnf-system")]
    lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "buildvnf-operator")]
    identity: String,
    /// Serve the sidecar-injection webhook (HTTPS, certificate from the CA) on this address, e.g.
    /// 0.0.0.0:9443; without it chains with spec.target get no sidecars (docs/sidecar.md).
    #[arg(long, env = "BUILDVNF_WEBHOOK_LISTEN")]
    webhook_listen: Option<SocketAddr>,
    /// The Service (in the operator's namespace) the API server calls the webhook by: its certificate's name.
    #[arg(
        long,
        env = "BUILDVNF_WEBHOOK_SERVICE",
        default_value = "buildvnf-operator-webhook"
    )]
    webhook_service: String,
    /// The MutatingWebhookConfiguration whose webhooks get the CA bundle (the chart's).
    #[arg(long, env = "BUILDVNF_WEBHOOK_CONFIGURATION")]
    webhook_configuration: Option<String>,
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

    let allowed_images = ImagePolicy::new(&flags.allowed_images)
        .context("--allowed-images / BUILDVNF_ALLOWED_IMAGES")?;
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    let client = kube::Client::try_from(with_user_agent(config))
        .context("building the Kubernetes client")?;
    controller::check_crd(&client).await?;
    let client_for_lease = client.clone();
    let settings = Settings {
        default_image: flags.dataplane_image.clone(),
        pod_monitor: controller::pod_monitor_available(&client).await,
        allowed_images,
        ..Settings::default()
    };
    tracing::info!(pod_monitor = settings.pod_monitor, "starting");
    let day = Duration::from_secs(24 * 3600);
    let ca = operator::certs::load_or_create_ca(
        &kube::Api::namespaced(client.clone(), &flags.lease_namespace),
        &flags.ca_secret,
        !flags.no_create_ca,
        std::time::SystemTime::now(),
        day * flags.ca_validity_days,
    )
    .await
    .context("the operator's CA")?;
    let ca = Arc::new(ca);
    let validity = day * flags.cert_validity_days;
    if let Some(addr) = flags.webhook_listen {
        start_webhook(&client, &flags, addr, ca.clone(), validity, &settings).await?;
    }
    let identity = operator::certs::OperatorIdentity::new(ca.clone(), validity)
        .context("issuing the operator's client certificate")?;
    let sidecars = GrpcSidecars::new(Arc::new(identity), operator::render::GRPC_PORT as u16);
    let certs = operator::certs::ChainCerts {
        ca,
        issuer: match flags.cert_manager_issuer {
            Some(i) => operator::certs::ChainIssuer::CertManager(i),
            None => operator::certs::ChainIssuer::Operator,
        },
        validity,
    };
    let metrics = Metrics::new()?;
    let ctx = Arc::new(
        Context::new(client, sidecars, settings, metrics.clone()).with_certs(Arc::new(certs)),
    );

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
    let lost = elector
        .lead(
            Duration::from_secs(5),
            Duration::from_secs(5),
            shutdown_signal(),
            |stop| controller::run(ctx, flags.concurrency, stop),
        )
        .await?;
    if let Some(reason) = lost {
        // Exit so Kubernetes restarts this replica as a candidate; another replica leads meanwhile.
        anyhow::bail!("lost leadership: {reason}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the injection webhook: watches, HTTPS on `addr`, and the CA bundle in the chart's configuration.
async fn start_webhook(
    client: &kube::Client,
    flags: &Flags,
    addr: SocketAddr,
    ca: Arc<operator::certs::Ca>,
    validity: Duration,
    settings: &Settings,
) -> anyhow::Result<()> {
    use operator::webhook;
    let version = client
        .apiserver_version()
        .await
        .context("reading the API server's version")?;
    let native_sidecars = webhook::native_sidecars(&version.major, &version.minor);
    if !native_sidecars {
        tracing::warn!(major = %version.major, minor = %version.minor,
            "no native sidecar containers before Kubernetes 1.29: the webhook refuses pods a chain selects");
    }
    let cert = webhook::ServingCert::new(
        ca.clone(),
        &flags.lease_namespace,
        &flags.webhook_service,
        validity,
    )
    .map_err(|e| anyhow::anyhow!("issuing the webhook's certificate: {e}"))?;
    let server = Arc::new(webhook::Server {
        stores: webhook::Stores::start(client.clone()),
        settings: settings.clone(),
        native_sidecars,
        ready: AtomicBool::new(false),
    });
    tokio::spawn({
        let server = server.clone();
        async move {
            if server.stores.ready().await {
                server.ready.store(true, Ordering::Relaxed);
            }
        }
    });
    if let Some(name) = flags.webhook_configuration.clone() {
        let client = client.clone();
        tokio::spawn(async move {
            // Until it succeeds: the API server cannot call the webhook without the bundle.
            loop {
                match webhook::install_ca_bundle(client.clone(), &name, 1, ca.bundle()).await {
                    Ok(()) => {
                        tracing::info!(configuration = %name, "webhook CA bundle installed");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, configuration = %name, "installing the webhook CA bundle")
                    }
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the webhook on {addr}"))?;
    tokio::spawn(async move {
        if let Err(e) = webhook::serve(listener, Arc::new(cert), server).await {
            tracing::error!(error = %e, "webhook server stopped");
        }
    });
    Ok(())
}

/// `User-Agent` of every request to the API server. The API server names the field manager of writes that
/// give none (the finalizer's JSON patches) after the part before the `/`, and audit logs show it.
const USER_AGENT: &str = concat!("buildvnf-operator/", env!("CARGO_PKG_VERSION"));

/// `config` with the operator's `User-Agent` on every request.
fn with_user_agent(mut config: kube::Config) -> kube::Config {
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    config
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, Patch, PatchParams};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads one HTTP/1.1 request from `stream` (headers and a Content-Length body); returns its head.
    async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return text[..end].to_string();
                }
            }
        }
        String::from_utf8_lossy(&buf).to_string()
    }

    /// The real kube client stack (the one `main` builds) against a plain HTTP listener on loopback: every
    /// request it sends carries the operator's User-Agent, and a server-side apply names the field manager.
    #[tokio::test]
    async fn every_request_carries_the_user_agent_and_applies_name_the_field_manager() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let mut heads = Vec::new();
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let head = read_request(&mut stream).await;
                let body = if head.starts_with("GET") {
                    r#"{"apiVersion":"v1","kind":"ConfigMapList","metadata":{},"items":[]}"#
                } else {
                    r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"ns"}}"#
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).await.expect("write");
                heads.push(head);
            }
            heads
        });
        let url: http::Uri = format!("http://{addr}").parse().expect("url");
        let mut config = kube::Config::new(url);
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static("someone-else/1"),
        ));
        let client = kube::Client::try_from(with_user_agent(config)).expect("client");
        let api: Api<ConfigMap> = Api::namespaced(client, "ns");
        api.list(&ListParams::default()).await.expect("list");
        let cm = ConfigMap {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("x".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.patch(
            "x",
            &PatchParams::apply(operator::controller::FIELD_MANAGER),
            &Patch::Apply(&cm),
        )
        .await
        .expect("apply");
        let heads = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server done")
            .expect("server task");
        assert_eq!(heads.len(), 2);
        for head in &heads {
            let agents: Vec<&str> = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
                .map(|(_, v)| v.trim())
                .collect();
            assert_eq!(agents, [USER_AGENT], "{head}");
        }
        assert!(USER_AGENT.starts_with("buildvnf-operator/"));
        assert!(heads[1].starts_with("PATCH "), "{}", heads[1]);
        assert!(
            heads[1].contains("fieldManager=buildvnf-operator"),
            "{}",
            heads[1]
        );
    }
}
