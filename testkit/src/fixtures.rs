//! Fixtures shared by several crates' tests: the small chain the daemon tests run, and kube's CEL verdict as
//! (path, message) pairs.

/// A chain named `lab/<name>` on interface `ingress`: a firewall that denies UDP port 9 and allows the rest,
/// then a monitor. `classifier` (a flow-style mapping) and `dataplane` (likewise) are added to the spec when
/// given.
pub fn deny_udp9_chain_with(
    name: &str,
    ingress: &str,
    classifier: Option<&str>,
    dataplane: Option<&str>,
) -> String {
    chain(name, ingress, true, classifier, dataplane)
}

/// The firewall of [`deny_udp9_chain`] alone (no monitor).
pub fn deny_udp9_firewall(name: &str, ingress: &str) -> String {
    chain(name, ingress, false, None, None)
}

fn chain(
    name: &str,
    ingress: &str,
    monitor: bool,
    classifier: Option<&str>,
    dataplane: Option<&str>,
) -> String {
    let monitor = if monitor {
        "    - name: mon\n      type: monitor\n      monitor: {}\n"
    } else {
        ""
    };
    let classifier = classifier
        .map(|c| format!("  classifier: {c}\n"))
        .unwrap_or_default();
    let dataplane = dataplane
        .map(|d| format!("  dataplane:\n    {d}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata: {{name: {name}, namespace: lab}}
spec:
{classifier}  functions:
    - name: fw
      type: firewall
      firewall:
        defaultAction: allow
        rules: [{{action: deny, protocol: udp, destinationPorts: [{{from: 9}}]}}]
{monitor}  interfaces: {{ingress: {ingress}}}
{dataplane}"
    )
}

/// [`deny_udp9_chain_with`] without classifier or data-plane settings.
pub fn deny_udp9_chain(name: &str, ingress: &str) -> String {
    deny_udp9_chain_with(name, ingress, None, None)
}

#[cfg(feature = "cel")]
/// kube's CEL evaluator on `object`: each refusal as (field path, message), in kube's order; empty when the
/// rules accept it.
pub fn cel_errors(
    compiled: &kube::core::cel::CompiledSchema,
    object: &serde_json::Value,
) -> Vec<(String, String)> {
    match kube::core::cel::validate_compiled(compiled, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .as_slice()
            .iter()
            .map(|e| (e.field_path.clone(), e.message.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_reads_as_yaml_with_its_optional_parts() {
        let plain = deny_udp9_chain("t", "cnf0");
        assert!(plain.contains("metadata: {name: t, namespace: lab}"));
        assert!(
            plain.ends_with("  interfaces: {ingress: cnf0}\n"),
            "{plain}"
        );
        assert!(!plain.contains("classifier") && !plain.contains("dataplane"));
        let full = deny_udp9_chain_with(
            "p",
            "cnf0",
            Some("{protocol: udp}"),
            Some("telemetry: {sampleOneIn: 1}"),
        );
        assert!(full.contains("spec:\n  classifier: {protocol: udp}\n  functions:\n"));
        assert!(
            full.ends_with("  dataplane:\n    telemetry: {sampleOneIn: 1}\n"),
            "{full}"
        );
        assert!(full.contains("type: monitor"));
        let fw = deny_udp9_firewall("t", "opv0");
        assert!(
            !fw.contains("monitor") && fw.contains("type: firewall"),
            "{fw}"
        );
    }
}
