//! Network reachability: which traffic the networks and firewall allow, and the routes a hop takes.

use crate::flows::{End, FLOWS, Listener, Path};
use crate::model::{Cluster, FirewallRule, LoadBalancer, Topology};
use crate::vocab::Component;
use std::collections::{BTreeMap, BTreeSet};

/// One end of some traffic as the checker names it: the network it sits on and, for a cluster's
/// node or a balancer, its name (a firewall rule may name it instead of its network).
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
}

/// One end of some traffic as the simulator places it: its network's index in the
/// firewall's list, and the cluster or balancer it is (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At<'a> {
    pub net: usize,
    pub name: Option<&'a str>,
}

/// The firewall, evaluated one way for the checker, the compiler's outputs and the simulator.
///
/// Traffic inside one network always passes. Between two networks it passes when a rule whose
/// `from` names the source (its network, or its cluster or balancer) and whose `to` names the
/// target opens the port; a rule without `ports` opens every port, and when the port is not
/// known (a database's) any rule naming both ends does.
#[derive(Clone, Debug)]
pub struct Firewall {
    networks: BTreeMap<String, usize>,
    rules: Vec<Rule>,
    /// Every name a rule's end gives, so that a party no rule names can be judged by its
    /// network alone (the checker then evaluates each network once, not each cluster).
    named: BTreeSet<String>,
}

#[derive(Clone, Debug)]
struct Rule {
    from: RuleEnd,
    to: RuleEnd,
    /// `None`: every port.
    ports: Option<Vec<u16>>,
}

/// What a rule's end names: a network (by index) when it is one's name, and always the name,
/// which a cluster or balancer may carry.
#[derive(Clone, Debug)]
struct RuleEnd {
    net: Option<usize>,
    name: String,
}

impl RuleEnd {
    fn is(&self, p: At<'_>) -> bool {
        self.net == Some(p.net) || p.name == Some(self.name.as_str())
    }
}

impl Firewall {
    /// A firewall over `networks` (their order gives the indices [`At`] uses) and `rules`
    /// (`from`, `to`, `ports`).
    pub fn new<'a>(
        networks: impl IntoIterator<Item = &'a str>,
        rules: impl IntoIterator<Item = (&'a str, &'a str, Option<Vec<u16>>)>,
    ) -> Firewall {
        let networks: BTreeMap<String, usize> = networks
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i))
            .collect();
        let end = |name: &str| RuleEnd {
            net: networks.get(name).copied(),
            name: name.to_string(),
        };
        let rules: Vec<Rule> = rules
            .into_iter()
            .map(|(from, to, ports)| Rule {
                from: end(from),
                to: end(to),
                ports,
            })
            .collect();
        let named = rules
            .iter()
            .flat_map(|r| [r.from.name.clone(), r.to.name.clone()])
            .collect();
        Firewall {
            networks,
            rules,
            named,
        }
    }

    /// Whether some rule's end gives `name`: a party named so is judged by its name too; any
    /// other passes exactly where its network does.
    pub fn names(&self, name: &str) -> bool {
        self.named.contains(name)
    }

    /// A topology's firewall. A rule missing an end (the parser reported it) opens nothing.
    pub fn of(t: &Topology) -> Firewall {
        Firewall::new(
            t.networks.keys().map(String::as_str),
            t.firewall.iter().filter_map(|r| {
                Some((
                    r.from.as_ref()?.value.as_str(),
                    r.to.as_ref()?.value.as_str(),
                    r.ports
                        .as_ref()
                        .map(|ps| ps.iter().map(|p| p.value).collect()),
                ))
            }),
        )
    }

    /// The index of a network, as [`At`] carries it.
    pub fn network(&self, name: &str) -> Option<usize> {
        self.networks.get(name).copied()
    }

    /// Whether traffic from one place to another passes on `port` (`None`: not known).
    pub fn allows(&self, from: At<'_>, to: At<'_>, port: Option<u16>) -> bool {
        from.net == to.net
            || self.rules.iter().any(|r| {
                r.from.is(from)
                    && r.to.is(to)
                    && match (&r.ports, port) {
                        (None, _) | (Some(_), None) => true,
                        (Some(ps), Some(p)) => ps.contains(&p),
                    }
            })
    }

    /// [`Firewall::allows`] for parties named as the checker names them. A network the
    /// firewall does not know (the checker reports it elsewhere) is reached only from itself.
    pub fn allows_between<'a>(&self, from: Party<'a>, to: Party<'a>, port: u16) -> bool {
        let at = |p: Party<'a>| {
            Some(At {
                net: self.network(p.network)?,
                name: p.name,
            })
        };
        match (at(from), at(to)) {
            (Some(a), Some(b)) => self.allows(a, b, Some(port)),
            _ => from.network == to.network,
        }
    }
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
