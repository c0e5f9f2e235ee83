//! Data-driven checks of topology files. Each fixture in `tests/fixtures/check` states the
//! diagnostics it must produce on a `# expect: CODE@LINE:COL ...` line; the rendered report
//! (human and JSON) is pinned by a snapshot.

mod common;

use std::collections::BTreeSet;

/// Checks one fixture against its expectation and its snapshot.
fn check(stem: &str) {
    let path = common::fixtures("check").join(format!("{stem}.toml"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8_lossy(&bytes);
    let expected: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect:"))
        .unwrap_or_else(|| panic!("{stem}.toml has no `# expect:` line"))
        .split_whitespace()
        .map(String::from)
        .collect();
    let checked = common::load(&format!("{stem}.toml"), &bytes);
    assert_eq!(
        common::positions(&checked),
        expected,
        "diagnostics of {stem}.toml"
    );
    insta::with_settings!({ snapshot_path => "snapshots/check", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(stem, common::report(&checked));
    });
}

fn stems() -> Vec<String> {
    let mut stems: Vec<String> = std::fs::read_dir(common::fixtures("check"))
        .expect("fixtures folder")
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
        .collect();
    stems.sort();
    stems
}

#[test]
fn every_fixture_gives_what_it_expects() {
    for stem in stems() {
        check(&stem);
    }
}

#[test]
fn every_code_has_a_fixture_that_triggers_it() {
    let mut seen = BTreeSet::new();
    for stem in stems() {
        let bytes =
            std::fs::read(common::fixtures("check").join(format!("{stem}.toml"))).expect("fixture");
        for d in common::load(&stem, &bytes).diagnostics {
            seen.insert(d.code.id);
        }
    }
    let all: BTreeSet<&str> = apim_topology::codes::ALL
        .iter()
        .chain(apim_patterns::CODES)
        .map(|c| c.id)
        .collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(missing.is_empty(), "codes without a fixture: {missing:?}");
}

// The real-world mistakes the checker exists for, each pinned by name.

#[test]
fn store_on_external_network_cannot_reach_key_manager() {
    check("store-cannot-reach-key-manager");
}

#[test]
fn sqlite_database_shared_by_two_hosts() {
    check("sqlite-shared-across-hosts");
}

#[test]
fn two_node_gateway_cluster_without_balancer() {
    check("gateway-cluster-without-balancer");
}

#[test]
fn two_listeners_on_one_host_and_port() {
    check("port-clash");
    check("balancer-on-gateway-host");
}

#[test]
fn database_role_served_twice_or_never() {
    check("role-served-twice");
    check("role-not-served");
}

#[test]
fn pattern_declared_but_not_matched() {
    check("pattern-mismatch");
}
