//! apim-drill: a scenario against a real deployment on this machine — `apim drill`'s engine.
//! Every node and balancer is an `apim node` / `apim balancer` process in a network namespace of
//! its own (`lab`), the faults are real (SIGKILL, SIGTERM, restarts, packet filters, database
//! relays), and the clients are the simulator's own workload (`apim_sim::workload`) driven in
//! wall time (`real`), so the report — and its verdicts — come from the same code as a
//! simulation's.

mod faults;
pub mod lab;
pub mod real;
pub mod smoke;

pub use faults::{SINGLE_FOR_MS, SINGLE_GAP_MS, refuse, single_failures};

use apim_compiler::plan::Plan;
use apim_compiler::{HostMap, emit};
use apim_components::Request;
use apim_runtime::dbproxy::DbProxy;
use apim_sim::run::Outcome;
use apim_sim::scenario::Scenario;
use apim_topology::vocab::Engine;
use faults::drain_of;
use lab::{Lab, Range};
use real::workload;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a drill waits for its deployment to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
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

/// The deployment's files for the lab: every node and balancer at its namespace's address, a
/// throwaway PKI, the databases as the drill places them, and access tokens that live as long
/// as the scenario says (as the simulator's key managers issue them).
fn build(
    plan: &Plan,
    scenario: &Scenario,
    lab: &Lab,
    dir: &Path,
    networked: &Networked,
) -> Result<Built, String> {
    let address = |name: &str| lab.address(name).map(|a| a.to_string()).unwrap_or_default();
    let hosts = HostMap::of(plan, |n| address(&n.name), |b| address(b));
    let mut mapped = hosts.plan(plan);
    let ca_pem = apim_runtime::up::throwaway_pki(&mut mapped, &dir.join("pki"))?;
    // Every database a SQLite file here, unless a server was given: the machine's own servers
    // listen on its loopback, which a namespace reaches only through the relays.
    for n in &mut mapped.nodes {
        n.tokens.lifetime_ms = scenario.workload.token_lifetime_ms;
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
            let exited = lock(lab).exited(&n.name);
            if let Some(status) = exited {
                let log = lock(lab).log_tail(&n.name, 8);
                return Err(format!(
                    "node {} exited ({status}) while starting; its log, {log}",
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
    let built = build(plan, scenario, &lab, dir, networked)?;
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
    // It breaks the scenario's share of requests (as the simulated one).
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
    (opts.progress)(&format!(
        "setting up, then running the workload for {}",
        apim_sim::scenario::format_ms(scenario.workload.duration_ms)
    ));
    let backend_url = format!("http://{backend_host}:{BACKEND_PORT}");
    let target = real::Target::of_plan(&built.plan, &built.ca_pem, &backend_url);
    let faults = real::Faults {
        lab: lab.clone(),
        relays: networked
            .relays
            .iter()
            .map(|(k, r)| (k.clone(), r.handle()))
            .collect(),
    };
    // The backend breaks its share of requests once the workload runs: the set-up's own calls
    // are answered.
    let mut outcome = workload(
        target,
        scenario,
        &opts.admin_password,
        "",
        Some(faults),
        || breaking.store(true, std::sync::atomic::Ordering::Relaxed),
    )
    .await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use apim_sim::scenario::FaultKind;

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
        // Every certificate expires in turn, the nodes' and the balancers'.
        let expiries = scenario
            .faults
            .iter()
            .filter(|f| matches!(f.kind, FaultKind::CertExpiry { .. }))
            .count();
        assert_eq!(expiries, plan.nodes.len() + plan.balancers.len());
    }
}
