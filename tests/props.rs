//! Properties of the parser and checker: no input makes them panic, their output depends only
//! on the content of a topology (not on the order of its tables), and two runs agree.

mod common;

use apim_patterns::PATTERNS;
use proptest::prelude::*;
use proptest::sample::select;

/// Words of the format, so that generated input often reaches deep into the checker.
const VOCAB: &[&str] = &[
    "version",
    "deployment",
    "name",
    "pattern",
    "networks",
    "public",
    "firewall",
    "from",
    "to",
    "ports",
    "databases",
    "roles",
    "engine",
    "url",
    "network",
    "clusters",
    "components",
    "hosts",
    "load_balancers",
    "kind",
    "host",
    "fronts",
    "publisher",
    "store",
    "gateway",
    "key-manager",
    "user",
    "apim",
    "registry",
    "sqlite",
    "postgres",
    "mysql",
    "external",
    "internal",
    "admin",
    "10.0.1.11",
    "localhost",
    "127.0.0.1",
    "postgres://a@10.0.0.1:5432/x",
    "sqlite://a.db",
    "standalone",
    "clustered-internal",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![select(VOCAB).prop_map(String::from), "[a-z_-]{1,8}"]
}

fn value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        (0i64..70000).prop_map(toml::Value::Integer),
        any::<bool>().prop_map(toml::Value::Boolean),
        "[ -~]{0,12}".prop_map(toml::Value::String),
        select(VOCAB).prop_map(|s| toml::Value::String(s.into())),
        any::<f64>().prop_map(toml::Value::Float),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(toml::Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

fn toml_document() -> impl Strategy<Value = String> {
    proptest::collection::btree_map(key(), value(), 0..8).prop_map(|m| {
        let table: toml::Table = m.into_iter().collect();
        toml::to_string(&table).unwrap_or_default()
    })
}

/// A template with a few line-level edits: deleted, duplicated or swapped lines, changed bytes.
fn mutated_template() -> impl Strategy<Value = String> {
    let edits = proptest::collection::vec(
        (0u8..5, any::<usize>(), any::<usize>(), select(VOCAB)),
        1..6,
    );
    (
        select(PATTERNS.iter().map(|p| p.template).collect::<Vec<_>>()),
        edits,
    )
        .prop_map(|(template, edits)| {
            let mut lines: Vec<String> = template.lines().map(String::from).collect();
            for (op, a, b, word) in edits {
                if lines.is_empty() {
                    break;
                }
                let (i, j) = (a % lines.len(), b % lines.len());
                match op {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let l = lines[i].clone();
                        lines.insert(j, l);
                    }
                    2 => lines.swap(i, j),
                    3 => {
                        let l = &mut lines[i];
                        let at = (0..=l.len())
                            .rev()
                            .find(|&k| k <= b % (l.len() + 1) && l.is_char_boundary(k))
                            .unwrap_or(0);
                        l.insert_str(at, word);
                    }
                    _ => {
                        let l = &mut lines[i];
                        if let Some((k, q)) =
                            l.match_indices('"').nth(b % 4).map(|(k, q)| (k, q.len()))
                        {
                            l.replace_range(k..k + q, "");
                        }
                    }
                }
            }
            lines.join("\n")
        })
}

/// What a check reports, without positions: code, message and hint of each diagnostic.
fn content(text: &str) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<_> = common::load("t.toml", text.as_bytes())
        .diagnostics
        .into_iter()
        .map(|d| (d.code.id.to_string(), d.message, d.hint))
        .collect();
    out.sort();
    out
}

/// Splits a file into its top part and its `[table]` sections (comments go with the section above).
fn sections(text: &str) -> (String, Vec<String>) {
    let mut head = String::new();
    let mut sections: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            sections.push(String::new());
        }
        let target = sections.last_mut().unwrap_or(&mut head);
        target.push_str(line);
        target.push('\n');
    }
    (head, sections)
}

/// Valid templates and broken topologies alike: reordering must not change what is reported.
fn reorderable() -> Vec<String> {
    let mut files: Vec<String> = PATTERNS.iter().map(|p| p.template.to_string()).collect();
    for stem in [
        "store-cannot-reach-key-manager",
        "balancer-on-gateway-host",
        "role-served-twice",
        "sqlite-shared-across-hosts",
        "balancer-cannot-reach",
        "not-reachable-from-public",
    ] {
        let path = common::fixtures("check").join(format!("{stem}.toml"));
        files.push(std::fs::read_to_string(path).expect("fixture"));
    }
    files
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = common::load("t.toml", &bytes);
    }

    #[test]
    fn arbitrary_toml_never_panics(doc in toml_document()) {
        let c = common::load("t.toml", doc.as_bytes());
        let _ = common::report(&c);
    }

    #[test]
    fn mutated_templates_never_panic_and_check_the_same_twice(text in mutated_template()) {
        let a = common::load("t.toml", text.as_bytes());
        let b = common::load("t.toml", text.as_bytes());
        prop_assert_eq!(common::report(&a), common::report(&b));
        let _ = apim_topology::graph::dot(&a.topology);
        let _ = apim_topology::graph::mermaid(&a.topology);
        let _ = apim_patterns::recognise(&a.topology);
    }

    #[test]
    fn reordering_tables_changes_nothing_reported(
        (file, order) in select(reorderable()).prop_flat_map(|f| {
            let n = sections(&f).1.len();
            (Just(f), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        })
    ) {
        let (head, parts) = sections(&file);
        let shuffled: String = std::iter::once(head).chain(order.iter().map(|&i| parts[i].clone())).collect();
        prop_assert_eq!(content(&file), content(&shuffled));
        let a = apim_patterns::recognise(&common::load("a", file.as_bytes()).topology);
        let b = apim_patterns::recognise(&common::load("b", shuffled.as_bytes()).topology);
        prop_assert_eq!(a.pattern.id, b.pattern.id);
        prop_assert_eq!(a.differences, b.differences);
    }
}
