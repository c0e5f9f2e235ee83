//! A small YAML writer for JSON values: block style, keys in insertion order, every string
//! double-quoted (valid YAML, and never mistaken for a number or a boolean).

use serde_json::Value;

/// One YAML document, without the leading `---`.
pub fn document(v: &Value) -> String {
    let mut out = String::new();
    write(&mut out, v, 0);
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(Value::String(s.clone()).to_string()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// Keys stay plain when YAML cannot misread them; otherwise they are quoted.
fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !k.starts_with(|c: char| c.is_ascii_digit() || c == '-')
        && !["y", "n", "yes", "no", "true", "false", "on", "off", "null"]
            .contains(&k.to_ascii_lowercase().as_str());
    if plain {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

fn write(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                let key = key(k);
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}{key}: {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        let child = if item.is_array() { indent } else { indent + 2 };
                        write(out, item, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The first line of a nested block goes after the dash.
                        let mut inner = String::new();
                        write(&mut inner, item, indent + 2);
                        let inner = inner
                            .strip_prefix(&" ".repeat(indent + 2))
                            .unwrap_or(&inner);
                        out.push_str(&format!("{pad}- {inner}"));
                    }
                }
            }
        }
        other => {
            out.push_str(&format!("{pad}{}\n", scalar(other).unwrap_or_default()));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn writes_nested_maps_and_lists() {
        let v = json!({"a": {"b": [1, {"c": "x", "d": []}], "e": "true"}});
        assert_eq!(
            super::document(&v),
            "a:\n  b:\n  - 1\n  - c: \"x\"\n    d: []\n  e: \"true\"\n"
        );
    }
}
