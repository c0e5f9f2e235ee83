//! `apim up` (a whole topology on this machine) and `apim node` (one node of a built plan).

use crate::Outcome;
use crate::output::{self, Format};
use apim_compiler::plan::TlsFiles;
use apim_runtime::up::{Loopback, UpOptions};
use serde_json::json;
use std::path::PathBuf;

/// Run a whole topology on this machine: every node and balancer, with real HTTP and databases.
///
/// Each host is mapped to its own loopback address inside --loopback, so production ports stay
/// as they are and nothing is sent to the topology's real addresses. Databases this machine
/// cannot use as written (anything but SQLite, a socket or a loopback host) become SQLite files
/// in --data. With no topology, the built-in clustered-external-store pattern runs.
///
/// The admin password is APIM_ADMIN_PASSWORD, or a generated one that is printed.
#[derive(clap::Args)]
pub struct UpArgs {
    /// The topology file; the default pattern when absent.
    file: Option<String>,
    /// The loopback range to place nodes and balancers in.
    #[arg(long, default_value = "127.1.0.0/16")]
    loopback: String,
    /// The folder for SQLite files.
    #[arg(long, default_value = ".apim-up")]
    data: PathBuf,
    /// Run the simulator's workload against it for a few seconds, without faults: publish,
    /// sign up, subscribe, keys, tokens, API calls through the balancers and on every gateway
    /// node, revocations, lifecycle changes, and the probes that must be refused (forged and
    /// revoked tokens, other tenants' applications, internal endpoints from the public side and
    /// from a node the flows do not admit). Prints the report; exits 0 when every rule held.
    #[arg(long)]
    smoke: bool,
    /// Let APIs of this run have backends here too: an address range, an address or a host
    /// name (repeatable). The echo backend is allowed already; loopback and private addresses
    /// are otherwise refused to API backends, as in production.
    #[arg(long = "allow-backend", value_name = "RANGE|HOST")]
    allow_backend: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Run one node of a built plan: `apim node out/nodes/<node>.toml`.
///
/// On SIGTERM the node drains: its /ready answers 503 at once, it keeps serving for
/// --drain-ms while balancers take it out, then accepts nothing more and finishes the requests
/// in flight (at most 10 s) before it exits. Ctrl-C stops it at once.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// The node's config, as `apim build` wrote it.
    file: String,
    /// A host map (as in out/compose/hosts.toml) giving the addresses of nodes and balancers
    /// on this platform.
    #[arg(long)]
    hosts: Option<String>,
    /// Bind this address instead of the node's own (0.0.0.0 in containers).
    #[arg(long)]
    bind: Option<String>,
    /// The folder for relative SQLite paths.
    #[arg(long, default_value = ".")]
    data: PathBuf,
    /// Read the CA, certificate and key from this folder (`apim certs`' layout) instead of
    /// the paths in the config.
    #[arg(long)]
    certs: Option<String>,
    /// How long a draining node stays up, unready, before it stops accepting; the default
    /// covers the balancers' checks (3 failed checks 2 s apart, plus one's timeout).
    #[arg(long, default_value_t = apim_topology::timing::DRAIN_MS)]
    drain_ms: u64,
}

/// Run the built-in balancer on its rules: `apim balancer out/lb/<lb>/rules.toml`.
///
/// Listens on every route's port, balances round robin over ready nodes (active checks on
/// each node's admin /ready), retries once elsewhere when a connection fails, and keeps
/// portal sessions on one node by a cookie. On SIGTERM it accepts nothing more and finishes
/// what is in flight (at most 10 s) before it exits; Ctrl-C stops it at once.
#[derive(clap::Args)]
pub struct BalancerArgs {
    /// The balancer's rules, as `apim build` wrote them.
    file: String,
    /// A host map giving the nodes' addresses on this platform.
    #[arg(long)]
    hosts: Option<String>,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// Read the CA, certificate and key from this folder (`apim certs`' layout) instead of
    /// the paths in the rules.
    #[arg(long)]
    certs: Option<String>,
}

pub fn balancer(args: BalancerArgs) -> Outcome {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            output::error(&format!("cannot read `{}`: {e}", args.file));
            return Outcome::Usage;
        }
    };
    let mut plan = match apim_compiler::emit::rules::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            output::error(&format!(
                "`{}` is not balancer rules of apim build: {e}",
                args.file
            ));
            return Outcome::Failure;
        }
    };
    if let Some(h) = &args.hosts {
        let map = std::fs::read_to_string(h)
            .map_err(|e| format!("cannot read `{h}`: {e}"))
            .and_then(|t| apim_compiler::HostMap::parse(&t));
        match map {
            Ok(m) => plan = m.balancer(&plan),
            Err(e) => {
                output::error(&e);
                return Outcome::Failure;
            }
        }
    }
    if let Some(dir) = &args.certs {
        plan.tls = TlsFiles::in_dir(dir, &plan.name);
    }
    let result = apim_runtime::block_on(async move {
        let running = apim_runtime::balancer::start(plan, &args.bind).await?;
        for r in &running.plan.routes {
            println!(
                "balancer {} {} on {}:{} -> {} nodes",
                running.plan.name,
                r.component,
                args.bind,
                r.port,
                r.upstream.len()
            );
        }
        if apim_runtime::until_signal().await == apim_runtime::Signal::Terminate {
            let name = running.plan.name.clone();
            eprintln!(
                "balancer {name}: stopping (accepting nothing more, finishing what is in flight)"
            );
            let grace = std::time::Duration::from_millis(apim_topology::timing::GRACE_MS);
            if running.stop(grace).await {
                eprintln!("balancer {name}: stopped");
            } else {
                eprintln!(
                    "balancer {name}: stopped with connections still open after {} ms",
                    apim_topology::timing::GRACE_MS
                );
            }
        }
        Ok::<_, String>(())
    });
    match result {
        Ok(Ok(())) => Outcome::Success,
        Err(e) | Ok(Err(e)) => {
            output::error(&e);
            Outcome::Failure
        }
    }
}

fn admin_password() -> (String, bool) {
    match std::env::var("APIM_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => {
            let mut b = [0u8; 12];
            let _ = getrandom_fill(&mut b);
            (b.iter().map(|x| format!("{x:02x}")).collect(), true)
        }
    }
}

/// `apim up`'s admin password: APIM_ADMIN_PASSWORD, or the one generated on the first run in
/// this data folder and kept there (0600) — the admin user is created once, so a new
/// password on a later run would not work.
fn up_admin_password(data: &std::path::Path) -> Result<(String, bool), String> {
    if let Ok(p) = std::env::var("APIM_ADMIN_PASSWORD")
        && !p.is_empty()
    {
        return Ok((p, false));
    }
    let kept = data.join("admin-password");
    if let Ok(p) = std::fs::read_to_string(&kept) {
        let p = p.trim().to_string();
        if !p.is_empty() {
            return Ok((p, true));
        }
    }
    let (p, _) = admin_password();
    apim_pki::files::create_private_dir(data)?;
    apim_pki::files::write_private(&kept, &format!("{p}\n"), 0o600)?;
    Ok((p, true))
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), String> {
    apim_runtime::random(buf)
}

pub fn up(args: UpArgs) -> Outcome {
    let loopback = match Loopback::parse(&args.loopback) {
        Ok(l) => l,
        Err(e) => {
            output::error(&e);
            return Outcome::Usage;
        }
    };
    let checked = match &args.file {
        Some(f) => match super::load_clean(f, "nothing was started") {
            Ok(c) => c,
            Err(o) => return o,
        },
        None => {
            let p = apim_patterns::find(apim_patterns::DEFAULT)
                .map(|p| p.template)
                .unwrap_or_default();
            let mut c = apim_topology::check_str(apim_patterns::DEFAULT, p);
            let more = apim_patterns::check(&c.topology);
            c.extend(more);
            c
        }
    };
    let (password, generated) = match up_admin_password(&args.data) {
        Ok(p) => p,
        Err(e) => {
            output::error(&e);
            return Outcome::Failure;
        }
    };
    let opts = UpOptions {
        backends: args.allow_backend.clone(),
        loopback,
        data: args.data.clone(),
        admin_password: password.clone(),
    };
    let smoke = args.smoke;
    let format = args.format;
    let result = apim_runtime::block_on(async move {
        let up = apim_runtime::up::start(&checked.topology, &opts).await?;
        for n in &up.notes {
            eprintln!("note: {n}");
        }
        if smoke {
            let target = apim_drill::real::Target::of_plan(&up.plan, &up.ca_pem, &up.backend);
            return apim_drill::smoke::run(target, &opts.admin_password)
                .await
                .map(Some);
        }
        match format {
            Format::Json => {
                let nodes: Vec<_> = up
                    .plan
                    .nodes
                    .iter()
                    .map(|n| json!({"name": n.name, "host": n.host}))
                    .collect();
                let balancers: Vec<_> = up
                    .plan
                    .balancers
                    .iter()
                    .map(|b| json!({"name": b.name, "host": b.host}))
                    .collect();
                println!(
                    "{}",
                    json!({"deployment": up.plan.deployment, "ca": up.ca.display().to_string(), "nodes": nodes, "balancers": balancers, "backend": up.backend, "notes": up.notes})
                );
            }
            Format::Human => {
                println!(
                    "apim up: {} is running ({} nodes, {} balancers). Ctrl-C stops it.\n",
                    up.plan.deployment,
                    up.plan.nodes.len(),
                    up.plan.balancers.len()
                );
                println!("endpoints:\n{}", up.endpoints());
                if generated {
                    println!(
                        "admin password (generated on the first run and kept in {}; set APIM_ADMIN_PASSWORD to choose one): {}\n",
                        opts.data.join("admin-password").display(),
                        opts.admin_password
                    );
                    println!("export APIM_ADMIN_PASSWORD={}", opts.admin_password);
                }
                println!("{}", up.walkthrough());
            }
        }
        apim_runtime::until_interrupted().await;
        Ok::<_, String>(None)
    });
    match result {
        Err(e) | Ok(Err(e)) => {
            output::error(&e);
            Outcome::Failure
        }
        Ok(Ok(None)) => Outcome::Success,
        Ok(Ok(Some(report))) => {
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                // The report's words are the simulator's; this run was real.
                Format::Human => print!(
                    "{}",
                    report.text().replacen("simulated ", "smoke-tested ", 1)
                ),
            }
            if report.ok {
                eprintln!("smoke: passed");
                Outcome::Success
            } else {
                output::error("smoke: failed (the report above says what broke)");
                Outcome::Failure
            }
        }
    }
}

pub fn node(args: NodeArgs) -> Outcome {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            output::error(&format!("cannot read `{}`: {e}", args.file));
            return Outcome::Usage;
        }
    };
    let mut plan = match apim_compiler::emit::node::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            output::error(&format!(
                "`{}` is not a node config of apim build: {e}",
                args.file
            ));
            return Outcome::Failure;
        }
    };
    if let Some(h) = &args.hosts {
        let map = std::fs::read_to_string(h)
            .map_err(|e| format!("cannot read `{h}`: {e}"))
            .and_then(|t| apim_compiler::HostMap::parse(&t));
        match map {
            Ok(m) => plan = m.node(&plan),
            Err(e) => {
                output::error(&e);
                return Outcome::Failure;
            }
        }
    }
    if let Some(b) = &args.bind {
        plan.bind = b.clone();
    }
    if let Some(dir) = &args.certs {
        plan.tls = TlsFiles::in_dir(dir, &plan.name);
        plan.tokens.in_dir(dir);
    }
    // Only a node that uses the user database may create the admin.
    let creates_admin = plan
        .databases
        .iter()
        .any(|d| d.role == apim_topology::vocab::Role::User);
    let (password, generated) = if creates_admin {
        admin_password()
    } else {
        (String::new(), false)
    };
    if generated {
        eprintln!(
            "note: APIM_ADMIN_PASSWORD is not set; the admin user (if this node creates it) gets {password}"
        );
    }
    // The certificates first: a node that could not speak to its peers should not touch its
    // databases.
    let what = format!("node {}", plan.name);
    match apim_runtime::tls::load_checked(&what, &plan.identity, &plan.host, &plan.tls) {
        Ok((_, warnings)) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
        }
        Err(e) => {
            output::error(&e);
            return Outcome::Failure;
        }
    }
    let result = apim_runtime::block_on(async move {
        let urls = apim_runtime::databases::for_node(&plan, &args.data)?;
        let running = apim_runtime::node::start(plan, urls, &password).await?;
        let parts: Vec<String> = running
            .plan
            .listeners
            .iter()
            .map(|l| format!("{} :{}", l.component, l.port))
            .collect();
        println!(
            "node {} serving {} (internal :{}, admin :{}) on {}, as {}",
            running.plan.name,
            parts.join(", "),
            running.plan.internal_port,
            running.plan.admin_port,
            running.plan.bind,
            running.plan.identity
        );
        if apim_runtime::until_signal().await == apim_runtime::Signal::Terminate {
            let name = running.plan.name.clone();
            eprintln!(
                "node {name}: draining (unready for {} ms, then finishing what is in flight)",
                args.drain_ms
            );
            let wait = std::time::Duration::from_millis(args.drain_ms);
            let grace = std::time::Duration::from_millis(apim_topology::timing::GRACE_MS);
            if running.drain(wait, grace).await {
                eprintln!("node {name}: drained");
            } else {
                eprintln!(
                    "node {name}: stopped with requests still in flight after {} ms",
                    apim_topology::timing::GRACE_MS
                );
            }
        }
        Ok::<_, String>(())
    });
    match result {
        Ok(Ok(())) => Outcome::Success,
        Err(e) | Ok(Err(e)) => {
            output::error(&e);
            Outcome::Failure
        }
    }
}
