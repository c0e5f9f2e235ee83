//! E043: a firewall rule that lets a public network reach what only balancers may face: a
//! database, a node's admin port, its internal listener, or a component port of its own.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::{Cluster, FirewallRule, Topology};
use crate::vocab::Engine;

code!(
    CODE,
    "E043",
    "public-exposure",
    Error,
    "A [[firewall]] rule lets a public network reach a database, a node's admin port, its internal listener or a node's component port across the firewall; only balancers may be reached from a public network.",
    "Name the balancer in front (`to = \"edge\"`), or let only the cluster that needs the traffic through (`from = \"store\"`)."
);

/// What a rule exposes on one cluster's nodes.
fn exposed_ports(rule: &FirewallRule, c: &Cluster) -> Vec<String> {
    let mut out: Vec<(u16, String)> = c
        .components
        .iter()
        .map(|comp| (c.port(comp.value), format!("the {} port", comp.value)))
        .chain([
            (c.admin_port(), "the admin port".to_string()),
            (c.internal_port(), "the internal listener".to_string()),
        ])
        .filter(|(p, _)| rule.allows_port(*p))
        .map(|(p, what)| (p, format!("{what} {p} of `{}`", c.name)))
        .collect();
    out.sort();
    out.dedup();
    out.into_iter().map(|(_, w)| w).collect()
}

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    for rule in &t.firewall {
        let (Some(from), Some(to)) = (&rule.from, &rule.to) else {
            continue;
        };
        // Only a rule from a public network as such: a cluster or balancer on it is itself.
        let Some(from_net) = t.networks.get(&from.value).filter(|n| n.public) else {
            continue;
        };
        let mut exposed: Vec<String> = Vec::new();
        if let Some(net) = t.networks.get(&to.value) {
            if net.name == from_net.name {
                continue;
            }
            for d in t.databases.values() {
                let on = d.network.as_ref().is_some_and(|n| n.value == net.name);
                let port = match (d.engine(), &d.endpoint) {
                    (Some(Engine::Sqlite) | None, _) => None,
                    (Some(_), Some(e)) => Some(e.port),
                    (Some(e), None) => e.default_port(),
                };
                if let Some(p) = port.filter(|p| on && rule.allows_port(*p)) {
                    exposed.push(format!("database `{}` ({p})", d.name));
                }
            }
            for c in t.clusters.values() {
                if c.network.as_ref().is_some_and(|n| n.value == net.name) {
                    exposed.extend(exposed_ports(rule, c));
                }
            }
        } else if let Some(c) = t.clusters.get(&to.value) {
            exposed.extend(exposed_ports(rule, c));
        }
        if exposed.is_empty() {
            continue;
        }
        let shown = if exposed.len() > 4 {
            format!("{} and {} more", exposed[..4].join(", "), exposed.len() - 4)
        } else {
            exposed.join(", ")
        };
        out.push(
            Diagnostic::new(
                &CODE,
                format!(
                    "this rule lets the public network `{}` reach {shown}: only balancers may be reached from a public network",
                    from_net.name
                ),
                Label::new(from.span, "the whole internet"),
            )
            .with_secondary(Label::new(rule.span, "this rule"))
            .with_hint(format!(
                "let only what needs it through: `from = \"CLUSTER\"` (the cluster on `{}` that calls in), or `to = \"BALANCER\"` (a balancer in front of what clients use)",
                from_net.name
            )),
        );
    }
}
