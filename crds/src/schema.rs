//! The generated CRD's OpenAPI schema and CEL rules, enforced by `validate()` itself.
//!
//! The API server checks a `VNFChain` against the `openAPIV3Schema` of the CRD (types, enums, ranges, lengths,
//! patterns, list bounds) and then its CEL rules (`x-kubernetes-validations`). This module runs the very same
//! schema, generated from the Rust types at run time, through a JSON Schema validator (the `jsonschema` crate,
//! draft 4: the OpenAPI keywords the CRD uses are JSON Schema's) and the CEL rules through kube's CEL evaluator
//! So `validate()` cannot drift from the CRD: there is one source, the types' schema attributes.
//!
//! The CEL rules are evaluated by Rust twins, one per rule text ([`twin`]): kube's CEL evaluator takes about a
//! second on a 10,000-rule chain, the twins a few milliseconds. A rule of the CRD without a twin is an error
//! (fail closed), and `crds/tests/never_weaker.rs` proves each twin equivalent to the real rule, evaluated by
//! kube's CEL evaluator (`kube::core::cel`), on more than 10,000 documents.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::validate::ValidationError;
use crate::vnfchain::VNFChain;

/// The compiled schema, built once per process.
struct Compiled {
    root: Value,
    schema: jsonschema::Validator,
}

/// The CRD's `openAPIV3Schema` as JSON.
pub fn openapi_schema() -> Result<Value, String> {
    let crd = VNFChain::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| "the CRD has no openAPIV3Schema".to_string())?;
    serde_json::to_value(schema).map_err(|e| format!("cannot encode the CRD schema: {e}"))
}

fn compiled() -> Result<&'static Compiled, String> {
    static COMPILED: OnceLock<Result<Compiled, String>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let root = openapi_schema()?;
            let schema = jsonschema::draft4::new(&root)
                .map_err(|e| format!("the CRD schema does not compile: {e}"))?;
            Ok(Compiled { root, schema })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Every problem the CRD's schema and CEL rules find in `object` (a whole `VNFChain` as JSON), with dotted
/// field paths (`spec.functions[0].firewall.rules[3].sourcePorts`). The CEL rules run only on an object the
/// schema accepts, as on the API server.
pub fn check(object: &Value) -> Vec<ValidationError> {
    let compiled = match compiled() {
        Ok(c) => c,
        Err(e) => return vec![error("(schema)", e)],
    };
    // The status is not the user's to write (the API server ignores it outside the status subresource).
    let without_status;
    let object = if object.get("status").is_some() {
        let mut o = object.clone();
        if let Some(map) = o.as_object_mut() {
            map.remove("status");
        }
        without_status = o;
        &without_status
    } else {
        object
    };
    // `is_valid` stops at nothing it need not look at and builds no error; the errors are collected only for
    // a document that has some.
    let mut out: Vec<ValidationError> = if compiled.schema.is_valid(object) {
        Vec::new()
    } else {
        compiled
            .schema
            .iter_errors(object)
            .map(|e| schema_error(&e))
            .collect()
    };
    if out.is_empty() {
        rules(&compiled.root, object, &mut String::new(), &mut out);
    }
    out
}

/// The CEL rules of the CRD that `object` (a whole `VNFChain`, defaults applied) breaks, evaluated by their
/// twins. Public for the equivalence test.
pub fn check_rules(object: &Value) -> Vec<ValidationError> {
    let mut out = Vec::new();
    match compiled() {
        Ok(c) => rules(&c.root, object, &mut String::new(), &mut out),
        Err(e) => out.push(error("(schema)", e)),
    }
    out
}

/// Evaluates the rules of `schema` on `value` and walks on; `path` (the dotted path of `value`) is extended and
/// cut back in place, so a large document costs no string per node.
fn rules(schema: &Value, value: &Value, path: &mut String, out: &mut Vec<ValidationError>) {
    for r in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
        let holds = match twin(rule) {
            Some(holds) => holds(value),
            None => false,
        };
        if holds {
            continue;
        }
        let message = match twin(rule) {
            Some(_) => r
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("failed rule: {rule}"), str::to_string),
            None => format!("internal: the CEL rule {rule:?} has no twin in crds::schema"),
        };
        let at = match r.get("fieldPath").and_then(Value::as_str) {
            Some(f) => format!("{path}{f}"),
            None if path.is_empty() => "(document)".to_string(),
            None => path.clone(),
        };
        out.push(error(at, message));
    }
    let len = path.len();
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in map {
                    if let Some(child) = props.get(k) {
                        if len > 0 {
                            path.push('.');
                        }
                        path.push_str(k);
                        rules(child, v, path, out);
                        path.truncate(len);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    use std::fmt::Write as _;
                    let _ = write!(path, "[{i}]");
                    rules(item, v, path, out);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// `has(self.field)`: present (CEL's presence test; a null value is present).
fn has(v: &Value, field: &str) -> bool {
    v.get(field).is_some()
}

fn str_field<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// `size(self.field) == 0` for a list; a value of another type is a CEL error, i.e. the rule fails.
fn empty_list(v: &Value, field: &str) -> Option<bool> {
    match v.get(field) {
        None => Some(true),
        Some(Value::Array(a)) => Some(a.is_empty()),
        Some(_) => None,
    }
}

fn ports_only_with_tcp_udp(v: &Value) -> bool {
    let tcp_udp = has(v, "protocol") && matches!(str_field(v, "protocol"), Some("tcp" | "udp"));
    tcp_udp
        || (empty_list(v, "sourcePorts") == Some(true)
            && empty_list(v, "destinationPorts") == Some(true))
}

fn range_in_order(v: &Value) -> bool {
    match (v.get("to"), v.get("from")) {
        (None, _) => true,
        (Some(to), Some(from)) => match (to.as_i64(), from.as_i64()) {
            (Some(t), Some(f)) => t >= f,
            _ => false,
        },
        (Some(_), None) => false,
    }
}

fn one_forwarder(v: &Value) -> bool {
    match v.get("functions").and_then(Value::as_array) {
        Some(fns) => {
            fns.iter()
                .filter(|f| str_field(f, "type") == Some("forwarder"))
                .count()
                <= 1
        }
        None => false,
    }
}

fn forwarder_last(v: &Value) -> bool {
    let Some(fns) = v.get("functions").and_then(Value::as_array) else {
        return false;
    };
    let last = fns.last().and_then(|f| f.get("name"));
    fns.iter().all(|f| {
        str_field(f, "type") != Some("forwarder") || (last.is_some() && f.get("name") == last)
    })
}

fn tier_fits_type(v: &Value) -> bool {
    let tier = str_field(v, "tier");
    !has(v, "tier")
        || tier == Some("auto")
        || (str_field(v, "type") == Some("payloadCipher")) == (tier == Some("userspace"))
}

/// The Rust twin of a CEL rule of the CRD, by the rule's exact text.
pub fn twin(rule: &str) -> Option<fn(&Value) -> bool> {
    let f: fn(&Value) -> bool = match rule {
        "size(self.metadata.name) <= 48" => |v| {
            v.get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .is_some_and(|n| n.chars().count() <= 48)
        },
        "self.functions.filter(f, f.type == 'forwarder').size() <= 1" => one_forwarder,
        "self.functions.all(f, f.type != 'forwarder' || f.name == self.functions[size(self.functions) - 1].name)" => {
            forwarder_last
        }
        "(has(self.protocol) && self.protocol in ['tcp', 'udp']) || ((!has(self.sourcePorts) || size(self.sourcePorts) == 0) && (!has(self.destinationPorts) || size(self.destinationPorts) == 0))" => {
            ports_only_with_tcp_udp
        }
        "!has(self.to) || self.to >= self.from" => range_in_order,
        "has(self.firewall) == (self.type == 'firewall')" => |v| block_fits(v, "firewall"),
        "has(self.nat) == (self.type == 'nat')" => |v| block_fits(v, "nat"),
        "has(self.loadBalancer) == (self.type == 'loadBalancer')" => {
            |v| block_fits(v, "loadBalancer")
        }
        "has(self.rateLimiter) == (self.type == 'rateLimiter')" => |v| block_fits(v, "rateLimiter"),
        "has(self.monitor) == (self.type == 'monitor')" => |v| block_fits(v, "monitor"),
        "has(self.forwarder) == (self.type == 'forwarder')" => |v| block_fits(v, "forwarder"),
        "has(self.payloadCipher) == (self.type == 'payloadCipher')" => {
            |v| block_fits(v, "payloadCipher")
        }
        "!has(self.tier) || self.tier == 'auto' || (self.type == 'payloadCipher') == (self.tier == 'userspace')" => {
            tier_fits_type
        }
        "(has(self.mode) && self.mode != 'redirect') || has(self.egressInterface)" => |v| {
            (has(v, "mode") && str_field(v, "mode") != Some("redirect"))
                || has(v, "egressInterface")
        },
        "size(self) > 0" => |v| v.as_array().is_some_and(|a| !a.is_empty()),
        "has(self.snat) || (has(self.dnat) && size(self.dnat) > 0)" => {
            |v| has(v, "snat") || empty_list(v, "dnat") == Some(false)
        }
        "has(self.packetsPerSecond) || has(self.bitsPerSecond)" => {
            |v| has(v, "packetsPerSecond") || has(v, "bitsPerSecond")
        }
        "!has(self.burstPackets) || has(self.packetsPerSecond)" => {
            |v| !has(v, "burstPackets") || has(v, "packetsPerSecond")
        }
        "!has(self.burstBytes) || has(self.bitsPerSecond)" => {
            |v| !has(v, "burstBytes") || has(v, "bitsPerSecond")
        }
        "!(self in ['0x0800', '0x86dd', '0x8100', '0x88a8', '0x9100'])" => |v| {
            v.as_str()
                .is_some_and(|s| !crate::vnfchain::IP_OR_VLAN_ETHER_TYPES.contains(&s))
        },
        crate::vnfchain::TARGET_EXCLUDES_PLACEMENT_RULE => target_excludes_placement,
        crate::vnfchain::TARGET_EXCLUDES_NETWORKS_RULE => |v| {
            !has(v, "target")
                || v.get("interfaces")
                    .is_none_or(|i| nonempty_size(i, "secondaryNetworks") == Some(false))
        },
        crate::vnfchain::TARGET_SELECTS_SOMETHING_RULE => |v| {
            let sel = v.get("podSelector");
            let some = |k| sel.and_then(|s| nonempty_size(s, k)) == Some(true);
            some("matchLabels") || some("matchExpressions")
        },
        _ => return None,
    };
    Some(f)
}

/// `has(self.f) && size(self.f) > 0` for a list or a map: `Some(true)`/`Some(false)`, `None` when the field
/// is there but neither (a CEL error: the rule fails).
fn nonempty_size(v: &Value, field: &str) -> Option<bool> {
    match v.get(field) {
        None => Some(false),
        Some(Value::Array(a)) => Some(!a.is_empty()),
        Some(Value::Object(m)) => Some(!m.is_empty()),
        Some(_) => None,
    }
}

/// Twin of `TARGET_EXCLUDES_PLACEMENT_RULE`: without a target, or with placement at its defaults.
fn target_excludes_placement(v: &Value) -> bool {
    let Some(p) = v.get("placement").filter(|_| has(v, "target")) else {
        return true;
    };
    let replicas_default = p
        .get("replicas")
        .is_none_or(|r| r.as_i64() == Some(1) || r.as_f64() == Some(1.0));
    replicas_default
        && nonempty_size(p, "nodeSelector") == Some(false)
        && nonempty_size(p, "tolerations") == Some(false)
}

/// `has(self.<block>) == (self.type == '<block>')`.
fn block_fits(v: &Value, block: &str) -> bool {
    has(v, block) == (str_field(v, "type") == Some(block))
}

/// Drops `null` values of fields that are not `nullable`, as the API server prunes them before defaulting
/// (Kubernetes documentation, "Defaulting and Nullable":
/// <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting-and-nullable>).
pub fn prune_nulls(value: &mut Value) {
    if let Ok(c) = compiled() {
        prune(&c.root, value);
    }
}

fn prune(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let values = schema.get("additionalProperties").filter(|a| a.is_object());
            map.retain(|k, v| {
                let child = props.and_then(|p| p.get(k)).or(values);
                let nullable = child.and_then(|c| c.get("nullable")) == Some(&Value::Bool(true));
                !v.is_null() || nullable
            });
            for (k, v) in map.iter_mut() {
                if let Some(child) = props.and_then(|p| p.get(k)).or(values) {
                    prune(child, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                items.iter_mut().for_each(|v| prune(item, v));
            }
        }
        _ => {}
    }
}

/// The object the API server validates: nulls pruned, the schema's defaults applied.
pub fn as_the_api_server_sees_it(object: &Value) -> Value {
    let mut object = object.clone();
    to_what_the_api_server_checks(&mut object);
    object
}

/// [`as_the_api_server_sees_it`] in place.
pub fn to_what_the_api_server_checks(object: &mut Value) {
    if let Ok(c) = compiled() {
        prune(&c.root, object);
        apply_defaults(&c.root, object, 0);
    }
}

/// Deepest schema level defaults are applied at (the schema is far shallower; a bound all the same).
const MAX_DEFAULT_DEPTH: usize = 64;

/// The schema's defaults applied in place, with the semantics of `kube::core::cel::apply_defaults` (which
/// copies every object at every level, a cost quadratic in the depth): a missing declared property gets its
/// `default`; existing children are defaulted by their property's schema, or by `additionalProperties` unless
/// `x-kubernetes-preserve-unknown-fields` is set; list items by `items`; an inserted default is not defaulted
/// further. `crds/tests/never_weaker.rs` checks both give the same object.
pub fn apply_defaults(schema: &Value, value: &mut Value, depth: usize) {
    if depth > MAX_DEFAULT_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let preserve =
                schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            let additional = schema
                .get("additionalProperties")
                .filter(|a| a.is_object() && !preserve);
            for (k, v) in map.iter_mut() {
                if let Some(child) = props.and_then(|p| p.get(k)).or(additional) {
                    apply_defaults(child, v, depth + 1);
                }
            }
            for (k, child) in props.into_iter().flatten() {
                if !map.contains_key(k)
                    && let Some(default) = child.get("default")
                {
                    map.insert(k.clone(), default.clone());
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for v in items.iter_mut() {
                    apply_defaults(item, v, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn error(path: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        path: path.into(),
        message: message.into(),
    }
}

/// A JSON pointer (`/spec/functions/0/name`) as a dotted path (`spec.functions[0].name`).
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    if out.is_empty() {
        "(document)".into()
    } else {
        out
    }
}

/// A number of the schema as written by a person (`65535`, not `65535.0`).
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e18 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn schema_error(e: &jsonschema::ValidationError<'_>) -> ValidationError {
    let path = dotted(e.instance_path().as_str());
    let got = e.instance();
    let count = || match got.as_ref() {
        Value::Array(a) => a.len(),
        Value::String(s) => s.chars().count(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    let message = match e.kind() {
        ValidationErrorKind::Maximum { limit } => {
            format!("must be at most {}, got {}", number(limit), number(got))
        }
        ValidationErrorKind::Minimum { limit } => {
            format!("must be at least {}, got {}", number(limit), number(got))
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!("at most {limit} items, got {}", count())
        }
        ValidationErrorKind::MinItems { limit } => {
            format!("at least {limit} items, got {}", count())
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("must be at most {limit} characters, got {}", count())
        }
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} characters, got {}", count())
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("{got} does not match the pattern {pattern}")
        }
        ValidationErrorKind::Enum { options } => {
            format!("{got} is not one of {options}")
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let field = if path == "(document)" {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            return error(field, "is required");
        }
        _ => e.to_string(),
    };
    error(path, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(dotted(""), "(document)");
        assert_eq!(
            dotted("/spec/functions/0/firewall/rules/12/sourcePorts"),
            "spec.functions[0].firewall.rules[12].sourcePorts"
        );
        assert_eq!(dotted("/metadata/labels/a~1b"), "metadata.labels.a/b");
        assert_eq!(number(&serde_json::json!(65535.0)), "65535");
    }
}
