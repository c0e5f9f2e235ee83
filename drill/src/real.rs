//! The workload's driver in the real world (`apim_sim::driver::Driver`), and the drill's run of
//! the workload with it.

use crate::faults::{filters, roll, stopped_by, swap_certificate};
use crate::lock;
use apim_compiler::plan::Plan;
use apim_components::{Request, Response};
use apim_runtime::dbproxy::Mode as DbMode;
use apim_sim::driver::{Driver, To, TokenRow};
use apim_sim::rng::Rng;
use apim_sim::run::Outcome;
use apim_sim::scenario::{FaultKind, Scenario};
use apim_sim::workload::Workload;
use apim_topology::vocab::Component;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lab::Lab;

/// The bound on one client request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A running deployment as clients reach it.
pub struct Target {
    /// The plan as it runs: its addresses, and certificate paths this process can read (a
    /// hostile node's probes are made with that node's own certificate).
    pub plan: Plan,
    /// The deployment CA (PEM) clients trust.
    pub ca_pem: String,
    /// Per component (`Component as usize`): where clients reach it.
    pub entries: [Option<(String, u16)>; 4],
    /// Per node of the plan: its gateway listener, if it has one.
    pub gateways: Vec<Option<(String, u16)>>,
    /// The APIs' backend.
    pub backend: String,
}

impl Target {
    /// Clients reach each component where `apim up` says, and every gateway node directly.
    pub fn of_plan(plan: &Plan, ca_pem: &str, backend: &str) -> Target {
        let entries = [
            Component::Publisher,
            Component::Store,
            Component::KeyManager,
            Component::Gateway,
        ]
        .map(|c| apim_runtime::up::entry(plan, c));
        let gateways = apim_runtime::up::gateway_nodes(plan)
            .into_iter()
            .map(|(name, host, port)| (name, (host, port)))
            .collect();
        Target::with_gateways(plan, ca_pem, backend, entries, gateways)
    }

    /// Clients reach the components where `e` says (a balancer of one's own in front, say).
    pub fn of_entries(plan: &Plan, e: &apim_runtime::smoke::Entries) -> Target {
        let entries = [
            Some(e.publisher.clone()),
            Some(e.store.clone()),
            Some(e.key_manager.clone()),
            Some(e.gateway.clone()),
        ];
        let gateways = e
            .gateway_nodes
            .iter()
            .map(|(name, host, port)| (name.clone(), (host.clone(), *port)))
            .collect();
        Target::with_gateways(plan, &e.ca, &e.backend, entries, gateways)
    }

    /// Clients reach the components at `entries` (per `Component as usize`), and the gateway
    /// nodes named in `gateways` there.
    pub fn with_gateways(
        plan: &Plan,
        ca_pem: &str,
        backend: &str,
        entries: [Option<(String, u16)>; 4],
        mut gateways: std::collections::BTreeMap<String, (String, u16)>,
    ) -> Target {
        Target {
            plan: plan.clone(),
            ca_pem: ca_pem.to_string(),
            entries,
            gateways: plan
                .nodes
                .iter()
                .map(|n| gateways.remove(&n.name))
                .collect(),
            backend: backend.to_string(),
        }
    }
}

/// The faults a drill makes: processes and packet filters in its lab, database relays.
pub(crate) struct Faults {
    pub lab: Arc<Mutex<Lab>>,
    pub relays: std::collections::BTreeMap<String, apim_runtime::dbproxy::Switch>,
}

/// The real deployment as the workload drives it, in wall time: requests over TLS from the
/// host, faults (when it may make them) made by the lab (signals, packet filters, database
/// relays).
struct Real {
    plan: Plan,
    start: Instant,
    rng: Mutex<Rng>,
    client: apim_runtime::http::Client,
    entries: [Option<(String, u16)>; 4],
    gateways: Vec<Option<(String, u16)>>,
    backend: String,
    faults: Option<Faults>,
    /// Tasks spawned and not finished.
    live: Arc<AtomicUsize>,
}

/// Counts a spawned task as live until it ends or is dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Real {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Node `from` calling node `to`'s internal listener with `from`'s own certificate.
    async fn as_node(&self, from: usize, to: usize, req: Request) -> Result<Response, String> {
        let (Some(caller), Some(target)) = (self.plan.nodes.get(from), self.plan.nodes.get(to))
        else {
            return Err("no such node".into());
        };
        let tls = apim_runtime::tls::Tls::load(&caller.tls)?;
        let client = apim_runtime::http::tls_client(tls.client(vec![target.identity.clone()])?);
        apim_runtime::http::send(
            &client,
            &target.host,
            target.internal_port,
            req,
            REQUEST_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())
    }
}

impl Driver for Real {
    fn plan(&self) -> &Plan {
        &self.plan
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.now().as_micros()).unwrap_or(u64::MAX)
    }

    /// The nodes' own clock: they run on this machine.
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn sleep(&self, us: u64) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(Duration::from_micros(us))
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.live.fetch_add(1, Ordering::Relaxed);
        let live = Live(self.live.clone());
        tokio::spawn(async move {
            task.await;
            drop(live);
        });
    }

    fn rng(&self) -> MutexGuard<'_, Rng> {
        lock(&self.rng)
    }

    async fn send(&self, to: To, req: Request) -> Result<Response, String> {
        let at = match to {
            To::Entry(c) => self.entries[c as usize].as_ref(),
            To::Gateway(g) => self.gateways.get(g).and_then(Option::as_ref),
            To::Internal { from, to } => return self.as_node(from, to, req).await,
        };
        let Some((host, port)) = at else {
            return Err(format!("no such place in this deployment: {to:?}"));
        };
        apim_runtime::http::send(&self.client, host, *port, req, REQUEST_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }

    fn backend(&self) -> &str {
        &self.backend
    }

    /// Real answers do not say which node gave them.
    fn answered_by(&self, _: &Response) -> Vec<String> {
        Vec::new()
    }

    fn published(&self, _: &str) -> Option<bool> {
        None
    }

    fn subscribed(&self, _: &str, _: &str) -> Option<bool> {
        None
    }

    fn token_row(&self, _: &str) -> Option<Option<TokenRow>> {
        None
    }

    /// A deployment the workload may not fault (`apim up --smoke`) is not faulted: its
    /// scenario has none.
    async fn begin(&self, k: usize, fault: &FaultKind) {
        let Some(f) = &self.faults else {
            return;
        };
        let table = format!("apimfault{k}");
        for name in stopped_by(&self.plan, fault) {
            lock(&f.lab).kill(&name);
        }
        let filters = filters(&self.plan, &lock(&f.lab), fault);
        for (host, rules) in &filters {
            if let Err(e) = lock(&f.lab).filter(host, &table, rules) {
                eprintln!("warning: {e}");
            }
        }
        if let Some((relay, mode)) = f.relay(fault) {
            relay.set(mode);
        }
        if let FaultKind::CertExpiry { name, .. } = fault
            && let Err(e) = swap_certificate(&f.lab, &self.plan, name, true)
        {
            eprintln!("warning: {e}");
        }
    }

    async fn end(&self, k: usize, fault: &FaultKind) {
        let Some(f) = &self.faults else {
            return;
        };
        let table = format!("apimfault{k}");
        for name in stopped_by(&self.plan, fault) {
            let _ = lock(&f.lab).start(&name);
        }
        // Reckoned first: the lab's lock is not held while each filter is removed.
        let filters = filters(&self.plan, &lock(&f.lab), fault);
        for (host, _) in filters {
            lock(&f.lab).unfilter(&host, &table);
        }
        if let Some((relay, _)) = f.relay(fault) {
            relay.set(DbMode::Pass);
        }
        if let FaultKind::CertExpiry { name, .. } = fault
            && let Err(e) = swap_certificate(&f.lab, &self.plan, name, false)
        {
            eprintln!("warning: {e}");
        }
    }

    /// Each node drains for the time it was started with (`--drain-ms`, from the scenario).
    async fn roll(&self, cluster: &str, _drain_ms: u64, pause_ms: u64) {
        let Some(f) = &self.faults else {
            return;
        };
        roll(
            &f.lab,
            &self.plan,
            &self.client,
            cluster,
            Duration::from_millis(pause_ms),
        )
        .await;
    }
}

impl Faults {
    /// The relay a database fault acts on, and what it makes it do.
    fn relay(&self, fault: &FaultKind) -> Option<(&apim_runtime::dbproxy::Switch, DbMode)> {
        match fault {
            FaultKind::DatabaseOutage { database } => {
                self.relays.get(database).map(|r| (r, DbMode::Refuse))
            }
            FaultKind::DatabaseBlackhole { database } => {
                self.relays.get(database).map(|r| (r, DbMode::Blackhole))
            }
            _ => None,
        }
    }
}

/// The drill's random source starts where the simulation it is compared with does.
const SEED: u64 = 0;

/// How long the drill waits, after the workload's end, for its last requests and probes.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The workload (`apim_sim::workload`, the simulator's own) against a real deployment: set
/// up (its users and APIs named with `tag`), then `started` is called, the clients and the
/// faults (when `faults` can make them) for the scenario's duration, then liveness once the
/// faults have healed.
pub(crate) async fn workload(
    target: Target,
    scenario: &Scenario,
    admin_password: &str,
    tag: &str,
    faults: Option<Faults>,
    started: impl FnOnce(),
) -> Result<Outcome, String> {
    // Every client request on a connection of its own and a full handshake, as the simulator's
    // clients make theirs:
    // what a fault does to new clients (a certificate that expired, a listener gone) is what
    // is judged, not what a kept connection still carries.
    let client = apim_runtime::http::tls_client(apim_runtime::tls::without_resumption(
        &apim_runtime::tls::client_trusting(&target.ca_pem)?,
    ))
    .fresh();
    let live = Arc::new(AtomicUsize::new(0));
    let real = Real {
        plan: target.plan,
        start: Instant::now(),
        rng: Mutex::new(Rng::new(SEED)),
        client,
        entries: target.entries,
        gateways: target.gateways,
        backend: target.backend,
        faults,
        live: live.clone(),
    };
    let run = Arc::new(Workload::new(real, scenario, admin_password).tagged(tag));
    run.clone()
        .setup()
        .await
        .map_err(|e| format!("setting up: {e}"))?;
    started();
    run.start();
    let d = run.driver();
    let duration = Duration::from_millis(scenario.workload.duration_ms);
    tokio::time::sleep(duration).await;
    // The last requests, the revocations' probes (due a bound after them) and the faults'
    // repairs finish.
    let finish_by = Instant::now() + FINISH_TIMEOUT;
    while live.load(Ordering::Relaxed) > 0 && Instant::now() < finish_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Liveness gets the simulator's settling time and its own: it starts at once (the
    // simulator waits the settling out first), so a deployment that recovered sooner is done
    // sooner.
    let within = apim_sim::workload::SETTLE_MS + apim_sim::workload::LIVENESS_MS;
    run.clone().liveness(within * 1000).await;
    let took_ms = d.now_us().saturating_sub(run.started_us()) / 1000;
    let mut outcome = run.outcome(None, took_ms, Default::default(), None);
    // The trace is the simulator's replay check; a real run's timing is not replayable.
    outcome.trace_hash = 0;
    Ok(outcome)
}
