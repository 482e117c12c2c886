//! Reading a YAML stream into JSON values, about twice as fast as serde-saphyr for the plain manifests a
//! chain is (issue 14): the tree is built straight from the events of granit-parser, the parser serde-saphyr
//! itself uses, with the same parser options.
//!
//! Only what is plainly the same in both ways is read here: mappings of string keys, sequences, quoted and block
//! scalars (strings), plain scalars that are surely a string, a null, a boolean or a decimal integer. Anything else
//! — an anchor, an alias, a tag, a merge key, a duplicate key, a key that is not plainly a string, a float, a radix or
//! leading-zero number, a BOM, a parse error, a stream near one of serde-saphyr's budget limits — makes the
//! whole stream read again by serde-saphyr, so its typing, its limits and its messages (with line and column)
//! stay the only ones. `tests/yaml_same.rs` compares both ways on every example, fixture and a table of scalar
//! forms.

use granit_parser::{Event, Parser, ScalarStyle, StrInput};
use serde_json::{Map, Number, Value};

/// Every non-empty document of a YAML stream (empty and null documents are skipped, as serde-saphyr's
/// `from_multiple` does), or serde-saphyr's message.
pub fn read_stream(text: &str) -> Result<Vec<Value>, String> {
    if let Some(docs) = fast(text) {
        return Ok(docs);
    }
    slow(text)
}

/// The stream as serde-saphyr reads it, null documents removed.
pub fn slow(text: &str) -> Result<Vec<Value>, String> {
    let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    Ok(values.into_iter().filter(|v| !v.is_null()).collect())
}

// Well inside serde-saphyr's default budget (`serde_saphyr::Budget::default()`: 1,000,000 events, 250,000
// nodes, depth 64, 1,024 documents, 64 MiB of scalars): a stream that comes near is left to serde-saphyr.
const MAX_EVENTS: usize = 900_000;
const MAX_NODES: usize = 240_000;
const MAX_DEPTH: usize = 56;
const MAX_DOCUMENTS: usize = 1_000;
const MAX_SCALAR_BYTES: usize = 48 << 20;

/// The parser options serde-saphyr uses with its default budget (its `Budget::parser_options`).
fn parser_options() -> granit_parser::Options {
    let mut options = granit_parser::Options::default();
    options.simple_key_max_lookahead = 1024;
    options.flow_nesting_limit = 255;
    options.block_nesting_limit = options.block_nesting_limit.max(65);
    options.emit_comments = false;
    options
}

/// An open collection.
enum Open {
    Seq(Vec<Value>),
    /// A mapping, with the key read and waiting for its value.
    Map(Map<String, Value>, Option<String>),
}

/// The stream read straight from the parser's events, null documents removed; `None` when it is not one this
/// reader reads exactly as serde-saphyr does ([`read_stream`] then asks serde-saphyr).
pub fn fast(text: &str) -> Option<Vec<Value>> {
    // serde-saphyr has its own say on a byte-order mark inside a document.
    if text.contains('\u{feff}') {
        return None;
    }
    let mut parser = Parser::with_options(StrInput::new(text), parser_options());
    let mut docs = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let (mut events, mut nodes, mut documents, mut scalar_bytes) = (0usize, 0usize, 0usize, 0usize);
    while let Some(item) = parser.next_event() {
        let (event, _span) = item.ok()?;
        events += 1;
        if events > MAX_EVENTS {
            return None;
        }
        let value = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > MAX_DOCUMENTS {
                    return None;
                }
                continue;
            }
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                nodes += 1;
                scalar_bytes += text.len();
                if nodes > MAX_NODES || scalar_bytes > MAX_SCALAR_BYTES {
                    return None;
                }
                if let Some(Open::Map(_, key @ None)) = stack.last_mut() {
                    *key = Some(map_key(text, style)?);
                    continue;
                }
                scalar(text, style)?
            }
            Event::SequenceStart(_, anchor, ref tag) | Event::MappingStart(_, anchor, ref tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                // A collection as a key: not a JSON object key.
                if let Some(Open::Map(_, None)) = stack.last() {
                    return None;
                }
                nodes += 1;
                if nodes > MAX_NODES || stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Open::Seq(Vec::new())
                } else {
                    Open::Map(Map::new(), None)
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop()? {
                Open::Seq(items) => Value::Array(items),
                Open::Map(map, None) => Value::Object(map),
                Open::Map(_, Some(_)) => return None,
            },
            // Aliases (and whatever else the parser may report) are serde-saphyr's.
            _ => return None,
        };
        match stack.last_mut() {
            None => {
                if !value.is_null() {
                    docs.push(value);
                }
            }
            Some(Open::Seq(items)) => items.push(value),
            Some(Open::Map(map, key)) => {
                let key = key.take()?;
                // A duplicate key: serde-saphyr's error.
                if map.insert(key, value).is_some() {
                    return None;
                }
            }
        }
    }
    stack.is_empty().then_some(docs)
}

/// A mapping key: a quoted or block scalar as written, a plain one only when it is surely a string (`<<`, a
/// null, a bool or a number as a key are serde-saphyr's).
fn map_key(text: std::borrow::Cow<'_, str>, style: ScalarStyle) -> Option<String> {
    if style == ScalarStyle::Plain && !surely_string(&text) {
        return None;
    }
    Some(text.into_owned())
}

/// A value scalar typed as serde-saphyr types it for a `serde_json::Value` (YAML 1.2 core schema, with its
/// YAML 1.1 booleans), or `None` when it is not plainly one of the forms read here.
fn scalar(text: std::borrow::Cow<'_, str>, style: ScalarStyle) -> Option<Value> {
    if style != ScalarStyle::Plain {
        return Some(Value::String(text.into_owned()));
    }
    // serde-saphyr's nulls of an untagged plain scalar (its `scalar_is_nullish`); the parser gives an empty
    // node as `~`.
    if matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
        return Some(Value::Null);
    }
    if surely_string(&text) {
        return Some(Value::String(text.into_owned()));
    }
    if let Some(b) = yaml11_bool(&text) {
        return Some(Value::Bool(b));
    }
    decimal(&text)
}

/// serde-saphyr's booleans of an untagged plain scalar (`strict_booleans` is off by default: YAML 1.1's
/// words, any case; its `parse_yaml11_bool`).
fn yaml11_bool(text: &str) -> Option<bool> {
    let is = |words: [&str; 4]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
    if is(["true", "yes", "y", "on"]) {
        Some(true)
    } else if is(["false", "no", "n", "off"]) {
        Some(false)
    } else {
        None
    }
}

/// A plain scalar that serde-saphyr reads as a string whatever its schema options: it starts with an ASCII
/// letter, is none of the null and boolean words (YAML 1.1's included) nor a word Rust's float parser takes
/// (`inf`, `nan`, `infinity`), and has no `${` (property interpolation); or it starts with a digit and holds a
/// `/` or two dots (a CIDR, an address), which no number does.
fn surely_string(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    if text.contains("${") {
        return false;
    }
    if first.is_ascii_alphabetic() {
        let lower = text.to_ascii_lowercase();
        let special = matches!(
            lower.as_str(),
            "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
        ) || lower.starts_with("inf")
            || lower.starts_with("nan");
        return !special;
    }
    if first.is_ascii_digit() {
        return text.contains('/') || text.bytes().filter(|&b| b == b'.').count() >= 2;
    }
    false
}

/// `0`, or a decimal integer without a leading zero, sign or underscore that fits an `i64`/`u64`.
fn decimal(text: &str) -> Option<Value> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !ok || (negative && digits == "0") {
        return None;
    }
    if negative {
        text.parse::<i64>()
            .ok()
            .map(|n| Value::Number(Number::from(n)))
    } else {
        text.parse::<u64>()
            .ok()
            .map(|n| Value::Number(Number::from(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast reader and serde-saphyr agree on `text`; `fast` says whether the fast path must take it.
    fn same(text: &str) -> bool {
        let slow = slow(text);
        match fast(text) {
            Some(docs) => {
                assert_eq!(Ok(docs), slow, "{text:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn scalar_forms_are_typed_as_serde_saphyr_types_them() {
        let forms = [
            "",
            "~",
            "null",
            "Null",
            "NULL",
            "nULL",
            "true",
            "True",
            "TRUE",
            "tRUE",
            "false",
            "False",
            "yes",
            "Yes",
            "YES",
            "no",
            "No",
            "NO",
            "on",
            "On",
            "ON",
            "off",
            "Off",
            "OFF",
            "y",
            "Y",
            "n",
            "N",
            "0",
            "-0",
            "+0",
            "1",
            "-1",
            "+1",
            "007",
            "-007",
            "0x1F",
            "0X1F",
            "0o17",
            "0O17",
            "0b101",
            "0B101",
            "1_000",
            "1,000",
            "12e3",
            "1e999",
            "-1e999",
            "1.5",
            "-1.5",
            "+1.5",
            ".5",
            "5.",
            "1.2.3",
            "10.0.0.0/24",
            "10.0.0.1",
            "2001:db8::/64",
            "2001:db8::1",
            "::1",
            "fe80::1%eth0",
            ".inf",
            ".Inf",
            ".INF",
            "-.inf",
            "+.inf",
            ".nan",
            ".NaN",
            ".NAN",
            "-.nan",
            "inf",
            "Inf",
            "infinity",
            "Infinity",
            "-inf",
            "nan",
            "NaN",
            "190:20:30",
            "1:20",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "9223372036854775807",
            "2026-12-05",
            "2026-12-05T16:00:00Z",
            "12:30",
            "allow",
            "deny",
            "tcp",
            "udp",
            "icmp",
            "e5",
            "E5",
            "x",
            "a b",
            "a  b",
            "a-b",
            "a_b",
            "a.b",
            "a/b",
            "a:b",
            "a#b",
            "a'b",
            "a\"b",
            "$x",
            "${x}",
            "a${x}",
            "@x",
            "`x",
            "%x",
            "!x",
            "&x",
            "*x",
            "<<",
            "=",
            "-",
            "--",
            "---x",
            "?x",
            "|x",
            ">x",
            "é",
            "日本",
            "0.0.0.0/0",
            "::/0",
            "1/2",
            "1 2",
            "1e5",
            "1E5",
            "1.0e5",
            "-1e-5",
            "0.1",
            "00",
            "0_0",
            "+",
            "+a",
            "-a",
            ".a",
            "..",
            "...x",
            "true false",
            "null x",
            "yes please",
            "Yesterday",
            "nono",
            "onward",
            "offset",
            "nat",
            "information",
            "none",
            "None",
            "NONE",
            "nil",
            "undefined",
        ];
        let mut taken = 0;
        for form in forms {
            for text in [
                format!("k: {form}\n"),
                format!("- {form}\n"),
                format!("{form}: v\n"),
                format!("k: '{}'\n", form.replace('\'', "''")),
                format!("k: [{form}]\n"),
                format!("k: {{a: {form}}}\n"),
            ] {
                // A form that is not valid YAML in a position must be an error both ways.
                if same(&text) {
                    taken += 1;
                }
            }
        }
        // The fast path is not just always declining.
        assert!(taken > 300, "fast path took {taken}");
    }

    #[test]
    fn what_the_fast_path_declines_serde_saphyr_decides() {
        for text in [
            "a: 1\na: 2\n",
            "a: &x {b: 1}\nc: *x\n",
            "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n",
            "a: !!str 1\n",
            "? [a]\n: 1\n",
            "a: [1, 2\n",
            "a:\n\t- 1\n",
            "\u{feff}a: 1\n",
            "a: 1\n---\nb: [\n",
        ] {
            assert!(!same(text), "{text:?} should be left to serde-saphyr");
        }
        // Streams: empty and null documents skipped as serde-saphyr skips them.
        for text in [
            "",
            "---\n",
            "---\n---\na: 1\n---\n~\n---\nnull\n...\n---\nb: 2\n",
            "a: 1\n...\n",
            "- 1\n- [2, [3, {x: z}]]\n",
            "a: |\n  line\n  two\nb: >\n  folded\n  text\nc: \"q\\n\\u00e9\"\n",
            "a:\nb: ''\nc: \"\"\n",
        ] {
            assert!(same(text), "{text:?} should be read by the fast path");
        }
    }

    #[test]
    fn the_budget_is_serde_saphyrs() {
        // An alias bomb is refused by serde-saphyr, not expanded here.
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(fast(&bomb).is_none());
        assert!(read_stream(&bomb).is_err());
        // Too deep: serde-saphyr's depth limit.
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        assert!(fast(&deep).is_none());
        assert_eq!(read_stream(&deep), slow(&deep));
        assert!(slow(&deep).is_err());
        // Too many documents.
        let many = "---\na: 1\n".repeat(1_100);
        assert!(fast(&many).is_none());
        assert_eq!(read_stream(&many), slow(&many));
    }
}
