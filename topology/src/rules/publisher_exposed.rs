//! W004: the publisher exposed to the internet.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::vocab::Component;

code!(
    CODE,
    "W004",
    "publisher-exposed",
    Warning,
    "The publisher is on a public network, or behind an external balancer on one: API providers' portal is open to the internet.",
    "Front the publisher with a balancer on an internal network, and keep only the store and gateway public."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    let is_public = |name: Option<&crate::source::Spanned<String>>| {
        t.network_of(name).is_some_and(|n| n.public)
    };
    for c in t.clusters_running(Component::Publisher) {
        if is_public(c.network.as_ref()) {
            let at = c.network.as_ref().map_or(c.span, |n| n.span);
            out.push(
                Diagnostic::new(&CODE, format!("cluster `{}` runs the publisher on a public network", c.name), Label::new(at, "public network"))
                    .with_hint("move the publisher to an internal network; providers reach it through a VPN or an internal balancer"),
            );
        }
        for lb in t
            .balancers_fronting(&c.name)
            .filter(|lb| is_public(lb.network.as_ref()))
        {
            let at = lb.network.as_ref().map_or(lb.span, |n| n.span);
            out.push(
                Diagnostic::new(
                    &CODE,
                    format!("balancer `{}` on a public network exposes the publisher of `{}` to the internet", lb.name, c.name),
                    Label::new(at, "public network"),
                )
                .with_hint(format!("front `{}` with a balancer on an internal network instead", c.name)),
            );
        }
    }
}
