//! Talking to the cnf-dataplane sidecars: a small trait (so reconcile logic is testable without pods) and
//! its gRPC implementation over mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use dataplane_api::dataplane_client::DataplaneClient;
use dataplane_api::{
    ApplyChainRequest, ApplyChainResponse, DataplaneStatus, DetachRequest, GetStatusRequest,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::certs::OperatorIdentity;

/// Where one sidecar listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodEndpoint {
    /// Pod name (the TLS server name is `<pod>.<service>.<namespace>.svc`).
    pub pod: String,
    /// Pod IP.
    pub ip: String,
    /// Headless Service name of the chain (`<chain>-dataplane`), which the certificate's SAN names.
    pub service: String,
    /// Namespace of the chain. A pod that a chain's `namespaceSelector` reaches in another namespace runs
    /// with a copy of the chain's certificate (copies.rs), which names the chain's namespace, so the TLS
    /// server name is `<pod>.<chain>-dataplane.<chain namespace>.svc` wherever the pod runs.
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

/// The client certificate the operator presents.
enum Credentials {
    /// Fixed PEM material (tests; a certificate issued elsewhere).
    Fixed(ClientTlsConfig),
    /// The operator's own identity, issued in memory from its CA and renewed when due (certs.rs).
    Issued(Arc<OperatorIdentity>),
}

/// gRPC to `https://<pod ip>:50051` over mutual TLS with the operator's client certificate, verifying the
/// sidecar's certificate for `<pod>.<chain>-dataplane.<namespace>.svc` under the CA. There is no plain-text
/// mode: every sidecar the operator renders serves mutual TLS only.
#[derive(Clone)]
pub struct GrpcSidecars {
    credentials: Arc<Credentials>,
    port: u16,
    timeout: Duration,
}

impl GrpcSidecars {
    /// With the operator's identity (certs.rs: URI SAN `spiffe://buildvnf.io/operator`).
    pub fn new(identity: Arc<OperatorIdentity>, port: u16) -> Self {
        Self {
            credentials: Arc::new(Credentials::Issued(identity)),
            port,
            timeout: Duration::from_secs(5),
        }
    }

    /// With a fixed client certificate and key, trusting the CA certificates of `ca_pem` (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str, port: u16) -> Self {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .identity(Identity::from_pem(cert_pem, key_pem));
        Self {
            credentials: Arc::new(Credentials::Fixed(tls)),
            port,
            timeout: Duration::from_secs(5),
        }
    }

    fn tls(&self) -> Result<ClientTlsConfig, SidecarError> {
        match &*self.credentials {
            Credentials::Fixed(tls) => Ok(tls.clone()),
            Credentials::Issued(identity) => {
                let (issued, bundle) = identity
                    .current(std::time::SystemTime::now())
                    .map_err(|e| SidecarError::Unreachable(format!("client certificate: {e}")))?;
                Ok(ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(bundle))
                    .identity(Identity::from_pem(issued.cert_pem, issued.key_pem)))
            }
        }
    }

    async fn client(&self, pod: &PodEndpoint) -> Result<DataplaneClient<Channel>, SidecarError> {
        let unreachable =
            |e: tonic::transport::Error| SidecarError::Unreachable(format!("{}: {e}", pod.pod));
        let host = if pod.ip.contains(':') {
            format!("[{}]", pod.ip)
        } else {
            pod.ip.clone()
        };
        // The sidecar's certificate must name this pod of this chain in this namespace (certs.rs issues
        // `*.<chain>-dataplane.<namespace>.svc`): another chain's certificate does not pass.
        let name = format!("{}.{}.{}.svc", pod.pod, pod.service, pod.namespace);
        let endpoint = Endpoint::from_shared(format!("https://{host}:{}", self.port))
            .map_err(unreachable)?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .tls_config(self.tls()?.domain_name(name))
            .map_err(unreachable)?;
        Ok(DataplaneClient::new(
            endpoint.connect().await.map_err(unreachable)?,
        ))
    }
}

/// A sidecar's gRPC error as the controller sees it: transport-like codes are unreachable, every other code
/// is a refusal with the daemon's message.
pub(crate) fn classify(pod: &PodEndpoint, s: tonic::Status) -> SidecarError {
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
