//! Talking to the cnf-dataplane sidecars: a small trait (so reconcile logic is testable without pods) and
//! its gRPC implementation over mutual TLS.

use std::path::Path;
use std::time::Duration;

use dataplane_api::dataplane_client::DataplaneClient;
use dataplane_api::{
    ApplyChainRequest, ApplyChainResponse, DataplaneStatus, DetachRequest, GetStatusRequest,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Where one sidecar listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodEndpoint {
    /// Pod name (the TLS server name is `<pod>.<service>.<namespace>.svc`).
    pub pod: String,
    /// Pod IP.
    pub ip: String,
    /// Headless Service the pod belongs to.
    pub service: String,
    /// Namespace.
    pub namespace: String,
}

/// A failed call to a sidecar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarError {
    /// Could not reach it.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It refused the chain (validation or load failure); the previous generation keeps running there.
    #[error("{0}")]
    Rejected(String),
}

/// The three calls reconcile needs.
pub trait Sidecars: Send + Sync + 'static {
    /// `GetStatus`.
    fn status(
        &self,
        pod: &PodEndpoint,
    ) -> impl Future<Output = Result<DataplaneStatus, SidecarError>> + Send;
    /// `ApplyChain`.
    fn apply(
        &self,
        pod: &PodEndpoint,
        req: ApplyChainRequest,
    ) -> impl Future<Output = Result<ApplyChainResponse, SidecarError>> + Send;
    /// `Detach`.
    fn detach(&self, pod: &PodEndpoint) -> impl Future<Output = Result<(), SidecarError>> + Send;
}

/// gRPC to `https://<pod ip>:50051` with the operator's client certificate.
#[derive(Clone)]
pub struct GrpcSidecars {
    tls: Option<ClientTlsConfig>,
    port: u16,
    timeout: Duration,
}

impl GrpcSidecars {
    /// mTLS with `tls.crt`, `tls.key` and `ca.crt` from `dir`.
    pub fn with_tls_dir(dir: &Path, port: u16) -> std::io::Result<Self> {
        let read = |f: &str| std::fs::read(dir.join(f));
        let identity = Identity::from_pem(read("tls.crt")?, read("tls.key")?);
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.crt")?))
            .identity(identity);
        Ok(Self {
            tls: Some(tls),
            port,
            timeout: Duration::from_secs(5),
        })
    }

    /// Plain-text gRPC (tests and the laptop testbed only; a sidecar with TLS configured refuses it).
    pub fn insecure(port: u16) -> Self {
        Self {
            tls: None,
            port,
            timeout: Duration::from_secs(5),
        }
    }

    async fn client(&self, pod: &PodEndpoint) -> Result<DataplaneClient<Channel>, SidecarError> {
        let unreachable =
            |e: tonic::transport::Error| SidecarError::Unreachable(format!("{}: {e}", pod.pod));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = if pod.ip.contains(':') {
            format!("[{}]", pod.ip)
        } else {
            pod.ip.clone()
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}:{}", self.port))
            .map_err(unreachable)?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        if let Some(tls) = &self.tls {
            let name = format!("{}.{}.{}.svc", pod.pod, pod.service, pod.namespace);
            endpoint = endpoint
                .tls_config(tls.clone().domain_name(name))
                .map_err(unreachable)?;
        }
        Ok(DataplaneClient::new(
            endpoint.connect().await.map_err(unreachable)?,
        ))
    }
}

fn classify(pod: &PodEndpoint, s: tonic::Status) -> SidecarError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            SidecarError::Unreachable(format!("{}: {}", pod.pod, s.message()))
        }
        _ => SidecarError::Rejected(s.message().to_string()),
    }
}

impl Sidecars for GrpcSidecars {
    async fn status(&self, pod: &PodEndpoint) -> Result<DataplaneStatus, SidecarError> {
        let mut c = self.client(pod).await?;
        c.get_status(GetStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| classify(pod, s))
    }

    async fn apply(
        &self,
        pod: &PodEndpoint,
        req: ApplyChainRequest,
    ) -> Result<ApplyChainResponse, SidecarError> {
        let mut c = self.client(pod).await?;
        c.apply_chain(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| classify(pod, s))
    }

    async fn detach(&self, pod: &PodEndpoint) -> Result<(), SidecarError> {
        let mut c = self.client(pod).await?;
        c.detach(DetachRequest {})
            .await
            .map(|_| ())
            .map_err(|s| classify(pod, s))
    }
}
