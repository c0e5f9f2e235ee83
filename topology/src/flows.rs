//! The flows table: every hop that publish, subscribe and invoke need, written down once.
//!
//! The checker reads it to decide which network paths must be open, the graph draws it, and
//! the compiler and simulator will read the same table. A hop may be added here; it may not be
//! hard-coded anywhere else.

use crate::vocab::{BalancerKind, Component, Role};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flow {
    Publish,
    Subscribe,
    Invoke,
}

impl Flow {
    pub const ALL: &'static [Flow] = &[Flow::Publish, Flow::Subscribe, Flow::Invoke];

    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Publish => "publish",
            Flow::Subscribe => "subscribe",
            Flow::Invoke => "invoke",
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// People and programs outside the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Client {
    /// API providers, who use the publisher.
    Provider,
    /// API consumers, who use the store.
    Consumer,
    /// Consumers' applications, which call the gateway.
    Application,
}

impl Client {
    pub fn as_str(self) -> &'static str {
        match self {
            Client::Provider => "API providers",
            Client::Consumer => "API consumers",
            Client::Application => "applications",
        }
    }

    /// Consumers and their applications come from the public network when there is one;
    /// providers are the organisation's own people.
    pub fn comes_from_public(self) -> bool {
        matches!(self, Client::Consumer | Client::Application)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    Client(Client),
    Component(Component),
    Database(Role),
}

/// How a hop reaches its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Straight to the target (one node, or a database).
    Direct,
    /// Straight to every node of every cluster running the target.
    EachNode,
    /// Through a balancer of this kind when the target cluster has two or more nodes.
    Balanced(BalancerKind),
}

/// Which listener of a node a hop to a component targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Listener {
    /// The component's own port: the public API, for clients.
    Public,
    /// The node's internal listener: mutual TLS, callers checked against this table.
    Internal,
}

#[derive(Clone, Copy, Debug)]
pub struct Hop {
    pub flow: Flow,
    pub from: End,
    pub to: End,
    pub why: &'static str,
    pub path: Path,
    /// Done off the request path (notifications, reconciliation): a request of the flow
    /// succeeds without it, and the flow converges through it.
    pub background: bool,
    /// The listener a hop to a component targets.
    pub listener: Listener,
    /// The endpoints (`METHOD /path`) of the target that this hop calls on its internal
    /// listener: the only ones the source's nodes are admitted to.
    pub endpoints: &'static [&'static str],
}

impl Hop {
    const fn in_background(mut self) -> Hop {
        self.background = true;
        self
    }

    /// A hop between components: to the target's internal listener, for these endpoints.
    const fn internal(mut self, endpoints: &'static [&'static str]) -> Hop {
        self.listener = Listener::Internal;
        self.endpoints = endpoints;
        self
    }
}

use BalancerKind::{External, Internal};
use Client::*;
use Component::*;
use End::{Client as C, Component as N, Database as D};
use Flow::*;
use Path::*;
use Role::*;

const fn hop(flow: Flow, from: End, to: End, why: &'static str, path: Path) -> Hop {
    Hop {
        flow,
        from,
        to,
        why,
        path,
        background: false,
        listener: Listener::Public,
        endpoints: &[],
    }
}

/// The table of DESIGN.md, "The flows table", one row per hop.
pub static FLOWS: &[Hop] = &[
    hop(
        Publish,
        C(Provider),
        N(Publisher),
        "create, publish, retire APIs",
        Balanced(External),
    ),
    hop(
        Publish,
        N(Publisher),
        D(User),
        "authenticate providers, check roles",
        Direct,
    ),
    hop(Publish, N(Publisher), D(Apim), "API records", Direct),
    hop(
        Publish,
        N(Publisher),
        D(Registry),
        "published API metadata",
        Direct,
    ),
    hop(
        Publish,
        N(Publisher),
        N(Gateway),
        "publish notification",
        EachNode,
    )
    .internal(&["POST /internal/apis"])
    .in_background(),
    hop(
        Publish,
        N(Gateway),
        D(Registry),
        "catch up at start and reconcile",
        Direct,
    )
    .in_background(),
    hop(
        Subscribe,
        C(Consumer),
        N(Store),
        "sign up, browse, applications, subscriptions",
        Balanced(External),
    ),
    hop(Subscribe, N(Store), D(User), "users", Direct),
    hop(Subscribe, N(Store), D(Registry), "published APIs", Direct),
    hop(
        Subscribe,
        N(Store),
        D(Apim),
        "applications and subscriptions",
        Direct,
    ),
    hop(
        Subscribe,
        N(Store),
        N(KeyManager),
        "consumer keys and tokens",
        Balanced(Internal),
    )
    .internal(&[
        "POST /internal/clients",
        "POST /internal/clients/revoke",
        "POST /internal/subscriptions/notify",
    ]),
    hop(Subscribe, N(KeyManager), D(User), "users and roles", Direct),
    hop(Subscribe, N(KeyManager), D(Apim), "keys and tokens", Direct),
    hop(
        Subscribe,
        N(KeyManager),
        N(Gateway),
        "revocation and subscription notifications",
        EachNode,
    )
    .internal(&["POST /internal/revoked", "POST /internal/subscribed"])
    .in_background(),
    hop(
        Invoke,
        C(Application),
        N(Gateway),
        "API calls, /token, /revoke, /introspect",
        Balanced(External),
    ),
    hop(
        Invoke,
        N(Gateway),
        N(KeyManager),
        "token introspection and subscription check",
        Balanced(Internal),
    )
    .internal(&[
        "POST /token",
        "POST /revoke",
        "POST /introspect",
        "POST /internal/validate",
        "POST /internal/revocations",
        "POST /internal/subscriptions",
        "GET /.well-known/jwks.json",
    ]),
];

/// Who may call an endpoint of a component's internal listener: the components whose hops to
/// it name the endpoint, read from the table. Empty: no one.
pub fn internal_callers(target: Component, endpoint: &str) -> Vec<Component> {
    let mut callers: Vec<Component> = FLOWS
        .iter()
        .filter_map(|h| match (h.from, h.to) {
            (N(from), N(to)) if to == target && h.endpoints.contains(&endpoint) => Some(from),
            _ => None,
        })
        .collect();
    callers.sort();
    callers.dedup();
    callers
}

/// Every endpoint of a component's internal listener, in table order.
pub fn internal_endpoints(target: Component) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for h in FLOWS {
        if h.to == N(target) {
            for e in h.endpoints {
                if !out.contains(e) {
                    out.push(e);
                }
            }
        }
    }
    out
}

/// The database roles a component uses, read from the table.
pub fn roles_used_by(component: Component) -> impl Iterator<Item = Role> {
    let mut roles: Vec<Role> = FLOWS
        .iter()
        .filter_map(|h| match (h.from, h.to) {
            (N(c), D(r)) if c == component => Some(r),
            _ => None,
        })
        .collect();
    roles.sort();
    roles.dedup();
    roles.into_iter()
}

/// The balancer kinds that must front a multi-node cluster running `component`.
pub fn balancer_kinds_needed(component: Component) -> impl Iterator<Item = BalancerKind> {
    let mut kinds: Vec<BalancerKind> = FLOWS
        .iter()
        .filter_map(|h| match (h.to, h.path) {
            (N(c), Balanced(k)) if c == component => Some(k),
            _ => None,
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds.into_iter()
}
