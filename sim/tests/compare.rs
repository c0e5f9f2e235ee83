//! `apim compare`'s columns are read off the single-failure matrices, never typed again, and
//! show what an edit to a topology changes. (The five patterns side by side: `tests/docs.rs`,
//! which writes them into the README.)

use apim_compiler::plan::Plan;
use apim_sim::compare::{Column, column};
use apim_sim::failover::matrix;
use apim_sim::run::Options;

fn compared(name: &str, text: &str) -> Column {
    let checked = apim_topology::check_str(name, text);
    assert_eq!(checked.errors(), 0, "{name}");
    let plan = Plan::of(&checked.topology);
    let m = matrix(&plan, &Options::default(), |_, _, _| {});
    column(name, &checked, &plan, &m, None)
}

/// A user's topology and its copy with one gateway node removed: the copy has a single point
/// of failure the original has not, named by the checker and seen in the matrix.
#[test]
fn removing_a_gateway_node_shows_the_new_single_point_of_failure() {
    let text = apim_patterns::find("clustered-internal")
        .expect("pattern")
        .template;
    let two = r#"hosts = ["10.0.3.11", "10.0.3.12"]"#;
    assert!(text.contains(two), "the template's gateway hosts moved");
    let one_less = text.replace(two, r#"hosts = ["10.0.3.11"]"#);
    let before = compared("ours", text);
    let after = compared("ours-one-gateway-less", &one_less);
    let invoke = |c: &Column| c.flows.iter().find(|f| f.flow == "invoke").cloned();
    let (b, a) = (
        invoke(&before).expect("invoke"),
        invoke(&after).expect("invoke"),
    );
    assert!(!b.broken_by.iter().any(|x| x == "crash gateway-1"));
    assert!(
        a.broken_by.iter().any(|x| x == "crash gateway-1"),
        "{:?}",
        a.broken_by
    );
    assert_eq!(after.single_points.len(), before.single_points.len() + 1);
    assert!(
        after
            .single_points
            .iter()
            .any(|p| p.contains("`gateway` has a single node")),
        "{:?}",
        after.single_points
    );
    assert!(
        after.summary.contains("a crash of gateway-1 breaks invoke"),
        "{}",
        after.summary
    );
}
