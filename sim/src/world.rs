//! The simulated deployment: every node and balancer of a plan, the databases in memory, a
//! virtual network with the plan's firewall, and the faults in force. Nodes run the real
//! component logic (`apim_components::Node`) over [`SimWorld`].

use crate::exec::Handle;
use crate::rng::Rng;
use apim_compiler::plan::{NodePlan, Peer as PlanPeer, PeerPath, Plan, RouteListener};
use apim_components::balancer::{self, Pool};
pub use apim_components::defects::{Defect, Defects};
use apim_components::guard::{Clock, Databases, Guarded};
use apim_components::jwt::Jwks;
use apim_components::mem::{MemStorage, Role};
use apim_components::tokens::{Revocation, TokenFormat, Tokens};
use apim_components::world::{Api, Application, ClientKeys, Db, Failures, Session, Token, User};
use apim_components::{CallError, Node, Peer, Request, Response, Storage, World};
use apim_topology::reach::{At, Firewall};
use apim_topology::vocab::Component;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

/// Milliseconds since the Unix epoch when a simulation starts (2026-01-01).
pub const EPOCH_MS: u64 = 1_767_225_600_000;
/// One way, inside a network and between two.
const LATENCY_SAME_US: u64 = 100;
const LATENCY_CROSS_US: u64 = 300;
const BACKEND_US: u64 = 200;
/// A packet that is dropped (firewall, partition, a node cut off) costs the connect timeout.
const CONNECT_TIMEOUT_US: u64 = apim_topology::timing::CONNECT_TIMEOUT_MS * 1000;
const CALL_TIMEOUT_US: u64 = apim_topology::timing::CALL_TIMEOUT_MS * 1000;
const NOTIFY_EACH_US: u64 = apim_topology::timing::NOTIFY_EACH_MS * 1000;

/// Extra latency and loss on the traffic from one network to another.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFault {
    pub latency_us: u64,
    pub loss: f64,
}

/// The faults in force now.
#[derive(Default)]
pub struct Faults {
    pub isolated: BTreeSet<usize>,
    /// (from network, to network): traffic dropped.
    pub blocked: BTreeSet<(usize, usize)>,
    pub links: BTreeMap<(usize, usize), LinkFault>,
    pub balancers_down: BTreeSet<usize>,
    /// Nodes and balancers whose certificate has expired: no TLS handshake with them succeeds.
    pub expired_nodes: BTreeSet<usize>,
    pub expired_balancers: BTreeSet<usize>,
    /// Database roles whose database accepts connections and never answers.
    pub db_blackholed: BTreeSet<Role>,
}

/// Where traffic comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub net: usize,
    pub node: Option<usize>,
    /// A balancer's own traffic (health checks, its side of a proxied request).
    pub balancer: Option<usize>,
}

/// What a message is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A node's component listener, or its admin listener (`None`).
    Node(usize, Option<Peer>),
    /// A node's internal listener: the caller's identity goes with the message.
    Internal(usize),
    /// A balancer's route.
    Balancer(usize, usize),
}

struct NodeState {
    up: bool,
    /// False once a stopping node closed its listeners: new connections are refused, what it
    /// is answering still completes.
    accepting: bool,
    incarnation: u64,
    node: Arc<Node>,
    world: Arc<SimWorld>,
}

struct BalancerState {
    pools: Vec<Mutex<Pool>>,
}

/// A plan's firewall: the same evaluation the checker makes of the topology.
pub fn firewall(plan: &Plan) -> Firewall {
    Firewall::new(
        plan.networks.iter().map(|n| n.name.as_str()),
        plan.firewall
            .iter()
            .map(|r| (r.from.as_str(), r.to.as_str(), r.ports.clone())),
    )
}

/// Whether traffic passes: no partition drops it between the two networks and the firewall
/// lets it through.
pub fn passes(
    firewall: &Firewall,
    blocked: &BTreeSet<(usize, usize)>,
    from: At<'_>,
    to: At<'_>,
    port: Option<u16>,
) -> bool {
    !blocked.contains(&(from.net, to.net)) && firewall.allows(from, to, port)
}

/// The whole simulated deployment.
pub struct Deployment {
    pub exec: Handle,
    pub plan: Plan,
    pub storage: MemStorage,
    pub rng: Mutex<Rng>,
    pub faults: Mutex<Faults>,
    firewall: Firewall,
    /// The network of each node and balancer, looked up once.
    node_nets: Vec<usize>,
    balancer_nets: Vec<usize>,
    /// Per balancer route, the node index of each upstream.
    upstreams: Vec<Vec<Vec<Option<usize>>>>,
    node_ids: BTreeMap<String, usize>,
    balancer_ids: BTreeMap<String, usize>,
    /// The network of each database role (`None`: reachable from everywhere).
    db_nets: BTreeMap<Role, Option<usize>>,
    nodes: Vec<Mutex<Option<NodeState>>>,
    balancers: Vec<BalancerState>,
    defects: Defects,
    /// Per node: its access tokens (a key manager's signing key comes from the run's seed).
    tokens: Vec<Tokens>,
    /// What the workload adds to the backend's answer, in microseconds.
    /// The backend's added latency: median and 99th percentile, in milliseconds.
    backend_latency_ms: std::sync::atomic::AtomicU64,
    backend_latency_p99_ms: std::sync::atomic::AtomicU64,
    /// The share of backend requests that break before an answer (an `f64`'s bits).
    backend_breaks: std::sync::atomic::AtomicU64,
    /// Requests the backend got: by (read, broken), as `2 * read + broken`.
    backend_requests: [std::sync::atomic::AtomicU64; 4],
    /// Internal requests a key manager received from a gateway (catch-ups, key and token
    /// questions): what a fleet of gateways costs the key managers.
    km_from_gateways: std::sync::atomic::AtomicU64,
    /// Reads of the revocations by key managers (their catch-up feeds).
    catch_up_reads: std::sync::atomic::AtomicU64,
    /// JWT signatures checked, by (key, signed, signature): every simulated gateway sees the
    /// same tokens, and the answer is the real check's, made once. Bounded; a forgotten one
    /// is checked again.
    signatures: Mutex<HashMap<Vec<u8>, bool>>,
}

/// Signatures remembered at most (about 40 MB).
const SIGNATURES_MAX: usize = 100_000;

/// What a signature check is remembered by: lengths first, so that no two different (key,
/// signed, signature) read as the same bytes.
fn signature_id(key: &[u8], signed: &[u8], sig: &[u8]) -> Vec<u8> {
    let lengths = [key.len(), signed.len(), sig.len()].map(|n| (n as u64).to_le_bytes());
    [&lengths.concat()[..], key, signed, sig].concat()
}

#[cfg(test)]
mod signature_tests {
    #[test]
    fn a_signature_check_is_remembered_by_every_part_apart() {
        let id = super::signature_id;
        assert_ne!(
            id(b"k", b"head.claims", b"sig"),
            id(b"k", b"head.claim", b"ssig")
        );
        assert_ne!(
            id(b"kh", b"ead.claims", b"sig"),
            id(b"k", b"head.claims", b"sig")
        );
        assert_eq!(id(b"k", b"m", b"s"), id(b"k", b"m", b"s"));
    }
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response, CallError>> + Send + 'a>>;

/// The signing key of a simulated deployment: drawn from the run's seed, so a run replays
/// with the same tokens.
fn signing_seed(seed: u64) -> [u8; 32] {
    apim_components::secret::digest(&format!("apim simulated signing key {seed}"))
}

fn node_tokens(plan: &Plan, seed: u64, token_ms: u64) -> Vec<Tokens> {
    let seeds = [signing_seed(seed)];
    let published = Tokens::new(
        (TokenFormat::Jwt, Revocation::Strict, 0),
        "",
        "",
        &seeds,
        Jwks::default(),
    )
    .map(|t| t.published())
    .unwrap_or_default();
    plan.nodes
        .iter()
        .map(|n| {
            let t = &n.tokens;
            let signs = n
                .listeners
                .iter()
                .any(|l| l.component == Component::KeyManager);
            Tokens::new(
                (t.format, t.revocation, t.revocation_bound_ms),
                &t.issuer,
                &t.audience,
                if signs { &seeds } else { &[] },
                published.clone(),
            )
            .unwrap_or_else(|_| Tokens::opaque())
            .living(token_ms)
        })
        .collect()
}

impl Deployment {
    /// A deployment of `plan`: its randomness from `seed`, with deliberate `defects` (the
    /// simulator's own tests) and access tokens that live `token_ms`.
    pub fn new(
        plan: Plan,
        exec: Handle,
        seed: u64,
        defects: Defects,
        token_ms: u64,
    ) -> Arc<Deployment> {
        let firewall = firewall(&plan);
        let mut db_nets = BTreeMap::new();
        for d in &plan.databases {
            for r in &d.roles {
                let net = d.network.as_ref().and_then(|n| firewall.network(n));
                db_nets.insert(*r, net);
            }
        }
        let node_ids = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let balancer_ids = plan
            .balancers
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        let balancers = plan
            .balancers
            .iter()
            .map(|b| BalancerState {
                pools: b
                    .routes
                    .iter()
                    .map(|r| {
                        Mutex::new(Pool::new(
                            r.upstream.iter().map(|u| u.node.clone()),
                            r.health.fall,
                            r.health.rise,
                        ))
                    })
                    .collect(),
            })
            .collect();
        let nodes = plan.nodes.iter().map(|_| Mutex::new(None)).collect();
        let net = |n: &str| firewall.network(n).unwrap_or(0);
        let node_nets = plan.nodes.iter().map(|n| net(&n.network)).collect();
        let balancer_nets = plan.balancers.iter().map(|b| net(&b.network)).collect();
        let upstreams = plan
            .balancers
            .iter()
            .map(|b| {
                b.routes
                    .iter()
                    .map(|r| {
                        r.upstream
                            .iter()
                            .map(|u| plan.nodes.iter().position(|n| n.name == u.node))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let tokens = node_tokens(&plan, seed, token_ms);
        Arc::new(Deployment {
            tokens,
            exec,
            plan,
            storage: MemStorage::with_defects(defects),
            rng: Mutex::new(Rng::new(seed)),
            faults: Mutex::default(),
            node_ids,
            balancer_ids,
            firewall,
            node_nets,
            balancer_nets,
            upstreams,
            db_nets,
            nodes,
            balancers,
            defects,
            backend_latency_ms: Default::default(),
            backend_latency_p99_ms: Default::default(),
            backend_breaks: Default::default(),
            backend_requests: Default::default(),
            km_from_gateways: Default::default(),
            catch_up_reads: Default::default(),
            signatures: Mutex::default(),
        })
    }

    pub fn now_us(&self) -> u64 {
        self.exec.now_us()
    }

    pub fn now_ms(&self) -> u64 {
        EPOCH_MS + self.exec.now_us() / 1000
    }

    pub fn rng(&self) -> MutexGuard<'_, Rng> {
        guard(&self.rng)
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        guard(&self.faults)
    }

    pub fn network(&self, name: &str) -> Option<usize> {
        self.firewall.network(name)
    }

    pub fn node_id(&self, name: &str) -> Option<usize> {
        self.node_ids.get(name).copied()
    }

    pub fn balancer_id(&self, name: &str) -> Option<usize> {
        self.balancer_ids.get(name).copied()
    }

    pub fn node_place(&self, i: usize) -> Place {
        Place {
            net: self.node_nets[i],
            node: Some(i),
            balancer: None,
        }
    }

    fn place_of(&self, t: Target) -> Place {
        match t {
            Target::Node(i, _) | Target::Internal(i) => self.node_place(i),
            Target::Balancer(b, _) => Place {
                net: self.balancer_nets[b],
                node: None,
                balancer: Some(b),
            },
        }
    }

    fn port_of(&self, t: Target) -> u16 {
        match t {
            Target::Node(i, None) => self.plan.nodes[i].admin_port,
            Target::Internal(i) => self.plan.nodes[i].internal_port,
            Target::Node(i, Some(p)) => self.plan.nodes[i]
                .listeners
                .iter()
                .find(|l| l.component == p)
                .map_or(0, |l| l.port),
            Target::Balancer(b, r) => self.plan.balancers[b].routes[r].port,
        }
    }

    /// Whether the firewall and the faults let traffic from one network to another through.
    /// A place as a firewall rule sees it: its network, and its cluster or balancer.
    pub fn party(&self, p: Place) -> At<'_> {
        let name = match (p.node, p.balancer) {
            (_, Some(b)) => Some(self.plan.balancers[b].name.as_str()),
            (Some(i), None) => Some(self.plan.nodes[i].cluster.as_str()),
            (None, None) => None,
        };
        At { net: p.net, name }
    }

    pub fn net_allows(&self, faults: &Faults, from: Place, to: Place, port: Option<u16>) -> bool {
        passes(
            &self.firewall,
            &faults.blocked,
            self.party(from),
            self.party(to),
            port,
        )
    }

    pub fn is_up(&self, i: usize) -> bool {
        guard(&self.nodes[i]).as_ref().is_some_and(|s| s.up)
    }

    pub fn node(&self, i: usize) -> Option<Arc<Node>> {
        guard(&self.nodes[i])
            .as_ref()
            .filter(|s| s.up)
            .map(|s| s.node.clone())
    }

    /// Every node's world, for setup work done straight on the databases.
    pub fn any_world(&self) -> Option<Arc<SimWorld>> {
        self.nodes
            .iter()
            .find_map(|n| guard(n).as_ref().map(|s| s.world.clone()))
    }

    /// Starts (or restarts) a node with empty memory; gateways catch up with the registry.
    pub fn start(self: &Arc<Self>, i: usize) {
        let plan = &self.plan.nodes[i];
        let node = Arc::new(Node::of_plan(
            &plan.name,
            plan.listeners.iter().map(|l| l.component),
            (plan.internal.iter())
                .map(|e| (e.endpoint.as_str(), e.component, e.callers.as_slice())),
        ));
        let world = Arc::new(SimWorld::new(self.clone(), i));
        let incarnation = {
            let mut slot = guard(&self.nodes[i]);
            let incarnation = slot.as_ref().map_or(0, |s| s.incarnation) + 1;
            *slot = Some(NodeState {
                up: true,
                accepting: true,
                incarnation,
                node: node.clone(),
                world: world.clone(),
            });
            incarnation
        };
        for (_, job) in apim_components::schedule::loops(&node, &world) {
            self.exec.spawn(Incarnation {
                d: self.clone(),
                node: i,
                incarnation,
                job,
            });
        }
    }

    /// The APIs' backend takes longer to answer: `median_ms`, spread to `p99_ms` (log-normal)
    /// when that is above it.
    pub fn set_backend_latency(&self, median_ms: u64, p99_ms: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.backend_latency_ms.store(median_ms, Relaxed);
        self.backend_latency_p99_ms.store(p99_ms, Relaxed);
    }

    /// A share of the backend's reads break before any answer.
    pub fn set_backend_breaks(&self, share: f64) {
        self.backend_breaks
            .store(share.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    /// What the APIs' backend was asked, counted.
    pub fn backend_requests(&self) -> BackendRequests {
        use std::sync::atomic::Ordering::Relaxed;
        let n = |i: usize| self.backend_requests[i].load(Relaxed);
        BackendRequests {
            reads: n(2) + n(3),
            reads_broken: n(3),
            writes: n(0) + n(1),
            writes_broken: n(1),
        }
    }

    /// What the gateways asked of the key managers so far.
    pub fn key_manager_load(&self) -> KeyManagerLoad {
        let gateways = self
            .plan
            .nodes
            .iter()
            .filter(|n| serves(n, Component::Gateway))
            .count() as u64;
        KeyManagerLoad {
            gateways,
            requests: self
                .km_from_gateways
                .load(std::sync::atomic::Ordering::Relaxed),
            catch_up_reads: self
                .catch_up_reads
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// A node asked to stop: unready from now on, still serving.
    pub fn drain(&self, i: usize) {
        if let Some(s) = guard(&self.nodes[i]).as_ref() {
            s.node.drain();
        }
    }

    /// A draining node closes its listeners: what it is answering still completes.
    pub fn stop_accepting(&self, i: usize) {
        if let Some(s) = guard(&self.nodes[i]).as_mut() {
            s.accepting = false;
        }
    }

    /// A crash: the process and its memory are gone; the databases keep what was written.
    pub fn crash(&self, i: usize) {
        if let Some(s) = guard(&self.nodes[i]).as_mut() {
            s.up = false;
            s.incarnation += 1;
        }
    }

    fn incarnation(&self, i: usize) -> Option<u64> {
        guard(&self.nodes[i])
            .as_ref()
            .filter(|s| s.up)
            .map(|s| s.incarnation)
    }

    /// Drops every node, ending the loops that hold the deployment.
    pub fn shut_down(&self) {
        for n in &self.nodes {
            *guard(n) = None;
        }
    }

    /// Starts the active health checks of every balancer route.
    pub fn start_balancers(self: &Arc<Self>) {
        for (b, lb) in self.plan.balancers.iter().enumerate() {
            for (r, route) in lb.routes.iter().enumerate() {
                let d = self.clone();
                let (every, timeout) = (route.health.interval_ms, route.health.timeout_ms);
                let path = route.health.path.clone();
                self.exec.spawn(async move {
                    let probe = |k: usize, timeout_ms: u64| {
                        let (d, path) = (d.clone(), path.clone());
                        async move {
                            match d.upstreams[b][r].get(k).copied().flatten() {
                                Some(i) if !d.faults().balancers_down.contains(&b) => {
                                    let from = d.place_of(Target::Balancer(b, r));
                                    let health = Request::new("GET", &path);
                                    d.send(from, Target::Node(i, None), health, timeout_ms * 1000)
                                        .await
                                        .is_ok_and(|r| r.status == 200)
                                }
                                _ => false,
                            }
                        }
                    };
                    let sleep = |ms: u64| d.exec.sleep(ms * 1000);
                    balancer::check_forever(&d.balancers[b].pools[r], every, timeout, probe, sleep)
                        .await;
                });
            }
        }
    }

    /// Where clients reach a component: the external balancer in front of it, or its node.
    pub fn entry(&self, c: Component) -> Option<Target> {
        for (b, lb) in self.plan.balancers.iter().enumerate() {
            if lb.kind == apim_topology::vocab::BalancerKind::External
                && let Some(r) = lb
                    .routes
                    .iter()
                    .position(|r| r.component == c && r.listener == RouteListener::Public)
            {
                return Some(Target::Balancer(b, r));
            }
        }
        let i = self
            .plan
            .nodes
            .iter()
            .position(|n| n.listeners.iter().any(|l| l.component == c))?;
        Some(Target::Node(i, Some(c)))
    }

    /// The place clients of an entry send from: the public network when they come from it,
    /// otherwise the entry's own network.
    pub fn client_place(&self, entry: Target, from_public: bool) -> Place {
        let public = self.plan.networks.iter().position(|n| n.public);
        match (from_public, public) {
            (true, Some(net)) => Place {
                net,
                node: None,
                balancer: None,
            },
            _ => Place {
                net: self.place_of(entry).net,
                node: None,
                balancer: None,
            },
        }
    }

    fn latency(&self, faults: &Faults, from: usize, to: usize) -> (u64, f64) {
        let base = if from == to {
            LATENCY_SAME_US
        } else {
            LATENCY_CROSS_US
        };
        let link = faults.links.get(&(from, to)).copied().unwrap_or_default();
        (base + link.latency_us, link.loss)
    }

    /// Sends a request over the virtual network and waits for the answer, as a TCP client
    /// would: dropped traffic costs the connect timeout, a stopped process is refused at once,
    /// a process that dies while answering breaks the connection.
    pub fn send(
        self: &Arc<Self>,
        from: Place,
        to: Target,
        req: Request,
        timeout_us: u64,
    ) -> Reply<'_> {
        Box::pin(async move {
            let dest = self.place_of(to);
            if let Some(why) = self.handshake_fails(from, to) {
                let round_trip = 2 * self.latency(&self.faults(), from.net, dest.net).0;
                self.exec.sleep(round_trip).await;
                return Err(CallError::Connect(why));
            }
            let (open, (latency, loss)) = {
                let f = self.faults();
                let cut = [from.node, dest.node]
                    .iter()
                    .flatten()
                    .any(|n| f.isolated.contains(n));
                let open = !cut && self.net_allows(&f, from, dest, Some(self.port_of(to)));
                (open, self.latency(&f, from.net, dest.net))
            };
            let lost = !open || self.rng().chance(loss);
            if lost {
                self.exec.sleep(CONNECT_TIMEOUT_US.min(timeout_us)).await;
                return Err(if timeout_us < CONNECT_TIMEOUT_US {
                    CallError::Timeout
                } else {
                    CallError::Connect("no answer to the connection attempt".into())
                });
            }
            // The round trip is paid before delivery: one timer an exchange, not two.
            self.exec.sleep(2 * latency).await;
            let answer = match to {
                Target::Node(i, _) | Target::Internal(i) => {
                    let running = guard(&self.nodes[i])
                        .as_ref()
                        .filter(|s| s.up && s.accepting)
                        .map(|s| (s.incarnation, s.node.clone(), s.world.clone()));
                    let Some((incarnation, node, world)) = running else {
                        return Err(CallError::Connect("connection refused".into()));
                    };
                    let r = match to {
                        Target::Node(_, Some(c)) => node.handle(world.as_ref(), c, req).await,
                        Target::Node(_, None) => node.admin(world.as_ref(), &req),
                        // Mutual TLS proves which node is calling.
                        _ => {
                            if from
                                .node
                                .is_some_and(|c| serves(&self.plan.nodes[c], Component::Gateway))
                                && serves(&self.plan.nodes[i], Component::KeyManager)
                            {
                                self.km_from_gateways
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            let caller = from.node.map(|n| self.plan.nodes[n].identity.as_str());
                            node.internal(world.as_ref(), caller, req).await
                        }
                    };
                    if self.incarnation(i) != Some(incarnation) {
                        return Err(CallError::Broken("the node stopped while answering".into()));
                    }
                    // Which node answered, for the invariants' reports.
                    r.header("x-sim-node", &self.plan.nodes[i].name)
                }
                Target::Balancer(b, r) => {
                    if self.faults().balancers_down.contains(&b) {
                        return Err(CallError::Connect("connection refused".into()));
                    }
                    self.proxy(b, r, req, from.node).await
                }
            };
            Ok(answer)
        })
    }

    /// Why a TLS handshake from `from` to `to` fails now: the server's certificate expired
    /// (a balancer's only where it ends the TLS: a passed-through connection is the caller's
    /// with the node), or the caller's — every listener of a node asks a caller for its
    /// certificate (the internal one requires it) and refuses an expired one, which a node
    /// and a balancer on its own account (its health checks, a route it ends) present.
    fn handshake_fails(&self, from: Place, to: Target) -> Option<String> {
        let f = self.faults();
        let server = match to {
            Target::Node(i, _) | Target::Internal(i) => f
                .expired_nodes
                .contains(&i)
                .then(|| self.plan.nodes[i].name.clone()),
            Target::Balancer(b, r) => (f.expired_balancers.contains(&b)
                && self.plan.balancers[b].routes[r].listener == RouteListener::Public)
                .then(|| self.plan.balancers[b].name.clone()),
        };
        if let Some(name) = server {
            return Some(format!("TLS: the certificate of {name} has expired"));
        }
        if matches!(to, Target::Balancer(..)) {
            return None;
        }
        let client = match (from.node, from.balancer) {
            (Some(c), _) => f
                .expired_nodes
                .contains(&c)
                .then(|| self.plan.nodes[c].name.clone()),
            (None, Some(b)) => f
                .expired_balancers
                .contains(&b)
                .then(|| self.plan.balancers[b].name.clone()),
            (None, None) => None,
        };
        client.map(|name| format!("TLS: the client certificate of {name} has expired"))
    }

    /// A balancer's route: the component logic's choice of node, one retry elsewhere.
    async fn proxy(
        self: &Arc<Self>,
        b: usize,
        r: usize,
        req: Request,
        caller: Option<usize>,
    ) -> Response {
        let route = &self.plan.balancers[b].routes[r];
        let mut from = self.place_of(Target::Balancer(b, r));
        let passthrough = route.listener == RouteListener::Internal;
        if passthrough {
            // Passed through, the connection still carries the caller's certificate.
            from.node = caller;
        }
        let timeout = route.timeouts.read_ms * 1000;
        // As the real balancer, which streams bodies: only a bodiless request is sent again.
        let repeatable = balancer::idempotent(&req.method) && req.body.is_empty();
        let held = route
            .sticky
            .then(|| {
                let cookies = req
                    .headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"));
                balancer::sticky_in(cookies.map(|(_, v)| v.as_str())).map(str::to_string)
            })
            .flatten();
        let pool = &self.balancers[b].pools[r];
        let sent = balancer::attempt(pool, held.as_deref(), repeatable, |k| {
            let target = self.upstreams[b][r][k].map(|i| {
                if passthrough {
                    Target::Internal(i)
                } else {
                    Target::Node(i, Some(route.component))
                }
            });
            let req = req.clone();
            async move {
                match target {
                    Some(t) => self.send(from, t, req, timeout).await,
                    None => Err(CallError::Connect("unknown node".into())),
                }
            }
        })
        .await;
        match sent {
            Ok((k, mut answer)) => {
                let node = route.upstream.get(k).map(|u| u.node.as_str());
                if route.sticky
                    && let Some(cookie) = node.and_then(|n| balancer::stick(held.as_deref(), n))
                {
                    answer.headers.push(("set-cookie".into(), cookie));
                }
                answer
            }
            Err(e) => balancer::no_answer(route.component.as_str(), e),
        }
    }

    /// Whether a node can use the database serving `role` now.
    fn db_reachable(&self, node: usize, r: Role) -> bool {
        let place = self.node_place(node);
        let f = self.faults();
        if f.isolated.contains(&node) {
            return false;
        }
        match self.db_nets.get(&r) {
            Some(Some(net)) => {
                let db = Place {
                    net: *net,
                    node: None,
                    balancer: None,
                };
                self.net_allows(&f, place, db, None)
            }
            _ => true,
        }
    }

    fn target_of(&self, e: &apim_compiler::plan::Endpoint, c: Component) -> Option<Target> {
        if e.balancer {
            let b = self.balancer_id(&e.name)?;
            let r = self.plan.balancers[b]
                .routes
                .iter()
                .position(|r| r.component == c && r.port == e.port)?;
            Some(Target::Balancer(b, r))
        } else {
            let i = self.node_id(&e.name)?;
            if e.port == self.plan.nodes[i].internal_port {
                Some(Target::Internal(i))
            } else {
                Some(Target::Node(i, Some(c)))
            }
        }
    }
}

/// A loop of one node incarnation: it ends, dropped where it waits, once that incarnation has
/// stopped, as a process's threads end with it.
struct Incarnation {
    d: Arc<Deployment>,
    node: usize,
    incarnation: u64,
    job: apim_components::schedule::Loop,
}

impl Future for Incarnation {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.d.incarnation(self.node) != Some(self.incarnation) {
            return std::task::Poll::Ready(());
        }
        self.job.as_mut().poll(cx)
    }
}

/// What a run's gateways asked of its key managers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyManagerLoad {
    pub gateways: u64,
    /// Internal requests from gateways to key managers.
    pub requests: u64,
    /// Reads of the revocations for the gateways' catch-ups.
    pub catch_up_reads: u64,
}

impl KeyManagerLoad {
    /// Requests per gateway per second over `ms`.
    pub fn per_gateway_per_s(&self, ms: u64) -> f64 {
        if self.gateways == 0 || ms == 0 {
            return 0.0;
        }
        self.requests as f64 * 1000.0 / (self.gateways as f64 * ms as f64)
    }
}

/// Whether a node runs `c`.
fn serves(n: &apim_compiler::plan::NodePlan, c: Component) -> bool {
    n.listeners.iter().any(|l| l.component == c)
}

/// The requests the APIs' backend got in a run: reads (idempotent methods) and writes, and how
/// many of each broke before an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackendRequests {
    pub reads: u64,
    pub reads_broken: u64,
    pub writes: u64,
    pub writes_broken: u64,
}

/// The world of one node incarnation.
pub struct SimWorld {
    d: Arc<Deployment>,
    node: usize,
    storage: NodeStorage,
    /// Per peer called through one of its endpoints: the choice among them, and where each is.
    pools: BTreeMap<Peer, (Mutex<Pool>, Vec<Option<Target>>)>,
}

impl SimWorld {
    fn new(d: Arc<Deployment>, node: usize) -> SimWorld {
        let pools = d.plan.nodes[node]
            .peers
            .iter()
            .filter(|p| p.path == PeerPath::Any)
            .map(|p| {
                let names = p.endpoints.iter().map(|e| e.name.clone());
                let targets = p
                    .endpoints
                    .iter()
                    .map(|e| d.target_of(e, p.component))
                    .collect();
                (p.component, (Mutex::new(Pool::new(names, 3, 2)), targets))
            })
            .collect();
        SimWorld {
            storage: Guarded::new(
                Reached { d: d.clone(), node },
                SimClock(d.clone()),
                d.plan.nodes[node].database_ms,
            ),
            d,
            node,
            pools,
        }
    }

    fn plan(&self) -> &NodePlan {
        &self.d.plan.nodes[self.node]
    }

    fn peer(&self, to: Peer, path: PeerPath) -> Option<&PlanPeer> {
        self.plan()
            .peers
            .iter()
            .find(|p| p.component == to && p.path == path)
    }
}

impl World for SimWorld {
    type Storage = NodeStorage;

    fn storage(&self) -> &NodeStorage {
        &self.storage
    }
    fn now_ms(&self) -> u64 {
        self.d.now_ms()
    }
    fn tokens(&self) -> &Tokens {
        &self.d.tokens[self.node]
    }
    fn defects(&self) -> Defects {
        self.d.defects
    }
    fn signature_ok(&self, key: &[u8], signed: &[u8], sig: &[u8]) -> bool {
        let what = signature_id(key, signed, sig);
        if let Some(&ok) = guard(&self.d.signatures).get(&what) {
            return ok;
        }
        let ok = apim_components::jwt::ed25519_ok(key, signed, sig);
        let mut known = guard(&self.d.signatures);
        if known.len() >= SIGNATURES_MAX {
            known.clear();
        }
        known.insert(what, ok);
        ok
    }
    async fn sleep(&self, ms: u64) {
        self.d.exec.sleep(ms * 1000).await;
    }
    fn random(&self, buf: &mut [u8]) {
        self.d.rng().fill(buf);
    }
    async fn call(&self, to: Peer, req: Request) -> Result<Response, CallError> {
        let Some((pool, targets)) = self.pools.get(&to) else {
            return Err(CallError::Connect(format!(
                "node {} has no route to the {to:?}",
                self.plan().name
            )));
        };
        let from = self.d.node_place(self.node);
        balancer::call(pool, &req, |i, req| {
            let target = targets.get(i).copied().flatten();
            async move {
                match target {
                    Some(t) => self.d.send(from, t, req, CALL_TIMEOUT_US).await,
                    None => Err(CallError::Connect("unknown endpoint".into())),
                }
            }
        })
        .await
    }
    async fn notify_each(
        &self,
        to: Peer,
        req: Request,
    ) -> Vec<(String, Result<Response, CallError>)> {
        let Some(peer) = self.peer(to, PeerPath::EachNode) else {
            return Vec::new();
        };
        let from = self.d.node_place(self.node);
        let c = to;
        let sends = peer.endpoints.iter().map(|e| {
            let target = self.d.target_of(e, c);
            let req = req.clone();
            let d = &self.d;
            async move {
                match target {
                    Some(t) => d.send(from, t, req, NOTIFY_EACH_US).await,
                    None => Err(CallError::Connect("unknown endpoint".into())),
                }
            }
        });
        let answers = crate::exec::join_all(sends.collect()).await;
        peer.endpoints
            .iter()
            .map(|e| e.name.clone())
            .zip(answers)
            .collect()
    }
    async fn forward(&self, base: &str, req: &Request) -> Result<Response, CallError> {
        // The backend echoes, next to the gateway.
        use std::sync::atomic::Ordering::Relaxed;
        let median = self.d.backend_latency_ms.load(Relaxed);
        let p99 = self.d.backend_latency_p99_ms.load(Relaxed);
        // A fixed latency draws nothing, so runs without a spread keep their sequence.
        let added = if p99 > median && median > 0 {
            let mut rng = self.d.rng();
            let (u1, u2) = (rng.unit(), rng.unit());
            crate::scenario::latency_sample_us(median, p99, u1, u2)
        } else {
            median * 1000
        };
        // A read that breaks does so before any answer: the request went out on a kept-alive
        // connection the backend had closed. A share of zero draws nothing.
        let share = f64::from_bits(self.d.backend_breaks.load(Relaxed));
        let broken = share > 0.0 && self.d.rng().chance(share);
        let read = balancer::idempotent(&req.method);
        self.d.backend_requests[2 * usize::from(read) + usize::from(broken)]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if broken {
            self.d.exec.sleep(BACKEND_US).await;
            return Err(CallError::Broken(
                "the backend closed the connection before answering".into(),
            ));
        }
        self.d.exec.sleep(2 * BACKEND_US + added).await;
        let _ = base;
        Ok(Response {
            status: 200,
            headers: Vec::new(),
            body: b"echo".to_vec(),
        })
    }
    async fn hash_password(&self, password: &str) -> String {
        format!("sim:{password}")
    }
    async fn verify_password(&self, password: &str, hash: &str) -> bool {
        hash.strip_prefix("sim:") == Some(password)
    }
}

/// A node's storage: the components' guard (time bound, breakers, probes) over the databases
/// as this node reaches them.
pub type NodeStorage = Guarded<Reached, SimClock>;

/// The virtual clock, for the storage guard.
pub struct SimClock(Arc<Deployment>);

impl Clock for SimClock {
    fn sleep(&self, ms: u64) -> impl Future<Output = ()> + Send {
        self.0.exec.sleep(ms * 1000)
    }
}

/// The shared databases as one node reaches them: they do not answer across a partition or
/// while blackholed (the guard waits out its bound), refuse during an outage, and otherwise
/// hold the shared tables.
pub struct Reached {
    d: Arc<Deployment>,
    node: usize,
}

impl Databases for Reached {
    fn database_of(&self, role: Role) -> Option<usize> {
        let d = &self.d.plan;
        d.nodes[self.node]
            .databases
            .iter()
            .find(|u| u.role == role)?;
        d.databases.iter().position(|db| db.roles.contains(&role))
    }
    fn ping(&self, role: Role) -> impl Future<Output = Db<()>> + Send {
        std::future::ready(self.d.storage.ping(role))
    }
    fn answers(&self, role: Role) -> bool {
        self.d.db_reachable(self.node, role) && !self.d.faults().db_blackholed.contains(&role)
    }
}

/// Each operation goes to the shared tables unchanged: the guard states its role.
macro_rules! forward {
    ($($name:ident($($arg:ident: $t:ty),*) -> $out:ty;)*) => {
        $(async fn $name(&self, $($arg: $t),*) -> Db<$out> {
            self.d.storage.$name($($arg),*).await
        })*
    };
}

impl Storage for Reached {
    async fn revoked_since(&self, since_ms: u64) -> Db<Vec<(String, u64)>> {
        self.d
            .catch_up_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.d.storage.revoked_since(since_ms).await
    }
    forward! {
        create_user(user: &User) -> bool;
        user(name: &str) -> Option<User>;
        create_session(session: &Session) -> ();
        session(token_hash: &str) -> Option<Session>;
        delete_session(token_hash: &str) -> ();
        purge_sessions(now_ms: u64) -> u64;
        delete_sessions_of(user: &str) -> ();
        set_password(user: &str, hash: &str) -> bool;
        record_failure(subject: &str, now_ms: u64, window_ms: u64) -> Failures;
        failures(subject: &str, now_ms: u64, window_ms: u64) -> Failures;
        clear_failures(subject: &str) -> ();
        purge_failures(now_ms: u64, window_ms: u64) -> u64;
        save_api(api: &Api) -> ();
        api(id: &str) -> Option<Api>;
        apis() -> Vec<Api>;
        create_application(app: &Application) -> bool;
        application(id: &str) -> Option<Application>;
        applications(owner: &str) -> Vec<Application>;
        subscribe(application: &str, api: &str) -> bool;
        unsubscribe(application: &str, api: &str) -> bool;
        subscribed(application: &str, api: &str) -> bool;
        subscriptions(application: &str) -> Vec<String>;
        all_subscriptions() -> Vec<(String, String)>;
        save_client(keys: &ClientKeys) -> ();
        client(consumer_key: &str) -> Option<ClientKeys>;
        save_token(token: &Token) -> ();
        token(token_hash: &str) -> Option<Token>;
        revoke_token(token_hash: &str, at_ms: u64) -> bool;
        revoke_application_keys(application: &str, at_ms: u64) -> Vec<String>;
        purge_tokens(now_ms: u64) -> u64;
        register(api: &Api) -> ();
        unregister(id: &str) -> ();
        registered() -> Vec<Api>;
    }
}
