//! E020: a component that no cluster runs.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::vocab::Component;

code!(
    CODE,
    "E020",
    "component-not-deployed",
    Error,
    "One of the four components (publisher, store, key-manager, gateway) runs in no cluster.",
    "Add the component to a cluster's `components`, or add a cluster for it."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    let anchor = t
        .clusters
        .values()
        .map(|c| c.span)
        .min()
        .unwrap_or(t.deployment.span);
    for &component in Component::ALL {
        if t.clusters_running(component).next().is_some() {
            continue;
        }
        out.push(
            Diagnostic::new(
                &CODE,
                format!("no cluster runs the {component}"),
                Label::new(anchor, format!("none of the clusters runs `{component}`")),
            )
            .with_hint(format!(
                "add \"{component}\" to a cluster's `components`, or add a cluster such as [clusters.{component}]"
            )),
        );
    }
}
