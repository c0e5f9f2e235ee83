//! Network reachability: which traffic the networks and firewall allow, and the routes a hop takes.

use crate::flows::{End, FLOWS, Listener, Path};
use crate::model::{Cluster, FirewallRule, LoadBalancer, Topology};
use crate::vocab::Component;

/// Traffic inside one network is always allowed; between two networks only when a firewall
/// rule allows it (a rule without `ports` allows every port).
pub fn allows(t: &Topology, from: &str, to: &str, port: u16) -> bool {
    from == to || rules_between(t, from, to).any(|r| r.allows_port(port))
}

pub fn rules_between<'t>(
    t: &'t Topology,
    from: &'t str,
    to: &'t str,
) -> impl Iterator<Item = &'t FirewallRule> + 't {
    t.firewall.iter().filter(move |r| {
        r.from.as_ref().is_some_and(|f| f.value == from)
            && r.to.as_ref().is_some_and(|x| x.value == to)
    })
}

/// One way to reach a cluster running a component.
#[derive(Clone, Copy, Debug)]
pub enum Route<'t> {
    Direct(&'t Cluster),
    Via(&'t LoadBalancer, &'t Cluster),
}

impl<'t> Route<'t> {
    pub fn cluster(self) -> &'t Cluster {
        match self {
            Route::Direct(c) | Route::Via(_, c) => c,
        }
    }

    /// The network the traffic enters, when it is known.
    pub fn network(self, t: &'t Topology) -> Option<&'t str> {
        let name = match self {
            Route::Direct(c) => c.network.as_ref(),
            Route::Via(lb, _) => lb.network.as_ref(),
        }?;
        t.networks.get(&name.value).map(|n| n.name.as_str())
    }
}

/// The routes a hop with `path` takes to the clusters running `component`.
///
/// A multi-node cluster that a balanced hop should reach through a balancer, but that no
/// balancer of the right kind fronts, has no route: the balancer rule reports that.
pub fn routes(t: &Topology, component: Component, path: Path) -> Vec<Route<'_>> {
    let mut out = Vec::new();
    for cluster in t.clusters_running(component) {
        match path {
            Path::Balanced(kind) if cluster.node_count() >= 2 => out.extend(
                t.balancers_fronting(&cluster.name)
                    .filter(|lb| lb.kind() == Some(kind))
                    .map(|lb| Route::Via(lb, cluster)),
            ),
            _ => out.push(Route::Direct(cluster)),
        }
    }
    out
}

/// What a balancer listens on: `(port, component, listener)` for every component of the
/// clusters it fronts (their public ports), and the internal listeners of the components that
/// a hop of the flows table reaches through a balancer of this kind (passed through as TLS, so
/// the caller's identity reaches the node). Sorted, without repeats.
pub fn balancer_ports(t: &Topology, lb: &LoadBalancer) -> Vec<(u16, Component, Listener)> {
    let mut out = Vec::new();
    for f in &lb.fronts {
        let Some(c) = t.clusters.get(&f.value) else {
            continue;
        };
        for comp in &c.components {
            out.push((c.port(comp.value), comp.value, Listener::Public));
            let balanced_inside = FLOWS.iter().any(|h| {
                h.to == End::Component(comp.value)
                    && h.listener == Listener::Internal
                    && matches!(h.path, Path::Balanced(k) if Some(k) == lb.kind())
            });
            if balanced_inside {
                out.push((c.internal_port(), comp.value, Listener::Internal));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
