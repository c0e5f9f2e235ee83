//! The plan: what every node and balancer must be told, computed once from a checked topology.
//!
//! Peers and ports come from the flows table; emitters only render the plan. The plan is also
//! what `apim node` reads back (one node of it, as TOML), so it is serde both ways.

use apim_topology::Topology;
use apim_topology::flows::{self, End, FLOWS, Path};
use apim_topology::reach::{self, Route};
use apim_topology::vocab::{BalancerKind, Component, Engine, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Health checks of balancers: the node admin endpoint, every 2 s; 3 failures mark a node
/// down, 2 successes up again.
pub const HEALTH_PATH: &str = "/health";
pub const HEALTH_INTERVAL_MS: u64 = 2_000;
pub const HEALTH_TIMEOUT_MS: u64 = 1_000;
pub const HEALTH_FALL: u32 = 3;
pub const HEALTH_RISE: u32 = 2;
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
pub const READ_TIMEOUT_MS: u64 = 60_000;
/// The cookie the publisher and store set for a login session; balancers stick on it.
pub const SESSION_COOKIE: &str = "apim_session";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub deployment: String,
    pub networks: Vec<NetworkPlan>,
    pub firewall: Vec<FirewallPlan>,
    pub databases: Vec<DatabasePlan>,
    pub nodes: Vec<NodePlan>,
    pub balancers: Vec<BalancerPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    pub name: String,
    pub public: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallPlan {
    pub from: String,
    pub to: String,
    /// Absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabasePlan {
    pub name: String,
    pub roles: Vec<Role>,
    pub engine: Engine,
    /// As written in the topology: `${NAME}` references stay references.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// One node: a machine running one or more components of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    pub name: String,
    pub cluster: String,
    /// 1-based position in the cluster.
    pub ordinal: usize,
    /// The address other parts use to reach this node.
    pub host: String,
    /// The address the node binds; the same as `host` unless a platform says otherwise.
    pub bind: String,
    pub network: String,
    pub admin_port: u16,
    pub listeners: Vec<Listener>,
    pub databases: Vec<DatabaseUse>,
    pub peers: Vec<Peer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub component: Component,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseUse {
    pub role: Role,
    pub database: String,
    pub engine: Engine,
    pub url: String,
}

/// How a peer is reached, from the flows table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerPath {
    /// One of the endpoints will do (a balancer, or a single node).
    Any,
    /// Every endpoint must be told (publish and revocation notifications).
    EachNode,
}

/// A component this node calls, with every flow step that needs it and where it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub component: Component,
    pub path: PeerPath,
    /// `flow: why` for each hop of the flows table this peer serves.
    pub flows: Vec<String>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// A node name, or a balancer name when `balancer` is set.
    pub name: String,
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub balancer: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancerPlan {
    pub name: String,
    pub kind: BalancerKind,
    pub network: String,
    pub host: String,
    pub routes: Vec<BalancerRoute>,
}

/// One listener of a balancer and the upstream behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancerRoute {
    pub component: Component,
    pub port: u16,
    /// Publisher and store keep a client on one node (login sessions); the others do not.
    pub sticky: bool,
    pub upstream: Vec<Upstream>,
    pub health: HealthCheck,
    pub timeouts: Timeouts,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub node: String,
    pub host: String,
    pub port: u16,
    pub admin_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub fall: u32,
    pub rise: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub connect_ms: u64,
    pub read_ms: u64,
}

pub fn is_sticky(c: Component) -> bool {
    matches!(c, Component::Publisher | Component::Store)
}

impl Plan {
    /// The plan of a topology that checked without errors. Items the checker would have
    /// rejected (unknown networks, missing hosts) are skipped rather than guessed.
    pub fn of(t: &Topology) -> Plan {
        let name = |n: Option<&apim_topology::Spanned<String>>| {
            n.map(|n| n.value.clone()).unwrap_or_default()
        };
        let networks = t
            .networks
            .values()
            .map(|n| NetworkPlan {
                name: n.name.clone(),
                public: n.public,
            })
            .collect();
        let mut firewall: Vec<FirewallPlan> = t
            .firewall
            .iter()
            .map(|r| FirewallPlan {
                from: name(r.from.as_ref()),
                to: name(r.to.as_ref()),
                ports: r
                    .ports
                    .as_ref()
                    .map(|p| p.iter().map(|p| p.value).collect()),
            })
            .collect();
        firewall.sort_by(|a, b| (&a.from, &a.to, &a.ports).cmp(&(&b.from, &b.to, &b.ports)));
        let databases = t
            .databases
            .values()
            .filter_map(|d| {
                Some(DatabasePlan {
                    name: d.name.clone(),
                    roles: d.roles.iter().map(|r| r.value).collect(),
                    engine: d.engine()?,
                    url: d.url.as_ref()?.value.clone(),
                    network: d.network.as_ref().map(|n| n.value.clone()),
                })
            })
            .collect();
        let peers = PeerTable::of(t);
        let mut nodes = Vec::new();
        for c in t.clusters.values() {
            let components: Vec<Component> = c.components.iter().map(|c| c.value).collect();
            let listeners: Vec<Listener> = components
                .iter()
                .map(|&comp| Listener {
                    component: comp,
                    port: c.port(comp),
                })
                .collect();
            let mut roles: Vec<Role> = components
                .iter()
                .flat_map(|&comp| flows::roles_used_by(comp))
                .collect();
            roles.sort();
            roles.dedup();
            let databases: Vec<DatabaseUse> = roles
                .iter()
                .filter_map(|&role| {
                    let d = t.database_for(role)?;
                    Some(DatabaseUse {
                        role,
                        database: d.name.clone(),
                        engine: d.engine()?,
                        url: d.url.as_ref()?.value.clone(),
                    })
                })
                .collect();
            let node_peers = peers.for_components(&components);
            for (i, h) in c.hosts.iter().enumerate() {
                nodes.push(NodePlan {
                    name: c.node_name(i),
                    cluster: c.name.clone(),
                    ordinal: i + 1,
                    host: h.value.clone(),
                    bind: h.value.clone(),
                    network: name(c.network.as_ref()),
                    admin_port: c.admin_port(),
                    listeners: listeners.clone(),
                    databases: databases.clone(),
                    peers: node_peers.clone(),
                });
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let balancers = t
            .load_balancers
            .values()
            .filter_map(|lb| balancer(t, lb))
            .collect();
        Plan {
            deployment: t
                .deployment
                .name
                .as_ref()
                .map_or_else(|| "apim".into(), |n| n.value.clone()),
            networks,
            firewall,
            databases,
            nodes,
            balancers,
        }
    }

    /// The plan without its nodes and balancers, the cheap part to copy.
    pub fn clone_without_members(&self) -> Plan {
        Plan {
            deployment: self.deployment.clone(),
            networks: self.networks.clone(),
            firewall: self.firewall.clone(),
            databases: self.databases.clone(),
            nodes: Vec::new(),
            balancers: Vec::new(),
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

fn endpoint_of_node(c: &apim_topology::model::Cluster, i: usize, port: u16) -> Endpoint {
    Endpoint {
        name: c.node_name(i),
        host: c.hosts[i].value.clone(),
        port,
        balancer: false,
    }
}

/// The peers of each component, computed once per deployment: every node running the same
/// components gets the same list.
struct PeerTable {
    by_component: BTreeMap<Component, Vec<Peer>>,
}

impl PeerTable {
    fn of(t: &Topology) -> PeerTable {
        let mut by_component: BTreeMap<Component, Vec<Peer>> = BTreeMap::new();
        for hop in FLOWS {
            let (End::Component(from), End::Component(to)) = (hop.from, hop.to) else {
                continue;
            };
            let path = if hop.path == Path::EachNode {
                PeerPath::EachNode
            } else {
                PeerPath::Any
            };
            let mut endpoints = Vec::new();
            for r in reach::routes(t, to, hop.path) {
                match r {
                    Route::Via(lb, c) => {
                        if let Some(h) = &lb.host {
                            endpoints.push(Endpoint {
                                name: lb.name.clone(),
                                host: h.value.clone(),
                                port: c.port(to),
                                balancer: true,
                            });
                        }
                    }
                    Route::Direct(c) => endpoints
                        .extend((0..c.hosts.len()).map(|i| endpoint_of_node(c, i, c.port(to)))),
                }
            }
            endpoints.sort();
            endpoints.dedup();
            let flow = format!("{}: {}", hop.flow, hop.why);
            let peers = by_component.entry(from).or_default();
            match peers
                .iter_mut()
                .find(|p| p.component == to && p.path == path && p.endpoints == endpoints)
            {
                Some(p) => p.flows.push(flow),
                None => peers.push(Peer {
                    component: to,
                    path,
                    flows: vec![flow],
                    endpoints,
                }),
            }
        }
        PeerTable { by_component }
    }

    fn for_components(&self, components: &[Component]) -> Vec<Peer> {
        let mut out: Vec<Peer> = Vec::new();
        for c in components {
            for p in self.by_component.get(c).into_iter().flatten() {
                match out.iter_mut().find(|o| {
                    o.component == p.component && o.path == p.path && o.endpoints == p.endpoints
                }) {
                    Some(o) => {
                        for f in &p.flows {
                            if !o.flows.contains(f) {
                                o.flows.push(f.clone());
                            }
                        }
                    }
                    None => out.push(p.clone()),
                }
            }
        }
        out.sort_by_key(|p| (p.component, p.path));
        out
    }
}

fn balancer(t: &Topology, lb: &apim_topology::model::LoadBalancer) -> Option<BalancerPlan> {
    let mut routes: BTreeMap<(u16, Component), BalancerRoute> = BTreeMap::new();
    for f in &lb.fronts {
        let Some(c) = t.clusters.get(&f.value) else {
            continue;
        };
        for comp in &c.components {
            let port = c.port(comp.value);
            let route = routes
                .entry((port, comp.value))
                .or_insert_with(|| BalancerRoute {
                    component: comp.value,
                    port,
                    sticky: is_sticky(comp.value),
                    upstream: Vec::new(),
                    health: HealthCheck {
                        path: HEALTH_PATH.into(),
                        interval_ms: HEALTH_INTERVAL_MS,
                        timeout_ms: HEALTH_TIMEOUT_MS,
                        fall: HEALTH_FALL,
                        rise: HEALTH_RISE,
                    },
                    timeouts: Timeouts {
                        connect_ms: CONNECT_TIMEOUT_MS,
                        read_ms: READ_TIMEOUT_MS,
                    },
                });
            route
                .upstream
                .extend(c.hosts.iter().enumerate().map(|(i, h)| Upstream {
                    node: c.node_name(i),
                    host: h.value.clone(),
                    port,
                    admin_port: c.admin_port(),
                }));
        }
    }
    Some(BalancerPlan {
        name: lb.name.clone(),
        kind: lb.kind()?,
        network: lb.network.as_ref()?.value.clone(),
        host: lb.host.as_ref()?.value.clone(),
        routes: routes.into_values().collect(),
    })
}
