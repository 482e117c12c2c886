//! Who is who in operator ↔ sidecar mutual TLS: the URI SANs (SPIFFE-style IDs) the operator puts into the
//! certificates it issues and the sidecar checks. One definition for both sides.

/// The operator's client identity: the only one a sidecar serves (unless told otherwise).
pub const OPERATOR_IDENTITY: &str = "spiffe://buildvnf.io/operator";

/// The identity of chain `chain` in namespace `namespace` (its serving certificate's URI SAN). No chain can
/// carry [`OPERATOR_IDENTITY`]: every chain identity has the `/ns/…/chain/…` path.
pub fn chain_identity(namespace: &str, chain: &str) -> String {
    format!("spiffe://buildvnf.io/ns/{namespace}/chain/{chain}")
}

/// The URI SANs of a DER certificate, in order (none when it does not parse or has no SAN extension).
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_sans_of_garbage_is_empty() {
        assert!(uri_sans(b"").is_empty());
        assert!(uri_sans(b"\x30\x03\x02\x01\x00").is_empty());
        assert!(uri_sans(&[0xff; 64]).is_empty());
    }

    #[test]
    fn chain_identities_bind_namespace_and_chain() {
        assert_eq!(
            chain_identity("team-a", "edge"),
            "spiffe://buildvnf.io/ns/team-a/chain/edge"
        );
        assert_ne!(chain_identity("a", "b"), chain_identity("b", "a"));
        assert_ne!(chain_identity("operator", ""), OPERATOR_IDENTITY);
    }
}
