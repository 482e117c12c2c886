//! The CRD's CEL rules fit the API server's cost budget, estimated the way the API server estimates them.
//!
//! This is a *model* of upstream behaviour (no kube-apiserver runs in CI); it reproduces, for the constructs our
//! rules use, how a CRD's rules are costed when the CRD is created or updated:
//!
//! - The static cost of one rule is cel-go's estimate (`checker/cost.go` in <https://github.com/google/cel-go>:
//!   an identifier or a field of an object costs 1, a constant 0, a list literal 10 plus its items, `&&`/`||`
//!   the sum of both sides, `?:` the condition plus the dearer branch, `in` the size of the list, `==`/`!=` and
//!   string comparisons a tenth of the smaller operand's size (rounded up), other calls 1; a comprehension
//!   (`all`, `exists`, `filter`, ...) costs its range, init and result plus *size of the range × (loop
//!   condition + step)*).
//! - The sizes cel-go is given for schema values come from Kubernetes' `SchemaDeclType`
//!   (`staging/src/k8s.io/apiserver/pkg/cel/common/schemas.go` in <https://github.com/kubernetes/kubernetes>):
//!   a list's size is its `maxItems`, a map's its `maxProperties`, a string's 4 × `maxLength` (bytes per code
//!   point), else the length of its longest `enum` value, else the request size limit (3 MiB).
//! - The CRD check (`staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation/validation.go`,
//!   `getExpressionCost`, with the rules compiled by
//!   `staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/compilation.go`) multiplies each rule's
//!   cost by the product of `maxItems`/`maxProperties` of every list and map above it, refuses a rule over
//!   `StaticEstimatedCostLimit` (10,000,000) and a CRD whose rules add up to more than
//!   `StaticEstimatedCRDCostLimit` (100,000,000). The Kubernetes documentation describes the same budget:
//!   <https://kubernetes.io/docs/reference/using-api/cel/#resource-constraints> and
//!   <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#resource-use-by-validation-functions>.
//!
//! Calibration: a real kube-apiserver v1.36 refused the port-range rule `!has(self.to) || self.to >= self.from`
//! under functions (16) × rules (10,000) × port ranges (16) with "estimated rule cost exceeds budget by factor of
//! 1.8x" (issue 12). The model gives 7 × 2,560,000 = 17,920,000, i.e. 1.792x; that figure also settles a version
//! difference: a presence test (`has()`) costs 0 there (cel-go's `PresenceTestHasCost(false)`), not 1 (which
//! would give 2.0x). The test below keeps that calibration.
//!
//! The test fails at half of either budget, so a small difference between this model and a given API server
//! version cannot make the CRD refused. A construct the model does not know (a function, a map literal, ...)
//! fails the test rather than being guessed: extend the model from cel-go before using it in a rule.

mod support;

use kube::core::cel::cel::Program;
use kube::core::cel::cel::common::ast::{CallExpr, ComprehensionExpr, Expr, LiteralValue};
use serde_json::{Value, json};
use support::openapi_schema;

/// `StaticEstimatedCostLimit`: the most one rule may cost, its cost multiplied by its cardinality.
const PER_RULE_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: the most all rules of a CRD may cost together.
const CRD_LIMIT: u64 = 100_000_000;
/// `DefaultMaxRequestSizeBytes`: the size of a value nothing bounds.
const MAX_REQUEST_SIZE: u64 = 3 * 1024 * 1024;
/// cel-go `common.SelectAndIdentCost`.
const SELECT_AND_IDENT: u64 = 1;
/// cel-go `common.ListCreateBaseCost`.
const LIST_CREATE: u64 = 10;
/// cel-go `common.StringTraversalCostFactor`.
const STRING_TRAVERSAL: f64 = 0.1;
/// The presence test's cost on the API server (see the calibration above).
const PRESENCE_TEST: u64 = 0;

/// What the model knows of a value: the schema node it comes from, or the kind of a literal or result.
#[derive(Clone, Debug)]
enum Ty<'s> {
    /// A value of the object, reached from `self` through this schema node.
    Node(&'s Value),
    /// int, uint, double, bool or null: size 1.
    Scalar,
    /// A string literal of this many characters.
    Str(u64),
    /// A list of at most `size` items.
    List { size: u64, item: Box<Ty<'s>> },
    /// Nothing known (its size is unbounded).
    Dyn,
}

fn add(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

/// cel-go `multiplyByCostFactor`: rounded up, saturating.
fn traversal(size: u64) -> u64 {
    if size == u64::MAX {
        return u64::MAX;
    }
    (size as f64 * STRING_TRAVERSAL).ceil() as u64
}

fn node_type(n: &Value) -> &str {
    n.get("type").and_then(Value::as_str).unwrap_or("")
}

fn bound(n: &Value, key: &str) -> Option<u64> {
    n.get(key).and_then(Value::as_u64)
}

impl Ty<'_> {
    /// The size cel-go is given (`SchemaDeclType`'s `MaxElements`, or the literal's), `None` when unknown.
    fn size(&self) -> Option<u64> {
        match self {
            Ty::Scalar => Some(1),
            Ty::Str(n) => Some(*n),
            Ty::List { size, .. } => Some(*size),
            Ty::Dyn => None,
            Ty::Node(n) => {
                let int_or_string = n.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
                match node_type(n) {
                    "integer" | "number" | "boolean" if !int_or_string => Some(1),
                    "string" | "" if int_or_string || node_type(n) == "string" => {
                        if let Some(max) = bound(n, "maxLength") {
                            Some(max.saturating_mul(4))
                        } else if let Some(e) = n.get("enum").and_then(Value::as_array) {
                            e.iter()
                                .filter_map(Value::as_str)
                                .map(|s| s.len() as u64)
                                .max()
                        } else {
                            Some(MAX_REQUEST_SIZE - 2)
                        }
                    }
                    // Unbounded lists and maps are estimated from the request size upstream: bigger than
                    // any bound we would accept, and every list above a rule must have maxItems anyway.
                    "array" => Some(bound(n, "maxItems").unwrap_or(MAX_REQUEST_SIZE)),
                    "object" if n.get("additionalProperties").is_some_and(Value::is_object) => {
                        Some(bound(n, "maxProperties").unwrap_or(MAX_REQUEST_SIZE))
                    }
                    _ => None,
                }
            }
        }
    }

    fn size_or_unknown(&self) -> u64 {
        self.size().unwrap_or(u64::MAX)
    }

    fn is_string(&self) -> bool {
        matches!(self, Ty::Str(_)) || matches!(self, Ty::Node(n) if node_type(n) == "string")
    }

    fn is_list(&self) -> bool {
        matches!(self, Ty::List { .. }) || matches!(self, Ty::Node(n) if node_type(n) == "array")
    }

    /// Whether selecting a field costs 1 (cel-go: map, struct and type-parameter kinds).
    fn selecting_costs(&self) -> bool {
        matches!(self, Ty::Dyn) || matches!(self, Ty::Node(n) if node_type(n) == "object")
    }
}

/// The value of `field` of `ty`.
fn field<'s>(ty: &Ty<'s>, name: &str) -> Ty<'s> {
    match ty {
        Ty::Node(n) => {
            if let Some(p) = n.get("properties").and_then(|p| p.get(name)) {
                Ty::Node(p)
            } else if let Some(v) = n.get("additionalProperties").filter(|v| v.is_object()) {
                Ty::Node(v)
            } else {
                panic!("the schema has no field {name:?} here: {n}")
            }
        }
        Ty::Dyn => Ty::Dyn,
        other => panic!("cannot select {name:?} of {other:?}"),
    }
}

/// An item of a list (what an index or a comprehension's variable gives).
fn item<'s>(ty: &Ty<'s>) -> Ty<'s> {
    match ty {
        Ty::Node(n) if node_type(n) == "array" => n.get("items").map_or(Ty::Dyn, Ty::Node),
        Ty::Node(n) => n
            .get("additionalProperties")
            .filter(|v| v.is_object())
            .map_or(Ty::Dyn, Ty::Node),
        Ty::List { item, .. } => (**item).clone(),
        _ => Ty::Dyn,
    }
}

fn literal<'s>(l: &LiteralValue) -> Ty<'s> {
    match l {
        LiteralValue::String(s) => Ty::Str(s.inner().chars().count() as u64),
        LiteralValue::Bytes(b) => Ty::Str(b.inner().len() as u64),
        _ => Ty::Scalar,
    }
}

/// cel-go's static cost estimator over one rule, with `self` bound to a schema node.
struct Model<'s> {
    vars: Vec<(String, Ty<'s>)>,
}

impl<'s> Model<'s> {
    fn lookup(&self, name: &str) -> Ty<'s> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("unknown identifier {name:?}"))
    }

    fn cost(&mut self, e: &Expr) -> (u64, Ty<'s>) {
        match e {
            Expr::Literal(l) => (0, literal(l)),
            Expr::Ident(name) => (SELECT_AND_IDENT, self.lookup(name)),
            Expr::Select(s) => {
                let (c, operand) = self.cost(&s.operand.expr);
                if s.test {
                    (add(PRESENCE_TEST, c), Ty::Scalar)
                } else {
                    let own = if operand.selecting_costs() {
                        SELECT_AND_IDENT
                    } else {
                        0
                    };
                    (add(c, own), field(&operand, &s.field))
                }
            }
            Expr::List(l) => {
                let mut sum = LIST_CREATE;
                let mut items = Ty::Dyn;
                for el in &l.elements {
                    let (c, t) = self.cost(&el.expr);
                    sum = add(sum, c);
                    items = t;
                }
                let size = l.elements.len() as u64;
                (
                    sum,
                    Ty::List {
                        size,
                        item: Box::new(items),
                    },
                )
            }
            Expr::Call(call) => self.call(call),
            Expr::Comprehension(c) => self.comprehension(c),
            other => panic!("the cost model does not know {other:?}; extend it from cel-go"),
        }
    }

    fn call(&mut self, call: &CallExpr) -> (u64, Ty<'s>) {
        let target = call.target.as_ref().map(|t| self.cost(&t.expr));
        let args: Vec<(u64, Ty<'s>)> = call.args.iter().map(|a| self.cost(&a.expr)).collect();
        let arg_sum = args.iter().fold(0, |s, (c, _)| add(s, *c));
        let arg = |i: usize| &args[i].1;
        let (own, ty) = match call.func_name.as_str() {
            // Short-circuit operators cost their operands only.
            "_&&_" | "_||_" => (arg_sum, Ty::Scalar),
            "_?_:_" => {
                let dearer = args[1].0.max(args[2].0);
                let ty = if arg(1).size_or_unknown() >= arg(2).size_or_unknown() {
                    arg(1).clone()
                } else {
                    arg(2).clone()
                };
                (add(args[0].0, dearer), ty)
            }
            "@in" => (add(arg(1).size_or_unknown(), arg_sum), Ty::Scalar),
            "_==_" | "_!=_" => (equality(arg(0), arg(1), arg_sum), Ty::Scalar),
            "_<_" | "_<=_" | "_>_" | "_>=_" if arg(0).is_string() || arg(1).is_string() => {
                (equality(arg(0), arg(1), arg_sum), Ty::Scalar)
            }
            "_+_" if arg(0).is_list() => {
                let size = add(arg(0).size_or_unknown(), arg(1).size_or_unknown());
                let list = Ty::List {
                    size,
                    item: Box::new(item(arg(0))),
                };
                (add(1, arg_sum), list) // list concatenation is O(1)
            }
            "_+_" if arg(0).is_string() => {
                let size = add(arg(0).size_or_unknown(), arg(1).size_or_unknown());
                (add(traversal(size), arg_sum), Ty::Str(size))
            }
            "_[_]" => (add(1, arg_sum), item(arg(0))),
            "size"
            | "!_"
            | "-_"
            | "_+_"
            | "_-_"
            | "_*_"
            | "_/_"
            | "_%_"
            | "_<_"
            | "_<=_"
            | "_>_"
            | "_>=_"
            | "@not_strictly_false" => (add(1, arg_sum), Ty::Scalar),
            other => {
                panic!("the cost model does not know function {other:?}; extend it from cel-go")
            }
        };
        (add(target.map_or(0, |(c, _)| c), own), ty)
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> (u64, Ty<'s>) {
        assert!(
            c.iter_var2.is_none(),
            "two-variable comprehensions are not modelled"
        );
        let (range_cost, range) = self.cost(&c.iter_range.expr);
        let (init_cost, init) = self.cost(&c.accu_init.expr);
        self.vars.push((c.accu_var.clone(), init.clone()));
        self.vars.push((c.iter_var.clone(), item(&range)));
        let (loop_cost, _) = self.cost(&c.loop_cond.expr);
        let (step_cost, _) = self.cost(&c.loop_step.expr);
        self.vars.pop();
        let (result_cost, _) = self.cost(&c.result.expr);
        self.vars.pop();
        let count = range.size_or_unknown();
        let per_item = add(step_cost, loop_cost);
        let total = add(
            add(add(range_cost, init_cost), result_cost),
            count.saturating_mul(per_item),
        );
        let ty = match init {
            Ty::List { .. } => Ty::List {
                size: count,
                item: Box::new(item(&range)),
            },
            other => other,
        };
        (total, ty)
    }
}

/// cel-go's cost of `==`, `!=` and string ordering: a tenth of the smaller size, plus the operands.
fn equality(a: &Ty, b: &Ty, arg_sum: u64) -> u64 {
    let smallest = a.size_or_unknown().min(b.size_or_unknown());
    add(traversal(smallest), arg_sum)
}

/// The static cost of `rule` with `self` bound to `node` (cel-go `EstimateCost(...).Max`).
fn rule_cost(rule: &str, node: &Value) -> u64 {
    let program = Program::compile(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
    let mut model = Model {
        vars: vec![("self".into(), Ty::Node(node))],
    };
    model.cost(&program.expression().expr).0
}

/// One rule of the CRD and what the API server makes of it.
struct Estimate {
    path: String,
    rule: String,
    cost: u64,
    cardinality: u64,
}

impl Estimate {
    fn total(&self) -> u64 {
        self.cost.saturating_mul(self.cardinality)
    }
}

/// Every rule of the schema, with its cardinality: the product of the bounds of the lists and maps above it.
fn estimates(node: &Value, path: &str, cardinality: u64, out: &mut Vec<Estimate>) {
    for r in node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
        out.push(Estimate {
            path: path.to_string(),
            rule: rule.to_string(),
            cost: rule_cost(rule, node),
            cardinality,
        });
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            estimates(v, &child, cardinality, out);
        }
    }
    let children = [
        ("items", "maxItems", "[]"),
        ("additionalProperties", "maxProperties", "{}"),
    ];
    for (key, limit, suffix) in children {
        if let Some(child) = node.get(key).filter(|c| c.is_object()) {
            let child_path = format!("{path}{suffix}");
            let mut below = Vec::new();
            let n = bound(node, limit).unwrap_or(MAX_REQUEST_SIZE);
            estimates(
                child,
                &child_path,
                cardinality.saturating_mul(n),
                &mut below,
            );
            if let Some(e) = below.first() {
                assert!(
                    bound(node, limit).is_some(),
                    "{path}: {limit} is missing above the CEL rule at {}: the API server then assumes the request size",
                    e.path
                );
            }
            out.extend(below);
        }
    }
}

/// The root as the API server's CEL sees it: `apiVersion`, `kind`, `metadata.name` and `metadata.generateName`
/// (unbounded strings) are always there (`WithTypeAndObjectMeta`).
fn resource_root(mut schema: Value) -> Value {
    let string = json!({"type": "string"});
    let props = schema
        .as_object_mut()
        .and_then(|m| {
            m.entry("properties")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        })
        .expect("the root is an object");
    props.insert("apiVersion".into(), string.clone());
    props.insert("kind".into(), string.clone());
    props.insert(
        "metadata".into(),
        json!({"type": "object", "properties": {"name": string, "generateName": string}}),
    );
    schema
}

fn crd_estimates() -> Vec<Estimate> {
    let root = resource_root(openapi_schema());
    let mut out = Vec::new();
    estimates(&root, "", 1, &mut out);
    out
}

#[test]
fn every_cel_rule_fits_half_of_the_api_servers_budget() {
    let all = crd_estimates();
    assert!(
        all.len() >= 15,
        "expected the chain's CEL rules, found {}",
        all.len()
    );
    let mut report = String::new();
    let mut over = Vec::new();
    for e in &all {
        let line = format!(
            "{:>10} = {:>4} × {:>8}  ({:>5.1}% of {PER_RULE_LIMIT})  {}: {}\n",
            e.total(),
            e.cost,
            e.cardinality,
            e.total() as f64 * 100.0 / PER_RULE_LIMIT as f64,
            if e.path.is_empty() { "(root)" } else { &e.path },
            e.rule
        );
        report.push_str(&line);
        if e.total() > PER_RULE_LIMIT / 2 {
            over.push(line);
        }
    }
    let sum = all.iter().fold(0u64, |s, e| s.saturating_add(e.total()));
    report.push_str(&format!(
        "{sum:>10} in all ({:.1}% of {CRD_LIMIT})\n",
        sum as f64 * 100.0 / CRD_LIMIT as f64
    ));
    // Printed with `cargo test -p buildvnf-crds --test cel_cost -- --nocapture`.
    println!("estimated CEL cost per rule (cost × cardinality):\n{report}");
    assert!(
        over.is_empty(),
        "rules over half of the API server's per-rule budget (lower the maxItems/maxLength above them):\n{}",
        over.concat()
    );
    assert!(
        sum <= CRD_LIMIT / 2,
        "the CRD's rules together cost {sum}, over half of the API server's {CRD_LIMIT}"
    );
}

/// The API server's words for an estimate over the budget (`getCostErrorMessage`).
fn factor(cost: u64, limit: u64) -> String {
    format!("{:.1}x", cost as f64 / limit as f64)
}

#[test]
fn the_model_reproduces_the_refusal_a_real_api_server_gave() {
    let schema = openapi_schema();
    let port_range = &schema["properties"]["spec"]["properties"]["classifier"]["properties"]["sourcePorts"]
        ["items"];
    let rule = "!has(self.to) || self.to >= self.from";
    let cost = rule_cost(rule, port_range);
    assert_eq!(cost, 7, "cost of {rule:?}");
    // Issue 12: functions 16 × rules 10,000 × port ranges 16 was refused "by factor of 1.8x".
    let refused = cost * 16 * 10_000 * 16;
    assert!(refused > PER_RULE_LIMIT);
    assert_eq!(factor(refused, PER_RULE_LIMIT), "1.8x");
}

#[test]
fn the_model_costs_comprehensions_by_the_size_of_their_range() {
    let list = |max: u64| {
        json!({"type": "object", "properties": {"items": {"type": "array", "maxItems": max,
            "items": {"type": "string", "maxLength": 10}}}})
    };
    let rule = "self.items.all(x, x == 'abc')";
    // range 2 + init 0 + result 1 + n × (loop condition 2 + step (accu 1 + (x 1 + ceil(min(40, 3)/10) 1)))
    assert_eq!(rule_cost(rule, &list(10)), 3 + 10 * 5);
    assert_eq!(rule_cost(rule, &list(1000)), 3 + 1000 * 5);
    // Comparing two bounded strings costs a tenth of the shorter one's bytes (4 per character).
    let pair = json!({"type": "object", "properties": {
        "a": {"type": "string", "maxLength": 63}, "b": {"type": "string", "maxLength": 100}}});
    assert_eq!(rule_cost("self.a == self.b", &pair), 26 + 2 + 2);
    // An unbounded string is as long as a request.
    let open =
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}});
    assert_eq!(
        rule_cost("self.a == self.b", &open),
        traversal(MAX_REQUEST_SIZE - 2) + 4
    );
}

#[test]
fn list_bounds_in_the_schema_are_the_published_limits() {
    let schema = openapi_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let function = &spec["functions"]["items"]["properties"];
    let rule = &function["firewall"]["properties"]["rules"];
    let cases = [
        ("spec.functions", &spec["functions"], crds::MAX_FUNCTIONS),
        ("firewall.rules", rule, crds::MAX_FIREWALL_RULES),
        (
            "rules[].sourcePorts",
            &rule["items"]["properties"]["sourcePorts"],
            crds::MAX_PORT_RANGES,
        ),
        (
            "rules[].destinationPorts",
            &rule["items"]["properties"]["destinationPorts"],
            crds::MAX_PORT_RANGES,
        ),
        (
            "rules[].sourceCIDRs",
            &rule["items"]["properties"]["sourceCIDRs"],
            crds::MAX_PREFIXES,
        ),
        (
            "classifier.destinationCIDRs",
            &spec["classifier"]["properties"]["destinationCIDRs"],
            crds::MAX_PREFIXES,
        ),
    ];
    for (name, node, limit) in cases {
        assert_eq!(
            bound(node, "maxItems"),
            Some(limit as u64),
            "{name}: the schema's maxItems and the constant differ"
        );
    }
}
