//! Which sidecar images a chain may name in `spec.dataplane.image`.
//!
//! The sidecar runs with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON and the host's BPF filesystem, so whoever
//! picks its image picks code that runs with those privileges. A cluster admin lists what is allowed
//! (`--allowed-images` / `BUILDVNF_ALLOWED_IMAGES`, the chart's `dataplane.allowedImages`); the operator's
//! default image is always allowed. Each entry is one of:
//!
//! - `REPOSITORY:TAG` — exactly that tag (`ghcr.io/acme/cnf-dataplane:1.2.0`);
//! - `REPOSITORY@sha256:…` — exactly that digest (with or without a tag in the chain's reference);
//! - `REPOSITORY` — any tag or digest of that repository (`ghcr.io/acme/cnf-dataplane`);
//! - `PREFIX/` — any repository under that registry or path (`registry.example.com/`, `ghcr.io/acme/`).
//!
//! References are parsed with the grammar of the distribution project
//! (<https://github.com/distribution/reference/blob/main/reference.go>) and normalized the way container
//! runtimes resolve them (`nginx` is `docker.io/library/nginx:latest`), so one image cannot pass under
//! another spelling and a prefix matches whole path components only (`ghcr.io/acme/` does not match
//! `ghcr.io/acme-evil/x`). A reference that does not parse is refused.

use crate::status::Refusal;

/// Condition reason of a chain whose image is not allowed.
pub const REASON_IMAGE_NOT_ALLOWED: &str = "ImageNotAllowed";

/// Docker Hub's canonical registry name.
const DOCKER_HUB: &str = "docker.io";
/// Longest image name (registry and path) the distribution grammar accepts.
const MAX_NAME_LEN: usize = 255;

/// Why an image reference or an allow-list entry is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not an image reference.
    #[error("{reference:?} is not a valid image reference: {why}")]
    Invalid {
        /// The text.
        reference: String,
        /// What is wrong with it.
        why: String,
    },
}

fn invalid(reference: &str, why: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        reference: reference.into(),
        why: why.into(),
    }
}

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry (host, optionally `:port`), `docker.io` when the reference names none.
    pub domain: String,
    /// Repository path inside the registry (`library/nginx` for `nginx`).
    pub path: String,
    /// Tag; `None` when the reference has none.
    pub tag: Option<String>,
    /// Digest (`sha256:…`); `None` when the reference has none.
    pub digest: Option<String>,
}

impl ImageRef {
    /// `domain/path`: the repository.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

/// `[a-z0-9]+` runs joined by one separator (`.`, `_`, `__`, or one or more `-`).
fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A registry host (`[A-Za-z0-9-]` labels joined by dots) with an optional numeric port.
fn domain_ok(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label_ok)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|x| x.is_ascii_digit()))
}

/// Whether the first component of a name is a registry: it has a dot or a port, is `localhost`, or has
/// upper-case letters (which repository paths cannot).
fn looks_like_domain(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

/// Splits a name (no tag, no digest) into a normalized registry and path; `path` may be empty only when
/// `allow_bare_domain` (prefix entries such as `registry.example.com/`).
fn split_name(
    reference: &str,
    name: &str,
    library: bool,
    allow_bare_domain: bool,
) -> Result<(String, String), PolicyError> {
    if name.is_empty() {
        return Err(invalid(reference, "the name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            reference,
            format!("the name is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first.to_string(), rest.to_string()),
        None if allow_bare_domain && looks_like_domain(name) => (name.to_string(), String::new()),
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if !domain_ok(&domain) {
        return Err(invalid(
            reference,
            format!("{domain:?} is not a registry host[:port]"),
        ));
    }
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    if path.is_empty() && !allow_bare_domain {
        return Err(invalid(reference, "no repository after the registry"));
    }
    if let Some(bad) = path
        .split('/')
        .find(|c| !path.is_empty() && !path_component_ok(c))
    {
        return Err(invalid(
            reference,
            format!(
                "path component {bad:?} is not lower-case letters and digits joined by '.', '_', '__' or '-'"
            ),
        ));
    }
    // `nginx` on Docker Hub is `library/nginx`.
    let path = if library && domain == DOCKER_HUB && !path.is_empty() && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok((domain, path))
}

fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

fn digest_ok(d: &str) -> bool {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return false;
    };
    let algo_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
        });
    let hex_len_ok = match algorithm {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => hex.len() >= 32,
    };
    algo_ok && hex_len_ok && hex.bytes().all(|x| x.is_ascii_hexdigit())
}

/// Parses and normalizes an image reference (`[registry/]path[:tag][@digest]`).
pub fn parse(reference: &str) -> Result<ImageRef, PolicyError> {
    if reference.trim() != reference || reference.is_empty() {
        return Err(invalid(reference, "empty, or blanks around it"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => {
            if !digest_ok(d) {
                return Err(invalid(
                    reference,
                    format!("{d:?} is not a digest (algorithm:hex, e.g. sha256 and 64 hex digits)"),
                ));
            }
            (r, Some(d.to_ascii_lowercase()))
        }
        None => (reference, None),
    };
    // A ':' after the last '/' starts the tag (a ':' before it is a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].split_once(':') {
        Some((_, t)) => (&rest[..rest.len() - t.len() - 1], Some(t)),
        None => (rest, None),
    };
    if let Some(t) = tag
        && !tag_ok(t)
    {
        return Err(invalid(
            reference,
            format!("{t:?} is not a tag (letters, digits, '_', '.', '-'; at most 128)"),
        ));
    }
    let (domain, path) = split_name(reference, name, true, false)?;
    Ok(ImageRef {
        domain,
        path,
        tag: tag.map(str::to_string),
        digest,
    })
}

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// `domain/path/`: every repository under it (the string ends with `/`).
    Prefix(String),
    /// Any tag or digest of this repository.
    Repository(String),
    /// Exactly this tag of this repository.
    Tag(String, String),
    /// Exactly this digest of this repository.
    Digest(String, String),
}

impl Entry {
    fn parse(text: &str) -> Result<Self, PolicyError> {
        if let Some(prefix) = text.strip_suffix('/') {
            // A tag or digest in a prefix fails the component checks (':' and '@' are not path characters).
            let (domain, path) = split_name(text, prefix, false, true)?;
            return Ok(Entry::Prefix(if path.is_empty() {
                format!("{domain}/")
            } else {
                format!("{domain}/{path}/")
            }));
        }
        let r = parse(text)?;
        Ok(match (r.digest, r.tag) {
            (Some(d), _) => Entry::Digest(r.domain + "/" + &r.path, d),
            (None, Some(t)) => Entry::Tag(r.domain + "/" + &r.path, t),
            (None, None) => Entry::Repository(r.domain + "/" + &r.path),
        })
    }

    fn allows(&self, image: &ImageRef) -> bool {
        let repo = image.repository();
        match self {
            Entry::Prefix(p) => repo.starts_with(p.as_str()),
            Entry::Repository(r) => repo == *r,
            // With a digest the runtime pulls by digest and ignores the tag: a tag entry cannot vouch for it.
            Entry::Tag(r, t) => {
                repo == *r
                    && image.digest.is_none()
                    && image.tag.as_deref().unwrap_or("latest") == t
            }
            Entry::Digest(r, d) => repo == *r && image.digest.as_deref() == Some(d.as_str()),
        }
    }
}

/// The images chains may name, besides the operator's default image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImagePolicy {
    entries: Vec<Entry>,
    /// The entries as given, for messages.
    listed: Vec<String>,
}

impl ImagePolicy {
    /// Parses the allow-list; an entry that is not an image reference or prefix is an error naming it.
    /// Blank entries are ignored (an empty flag or value means "the default image only").
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, PolicyError> {
        let mut policy = Self::default();
        for e in entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
        {
            policy.entries.push(Entry::parse(e)?);
            policy.listed.push(e.to_string());
        }
        Ok(policy)
    }

    /// Whether a chain may run `image`; `default_image` (the operator's) is always allowed.
    pub fn check(&self, image: &str, default_image: &str) -> Result<(), String> {
        if image == default_image {
            return Ok(());
        }
        let parsed = parse(image).map_err(|e| e.to_string())?;
        if parse(default_image).is_ok_and(|d| same_image(&d, &parsed))
            || self.entries.iter().any(|e| e.allows(&parsed))
        {
            return Ok(());
        }
        let mut allowed = vec![default_image.to_string()];
        allowed.extend(self.listed.iter().cloned());
        Err(format!(
            "image {image:?} is not allowed (allowed: {})",
            allowed.join(", ")
        ))
    }
}

/// The same image under two spellings (`nginx` and `docker.io/library/nginx:latest`).
fn same_image(a: &ImageRef, b: &ImageRef) -> bool {
    a.repository() == b.repository()
        && match (&a.digest, &b.digest) {
            (Some(x), Some(y)) => x == y,
            (None, None) => {
                a.tag.as_deref().unwrap_or("latest") == b.tag.as_deref().unwrap_or("latest")
            }
            _ => false,
        }
}

/// Why `chain` may not run under `policy`, as a status refusal; `None` when it may (its image is allowed,
/// or it names none and gets the default).
pub fn refusal(
    chain: &crds::VNFChain,
    policy: &ImagePolicy,
    default_image: &str,
) -> Option<Refusal> {
    let image = chain.spec.dataplane.image.as_deref()?;
    let why = policy.check(image, default_image).err()?;
    Some(Refusal {
        reason: REASON_IMAGE_NOT_ALLOWED,
        message: format!(
            "spec.dataplane.image: {why}. The sidecar runs with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, so a \
             cluster admin chooses its images: add it to the chart value dataplane.allowedImages (operator flag \
             --allowed-images / BUILDVNF_ALLOWED_IMAGES), or remove spec.dataplane.image to use the default"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "ghcr.io/build-vnf/cnf-dataplane:0.1.0";
    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER_DIGEST: &str =
        "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    fn policy(entries: &[&str]) -> ImagePolicy {
        ImagePolicy::new(entries).expect("valid allow-list")
    }

    #[test]
    fn references_parse_and_normalize_like_a_container_runtime() {
        let r = parse("nginx").expect("nginx");
        assert_eq!(
            (r.domain.as_str(), r.path.as_str()),
            ("docker.io", "library/nginx")
        );
        assert_eq!(r.tag, None);
        let r = parse("localhost:5000/cnf/dp:v1").expect("registry with port");
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("localhost:5000", "cnf/dp", Some("v1"))
        );
        let r = parse(&format!("ghcr.io/a/b:1@{DIGEST}")).expect("tag and digest");
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        assert_eq!(
            parse("index.docker.io/acme/x").expect("hub").repository(),
            "docker.io/acme/x"
        );
        assert_eq!(
            parse("acme/x").expect("hub user").repository(),
            "docker.io/acme/x"
        );
    }

    #[test]
    fn malformed_references_are_refused_with_the_reason() {
        for bad in [
            "",
            " ghcr.io/a/b",
            "ghcr.io/a/b ",
            "ghcr.io/A/b",
            "ghcr.io/a/../b",
            "ghcr.io/a//b",
            "ghcr.io/a/b:",
            "ghcr.io/a/b:-x",
            "ghcr.io/a/b@sha256:abc",
            "ghcr.io/a/b@md5",
            "ghcr.io/",
            "ghcr.io:99999999/a",
            "-bad.io/a",
            "ghcr.io/a/b:1:2",
            "ghcr.io/a/-b",
            "ghcr.io/a/b$",
            &format!("ghcr.io/{}", "a".repeat(300)),
            &format!("ghcr.io/a/b:{}", "t".repeat(129)),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(
                e.to_string().contains("not a valid image reference"),
                "{bad}: {e}"
            );
            assert!(policy(&[]).check(bad, DEFAULT).is_err(), "{bad} allowed");
        }
    }

    #[test]
    fn the_default_image_is_always_allowed_under_any_spelling() {
        let p = policy(&[]);
        assert_eq!(p.check(DEFAULT, DEFAULT), Ok(()));
        let p = policy(&[]);
        assert_eq!(p.check("nginx:latest", "docker.io/library/nginx"), Ok(()));
        assert!(
            p.check("ghcr.io/build-vnf/cnf-dataplane:0.2.0", DEFAULT)
                .is_err()
        );
        assert!(p.check("ghcr.io/build-vnf/cnf-dataplane", DEFAULT).is_err());
    }

    #[test]
    fn each_kind_of_entry_allows_exactly_what_it_says() {
        let p = policy(&[
            "ghcr.io/acme/",
            "registry.example.com:5000/",
            "quay.io/x/dp",
            "docker.io/library/busybox:1.36",
            &format!("gcr.io/p/dp@{DIGEST}"),
            "mirror/",
        ]);
        let allowed = [
            "ghcr.io/acme/dp:1",
            "ghcr.io/acme/team/dp",
            "registry.example.com:5000/any/thing:2",
            "quay.io/x/dp",
            "quay.io/x/dp:9",
            "busybox:1.36",
            "docker.io/busybox:1.36",
            "mirror/dp:1",
        ];
        for image in allowed {
            assert_eq!(p.check(image, DEFAULT), Ok(()), "{image}");
        }
        assert_eq!(p.check(&format!("gcr.io/p/dp@{DIGEST}"), DEFAULT), Ok(()));
        assert_eq!(
            p.check(&format!("gcr.io/p/dp:any@{DIGEST}"), DEFAULT),
            Ok(())
        );
        assert_eq!(p.check(&format!("quay.io/x/dp@{DIGEST}"), DEFAULT), Ok(()));
        let refused = [
            // A prefix matches whole path components only.
            "ghcr.io/acme-evil/dp:1".to_string(),
            "ghcr.io/acmex:1".to_string(),
            "ghcr.io/acme:1".to_string(),
            // Another registry on the same host name prefix, another port, another repository.
            "registry.example.com.evil.io/x:1".to_string(),
            "registry.example.com/x:1".to_string(),
            "quay.io/x/dp2:1".to_string(),
            "quay.io/x/dp/sub:1".to_string(),
            // Another tag, no tag (latest), or a digest the tag entry cannot vouch for.
            "busybox:1.37".to_string(),
            "busybox".to_string(),
            format!("busybox:1.36@{DIGEST}"),
            // Another digest, or the digest entry's repository by tag.
            format!("gcr.io/p/dp@{OTHER_DIGEST}"),
            "gcr.io/p/dp:latest".to_string(),
            // Docker Hub's "mirror/" is not a registry called mirror.
            "mirror.io/dp:1".to_string(),
        ];
        for image in &refused {
            let e = p.check(image, DEFAULT).expect_err(image);
            assert!(e.contains(&format!("{image:?} is not allowed")), "{e}");
            assert!(e.contains(DEFAULT) && e.contains("ghcr.io/acme/"), "{e}");
        }
    }

    #[test]
    fn a_bad_allow_list_entry_is_an_error_naming_it() {
        for bad in [
            "ghcr.io/Acme/",
            "ghcr.io/a/b:1/",
            "ghcr.io/a@sha256:1/",
            "ghcr.io/a/b:",
        ] {
            let e = ImagePolicy::new(&[bad]).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
        assert_eq!(ImagePolicy::new(&["", " "]), Ok(ImagePolicy::default()));
    }

    #[test]
    fn a_chain_with_a_foreign_image_is_refused_with_a_reason_and_how_to_allow_it() {
        let mut chain = crds::manifest::parse_single_chain(
            "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata: {name: c}\nspec:\n  functions: [{name: m, type: monitor, monitor: {}}]\n",
        )
        .expect("chain");
        assert_eq!(
            refusal(&chain, &ImagePolicy::default(), DEFAULT),
            None,
            "no image: the default"
        );
        chain.spec.dataplane.image = Some(DEFAULT.into());
        assert_eq!(refusal(&chain, &ImagePolicy::default(), DEFAULT), None);
        chain.spec.dataplane.image = Some("evil.io/miner:1".into());
        let r = refusal(&chain, &ImagePolicy::default(), DEFAULT).expect("refused");
        assert_eq!(r.reason, "ImageNotAllowed");
        for needle in [
            "spec.dataplane.image",
            "\"evil.io/miner:1\"",
            "dataplane.allowedImages",
            "--allowed-images",
            "BUILDVNF_ALLOWED_IMAGES",
        ] {
            assert!(r.message.contains(needle), "{needle} not in {}", r.message);
        }
        let allowing = ImagePolicy::new(&["evil.io/miner"]).expect("policy");
        assert_eq!(refusal(&chain, &allowing, DEFAULT), None);
    }
}
