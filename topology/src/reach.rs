//! Network reachability: which traffic the networks and firewall allow, and the routes a hop takes.

use crate::flows::{End, FLOWS, Listener, Path};
use crate::model::{Cluster, FirewallRule, LoadBalancer, Topology};
use crate::vocab::Component;

/// Traffic inside one network is always allowed; between two networks only when a firewall
/// rule allows it (a rule without `ports` allows every port).
pub fn allows(t: &Topology, from: &str, to: &str, port: u16) -> bool {
    allows_between(t, Party::network(from), Party::network(to), port)
}

/// One end of some traffic: the network it sits on and, for a cluster's node or a balancer,
/// its name (a firewall rule may name it instead of its network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party<'a> {
    pub network: &'a str,
    pub name: Option<&'a str>,
}

impl<'a> Party<'a> {
    pub fn network(network: &'a str) -> Party<'a> {
        Party {
            network,
            name: None,
        }
    }

    pub fn named(network: &'a str, name: &'a str) -> Party<'a> {
        Party {
            network,
            name: Some(name),
        }
    }

    /// Whether a rule's `from` or `to` names this party: its network, or itself.
    pub fn is(&self, rule_end: &str) -> bool {
        rule_end == self.network || self.name == Some(rule_end)
    }
}

/// Traffic between two parties: always inside one network; across networks only when a rule
/// names the source (or its network) and the target (or its network) and allows the port.
pub fn allows_between(t: &Topology, from: Party<'_>, to: Party<'_>, port: u16) -> bool {
    from.network == to.network || rules_for(t, from, to).any(|r| r.allows_port(port))
}

/// The rules whose `from` names `from` and whose `to` names `to`.
pub fn rules_for<'t>(
    t: &'t Topology,
    from: Party<'t>,
    to: Party<'t>,
) -> impl Iterator<Item = &'t FirewallRule> + 't {
    t.firewall.iter().filter(move |r| {
        r.from.as_ref().is_some_and(|f| from.is(&f.value))
            && r.to.as_ref().is_some_and(|x| to.is(&x.value))
    })
}

/// Where something a rule names sits: a network is itself, a cluster and a balancer are on
/// theirs.
pub fn network_named<'t>(t: &'t Topology, name: &str) -> Option<&'t str> {
    if let Some(n) = t.networks.get(name) {
        return Some(&n.name);
    }
    let on = |n: Option<&crate::source::Spanned<String>>| t.network_of(n).map(|n| n.name.as_str());
    if let Some(c) = t.clusters.get(name) {
        return on(c.network.as_ref());
    }
    t.load_balancers
        .get(name)
        .and_then(|lb| on(lb.network.as_ref()))
}

/// A cluster's nodes, as a party.
pub fn cluster_party<'t>(t: &'t Topology, c: &'t Cluster) -> Option<Party<'t>> {
    let net = t.network_of(c.network.as_ref())?;
    Some(Party::named(&net.name, &c.name))
}

/// A balancer, as a party.
pub fn balancer_party<'t>(t: &'t Topology, lb: &'t LoadBalancer) -> Option<Party<'t>> {
    let net = t.network_of(lb.network.as_ref())?;
    Some(Party::named(&net.name, &lb.name))
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

    /// Where the traffic enters: the cluster's nodes, or the balancer.
    pub fn party(self, t: &'t Topology) -> Option<Party<'t>> {
        match self {
            Route::Direct(c) => cluster_party(t, c),
            Route::Via(lb, _) => balancer_party(t, lb),
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
/// A balanced hop goes through every balancer of the right kind in front of the cluster; a
/// single node with none is reached directly. A multi-node cluster that no balancer of the
/// right kind fronts has no route: the balancer rule reports that.
pub fn routes(t: &Topology, component: Component, path: Path) -> Vec<Route<'_>> {
    let mut out = Vec::new();
    for cluster in t.clusters_running(component) {
        match path {
            Path::Balanced(kind) => {
                let via: Vec<Route<'_>> = t
                    .balancers_fronting(&cluster.name)
                    .filter(|lb| lb.kind() == Some(kind))
                    .map(|lb| Route::Via(lb, cluster))
                    .collect();
                // A balancer in front is used even for one node (it may be the only way in
                // from a public network); a lone node without one is reached directly.
                if via.is_empty() && cluster.node_count() < 2 {
                    out.push(Route::Direct(cluster));
                }
                out.extend(via);
            }
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
