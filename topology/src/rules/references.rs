//! E006: references to networks, clusters and databases that do not exist.

use crate::codes::UNKNOWN_REFERENCE;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::source::Spanned;
use crate::suggest;

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    let networks: Vec<&str> = t.networks.keys().map(String::as_str).collect();
    let clusters: Vec<&str> = t.clusters.keys().map(String::as_str).collect();
    // `known` is sorted (it comes from a BTreeMap), so lookups are binary searches.
    let network = |r: Option<&Spanned<String>>, out: &mut Vec<Diagnostic>| {
        if let Some(r) = r {
            unknown(r, "network", &networks, out);
        }
    };
    for c in t.clusters.values() {
        network(c.network.as_ref(), out);
    }
    for d in t.databases.values() {
        network(d.network.as_ref(), out);
    }
    for lb in t.load_balancers.values() {
        network(lb.network.as_ref(), out);
        for f in &lb.fronts {
            unknown(f, "cluster", &clusters, out);
        }
    }
    // A rule's ends name a network, a cluster or a balancer.
    let mut parties: Vec<&str> = networks
        .iter()
        .chain(&clusters)
        .copied()
        .chain(t.load_balancers.keys().map(String::as_str))
        .collect();
    parties.sort_unstable();
    parties.dedup();
    for rule in &t.firewall {
        for end in [rule.from.as_ref(), rule.to.as_ref()].into_iter().flatten() {
            unknown(end, "network, cluster or balancer", &parties, out);
        }
    }
}

fn unknown(r: &Spanned<String>, what: &str, known: &[&str], out: &mut Vec<Diagnostic>) {
    if known.binary_search(&r.value.as_str()).is_ok() {
        return;
    }
    let hint = match (suggest::closest(&r.value, known.iter().copied()), known) {
        (Some(best), _) => format!("did you mean `{best}`?"),
        (None, []) => format!("no {what} is defined yet; define one first"),
        (None, known) if known.len() <= 12 => format!("the {what}s are: {}", known.join(", ")),
        (None, _) => format!("define the {what} `{}`, or correct the name", r.value),
    };
    out.push(
        Diagnostic::new(
            &UNKNOWN_REFERENCE,
            format!("no {what} is named `{}`", r.value),
            Label::new(r.span, format!("unknown {what}")),
        )
        .with_hint(hint),
    );
}
