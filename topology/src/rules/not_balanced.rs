//! E050: a multi-node cluster without the balancer its flows need.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::flows;
use crate::model::Topology;
use crate::vocab::{BalancerKind, Component};

code!(
    CODE,
    "E050",
    "cluster-not-balanced",
    Error,
    "A publisher, store or gateway cluster of two or more nodes has no external balancer in front, or a key-manager cluster of two or more nodes no internal one.",
    "Add a [load_balancers.NAME] of the kind named, with the cluster in its `fronts`."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    for c in t.clusters.values().filter(|c| c.node_count() >= 2) {
        let mut needed: Vec<(BalancerKind, Component)> = Vec::new();
        for comp in &c.components {
            for kind in flows::balancer_kinds_needed(comp.value) {
                if !needed.iter().any(|(k, _)| *k == kind) {
                    needed.push((kind, comp.value));
                }
            }
        }
        needed.sort();
        for (kind, component) in needed {
            if t.balancers_fronting(&c.name)
                .any(|lb| lb.kind() == Some(kind))
            {
                continue;
            }
            let why = match kind {
                BalancerKind::External => "clients reach it through one address",
                BalancerKind::Internal => "other components reach it through one address",
            };
            out.push(
                Diagnostic::new(
                    &CODE,
                    format!(
                        "cluster `{}` has {} nodes running the {component} but no {kind} balancer in front ({why})",
                        c.name,
                        c.node_count()
                    ),
                    Label::new(c.hosts_or_name_span(), format!("{} nodes", c.node_count())),
                )
                .with_secondary(Label::new(c.span, "cluster defined here"))
                .with_hint(format!(
                    "add [load_balancers.{}-lb] with kind = \"{kind}\" and fronts = [\"{}\"]",
                    c.name, c.name
                )),
            );
        }
    }
}
