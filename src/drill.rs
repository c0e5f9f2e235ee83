//! `apim drill`'s engine: a scenario against a real deployment on this machine. Every node and
//! balancer is an `apim node` / `apim balancer` process in a network namespace of its own
//! (`apim_runtime::lab`), the faults are real (SIGKILL, SIGTERM, restarts), the clients run in
//! wall time, and what they saw is summed into the simulator's statistics, so the report — and
//! its verdicts — are computed by the same code as a simulation's.

use apim_compiler::plan::Plan;
use apim_compiler::{HostMap, emit};
use apim_components::client::{self, NewApi, Step};
use apim_components::{Request, Response};
use apim_runtime::dbproxy::{DbProxy, Mode as DbMode};
use apim_runtime::lab::{Lab, Range};
use apim_runtime::smoke::{Entries, Provisioned};
use apim_sim::run::{Outcome, Violation};
use apim_sim::scenario::{FaultKind, Scenario};
use apim_sim::stats::{Op, Stats};
use apim_topology::vocab::Engine;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a drill waits for its deployment to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The bound on one client request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The port of the echo backend, on the bridge's own address.
const BACKEND_PORT: u16 = 8080;

pub struct Options {
    pub range: Range,
    /// Where the drill keeps its files (a folder of its own is made inside).
    pub data: PathBuf,
    pub admin_password: String,
    /// The database server of the drill's databases; `None`: SQLite files.
    pub database: Option<apim_runtime::databases::Server>,
    /// Keeps the drill's own folder (configs, PKI, logs) when it ends; a failed drill always
    /// keeps it, for its logs.
    pub keep: bool,
    /// Prints what the drill is doing.
    pub progress: Box<dyn Fn(&str) + Send + Sync>,
}

/// The drill's own folder inside `--data`: removed when the drill ends (also when it is
/// interrupted and dropped), unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(data: &Path, keep: bool) -> Result<WorkDir, String> {
        let path = data.join(format!("drill-{}", std::process::id()));
        apim_pki::files::create_private_dir(data)?;
        apim_pki::files::create_private_dir(&path)?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
        // The parent goes too when the drill made it and nothing else is in it.
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Why a scenario cannot be drilled, if it cannot: the fault kinds the drill makes for real,
/// and what this machine has for them.
pub fn refuse(plan: &Plan, scenario: &Scenario, networked: bool) -> Result<(), String> {
    for f in &scenario.faults {
        match &f.kind {
            FaultKind::Crash { .. }
            | FaultKind::ClusterDown { .. }
            | FaultKind::BalancerOutage { .. }
            | FaultKind::RollingRestart { .. } => {}
            FaultKind::Isolate { .. } => Lab::filters()?,
            FaultKind::Partition { from, to, .. } | FaultKind::Loss { from, to, .. } => {
                Lab::filters()?;
                cuts_a_database(plan, f.kind.name(), from, to)?;
            }
            FaultKind::Latency { .. } => {
                return Err("the drill cannot make `latency` faults yet: delaying packets needs tc's netem, which it does not use; `apim sim` simulates them".into());
            }
            FaultKind::DatabaseOutage { .. } | FaultKind::DatabaseBlackhole { .. } if networked => {
            }
            FaultKind::DatabaseOutage { .. } | FaultKind::DatabaseBlackhole { .. } => {
                return Err(format!(
                    "the drill cannot make `{}` faults on SQLite files every namespace reads: there is no connection to cut; give it a database server with --database (this machine's PostgreSQL or MariaDB), or `apim sim` simulates them",
                    f.kind.name()
                ));
            }
            other => {
                return Err(format!(
                    "the drill cannot make `{}` faults yet; `apim sim` simulates them",
                    other.name()
                ));
            }
        }
    }
    Ok(())
}

/// Each fault of the single-failure matrix lasts this long, then the deployment gets this long
/// to recover before the next: long enough to judge past the balancers' detection time.
pub const SINGLE_FOR_MS: u64 = 20_000;
pub const SINGLE_GAP_MS: u64 = 10_000;

/// The simulator's single-failure matrix as one drill: every part the drill can fail, one after
/// the other on one deployment, under a steady workload; and the parts it cannot, with why.
pub fn single_failures(
    plan: &Plan,
    invoke_rate: f64,
    networked: bool,
) -> (Scenario, Vec<(String, String)>) {
    let mut faults = Vec::new();
    let mut skipped = Vec::new();
    let mut at_ms = 5_000;
    for kind in apim_sim::failover::parts(plan) {
        let one = Scenario {
            workload: apim_sim::scenario::Workload::default(),
            faults: vec![apim_sim::scenario::Fault {
                at_ms: 0,
                for_ms: Some(SINGLE_FOR_MS),
                kind: kind.clone(),
            }],
        };
        if let Err(why) = refuse(plan, &one, networked) {
            skipped.push((kind.describe(), why));
            continue;
        }
        faults.push(apim_sim::scenario::Fault {
            at_ms,
            for_ms: Some(SINGLE_FOR_MS),
            kind,
        });
        at_ms += SINGLE_FOR_MS + SINGLE_GAP_MS;
    }
    let workload = apim_sim::scenario::Workload {
        duration_ms: at_ms,
        invoke_rate,
        token_rate: 1.0,
        ..apim_sim::scenario::Workload::default()
    };
    (Scenario { workload, faults }, skipped)
}

/// A partition or loss between two networks also cuts, in the simulation, a node on one from
/// a database on the other; every host of the drill reaches its databases (files, or relays on
/// the bridge), so such a fault would not mean the same here.
fn cuts_a_database(plan: &Plan, kind: &str, from: &str, to: &str) -> Result<(), String> {
    for d in &plan.databases {
        let Some(net) = d.network.as_deref() else {
            continue;
        };
        let user = plan.nodes.iter().find(|n| {
            n.databases.iter().any(|u| u.database == d.name)
                && ((n.network == from && net == to) || (n.network == to && net == from))
        });
        if let Some(n) = user {
            return Err(format!(
                "the drill cannot make this `{kind}` between `{from}` and `{to}`: in the simulation it also cuts node `{}` from database `{}`, but every namespace of the drill reaches its databases (SQLite files, or the relays on the bridge); `apim sim` simulates it",
                n.name, d.name
            ));
        }
    }
    Ok(())
}

/// A network fault as packet filters: per lab host, the body of an nftables table.
fn filters(plan: &Plan, lab: &Lab, kind: &FaultKind) -> Vec<(String, String)> {
    // The hosts on a network, and the drill's own clients on the public one.
    let on = |net: &str| -> (Vec<String>, Vec<String>) {
        let hosts: Vec<String> = plan
            .nodes
            .iter()
            .filter(|n| n.network == net)
            .map(|n| n.name.clone())
            .chain(
                plan.balancers
                    .iter()
                    .filter(|b| b.network == net)
                    .map(|b| b.name.clone()),
            )
            .collect();
        let mut addresses: Vec<String> = hosts
            .iter()
            .filter_map(|h| lab.address(h))
            .map(|a| a.to_string())
            .collect();
        if plan.networks.iter().any(|n| n.name == net && n.public) {
            addresses.push(lab.gateway.to_string());
        }
        (hosts, addresses)
    };
    // Packets from `sources` arriving at each of `hosts`, dropped as `how` says.
    let drop_at = |hosts: &[String], sources: &[String], how: &str| -> Vec<(String, String)> {
        if sources.is_empty() {
            return Vec::new();
        }
        hosts
            .iter()
            .map(|h| {
                (
                    h.clone(),
                    format!(
                        "chain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {} }} {how} drop; }}",
                        sources.join(", ")
                    ),
                )
            })
            .collect()
    };
    match kind {
        FaultKind::Isolate { node } => vec![(
            node.clone(),
            "chain input { type filter hook input priority 0; policy accept; iifname != \"lo\" drop; }\nchain output { type filter hook output priority 0; policy accept; oifname != \"lo\" drop; }".to_string(),
        )],
        // What `from` starts towards `to` never arrives (nor, both ways, the reverse); what
        // the other side started still gets its answers, as in the simulation.
        FaultKind::Partition { from, to, one_way } => {
            let ((from_hosts, from_addrs), (to_hosts, to_addrs)) = (on(from), on(to));
            let mut out = drop_at(&to_hosts, &from_addrs, "ct direction original");
            if !one_way {
                out.extend(drop_at(&from_hosts, &to_addrs, "ct direction original"));
            }
            out
        }
        FaultKind::Loss {
            from,
            to,
            one_way,
            rate_permille,
        } => {
            let ((from_hosts, from_addrs), (to_hosts, to_addrs)) = (on(from), on(to));
            let how = format!("numgen random mod 1000 < {rate_permille}");
            let mut out = drop_at(&to_hosts, &from_addrs, &how);
            if !one_way {
                out.extend(drop_at(&from_hosts, &to_addrs, &how));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The addresses of the topology that fall inside the drill's range: it must not reuse them.
fn clashes(plan: &Plan, range: Range) -> Vec<String> {
    let hosts = plan
        .nodes
        .iter()
        .map(|n| &n.host)
        .chain(plan.balancers.iter().map(|b| &b.host));
    hosts
        .filter(|h| {
            h.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| range.contains(a))
        })
        .cloned()
        .collect()
}

/// Everything the deployment's processes read: node configs, balancer rules, the PKI, and
/// SQLite files for every database (shared by the processes, as on one machine).
struct Built {
    plan: Plan,
    ca_pem: String,
    nodes: Vec<(String, PathBuf)>,
    balancers: Vec<(String, PathBuf)>,
}

/// The drill's databases on a server: per topology database its URL (through its relay), and
/// the relays the database faults act on.
#[derive(Default)]
struct Networked {
    /// The server's engine; `None`: no server, SQLite files.
    engine: Option<Engine>,
    urls: std::collections::BTreeMap<String, String>,
    relays: std::collections::BTreeMap<String, DbProxy>,
}

/// The port of the first database relay on the bridge; each database gets the next.
const RELAY_PORT: u16 = 15432;

/// A place of its own on `server` for each of the topology's databases, each behind a relay on
/// the bridge's address (which every namespace reaches), named by the drill's process id.
async fn networked(
    plan: &Plan,
    server: &apim_runtime::databases::Server,
    bridge: &str,
) -> Result<Networked, String> {
    let mut out = Networked {
        engine: Some(server.engine),
        ..Networked::default()
    };
    for (k, d) in plan.databases.iter().enumerate() {
        let port = RELAY_PORT + u16::try_from(k).unwrap_or(u16::MAX - RELAY_PORT);
        let relay = DbProxy::start(&format!("{bridge}:{port}"), server.address()).await?;
        let url = server.create(&place(k), (bridge, port)).await?;
        out.urls.insert(d.name.clone(), url);
        out.relays.insert(d.name.clone(), relay);
    }
    Ok(out)
}

fn build(plan: &Plan, lab: &Lab, dir: &Path, networked: &Networked) -> Result<Built, String> {
    let address = |name: &str| lab.address(name).map(|a| a.to_string()).unwrap_or_default();
    let hosts = HostMap::of(plan, |n| address(&n.name), |b| address(b));
    let mut mapped = hosts.plan(plan);
    let ca_pem = apim_runtime::up::throwaway_pki(&mut mapped, &dir.join("pki"))?;
    // Every database a SQLite file here, unless a server was given: the machine's own servers
    // listen on its loopback, which a namespace reaches only through the relays.
    for n in &mut mapped.nodes {
        // The drill's echo backend is on the bridge, a private address: allowed for this run.
        if !n.backends.is_empty() {
            n.backends.allow.push(format!("{}/32", lab.gateway));
        }
        for d in &mut n.databases {
            match (networked.engine, networked.urls.get(&d.database)) {
                (Some(engine), Some(url)) => {
                    d.url = url.clone();
                    d.engine = engine;
                }
                _ => {
                    d.url = apim_runtime::databases::sqlite_url(
                        &dir.join(format!("{}.db", d.database)),
                    );
                    d.engine = Engine::Sqlite;
                }
            }
        }
    }
    let mut built = Built {
        plan: mapped.clone(),
        ca_pem,
        nodes: Vec::new(),
        balancers: Vec::new(),
    };
    for n in &mapped.nodes {
        let file = dir.join(format!("{}.toml", n.name));
        std::fs::write(&file, emit::node::render(&mapped, n))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        built.nodes.push((n.name.clone(), file));
    }
    for b in &mapped.balancers {
        let file = dir.join(format!("{}.rules.toml", b.name));
        std::fs::write(&file, emit::rules::render(&mapped, b))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        built.balancers.push((b.name.clone(), file));
    }
    Ok(built)
}

/// Whether a node answers `/ready` with 200.
async fn ready(client: &apim_runtime::http::Client, n: &apim_compiler::plan::NodePlan) -> bool {
    let r = apim_runtime::http::send(
        client,
        &n.host,
        n.admin_port,
        Request::new("GET", "/ready"),
        Duration::from_secs(2),
    )
    .await;
    r.is_ok_and(|r| r.status == 200)
}

/// Waits until every node answers `/ready` and every balancer's ports accept.
async fn until_ready(built: &Built, lab: &Mutex<Lab>) -> Result<(), String> {
    let ca = apim_runtime::tls::client_trusting(&built.ca_pem)?;
    let client = apim_runtime::http::tls_client(ca);
    let deadline = Instant::now() + START_TIMEOUT;
    for n in &built.plan.nodes {
        loop {
            if ready(&client, n).await {
                break;
            }
            if let Some(status) = lock(lab).exited(&n.name) {
                return Err(format!(
                    "node {} exited ({status}) while starting; see its log",
                    n.name
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {} was not ready within {START_TIMEOUT:?}",
                    n.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for b in &built.plan.balancers {
        for r in &b.routes {
            while tokio::net::TcpStream::connect((b.host.as_str(), r.port))
                .await
                .is_err()
            {
                if Instant::now() > deadline {
                    return Err(format!("balancer {} did not listen on {}", b.name, r.port));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The balancers count a node up after `rise` checks.
    let settle = built
        .plan
        .balancers
        .iter()
        .flat_map(|b| &b.routes)
        .map(|r| r.health.interval_ms * u64::from(r.health.rise))
        .max()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(settle)).await;
    Ok(())
}

/// A uniform draw in [0, 1) from the OS's random source (a drill is not replayed by seed).
fn unit() -> f64 {
    let mut b = [0u8; 8];
    let _ = apim_runtime::random(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The processes a fault stops: (process name, is a node).
fn stopped_by(plan: &Plan, kind: &FaultKind) -> Vec<String> {
    match kind {
        FaultKind::Crash { node } => vec![node.clone()],
        FaultKind::ClusterDown { cluster } => plan
            .nodes
            .iter()
            .filter(|n| &n.cluster == cluster)
            .map(|n| n.name.clone())
            .collect(),
        FaultKind::BalancerOutage { balancer } => vec![balancer.clone()],
        _ => Vec::new(),
    }
}

/// How long node `name` drains on SIGTERM: as the scenario's rolling restart of its cluster
/// says, else the default.
fn drain_of(plan: &Plan, scenario: &Scenario, name: &str) -> u64 {
    let cluster = plan
        .nodes
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.cluster.as_str());
    scenario
        .faults
        .iter()
        .find_map(|f| match &f.kind {
            FaultKind::RollingRestart {
                cluster: c,
                drain_ms,
                ..
            } if Some(c.as_str()) == cluster => Some(*drain_ms),
            _ => None,
        })
        .unwrap_or(apim_topology::timing::DRAIN_MS)
}

/// A rolling restart for real: each node of the cluster in turn gets SIGTERM (it drains and
/// exits by itself), starts again, is waited for until ready, then the pause passes.
async fn roll(
    lab: &Mutex<Lab>,
    plan: &Plan,
    client: &apim_runtime::http::Client,
    cluster: &str,
    pause: Duration,
) {
    for n in plan.nodes.iter().filter(|n| n.cluster == cluster) {
        lock(lab).term(&n.name);
        let deadline = Instant::now()
            + Duration::from_millis(
                apim_topology::timing::DRAIN_MS + apim_topology::timing::GRACE_MS,
            )
            + Duration::from_secs(30);
        while lock(lab).exited(&n.name).is_none() {
            if Instant::now() > deadline {
                lock(lab).kill(&n.name);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = lock(lab).start(&n.name);
        let ready_by = Instant::now() + START_TIMEOUT;
        while Instant::now() < ready_by && !ready(client, n).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(pause).await;
    }
}

/// Runs `scenario` against a real deployment of `plan`; the outcome is what its clients saw.
pub async fn run(plan: &Plan, scenario: &Scenario, opts: &Options) -> Result<Outcome, String> {
    refuse(plan, scenario, opts.database.is_some())?;
    let clash = clashes(plan, opts.range);
    if !clash.is_empty() {
        return Err(format!(
            "the topology's own addresses {} are inside the drill's range {}: pick another with --range",
            clash.join(", "),
            opts.range
        ));
    }
    let names: Vec<String> = plan
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .chain(plan.balancers.iter().map(|b| b.name.clone()))
        .collect();
    (opts.progress)(&format!(
        "making {} network namespaces in {}",
        names.len(),
        opts.range
    ));
    let lab = Lab::create(opts.range, &names)?;
    let mut work = WorkDir::create(&opts.data, opts.keep)?;
    let dir = work.path.clone();
    let bridge = lab.gateway.to_string();
    let networked = match &opts.database {
        Some(server) => {
            (opts.progress)(&format!(
                "making {} places on the {} server, each behind a relay",
                plan.databases.len(),
                server.engine
            ));
            let made = networked(plan, server, &bridge).await;
            match made {
                Ok(n) => n,
                Err(e) => {
                    remove_places(plan, server).await;
                    return Err(e);
                }
            }
        }
        None => Networked::default(),
    };
    let outcome = deploy_and_run(plan, scenario, opts, lab, &dir, &networked).await;
    if let Some(server) = &opts.database {
        remove_places(plan, server).await;
    }
    match outcome {
        Ok(o) => {
            if opts.keep {
                (opts.progress)(&format!("its files are kept in {}", dir.display()));
            }
            Ok(o)
        }
        Err(e) => {
            work.keep = true;
            Err(format!(
                "{e} (its files and logs are kept in {})",
                dir.display()
            ))
        }
    }
}

/// The name of the drill's place on its database server for the `k`th database.
fn place(k: usize) -> String {
    format!("apim_drill_{}_{k}", std::process::id())
}

/// Removes this drill's places from its database server, whatever was made (also after an
/// interruption, which drops the drill before its own cleanup).
pub async fn remove_places(plan: &Plan, server: &apim_runtime::databases::Server) {
    for k in 0..plan.databases.len() {
        if let Err(e) = server.drop(&place(k)).await {
            eprintln!("warning: {e}");
        }
    }
}

async fn deploy_and_run(
    plan: &Plan,
    scenario: &Scenario,
    opts: &Options,
    lab: Lab,
    dir: &Path,
    networked: &Networked,
) -> Result<Outcome, String> {
    let built = build(plan, &lab, dir, networked)?;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the apim executable: {e}"))?
        .display()
        .to_string();
    let env = vec![(
        "APIM_ADMIN_PASSWORD".to_string(),
        opts.admin_password.clone(),
    )];
    let lab = Arc::new(Mutex::new(lab));
    // The backend the drill's APIs call, on the bridge's address: inside the range, reached
    // by every namespace.
    let backend_host = lock(&lab).gateway.to_string();
    let listener = apim_runtime::http::bind(&backend_host, BACKEND_PORT).await?;
    // It answers after the scenario's backend latency (drawn from its distribution, as the
    // simulated backend's), so a crash finds requests in flight.
    let w = scenario.workload.clone();
    // It breaks the scenario's share of requests (as the simulated one), once the workload
    // runs: the set-up's own calls are answered.
    let breaking = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on = breaking.clone();
    let share = w.backend_breaks;
    let echo = Arc::new(apim_runtime::backend::Echo::new(
        move || Duration::from_micros(w.backend_sample_us(unit(), unit())),
        move || on.load(std::sync::atomic::Ordering::Relaxed) && share > 0.0 && unit() < share,
    ));
    let backend = tokio::spawn(apim_runtime::backend::serve(listener, echo.clone()));
    (opts.progress)(&format!(
        "starting {} nodes and {} balancers",
        built.nodes.len(),
        built.balancers.len()
    ));
    {
        let mut l = lock(&lab);
        let data = dir.display().to_string();
        let mut processes: Vec<(&String, Vec<String>)> = Vec::new();
        for (name, file) in &built.nodes {
            let drain = drain_of(plan, scenario, name).to_string();
            let file = file.display().to_string();
            let args = ["node", &file, "--data", &data, "--drain-ms", &drain];
            processes.push((name, args.map(String::from).to_vec()));
        }
        for (name, file) in &built.balancers {
            let bind = l.address(name).map(|a| a.to_string()).unwrap_or_default();
            let file = file.display().to_string();
            let args = ["balancer", &file, "--bind", &bind];
            processes.push((name, args.map(String::from).to_vec()));
        }
        for (name, args) in processes {
            let log = dir.join(format!("{name}.log"));
            l.spawn(name, name, &exe, &args, &env, &log)?;
        }
    }
    until_ready(&built, &lab).await?;
    let entries = Entries::of_plan(
        &built.plan,
        &format!("http://{backend_host}:{BACKEND_PORT}"),
        &built.ca_pem,
    )?;
    (opts.progress)("provisioning an API and a subscribed application");
    let p = apim_runtime::smoke::provision(&entries, &opts.admin_password, "drill").await?;
    (opts.progress)(&format!(
        "running the workload for {}",
        apim_sim::scenario::format_ms(scenario.workload.duration_ms)
    ));
    breaking.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut outcome = workload(&built, scenario, &entries, &p, &lab, &networked.relays).await;
    let asked = echo.asked();
    outcome.backend = apim_sim::world::BackendRequests {
        reads: asked.reads,
        reads_broken: asked.reads_broken,
        writes: asked.writes,
        writes_broken: asked.writes_broken,
    };
    backend.abort();
    drop(lab);
    Ok(outcome)
}

/// The drill's clients, in wall time: what they were given and what they saw. Every request is
/// made by `apim_components::client`, as the simulator's workload makes it.
struct Clients {
    client: apim_runtime::http::Client,
    e: Entries,
    p: Provisioned,
    start: Instant,
    /// How long a revoked token may still work (the scenario's bound, or the deployment's
    /// when longer).
    bound: Duration,
    /// The deployment's revocation policy lets a cut-off gateway serve revoked tokens: one
    /// served past the bound is counted, not a violation.
    available: bool,
    late: Mutex<apim_sim::run::RevokedServed>,
    invoke_writes: f64,
    stats: Mutex<Stats>,
    violations: Mutex<Vec<Violation>>,
    /// Invokes started: which are writes follows from the count (`client::is_write`).
    invoked: AtomicU64,
    /// Names made so far (APIs, applications), for unique ones.
    made: AtomicU64,
    jar: Jar,
}

/// The sticky cookie per (entry, session).
type Jar = Mutex<std::collections::BTreeMap<((String, u16), String), String>>;

impl Clients {
    /// As a browser keeps a site's cookies, a session keeps the sticky cookie its balancer
    /// set, as the simulator's clients do; the drill's sessions are few (the admin's and the
    /// consumer's), so the jar stays small.
    async fn send(&self, to: &(String, u16), mut req: Request) -> Option<Response> {
        let session = req
            .get_header("authorization")
            .map(|a| (to.clone(), a.to_string()));
        if let Some(cookie) = session
            .as_ref()
            .and_then(|k| lock(&self.jar).get(k).cloned())
        {
            req = req.header("cookie", &cookie);
        }
        let r = apim_runtime::http::send(&self.client, &to.0, to.1, req, REQUEST_TIMEOUT)
            .await
            .ok()?;
        if let (Some(session), Some(cookie)) = (session, client::sticky_cookie(&r)) {
            lock(&self.jar).insert(session, cookie);
        }
        Some(r)
    }

    fn elapsed_us(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }

    /// One operation of the workload; whether it succeeded.
    async fn op(self: &Arc<Self>, op: Op) -> bool {
        let ok2 = |r: Option<Response>, want: u16| r.filter(|r| r.status == want);
        match op {
            Op::Invoke => {
                let n = self.invoked.fetch_add(1, Ordering::Relaxed);
                let write = client::is_write(n, self.invoke_writes);
                let req = client::invoke(&self.p.context, "x", Some(&self.p.token), write);
                ok2(self.send(&self.e.gateway, req).await, 200).is_some()
            }
            Op::Token => {
                let req = client::token(&self.p.consumer_key, &self.p.consumer_secret);
                ok2(self.send(&self.e.gateway, req).await, 200).is_some()
            }
            Op::Publish => {
                let n = self.made.fetch_add(1, Ordering::Relaxed);
                let context = format!("drill-{n}");
                let api = NewApi {
                    name: &context,
                    version: "v1",
                    context: &context,
                    backend: &self.e.backend,
                };
                let create = client::create_api(&self.p.publisher, &api);
                let Some(r) = ok2(self.send(&self.e.publisher, create).await, 201) else {
                    return false;
                };
                let Ok(id) = client::id(&r) else {
                    return false;
                };
                let publish = client::lifecycle(&self.p.publisher, &id, Step::Publish);
                ok2(self.send(&self.e.publisher, publish).await, 200).is_some()
            }
            // A new application subscribed to the API, with its keys: the simulator's subscribe.
            Op::Subscribe => {
                let n = self.made.fetch_add(1, Ordering::Relaxed);
                let create = client::create_application(&self.p.session, &format!("drill-{n}"));
                let Some(app) = ok2(self.send(&self.e.store, create).await, 201)
                    .and_then(|r| client::id(&r).ok())
                else {
                    return false;
                };
                let sub = client::subscribe(&self.p.session, &app, &self.p.api);
                if ok2(self.send(&self.e.store, sub).await, 201).is_none() {
                    return false;
                }
                let keys = client::keys(&self.p.session, &app);
                ok2(self.send(&self.e.store, keys).await, 201)
                    .is_some_and(|r| client::keys_of(&r).is_ok())
            }
            Op::Revoke => self.revoke().await,
        }
    }

    /// A fresh token of the workload's application, revoked; past the bound, every gateway
    /// node must refuse it (the oracle's revocation rule, checked for real).
    async fn revoke(self: &Arc<Self>) -> bool {
        let (key, secret) = (&self.p.consumer_key, &self.p.consumer_secret);
        let Some(token) = self
            .send(&self.e.gateway, client::token(key, secret))
            .await
            .and_then(|r| client::issued(&r).ok())
        else {
            return false;
        };
        let revoke = client::revoke(key, secret, &token.token);
        if self
            .send(&self.e.gateway, revoke)
            .await
            .is_none_or(|r| r.status != 200)
        {
            return false;
        }
        let acked = Instant::now();
        let clients = self.clone();
        tokio::spawn(async move {
            // A little past the bound: the probe itself takes a moment to arrive.
            tokio::time::sleep(clients.bound + Duration::from_millis(1)).await;
            for (name, host, port) in &clients.e.gateway_nodes {
                let req = client::invoke(&clients.p.context, "x", Some(&token.token), false);
                let to = (host.clone(), *port);
                if clients
                    .send(&to, req)
                    .await
                    .is_some_and(|r| r.status == 200)
                {
                    if clients.available {
                        let mut late = lock(&clients.late);
                        late.calls += 1;
                        let ms = u64::try_from(acked.elapsed().as_millis()).unwrap_or(u64::MAX);
                        late.longest_ms = late.longest_ms.max(ms);
                        continue;
                    }
                    let at_ms = clients.elapsed_us(Instant::now()) / 1000;
                    lock(&clients.violations).push(Violation {
                        at_ms,
                        invariant: "safety",
                        what: format!(
                            "a token revoked {} ms before was served",
                            acked.elapsed().as_millis()
                        ),
                        nodes: vec![name.clone()],
                    });
                }
            }
        });
        true
    }
}

/// The clients, in wall time: every operation of the workload at the scenario's rates, and the
/// faults at their times.
async fn workload(
    built: &Built,
    scenario: &Scenario,
    e: &Entries,
    p: &Provisioned,
    lab: &Arc<Mutex<Lab>>,
    relays: &std::collections::BTreeMap<String, DbProxy>,
) -> Outcome {
    let w = &scenario.workload;
    let duration = Duration::from_millis(w.duration_ms);
    let window_us = apim_sim::run::window_ms(w.duration_ms) * 1000;
    let stats = Stats::new(window_us, w.duration_ms * 1000);
    let ca = match apim_runtime::tls::client_trusting(&e.ca) {
        Ok(ca) => ca,
        Err(e) => {
            return Outcome {
                stats,
                violations: Vec::new(),
                setup_error: Some(e),
                trace_hash: 0,
                events: 0,
                virtual_ms: 0,
                revoked_served: Default::default(),
                backend: Default::default(),
            };
        }
    };
    let client = apim_runtime::http::tls_client(ca);
    let start = Instant::now();
    let clients = Arc::new(Clients {
        client: client.clone(),
        e: e.clone(),
        p: p.clone(),
        start,
        bound: Duration::from_millis(
            built
                .plan
                .nodes
                .iter()
                .map(|n| n.tokens.revocation_bound_ms)
                .max()
                .unwrap_or(0)
                .max(w.revocation_bound_ms),
        ),
        available: built
            .plan
            .nodes
            .iter()
            .any(|n| n.tokens.revocation == apim_topology::vocab::Revocation::Available),
        late: Mutex::default(),
        invoke_writes: w.invoke_writes,
        stats: Mutex::new(stats),
        violations: Mutex::new(Vec::new()),
        invoked: AtomicU64::new(0),
        made: AtomicU64::new(0),
        jar: Mutex::default(),
    });
    let mut faults = tokio::task::JoinSet::new();
    for (k, f) in scenario.faults.iter().enumerate() {
        let stopped = stopped_by(&built.plan, &f.kind);
        let filters = filters(&built.plan, &lock(lab), &f.kind);
        let table = format!("apimfault{k}");
        let (at, until) = (
            Duration::from_millis(f.at_ms),
            f.for_ms.map(|d| Duration::from_millis(f.at_ms + d)),
        );
        let lab = lab.clone();
        let relay = match &f.kind {
            FaultKind::DatabaseOutage { database } => {
                relays.get(database).map(|r| (r.handle(), DbMode::Refuse))
            }
            FaultKind::DatabaseBlackhole { database } => relays
                .get(database)
                .map(|r| (r.handle(), DbMode::Blackhole)),
            _ => None,
        };
        if let FaultKind::RollingRestart {
            cluster, pause_ms, ..
        } = &f.kind
        {
            let (cluster, pause) = (cluster.clone(), Duration::from_millis(*pause_ms));
            let (plan, client) = (built.plan.clone(), client.clone());
            faults.spawn(async move {
                tokio::time::sleep_until((start + at).into()).await;
                roll(&lab, &plan, &client, &cluster, pause).await;
            });
            continue;
        }
        faults.spawn(async move {
            tokio::time::sleep_until((start + at).into()).await;
            for name in &stopped {
                lock(&lab).kill(name);
            }
            for (host, rules) in &filters {
                if let Err(e) = lock(&lab).filter(host, &table, rules) {
                    eprintln!("warning: {e}");
                }
            }
            if let Some((relay, mode)) = &relay {
                relay.set(*mode);
            }
            if let Some(until) = until {
                tokio::time::sleep_until((start + until).into()).await;
                for name in &stopped {
                    let _ = lock(&lab).start(name);
                }
                for (host, _) in &filters {
                    lock(&lab).unfilter(host, &table);
                }
                if let Some((relay, _)) = &relay {
                    relay.set(DbMode::Pass);
                }
            }
        });
    }
    let mut requests = tokio::task::JoinSet::new();
    let ops = [
        (Op::Invoke, w.invoke_rate),
        (Op::Token, w.token_rate),
        (Op::Publish, w.publish_rate),
        (Op::Subscribe, w.subscribe_rate),
        (Op::Revoke, w.revoke_rate),
    ];
    let mut next: Vec<Duration> = vec![Duration::ZERO; ops.len()];
    // The op due first, each at its fixed rate, until the run's end.
    while let Some((k, due)) = next
        .iter()
        .enumerate()
        .filter(|(k, d)| ops[*k].1 > 0.0 && **d < duration)
        .min_by_key(|(_, d)| **d)
        .map(|(k, d)| (k, *d))
    {
        tokio::time::sleep_until((start + due).into()).await;
        next[k] = due + Duration::from_secs_f64(1.0 / ops[k].1);
        let op = ops[k].0;
        let clients = clients.clone();
        requests.spawn(async move {
            let sent = Instant::now();
            let ok = clients.op(op).await;
            let started_us = clients.elapsed_us(sent);
            let took_us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            lock(&clients.stats).record(op, started_us, took_us, ok);
        });
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
    // The last revocations' probes are due a bound after them.
    tokio::time::sleep(clients.bound + Duration::from_millis(200)).await;
    faults.abort_all();
    let stats = lock(&clients.stats).clone();
    let mut violations = lock(&clients.violations).clone();
    violations.sort();
    let events = Op::ALL
        .iter()
        .map(|op| stats.between(&[*op], 0, u64::MAX).total())
        .sum();
    Outcome {
        stats,
        violations,
        setup_error: None,
        trace_hash: 0,
        events,
        virtual_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        revoked_served: *lock(&clients.late),
        backend: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(pattern: &str) -> Plan {
        let text = apim_patterns::find(pattern).expect("pattern").template;
        let checked = apim_topology::check_str(pattern, text);
        Plan::of(&checked.topology)
    }

    #[test]
    fn the_single_failure_drill_fails_each_part_it_can_alone_and_says_why_not_the_others() {
        let plan = plan("clustered-external-store");
        let (scenario, skipped) = single_failures(&plan, 50.0, false);
        // Every node, cluster and balancer, one after the other, never two at once.
        let crashes = scenario
            .faults
            .iter()
            .filter(|f| matches!(f.kind, FaultKind::Crash { .. }))
            .count();
        assert_eq!(crashes, plan.nodes.len());
        assert!(
            scenario
                .faults
                .iter()
                .any(|f| matches!(f.kind, FaultKind::BalancerOutage { .. }))
        );
        for pair in scenario.faults.windows(2) {
            let end = pair[0].at_ms + pair[0].for_ms.unwrap_or(0);
            assert!(end + SINGLE_GAP_MS <= pair[1].at_ms, "{pair:?}");
        }
        let last = scenario.faults.last().expect("faults");
        assert!(last.at_ms + last.for_ms.unwrap_or(0) <= scenario.workload.duration_ms);
        assert!(refuse(&plan, &scenario, false).is_ok());
        // What it cannot fail, it names with the reason.
        assert!(
            skipped
                .iter()
                .any(|(part, why)| part.starts_with("database-outage") && why.contains("SQLite")),
            "{skipped:?}"
        );
        assert!(
            skipped
                .iter()
                .any(|(part, _)| part.starts_with("cert-expiry"))
        );
    }
}
