//! Single failures: every node, cluster, balancer, database and firewall link failed on its
//! own, the flows' verdicts in simulation, and a static reachability analysis of the flows
//! table over the same plan (petgraph) that the simulation must agree with.

use crate::report::{Verdict, effect, grace_ms};
use crate::run::{Options, simulate};
use crate::scenario::{Fault, FaultKind, Scenario, Workload};
use crate::world::{firewall, passes};
use apim_compiler::plan::{Plan, RouteListener};
use apim_topology::flows::{End, FLOWS, Flow, Hop, Listener, Path};
use apim_topology::reach::{At, Firewall};
use apim_topology::vocab::{BalancerKind, Component, Revocation, Role, TokenFormat};
use petgraph::graph::DiGraph;
use serde::Serialize;
use std::collections::BTreeSet;

/// The workload of each single-failure run: a fault from 15 s to 45 s of a 60 s run, with
/// enough requests per flow that 99 % and 1 % mean something.
pub fn workload() -> Workload {
    Workload {
        duration_ms: 60_000,
        apis: 2,
        applications: 4,
        publish_rate: 2.0,
        subscribe_rate: 2.0,
        token_rate: 5.0,
        invoke_rate: 100.0,
        revoke_rate: 1.0,
        lifecycle_rate: 0.5,
        revocation_bound_ms: 1_000,
        // A deployment's own: what a part's failure breaks, not when clients' tokens run out.
        token_lifetime_ms: apim_topology::timing::TOKEN_MS,
        backend_latency_ms: 0,
        backend_latency_p99_ms: 0,
        invoke_writes: 0.0,
        backend_breaks: 0.0,
    }
}

const FAULT_AT_MS: u64 = 15_000;
const FAULT_FOR_MS: u64 = 30_000;

/// Every part that can fail on its own, as the fault that fails it.
pub fn parts(plan: &Plan) -> Vec<FaultKind> {
    let mut out: Vec<FaultKind> = plan
        .nodes
        .iter()
        .map(|n| FaultKind::Crash {
            node: n.name.clone(),
        })
        .collect();
    let clusters: BTreeSet<&str> = plan.nodes.iter().map(|n| n.cluster.as_str()).collect();
    out.extend(clusters.into_iter().map(|c| FaultKind::ClusterDown {
        cluster: c.to_string(),
    }));
    out.extend(plan.balancers.iter().map(|b| FaultKind::BalancerOutage {
        balancer: b.name.clone(),
    }));
    out.extend(plan.nodes.iter().map(|n| FaultKind::CertExpiry {
        name: n.name.clone(),
        balancer: false,
    }));
    out.extend(plan.balancers.iter().map(|b| FaultKind::CertExpiry {
        name: b.name.clone(),
        balancer: true,
    }));
    for d in &plan.databases {
        out.push(FaultKind::DatabaseOutage {
            database: d.name.clone(),
        });
        out.push(FaultKind::DatabaseBlackhole {
            database: d.name.clone(),
        });
    }
    // A partition cuts networks: a rule naming a cluster or balancer cuts the network it is on.
    let links: BTreeSet<(&str, &str)> = plan
        .firewall
        .iter()
        .filter_map(|r| Some((plan.network_of(&r.from)?, plan.network_of(&r.to)?)))
        .filter(|(a, b)| a != b)
        .collect();
    out.extend(links.into_iter().map(|(from, to)| FaultKind::Partition {
        from: from.to_string(),
        to: to.to_string(),
        one_way: true,
    }));
    out
}

/// Where a hop starts: a network (a client at its entry's when `None`) and the cluster there.
type Source<'p> = (Option<usize>, Option<&'p str>);

/// What is still standing when one part has failed.
struct Standing<'p> {
    plan: &'p Plan,
    fw: Firewall,
    nodes: Vec<bool>,
    balancers: Vec<bool>,
    /// The balancer whose certificate expired: the routes where it ends the TLS are down; a
    /// passed-through connection is the caller's with the node, and goes on.
    expired: Option<usize>,
    /// Roles whose database is down.
    roles_down: BTreeSet<Role>,
    blocked: BTreeSet<(usize, usize)>,
}

impl<'p> Standing<'p> {
    fn new(plan: &'p Plan, failed: &FaultKind) -> Standing<'p> {
        let fw = firewall(plan);
        let nodes = plan
            .nodes
            .iter()
            .map(|n| match failed {
                FaultKind::Crash { node } | FaultKind::Isolate { node } => &n.name != node,
                // Nobody can shake hands with it, and its calls between components fail.
                FaultKind::CertExpiry {
                    name,
                    balancer: false,
                } => &n.name != name,
                FaultKind::ClusterDown { cluster } => &n.cluster != cluster,
                _ => true,
            })
            .collect();
        let balancers = plan
            .balancers
            .iter()
            .map(|b| {
                !matches!(failed, FaultKind::BalancerOutage { balancer } if *balancer == b.name)
            })
            .collect();
        let expired = match failed {
            FaultKind::CertExpiry {
                name,
                balancer: true,
            } => plan.balancers.iter().position(|b| &b.name == name),
            _ => None,
        };
        let roles_down = match failed {
            FaultKind::DatabaseOutage { database } | FaultKind::DatabaseBlackhole { database } => {
                plan.databases
                    .iter()
                    .filter(|d| &d.name == database)
                    .flat_map(|d| d.roles.iter().copied())
                    .collect()
            }
            _ => BTreeSet::new(),
        };
        let mut blocked = BTreeSet::new();
        if let FaultKind::Partition { from, to, one_way } = failed
            && let (Some(a), Some(b)) = (fw.network(from), fw.network(to))
        {
            blocked.insert((a, b));
            if !one_way {
                blocked.insert((b, a));
            }
        }
        Standing {
            plan,
            fw,
            nodes,
            balancers,
            expired,
            roles_down,
            blocked,
        }
    }

    fn net(&self, name: &str) -> usize {
        self.fw.network(name).unwrap_or(usize::MAX)
    }

    fn allows(&self, from: At<'_>, to: At<'_>, port: Option<u16>) -> bool {
        passes(&self.fw, &self.blocked, from, to, port)
    }

    /// A node as a firewall rule sees it.
    fn node_party(&self, i: usize) -> At<'_> {
        let n = &self.plan.nodes[i];
        At {
            net: self.net(&n.network),
            name: Some(&n.cluster),
        }
    }

    fn port(&self, node: usize, c: Component) -> Option<u16> {
        self.plan.nodes[node]
            .listeners
            .iter()
            .find(|l| l.component == c)
            .map(|l| l.port)
    }

    /// The port a hop to `c` on this node targets, when the node runs `c`.
    fn hop_port(&self, node: usize, c: Component, listener: Listener) -> Option<u16> {
        let public = self.port(node, c)?;
        Some(match listener {
            Listener::Public => public,
            Listener::Internal => self.plan.nodes[node].internal_port,
        })
    }

    /// Whether a hop can still be made: a path from some standing source to some standing
    /// target, through a standing balancer where the hop goes through one.
    fn hop_works(&self, hop: &Hop) -> bool {
        let (from, to, path) = (hop.from, hop.to, hop.path);
        let mut g: DiGraph<(), ()> = DiGraph::new();
        let source = g.add_node(());
        let sink = g.add_node(());
        // Standing sources, by network; clients stand at their network (or the entry's).
        // (network, cluster): a firewall rule may name either.
        let mut sources: Vec<Source<'_>> = Vec::new();
        match from {
            End::Client(c) => {
                let public = self.plan.networks.iter().position(|n| n.public);
                sources.push((if c.comes_from_public() { public } else { None }, None));
            }
            End::Component(c) => {
                for (i, n) in self.plan.nodes.iter().enumerate() {
                    if self.nodes[i] && self.port(i, c).is_some() {
                        sources.push((Some(self.net(&n.network)), Some(n.cluster.as_str())));
                    }
                }
            }
            End::Database(_) => return true,
        }

        let from_net = |s: Source<'p>, entry_net: usize| At {
            net: s.0.unwrap_or(entry_net),
            name: s.1,
        };
        match to {
            End::Database(role) => {
                if self.roles_down.contains(&role) {
                    return false;
                }
                let db_net = self
                    .plan
                    .databases
                    .iter()
                    .find(|d| d.roles.contains(&role))
                    .and_then(|d| d.network.as_deref())
                    .map(|n| self.net(n));
                for s in &sources {
                    let v = g.add_node(());
                    g.add_edge(source, v, ());
                    let ok = match (s.0, db_net) {
                        (_, None) => true,
                        (Some(net), Some(d)) => {
                            let from = At { net, name: s.1 };
                            self.allows(from, At { net: d, name: None }, None)
                        }
                        (None, Some(_)) => true,
                    };
                    if ok {
                        g.add_edge(v, sink, ());
                    }
                }
            }
            End::Client(_) => return true,
            End::Component(c) => {
                let src: Vec<_> = sources.iter().map(|s| (*s, g.add_node(()))).collect();
                for (_, v) in &src {
                    g.add_edge(source, *v, ());
                }
                let clusters: BTreeSet<&str> = self
                    .plan
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| self.port(*i, c).is_some())
                    .map(|(_, n)| n.cluster.as_str())
                    .collect();
                for cluster in clusters {
                    let members: Vec<usize> = (0..self.plan.nodes.len())
                        .filter(|&i| {
                            self.plan.nodes[i].cluster == cluster && self.port(i, c).is_some()
                        })
                        .collect();
                    // As the flows' routes: through a balancer of the kind whenever one fronts
                    // the cluster, directly only to a lone node with none.
                    let fronted = |kind: BalancerKind| {
                        self.plan.balancers.iter().any(|b| {
                            b.kind == kind
                                && b.routes.iter().any(|r| {
                                    r.upstream.iter().any(|u| {
                                        members.iter().any(|&m| self.plan.nodes[m].name == u.node)
                                    })
                                })
                        })
                    };
                    let balanced = match path {
                        Path::Balanced(kind) if members.len() >= 2 || fronted(kind) => Some(kind),
                        _ => None,
                    };
                    let targets: Vec<_> = members
                        .iter()
                        .filter(|&&i| self.nodes[i])
                        .map(|&i| {
                            let v = g.add_node(());
                            g.add_edge(v, sink, ());
                            (i, v)
                        })
                        .collect();
                    match balanced {
                        None => {
                            for &(s, sv) in &src {
                                for &(i, tv) in &targets {
                                    let to = self.node_party(i);
                                    let port = self.hop_port(i, c, hop.listener);
                                    if self.allows(from_net(s, to.net), to, port) {
                                        g.add_edge(sv, tv, ());
                                    }
                                }
                            }
                        }
                        Some(kind) => self.via_balancers(
                            &mut g,
                            &src,
                            &targets,
                            (c, hop.listener),
                            kind,
                            from_net,
                        ),
                    }
                }
            }
        }
        petgraph::algo::has_path_connecting(&g, source, sink, None)
    }

    fn via_balancers(
        &self,
        g: &mut DiGraph<(), ()>,
        src: &[(Source<'p>, petgraph::graph::NodeIndex)],
        targets: &[(usize, petgraph::graph::NodeIndex)],
        (c, listener): (Component, Listener),
        kind: BalancerKind,
        from_net: impl Fn(Source<'p>, usize) -> At<'p>,
    ) {
        for (b, lb) in self.plan.balancers.iter().enumerate() {
            if lb.kind != kind || !self.balancers[b] {
                continue;
            }
            let Some(route) = lb
                .routes
                .iter()
                .find(|r| r.component == c && r.listener == listener.into())
            else {
                continue;
            };
            if self.expired == Some(b) && route.listener == RouteListener::Public {
                continue;
            }
            let bv = g.add_node(());
            let me = At {
                net: self.net(&lb.network),
                name: Some(&lb.name),
            };
            for &(s, sv) in src {
                if self.allows(from_net(s, me.net), me, Some(route.port)) {
                    g.add_edge(sv, bv, ());
                }
            }
            for &(i, tv) in targets {
                let n = &self.plan.nodes[i];
                if route.upstream.iter().any(|u| u.node == n.name)
                    && self.allows(me, self.node_party(i), self.hop_port(i, c, listener))
                {
                    g.add_edge(bv, tv, ());
                }
            }
        }
    }
}

/// The static verdict: a flow works when every hop on its request path can still be made.
pub fn static_works(plan: &Plan, failed: &FaultKind, flow: Flow) -> bool {
    static_verdict(plan, failed, flow) == Static::Works
}

/// What static analysis says of a flow with one part failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Static {
    Works,
    /// With JWT tokens under the available policy, API calls need no key manager: when only
    /// the gateway's hop to it fails, calls go on and `/token` fails.
    Degraded,
    Broken,
}

impl Static {
    pub fn as_str(self) -> &'static str {
        match self {
            Static::Works => "works",
            Static::Degraded => "degraded",
            Static::Broken => "broken",
        }
    }
}

pub fn static_verdict(plan: &Plan, failed: &FaultKind, flow: Flow) -> Static {
    let s = Standing::new(plan, failed);
    let failing: Vec<&Hop> = FLOWS
        .iter()
        .filter(|h| h.flow == flow && !h.background && !s.hop_works(h))
        .collect();
    let alone = plan.nodes.iter().all(|n| {
        n.tokens.format == apim_topology::vocab::TokenFormat::Jwt
            && n.tokens.revocation == apim_topology::vocab::Revocation::Available
    });
    let to_key_manager = |h: &&Hop| {
        h.from == End::Component(Component::Gateway)
            && h.to == End::Component(Component::KeyManager)
    };
    match failing.as_slice() {
        [] => Static::Works,
        hops if alone && hops.iter().all(to_key_manager) => Static::Degraded,
        _ => Static::Broken,
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub flow: &'static str,
    pub simulated: Verdict,
    /// `works` or `broken`.
    pub static_analysis: &'static str,
    pub agree: bool,
    pub recovered_after_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub failure: String,
    pub cells: Vec<Cell>,
    pub violations: usize,
    pub trace_hash: String,
    /// With `--compare-policies`: the same failure under each token setting.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyCell>,
}

impl Row {
    /// Under which settings revoked tokens were served past the bound, how often and how long
    /// after their revocation at most; none when never.
    pub fn revoked_served(&self) -> Option<String> {
        let late: Vec<String> = self
            .policies
            .iter()
            .filter(|p| p.revoked_served_calls > 0)
            .map(|p| {
                format!(
                    "{}: {} calls, up to {}",
                    p.policy,
                    p.revoked_served_calls,
                    crate::scenario::format_ms(p.revoked_served_longest_ms)
                )
            })
            .collect();
        (!late.is_empty()).then(|| late.join("; "))
    }
}

/// The token settings `--compare-policies` runs each failure under: (name, format, policy).
pub const POLICIES: [(&str, TokenFormat, Revocation); 3] = [
    ("opaque", TokenFormat::Opaque, Revocation::Strict),
    ("jwt-strict", TokenFormat::Jwt, Revocation::Strict),
    ("jwt-available", TokenFormat::Jwt, Revocation::Available),
];

/// One failure under one token setting: what invoke did, and what the available policy cost.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyCell {
    pub policy: &'static str,
    pub invoke: Verdict,
    /// Calls a gateway served with a token revoked more than the bound before.
    pub revoked_served_calls: u64,
    /// The longest a revoked token was served after its revocation was acknowledged.
    pub revoked_served_longest_ms: u64,
    pub violations: usize,
}

/// `plan` with every node's tokens set to `format` and `revocation`.
pub fn with_tokens(plan: &Plan, format: TokenFormat, revocation: Revocation) -> Plan {
    let mut p = plan.clone();
    for n in &mut p.nodes {
        n.tokens.format = format;
        n.tokens.revocation = revocation;
    }
    p
}

#[derive(Clone, Debug, Serialize)]
pub struct Matrix {
    pub deployment: String,
    pub seed: u64,
    pub fault_at_ms: u64,
    pub fault_for_ms: u64,
    pub grace_ms: u64,
    pub rows: Vec<Row>,
    /// Disagreements between simulation and static analysis, and invariant violations.
    pub findings: Vec<String>,
}

/// Fails every part in turn; `progress` hears of each run as it ends.
pub fn matrix(plan: &Plan, options: &Options, progress: impl FnMut(usize, usize, &str)) -> Matrix {
    matrix_of(plan, parts(plan), options, false, 1, progress)
}

/// The matrix with each failure also run under every token setting (`POLICIES`).
pub fn policy_matrix(
    plan: &Plan,
    options: &Options,
    progress: impl FnMut(usize, usize, &str),
) -> Matrix {
    matrix_of(plan, parts(plan), options, true, 1, progress)
}

/// [`matrix`] (or with `compare`, [`policy_matrix`]) with the failures run on `jobs` threads;
/// the same matrix as on one.
pub fn matrix_jobs(
    plan: &Plan,
    options: &Options,
    compare: bool,
    jobs: usize,
    progress: impl FnMut(usize, usize, &str),
) -> Matrix {
    matrix_of(plan, parts(plan), options, compare, jobs, progress)
}

/// The rows of the matrix for the databases alone: each refusing, then never answering.
pub fn database_matrix(plan: &Plan, options: &Options) -> Matrix {
    let parts = parts(plan)
        .into_iter()
        .filter(|p| {
            matches!(
                p,
                FaultKind::DatabaseOutage { .. } | FaultKind::DatabaseBlackhole { .. }
            )
        })
        .collect();
    matrix_of(plan, parts, options, false, 1, |_, _, _| {})
}

fn matrix_of(
    plan: &Plan,
    parts: Vec<FaultKind>,
    options: &Options,
    compare: bool,
    jobs: usize,
    mut progress: impl FnMut(usize, usize, &str),
) -> Matrix {
    let n = parts.len();
    let done = crate::jobs::in_order(
        n,
        jobs,
        |k| row_of(plan, &parts[k], options, compare),
        |k, (row, _)| progress(k, n, &row.failure),
    );
    let mut rows = Vec::new();
    let mut findings = Vec::new();
    for (row, found) in done {
        rows.push(row);
        findings.extend(found);
    }
    Matrix {
        deployment: plan.deployment.clone(),
        seed: options.seed,
        fault_at_ms: FAULT_AT_MS,
        fault_for_ms: FAULT_FOR_MS,
        grace_ms: grace_ms(plan),
        rows,
        findings,
    }
}

/// One part failed: its row, and what it found.
fn row_of(plan: &Plan, part: &FaultKind, options: &Options, compare: bool) -> (Row, Vec<String>) {
    let grace = crate::report::grace_of(plan, part);
    let mut findings = Vec::new();
    let scenario = Scenario {
        workload: workload(),
        faults: vec![Fault {
            at_ms: FAULT_AT_MS,
            for_ms: Some(FAULT_FOR_MS),
            kind: part.clone(),
        }],
    };
    let out = simulate(plan, &scenario, options);
    let effects = effect(
        &out.stats,
        (FAULT_AT_MS, FAULT_AT_MS + FAULT_FOR_MS),
        grace,
        scenario.workload.duration_ms,
        |flow| out.recovered.get(&(0, flow)).copied(),
    );
    let mut cells = Vec::new();
    for (flow, e) in Flow::ALL.iter().zip(effects) {
        let predicted = static_verdict(plan, part, *flow);
        // DESIGN.md: static "works" meets works or degraded, "broken" meets broken; a flow
        // with no requests in the window says nothing. "Degraded" (API calls without the
        // key manager, `/token` failing) meets degraded.
        let agree = matches!(
            (predicted, e.verdict),
            (Static::Works, Verdict::Works | Verdict::Degraded)
                | (Static::Degraded, Verdict::Degraded)
                | (Static::Broken, Verdict::Broken)
                | (_, Verdict::Idle)
        );
        if !agree {
            findings.push(format!(
                "{}: {} is {} in simulation but static analysis says {}",
                part.describe(),
                flow,
                e.verdict.as_str(),
                predicted.as_str()
            ));
        }
        cells.push(Cell {
            flow: flow.as_str(),
            simulated: e.verdict,
            static_analysis: predicted.as_str(),
            agree,
            recovered_after_ms: e.recovered_after_ms,
        });
    }
    if let Some(e) = &out.setup_error {
        findings.push(format!("{}: setup failed: {e}", part.describe()));
    }
    for v in &out.violations {
        findings.push(format!(
            "{}: {} violation at {} ms: {}",
            part.describe(),
            v.invariant,
            v.at_ms,
            v.what
        ));
    }
    let mut policies = Vec::new();
    if compare {
        for (name, format, revocation) in POLICIES {
            let variant = with_tokens(plan, format, revocation);
            let o = simulate(&variant, &scenario, options);
            let e = effect(
                &o.stats,
                (FAULT_AT_MS, FAULT_AT_MS + FAULT_FOR_MS),
                grace,
                scenario.workload.duration_ms,
                |flow| o.recovered.get(&(0, flow)).copied(),
            );
            let invoke = Flow::ALL
                .iter()
                .zip(&e)
                .find(|(f, _)| **f == Flow::Invoke)
                .map_or(Verdict::Idle, |(_, e)| e.verdict);
            for v in &o.violations {
                findings.push(format!(
                    "{} ({name}): {} violation at {} ms: {}",
                    part.describe(),
                    v.invariant,
                    v.at_ms,
                    v.what
                ));
            }
            policies.push(PolicyCell {
                policy: name,
                invoke,
                revoked_served_calls: o.revoked_served.calls,
                revoked_served_longest_ms: o.revoked_served.longest_ms,
                violations: o.violations.len(),
            });
        }
    }
    let row = Row {
        failure: part.describe(),
        cells,
        violations: out.violations.len(),
        trace_hash: format!("{:016x}", out.trace_hash),
        policies,
    };
    (row, findings)
}

impl Matrix {
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "single failures of {} (each from {} for {}, judged after {}; seed {})\n\n",
            self.deployment,
            crate::scenario::format_ms(self.fault_at_ms),
            crate::scenario::format_ms(self.fault_for_ms),
            crate::scenario::format_ms(self.grace_ms),
            self.seed
        );
        let width = self
            .rows
            .iter()
            .map(|r| r.failure.len())
            .max()
            .unwrap_or(10)
            .max(10);
        let compared = self.rows.iter().any(|r| !r.policies.is_empty());
        let _ = write!(
            s,
            "  {:<width$}  {:<22} {:<22} {:<22}",
            "failure", "publish", "subscribe", "invoke"
        );
        if compared {
            let _ = write!(s, "  invoke under:");
            for (name, _, _) in POLICIES {
                let _ = write!(s, " {name:<14}");
            }
            let _ = write!(s, " revoked token served");
        }
        let _ = writeln!(s);
        for r in &self.rows {
            let cells: Vec<String> = r
                .cells
                .iter()
                .map(|c| {
                    let rec = match (c.simulated, c.recovered_after_ms) {
                        (Verdict::Works, _) => String::new(),
                        (_, Some(ms)) => format!(" ({})", crate::scenario::format_ms(ms)),
                        (_, None) => " (no recovery)".into(),
                    };
                    let mark = if c.agree { "" } else { "!" };
                    format!("{}{mark}{rec}", c.simulated.as_str())
                })
                .collect();
            let _ = write!(
                s,
                "  {:<width$}  {:<22} {:<22} {:<22}",
                r.failure, cells[0], cells[1], cells[2]
            );
            if compared {
                let _ = write!(s, "  {:<13}", "");
                for p in &r.policies {
                    let _ = write!(s, " {:<14}", p.invoke.as_str());
                }
                let _ = write!(s, " {}", r.revoked_served().unwrap_or_else(|| "-".into()));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\n(time) is the time to recover after repair; ! marks a disagreement with static analysis"
        );
        if compared {
            let _ = writeln!(
                s,
                "invoke under: the same failure with opaque tokens, and JWT under each revocation policy;\nrevoked token served: calls a gateway answered with a token revoked longer ago than the bound\n(the available policy's price: not a violation)"
            );
        }
        if self.findings.is_empty() {
            let _ = writeln!(
                s,
                "findings: none — simulation and static analysis agree, every invariant held"
            );
        } else {
            let _ = writeln!(s, "findings:");
            for f in &self.findings {
                let _ = writeln!(s, "  {f}");
            }
        }
        s
    }
}
