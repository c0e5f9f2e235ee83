//! E040: a hop of the flows table that the networks and firewall do not allow.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::flows::{End, FLOWS, Path};
use crate::model::{Cluster, Topology};
use crate::reach::{self, Route};
use crate::source::Span;
use crate::vocab::Engine;
use std::collections::BTreeMap;

code!(
    CODE,
    "E040",
    "hop-blocked",
    Error,
    "A hop that publish, subscribe or invoke needs (see the flows table) is not allowed by the networks and firewall, for the nodes of some cluster.",
    "Add a [[firewall]] rule from the source network to the target network with the port named, or move the cluster."
);

/// A target a source cluster could not reach.
struct Blocked {
    target: String,
    to_network: String,
    to_span: Option<Span>,
    port: u16,
    needs: Vec<String>,
}

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    // (source cluster, target) -> what could not get through, merged across hops.
    let mut blocked: BTreeMap<(String, String, u16), (&Cluster, &str, Blocked)> = BTreeMap::new();
    for hop in FLOWS {
        let End::Component(from) = hop.from else {
            continue;
        };
        for src in t.clusters_running(from) {
            let Some(from_net) = t.network_of(src.network.as_ref()) else {
                continue;
            };
            let need = format!("{}: {}", hop.flow, hop.why);
            for b in failures(t, &from_net.name, hop.to, hop.path) {
                let key = (src.name.clone(), b.target.clone(), b.port);
                let entry = blocked.entry(key).or_insert((src, &from_net.name, b));
                if !entry.2.needs.contains(&need) {
                    entry.2.needs.push(need.clone());
                }
            }
        }
    }
    for (src, from_net, b) in blocked.into_values() {
        let at = src.network.as_ref().map_or(src.span, |n| n.span);
        let mut d = Diagnostic::new(
            &CODE,
            format!(
                "cluster `{}` (network `{from_net}`) cannot reach {} (network `{}`) on port {}, needed for {}",
                src.name,
                b.target,
                b.to_network,
                b.port,
                b.needs.join("; ")
            ),
            Label::new(at, format!("`{}` is on `{from_net}`", src.name)),
        );
        if let Some(s) = b.to_span {
            d = d.with_secondary(Label::new(s, format!("target on `{}`", b.to_network)));
        }
        let existing = reach::rules_between(t, from_net, &b.to_network).next();
        let hint = match existing {
            Some(_) => format!(
                "add {} to the `ports` of the [[firewall]] rule from \"{from_net}\" to \"{}\"",
                b.port, b.to_network
            ),
            None => format!(
                "add [[firewall]] from = \"{from_net}\", to = \"{}\", ports = [{}]",
                b.to_network, b.port
            ),
        };
        if let Some(rule) = existing {
            d = d.with_secondary(Label::new(rule.span, "this rule does not allow the port"));
        }
        out.push(d.with_hint(hint));
    }
}

/// What a cluster on `from_net` cannot reach of the targets of one hop.
fn failures(t: &Topology, from_net: &str, to: End, path: Path) -> Vec<Blocked> {
    match to {
        End::Client(_) => Vec::new(),
        End::Database(role) => {
            let Some(db) = t.database_for(role) else {
                return Vec::new();
            };
            let (Some(engine), Some(net)) = (db.engine(), t.network_of(db.network.as_ref())) else {
                return Vec::new();
            };
            if engine == Engine::Sqlite {
                return Vec::new();
            }
            let port = db
                .endpoint
                .as_ref()
                .map_or(engine.default_port().unwrap_or_default(), |e| e.port);
            if reach::allows(t, from_net, &net.name, port) {
                return Vec::new();
            }
            vec![Blocked {
                target: format!("database `{}`", db.name),
                to_network: net.name.clone(),
                to_span: db.network.as_ref().map(|n| n.span),
                port,
                needs: Vec::new(),
            }]
        }
        End::Component(component) => {
            let routes = reach::routes(t, component, path);
            let unreachable = |r: &Route<'_>| -> Option<Blocked> {
                let net = r.network(t)?;
                let port = r.cluster().port(component);
                if reach::allows(t, from_net, net, port) {
                    return None;
                }
                let (target, span) = match r {
                    Route::Direct(c) => (
                        format!("the {component} in cluster `{}`", c.name),
                        c.network.as_ref().map(|n| n.span),
                    ),
                    Route::Via(lb, c) => (
                        format!("balancer `{}` in front of `{}`", lb.name, c.name),
                        lb.network.as_ref().map(|n| n.span),
                    ),
                };
                Some(Blocked {
                    target,
                    to_network: net.to_string(),
                    to_span: span,
                    port,
                    needs: Vec::new(),
                })
            };
            match path {
                // Every node of every such cluster must hear from the source.
                Path::EachNode => routes.iter().filter_map(unreachable).collect(),
                // One working route is enough; report the first when none works.
                Path::Direct | Path::Balanced(_) => {
                    let known: Vec<&Route<'_>> =
                        routes.iter().filter(|r| r.network(t).is_some()).collect();
                    let failed: Vec<Blocked> =
                        known.iter().filter_map(|r| unreachable(r)).collect();
                    if failed.len() == known.len() {
                        failed.into_iter().take(1).collect()
                    } else {
                        Vec::new()
                    }
                }
            }
        }
    }
}
