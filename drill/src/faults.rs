//! The faults the drill makes for real: which it can make on this machine, the single-failure
//! schedule, and how each is made (the processes it stops, the packet filters it sets, how a
//! rolling restart goes).

use crate::lab::Lab;
use crate::{START_TIMEOUT, lock, ready};
use apim_compiler::plan::Plan;
use apim_sim::scenario::{FaultKind, Scenario};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a scenario cannot be drilled, if it cannot: the fault kinds the drill makes for real,
/// and what this machine has for them.
pub fn refuse(plan: &Plan, scenario: &Scenario, networked: bool) -> Result<(), String> {
    for f in &scenario.faults {
        match &f.kind {
            FaultKind::Crash { .. }
            | FaultKind::ClusterDown { .. }
            | FaultKind::BalancerOutage { .. }
            | FaultKind::CertExpiry { .. }
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
pub(crate) fn filters(plan: &Plan, lab: &Lab, kind: &FaultKind) -> Vec<(String, String)> {
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

/// The processes a fault stops: (process name, is a node).
pub(crate) fn stopped_by(plan: &Plan, kind: &FaultKind) -> Vec<String> {
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
pub(crate) fn drain_of(plan: &Plan, scenario: &Scenario, name: &str) -> u64 {
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
pub(crate) async fn roll(
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

/// How long after the fault's start the certificate it puts in place expires: long enough to
/// pass the reload's check; both worlds judge the fault from then (`report::grace_of`).
const EXPIRES_IN_S: i64 = (apim_sim::report::CERT_EXPIRY_LAG_MS / 1000) as i64;

/// A certificate-expiry fault for real: `name`'s certificate is replaced by one from the same
/// CA that expires a second later (`expiring`), or, at the repair, by a good one, and the
/// process is told to present it (SIGHUP) — it goes on running, as a node whose certificate
/// runs out does, and nobody can shake hands with it.
pub(crate) fn swap_certificate(
    lab: &Mutex<Lab>,
    plan: &Plan,
    name: &str,
    expiring: bool,
) -> Result<(), String> {
    let subject = apim_pki::subjects(plan)
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no node or balancer `{name}` to expire"))?;
    let dir = std::path::Path::new(&subject.tls.ca)
        .parent()
        .ok_or("the certificates have no folder")?;
    let ca = apim_pki::read_ca(&dir.join("ca.crt"), &dir.join("ca.key"))?;
    let issued = if expiring {
        ca.issue_expiring(&subject.identity, &subject.sans, EXPIRES_IN_S)?
    } else {
        ca.issue(&subject.identity, &subject.sans)?
    };
    apim_pki::files::write_private(
        std::path::Path::new(&subject.tls.key),
        &issued.key_pem,
        0o600,
    )?;
    apim_pki::files::write_private(
        std::path::Path::new(&subject.tls.cert),
        &issued.cert_pem,
        0o644,
    )?;
    lock(lab).hup(name);
    Ok(())
}
