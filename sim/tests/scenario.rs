//! Scenario files: every mistake is a diagnostic with a code, a place and a hint.

use apim_compiler::plan::Plan;
use apim_sim::scenario::{self, FaultKind};
use apim_topology::{SourceFile, render};

fn plan() -> Plan {
    let p = apim_patterns::find("clustered-external-store").expect("pattern");
    Plan::of(&apim_topology::check_str("t.toml", p.template).topology)
}

fn diagnose(text: &str) -> String {
    let source = SourceFile::new("scenario.toml", text);
    match scenario::parse(&source, &plan()) {
        Ok(s) => panic!("parsed: {s:?}"),
        Err(d) => render::human(&source, &d, false),
    }
}

fn codes(text: &str) -> Vec<&'static str> {
    let source = SourceFile::new("scenario.toml", text);
    scenario::parse(&source, &plan())
        .err()
        .unwrap_or_default()
        .iter()
        .map(|d| d.code.id)
        .collect()
}

#[test]
fn a_good_scenario_reads_with_every_fault_kind() {
    let text = r#"
[workload]
duration = "2m"
invoke_rate = 500
revocation_bound = "500ms"

[[faults]]
kind = "crash"
node = "gateway-1"
at = "30s"
for = "20s"

[[faults]]
kind = "partition"
from = "external"
to = "internal"
one_way = true
at = "10s"

[[faults]]
kind = "loss"
from = "internal"
to = "internal"
rate = 0.1
at = 5

[[faults]]
kind = "latency"
from = "external"
to = "internal"
added = "150ms"
at = "1m"
for = "10s"

[[faults]]
kind = "cluster-down"
cluster = "store"
at = "40s"

[[faults]]
kind = "isolate"
node = "key-manager-2"
at = "50s"

[[faults]]
kind = "database-outage"
database = "apim"
at = "70s"

[[faults]]
kind = "balancer-outage"
balancer = "edge"
at = "80s"
"#;
    let s = scenario::parse(&SourceFile::new("s.toml", text), &plan()).expect("parses");
    assert_eq!(s.workload.duration_ms, 120_000);
    assert_eq!(s.workload.invoke_rate, 500.0);
    assert_eq!(s.workload.revocation_bound_ms, 500);
    assert_eq!(s.faults.len(), 8);
    assert_eq!(s.faults[0].at_ms, 5_000, "faults are ordered by time");
    assert!(s.faults.iter().any(|f| f.kind
        == FaultKind::Loss {
            from: "internal".into(),
            to: "internal".into(),
            one_way: false,
            rate_permille: 100
        }));
    let crash = s
        .faults
        .iter()
        .find(|f| f.kind.name() == "crash")
        .expect("crash");
    assert_eq!((crash.at_ms, crash.for_ms), (30_000, Some(20_000)));
}

#[test]
fn unknown_keys_get_a_suggestion() {
    insta::assert_snapshot!(diagnose("[workload]\ninvoke_rat = 5\n"));
    insta::assert_snapshot!(diagnose(
        "[[faults]]\nkind = \"crash\"\nnode = \"gateway-1\"\nfro = \"10s\"\n"
    ));
}

#[test]
fn bad_references_name_what_the_topology_has() {
    insta::assert_snapshot!(diagnose(
        "[[faults]]\nkind = \"crash\"\nnode = \"gateway-3\"\n\n[[faults]]\nkind = \"partition\"\nfrom = \"externall\"\nto = \"dmz\"\n"
    ));
}

#[test]
fn each_mistake_has_its_code() {
    assert_eq!(codes("[workload\n"), ["S001"]);
    assert_eq!(codes("[workload]\napis = \"three\"\n"), ["S001"]);
    assert_eq!(
        codes("[[faults]]\nkind = \"crash\"\nnode = \"gateway-9\"\n"),
        ["S002"]
    );
    assert_eq!(codes("[[faults]]\nkind = \"crash\"\n"), ["S004"]);
    assert_eq!(codes("[[faults]]\nnode = \"gateway-1\"\n"), ["S004"]);
    assert_eq!(
        codes("[[faults]]\nkind = \"crush\"\nnode = \"gateway-1\"\n"),
        ["S003"]
    );
    assert_eq!(codes("[workload]\nduration = \"10 parsecs\"\n"), ["S003"]);
    assert_eq!(codes("[workload]\ninvoke_rate = -1.0\n"), ["S003"]);
    assert_eq!(
        codes(
            "[workload]\nduration = \"10s\"\n[[faults]]\nkind = \"crash\"\nnode = \"gateway-1\"\nat = \"20s\"\n"
        ),
        ["S003"]
    );
    assert_eq!(
        codes("[[faults]]\nkind = \"loss\"\nfrom = \"internal\"\nto = \"internal\"\nrate = 2\n"),
        ["S003"]
    );
    // Every problem at once, not only the first.
    assert_eq!(
        codes(
            "[[faults]]\nkind = \"crash\"\nnode = \"x\"\n[[faults]]\nkind = \"isolate\"\nnode = \"y\"\n"
        ),
        ["S002", "S002"]
    );
}

#[test]
fn durations_read_in_parts_and_print_the_way_they_are_read() {
    use apim_sim::scenario::{format_ms, parse_duration};
    for (text, ms) in [
        ("1m30s", 90_000),
        ("1h5m", 3_900_000),
        ("2s500ms", 2_500),
        ("250ms", 250),
        ("10", 10_000),
        ("1.5s", 1_500),
        ("2m", 120_000),
    ] {
        assert_eq!(parse_duration(text), Ok(ms), "{text}");
        assert_eq!(parse_duration(&format_ms(ms)), Ok(ms), "{}", format_ms(ms));
    }
    assert_eq!(format_ms(90_000), "1m30s");
    assert_eq!(format_ms(0), "0s");
    for bad in ["", "1x", "30s1m", "1m1m", "s", "1m30"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn loss_is_described_in_percent() {
    let k = apim_sim::scenario::FaultKind::Loss {
        from: "a".into(),
        to: "b".into(),
        one_way: false,
        rate_permille: 300,
    };
    assert_eq!(k.describe(), "loss 30% a <-> b");
}

fn parsed(text: &str) -> scenario::Scenario {
    let source = SourceFile::new("scenario.toml", text);
    scenario::parse(&source, &plan()).unwrap_or_else(|d| panic!("{d:?}"))
}

#[test]
fn a_backend_latency_is_fixed_or_a_distribution_with_its_median_and_p99() {
    let fixed = parsed("[workload]\nbackend_latency = \"50ms\"\n").workload;
    assert!(!fixed.backend_varies());
    assert_eq!(fixed.backend_sample_us(0.999, 0.0), 50_000);
    let spread =
        parsed("[workload]\nbackend_latency = { median = \"20ms\", p99 = \"200ms\" }\n").workload;
    assert!(spread.backend_varies());
    // Drawn on a grid of uniform pairs, the samples have the median and p99 asked for.
    let n = 400;
    let mut samples: Vec<u64> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            spread.backend_sample_us((i as f64 + 0.5) / n as f64, (j as f64 + 0.5) / n as f64)
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[(q * samples.len() as f64) as usize] as f64 / 1000.0;
    assert!((at(0.5) - 20.0).abs() < 1.0, "median {}", at(0.5));
    assert!((at(0.99) - 200.0).abs() < 20.0, "p99 {}", at(0.99));
    // It reads back as written.
    let again = parsed(
        &parsed("[workload]\nbackend_latency = { median = \"20ms\", p99 = \"200ms\" }\n").to_toml(),
    );
    assert_eq!(again.workload, spread);
    for bad in [
        "[workload]\nbackend_latency = { median = \"20ms\" }\n",
        "[workload]\nbackend_latency = { median = \"20ms\", p99 = \"5ms\" }\n",
        "[workload]\nbackend_latency = { median = \"20ms\", p95 = \"50ms\" }\n",
        "[workload]\ninvoke_writes = 1.5\n",
    ] {
        assert_eq!(codes(bad), ["S003"], "{bad}");
    }
}
