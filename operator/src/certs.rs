//! Certificates of operator ↔ sidecar mutual TLS, issued by the operator (rcgen).
//!
//! - The operator's CA lives in Secret [`CA_SECRET`] (`tls.crt`, `tls.key`, optional `ca.crt`) in the
//!   operator's own namespace. The operator creates it on first start when it is absent (create, never
//!   overwrite: when another replica created it first, the operator reads that one), or uses a Secret the
//!   user supplied (`--ca-secret … --no-create-ca`; then a missing Secret is an error).
//! - Each chain gets Secret `<chain>-dataplane-tls` (`tls.crt`, `tls.key`, `ca.crt`) in its namespace,
//!   owned by the chain (controller reference, so it is garbage-collected with it): a serving certificate
//!   (extended key usage serverAuth only) with DNS SANs `*.<chain>-dataplane.<ns>.svc` and
//!   `*.<chain>-dataplane.<ns>.svc.cluster.local` and URI SAN `spiffe://buildvnf.io/ns/<ns>/chain/<chain>`.
//!   It is re-issued at 2/3 of its lifetime ([`renew_at`]), when the CA bundle changed, or when it does not
//!   name its chain; the sidecar re-reads its files when they change (the kubelet updates Secret volumes).
//! - The operator's client certificate (extended key usage clientAuth only, URI SAN [`OPERATOR_IDENTITY`])
//!   is issued in memory at start and re-issued at 2/3 of its lifetime ([`OperatorIdentity`]); it is never
//!   written anywhere. A chain certificate can be neither: it has no clientAuth usage and another URI, and
//!   the sidecar accepts only a client presenting [`OPERATOR_IDENTITY`].
//! - With a cert-manager issuer named (`--cert-manager-issuer`), the operator renders a cert-manager
//!   `Certificate` per chain instead of signing the serving certificate itself ([`cert_manager_certificate`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crds::VNFChain;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, Resource, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use serde_json::json;
use time::OffsetDateTime;

/// Name of the operator's CA Secret in its own namespace (unless the user names another).
pub const CA_SECRET: &str = "buildvnf-operator-ca";
pub use dataplane_api::identity::{OPERATOR_IDENTITY, chain_identity, uri_sans};
/// Default lifetime of chain and operator certificates (renewed at 2/3 of it).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default lifetime of a CA the operator creates.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Clock skew allowance: certificates are valid from this long before they are issued.
const BACKDATE: Duration = Duration::from_secs(300);
/// Field manager of the operator's server-side applies.
const FIELD_MANAGER: &str = "buildvnf-operator";

/// A certificate problem, naming the object and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A Secret holds something other than what it must.
    #[error("Secret {secret}: {problem}")]
    BadSecret {
        /// `namespace/name`.
        secret: String,
        /// What is wrong.
        problem: String,
    },
    /// The user-supplied CA Secret does not exist.
    #[error(
        "Secret {0} (the CA named by --ca-secret) does not exist: create it (type kubernetes.io/tls, tls.crt and tls.key of a CA) or let the operator create its own (no --no-create-ca)"
    )]
    MissingCa(String),
    /// A name that cannot be put into a certificate.
    #[error("{field} {value:?} is not a DNS label (lowercase letters, digits and '-', at most 63)")]
    BadName {
        /// Which name.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// rcgen refused to make a certificate.
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// A call to the API server failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

type Result<T, E = CertError> = std::result::Result<T, E>;

/// Name of the Secret with the serving certificate of `chain`'s pods (in the chain's namespace).
pub fn chain_secret_name(chain: &str) -> String {
    format!("{chain}-dataplane-tls")
}

/// The DNS SANs of a chain's serving certificate. The operator verifies `<pod>.<chain>-dataplane.<ns>.svc`
/// (sidecar.rs); a wildcard covers exactly one label, so no other chain's or namespace's pod matches.
pub fn chain_dns_names(namespace: &str, chain: &str) -> [String; 2] {
    [
        format!("*.{chain}-dataplane.{namespace}.svc"),
        format!("*.{chain}-dataplane.{namespace}.svc.cluster.local"),
    ]
}

/// Refuses names that would make a SAN match more than their own chain (dots, wildcards, upper case…).
fn dns_label(field: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(CertError::BadName {
            field,
            value: value.into(),
        })
    }
}

fn odt(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String> {
    Ok(rcgen::string::Ia5String::try_from(s)?)
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// A CA that signs chain and operator certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    bundle: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA valid from `now` for `validity`.
    pub fn generate(now: SystemTime, validity: Duration) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "buildvnf-operator CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = odt(now - BACKDATE);
        params.not_after = odt(now + validity);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            bundle: cert_pem.clone(),
            cert_pem,
        })
    }

    /// The CA of a Secret: `tls.crt` (the CA certificate) and `tls.key` (its key); certificates in an
    /// optional `ca.crt` are trusted too (keep the previous CA there while rotating). `secret` names it in
    /// errors.
    pub fn from_pem(
        secret: &str,
        cert_pem: &str,
        key_pem: &str,
        extra_trust: Option<&str>,
    ) -> Result<Self> {
        let bad = |problem: String| CertError::BadSecret {
            secret: secret.into(),
            problem,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| bad(format!("tls.key: {e}")))?;
        let der =
            first_cert_der(cert_pem).ok_or_else(|| bad("tls.crt holds no certificate".into()))?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| bad(format!("tls.crt: {e}")))?;
        if !x509.is_ca() {
            return Err(bad(
                "tls.crt is not a CA certificate (basicConstraints CA:false)".into(),
            ));
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad(
                "tls.key is not the key of the certificate in tls.crt".into()
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(der.clone()), key)
            .map_err(|e| bad(format!("tls.crt: {e}")))?;
        let cert_pem = pem_of(&der);
        let mut bundle = cert_pem.clone();
        for extra in extra_trust.map(all_cert_ders).unwrap_or_default() {
            if extra != der {
                bundle.push_str(&pem_of(&extra));
            }
        }
        Ok(Self {
            issuer,
            cert_pem,
            bundle,
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// What peers trust (`ca.crt`): the CA, then any extra certificates of its Secret's `ca.crt`.
    pub fn bundle(&self) -> &str {
        &self.bundle
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.not_before = odt(now - BACKDATE);
        params.not_after = odt(now + validity);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The serving certificate of chain `chain` in `namespace` (serverAuth only).
    pub fn issue_chain(
        &self,
        namespace: &str,
        chain: &str,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Issued> {
        dns_label("namespace", namespace)?;
        dns_label("chain name", chain)?;
        let mut sans = chain_dns_names(namespace, chain)
            .iter()
            .map(|d| ia5(d).map(SanType::DnsName))
            .collect::<Result<Vec<_>>>()?;
        sans.push(SanType::URI(ia5(&chain_identity(namespace, chain))?));
        let cn = format!("{chain}-dataplane.{namespace}");
        self.issue(
            &cn,
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            now,
            validity,
        )
    }

    /// The serving certificate of the operator's admission webhook (serverAuth only): the DNS names the API
    /// server dials, `<service>.<namespace>.svc` (webhook.rs).
    pub fn issue_webhook(
        &self,
        namespace: &str,
        service: &str,
        now: SystemTime,
        validity: Duration,
    ) -> Result<Issued> {
        dns_label("namespace", namespace)?;
        dns_label("webhook service", service)?;
        let sans = [
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ]
        .iter()
        .map(|d| ia5(d).map(SanType::DnsName))
        .collect::<Result<Vec<_>>>()?;
        self.issue(
            &format!("{service}.{namespace}.svc"),
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            now,
            validity,
        )
    }

    /// The operator's client certificate (clientAuth only, URI SAN [`OPERATOR_IDENTITY`]).
    pub fn issue_operator(&self, now: SystemTime, validity: Duration) -> Result<Issued> {
        let sans = vec![SanType::URI(ia5(OPERATOR_IDENTITY)?)];
        self.issue(
            "buildvnf-operator",
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
            now,
            validity,
        )
    }
}

fn all_cert_ders(text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect()
}

fn first_cert_der(text: &str) -> Option<Vec<u8>> {
    all_cert_ders(text).into_iter().next()
}

fn pem_of(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at 2/3 of its lifetime, so a
/// missed reconcile or two (the operator looks at least every few minutes) never lets it expire.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + lifetime * 2 / 3
}

/// What the operator finds in a chain's Secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Valid, for the right chain, under the current CA: keep it until then.
    Keep(SystemTime),
    /// (Re-)issue it, and why.
    Issue(String),
}

fn validity_of(x509: &x509_parser::certificate::X509Certificate<'_>) -> (SystemTime, SystemTime) {
    let at = |secs: i64| {
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(secs.max(0).unsigned_abs()))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let v = x509.validity();
    (at(v.not_before.timestamp()), at(v.not_after.timestamp()))
}

/// Whether the Secret `data` of chain `chain` in `namespace` must be (re-)issued at `now` under `ca`.
pub fn renewal(
    data: Option<&BTreeMap<String, ByteString>>,
    namespace: &str,
    chain: &str,
    ca: &Ca,
    now: SystemTime,
) -> Renewal {
    let Some(data) = data else {
        return Renewal::Issue("the Secret does not exist".into());
    };
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| std::str::from_utf8(&b.0).ok())
            .map(str::to_string)
    };
    if text("ca.crt").as_deref() != Some(ca.bundle()) {
        return Renewal::Issue("ca.crt is not the operator's current CA bundle".into());
    }
    if text("tls.key").is_none_or(|k| KeyPair::from_pem(&k).is_err()) {
        return Renewal::Issue("tls.key is missing or not a private key".into());
    }
    let Some(der) = text("tls.crt").as_deref().and_then(first_cert_der) else {
        return Renewal::Issue("tls.crt holds no certificate".into());
    };
    let Ok((_, x509)) = x509_parser::parse_x509_certificate(&der) else {
        return Renewal::Issue("tls.crt does not parse".into());
    };
    if uri_sans(&der) != [chain_identity(namespace, chain)] {
        return Renewal::Issue("tls.crt does not name this chain".into());
    }
    let (not_before, not_after) = validity_of(&x509);
    let at = renew_at(not_before, not_after);
    if now >= at {
        Renewal::Issue("2/3 of its lifetime has passed".into())
    } else {
        Renewal::Keep(at)
    }
}

/// The chain's name and namespace, checked to be DNS labels (so no SAN can match beyond the chain), and the
/// metadata of its certificate object (`<chain>-dataplane-tls`, the chain's labels, owned by the chain).
fn certificate_meta(chain: &VNFChain) -> crate::Result<(String, String, ObjectMeta)> {
    let name = chain
        .metadata
        .name
        .clone()
        .ok_or(crate::Error::MissingField("metadata.name"))?;
    let ns = chain
        .metadata
        .namespace
        .clone()
        .ok_or(crate::Error::MissingField("metadata.namespace"))?;
    dns_label("namespace", &ns)?;
    dns_label("chain name", &name)?;
    let owner = chain
        .controller_owner_ref(&())
        .ok_or(crate::Error::MissingField("metadata.uid"))?;
    let meta = ObjectMeta {
        name: Some(chain_secret_name(&name)),
        namespace: Some(ns.clone()),
        labels: Some(crate::render::labels(chain)?),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    Ok((name, ns, meta))
}

/// The Secret of a chain's serving certificate, owned by the chain.
pub fn chain_secret(chain: &VNFChain, ca: &Ca, issued: &Issued) -> crate::Result<Secret> {
    let (_, _, metadata) = certificate_meta(chain)?;
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Ok(Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".into(), bytes(&issued.cert_pem)),
            ("tls.key".into(), bytes(&issued.key_pem)),
            ("ca.crt".into(), bytes(ca.bundle())),
        ])),
        ..Secret::default()
    })
}

/// Reads the CA from Secret `name` of `api`'s namespace; when it is absent and `create` is set, creates it
/// (create only: if another replica created it meanwhile, reads that one instead).
pub async fn load_or_create_ca(
    api: &Api<Secret>,
    name: &str,
    create: bool,
    now: SystemTime,
    validity: Duration,
) -> Result<Ca> {
    let ns = api.namespace().unwrap_or_default();
    let full = format!("{ns}/{name}");
    if let Some(s) = api.get_opt(name).await? {
        return ca_of(&full, &s);
    }
    if !create {
        return Err(CertError::MissingCa(full));
    }
    let ca = Ca::generate(now, validity)?;
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".into(),
                    "buildvnf-operator".into(),
                ),
                ("app.kubernetes.io/part-of".into(), "build-vnf".into()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".into(), bytes(ca.cert_pem())),
            ("tls.key".into(), bytes(&ca.issuer.key().serialize_pem())),
        ])),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(ca),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Another replica won the race: use its CA, never overwrite it.
            let s = api.get(name).await?;
            ca_of(&full, &s)
        }
        Err(e) => Err(e.into()),
    }
}

fn ca_of(full: &str, s: &Secret) -> Result<Ca> {
    let text = |k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let missing = |k: &str| CertError::BadSecret {
        secret: full.into(),
        problem: format!("has no {k}"),
    };
    let cert = text("tls.crt").ok_or_else(|| missing("tls.crt"))?;
    let key = text("tls.key").ok_or_else(|| missing("tls.key"))?;
    Ca::from_pem(full, &cert, &key, text("ca.crt").as_deref())
}

/// A cert-manager issuer that signs the chains' serving certificates instead of the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertManagerIssuer {
    /// `Issuer` (in each chain's namespace) or `ClusterIssuer`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

impl std::str::FromStr for CertManagerIssuer {
    type Err = String;

    /// `Issuer/<name>` or `ClusterIssuer/<name>`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (kind, name) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected Issuer/<name> or ClusterIssuer/<name>"))?;
        if kind != "Issuer" && kind != "ClusterIssuer" {
            return Err(format!(
                "{s:?}: the kind is {kind:?}, expected Issuer or ClusterIssuer"
            ));
        }
        if name.is_empty() || name.contains('/') {
            return Err(format!("{s:?}: the issuer name {name:?} is not a name"));
        }
        Ok(Self {
            kind: kind.into(),
            name: name.into(),
        })
    }
}

/// Where chain serving certificates come from.
#[derive(Debug)]
pub enum ChainIssuer {
    /// The operator signs them with its CA.
    Operator,
    /// cert-manager signs them; the operator renders a `Certificate` per chain.
    CertManager(CertManagerIssuer),
}

/// What the reconcile needs to give every chain its certificate.
#[derive(Debug)]
pub struct ChainCerts {
    /// The operator's CA (signs its client certificate, and chain certificates unless cert-manager does).
    pub ca: std::sync::Arc<Ca>,
    /// Who signs the chains' serving certificates.
    pub issuer: ChainIssuer,
    /// Lifetime of a chain certificate.
    pub validity: Duration,
}

/// cert-manager's `Certificate` kind (cert-manager.io/v1).
pub fn cert_manager_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// A cert-manager `Certificate` for `chain`'s serving certificate: the same Secret name, SANs and usages
/// as the operator's own, renewed at 2/3 of its lifetime (`renewBefore` = 1/3).
pub fn cert_manager_certificate(
    chain: &VNFChain,
    issuer: &CertManagerIssuer,
    validity: Duration,
) -> crate::Result<DynamicObject> {
    let (name, ns, metadata) = certificate_meta(chain)?;
    let secret = chain_secret_name(&name);
    let mut obj = DynamicObject::new(&secret, &cert_manager_resource());
    obj.metadata = metadata;
    let hours = validity.as_secs() / 3600;
    obj.data = json!({
        "spec": {
            "secretName": secret,
            "commonName": format!("{name}-dataplane.{ns}"),
            "dnsNames": chain_dns_names(&ns, &name),
            "uris": [chain_identity(&ns, &name)],
            "usages": ["digital signature", "server auth"],
            "duration": format!("{hours}h"),
            "renewBefore": format!("{}h", hours / 3),
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"group": "cert-manager.io", "kind": issuer.kind, "name": issuer.name},
            "secretTemplate": {"labels": crate::render::labels(chain)?},
        }
    });
    Ok(obj)
}

impl ChainCerts {
    /// Makes sure `chain` has a valid serving certificate in Secret `<chain>-dataplane-tls`: issued (created
    /// when absent, re-issued by server-side apply when due) by the operator, or a cert-manager
    /// `Certificate` applied. Renewal relies on the chain being reconciled again before its renewal
    /// time (1/3 of the lifetime, 30 days by default, before expiry), which the periodic requeue ensures.
    pub async fn ensure(
        &self,
        client: &Client,
        chain: &VNFChain,
        now: SystemTime,
    ) -> crate::Result<()> {
        let ns = chain
            .namespace()
            .ok_or(crate::Error::MissingField("metadata.namespace"))?;
        let name = chain.name_any();
        let secret_name = chain_secret_name(&name);
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        if let ChainIssuer::CertManager(issuer) = &self.issuer {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &ns, &cert_manager_resource());
            let cert = cert_manager_certificate(chain, issuer, self.validity)?;
            api.patch(&secret_name, &pp, &Patch::Apply(&cert)).await?;
            return Ok(());
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let existing = api.get_opt(&secret_name).await?;
        let decision = renewal(
            existing.as_ref().and_then(|s| s.data.as_ref()),
            &ns,
            &name,
            &self.ca,
            now,
        );
        let reason = match decision {
            Renewal::Keep(_) => return Ok(()),
            Renewal::Issue(reason) => reason,
        };
        let issued = self.ca.issue_chain(&ns, &name, now, self.validity)?;
        let secret = chain_secret(chain, &self.ca, &issued)?;
        if existing.is_none() {
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {}
                // Created meanwhile (another reconcile of an operator that lost its lease): look again next time.
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        } else {
            api.patch(&secret_name, &pp, &Patch::Apply(&secret)).await?;
        }
        tracing::info!(chain = %format!("{ns}/{name}"), %reason, "issued the chain's serving certificate");
        Ok(())
    }
}

/// The operator's client certificate, issued in memory from the CA and re-issued at 2/3 of its lifetime.
pub struct OperatorIdentity {
    ca: std::sync::Arc<Ca>,
    validity: Duration,
    current: Mutex<(Issued, SystemTime)>,
}

impl OperatorIdentity {
    /// Issues the first certificate now.
    pub fn new(ca: std::sync::Arc<Ca>, validity: Duration) -> Result<Self> {
        let now = SystemTime::now();
        let issued = ca.issue_operator(now, validity)?;
        Ok(Self {
            ca,
            validity,
            current: Mutex::new((issued, renew_at(now, now + validity))),
        })
    }

    /// The current certificate and key (re-issued first when due) and the CA bundle to trust.
    pub fn current(&self, now: SystemTime) -> Result<(Issued, String)> {
        let mut guard = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now >= guard.1 {
            let issued = self.ca.issue_operator(now, self.validity)?;
            *guard = (issued, renew_at(now, now + self.validity));
        }
        Ok((guard.0.clone(), self.ca.bundle().to_string()))
    }
}

#[cfg(test)]
pub(crate) mod tests;
