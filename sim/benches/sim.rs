//! The simulator's speed: simulated invokes per wall-clock second on clustered-external-store
//! under faults, the ratio of virtual to wall time, and one virtual hour at 1,000 requests/s
//! (target: under 20 s and 200 MB). Run with `cargo bench -p apim-sim --bench sim`; the
//! process pins itself to one core, as the target is stated for one core.
//!
//! `-- fleet` measures only the fleets: one virtual minute at 1,000 invokes/s on gateway-heavy
//! topologies of 8 to 1,008 nodes (issue "Fleet scale": the same work should cost the same
//! whatever the number of idle gateways; target for 1,008 nodes < 3 s and < 100 MB).

use apim_compiler::plan::Plan;
use apim_sim::run::{Options, simulate};
use apim_sim::scenario::{Fault, FaultKind, Scenario, Workload};
use apim_sim::stats::Op;
use std::time::Instant;

fn plan() -> Plan {
    let p = apim_patterns::find("clustered-external-store").expect("pattern");
    Plan::of(&apim_topology::check_str("bench", p.template).topology)
}

/// A crash, a partition and a database outage, spread over the run.
fn faults(duration_ms: u64) -> Vec<Fault> {
    let at = |f: u64| duration_ms * f / 10;
    vec![
        Fault {
            at_ms: at(1),
            for_ms: Some(duration_ms / 10),
            kind: FaultKind::Crash {
                node: "gateway-1".into(),
            },
        },
        Fault {
            at_ms: at(4),
            for_ms: Some(duration_ms / 20),
            kind: FaultKind::Partition {
                from: "external".into(),
                to: "internal".into(),
                one_way: false,
            },
        },
        Fault {
            at_ms: at(7),
            for_ms: Some(duration_ms / 20),
            kind: FaultKind::DatabaseOutage {
                database: "apim".into(),
            },
        },
    ]
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What the gateways cost the key managers: requests per gateway per second, and the key
/// managers' reads of the revocations per second.
struct KeyManagers {
    per_gateway: f64,
    reads: f64,
}

impl std::fmt::Display for KeyManagers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} key-manager requests per gateway per second, {:.1} reads of the revocations a second",
            self.per_gateway, self.reads
        )
    }
}

/// Runs a scenario; (simulated invokes, wall seconds, what the gateways cost the key managers).
fn run(plan: &Plan, s: &Scenario) -> (u64, f64, KeyManagers) {
    let t = Instant::now();
    let out = simulate(plan, s, &Options::default());
    let wall = t.elapsed().as_secs_f64();
    assert!(out.setup_error.is_none(), "{:?}", out.setup_error);
    let km = out.key_managers.map_or(
        KeyManagers {
            per_gateway: 0.0,
            reads: 0.0,
        },
        |k| KeyManagers {
            per_gateway: k.per_gateway_per_s(out.virtual_ms),
            reads: k.catch_up_reads as f64 * 1000.0 / out.virtual_ms.max(1) as f64,
        },
    );
    (
        out.stats.between(&[Op::Invoke], 0, u64::MAX).total(),
        wall,
        km,
    )
}

/// One virtual minute at 1,000 invokes/s on fleets of growing size: wall time against the
/// smallest's.
fn fleets() {
    let minute = Scenario {
        workload: Workload {
            duration_ms: 60_000,
            invoke_rate: 1_000.0,
            ..Workload::default()
        },
        faults: Vec::new(),
    };
    let mut first = None;
    for nodes in [8, 108, 308, 1_008] {
        let text = apim_topology::synth::gateway_heavy(nodes);
        let plan = Plan::of(&apim_topology::check_str("fleet", &text).topology);
        let (invokes, wall, km) = run(&plan, &minute);
        let base = *first.get_or_insert(wall);
        println!(
            "fleet of {:>5} nodes, 1 virtual minute at 1,000 invokes/s: {wall:>6.2} s wall ({invokes} invokes), {:.1}x the smallest; peak RSS so far {:.0} MB; {km}",
            plan.nodes.len(),
            wall / base,
            peak_rss_mb()
        );
    }
    // Nothing happening: what the gateways alone cost the key managers (target <= 0.2).
    let idle = Scenario {
        workload: Workload {
            duration_ms: 60_000,
            invoke_rate: 0.0,
            token_rate: 0.0,
            publish_rate: 0.0,
            subscribe_rate: 0.0,
            revoke_rate: 0.0,
            lifecycle_rate: 0.0,
            ..Workload::default()
        },
        faults: Vec::new(),
    };
    let text = apim_topology::synth::gateway_heavy(1_008);
    let plan = Plan::of(&apim_topology::check_str("fleet", &text).topology);
    let (_, wall, km) = run(&plan, &idle);
    println!(
        "fleet of {:>5} nodes, 1 idle virtual minute: {wall:.2} s wall, {km} (target <= 0.2 requests per gateway per second)",
        plan.nodes.len()
    );
}

fn main() {
    let pinned = core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().next())
        .is_some_and(core_affinity::set_for_current);
    if std::env::args().skip(1).any(|a| a == "fleet") {
        println!("apim sim benchmark, fleets (pinned to one core: {pinned})");
        fleets();
        return;
    }
    println!("apim sim benchmark (clustered-external-store, pinned to one core: {pinned})");
    let plan = plan();

    // The hours first, so the peak memory is theirs.
    for (label, faults) in [
        ("without faults", Vec::new()),
        ("with faults", faults(3_600_000)),
    ] {
        let hour = Scenario {
            workload: Workload {
                duration_ms: 3_600_000,
                invoke_rate: 1_000.0,
                ..Workload::default()
            },
            faults,
        };
        let (invokes, wall, _) = run(&plan, &hour);
        let rss = peak_rss_mb();
        println!(
            "1 virtual hour at 1,000 invokes/s {label}: {wall:.1} s wall ({invokes} invokes, {:.0}/s), peak RSS {rss:.0} MB; targets < 20 s and < 200 MB: {} and {}",
            invokes as f64 / wall,
            if wall < 20.0 { "met" } else { "NOT met" },
            if rss < 200.0 { "met" } else { "NOT met" },
        );
    }

    let busy = Scenario {
        workload: Workload {
            duration_ms: 120_000,
            invoke_rate: 5_000.0,
            ..Workload::default()
        },
        faults: faults(120_000),
    };
    let mut rates: Vec<(f64, f64)> = (0..5)
        .map(|_| {
            let (invokes, wall, _) = run(&plan, &busy);
            (invokes as f64 / wall, 120.0 / wall)
        })
        .collect();
    rates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median, best) = (rates[rates.len() / 2], rates[rates.len() - 1]);
    println!(
        "2 virtual minutes at 5,000 invokes/s with faults, 5 runs: median {:.0} simulated invokes/s (virtual time {:.0}x wall), best {:.0}/s",
        median.0, median.1, best.0
    );
    println!(
        "ratio to the 200,000 invokes/s target: median {:.2}, best {:.2}",
        median.0 / 200_000.0,
        best.0 / 200_000.0
    );
}
