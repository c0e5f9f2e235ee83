//! E040: a hop of the flows table that the networks and firewall do not allow.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::flows::{End, FLOWS, Hop, Path};
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
    "Add a [[firewall]] rule from the source cluster (or its network) to the target (or its network) with the port named, or move the cluster."
);

/// Something a hop must reach: a database, a cluster, or a balancer in front of one.
#[derive(Clone)]
struct Target {
    name: String,
    network: String,
    /// The cluster or balancer a firewall rule may name instead of its network.
    party: Option<String>,
    span: Option<Span>,
    port: u16,
}

/// A source cluster that cannot reach a target, and every flow step that needs it.
struct Blocked<'t> {
    source: &'t Cluster,
    from_net: &'t str,
    target: Target,
    needs: Vec<String>,
}

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    // (source cluster, target, port) -> what could not get through, merged across hops.
    let mut blocked: BTreeMap<(String, String, u16), Blocked<'_>> = BTreeMap::new();
    let firewall = reach::Firewall::of(t);
    for hop in FLOWS {
        let End::Component(from) = hop.from else {
            continue;
        };
        // A rule may name a cluster, so each source cluster is its own party.
        let mut sources: Vec<(&str, &Cluster)> = Vec::new();
        for src in t.clusters_running(from) {
            if let Some(net) = t.network_of(src.network.as_ref()) {
                sources.push((&net.name, src));
            }
        }
        let groups = targets(t, hop);
        let need = format!("{}: {}", hop.flow, hop.why);
        // What a source cannot reach depends on its network, and on its name only where a
        // rule gives it: sources alike are judged once (a fleet's check stays linear).
        let mut judged: BTreeMap<(&str, Option<&str>), Vec<&Target>> = BTreeMap::new();
        for (from_net, src) in sources {
            let named = firewall.names(&src.name).then_some(src.name.as_str());
            let failed = judged.entry((from_net, named)).or_insert_with(|| {
                let me = reach::Party {
                    network: from_net,
                    name: named,
                };
                let reached = |(net, party, port): &(String, Option<String>, u16)| {
                    let to = reach::Party {
                        network: net,
                        name: party.as_deref(),
                    };
                    firewall.allows_between(me, to, *port)
                };
                match hop.path {
                    // Every node of every target cluster must hear from the source.
                    Path::EachNode => groups
                        .iter()
                        .filter(|(k, _)| !reached(k))
                        .flat_map(|(_, v)| v)
                        .collect(),
                    // One working route is enough; name the first when none works.
                    Path::Direct | Path::Balanced(_) if groups.keys().any(reached) => Vec::new(),
                    Path::Direct | Path::Balanced(_) => groups.values().flatten().take(1).collect(),
                }
            });
            for target in failed.iter() {
                let key = (src.name.clone(), target.name.clone(), target.port);
                let entry = blocked.entry(key).or_insert_with(|| Blocked {
                    source: src,
                    from_net,
                    target: (*target).clone(),
                    needs: Vec::new(),
                });
                if !entry.needs.contains(&need) {
                    entry.needs.push(need.clone());
                }
            }
        }
    }
    for Blocked {
        source: src,
        from_net,
        target,
        needs,
    } in blocked.into_values()
    {
        let at = src.network.as_ref().map_or(src.span, |n| n.span);
        let mut d = Diagnostic::new(
            &CODE,
            format!(
                "cluster `{}` (network `{from_net}`) cannot reach {} (network `{}`) on port {}, needed for {}",
                src.name,
                target.name,
                target.network,
                target.port,
                needs.join("; ")
            ),
            Label::new(at, format!("`{}` is on `{from_net}`", src.name)),
        );
        if let Some(s) = target.span {
            d = d.with_secondary(Label::new(s, format!("target on `{}`", target.network)));
        }
        let hint = match reach::rules_between(t, from_net, &target.network)
            .chain(reach::rules_between(t, &src.name, &target.network))
            .next()
        {
            Some(rule) => {
                d = d.with_secondary(Label::new(rule.span, "this rule does not allow the port"));
                format!(
                    "add {} to the `ports` of the [[firewall]] rule from \"{from_net}\" to \"{}\"",
                    target.port, target.network
                )
            }
            None => format!(
                "add [[firewall]] from = \"{}\", to = \"{}\", ports = [{}]",
                src.name, target.network, target.port
            ),
        };
        out.push(d.with_hint(hint));
    }
}

/// What a hop must be allowed to reach: (network, the cluster or balancer there, port).
type Reach = (String, Option<String>, u16);

/// The targets of a hop, grouped by what the traffic must be allowed to reach.
fn targets(t: &Topology, hop: &Hop) -> BTreeMap<Reach, Vec<Target>> {
    let mut groups: BTreeMap<Reach, Vec<Target>> = BTreeMap::new();
    let mut add = |target: Target| {
        groups
            .entry((target.network.clone(), target.party.clone(), target.port))
            .or_default()
            .push(target);
    };
    match hop.to {
        End::Client(_) => {}
        End::Database(role) => {
            let Some(db) = t.database_for(role) else {
                return groups;
            };
            let (Some(engine), Some(net)) = (db.engine(), t.network_of(db.network.as_ref())) else {
                return groups;
            };
            // A SQLite file is opened, not connected to; placement rules cover it.
            if engine != Engine::Sqlite {
                add(Target {
                    name: format!("database `{}`", db.name),
                    network: net.name.clone(),
                    party: None,
                    span: db.network.as_ref().map(|n| n.span),
                    port: db
                        .endpoint
                        .as_ref()
                        .map_or(engine.default_port().unwrap_or_default(), |e| e.port),
                });
            }
        }
        End::Component(component) => {
            for r in reach::routes(t, component, hop.path) {
                let Some(net) = r.network(t) else { continue };
                let (name, span, party) = match r {
                    Route::Direct(c) => (
                        format!("the {component} in cluster `{}`", c.name),
                        c.network.as_ref(),
                        c.name.clone(),
                    ),
                    Route::Via(lb, c) => (
                        format!("balancer `{}` in front of `{}`", lb.name, c.name),
                        lb.network.as_ref(),
                        lb.name.clone(),
                    ),
                };
                add(Target {
                    name,
                    network: net.to_string(),
                    party: Some(party),
                    span: span.map(|n| n.span),
                    port: r.cluster().port_for(component, hop.listener),
                });
            }
        }
    }
    groups
}
