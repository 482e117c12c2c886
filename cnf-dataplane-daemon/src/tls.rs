//! Mutual TLS of the sidecar's gRPC on TCP: who may call, and the certificate it serves.
//!
//! A client is served only when its certificate chains to `ca.crt` (WebPKI: signature, validity, extended
//! key usage clientAuth) **and** carries the accepted identity as a URI SAN (default
//! [`OPERATOR_IDENTITY`], the operator's; `--client-identity`). Every chain's serving certificate is signed
//! by the same CA but names its chain (`spiffe://buildvnf.io/ns/<ns>/chain/<chain>`) and is for serverAuth
//! only, so it is refused as a client: the check is in the TLS handshake, so no RPC of any service (health
//! included) is reached by any other client.
//!
//! The files of `--tls-dir` (`tls.crt`, `tls.key`, `ca.crt`, a Secret volume the operator renews) are read
//! again when they change (looked at most every [`RELOAD_INTERVAL`]): a renewed certificate or a rotated CA
//! takes effect without a restart. A change that does not parse is logged and the previous material kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore,
    SignatureScheme,
};
use tokio_rustls::server::TlsStream;

pub use dataplane_api::identity::OPERATOR_IDENTITY;
use dataplane_api::identity::uri_sans;
/// How often, at most, the files are looked at for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);
/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not hold what it must.
    #[error("{path}: {problem}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The accepted client identity is not usable.
    #[error("--client-identity {0:?}: must be a URI such as spiffe://buildvnf.io/operator")]
    Identity(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What the three files hold, parsed.
struct Material {
    bytes: [Vec<u8>; 3],
    certified: Arc<CertifiedKey>,
    verifier: Arc<dyn ClientCertVerifier>,
}

struct State {
    checked: Instant,
    material: Material,
}

/// Serves `tls.crt`/`tls.key` and verifies clients against `ca.crt` plus the identity, reloading the files
/// when they change.
pub struct Credentials {
    dir: PathBuf,
    identity: String,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("dir", &self.dir)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn read(dir: &Path, file: &str) -> Result<Vec<u8>, TlsError> {
    let path = dir.join(file);
    std::fs::read(&path).map_err(|source| TlsError::Read { path, source })
}

fn load(dir: &Path, provider: &Arc<CryptoProvider>) -> Result<Material, TlsError> {
    let bytes = [
        read(dir, "tls.crt")?,
        read(dir, "tls.key")?,
        read(dir, "ca.crt")?,
    ];
    let content = |file: &str, problem: String| TlsError::Content {
        path: dir.join(file),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes[0])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content("tls.crt", e.to_string()))?;
    if chain.is_empty() {
        return Err(content("tls.crt", "no certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&bytes[1]).map_err(|e| content("tls.key", e.to_string()))?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| content("tls.key", format!("not the key of tls.crt: {e}")))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&bytes[2]) {
        let ca = ca.map_err(|e| content("ca.crt", e.to_string()))?;
        roots
            .add(ca)
            .map_err(|e| content("ca.crt", e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(content("ca.crt", "no certificate".into()));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
        .build()
        .map_err(|e| content("ca.crt", e.to_string()))?;
    Ok(Material {
        bytes,
        certified: Arc::new(certified),
        verifier,
    })
}

impl Credentials {
    /// Reads `dir` now (an error names the file); `identity` is the only client URI SAN served.
    pub fn load(dir: &Path, identity: &str) -> Result<Arc<Self>, TlsError> {
        if !identity.contains(':') || identity.chars().any(char::is_whitespace) {
            return Err(TlsError::Identity(identity.into()));
        }
        let provider = Arc::new(ring::default_provider());
        let material = load(dir, &provider)?;
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            identity: identity.into(),
            provider,
            state: Mutex::new(State {
                checked: Instant::now(),
                material,
            }),
        }))
    }

    /// The current certificate and verifier, after reloading changed files (at most every
    /// [`RELOAD_INTERVAL`]).
    fn current(&self) -> (Arc<CertifiedKey>, Arc<dyn ClientCertVerifier>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.checked.elapsed() >= RELOAD_INTERVAL {
            state.checked = Instant::now();
            self.reload(&mut state);
        }
        (
            state.material.certified.clone(),
            state.material.verifier.clone(),
        )
    }

    fn reload(&self, state: &mut State) {
        let unchanged = ["tls.crt", "tls.key", "ca.crt"]
            .iter()
            .zip(&state.material.bytes)
            .all(|(f, old)| read(&self.dir, f).is_ok_and(|now| &now == old));
        if unchanged {
            return;
        }
        match load(&self.dir, &self.provider) {
            Ok(m) => {
                log::info!("TLS material in {} changed: reloaded", self.dir.display());
                state.material = m;
            }
            Err(e) => {
                log::warn!("TLS material changed but is not usable, keeping the previous: {e}")
            }
        }
    }

    /// The rustls server configuration: these credentials, client certificates mandatory, HTTP/2.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(self.clone())
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Credentials {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().0)
    }
}

impl ClientCertVerifier for Credentials {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional (RFC 8446 §4.2.4); the roots can change on reload, so none are sent.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (_, verifier) = self.current();
        verifier.verify_client_cert(end_entity, intermediates, now)?;
        if uri_sans(end_entity.as_ref()).contains(&self.identity) {
            Ok(ClientCertVerified::assertion())
        } else {
            log::warn!(
                "refused a client certificate signed by the CA without the identity {} (it names {:?})",
                self.identity,
                uri_sans(end_entity.as_ref())
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().1.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().1.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().1.supported_verify_schemes()
    }
}

/// The TLS connections accepted on `listener` with `config`, for tonic's `serve_with_incoming`. Each
/// handshake runs on its own task (a slow or refused client holds nobody up) and is dropped after 10 s; only
/// completed handshakes — clients that passed [`Credentials`]' verification — are yielded.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = mpsc::channel(16);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("gRPC accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, conn_tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = conn_tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => log::warn!("gRPC TLS handshake with {peer} refused: {e}"),
                    Err(_) => log::warn!("gRPC TLS handshake with {peer} timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("cnf-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        Dir(d)
    }

    fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("CA");
        (cert.pem(), Issuer::new(p, key))
    }

    /// (certificate PEM, key PEM) with URI SANs `uris`, for clientAuth or serverAuth.
    fn leaf(issuer: &Issuer<'static, KeyPair>, uris: &[&str], client: bool) -> (String, String) {
        let mut p = CertificateParams::new(vec!["x.t-dataplane.lab.svc".to_string()]).expect("p");
        for u in uris {
            p.subject_alt_names
                .push(SanType::URI((*u).try_into().expect("uri")));
        }
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }

    fn write(d: &Path, server: &(String, String), ca: &str) {
        std::fs::write(d.join("tls.crt"), &server.0).expect("tls.crt");
        std::fs::write(d.join("tls.key"), &server.1).expect("tls.key");
        std::fs::write(d.join("ca.crt"), ca).expect("ca.crt");
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem")
    }

    fn accepts(c: &Credentials, cert: &(String, String)) -> bool {
        c.verify_client_cert(&der(&cert.0), &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn only_the_operator_identity_under_the_ca_is_accepted() {
        let d = dir("verify");
        let (ca_pem, issuer) = ca("ca");
        let (_, other) = ca("other");
        write(
            &d.0,
            &leaf(&issuer, &["spiffe://buildvnf.io/ns/lab/chain/t"], false),
            &ca_pem,
        );
        let c = Credentials::load(&d.0, OPERATOR_IDENTITY).expect("load");
        assert!(c.client_auth_mandatory());
        assert!(accepts(&c, &leaf(&issuer, &[OPERATOR_IDENTITY], true)));
        // Another URI next to it does not hide it.
        assert!(accepts(
            &c,
            &leaf(&issuer, &["spiffe://example/x", OPERATOR_IDENTITY], true)
        ));
        let chain = "spiffe://buildvnf.io/ns/lab/chain/t";
        assert!(
            !accepts(&c, &leaf(&issuer, &[chain], true)),
            "a chain identity"
        );
        assert!(
            !accepts(&c, &leaf(&issuer, &[chain], false)),
            "a serving certificate"
        );
        assert!(!accepts(&c, &leaf(&issuer, &[], true)), "no identity");
        assert!(
            !accepts(
                &c,
                &leaf(&issuer, &["spiffe://buildvnf.io/operator/x"], true)
            ),
            "a prefix match"
        );
        assert!(
            !accepts(&c, &leaf(&other, &[OPERATOR_IDENTITY], true)),
            "another CA"
        );
        assert!(
            !accepts(&c, &leaf(&issuer, &[OPERATOR_IDENTITY], false)),
            "serverAuth only"
        );
        // The accepted identity is a flag.
        let custom = Credentials::load(&d.0, "spiffe://example/ops").expect("load");
        assert!(accepts(
            &custom,
            &leaf(&issuer, &["spiffe://example/ops"], true)
        ));
        assert!(!accepts(
            &custom,
            &leaf(&issuer, &[OPERATOR_IDENTITY], true)
        ));
        let e = Credentials::load(&d.0, "operator").expect_err("not a URI");
        assert!(e.to_string().contains("--client-identity"), "{e}");
    }

    #[test]
    fn bad_material_is_an_error_naming_the_file() {
        let d = dir("bad");
        let (ca_pem, issuer) = ca("ca");
        let server = leaf(&issuer, &[], false);
        write(&d.0, &server, &ca_pem);
        std::fs::remove_file(d.0.join("ca.crt")).expect("rm");
        let e = Credentials::load(&d.0, OPERATOR_IDENTITY).expect_err("no ca.crt");
        assert!(e.to_string().contains("ca.crt"), "{e}");
        std::fs::write(d.0.join("ca.crt"), "not pem").expect("write");
        let e = Credentials::load(&d.0, OPERATOR_IDENTITY).expect_err("empty ca.crt");
        assert!(e.to_string().contains("ca.crt"), "{e}");
        let other_key = KeyPair::generate().expect("key").serialize_pem();
        write(&d.0, &(server.0.clone(), other_key), &ca_pem);
        let e = Credentials::load(&d.0, OPERATOR_IDENTITY).expect_err("key mismatch");
        assert!(e.to_string().contains("tls.key"), "{e}");
    }

    #[test]
    fn changed_files_are_reloaded_and_broken_ones_ignored() {
        let d = dir("reload");
        let (ca_pem, issuer) = ca("ca");
        let first = leaf(&issuer, &[], false);
        write(&d.0, &first, &ca_pem);
        let c = Credentials::load(&d.0, OPERATOR_IDENTITY).expect("load");
        let served = |c: &Credentials| c.current().0.cert[0].clone();
        assert_eq!(served(&c), der(&first.0));
        let age = |c: &Credentials| {
            c.state.lock().expect("state").checked = Instant::now() - RELOAD_INTERVAL;
        };
        // A renewed certificate and a rotated CA: served and trusted after the next look.
        let (new_ca, new_issuer) = ca("new ca");
        let second = leaf(&new_issuer, &[], false);
        write(&d.0, &second, &format!("{new_ca}{ca_pem}"));
        assert_eq!(served(&c), der(&first.0), "not before the interval");
        age(&c);
        assert_eq!(served(&c), der(&second.0));
        assert!(accepts(&c, &leaf(&new_issuer, &[OPERATOR_IDENTITY], true)));
        assert!(accepts(&c, &leaf(&issuer, &[OPERATOR_IDENTITY], true)));
        // A half-written or broken change keeps the previous material.
        std::fs::write(d.0.join("tls.key"), "garbage").expect("write");
        age(&c);
        assert_eq!(served(&c), der(&second.0));
        assert!(accepts(&c, &leaf(&new_issuer, &[OPERATOR_IDENTITY], true)));
    }
}
