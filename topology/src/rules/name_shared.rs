//! E015: a name given to more than one of a network, a cluster and a balancer, which a firewall
//! rule could not tell apart.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::source::Span;
use std::collections::BTreeMap;

code!(
    CODE,
    "E015",
    "name-shared",
    Error,
    "A network, a cluster and a balancer share a name; a [[firewall]] rule's `from` and `to` name any of the three, so each name must be one thing.",
    "Rename one of them."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<&str, Vec<(&str, Span)>> = BTreeMap::new();
    for n in t.networks.values() {
        seen.entry(&n.name).or_default().push(("network", n.span));
    }
    for c in t.clusters.values() {
        seen.entry(&c.name).or_default().push(("cluster", c.span));
    }
    for lb in t.load_balancers.values() {
        seen.entry(&lb.name)
            .or_default()
            .push(("balancer", lb.span));
    }
    for (name, kinds) in seen {
        let [(first, first_at), .., (last, at)] = kinds.as_slice() else {
            continue;
        };
        out.push(
            Diagnostic::new(
                &CODE,
                format!("`{name}` names both a {first} and a {last}"),
                Label::new(*at, format!("the {last} `{name}`")),
            )
            .with_secondary(Label::new(*first_at, format!("the {first} `{name}`")))
            .with_hint(format!(
                "rename the {last}, e.g. `{name}-{last}`: [[firewall]] rules name networks, clusters and balancers alike"
            )),
        );
    }
}
