//! W001: a cluster of one node, a single point of failure.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;

code!(
    CODE,
    "W001",
    "single-node-cluster",
    Warning,
    "A cluster has one node: when it fails, what it runs stops.",
    "Add a second host to `hosts` (with a balancer in front) where the component must survive a node failure."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    for c in t.clusters.values().filter(|c| c.node_count() == 1) {
        let runs: Vec<&str> = c.components.iter().map(|c| c.value.as_str()).collect();
        out.push(
            Diagnostic::new(
                &CODE,
                format!(
                    "cluster `{}` has a single node: a single point of failure for {}",
                    c.name,
                    super::list(&runs)
                ),
                Label::new(c.hosts_or_name_span(), "one node"),
            )
            .with_hint(
                "add a second host to `hosts` and a balancer in front to survive a node failure",
            ),
        );
    }
}
