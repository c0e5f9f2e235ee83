//! Exploration: random fault schedules drawn swarm-style (each run allows a random subset of
//! the fault kinds), and for every failing run a shrunk schedule that still fails.

use crate::failover::parts;
use crate::rng::Rng;
use crate::run::{Options, Outcome, Violation, simulate};
use crate::scenario::{Fault, FaultKind, Scenario};
use apim_compiler::plan::Plan;
use serde::Serialize;

const MAX_FAULTS: u64 = 5;

/// A failing run: its seed, the schedule drawn, and the smallest schedule found that fails.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub run: usize,
    pub seed: u64,
    pub drawn: Scenario,
    pub minimal: Scenario,
    pub violations: Vec<Violation>,
    /// Simulations the shrinking took.
    pub shrink_runs: usize,
}

fn candidates(plan: &Plan) -> Vec<FaultKind> {
    let mut all = parts(plan);
    let nets: Vec<&str> = plan.networks.iter().map(|n| n.name.as_str()).collect();
    for n in &plan.nodes {
        all.push(FaultKind::Isolate {
            node: n.name.clone(),
        });
    }
    for d in &plan.databases {
        all.push(FaultKind::DatabaseBlackhole {
            database: d.name.clone(),
        });
    }
    for (i, a) in nets.iter().enumerate() {
        for b in nets.iter().skip(i + 1) {
            let (from, to) = (a.to_string(), b.to_string());
            all.push(FaultKind::Partition {
                from: from.clone(),
                to: to.clone(),
                one_way: false,
            });
            all.push(FaultKind::Latency {
                from: from.clone(),
                to: to.clone(),
                one_way: false,
                added_ms: 200,
            });
            all.push(FaultKind::Loss {
                from,
                to,
                one_way: false,
                rate_permille: 100,
            });
        }
    }
    all.sort();
    all.dedup();
    all
}

/// Draws a schedule: a random subset of kinds, then up to five faults of those kinds; half
/// the time, one of them cuts a gateway off for a few seconds, while publishes and
/// revocations go on — the fault that tests the push-plus-catch-up pairs (a missed
/// notification must be repaired from the registry and the key manager).
pub fn draw(plan: &Plan, base: &Scenario, rng: &mut Rng) -> Scenario {
    let all = candidates(plan);
    let mut kinds: Vec<&str> = all.iter().map(FaultKind::name).collect();
    kinds.dedup();
    let allowed: Vec<&str> = loop {
        let pick: Vec<&str> = kinds.iter().copied().filter(|_| rng.chance(0.5)).collect();
        if !pick.is_empty() {
            break pick;
        }
    };
    let pool: Vec<&FaultKind> = all.iter().filter(|k| allowed.contains(&k.name())).collect();
    let duration = base.workload.duration_ms;
    let n = 1 + rng.below(MAX_FAULTS);
    let mut faults: Vec<Fault> = (0..n)
        .map(|_| {
            let kind = pool[rng.below(pool.len() as u64) as usize].clone();
            let at_ms = rng.below(duration * 7 / 10) / 1000 * 1000;
            let for_ms = (2_000 + rng.below(duration / 2)) / 1000 * 1000;
            Fault {
                at_ms,
                for_ms: Some(for_ms),
                kind,
            }
        })
        .collect();
    let gateways: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| {
            n.listeners
                .iter()
                .any(|l| l.component == apim_topology::vocab::Component::Gateway)
        })
        .map(|n| n.name.as_str())
        .collect();
    if !gateways.is_empty() && rng.chance(0.5) {
        let node = gateways[rng.below(gateways.len() as u64) as usize].to_string();
        // A few seconds, well inside the gateway's cache time (30 s), so what it cached before
        // is still there when it comes back.
        let for_ms = (2_000 + rng.below(6_000)) / 1000 * 1000;
        let at_ms = rng.below(duration.saturating_sub(for_ms + 5_000).max(1)) / 1000 * 1000;
        faults.push(Fault {
            at_ms,
            for_ms: Some(for_ms),
            kind: FaultKind::Isolate { node },
        });
    }
    faults.sort();
    let mut workload = base.workload.clone();
    // Swarm the workload too: now and then revocations and publishes come thick, so that some
    // happen while a gateway is cut off.
    if rng.chance(0.5) {
        workload.revoke_rate = workload.revoke_rate.max(0.2) * 5.0;
        workload.publish_rate = workload.publish_rate.max(0.2) * 5.0;
    }
    Scenario { workload, faults }
}

fn fails(out: &Outcome) -> bool {
    !out.violations.is_empty()
}

/// Shrinks a failing schedule: drops faults, shortens them, shortens the run, keeping only
/// changes after which the run still fails.
pub fn shrink(
    plan: &Plan,
    failing: &Scenario,
    options: &Options,
) -> (Scenario, Vec<Violation>, usize) {
    let mut best = failing.clone();
    let mut violations = simulate(plan, &best, options).violations;
    let mut runs = 1;
    let try_it = |s: &Scenario, runs: &mut usize| -> Option<Vec<Violation>> {
        *runs += 1;
        let out = simulate(plan, s, options);
        fails(&out).then_some(out.violations)
    };
    loop {
        let mut progressed = false;
        // Fewer faults.
        let mut i = 0;
        while i < best.faults.len() {
            let mut s = best.clone();
            s.faults.remove(i);
            if let Some(v) = try_it(&s, &mut runs) {
                best = s;
                violations = v;
                progressed = true;
            } else {
                i += 1;
            }
        }
        // Shorter faults.
        for i in 0..best.faults.len() {
            let Some(d) = best.faults[i].for_ms else {
                continue;
            };
            if d <= 1_000 {
                continue;
            }
            let mut s = best.clone();
            s.faults[i].for_ms = Some((d / 2 / 1000).max(1) * 1000);
            if let Some(v) = try_it(&s, &mut runs) {
                best = s;
                violations = v;
                progressed = true;
            }
        }
        // A shorter run: just past the last fault.
        let last = best
            .faults
            .iter()
            .map(|f| f.at_ms + f.for_ms.unwrap_or(0))
            .max()
            .unwrap_or(0);
        let shorter = (last + 5_000).div_ceil(1000) * 1000;
        if shorter < best.workload.duration_ms {
            let mut s = best.clone();
            s.workload.duration_ms = shorter;
            s.faults.retain(|f| f.at_ms < shorter);
            if let Some(v) = try_it(&s, &mut runs) {
                best = s;
                violations = v;
                progressed = true;
            }
        }
        if !progressed {
            return (best, violations, runs);
        }
    }
}

/// Runs `n` drawn schedules from `seed`; `progress` hears of each.
pub fn explore(
    plan: &Plan,
    base: &Scenario,
    n: usize,
    options: &Options,
    progress: impl FnMut(usize, usize, bool),
) -> Vec<Found> {
    search(plan, base, n, options, false, progress)
}

/// [`explore`] on `jobs` threads: each schedule is still drawn and run from its own seed, and
/// what is found comes back in run order, so the result is the same as on one thread;
/// `progress` hears of each run as it ends (in the order they end).
pub fn explore_jobs(
    plan: &Plan,
    base: &Scenario,
    n: usize,
    options: &Options,
    jobs: usize,
    mut progress: impl FnMut(usize, usize, bool),
) -> Vec<Found> {
    crate::jobs::in_order(
        n,
        jobs,
        |run| one(plan, base, options, run),
        |done, f| progress(done, n, f.is_some()),
    )
    .into_iter()
    .flatten()
    .collect()
}

/// Draws and runs schedule `run`; what it found, shrunk, when it failed.
fn one(plan: &Plan, base: &Scenario, options: &Options, run: usize) -> Option<Found> {
    let seed = options.seed.wrapping_add(run as u64);
    let mut rng = Rng::new(seed);
    let drawn = draw(plan, base, &mut rng);
    let opts = Options {
        seed,
        ..options.clone()
    };
    let out = simulate(plan, &drawn, &opts);
    if !fails(&out) {
        return None;
    }
    let (minimal, violations, shrink_runs) = shrink(plan, &drawn, &opts);
    Some(Found {
        run,
        seed,
        drawn,
        minimal,
        violations,
        shrink_runs,
    })
}

/// Runs drawn schedules until one fails (at most `n`); the failure, shrunk.
pub fn first_failure(plan: &Plan, base: &Scenario, n: usize, options: &Options) -> Option<Found> {
    search(plan, base, n, options, true, |_, _, _| {})
        .into_iter()
        .next()
}

fn search(
    plan: &Plan,
    base: &Scenario,
    n: usize,
    options: &Options,
    stop_at_first: bool,
    mut progress: impl FnMut(usize, usize, bool),
) -> Vec<Found> {
    let mut found = Vec::new();
    for run in 0..n {
        let f = one(plan, base, options, run);
        let failed = f.is_some();
        found.extend(f);
        progress(run + 1, n, failed);
        if failed && stop_at_first {
            break;
        }
    }
    found
}
