//! W002: a balancer that is the only one of its kind in front of a cluster.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;

code!(
    CODE,
    "W002",
    "single-balancer",
    Warning,
    "A load balancer is the only one of its kind in front of a cluster: when it fails, the cluster is cut off.",
    "Add a second balancer fronting the same clusters, or run this one with a floating address (keepalived, a cloud balancer)."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    for lb in t.load_balancers.values() {
        let Some(kind) = lb.kind() else { continue };
        let alone: Vec<&str> = lb
            .fronts
            .iter()
            .filter(|f| t.clusters.contains_key(&f.value))
            .filter(|f| {
                !t.balancers_fronting(&f.value)
                    .any(|other| other.name != lb.name && other.kind() == Some(kind))
            })
            .map(|f| f.value.as_str())
            .collect();
        if alone.is_empty() {
            continue;
        }
        out.push(
            Diagnostic::new(
                &CODE,
                format!(
                    "balancer `{}` is the only {kind} balancer in front of {}: a single point of failure",
                    lb.name,
                    super::list(&alone)
                ),
                Label::new(lb.span, "the only one"),
            )
            .with_hint("add a second balancer with the same `fronts`, or give this one a floating address"),
        );
    }
}
