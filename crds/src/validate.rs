//! The one `validate()`: every problem of a chain, each with the field path it concerns.
//!
//! The CRD schema (types, enums, ranges, patterns, CEL rules) is the API server's door; this function is the
//! door of the CLI, the operator and the data plane's gRPC. It checks everything the schema checks (so a chain
//! that reaches a data plane without an API server is held to the same rules) and the semantic rules a schema
//! cannot express: CIDR host bits, firewall rules shadowed by earlier ones, address-family mismatches, NAT and
//! load-balancer address conflicts, functions the classifier makes unreachable, hooks that cannot feed the
//! user-space tier.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::cover::{Match, Prefixes, SHADOW_WORK_BUDGET, ShadowAnalysis};
use crate::functions::{
    Action, FirewallConfig, ForwardMode, Function, FunctionType, L4Protocol, LoadBalancerConfig,
    MAX_FIREWALL_RULES, MAX_FUNCTIONS, MAX_PORT_RANGES, MAX_PREFIXES, MIN_MAGLEV_TABLE,
    MonitorConfig, NatConfig, PayloadCipherConfig, Protocol, RateLimiterConfig, Tier, TrafficMatch,
};
use crate::net::{Cidr, IpAddress, PortRange, is_dns_label, is_dns_subdomain};
use crate::valid::{ValidChain, ValidSpec, typed_spec};
use crate::vnfchain::{Hook, MAX_NAME_LEN, VNFChain, VNFChainSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One problem: the field it concerns (e.g. `spec.functions[1].firewall.rules[0].sourceCIDRs[2]`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted field path from the object root.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one object (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// One error.
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![ValidationError {
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// Validates a whole chain object: metadata and spec, against the CRD's schema and CEL rules and the semantic
/// rules no schema can express. A valid chain comes back typed ([`ValidChain`]): what consumers read instead
/// of the manifest's strings.
pub fn validate(chain: &VNFChain) -> Result<ValidChain, ValidationErrors> {
    let crd = || match serde_json::to_value(chain) {
        Ok(object) => crate::schema::check(&object),
        Err(e) => vec![ValidationError {
            path: "(document)".into(),
            message: format!("cannot be encoded: {e}"),
        }],
    };
    // For a large chain, the CRD's schema and CEL rules on one thread, the semantic rules on this one.
    let typed = if worth_a_thread(rules_of(&chain.spec)) {
        std::thread::scope(|s| {
            let crd = s.spawn(crd);
            validate_with_crd(chain, || joined(crd))
        })
    } else {
        validate_with_crd(chain, crd)
    }?;
    Ok(ValidChain::new(chain.clone(), typed))
}

/// Whether a chain of `rules` functions and firewall rules is checked on two threads: below this, starting a
/// thread costs more than it saves (a stream of many small documents stays on one).
pub(crate) fn worth_a_thread(rules: usize) -> bool {
    rules >= 256
}

fn rules_of(spec: &VNFChainSpec) -> usize {
    spec.functions.len()
        + spec
            .functions
            .iter()
            .filter_map(|f| f.firewall.as_ref())
            .map(|fw| fw.rules.len())
            .sum::<usize>()
}

/// What a scoped thread returned (its panic, if it panicked, goes on).
pub(crate) fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// `validate()` with the CRD's verdict given by `crd` (the manifest reader checks the document as written),
/// called once the semantic rules have run (so it may be computed meanwhile, on another thread).
pub(crate) fn validate_with_crd(
    chain: &VNFChain,
    crd: impl FnOnce() -> Vec<ValidationError>,
) -> Result<ValidSpec, ValidationErrors> {
    let mut v = Validator::default();
    match chain.metadata.name.as_deref() {
        None | Some("") => v.err("metadata.name", "is required"),
        Some(name) => {
            if !is_dns_label(name) {
                v.err(
                    "metadata.name",
                    format!("{name:?} is not a DNS label (lower-case letters, digits and '-')"),
                );
            }
            if name.len() > MAX_NAME_LEN {
                v.err(
                    "metadata.name",
                    format!(
                        "must be at most {MAX_NAME_LEN} characters (object names are derived from it), got {}",
                        name.len()
                    ),
                );
            }
        }
    }
    if let Some(ns) = chain.metadata.namespace.as_deref()
        && !is_dns_label(ns)
    {
        v.err("metadata.namespace", format!("{ns:?} is not a DNS label"));
    }
    v.spec(&chain.spec);
    v.merge(crd(), "");
    v.finish()?;
    typed_spec(&chain.spec)
}

/// Validates a spec alone (paths start at `spec`); a valid one comes back typed.
pub fn validate_spec(spec: &VNFChainSpec) -> Result<ValidSpec, ValidationErrors> {
    let mut v = Validator::default();
    // The CRD's rules on the spec, within an object that satisfies the rest of the schema (for a large spec on
    // another thread, while this one runs the semantic rules).
    let crd = || {
        serde_json::to_value(spec).map(|spec| {
            let object = serde_json::json!({
                "apiVersion": crate::vnfchain::API_VERSION,
                "kind": crate::vnfchain::KIND,
                "metadata": {"name": "spec"},
                "spec": spec,
            });
            crate::schema::check(&object)
        })
    };
    let crd = if worth_a_thread(rules_of(spec)) {
        std::thread::scope(|s| {
            let crd = s.spawn(crd);
            v.spec(spec);
            joined(crd)
        })
    } else {
        v.spec(spec);
        crd()
    };
    match crd {
        Ok(crd) => v.merge(crd, "spec"),
        Err(e) => v.err("spec", format!("cannot be encoded: {e}")),
    }
    v.finish()?;
    typed_spec(spec)
}

/// A firewall's rules parsed for the shadowed-rule analysis (what `validate()` runs on every firewall), so the
/// analysis can be timed on its own (`cargo run --release -p buildvnf-crds --example bench-validate`).
pub struct ParsedRules(Vec<Match>);

impl ParsedRules {
    /// Parses the rules (a rule that does not parse matches nothing here; `validate()` reports it).
    pub fn of(c: &FirewallConfig) -> Self {
        let mut v = Validator::default();
        Self(
            c.rules
                .iter()
                .map(|r| v.traffic_match(&String::new, &r.traffic))
                .collect(),
        )
    }

    /// For each rule, the first earlier rule that matches every packet it matches, if any.
    pub fn shadowed(&self) -> Vec<Option<usize>> {
        ShadowAnalysis::new(SHADOW_WORK_BUDGET)
            .first_covers(&self.0)
            .0
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ValidationError>,
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// What the CRD's schema and CEL rules reject (`crd`), under `within` (a path prefix; empty for all).
    /// A problem already reported at the same field (or at one of its direct children) is not repeated.
    fn merge(&mut self, crd: Vec<ValidationError>, within: &str) {
        for e in crd {
            if !e.path.starts_with(within) {
                continue;
            }
            let reported = self.errors.iter().any(|x| {
                x.path == e.path
                    || x.path
                        .strip_prefix(e.path.as_str())
                        .is_some_and(is_one_segment)
            });
            if !reported {
                self.errors.push(e);
            }
        }
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.errors))
        }
    }

    /// `path` builds the list's path, only when a problem is reported (a valid 10,000-rule firewall formats
    /// no path): so do the other `&dyn Fn() -> String` paths below.
    fn cidrs(&mut self, path: &dyn Fn() -> String, list: &[Cidr], max: usize) -> Prefixes {
        if list.len() > max {
            self.err(
                path(),
                format!("at most {max} prefixes, got {}", list.len()),
            );
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, c) in list.iter().enumerate() {
            match c.parse() {
                Ok(n) => out.push(n),
                Err(e) => self.err(format!("{}[{i}]", path()), e),
            }
        }
        Prefixes(out)
    }

    fn ip(&mut self, path: &str, a: &IpAddress) -> Option<IpAddr> {
        match a.parse() {
            Ok(ip) => Some(ip),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    fn port(&mut self, path: &dyn Fn() -> String, p: u16) {
        if p == 0 {
            self.err(path(), "must be between 1 and 65535, got 0");
        }
    }

    fn port_ranges(&mut self, path: &dyn Fn() -> String, list: &[PortRange], protocol: Protocol) {
        if !list.is_empty() && !protocol.has_ports() {
            self.err(
                path(),
                format!(
                    "ports can only be matched with protocol tcp or udp, not {}",
                    protocol_name(protocol)
                ),
            );
        }
        if list.len() > MAX_PORT_RANGES {
            self.err(
                path(),
                format!("at most {MAX_PORT_RANGES} port ranges, got {}", list.len()),
            );
        }
        for (i, r) in list.iter().enumerate() {
            self.port_range(&|| format!("{}[{i}]", path()), r);
        }
    }

    fn port_range(&mut self, path: &dyn Fn() -> String, r: &PortRange) {
        self.port(&|| format!("{}.from", path()), r.from);
        if let Some(to) = r.to {
            self.port(&|| format!("{}.to", path()), to);
            if to < r.from {
                self.err(
                    format!("{}.to", path()),
                    format!(
                        "to ({to}) must be greater than or equal to from ({})",
                        r.from
                    ),
                );
            }
        }
    }

    /// Checks a match (the classifier or a firewall rule) and returns its parsed form.
    fn traffic_match(&mut self, path: &dyn Fn() -> String, m: &TrafficMatch) -> Match {
        let protocol = m.protocol;
        let src = self.cidrs(
            &|| format!("{}.sourceCIDRs", path()),
            &m.source_cidrs,
            MAX_PREFIXES,
        );
        let dst = self.cidrs(
            &|| format!("{}.destinationCIDRs", path()),
            &m.destination_cidrs,
            MAX_PREFIXES,
        );
        self.port_ranges(
            &|| format!("{}.sourcePorts", path()),
            &m.source_ports,
            protocol,
        );
        self.port_ranges(
            &|| format!("{}.destinationPorts", path()),
            &m.destination_ports,
            protocol,
        );
        let (s4, s6) = src.families();
        let (d4, d6) = dst.families();
        let (v4, v6) = (s4 && d4, s6 && d6);
        if !v4 && !v6 {
            self.err(
                path(),
                "sourceCIDRs and destinationCIDRs have no address family in common, so nothing can match",
            );
        } else if protocol == Protocol::Icmp && !v4 {
            self.err(
                path(),
                "protocol icmp is IPv4-only but the CIDRs are IPv6-only (use icmpv6)",
            );
        } else if protocol == Protocol::Icmpv6 && !v6 {
            self.err(
                path(),
                "protocol icmpv6 is IPv6-only but the CIDRs are IPv4-only (use icmp)",
            );
        } else if matches!(protocol, Protocol::Icmp | Protocol::Icmpv6) {
            self.icmp_prefix_families(&path(), m);
        }
        Match {
            protocol,
            src,
            dst,
            sports: m.source_ports.clone(),
            dports: m.destination_ports.clone(),
        }
    }

    /// With protocol icmp (IPv4) or icmpv6, a prefix of the other family can never match.
    fn icmp_prefix_families(&mut self, path: &str, m: &TrafficMatch) {
        let v4_protocol = m.protocol == Protocol::Icmp;
        let (name, other) = if v4_protocol {
            ("icmp", "icmpv6")
        } else {
            ("icmpv6", "icmp")
        };
        for (field, list) in [
            ("sourceCIDRs", &m.source_cidrs),
            ("destinationCIDRs", &m.destination_cidrs),
        ] {
            for (i, c) in list.iter().enumerate() {
                if let Ok(n) = c.parse()
                    && matches!(n, IpNet::V4(_)) != v4_protocol
                {
                    self.err(
                        format!("{path}.{field}[{i}]"),
                        format!(
                            "{n} is {} but protocol {name} is {}-only, so it can never match (match {other} in another rule)",
                            family_name(&n),
                            if v4_protocol { "IPv4" } else { "IPv6" }
                        ),
                    );
                }
            }
        }
    }

    fn spec(&mut self, spec: &VNFChainSpec) {
        let classifier = self.traffic_match(&|| "spec.classifier".into(), &spec.classifier);
        self.interfaces(spec);
        if spec.dataplane.telemetry.sample_one_in == 0
            || spec.dataplane.telemetry.sample_one_in > 65536
        {
            self.err(
                "spec.dataplane.telemetry.sampleOneIn",
                format!(
                    "must be between 1 and 65536, got {}",
                    spec.dataplane.telemetry.sample_one_in
                ),
            );
        }
        if let Some(image) = &spec.dataplane.image
            && (image.is_empty() || image.chars().any(char::is_whitespace))
        {
            self.err(
                "spec.dataplane.image",
                format!("{image:?} is not an image reference"),
            );
        }
        self.placement(spec);
        for (path, message) in spec.non_ip.problems() {
            self.err(path, message);
        }
        if let Some(t) = &spec.target {
            self.label_selector("spec.target.podSelector", &t.pod_selector);
            if let Some(ns) = &t.namespace_selector {
                self.label_selector("spec.target.namespaceSelector", ns);
            }
        }

        let fns = &spec.functions;
        if fns.is_empty() {
            self.err("spec.functions", "a chain needs at least one function");
        }
        if fns.len() > MAX_FUNCTIONS {
            self.err(
                "spec.functions",
                format!("at most {MAX_FUNCTIONS} functions, got {}", fns.len()),
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let interfaces = chain_interfaces(spec);
        for (i, f) in fns.iter().enumerate() {
            let path = format!("spec.functions[{i}]");
            if let Err(e) = f.name.check() {
                self.err(format!("{path}.name"), e);
            }
            if let Some(first) = seen.insert(f.name.as_str(), i) {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "duplicate function name {:?} (also spec.functions[{first}].name)",
                        f.name.as_str()
                    ),
                );
            }
            self.function(&path, f, &classifier, &interfaces);
            if f.type_ == FunctionType::Forwarder
                && let Some(first) = fns[..i]
                    .iter()
                    .position(|g| g.type_ == FunctionType::Forwarder)
            {
                self.err(
                    format!("{path}.type"),
                    format!("a chain has at most one forwarder (also spec.functions[{first}])"),
                );
            } else if f.type_ == FunctionType::Forwarder && i + 1 != fns.len() {
                self.err(
                    format!("{path}.type"),
                    "the forwarder ends the chain, so it must be the last function",
                );
            }
            if f.effective_tier() == Tier::Userspace && spec.dataplane.hook == Hook::Tc {
                self.err(
                    format!("{path}.tier"),
                    "user-space functions are fed by an XDP redirect to AF_XDP, so spec.dataplane.hook cannot be tc",
                );
            }
        }
        self.address_conflicts(fns);
    }

    fn interfaces(&mut self, spec: &VNFChainSpec) {
        let ifs = &spec.interfaces;
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut add = |v: &mut Self, path: String, name: &crate::net::InterfaceName| {
            if let Err(e) = name.check() {
                v.err(path.clone(), e);
            }
            if let Some(other) = names.insert(name.as_str().to_owned(), path.clone()) {
                v.err(
                    path,
                    format!("interface {:?} is already used by {other}", name.as_str()),
                );
            }
        };
        add(self, "spec.interfaces.ingress".into(), &ifs.ingress);
        if let Some(e) = &ifs.egress {
            add(self, "spec.interfaces.egress".into(), e);
        }
        // A secondary network may be what supplies the ingress or egress interface (on Kubernetes a pod has
        // no `eth1` unless Multus attaches one), so it may repeat their name; two networks may not share one.
        let attached: Vec<&str> = std::iter::once(ifs.ingress.as_str())
            .chain(ifs.egress.as_ref().map(|e| e.as_str()))
            .collect();
        let mut nets = BTreeMap::new();
        for (i, n) in ifs.secondary_networks.iter().enumerate() {
            let path = format!("spec.interfaces.secondaryNetworks[{i}]");
            if !is_dns_subdomain(&n.name) {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "{:?} is not a valid NetworkAttachmentDefinition name",
                        n.name
                    ),
                );
            }
            if let Some(ns) = &n.namespace
                && !is_dns_label(ns)
            {
                self.err(
                    format!("{path}.namespace"),
                    format!("{ns:?} is not a DNS label"),
                );
            }
            let ipath = format!("{path}.interface");
            if attached.contains(&n.interface.as_str()) {
                if let Err(e) = n.interface.check() {
                    self.err(ipath.clone(), e);
                }
                if n.interface.as_str() == "eth0" {
                    self.err(
                        ipath.clone(),
                        "\"eth0\" is the pod's cluster-network interface; a secondary network cannot supply it",
                    );
                }
                if let Some(other) = nets.insert(n.interface.as_str().to_owned(), ipath.clone()) {
                    self.err(
                        ipath,
                        format!(
                            "interface {:?} is already used by {other}",
                            n.interface.as_str()
                        ),
                    );
                }
            } else {
                nets.insert(n.interface.as_str().to_owned(), ipath.clone());
                add(self, ipath, &n.interface);
            }
        }
    }

    /// A label selector as the API server checks one of a built-in type (`ValidateLabelSelector`): keys and
    /// values are label syntax, `In`/`NotIn` need values, `Exists`/`DoesNotExist` take none. The CRD cannot
    /// say so (it embeds the selector as plain data), so this is the only door that does.
    fn label_selector(&mut self, path: &str, sel: &LabelSelector) {
        const MAX_TERMS: usize = 32;
        let labels = sel.match_labels.as_ref().map_or(0, BTreeMap::len);
        let exprs = sel.match_expressions.as_deref().unwrap_or_default();
        if labels + exprs.len() > MAX_TERMS {
            self.err(
                path,
                format!(
                    "at most {MAX_TERMS} labels and expressions together, got {}",
                    labels + exprs.len()
                ),
            );
            return;
        }
        for (k, val) in sel.match_labels.iter().flatten() {
            let p = format!("{path}.matchLabels[{k:?}]");
            if !is_label_key(k) {
                self.err(p.clone(), format!("{k:?} is not a valid label key"));
            }
            if !is_label_value(val) {
                self.err(p, format!("{val:?} is not a valid label value"));
            }
        }
        for (i, r) in exprs.iter().enumerate() {
            let p = format!("{path}.matchExpressions[{i}]");
            if !is_label_key(&r.key) {
                self.err(
                    format!("{p}.key"),
                    format!("{:?} is not a valid label key", r.key),
                );
            }
            let values = r.values.as_deref().unwrap_or_default();
            match r.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => self.err(
                    format!("{p}.values"),
                    format!("must not be empty with operator {}", r.operator),
                ),
                "Exists" | "DoesNotExist" if !values.is_empty() => self.err(
                    format!("{p}.values"),
                    format!("must be empty with operator {}", r.operator),
                ),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => self.err(
                    format!("{p}.operator"),
                    format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                ),
            }
            if values.len() > MAX_TERMS {
                self.err(
                    format!("{p}.values"),
                    format!("at most {MAX_TERMS} values, got {}", values.len()),
                );
            }
            for (j, val) in values.iter().enumerate() {
                if !is_label_value(val) {
                    self.err(
                        format!("{p}.values[{j}]"),
                        format!("{val:?} is not a valid label value"),
                    );
                }
            }
        }
    }

    fn placement(&mut self, spec: &VNFChainSpec) {
        let p = &spec.placement;
        if !(1..=100).contains(&p.replicas) {
            self.err(
                "spec.placement.replicas",
                format!("must be between 1 and 100, got {}", p.replicas),
            );
        }
        for (k, val) in &p.node_selector {
            let path = format!("spec.placement.nodeSelector[{k:?}]");
            if !is_label_key(k) {
                self.err(path.clone(), format!("{k:?} is not a valid label key"));
            }
            if !is_label_value(val) {
                self.err(path, format!("{val:?} is not a valid label value"));
            }
        }
    }

    fn function(&mut self, path: &str, f: &Function, classifier: &Match, interfaces: &[&str]) {
        let present = f.present_blocks();
        if !present.contains(&f.type_) {
            self.err(
                format!("{path}.{}", f.type_.as_str()),
                format!("type {} needs a {} block", f.type_, f.type_.as_str()),
            );
        }
        for other in present.iter().filter(|t| **t != f.type_) {
            self.err(
                format!("{path}.{}", other.as_str()),
                format!(
                    "a {} block is not allowed in a function of type {}",
                    other.as_str(),
                    f.type_
                ),
            );
        }
        if !f.type_.supports(f.tier) {
            self.err(
                format!("{path}.tier"),
                format!(
                    "type {} cannot run in the {} tier (it runs in the {} tier)",
                    f.type_,
                    tier_name(f.tier),
                    tier_name(f.type_.default_tier())
                ),
            );
        }
        if let Some(c) = &f.firewall {
            self.firewall(&format!("{path}.firewall"), c);
        }
        if let Some(c) = &f.nat {
            self.nat(&format!("{path}.nat"), c, classifier);
        }
        if let Some(c) = &f.load_balancer {
            self.load_balancer(&format!("{path}.loadBalancer"), c, classifier);
        }
        if let Some(c) = &f.rate_limiter {
            self.rate_limiter(&format!("{path}.rateLimiter"), c);
        }
        if let Some(c) = &f.monitor {
            self.monitor(&format!("{path}.monitor"), c);
        }
        if let Some(c) = &f.forwarder {
            let p = format!("{path}.forwarder");
            match (c.mode, &c.egress_interface) {
                (ForwardMode::Redirect, None) => self.err(
                    format!("{p}.egressInterface"),
                    "is required with mode redirect",
                ),
                (ForwardMode::Redirect, Some(name)) => {
                    if !interfaces.contains(&name.as_str()) {
                        self.err(
                            format!("{p}.egressInterface"),
                            format!(
                                "{:?} is not one of the chain's interfaces ({})",
                                name.as_str(),
                                interfaces.join(", ")
                            ),
                        );
                    }
                }
                (mode, Some(_)) => self.err(
                    format!("{p}.egressInterface"),
                    format!(
                        "is only used with mode redirect, not {}",
                        match mode {
                            ForwardMode::Bounce => "bounce",
                            _ => "pass",
                        }
                    ),
                ),
                (_, None) => {}
            }
            if let Some(mac) = &c.next_hop_mac
                && let Err(e) = mac.parse()
            {
                self.err(format!("{p}.nextHopMAC"), e);
            }
        }
        if let Some(c) = &f.payload_cipher {
            self.payload_cipher(&format!("{path}.payloadCipher"), c);
        }
    }

    fn firewall(&mut self, path: &str, c: &FirewallConfig) {
        if c.rules.len() > MAX_FIREWALL_RULES {
            self.err(
                format!("{path}.rules"),
                format!("at most {MAX_FIREWALL_RULES} rules, got {}", c.rules.len()),
            );
        }
        let parsed: Vec<Match> = c
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| self.traffic_match(&|| format!("{path}.rules[{i}]"), &r.traffic))
            .collect();
        // A rule that every packet reaching it has already matched can never decide anything.
        let (covers, _exhausted) = ShadowAnalysis::new(SHADOW_WORK_BUDGET).first_covers(&parsed);
        for (j, first) in covers.into_iter().enumerate() {
            if let Some(i) = first {
                let verb = if c.rules[i].action == c.rules[j].action {
                    "is redundant"
                } else {
                    "can never match"
                };
                self.err(
                    format!("{path}.rules[{j}]"),
                    format!(
                        "{verb}: every packet it matches is matched first by {path}.rules[{i}] ({})",
                        action_name(c.rules[i].action)
                    ),
                );
            }
        }
    }

    fn nat(&mut self, path: &str, c: &NatConfig, classifier: &Match) {
        if c.snat.is_none() && c.dnat.is_empty() {
            self.err(path, "nat needs snat, dnat, or both");
        }
        if !(1024..=4_194_304).contains(&c.conntrack_size) {
            self.err(
                format!("{path}.conntrackSize"),
                format!("must be between 1024 and 4194304, got {}", c.conntrack_size),
            );
        }
        if let Some(s) = &c.snat {
            let sp = format!("{path}.snat");
            let sources = self.cidrs(
                &|| format!("{sp}.sourceCIDRs"),
                &s.source_cidrs,
                MAX_PREFIXES,
            );
            let to = self.ip(&format!("{sp}.toAddress"), &s.to_address);
            self.port_range(&|| format!("{sp}.toPorts"), &s.to_ports);
            if let Some(to) = to {
                self.snat_families(&sp, s, &sources, to, classifier);
            }
        }
        let mut seen: HashMap<(L4Protocol, IpAddr, u16), usize> = HashMap::new();
        for (k, m) in c.dnat.iter().enumerate() {
            let mp = format!("{path}.dnat[{k}]");
            self.port(&|| format!("{mp}.port"), m.port);
            if let Some(p) = m.to_port {
                self.port(&|| format!("{mp}.toPort"), p);
            }
            let dst = self.ip(&format!("{mp}.destination"), &m.destination);
            let to = self.ip(&format!("{mp}.toAddress"), &m.to_address);
            if let Some(t) = to {
                self.unicast(&format!("{mp}.toAddress"), t);
            }
            if let Some(d) = dst {
                self.unicast(&format!("{mp}.destination"), d);
                self.reachable(&mp, m.protocol, d, m.port, classifier, "mapping");
            }
            if let (Some(d), Some(t)) = (dst, to) {
                if d.is_ipv4() != t.is_ipv4() {
                    self.err(
                        format!("{mp}.toAddress"),
                        "must be of the same address family as destination (no NAT46/NAT64)",
                    );
                }
                if let Some(first) = seen.insert((m.protocol, d, m.port), k) {
                    self.err(
                        mp,
                        format!(
                            "duplicate mapping for {d} port {} (also {path}.dnat[{first}])",
                            m.port
                        ),
                    );
                }
            }
        }
    }

    /// SNAT keeps the address family: no source it translates may be of the other family than `toAddress`.
    fn snat_families(
        &mut self,
        sp: &str,
        s: &crate::functions::SnatConfig,
        sources: &Prefixes,
        to: IpAddr,
        classifier: &Match,
    ) {
        self.unicast(&format!("{sp}.toAddress"), to);
        let same = |n: &IpNet| matches!(n, IpNet::V4(_)) == to.is_ipv4();
        for (i, c) in s.source_cidrs.iter().enumerate() {
            if let Ok(n) = c.parse()
                && !same(&n)
            {
                self.err(
                    format!("{sp}.sourceCIDRs[{i}]"),
                    format!(
                        "{n} is {} but toAddress {to} is not: SNAT cannot change the address family (no NAT46/NAT64)",
                        family_name(&n)
                    ),
                );
            }
        }
        let (v4, v6) = classifier.src.families();
        if sources.any() && !(if to.is_ipv4() { v4 } else { v6 }) {
            self.err(
                format!("{sp}.toAddress"),
                format!(
                    "{to} is {} but spec.classifier admits only {} sources: SNAT cannot change the address family (no NAT46/NAT64)",
                    if to.is_ipv4() { "IPv4" } else { "IPv6" },
                    if to.is_ipv4() { "IPv6" } else { "IPv4" }
                ),
            );
        }
    }

    /// An address a flow can be translated to or balanced to: not unspecified, multicast or broadcast.
    fn unicast(&mut self, path: &str, ip: IpAddr) {
        let problem = if ip.is_unspecified() {
            Some("the unspecified address")
        } else if ip.is_multicast() {
            Some("a multicast address")
        } else if ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
            Some("the broadcast address")
        } else {
            None
        };
        if let Some(what) = problem {
            self.err(
                path,
                format!("{ip} is {what}; a flow can only be sent to a unicast address"),
            );
        }
    }

    /// A service (DNAT mapping or load-balancer VIP) the classifier lets traffic reach.
    fn reachable(
        &mut self,
        path: &str,
        protocol: L4Protocol,
        address: IpAddr,
        port: u16,
        classifier: &Match,
        what: &str,
    ) {
        let proto = Protocol::from(protocol);
        if !classifier.protocol.covers(proto) {
            self.err(
                format!("{path}.protocol"),
                format!(
                    "the classifier only admits {} traffic, so this {} {what} is unreachable",
                    protocol_name(classifier.protocol),
                    protocol_name(proto)
                ),
            );
        }
        if !classifier.dst.contains(address) {
            self.err(
                format!("{path}.destination"),
                format!("{address} is outside spec.classifier.destinationCIDRs, so the {what} is unreachable"),
            );
        }
        if !classifier.dports.is_empty() && !classifier.dports.iter().any(|r| r.contains(port)) {
            self.err(
                format!("{path}.port"),
                format!("{port} is outside spec.classifier.destinationPorts, so the {what} is unreachable"),
            );
        }
    }

    fn load_balancer(&mut self, path: &str, c: &LoadBalancerConfig, classifier: &Match) {
        let vip = self.ip(&format!("{path}.vip"), &c.vip);
        if let Some(v) = vip {
            self.unicast(&format!("{path}.vip"), v);
        }
        self.port(&|| format!("{path}.port"), c.port);
        if c.table_size < MIN_MAGLEV_TABLE || !is_prime(c.table_size) {
            self.err(
                format!("{path}.tableSize"),
                format!(
                    "must be a prime of at least {MIN_MAGLEV_TABLE} (e.g. 65537, 131071, 262139), got {}",
                    c.table_size
                ),
            );
        }
        if !(1024..=4_194_304).contains(&c.flow_table_size) {
            self.err(
                format!("{path}.flowTableSize"),
                format!(
                    "must be between 1024 and 4194304, got {}",
                    c.flow_table_size
                ),
            );
        }
        if c.backends.is_empty() {
            self.err(
                format!("{path}.backends"),
                "a load balancer needs at least one backend",
            );
        }
        if c.backends.len() > 256 {
            self.err(
                format!("{path}.backends"),
                format!("at most 256 backends, got {}", c.backends.len()),
            );
        }
        let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
        for (k, b) in c.backends.iter().enumerate() {
            let bp = format!("{path}.backends[{k}]");
            if !(1..=1000).contains(&b.weight) {
                self.err(
                    format!("{bp}.weight"),
                    format!("must be between 1 and 1000, got {}", b.weight),
                );
            }
            if let Some(p) = b.port {
                self.port(&|| format!("{bp}.port"), p);
            }
            let Some(addr) = self.ip(&format!("{bp}.address"), &b.address) else {
                continue;
            };
            self.unicast(&format!("{bp}.address"), addr);
            let port = b.port.unwrap_or(c.port);
            if let Some(v) = vip {
                if v.is_ipv4() != addr.is_ipv4() {
                    self.err(
                        format!("{bp}.address"),
                        "must be of the same address family as the vip",
                    );
                }
                if v == addr && port == c.port {
                    self.err(
                        format!("{bp}.address"),
                        "a backend cannot be the vip itself",
                    );
                }
            }
            if let Some(first) = seen.insert((addr, port), k) {
                self.err(
                    bp,
                    format!("duplicate backend {addr} port {port} (also {path}.backends[{first}])"),
                );
            }
        }
        // Traffic the classifier keeps out of the chain never reaches the load balancer.
        let proto = Protocol::from(c.protocol);
        if !classifier.protocol.covers(proto) {
            self.err(
                format!("{path}.protocol"),
                format!(
                    "the classifier only admits {} traffic, so this {} service is unreachable",
                    protocol_name(classifier.protocol),
                    protocol_name(proto)
                ),
            );
        }
        if let Some(v) = vip
            && !classifier.dst.contains(v)
        {
            self.err(
                format!("{path}.vip"),
                "is outside spec.classifier.destinationCIDRs, so the service is unreachable",
            );
        }
        if !classifier.dports.is_empty() && !classifier.dports.iter().any(|r| r.contains(c.port)) {
            self.err(
                format!("{path}.port"),
                "is outside spec.classifier.destinationPorts, so the service is unreachable",
            );
        }
    }

    fn rate_limiter(&mut self, path: &str, c: &RateLimiterConfig) {
        if c.packets_per_second.is_none() && c.bits_per_second.is_none() {
            self.err(
                path,
                "rateLimiter needs packetsPerSecond, bitsPerSecond, or both",
            );
        }
        let positive = |v: &mut Self, field: &str, value: Option<u64>| {
            if value == Some(0) {
                v.err(format!("{path}.{field}"), "must be greater than 0");
            }
        };
        positive(self, "packetsPerSecond", c.packets_per_second);
        positive(self, "bitsPerSecond", c.bits_per_second);
        positive(self, "burstPackets", c.burst_packets);
        positive(self, "burstBytes", c.burst_bytes);
        if c.burst_packets.is_some() && c.packets_per_second.is_none() {
            self.err(format!("{path}.burstPackets"), "needs packetsPerSecond");
        }
        if c.burst_bytes.is_some() && c.bits_per_second.is_none() {
            self.err(format!("{path}.burstBytes"), "needs bitsPerSecond");
        }
        if !(1024..=4_194_304).contains(&c.table_size) {
            self.err(
                format!("{path}.tableSize"),
                format!("must be between 1024 and 4194304, got {}", c.table_size),
            );
        }
    }

    fn monitor(&mut self, path: &str, c: &MonitorConfig) {
        if c.sample_one_in > 1_000_000 {
            self.err(
                format!("{path}.sampleOneIn"),
                format!("must be between 0 and 1000000, got {}", c.sample_one_in),
            );
        }
    }

    fn payload_cipher(&mut self, path: &str, c: &PayloadCipherConfig) {
        let r = &c.key_secret_ref;
        if !is_dns_subdomain(&r.name) {
            self.err(
                format!("{path}.keySecretRef.name"),
                format!("{:?} is not a valid Secret name", r.name),
            );
        }
        let key_ok = !r.key.is_empty()
            && r.key.len() <= 253
            && r.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok {
            self.err(
                format!("{path}.keySecretRef.key"),
                format!("{:?} is not a valid Secret key", r.key),
            );
        } else if r.key == "." || r.key.starts_with("..") {
            // The key is a file name under the mounted Secret: "." and ".." would name directories.
            self.err(
                format!("{path}.keySecretRef.key"),
                format!(
                    "{:?} is not a valid Secret key: it may not be '.' or start with '..' (it names a file)",
                    r.key
                ),
            );
        }
    }

    /// Addresses two functions of the chain both claim.
    fn address_conflicts(&mut self, fns: &[Function]) {
        // (protocol, address, port) → the path that claims it.
        let mut services: HashMap<(L4Protocol, IpAddr, u16), String> = HashMap::new();
        let mut snat: HashMap<IpAddr, String> = HashMap::new();
        for (i, f) in fns.iter().enumerate() {
            if let Some(nat) = &f.nat {
                if let Some(s) = &nat.snat
                    && let Ok(a) = s.to_address.parse()
                {
                    snat.insert(a, format!("spec.functions[{i}].nat.snat.toAddress"));
                }
                for (k, m) in nat.dnat.iter().enumerate() {
                    if let Ok(d) = m.destination.parse() {
                        let path = format!("spec.functions[{i}].nat.dnat[{k}]");
                        self.claim(&mut services, (m.protocol, d, m.port), path);
                    }
                }
            }
            if let Some(lb) = &f.load_balancer
                && let Ok(v) = lb.vip.parse()
            {
                let path = format!("spec.functions[{i}].loadBalancer");
                self.claim(&mut services, (lb.protocol, v, lb.port), path);
            }
        }
        for ((_, addr, port), path) in &services {
            if let Some(s) = snat.get(addr) {
                self.err(
                    path.clone(),
                    format!("{addr} port {port} is also the SNAT address of {s}; replies to it would be translated twice"),
                );
            }
        }
    }

    fn claim(
        &mut self,
        services: &mut HashMap<(L4Protocol, IpAddr, u16), String>,
        key: (L4Protocol, IpAddr, u16),
        path: String,
    ) {
        // Two mappings inside one NAT block are reported by `nat()`; here only different functions conflict.
        if let Some(first) = services.get(&key) {
            let same_function = first.split(".nat").next() == path.split(".nat").next();
            if !same_function {
                self.err(
                    path,
                    format!(
                        "{} {} port {} is already claimed by {first}",
                        protocol_name(key.0.into()),
                        key.1,
                        key.2
                    ),
                );
            }
            return;
        }
        services.insert(key, path);
    }
}

fn chain_interfaces(spec: &VNFChainSpec) -> Vec<&str> {
    let ifs = &spec.interfaces;
    std::iter::once(ifs.ingress.as_str())
        .chain(ifs.egress.as_ref().map(|e| e.as_str()))
        .chain(ifs.secondary_networks.iter().map(|n| n.interface.as_str()))
        .collect()
}

fn family_name(n: &IpNet) -> &'static str {
    match n {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Any => "any",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::Icmpv6 => "icmpv6",
    }
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Auto => "auto",
        Tier::Kernel => "kernel",
        Tier::Userspace => "userspace",
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Deny => "deny",
    }
}

/// Whether `rest` (what follows a path) is one more segment: `.name` or `[3]`.
fn is_one_segment(rest: &str) -> bool {
    match rest.as_bytes().first() {
        Some(b'.') => !rest[1..].contains(['.', '[']),
        Some(b'[') => rest.find(']').is_some_and(|end| end + 1 == rest.len()),
        _ => false,
    }
}

/// Deterministic trial division; table sizes are at most ~2^24.
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Kubernetes label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(|p| !p.is_empty() && is_dns_subdomain(p))
        && !name.is_empty()
        && is_label_value(name)
}

/// Kubernetes label value: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() <= 63
        && (b.is_empty()
            || (b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::FirewallRule;

    fn interface_errors(interfaces: serde_json::Value) -> Vec<String> {
        let spec: VNFChainSpec = serde_json::from_value(serde_json::json!({
            "functions": [{"name": "m", "type": "monitor", "monitor": {}}],
            "interfaces": interfaces,
        }))
        .expect("spec");
        let mut v = Validator::default();
        v.interfaces(&spec);
        v.errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_secondary_network_may_supply_the_egress_interface_once() {
        let net = |name: &str, ifname: &str| serde_json::json!({"name": name, "interface": ifname});
        let ok = serde_json::json!({"ingress": "eth0", "egress": "eth1", "secondaryNetworks": [net("up", "eth1")]});
        assert_eq!(interface_errors(ok), Vec::<String>::new());
        let ingress =
            serde_json::json!({"ingress": "net1", "secondaryNetworks": [net("a", "net1")]});
        assert_eq!(interface_errors(ingress), Vec::<String>::new());
        let twice = serde_json::json!({"ingress": "eth0", "egress": "eth1",
            "secondaryNetworks": [net("a", "eth1"), net("b", "eth1")]});
        let e = interface_errors(twice);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("secondaryNetworks[1].interface")
                && e[0].contains("already used by spec.interfaces.secondaryNetworks[0].interface"),
            "{e:?}"
        );
        let unattached =
            serde_json::json!({"secondaryNetworks": [net("a", "net1"), net("b", "net1")]});
        assert_eq!(interface_errors(unattached).len(), 1);
        let eth0 = serde_json::json!({"secondaryNetworks": [net("a", "eth0")]});
        let e = interface_errors(eth0);
        assert!(
            e.iter().any(|m| m.contains("cluster-network interface")),
            "{e:?}"
        );
    }

    fn spec_errors(spec: serde_json::Value) -> Vec<String> {
        let mut spec = spec;
        spec["functions"] = serde_json::json!([{"name": "m", "type": "monitor", "monitor": {}}]);
        let spec: VNFChainSpec = serde_json::from_value(spec).expect("spec");
        match validate_spec(&spec) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn target_is_exclusive_with_placement_and_networks_and_selects_something() {
        let sel = serde_json::json!({"podSelector": {"matchLabels": {"app": "web"}}});
        assert_eq!(
            spec_errors(serde_json::json!({"target": sel})),
            Vec::<String>::new()
        );
        // The defaults of placement are not "set".
        assert_eq!(
            spec_errors(serde_json::json!({"target": sel, "placement": {"replicas": 1}})),
            Vec::<String>::new()
        );
        for placement in [
            serde_json::json!({"replicas": 2}),
            serde_json::json!({"nodeSelector": {"a": "b"}}),
            serde_json::json!({"tolerations": [{"operator": "Exists"}]}),
        ] {
            let e = spec_errors(serde_json::json!({"target": sel, "placement": placement}));
            assert_eq!(
                e,
                vec![format!(
                    "spec.placement: {}",
                    crate::vnfchain::TARGET_EXCLUDES_PLACEMENT
                )],
                "{placement}"
            );
        }
        let e = spec_errors(serde_json::json!({"target": sel, "interfaces": {
            "secondaryNetworks": [{"name": "n", "interface": "net1"}]}}));
        assert_eq!(
            e,
            vec![format!(
                "spec.interfaces.secondaryNetworks: {}",
                crate::vnfchain::TARGET_EXCLUDES_NETWORKS
            )]
        );
        for empty in [
            serde_json::json!({"podSelector": {}}),
            serde_json::json!({"podSelector": {"matchLabels": {}, "matchExpressions": []}}),
        ] {
            let e = spec_errors(serde_json::json!({"target": empty}));
            assert_eq!(
                e,
                vec![format!(
                    "spec.target.podSelector: {}",
                    crate::vnfchain::TARGET_SELECTS_SOMETHING
                )]
            );
        }
    }

    #[test]
    fn hostile_label_selectors_name_the_field() {
        let with = |sel: serde_json::Value| {
            spec_errors(serde_json::json!({"target": {"podSelector": sel}})).join("\n")
        };
        let e = with(serde_json::json!({"matchLabels": {"-bad": "x"}}));
        assert!(
            e.contains("spec.target.podSelector.matchLabels[\"-bad\"]"),
            "{e}"
        );
        let e = with(serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}));
        assert!(
            e.contains("matchExpressions[0].operator") && e.contains("Near"),
            "{e}"
        );
        let e = with(serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In"}]}));
        assert!(
            e.contains("matchExpressions[0].values: must not be empty"),
            "{e}"
        );
        let e = with(
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        );
        assert!(e.contains("must be empty with operator Exists"), "{e}");
        let long = "v".repeat(64);
        let e = with(
            serde_json::json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [long]}]}),
        );
        assert!(e.contains("values[0]"), "{e}");
        let many: serde_json::Map<String, serde_json::Value> = (0..1000)
            .map(|i| (format!("k{i}"), serde_json::json!("v")))
            .collect();
        let e = with(serde_json::json!({"matchLabels": many}));
        assert!(e.contains("at most 32 labels"), "{e}");
        let e = spec_errors(
            serde_json::json!({"target": {"podSelector": {"matchLabels": {"a": "b"}},
            "namespaceSelector": {"matchExpressions": [{"key": "", "operator": "Exists"}]}}}),
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.target.namespaceSelector.matchExpressions[0].key")),
            "{e:?}"
        );
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(131071));
        assert!(!is_prime(65536));
        assert!(!is_prime(65539 * 3));
        assert!(!is_prime(1));
    }

    #[test]
    fn labels() {
        assert!(is_label_key("kubernetes.io/hostname"));
        assert!(is_label_key("edge"));
        assert!(!is_label_key("/edge"));
        assert!(!is_label_key("a/b/c"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
    }

    #[test]
    fn ten_thousand_rules_validate_and_a_shadowed_one_is_found() {
        use crate::functions::FirewallConfig;
        let rule = |i: usize| FirewallRule {
            action: Action::Deny,
            traffic: TrafficMatch {
                protocol: Protocol::Tcp,
                source_cidrs: vec![Cidr(format!("10.{}.{}.0/24", i / 256, i % 256))],
                destination_ports: vec![PortRange::single(443)],
                ..TrafficMatch::default()
            },
        };
        let mut rules: Vec<FirewallRule> = (0..MAX_FIREWALL_RULES - 1).map(rule).collect();
        let mut v = Validator::default();
        v.firewall(
            "fw",
            &FirewallConfig {
                default_action: Action::Allow,
                stateful: false,
                rules: rules.clone(),
            },
        );
        assert!(v.errors.is_empty(), "{:?}", v.errors.first());
        // The same prefix again, narrowed to a /25: rule 7 already decides all of it.
        let mut narrow = rule(7);
        narrow.traffic.source_cidrs = vec![Cidr("10.0.7.128/25".into())];
        narrow.action = Action::Allow;
        rules.push(narrow);
        let mut v = Validator::default();
        v.firewall(
            "fw",
            &FirewallConfig {
                default_action: Action::Allow,
                stateful: false,
                rules,
            },
        );
        assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
        assert_eq!(
            v.errors[0].path,
            format!("fw.rules[{}]", MAX_FIREWALL_RULES - 1)
        );
        assert!(
            v.errors[0]
                .message
                .contains("matched first by fw.rules[7] (deny)"),
            "{}",
            v.errors[0]
        );
    }
}
