//! The keys of user-space functions for a testbed: the Secrets in the manifest's file (Kubernetes `Secret`
//! documents, `stringData` or base64 `data`), written for cnf-dataplane's `--secrets-dir` as `NAME/KEY`
//! (mode 0600), the layout the operator mounts them in.

use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use super::TestbedError;

/// Why the Secret documents of a manifest cannot be read (each message names the document, 1-based).
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The file is not YAML.
    #[error(transparent)]
    Yaml(serde_saphyr::Error),
    /// A `Secret` document does not have the shape of one.
    #[error("document {doc}: Secret: {source}")]
    Shape {
        /// Which document.
        doc: usize,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// A Secret name that cannot be a directory name.
    #[error("document {doc}: Secret name {name:?} cannot be a file name")]
    Name {
        /// Which document.
        doc: usize,
        /// The name.
        name: String,
    },
    /// A key that cannot be a file name.
    #[error("document {doc}: Secret {name}: key {key:?} cannot be a file name")]
    Key {
        /// Which document.
        doc: usize,
        /// The Secret.
        name: String,
        /// The key.
        key: String,
    },
    /// A `data` value that is not base64.
    #[error("document {doc}: Secret {name}: data.{key}: not base64: {source}")]
    Base64 {
        /// Which document.
        doc: usize,
        /// The Secret.
        name: String,
        /// The key.
        key: String,
        /// What the decoder found.
        #[source]
        source: base64::DecodeError,
    },
}

/// Secret name → key → bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets(pub BTreeMap<String, BTreeMap<String, Vec<u8>>>);

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretDoc {
    metadata: Meta,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

impl Secrets {
    /// The `Secret` documents of a multi-document manifest (other kinds are skipped).
    pub fn from_manifest(text: &str) -> Result<Secrets, SecretsError> {
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(text).map_err(SecretsError::Yaml)?;
        let mut out = Secrets::default();
        for (i, d) in docs.into_iter().enumerate() {
            if d.get("kind").and_then(|k| k.as_str()) != Some("Secret") {
                continue;
            }
            let s: SecretDoc = serde_json::from_value(d)
                .map_err(|source| SecretsError::Shape { doc: i + 1, source })?;
            // they become file names: no path separators, no "." or ".."
            let file_name = |n: &str| !n.is_empty() && n != "." && n != ".." && !n.contains('/');
            if !file_name(&s.metadata.name) {
                return Err(SecretsError::Name {
                    doc: i + 1,
                    name: s.metadata.name,
                });
            }
            if let Some(k) = s
                .data
                .keys()
                .chain(s.string_data.keys())
                .find(|k| !file_name(k))
            {
                return Err(SecretsError::Key {
                    doc: i + 1,
                    name: s.metadata.name.clone(),
                    key: k.clone(),
                });
            }
            let keys = out.0.entry(s.metadata.name.clone()).or_default();
            for (k, v) in s.data {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .map_err(|source| SecretsError::Base64 {
                        doc: i + 1,
                        name: s.metadata.name.clone(),
                        key: k.clone(),
                        source,
                    })?;
                keys.insert(k, bytes);
            }
            // stringData wins over data, as in Kubernetes
            for (k, v) in s.string_data {
                keys.insert(k, v.into_bytes());
            }
        }
        Ok(out)
    }

    /// Refuses a chain whose user-space functions name a Secret key that is not here.
    pub fn check(&self, chain: &crds::VNFChain) -> Result<(), TestbedError> {
        for (i, f) in chain.spec.functions.iter().enumerate() {
            let Some(c) = &f.payload_cipher else { continue };
            let r = &c.key_secret_ref;
            if self.0.get(&r.name).is_none_or(|k| !k.contains_key(&r.key)) {
                return Err(TestbedError::Plan {
                    field: format!("spec.functions[{i}].payloadCipher.keySecretRef"),
                    message: format!(
                        "Secret {:?} key {:?} is not in the manifest's file; the testbed takes the keys from \
                         Secret documents next to the chain (see examples/userspace-cipher.yaml)",
                        r.name, r.key
                    ),
                });
            }
        }
        Ok(())
    }

    /// Writes every key as `dir/NAME/KEY` (directories 0700, files 0600).
    pub fn write(&self, dir: &Path) -> Result<(), TestbedError> {
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |source| TestbedError::Io {
                context: format!("write {what}"),
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        for (name, keys) in &self.0 {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            for (k, v) in keys {
                let f = d.join(k);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&f)
                    .map_err(io(&f))?;
                std::io::Write::write_all(&mut file, v).map_err(io(&f))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_data_and_base64_data_and_refuses_bad_base64() {
        let s = Secrets::from_manifest(
            "kind: Secret\nmetadata: {name: a}\nstringData: {key: abc}\ndata: {other: aGk=}\n---\nkind: VNFChain\n",
        )
        .expect("parses");
        assert_eq!(s.0["a"]["key"], b"abc");
        assert_eq!(s.0["a"]["other"], b"hi");
        let e = Secrets::from_manifest("kind: Secret\nmetadata: {name: a}\ndata: {k: '!!'}\n")
            .expect_err("bad base64")
            .to_string();
        assert!(e.contains("data.k") && e.contains("base64"), "{e}");
        let e = Secrets::from_manifest("kind: Secret\ndata: {}\n")
            .expect_err("no name")
            .to_string();
        assert!(e.contains("document 1"), "{e}");
        for (name, key) in [
            ("../x", "k"),
            ("a", "../../etc/passwd"),
            ("..", "k"),
            ("a", ""),
        ] {
            let doc =
                format!("kind: Secret\nmetadata: {{name: {name:?}}}\nstringData: {{{key:?}: v}}\n");
            let e = Secrets::from_manifest(&doc).expect_err("path").to_string();
            assert!(e.contains("cannot be a file name"), "{e}");
        }
    }

    #[test]
    fn a_decoding_error_keeps_its_source() {
        use std::error::Error as _;
        let e = Secrets::from_manifest("kind: Secret\nmetadata: {name: a}\ndata: {k: '!!'}\n")
            .expect_err("bad base64");
        assert!(matches!(e, SecretsError::Base64 { doc: 1, .. }), "{e:?}");
        let source = e.source().expect("the base64 error is kept");
        assert!(e.to_string().ends_with(&source.to_string()), "{e}");
        let e = Secrets::from_manifest("kind: Secret\nmetadata: [1]\n").expect_err("shape");
        assert!(matches!(e, SecretsError::Shape { doc: 1, .. }), "{e:?}");
        assert!(e.source().is_some());
    }

    #[test]
    fn the_cipher_example_needs_its_secret() {
        let path = format!(
            "{}/../examples/userspace-cipher.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).expect("example");
        let chain = crds::manifest::parse_single_chain(&text).expect("valid");
        let s = Secrets::from_manifest(&text).expect("parses");
        s.check(&chain).expect("the file carries the key");
        let msg = Secrets::default()
            .check(&chain)
            .expect_err("no key")
            .to_string();
        assert!(
            msg.contains("keySecretRef") && msg.contains("tunnel-key"),
            "{msg}"
        );
    }
}
