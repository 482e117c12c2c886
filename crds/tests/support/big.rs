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
