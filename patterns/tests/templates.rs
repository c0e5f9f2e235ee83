//! The templates: each checks without errors and is recognised as its own pattern; each,
//! broken in one place, yields exactly the error that place deserves.

use apim_patterns::{PATTERNS, find, recognise};
use apim_topology::Checked;

fn checked(name: &str, text: &str) -> Checked {
    let mut c = apim_topology::check_str(name, text);
    let more = apim_patterns::check(&c.topology);
    c.extend(more);
    c
}

/// The distinct error codes, in report order.
fn error_codes(c: &Checked) -> Vec<&'static str> {
    let mut codes: Vec<&str> = Vec::new();
    for d in c.diagnostics.iter().filter(|d| d.is_error()) {
        if !codes.contains(&d.code.id) {
            codes.push(d.code.id);
        }
    }
    codes
}

#[test]
fn every_template_checks_clean_and_is_its_own_pattern() {
    for p in PATTERNS {
        let c = checked(p.id, p.template);
        assert_eq!(error_codes(&c), Vec::<&str>::new(), "{} has errors", p.id);
        let r = recognise(&c.topology);
        assert_eq!(r.pattern.id, p.id);
        assert!(r.matches(), "{}: {:?}", p.id, r.differences);
        assert_eq!(
            c.topology
                .deployment
                .pattern
                .as_ref()
                .map(|s| s.value.as_str()),
            Some(p.id)
        );
    }
}

#[test]
fn warnings_of_the_templates_are_the_single_points_of_failure_they_have() {
    let mut out = String::new();
    for p in PATTERNS {
        let c = checked(p.id, p.template);
        out.push_str(&format!("{}:\n", p.id));
        for d in &c.diagnostics {
            out.push_str(&format!("  {} {}\n", d.code.id, d.message));
        }
    }
    insta::assert_snapshot!(out);
}

/// (pattern, text to replace, replacement, the one error code expected)
const MUTATIONS: &[(&str, &str, &str, &str)] = &[
    ("standalone", "version = 1", "version = 2", "E007"),
    (
        "standalone",
        r#"roles = ["user", "apim", "registry"]"#,
        r#"roles = ["user", "apim"]"#,
        "E021",
    ),
    (
        "standalone",
        r#"network = "internal""#,
        r#"network = "intranet""#,
        "E006",
    ),
    (
        "standalone",
        r#"hosts = ["10.0.1.10"]"#,
        r#"hosts = ["10.0.1.10"]
ports = { store = 9443 }"#,
        "E030",
    ),
    (
        "internal-store",
        r#"fronts = ["portal", "gateway"]"#,
        r#"fronts = ["portal"]"#,
        "E050",
    ),
    (
        "internal-store",
        r#"roles = ["apim"]"#,
        r#"roles = ["apim", "user"]"#,
        "E022",
    ),
    (
        "internal-store",
        r#"engine = "postgres""#,
        r#"engine = "postgress""#,
        "E008",
    ),
    (
        "external-store",
        "ports = [9446, 5432]",
        "ports = [5432]",
        "E040",
    ),
    (
        "external-store",
        "ports = [8280, 9090]",
        "ports = [8280]",
        "E041",
    ),
    (
        "external-store",
        "from = \"store\"",
        "from = \"external\"",
        "E043",
    ),
    (
        "clustered-internal",
        "[networks.internal]",
        "[networks.internal]\n[networks.internet]\npublic = true",
        "E042",
    ),
    (
        "clustered-internal",
        r#"hosts = ["10.0.4.11", "10.0.4.12"]"#,
        r#"hosts = ["10.0.4.11", "10.0.1.11"]"#,
        "E030",
    ),
    (
        "clustered-internal",
        r#"hosts = ["10.0.2.11", "10.0.2.12"]"#,
        r#"hosts = ["10.0.2.11"]"#,
        "E061",
    ),
    (
        "clustered-internal",
        "[networks.internal]",
        "[networks.internal]\npublic = true",
        "E061",
    ),
    (
        "clustered-external-store",
        r#"url = "postgres://apim:${APIM_DB_PASSWORD}@10.0.9.11:5432/apim""#,
        r#"url = "mysql://apim@10.0.9.11/apim""#,
        "E011",
    ),
    (
        "clustered-external-store",
        r#"[load_balancers.km]"#,
        r#"[load_balancers.km]
hsot = "x""#,
        "E002",
    ),
    (
        "clustered-external-store",
        r#"fronts = ["key-manager"]"#,
        r#"fronts = ["key-manager", "key-manager"]"#,
        "E012",
    ),
];

#[test]
fn each_template_broken_in_one_place_gives_exactly_that_error() {
    for &(pattern, from, to, code) in MUTATIONS {
        let template = find(pattern).expect("pattern").template;
        assert!(
            template.contains(from),
            "{pattern}: `{from}` not in the template"
        );
        let mutated = template.replacen(from, to, 1);
        let c = checked(pattern, &mutated);
        assert_eq!(error_codes(&c), vec![code], "{pattern} with `{to}`");
    }
}
