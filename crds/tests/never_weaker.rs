//! `validate()` is never weaker than the CRD: more than 10,000 mutations of the valid example chains (numbers at
//! and past every bound, strings at and past every length, enum values and near misses, wrong types, lists at
//! and past `maxItems`, missing and extra fields). Whatever the CRD rejects, the door every component uses
//! (`manifest::parse_document`, which ends in `validate()`) rejects too, with a field path at, above or below
//! the mutated field.
//!
//! The oracle mimics the API server on a create: it applies the schema's defaults (as the API server does
//! before validating), checks the `openAPIV3Schema` (as JSON Schema draft 4, the `jsonschema` crate) and then
//! the CEL rules (kube's CEL evaluator), and refuses an unknown field (`kubectl`'s default strict field
//! validation). `validate()` uses the same schema but Rust twins of the CEL rules: this test also proves each
//! twin equivalent to its rule (same verdict, same path and message, on every document the schema accepts),
//! and holds the whole door to the CRD: typed parsing (which could drop or coerce what the schema sees),
//! defaults, and paths.

mod support;

use std::sync::OnceLock;

use crds::manifest::{Document, parse_document};
use serde_json::{Value, json};
use support::{openapi_schema, repo, yaml_files};

struct Oracle {
    schema: Value,
    validator: jsonschema::Validator,
    rules: kube::core::cel::CompiledSchema,
}

fn oracle() -> &'static Oracle {
    static ORACLE: OnceLock<Oracle> = OnceLock::new();
    ORACLE.get_or_init(|| {
        let schema = openapi_schema();
        Oracle {
            validator: jsonschema::draft4::new(&schema).expect("the CRD schema compiles"),
            rules: kube::core::cel::compile_schema(&schema),
            schema,
        }
    })
}

/// Whether the API server (as modelled) refuses `object`. Where the schema accepts it, the real CEL rules'
/// verdict must be the Rust twins' (`crds::schema::check_rules`), rule by rule: the equivalence proof.
fn crd_rejects(object: &Value) -> Result<bool, String> {
    let o = oracle();
    // The API server prunes nulls, then defaults (kube's `apply_defaults` models the latter); `validate()`
    // defaults in place, which must give the very same object.
    let mut pruned = object.clone();
    crds::schema::prune_nulls(&mut pruned);
    let defaulted = kube::core::cel::apply_defaults(&o.schema, &pruned);
    let ours = crds::schema::as_the_api_server_sees_it(object);
    if ours != defaulted {
        return Err(format!(
            "validate()'s defaults differ from kube's:\n{ours}\n{defaulted}"
        ));
    }
    if !o.validator.is_valid(&defaulted) {
        return Ok(true);
    }
    let cel = testkit::fixtures::cel_errors(&o.rules, &defaulted);
    let mut twins: Vec<(String, String)> = crds::schema::check_rules(&defaulted)
        .into_iter()
        .map(|e| {
            (
                if e.path == "(document)" {
                    String::new()
                } else {
                    e.path
                },
                e.message,
            )
        })
        .collect();
    let mut cel_sorted = cel.clone();
    cel_sorted.sort();
    twins.sort();
    if cel_sorted != twins {
        return Err(format!("CEL says {cel_sorted:?}, the twins say {twins:?}"));
    }
    Ok(!cel.is_empty())
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// One change: the value at `path` becomes `value` (removed when `None`).
#[derive(Clone, Debug)]
struct Mutation {
    path: Vec<Seg>,
    value: Option<Value>,
    /// An unknown field: the API server refuses it whatever the schema says.
    extra: bool,
}

fn apply(doc: &mut Value, m: &Mutation) {
    let Some((last, parents)) = m.path.split_last() else {
        return;
    };
    let mut node = doc;
    for seg in parents {
        node = match (seg, node) {
            (Seg::Key(k), Value::Object(map)) => map.entry(k.clone()).or_insert_with(|| json!({})),
            (Seg::Index(i), Value::Array(items)) if *i < items.len() => &mut items[*i],
            _ => return,
        };
    }
    match (last, node, &m.value) {
        (Seg::Key(k), Value::Object(map), Some(v)) => {
            map.insert(k.clone(), v.clone());
        }
        (Seg::Key(k), Value::Object(map), None) => {
            map.remove(k);
        }
        (Seg::Index(i), Value::Array(items), Some(v)) if *i < items.len() => items[*i] = v.clone(),
        (Seg::Index(i), Value::Array(items), None) if *i < items.len() => {
            items.remove(*i);
        }
        _ => {}
    }
}

fn number(n: &Value, key: &str) -> Option<i64> {
    n.get(key).and_then(Value::as_f64).map(|f| f as i64)
}

/// Values for a field of schema `s`: at and past its bounds, of the wrong type, and a few ordinary ones.
fn scalar_values(s: &Value) -> Vec<Value> {
    let mut out = vec![Value::Null, json!(true), json!([]), json!({})];
    match s.get("type").and_then(Value::as_str) {
        Some("integer") => {
            for key in ["minimum", "maximum"] {
                if let Some(b) = number(s, key) {
                    out.extend([json!(b - 1), json!(b), json!(b + 1)]);
                }
            }
            out.extend([
                json!(0),
                json!(-1),
                json!(65_536),
                json!(i64::MAX),
                json!(1.5),
                json!("7"),
            ]);
        }
        Some("string") => {
            if let Some(e) = s.get("enum").and_then(Value::as_array) {
                out.extend(e.iter().cloned());
                if let Some(first) = e.first().and_then(Value::as_str) {
                    out.push(json!(first.to_uppercase()));
                    out.push(json!(format!("{first}x")));
                }
            }
            if let Some(max) = number(s, "maxLength") {
                let max = max as usize;
                out.extend([json!("a".repeat(max)), json!("a".repeat(max + 1))]);
                out.push(json!("1".repeat(max + 1)));
            }
            out.extend([
                json!(""),
                json!("not valid!"),
                json!(".."),
                json!("10.0.0.1"),
                json!("10.0.0.0/8"),
                json!("2001:db8::/32"),
                json!(7),
            ]);
        }
        Some("boolean") => out.extend([json!(false), json!("yes"), json!(1)]),
        Some("number") => out.extend([json!(-1.0), json!(1e300), json!("1")]),
        _ => out.extend([json!("x"), json!(7)]),
    }
    out
}

/// Every mutation of `value` (of schema `schema`) at `path`.
fn mutations(value: Option<&Value>, schema: &Value, path: &[Seg], out: &mut Vec<Mutation>) {
    let at = |v: Option<Value>| Mutation {
        path: path.to_vec(),
        value: v,
        extra: false,
    };
    if !path.is_empty() {
        out.extend(scalar_values(schema).into_iter().map(|v| at(Some(v))));
        if value.is_some() {
            out.push(at(None));
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let mut extra = path.to_vec();
        extra.push(Seg::Key("extraField".into()));
        out.push(Mutation {
            path: extra,
            value: Some(json!(1)),
            extra: true,
        });
        for (k, child) in props {
            if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "status") {
                continue;
            }
            let mut p = path.to_vec();
            p.push(Seg::Key(k.clone()));
            mutations(value.and_then(|v| v.get(k)), child, &p, out);
        }
    }
    if let (Some(items), Some(Value::Array(list))) = (schema.get("items"), value) {
        for (i, item) in list.iter().enumerate() {
            let mut p = path.to_vec();
            p.push(Seg::Index(i));
            mutations(Some(item), items, &p, out);
        }
        if let Some(last) = list.last() {
            for n in [
                number(schema, "maxItems"),
                number(schema, "maxItems").map(|m| m + 1),
            ]
            .into_iter()
            .flatten()
            {
                let mut longer = list.clone();
                longer.resize(n as usize, last.clone());
                out.push(at(Some(Value::Array(longer))));
            }
        }
    }
}

fn inside(outer: &str, inner: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| outer.is_empty() || rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Whether an error at `error` concerns a change at `mutated`: the same field, one inside the other, or a
/// field of the same object (a rule of the object, such as "ports only with tcp or udp", names a sibling).
fn related(error: &str, mutated: &str) -> bool {
    let parent = mutated.rfind(['.', '[']).map_or("", |i| &mutated[..i]);
    inside(error, mutated) || inside(parent, error)
}

fn example_chains() -> Vec<Value> {
    let mut out = Vec::new();
    for path in yaml_files(&repo().join("examples")) {
        let text = std::fs::read_to_string(&path).expect("read example");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("yaml");
        out.extend(
            docs.into_iter()
                .filter(|d| d.get("kind").and_then(Value::as_str) == Some("VNFChain")),
        );
    }
    out
}

/// Where a mutation lands in `original`: its path, cut after the first field it creates (a mutation below an
/// absent object creates that object, and the errors may concern any of its fields).
fn anchor(original: &Value, path: &[Seg]) -> String {
    let mut node = Some(original);
    for (i, seg) in path.iter().enumerate() {
        node = match (seg, node) {
            (Seg::Key(k), Some(n)) => n.get(k),
            (Seg::Index(j), Some(n)) => n.get(j),
            (_, None) => None,
        };
        if node.is_none() {
            return dotted(&path[..=i]);
        }
    }
    dotted(path)
}

/// What is wrong with the door's answer to a document the CRD rejects, if anything.
fn check(original: &Value, doc: &Value, changed: &[&Mutation]) -> Option<String> {
    let extra = changed.iter().any(|m| m.extra);
    match crd_rejects(doc) {
        Err(disagreement) => return Some(disagreement),
        Ok(false) if !extra => return None,
        Ok(_) => {}
    }
    let paths: Vec<String> = changed.iter().map(|m| anchor(original, &m.path)).collect();
    match parse_document(doc.clone()) {
        Document::Invalid(errors) => {
            if errors
                .0
                .iter()
                .any(|e| paths.iter().any(|p| related(&e.path, p)))
            {
                None
            } else {
                Some(format!("rejected, but at no related path: {errors}"))
            }
        }
        other => Some(format!("the door accepted it: {other:?}")),
    }
}

#[test]
fn validate_rejects_everything_the_crd_rejects() {
    let chains = example_chains();
    assert!(chains.len() >= 5, "expected the example chains");
    let schema = openapi_schema();
    let mut cases: Vec<(usize, Vec<Mutation>)> = Vec::new();
    for (c, chain) in chains.iter().enumerate() {
        let mut single = Vec::new();
        mutations(Some(chain), &schema, &[], &mut single);
        cases.extend(single.into_iter().map(|m| (c, vec![m])));
    }
    // Pairs of mutations of the same chain, drawn deterministically, up to 10,000 cases in all.
    let singles = cases.clone();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as usize
    };
    let mut by_chain: Vec<Vec<&Mutation>> = vec![Vec::new(); chains.len()];
    for (c, m) in &singles {
        by_chain[*c].push(&m[0]);
    }
    while cases.len() < 10_000 {
        let (c, a) = &singles[next() % singles.len()];
        let b = by_chain[*c][next() % by_chain[*c].len()];
        cases.push((*c, vec![a[0].clone(), b.clone()]));
    }
    let failures: Vec<String> = std::thread::scope(|scope| {
        let halves: Vec<&[(usize, Vec<Mutation>)]> = {
            let (a, b) = cases.split_at(cases.len() / 2);
            vec![a, b]
        };
        let handles: Vec<_> = halves
            .into_iter()
            .map(|part| {
                let chains = &chains;
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for (c, ms) in part {
                        let mut doc = chains[*c].clone();
                        ms.iter().for_each(|m| apply(&mut doc, m));
                        let changed: Vec<&Mutation> = ms.iter().collect();
                        if let Some(problem) = check(&chains[*c], &doc, &changed) {
                            let what: Vec<String> = ms
                                .iter()
                                .map(|m| format!("{} = {:?}", dotted(&m.path), m.value))
                                .collect();
                            failures.push(format!("{}: {problem}", what.join(", ")));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    println!("{} mutations checked", cases.len());
    assert!(cases.len() >= 10_000);
    assert!(
        failures.is_empty(),
        "{} of {} mutations: the CRD rejects, the door does not (first 20):\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
