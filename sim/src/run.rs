//! One simulation: the workload (`crate::workload`) in the simulated world, in virtual time.
//! [`Sim`] is the workload's driver here: the virtual clock and network, the in-memory
//! databases it may look into, and the faults as the simulated world makes them.

use crate::driver::{Driver, To, TokenRow};
use crate::exec::Executor;
use crate::rng::Rng;
use crate::scenario::{FaultKind, Scenario};
use crate::workload::{LIVENESS_MS, SETTLE_MS, Workload};
use crate::world::{Defects, Deployment, Faults, Target};
use apim_compiler::plan::Plan;
use apim_components::mem::Role;
use apim_components::world::ApiState;
use apim_components::{Peer, Request, Response};
use apim_topology::vocab::Component;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::workload::{Outcome, RevokedServed, Violation, window_ms};

const ADMIN_PASSWORD: &str = "sim-admin-password";
/// The APIs' backend, as the simulated world answers for it.
const BACKEND: &str = "http://backend.sim/";
/// Clients give up on a request after this long.
const CLIENT_TIMEOUT_US: u64 = 30_000_000;

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub seed: u64,
    pub defects: Defects,
    /// The command that replays this run, printed with every violation.
    pub replay: String,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The simulated world as the workload drives it.
pub struct Sim {
    d: Arc<Deployment>,
    entries: [Option<Target>; 4],
    /// The faults in force, in the order they began.
    active: Mutex<Vec<FaultKind>>,
}

impl Sim {
    fn new(d: Arc<Deployment>) -> Sim {
        let entries = [
            d.entry(Component::Publisher),
            d.entry(Component::Store),
            d.entry(Component::KeyManager),
            d.entry(Component::Gateway),
        ];
        Sim {
            d,
            entries,
            active: Mutex::default(),
        }
    }

    /// Applies the faults active now: network, balancer and database state from the list.
    fn apply_faults(&self) {
        let active = guard(&self.active).clone();
        let d = &self.d;
        let net = |n: &str| d.network(n).unwrap_or(usize::MAX);
        let mut f = d.faults();
        *f = Faults::default();
        let mut db_down: BTreeSet<Role> = BTreeSet::new();
        for k in &active {
            let pairs = |from: &str, to: &str, one_way: bool| {
                let (a, b) = (net(from), net(to));
                if one_way {
                    vec![(a, b)]
                } else {
                    vec![(a, b), (b, a)]
                }
            };
            match k {
                FaultKind::Isolate { node } => {
                    f.isolated.extend(d.node_id(node));
                }
                FaultKind::Partition { from, to, one_way } => {
                    f.blocked.extend(pairs(from, to, *one_way))
                }
                FaultKind::Latency {
                    from,
                    to,
                    one_way,
                    added_ms,
                } => {
                    for p in pairs(from, to, *one_way) {
                        f.links.entry(p).or_default().latency_us += added_ms * 1000;
                    }
                }
                FaultKind::Loss {
                    from,
                    to,
                    one_way,
                    rate_permille,
                } => {
                    for p in pairs(from, to, *one_way) {
                        let l = f.links.entry(p).or_default();
                        l.loss = l.loss.max(f64::from(*rate_permille) / 1000.0);
                    }
                }
                FaultKind::BalancerOutage { balancer } => {
                    f.balancers_down.extend(d.balancer_id(balancer));
                }
                FaultKind::CertExpiry {
                    name,
                    balancer: true,
                } => {
                    f.expired_balancers.extend(d.balancer_id(name));
                }
                FaultKind::CertExpiry {
                    name,
                    balancer: false,
                } => {
                    f.expired_nodes.extend(d.node_id(name));
                }
                FaultKind::DatabaseOutage { database } => {
                    for db in d.plan.databases.iter().filter(|x| &x.name == database) {
                        db_down.extend(db.roles.iter().copied());
                    }
                }
                FaultKind::DatabaseBlackhole { database } => {
                    for db in d.plan.databases.iter().filter(|x| &x.name == database) {
                        f.db_blackholed.extend(db.roles.iter().copied());
                    }
                }
                FaultKind::Crash { .. }
                | FaultKind::ClusterDown { .. }
                | FaultKind::RollingRestart { .. } => {}
            }
        }
        drop(f);
        for r in [Role::User, Role::Apim, Role::Registry] {
            d.storage.set_down(r, db_down.contains(&r));
        }
    }

    fn crashed_by(&self, k: &FaultKind) -> Vec<usize> {
        let d = &self.d;
        match k {
            FaultKind::Crash { node } => d.node_id(node).into_iter().collect(),
            FaultKind::ClusterDown { cluster } => d
                .plan
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| &n.cluster == cluster)
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Driver for Sim {
    fn plan(&self) -> &Plan {
        &self.d.plan
    }

    fn now_us(&self) -> u64 {
        self.d.now_us()
    }

    fn now_ms(&self) -> u64 {
        self.d.now_ms()
    }

    fn sleep(&self, us: u64) -> impl Future<Output = ()> + Send {
        self.d.exec.sleep(us)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.d.exec.spawn(task);
    }

    fn rng(&self) -> MutexGuard<'_, Rng> {
        self.d.rng()
    }

    async fn send(&self, to: To, req: Request) -> Result<Response, String> {
        let (from, target) = match to {
            To::Entry(c) => {
                let Some(entry) = self.entries[c as usize] else {
                    return Err(format!("no {c} in this topology"));
                };
                // The portals' consumers and the API clients come from the public network;
                // the publisher's and the key manager's users from inside.
                let public = !matches!(c, Component::Publisher | Component::KeyManager);
                (self.d.client_place(entry, public), entry)
            }
            // From next to it.
            To::Gateway(g) => (self.d.node_place(g), Target::Node(g, Some(Peer::Gateway))),
            To::Internal { from, to } => (self.d.node_place(from), Target::Internal(to)),
        };
        self.d
            .send(from, target, req, CLIENT_TIMEOUT_US)
            .await
            .map_err(|e| e.to_string())
    }

    fn backend(&self) -> &str {
        BACKEND
    }

    /// The simulated world marks the node that answered.
    fn answered_by(&self, r: &Response) -> Vec<String> {
        r.get_header("x-sim-node")
            .map(String::from)
            .into_iter()
            .collect()
    }

    fn published(&self, id: &str) -> Option<bool> {
        let (apim, registry) = self.d.storage.api_truth(id);
        let published = |a: Option<apim_components::world::Api>| {
            a.is_some_and(|a| a.state == ApiState::Published)
        };
        Some(published(apim) && published(registry))
    }

    fn subscribed(&self, application: &str, api: &str) -> Option<bool> {
        Some(self.d.storage.subscription_truth(application, api))
    }

    fn token_row(&self, hash: &str) -> Option<Option<TokenRow>> {
        Some(
            self.d
                .storage
                .token_truth(hash)
                .map(|(t, revoked)| TokenRow {
                    application: t.application,
                    expires_ms: t.expires_ms,
                    revoked: revoked.is_some(),
                }),
        )
    }

    async fn begin(&self, _k: usize, fault: &FaultKind) {
        guard(&self.active).push(fault.clone());
        for i in self.crashed_by(fault) {
            self.d.crash(i);
        }
        self.apply_faults();
    }

    async fn end(&self, _k: usize, fault: &FaultKind) {
        {
            let mut active = guard(&self.active);
            if let Some(k) = active.iter().position(|k| k == fault) {
                active.remove(k);
            }
        }
        let still: BTreeSet<usize> = guard(&self.active)
            .iter()
            .flat_map(|k| self.crashed_by(k))
            .collect();
        for i in self.crashed_by(fault) {
            if !still.contains(&i) && !self.d.is_up(i) {
                self.d.start(i);
            }
        }
        self.apply_faults();
    }

    /// Each node of `cluster` in turn drains, stops once what it was answering is done,
    /// starts again after the start-up time, then the pause passes.
    async fn roll(&self, cluster: &str, drain_ms: u64, pause_ms: u64) {
        let d = &self.d;
        let nodes: Vec<usize> = (0..d.plan.nodes.len())
            .filter(|&i| d.plan.nodes[i].cluster == cluster)
            .collect();
        for i in nodes {
            if !d.is_up(i) {
                continue;
            }
            d.drain(i);
            d.exec.sleep(drain_ms * 1000).await;
            d.stop_accepting(i);
            d.exec.sleep(crate::scenario::STOP_MS * 1000).await;
            d.crash(i);
            d.exec.sleep(crate::scenario::STARTUP_MS * 1000).await;
            d.start(i);
            d.exec.sleep(pause_ms * 1000).await;
        }
    }
}

/// Runs a scenario on a plan.
pub fn simulate(plan: &Plan, scenario: &Scenario, options: &Options) -> Outcome {
    // The simulated nodes' security events (a hostile node's probes refused, throttled
    // sign-ins) are not a real deployment's: they go to no log.
    let quiet = tracing::subscriber::NoSubscriber::default();
    tracing::subscriber::with_default(quiet, || run_simulation(plan, scenario, options))
}

fn run_simulation(plan: &Plan, scenario: &Scenario, options: &Options) -> Outcome {
    let mut exec = Executor::default();
    let d = Deployment::new(
        plan.clone(),
        exec.handle(),
        options.seed,
        options.defects,
        scenario.workload.token_lifetime_ms,
    );
    d.set_backend_latency(
        scenario.workload.backend_latency_ms,
        scenario.workload.backend_latency_p99_ms,
    );
    d.set_backend_breaks(scenario.workload.backend_breaks);
    for i in 0..plan.nodes.len() {
        d.start(i);
    }
    d.start_balancers();
    if let Some(w) = d.any_world() {
        d.exec.spawn(async move {
            // A failure here shows as a failed admin login in setup, with its reason.
            let _ = apim_components::auth::bootstrap_admin(w.as_ref(), ADMIN_PASSWORD).await;
        });
        exec.run_until(d.now_us());
    }
    let duration_us = scenario.workload.duration_ms * 1000;
    let run = Arc::new(Workload::new(Sim::new(d.clone()), scenario, ADMIN_PASSWORD));
    let setup: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
    {
        let (run, setup) = (run.clone(), setup.clone());
        d.exec.spawn(async move {
            let r = run.setup().await;
            *guard(&setup) = Some(r);
        });
    }
    // Setup gets a generous budget, a minute at a time, so a quick one ends the wait early.
    let mut budget = 0;
    while guard(&setup).is_none() && budget < 10 {
        exec.run_until(d.now_us() + 60_000_000);
        budget += 1;
    }
    let setup_error = match guard(&setup).take() {
        Some(Ok(())) => None,
        Some(Err(e)) => Some(e),
        None => Some("setup did not finish in ten minutes of virtual time".into()),
    };
    if setup_error.is_none() {
        // Let health checks see every node before the clock starts.
        exec.run_until(d.now_us() + 5_000_000);
        run.start();
        let start = run.started_us();
        exec.run_until(start + duration_us);
        // Faults end with the workload; requests in flight finish while things settle.
        exec.run_until(start + duration_us + SETTLE_MS * 1000);
        let done = Arc::new(Mutex::new(false));
        {
            let (run, done) = (run.clone(), done.clone());
            d.exec.spawn(async move {
                run.liveness(LIVENESS_MS * 1000).await;
                *guard(&done) = true;
            });
        }
        let limit = d.now_us() + (LIVENESS_MS + 120_000) * 1000;
        while !*guard(&done) && d.now_us() < limit {
            exec.run_until(d.now_us() + 1_000_000);
        }
    }
    let virtual_ms = d.now_us() / 1000;
    let backend = d.backend_requests();
    let key_managers = d.key_manager_load();
    d.shut_down();
    drop(exec);
    run.outcome(setup_error, virtual_ms, backend, Some(key_managers))
}
