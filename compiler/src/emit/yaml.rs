//! A small YAML writer for JSON values: block style, keys in the value's order, every string
//! double-quoted (valid YAML, and never mistaken for a number or a boolean).

use serde_json::{Map, Value};

/// One YAML document, without the leading `---`.
pub fn document(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(map) if !map.is_empty() => object(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => array(&mut out, items, 0),
        other => {
            scalar(&mut out, other);
            out.push('\n');
        }
    }
    out
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn scalar(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => quoted(out, s),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn quoted(out: &mut String, s: &str) {
    if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        out.push_str(&Value::String(s.to_string()).to_string());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Keys stay plain when YAML cannot misread them; otherwise they are quoted.
fn key(out: &mut String, k: &str) {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !k.starts_with(|c: char| c.is_ascii_digit() || c == '-')
        && !["y", "n", "yes", "no", "true", "false", "on", "off", "null"]
            .contains(&k.to_ascii_lowercase().as_str());
    if plain {
        out.push_str(k);
    } else {
        quoted(out, k);
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A mapping at `indent`; with `inline_first`, the first key continues a `- ` already written.
fn object(out: &mut String, map: &Map<String, Value>, indent: usize, inline_first: bool) {
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        key(out, k);
        out.push(':');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                object(out, m, indent + 2, false);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                array(out, items, indent);
            }
            other => {
                out.push(' ');
                scalar(out, other);
                out.push('\n');
            }
        }
    }
}

fn array(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match item {
            Value::Object(m) if is_block(item) => object(out, m, indent + 2, true),
            Value::Array(a) if is_block(item) => {
                out.push('\n');
                array(out, a, indent + 2);
            }
            other => {
                scalar(out, other);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn writes_nested_maps_and_lists() {
        let v = json!({"a": {"b": [1, {"c": "x", "d": []}, [2]], "e": "true", "y": "q\"uote"}});
        assert_eq!(
            super::document(&v),
            "a:\n  b:\n  - 1\n  - c: \"x\"\n    d: []\n  - \n    - 2\n  e: \"true\"\n  \"y\": \"q\\\"uote\"\n"
        );
    }
}
