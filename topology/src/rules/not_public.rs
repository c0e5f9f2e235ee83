//! E042: a public network exists but consumers or applications cannot reach what they use.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::flows::{Client, End, FLOWS};
use crate::model::Topology;
use crate::reach;

code!(
    CODE,
    "E042",
    "not-reachable-from-public",
    Error,
    "A network is public, but the store or the gateway cannot be reached from it, so consumers and their applications cannot use them.",
    "Put an external balancer on the public network that fronts the cluster, or put the cluster there: nothing but balancers may be reached from a public network across the firewall."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    let public: Vec<&str> = t
        .networks
        .values()
        .filter(|n| n.public)
        .map(|n| n.name.as_str())
        .collect();
    let Some(&first_public) = public.first() else {
        return;
    };
    let firewall = reach::Firewall::of(t);
    for hop in FLOWS {
        let (End::Client(client), End::Component(component)) = (hop.from, hop.to) else {
            continue;
        };
        if !client.comes_from_public() {
            continue;
        }
        let routes = reach::routes(t, component, hop.path);
        let known: Vec<_> = routes.iter().filter(|r| r.network(t).is_some()).collect();
        if known.is_empty() {
            continue;
        }
        let reachable = known.iter().any(|r| {
            let port = r.cluster().port(component);
            r.party(t).is_some_and(|to| {
                public
                    .iter()
                    .any(|p| firewall.allows_between(reach::Party::network(p), to, port))
            })
        });
        if reachable {
            continue;
        }
        let r = known[0];
        let c = r.cluster();
        let at = c.network.as_ref().map_or(c.span, |n| n.span);
        out.push(
            Diagnostic::new(
                &CODE,
                format!(
                    "the {component} cannot be reached from the public network `{first_public}`, where {} come from",
                    client_name(client)
                ),
                Label::new(at, format!("`{}` runs the {component} here", c.name)),
            )
            .with_hint(format!(
                "put an external balancer on \"{first_public}\" with fronts = [\"{}\"] (and a [[firewall]] rule from it to \"{}\")",
                c.name, c.name
            )),
        );
    }
}

fn client_name(c: Client) -> &'static str {
    c.as_str()
}
