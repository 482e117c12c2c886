//! The fast YAML reader (crds/src/yaml.rs) builds the same tree as serde-saphyr on every YAML file of the
//! repository (examples, invalid examples, charts, goldens) and on the large generated chains, and takes the
//! examples and the large chains itself (else it would be no faster).

#[path = "support/big.rs"]
mod big;
mod support;

use std::path::{Path, PathBuf};

/// Every `.yaml`/`.yml` file under `dir`, recursively.
fn yaml_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_under(&path, out);
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(path);
        }
    }
}

/// Whether the fast path took `text`; when it did, its tree is serde-saphyr's.
fn same(name: &str, text: &str) -> bool {
    let slow = crds::yaml::slow(text);
    assert_eq!(crds::yaml::read_stream(text), slow, "{name}");
    match crds::yaml::fast(text) {
        Some(docs) => {
            assert_eq!(Ok(docs), slow, "{name}");
            true
        }
        None => false,
    }
}

#[test]
fn every_yaml_file_of_the_repository_reads_as_serde_saphyr_reads_it() {
    let root = support::repo();
    let mut files = Vec::new();
    for dir in [
        "examples",
        "charts",
        "operator/tests",
        "crds",
        "kind-config",
    ] {
        yaml_under(&root.join(dir), &mut files);
    }
    files.sort();
    assert!(files.len() > 60, "only {} files found", files.len());
    let mut declined = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("reading a YAML file");
        if !same(&file.display().to_string(), &text) {
            declined.push(file.clone());
        }
    }
    // Every chain example is plain enough for the fast path.
    let examples: Vec<_> = support::yaml_files(&root.join("examples"));
    assert!(!examples.is_empty());
    for example in &examples {
        assert!(
            !declined.contains(example),
            "{} was left to serde-saphyr",
            example.display()
        );
    }
    println!(
        "{} files, {} left to serde-saphyr: {declined:?}",
        files.len(),
        declined.len()
    );
}

#[test]
fn the_large_chains_are_read_by_the_fast_path_as_serde_saphyr_reads_them() {
    for (name, text) in [
        ("10,000 rules", big::any_source_firewall(10_000)),
        (
            "1,050 rules × 64 prefixes",
            big::shared_prefix_firewall(1_050, 64),
        ),
        (
            "5,000 rules × 8 port ranges",
            big::port_range_firewall(5_000),
        ),
        ("1,000 documents", big::many_documents(1_000)),
        ("long strings", big::long_strings(1_400_000)),
    ] {
        assert!(same(name, &text), "{name} was left to serde-saphyr");
    }
}
