//! The checked model of a topology: what the parser built from the file, with spans kept.
//!
//! Maps are keyed by name, so iteration never depends on the order of tables in the file.
//! Items the parser could only partly read are kept with the parts it could, so one mistake
//! does not cascade into others; rules skip what is missing.

use crate::source::{Span, Spanned};
use crate::vocab::{ADMIN_PORT, BalancerKind, Component, Engine, Role};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub deployment: Deployment,
    pub networks: BTreeMap<String, Network>,
    pub firewall: Vec<FirewallRule>,
    pub databases: BTreeMap<String, Database>,
    pub clusters: BTreeMap<String, Cluster>,
    pub load_balancers: BTreeMap<String, LoadBalancer>,
    /// Where the PKI files are, when `[tls]` says.
    pub tls: Option<Tls>,
    /// What the Kubernetes and Compose outputs run, when `[kubernetes]` says.
    pub kubernetes: Option<Kubernetes>,
    /// Cluster name -> names of the balancers that front it; derived by [`Topology::index`].
    pub fronted_by: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, Default)]
pub struct Deployment {
    pub name: Option<Spanned<String>>,
    pub pattern: Option<Spanned<String>>,
    /// How long portal sessions last (`session_hours`).
    pub session_hours: Option<Spanned<u32>>,
    /// The bound on one database operation (`database_timeout_ms`).
    pub database_timeout_ms: Option<Spanned<u32>>,
    /// What access tokens the key manager issues (`tokens`; JWT when absent).
    pub tokens: Option<Spanned<crate::vocab::TokenFormat>>,
    /// What a gateway does when its revocation list may be stale (`revocation`; strict when
    /// absent).
    pub revocation: Option<Spanned<crate::vocab::Revocation>>,
    /// How long a revoked token may keep working on a gateway that missed the news
    /// (`revocation_bound_ms`).
    pub revocation_bound_ms: Option<Spanned<u32>>,
    /// The backends allow-list (`backends`): private ranges and hosts an API's backend may be
    /// at; loopback, link-local and the deployment's own hosts never.
    pub backends: Vec<Spanned<String>>,
    /// The `[deployment]` header, or the start of the file when it is missing.
    pub span: Span,
}

/// `[tls]`: where nodes and balancers find their PKI files. `{name}` in a pattern is the node
/// or balancer name.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    pub span: Span,
    pub ca: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// The public certificate external balancers present to clients.
    pub edge: Option<EdgeCert>,
    /// A cert-manager Issuer the Kubernetes output asks for certificates.
    pub issuer: Option<Spanned<String>>,
}

/// `[kubernetes]`: the image the workloads run and the resources each node's container asks for.
#[derive(Clone, Debug, Default)]
pub struct Kubernetes {
    pub span: Span,
    pub image: Option<Spanned<String>>,
    /// By key (`cpu_request`, `memory_request`, `cpu_limit`, `memory_limit`), as written.
    pub resources: BTreeMap<&'static str, Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct EdgeCert {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    /// The table's key, where messages about the network point.
    pub span: Span,
    pub public: bool,
}

#[derive(Clone, Debug)]
pub struct FirewallRule {
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    /// `None` allows every port.
    pub ports: Option<Vec<Spanned<u16>>>,
    pub span: Span,
}

impl FirewallRule {
    pub fn allows_port(&self, port: u16) -> bool {
        self.ports
            .as_ref()
            .is_none_or(|ports| ports.iter().any(|p| p.value == port))
    }
}

#[derive(Clone, Debug)]
pub struct Database {
    pub name: String,
    pub span: Span,
    pub roles: Vec<Spanned<Role>>,
    pub engine: Option<Spanned<Engine>>,
    pub url: Option<Spanned<String>>,
    /// Host and port read from `url`, for engines reached over the network.
    pub endpoint: Option<DbEndpoint>,
    /// The URL writes a password out instead of a `${NAME}` reference.
    pub literal_password: bool,
    pub network: Option<Spanned<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbEndpoint {
    pub host: String,
    pub port: u16,
}

impl Database {
    pub fn serves(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r.value == role)
    }

    pub fn engine(&self) -> Option<Engine> {
        self.engine.as_ref().map(|e| e.value)
    }
}

#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub span: Span,
    pub components: Vec<Spanned<Component>>,
    pub network: Option<Spanned<String>>,
    pub hosts: Vec<Spanned<String>>,
    pub hosts_span: Option<Span>,
    /// Per-component port overrides.
    pub ports: BTreeMap<Component, Spanned<u16>>,
    /// Override of the node admin port.
    pub admin_port: Option<Spanned<u16>>,
    /// Override of the node internal listener's port.
    pub internal_port: Option<Spanned<u16>>,
}

impl Cluster {
    pub fn runs(&self, component: Component) -> bool {
        self.components.iter().any(|c| c.value == component)
    }

    pub fn port(&self, component: Component) -> u16 {
        self.ports
            .get(&component)
            .map_or(component.default_port(), |p| p.value)
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port.as_ref().map_or(ADMIN_PORT, |p| p.value)
    }

    pub fn internal_port(&self) -> u16 {
        self.internal_port
            .as_ref()
            .map_or(crate::vocab::INTERNAL_PORT, |p| p.value)
    }

    /// The port a hop to `component` on this cluster targets: the component's own listener
    /// for clients, the internal listener between components.
    pub fn port_for(&self, component: Component, listener: crate::flows::Listener) -> u16 {
        match listener {
            crate::flows::Listener::Public => self.port(component),
            crate::flows::Listener::Internal => self.internal_port(),
        }
    }

    pub fn node_count(&self) -> usize {
        self.hosts.len()
    }

    /// Node names: the cluster name and a 1-based index.
    pub fn node_name(&self, index: usize) -> String {
        format!("{}-{}", self.name, index + 1)
    }

    /// Where a message about the cluster's nodes points: its hosts, or its name.
    pub fn hosts_or_name_span(&self) -> Span {
        self.hosts_span.unwrap_or(self.span)
    }
}

#[derive(Clone, Debug)]
pub struct LoadBalancer {
    pub name: String,
    pub span: Span,
    pub kind: Option<Spanned<BalancerKind>>,
    pub network: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub fronts: Vec<Spanned<String>>,
    pub fronts_span: Option<Span>,
}

impl LoadBalancer {
    pub fn kind(&self) -> Option<BalancerKind> {
        self.kind.as_ref().map(|k| k.value)
    }

    pub fn fronts(&self, cluster: &str) -> bool {
        self.fronts.iter().any(|f| f.value == cluster)
    }
}

impl Topology {
    pub fn clusters_running(&self, component: Component) -> impl Iterator<Item = &Cluster> {
        self.clusters.values().filter(move |c| c.runs(component))
    }

    pub fn database_for(&self, role: Role) -> Option<&Database> {
        self.databases.values().find(|d| d.serves(role))
    }

    pub fn network_of<'a>(&'a self, name: Option<&Spanned<String>>) -> Option<&'a Network> {
        name.and_then(|n| self.networks.get(&n.value))
    }

    /// Computes the derived lookups; the parser calls it once the maps are complete.
    pub fn index(&mut self) {
        self.fronted_by.clear();
        for lb in self.load_balancers.values() {
            for f in &lb.fronts {
                self.fronted_by
                    .entry(f.value.clone())
                    .or_default()
                    .push(lb.name.clone());
            }
        }
    }

    /// The balancers whose `fronts` name `cluster`, in name order.
    pub fn balancers_fronting<'a>(
        &'a self,
        cluster: &str,
    ) -> impl Iterator<Item = &'a LoadBalancer> + 'a {
        self.fronted_by
            .get(cluster)
            .into_iter()
            .flatten()
            .filter_map(|name| self.load_balancers.get(name))
    }

    pub fn has_public_network(&self) -> bool {
        self.networks.values().any(|n| n.public)
    }
}
