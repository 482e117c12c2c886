//! Large `VNFChain` manifests for timing validation: the shapes that made the shadowed-rule check quadratic
//! (issue 14). Shared by the timing test and `examples/bench-validate.rs`.

use std::fmt::Write as _;

fn header(out: &mut String, name: &str) {
    out.push_str("apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata:\n  name: ");
    out.push_str(name);
    out.push_str(
        "\nspec:\n  functions:\n    - name: fw\n      type: firewall\n      firewall:\n        defaultAction: deny\n        rules:\n",
    );
}

/// One firewall of `rules` rules that all match the same `prefixes` source prefixes (half IPv4, half IPv6),
/// each on its own destination port, so no rule is shadowed but every earlier rule shares its sources.
/// 1,050 rules × 64 prefixes is about 1.5 MB, under etcd's object limit (1,250 rules: 1.8 MB).
pub fn shared_prefix_firewall(rules: usize, prefixes: usize) -> String {
    let mut list = Vec::with_capacity(prefixes);
    for k in 0..prefixes {
        if k % 2 == 0 {
            list.push(format!("172.{}.{}.128/25", 16 + k / 256, k % 256));
        } else {
            list.push(format!("2001:db8:{k:x}:8000::/49"));
        }
    }
    let sources = list.join(", ");
    let mut out = String::new();
    header(&mut out, "shared-prefixes");
    for i in 0..rules {
        let _ = writeln!(
            out,
            "          - action: {}\n            protocol: {}\n            sourceCIDRs: [{sources}]\n            destinationPorts: [{{from: {}}}]",
            if i % 3 == 0 { "deny" } else { "allow" },
            if i % 2 == 0 { "tcp" } else { "udp" },
            1 + i % 65_000
        );
    }
    out
}

/// One firewall of `rules` rules from any source, each on its own destination port: every earlier rule was a
/// candidate for covering each later one.
pub fn any_source_firewall(rules: usize) -> String {
    let mut out = String::new();
    header(&mut out, "any-source");
    for i in 0..rules {
        let _ = writeln!(
            out,
            "          - action: allow\n            protocol: tcp\n            destinationCIDRs: [10.{}.{}.0/24]\n            destinationPorts: [{{from: {}}}]",
            i / 256 % 256,
            i % 256,
            1 + i % 65_000
        );
    }
    out
}

/// `docs` small chains in one stream, each a firewall of 7 rules of two port ranges: many documents, each
/// read and checked on its own (serde-saphyr reads at most 1,024 documents of a stream).
pub fn many_documents(docs: usize) -> String {
    let mut out = String::new();
    for d in 0..docs {
        out.push_str("---\n");
        header(&mut out, &format!("chain-{d}"));
        for i in 0..7 {
            let _ = writeln!(
                out,
                "          - action: allow\n            protocol: udp\n            sourceCIDRs: [10.{}.{i}.0/24, 2001:db8:{d:x}:{i:x}::/64]\n            destinationPorts: [{{from: {}, to: {}}}, {{from: 9000}}]",
                d % 256,
                1 + i,
                100 + i
            );
        }
    }
    out
}

/// One firewall whose every rule has four port ranges on each side: as many small maps as a document under
/// 1.5 MB holds.
pub fn port_range_firewall(rules: usize) -> String {
    let mut out = String::new();
    header(&mut out, "port-ranges");
    for i in 0..rules {
        let p = 1 + 4 * (i % 16_000);
        let _ = writeln!(
            out,
            "          - action: allow\n            protocol: tcp\n            sourcePorts: [{{from: 1, to: 9}}, {{from: 20, to: 29}}, {{from: 40, to: 49}}, {{from: 60, to: 69}}]\n            destinationPorts: [{{from: {p}}}, {{from: {}}}, {{from: {}}}, {{from: {}, to: {}}}]",
            p + 1,
            p + 2,
            p + 3,
            p + 3
        );
    }
    out
}

/// A small chain whose metadata carries `bytes` of annotations in long strings (ten values).
pub fn long_strings(bytes: usize) -> String {
    let mut out = String::from(
        "apiVersion: buildvnf.io/v1alpha1\nkind: VNFChain\nmetadata:\n  name: long\n  annotations:\n",
    );
    for k in 0..10 {
        let _ = writeln!(out, "    note-{k}: \"{}\"", "x".repeat(bytes / 10));
    }
    out.push_str("spec:\n  functions:\n    - name: mon\n      type: monitor\n      monitor: {}\n");
    out
}
