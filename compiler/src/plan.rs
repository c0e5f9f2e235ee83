//! The plan: what every node and balancer must be told, computed once from a checked topology.
//!
//! Peers and ports come from the flows table; emitters only render the plan. The plan is also
//! what `apim node` reads back (one node of it, as TOML), so it is serde both ways.

use apim_topology::Topology;
use apim_topology::flows::{self, End, FLOWS, Listener as HopListener, Path};
use apim_topology::kubernetes::{DEFAULT_IMAGE, Resources};
use apim_topology::reach::{self, Route};
use apim_topology::timing::{
    CONNECT_TIMEOUT_MS, DATABASE_MS, HEALTH_FALL, HEALTH_INTERVAL_MS, HEALTH_RISE,
    HEALTH_TIMEOUT_MS, READ_TIMEOUT_MS, REVOCATION_BOUND_MS, SESSION_HOURS, TOKEN_MS,
};
use apim_topology::vocab::{BalancerKind, Component, Engine, Revocation, Role, TokenFormat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Health checks of balancers: the node admin `/ready`, every 2 s; 3 failures mark a node
/// down, 2 successes up again. A node is ready once its components can serve (a gateway after
/// it has read the registry) and until it starts draining; `/health` only says the process
/// answers (Kubernetes' liveness probe).
pub const READY_PATH: &str = "/ready";
pub const LIVE_PATH: &str = "/health";
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
    /// The cert-manager Issuer the Kubernetes output asks for certificates (`[tls] issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// What the Kubernetes and Compose workloads run: `[kubernetes]`, or `apim build`'s flags.
    #[serde(default)]
    pub workload: Workload,
}

/// The image every node's container runs and the resources it asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub image: String,
    pub resources: Resources,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            image: DEFAULT_IMAGE.to_string(),
            resources: Resources::default(),
        }
    }
}

impl Workload {
    pub(crate) fn of(t: &Topology) -> Workload {
        let mut w = Workload::default();
        if let Some(k) = &t.kubernetes {
            if let Some(image) = &k.image {
                w.image = image.value.clone();
            }
            for (key, value) in &k.resources {
                w.resources.set(key, value.value.clone());
            }
        }
        w
    }
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
    /// The internal listener: component-to-component endpoints, mutual TLS only.
    pub internal_port: u16,
    /// How long a portal session lasts, in milliseconds.
    #[serde(default = "default_session_ms")]
    pub session_ms: u64,
    /// The bound on one database operation, connecting included, in milliseconds.
    #[serde(default = "default_database_ms")]
    pub database_ms: u64,
    /// The SPIFFE ID its certificate carries and its peers check.
    pub identity: String,
    pub tls: TlsFiles,
    /// The access tokens of the deployment and how gateways check them.
    #[serde(default)]
    pub tokens: TokenPlan,
    pub listeners: Vec<Listener>,
    /// The endpoints of its internal listener and who may call each (from the flows table).
    pub internal: Vec<InternalEndpoint>,
    pub databases: Vec<DatabaseUse>,
    pub peers: Vec<Peer>,
    /// Which backends an API may have (publishers and gateways only).
    #[serde(default, skip_serializing_if = "BackendPlan::is_empty")]
    pub backends: BackendPlan,
}

/// The backends policy a publisher checks API backends against and a gateway connects under:
/// loopback, link-local, unspecified and multicast addresses are always refused, private ones
/// unless `allow` names them (`[deployment] backends`), and the deployment's own hosts always.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendPlan {
    /// The allow-list: address ranges, addresses and host names (`*.domain` for its hosts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// The deployment's own hosts: every node, balancer and database host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub own: Vec<String>,
}

impl BackendPlan {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.own.is_empty()
    }

    /// Adds hosts of the deployment (as a platform names them). Addresses are kept as the
    /// fewest exact ranges that cover them (`10.1.0.0/22`), names in order: every gateway and
    /// publisher holds the list, and a fleet's thousands of addresses are mostly consecutive.
    pub fn add_own<'a>(&mut self, hosts: impl IntoIterator<Item = &'a String>) {
        // Inclusive intervals of addresses, IPv4 and IPv6 apart.
        let mut v4: Vec<(u128, u128)> = Vec::new();
        let mut v6: Vec<(u128, u128)> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for h in self.own.drain(..).chain(hosts.into_iter().cloned()) {
            match own_entry(&h) {
                Some((std::net::IpAddr::V4(a), bits)) => {
                    v4.push(interval(u128::from(u32::from(a)), bits, 32));
                }
                Some((std::net::IpAddr::V6(a), bits)) => {
                    v6.push(interval(u128::from(a), bits, 128));
                }
                None => names.push(h.to_ascii_lowercase()),
            }
        }
        let mut own = ranges(v4, 32, &|a| {
            std::net::Ipv4Addr::from(u32::try_from(a).unwrap_or(u32::MAX)).to_string()
        });
        own.extend(ranges(v6, 128, &|a| {
            std::net::Ipv6Addr::from(a).to_string()
        }));
        names.sort();
        names.dedup();
        own.extend(names);
        self.own = own;
    }
}

/// An address (`10.1.0.7`) or a range written by [`BackendPlan::add_own`] (`10.1.0.0/22`),
/// as (network, prefix length); none for a name.
fn own_entry(h: &str) -> Option<(std::net::IpAddr, u32)> {
    let (addr, bits): (std::net::IpAddr, u32) = match h.split_once('/') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let a: std::net::IpAddr = h.parse().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= width).then_some((addr, bits))
}

/// `2^k - 1`, for k up to 128.
fn ones(k: u32) -> u128 {
    u128::MAX.checked_shr(128 - k.min(128)).unwrap_or(0)
}

/// The first and last address of `start/bits` in an address space `width` bits wide.
fn interval(start: u128, bits: u32, width: u32) -> (u128, u128) {
    let host = ones(width - bits);
    let first = start & !host;
    (first, first | host)
}

/// Intervals merged where they touch, each written as the fewest aligned ranges that cover
/// it exactly; a range of one address is the address alone.
fn ranges(mut all: Vec<(u128, u128)>, width: u32, show: &dyn Fn(u128) -> String) -> Vec<String> {
    all.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (a, b) in all {
        match merged.last_mut() {
            Some((_, last)) if a <= last.saturating_add(1) => *last = (*last).max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut out = Vec::new();
    for (first, last) in merged {
        let mut at = first;
        loop {
            // The largest aligned block from `at` that does not pass `last`.
            let mut k = at.trailing_zeros().min(width);
            while k > 0 && at.checked_add(ones(k)).is_none_or(|end| end > last) {
                k -= 1;
            }
            out.push(if k == 0 {
                show(at)
            } else {
                format!("{}/{}", show(at), width - k)
            });
            let end = at + ones(k);
            if end >= last {
                break;
            }
            at = end + 1;
        }
    }
    out
}

/// The host of a database URL (`engine://user:pass@host:port/db`), none for SQLite files.
fn database_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.starts_with("sqlite") {
        return None;
    }
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    (!host.is_empty() && !host.contains('$')).then(|| host.to_ascii_lowercase())
}

/// The deployment's access tokens: their format, the revocation policy and where the signing
/// keys are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPlan {
    pub format: TokenFormat,
    pub revocation: Revocation,
    /// How long a revoked token may work on a gateway that missed the news.
    pub revocation_bound_ms: u64,
    /// How long an access token lives (an hour; a drill's scenario may ask for less).
    #[serde(
        default = "default_token_ms",
        skip_serializing_if = "is_default_token_ms"
    )]
    pub lifetime_ms: u64,
    /// The `iss` of the key manager's JWTs and the `aud` gateways require.
    pub issuer: String,
    pub audience: String,
    /// The deployment's public signing keys (a JWKS), which every gateway reads at start.
    pub jwks: String,
    /// The signing key's seed, then the previous one's (kept so that its tokens stay valid
    /// until they expire): key managers only, never on another node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<String>,
}

/// Where `apim certs` writes the signing keys, beside the CA certificate.
pub const JWKS_FILE: &str = "jwks.json";
pub const SEED_FILES: [&str; 2] = ["jwt-signing.seed", "jwt-signing.previous.seed"];

impl Default for TokenPlan {
    /// A plan written before tokens were planned: opaque tokens, as then.
    fn default() -> TokenPlan {
        TokenPlan {
            format: TokenFormat::Opaque,
            revocation: Revocation::Strict,
            revocation_bound_ms: REVOCATION_BOUND_MS,
            lifetime_ms: TOKEN_MS,
            issuer: String::new(),
            audience: String::new(),
            jwks: String::new(),
            seeds: Vec::new(),
        }
    }
}

impl TokenPlan {
    /// The same files in `dir` (`apim node --certs DIR`), as `TlsFiles::in_dir` moves the
    /// certificates.
    pub fn in_dir(&mut self, dir: &str) {
        let dir = dir.trim_end_matches('/');
        self.jwks = format!("{dir}/{JWKS_FILE}");
        if !self.seeds.is_empty() {
            self.seeds = SEED_FILES.iter().map(|f| format!("{dir}/{f}")).collect();
        }
    }

    fn of(t: &Topology, deployment: &str, tls: &TlsFiles, key_manager: bool) -> TokenPlan {
        let d = &t.deployment;
        let dir = tls.ca.rsplit_once('/').map_or(".", |(d, _)| d);
        let dir = if dir.is_empty() { "/" } else { dir };
        TokenPlan {
            format: d.tokens.as_ref().map_or(TokenFormat::Jwt, |f| f.value),
            revocation: d
                .revocation
                .as_ref()
                .map_or(Revocation::Strict, |r| r.value),
            revocation_bound_ms: d
                .revocation_bound_ms
                .as_ref()
                .map_or(REVOCATION_BOUND_MS, |b| u64::from(b.value)),
            lifetime_ms: TOKEN_MS,
            issuer: format!("spiffe://{deployment}/key-manager"),
            audience: format!("spiffe://{deployment}/gateway"),
            jwks: format!("{dir}/{JWKS_FILE}"),
            seeds: if key_manager {
                SEED_FILES.iter().map(|f| format!("{dir}/{f}")).collect()
            } else {
                Vec::new()
            },
        }
    }
}

fn default_token_ms() -> u64 {
    TOKEN_MS
}

fn is_default_token_ms(ms: &u64) -> bool {
    *ms == TOKEN_MS
}

fn default_session_ms() -> u64 {
    u64::from(SESSION_HOURS) * 3_600_000
}

fn default_database_ms() -> u64 {
    DATABASE_MS
}

/// Where a node or balancer finds its PKI files. Defaults follow `apim certs`' layout under
/// `/etc/apim/tls`; `apim node --certs DIR` reads the same names from another folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// The deployment CA's certificate: what every peer's chain must end in.
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub const TLS_DIR: &str = "/etc/apim/tls";

/// The public certificate of an external balancer (`[tls] edge`), when not its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertPair {
    pub cert: String,
    pub key: String,
}

impl TlsFiles {
    /// The files of `name` as the topology's `[tls]` says, else `apim certs`' layout under
    /// `TLS_DIR`.
    pub fn of(t: &Topology, name: &str) -> TlsFiles {
        let default = TlsFiles::in_dir(TLS_DIR, name);
        let Some(tls) = &t.tls else { return default };
        let pattern = |p: &Option<apim_topology::Spanned<String>>, d: String| {
            p.as_ref().map_or(d, |p| p.value.replace("{name}", name))
        };
        TlsFiles {
            ca: pattern(&tls.ca, default.ca),
            cert: pattern(&tls.cert, default.cert),
            key: pattern(&tls.key, default.key),
        }
    }

    /// `apim certs`' layout in `dir` for a node or balancer called `name`.
    pub fn in_dir(dir: &str, name: &str) -> TlsFiles {
        let dir = dir.trim_end_matches('/');
        TlsFiles {
            ca: format!("{dir}/ca.crt"),
            cert: format!("{dir}/{name}.crt"),
            key: format!("{dir}/{name}.key"),
        }
    }
}

/// One endpoint of a node's internal listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalEndpoint {
    /// `METHOD /path`.
    pub endpoint: String,
    pub component: Component,
    /// SPIFFE IDs of the nodes admitted: those running a component whose hop to this one
    /// names the endpoint.
    pub callers: Vec<String>,
}

/// The SPIFFE ID of a node.
pub fn node_identity(deployment: &str, node: &str) -> String {
    format!("spiffe://{deployment}/node/{node}")
}

/// The SPIFFE ID of a balancer.
pub fn balancer_identity(deployment: &str, balancer: &str) -> String {
    format!("spiffe://{deployment}/balancer/{balancer}")
}

/// The name every node running `c` carries in its certificate, for balancers that verify a
/// host name rather than a SPIFFE ID.
pub fn component_name(deployment: &str, c: Component) -> String {
    format!("{}.{deployment}.apim", c.as_str())
}

/// The service name Kubernetes and Compose give a balancer.
pub fn balancer_service(balancer: &str) -> String {
    format!("lb-{balancer}")
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
    /// The SPIFFE IDs a peer answering here may present: the nodes running the component.
    pub identities: Vec<String>,
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
    pub identity: String,
    pub tls: TlsFiles,
    /// What an external balancer presents to clients instead of its own certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<CertPair>,
    pub routes: Vec<BalancerRoute>,
}

/// One listener of a balancer and the upstream behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancerRoute {
    pub component: Component,
    pub port: u16,
    /// `public`: TLS ends here and a new connection, verified against the deployment CA, goes
    /// to the node. `internal`: the connection is passed through to the node's internal
    /// listener untouched (L4), so the caller's certificate reaches it.
    pub listener: RouteListener,
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
    /// The SPIFFE ID the node must present.
    pub identity: String,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteListener {
    Public,
    Internal,
}

impl From<HopListener> for RouteListener {
    fn from(l: HopListener) -> RouteListener {
        match l {
            HopListener::Public => RouteListener::Public,
            HopListener::Internal => RouteListener::Internal,
        }
    }
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
        let deployment = t
            .deployment
            .name
            .as_ref()
            .map_or_else(|| "apim".into(), |n| n.value.clone());
        let peers = PeerTable::of(t, &deployment);
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
            let internal = internal_endpoints(t, &deployment, &components);
            for (i, h) in c.hosts.iter().enumerate() {
                let node = c.node_name(i);
                let tls = TlsFiles::of(t, &node);
                nodes.push(NodePlan {
                    identity: node_identity(&deployment, &node),
                    tokens: TokenPlan::of(
                        t,
                        &deployment,
                        &tls,
                        components.contains(&Component::KeyManager),
                    ),
                    tls,
                    name: node,
                    cluster: c.name.clone(),
                    ordinal: i + 1,
                    host: h.value.clone(),
                    bind: h.value.clone(),
                    network: name(c.network.as_ref()),
                    admin_port: c.admin_port(),
                    internal_port: c.internal_port(),
                    session_ms: u64::from(
                        t.deployment
                            .session_hours
                            .as_ref()
                            .map_or(SESSION_HOURS, |h| h.value),
                    ) * 3_600_000,
                    database_ms: t
                        .deployment
                        .database_timeout_ms
                        .as_ref()
                        .map_or(DATABASE_MS, |m| u64::from(m.value)),
                    listeners: listeners.clone(),
                    internal: internal.clone(),
                    databases: databases.clone(),
                    peers: node_peers.clone(),
                    backends: BackendPlan::default(),
                });
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let balancers: Vec<BalancerPlan> = t
            .load_balancers
            .values()
            .filter_map(|lb| balancer(t, lb, &deployment))
            .collect();
        // Publishers check API backends and gateways connect to them: both hold the policy.
        let mut own: Vec<String> = nodes.iter().map(|n| n.host.to_ascii_lowercase()).collect();
        own.extend(balancers.iter().map(|b| b.host.to_ascii_lowercase()));
        own.extend(
            t.databases
                .values()
                .filter_map(|d| database_host(&d.url.as_ref()?.value)),
        );
        let allow: Vec<String> = t
            .deployment
            .backends
            .iter()
            .map(|b| b.value.clone())
            .collect();
        // Merged once: every gateway holds the same list.
        let mut backends = BackendPlan {
            allow,
            own: Vec::new(),
        };
        backends.add_own(&own);
        for n in &mut nodes {
            if n.listeners
                .iter()
                .any(|l| matches!(l.component, Component::Publisher | Component::Gateway))
            {
                n.backends = backends.clone();
            }
        }
        Plan {
            workload: Workload::of(t),
            issuer: t
                .tls
                .as_ref()
                .and_then(|t| t.issuer.as_ref())
                .map(|i| i.value.clone()),
            deployment,
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
            issuer: self.issuer.clone(),
            workload: self.workload.clone(),
        }
    }

    /// The network a firewall rule's end sits on: a network is itself, a cluster and a balancer
    /// are on theirs.
    pub fn network_of(&self, party: &str) -> Option<&str> {
        if let Some(n) = self.networks.iter().find(|n| n.name == party) {
            return Some(&n.name);
        }
        if let Some(n) = self.nodes.iter().find(|n| n.cluster == party) {
            return Some(&n.network);
        }
        self.balancers
            .iter()
            .find(|b| b.name == party)
            .map(|b| b.network.as_str())
    }

    /// The names a node's certificate must carry: its host, its name, and the names the
    /// Kubernetes and Compose outputs give it.
    pub fn node_sans(&self, n: &NodePlan) -> Vec<String> {
        let ns = &self.deployment;
        let mut sans = vec![
            n.host.clone(),
            n.name.clone(),
            format!("{}.{}", n.name, n.cluster),
            format!("{}.{}.{ns}.svc", n.name, n.cluster),
            format!("{}.{}.{ns}.svc.cluster.local", n.name, n.cluster),
        ];
        // One name shared by every node of a component, which balancers that check host
        // names (nginx, HAProxy) verify against: an upstream mixes nodes.
        sans.extend(
            n.listeners
                .iter()
                .map(|l| component_name(&self.deployment, l.component)),
        );
        // A Kubernetes Service in front of the node passes TLS through: clients dialling it
        // see the node's certificate.
        for b in &self.balancers {
            if b.routes
                .iter()
                .any(|r| r.upstream.iter().any(|u| u.node == n.name))
            {
                let service = balancer_service(&b.name);
                sans.push(format!("{service}.{ns}.svc"));
                sans.push(service);
            }
        }
        sans.dedup();
        sans
    }

    /// The names a balancer's certificate must carry.
    pub fn balancer_sans(&self, b: &BalancerPlan) -> Vec<String> {
        let (ns, service) = (&self.deployment, balancer_service(&b.name));
        let mut sans = vec![
            b.host.clone(),
            b.name.clone(),
            format!("{service}.{ns}.svc"),
            format!("{service}.{ns}.svc.cluster.local"),
            service,
        ];
        sans.dedup();
        sans
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
    fn of(t: &Topology, deployment: &str) -> PeerTable {
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
                                port: c.port_for(to, hop.listener),
                                balancer: true,
                            });
                        }
                    }
                    Route::Direct(c) => endpoints.extend(
                        (0..c.hosts.len())
                            .map(|i| endpoint_of_node(c, i, c.port_for(to, hop.listener))),
                    ),
                }
            }
            endpoints.sort();
            endpoints.dedup();
            let identities = identities_running(t, deployment, to);
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
                    identities,
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

/// The SPIFFE IDs of every node running `component`.
fn identities_running(t: &Topology, deployment: &str, component: Component) -> Vec<String> {
    let mut ids: Vec<String> = t
        .clusters_running(component)
        .flat_map(|c| (0..c.hosts.len()).map(move |i| node_identity(deployment, &c.node_name(i))))
        .collect();
    ids.sort();
    ids
}

/// The internal endpoints of nodes running `components`, with the identities admitted to each.
fn internal_endpoints(
    t: &Topology,
    deployment: &str,
    components: &[Component],
) -> Vec<InternalEndpoint> {
    let mut out = Vec::new();
    for &c in components {
        for e in flows::internal_endpoints(c) {
            let mut callers: Vec<String> = flows::internal_callers(c, e)
                .into_iter()
                .flat_map(|from| identities_running(t, deployment, from))
                .collect();
            callers.sort();
            callers.dedup();
            out.push(InternalEndpoint {
                endpoint: e.to_string(),
                component: c,
                callers,
            });
        }
    }
    out
}

fn balancer(
    t: &Topology,
    lb: &apim_topology::model::LoadBalancer,
    deployment: &str,
) -> Option<BalancerPlan> {
    let listens = reach::balancer_ports(t, lb);
    let mut routes: BTreeMap<(u16, Component), BalancerRoute> = BTreeMap::new();
    for f in &lb.fronts {
        let Some(c) = t.clusters.get(&f.value) else {
            continue;
        };
        for comp in &c.components {
            for &(port, _, listener) in listens
                .iter()
                .filter(|(p, x, l)| *x == comp.value && *p == c.port_for(comp.value, *l))
            {
                let route = routes
                    .entry((port, comp.value))
                    .or_insert_with(|| BalancerRoute {
                        component: comp.value,
                        port,
                        listener: listener.into(),
                        sticky: listener == HopListener::Public && is_sticky(comp.value),
                        upstream: Vec::new(),
                        health: HealthCheck {
                            path: READY_PATH.into(),
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
                        identity: node_identity(deployment, &c.node_name(i)),
                    }));
            }
        }
    }
    Some(BalancerPlan {
        identity: balancer_identity(deployment, &lb.name),
        tls: TlsFiles::of(t, &lb.name),
        edge: match (lb.kind(), t.tls.as_ref().and_then(|t| t.edge.as_ref())) {
            (Some(BalancerKind::External), Some(e)) => Some(CertPair {
                cert: e.cert.value.clone(),
                key: e.key.value.clone(),
            }),
            _ => None,
        },
        name: lb.name.clone(),
        kind: lb.kind()?,
        network: lb.network.as_ref()?.value.clone(),
        host: lb.host.as_ref()?.value.clone(),
        routes: routes.into_values().collect(),
    })
}

#[cfg(test)]
mod own_tests {
    use super::BackendPlan;
    use proptest::prelude::*;

    fn own(hosts: &[&str]) -> Vec<String> {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut b = BackendPlan::default();
        b.add_own(&hosts);
        b.own
    }

    #[test]
    fn consecutive_addresses_become_the_fewest_exact_ranges() {
        assert_eq!(
            own(&[
                "10.1.0.6",
                "DB.internal",
                "10.1.0.1",
                "10.1.0.2",
                "10.1.0.3",
                "10.1.0.4",
                "10.1.0.5",
                "::1",
                "::2"
            ]),
            [
                "10.1.0.1",
                "10.1.0.2/31",
                "10.1.0.4/31",
                "10.1.0.6",
                "::1",
                "::2",
                "db.internal"
            ]
        );
        let fleet: Vec<String> = (0..1024)
            .map(|i| format!("10.1.{}.{}", i / 256, i % 256))
            .collect();
        let fleet: Vec<&str> = fleet.iter().map(String::as_str).collect();
        assert_eq!(own(&fleet), ["10.1.0.0/22"]);
        // Adding to a merged list merges again.
        let mut b = BackendPlan::default();
        b.add_own(&["10.1.0.0".to_string(), "10.1.0.1".to_string()]);
        b.add_own(&["10.1.0.2".to_string(), "10.1.0.3".to_string()]);
        assert_eq!(b.own, ["10.1.0.0/30"]);
    }

    proptest! {
        /// Every address given is covered, and no other.
        #[test]
        fn the_ranges_cover_exactly_the_addresses(
            addrs in proptest::collection::btree_set(0u32..600, 0..80)
        ) {
            let hosts: Vec<String> = addrs
                .iter()
                .map(|a| std::net::Ipv4Addr::from(0x0a01_0000 + a).to_string())
                .collect();
            let mut b = BackendPlan::default();
            b.add_own(&hosts);
            let policy = apim_topology::vocab::BackendRule::parse;
            let ranges: Vec<(u32, u32)> = b
                .own
                .iter()
                .map(|r| match policy(r) {
                    Ok(apim_topology::vocab::BackendRule::Range(std::net::IpAddr::V4(n), bits)) => {
                        let size = 1u32 << (32 - u32::from(bits));
                        (u32::from(n), size)
                    }
                    other => panic!("{r}: {other:?}"),
                })
                .collect();
            for a in 0u32..700 {
                let ip = 0x0a01_0000 + a;
                let covered = ranges.iter().any(|&(n, size)| ip >= n && ip - n < size);
                prop_assert_eq!(covered, addrs.contains(&a), "{}", a);
            }
        }
    }
}
