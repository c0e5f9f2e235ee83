//! The simulator finds what it claims to check: each deliberate defect of the components is
//! caught, by a run without faults or by exploring fault schedules within a small budget, and
//! its failure shrinks to a short schedule. The number of schedules each needed is printed
//! (`cargo test -p apim-sim --test defects -- --nocapture`).

use apim_compiler::plan::Plan;
use apim_sim::explore::first_failure;
use apim_sim::run::{Options, simulate};
use apim_sim::scenario::{Scenario, Workload};
use apim_sim::world::{Defect, Defects};

/// Schedules explored before a defect counts as missed.
const BUDGET: usize = 40;

fn plan() -> Plan {
    let p = apim_patterns::find("clustered-external-store").expect("pattern");
    let checked = apim_topology::check_str("clustered-external-store", p.template);
    assert_eq!(checked.errors(), 0);
    Plan::of(&checked.topology)
}

/// The default workload for 30 s, with tokens that expire within the run.
fn base() -> Scenario {
    Scenario {
        workload: Workload {
            duration_ms: 30_000,
            token_lifetime_ms: 20_000,
            ..Workload::default()
        },
        faults: Vec::new(),
    }
}

/// How a defect was caught: 0 schedules when the run without faults caught it.
struct Caught {
    schedules: usize,
    shrunk_faults: usize,
    what: String,
}

fn catch(plan: &Plan, defect: Defect) -> Option<Caught> {
    let options = Options {
        defects: Defects::of(defect),
        ..Options::default()
    };
    let out = simulate(plan, &base(), &options);
    assert_eq!(out.setup_error, None, "{defect:?}");
    if let Some(v) = out.violations.first() {
        return Some(Caught {
            schedules: 0,
            shrunk_faults: 0,
            what: v.what.clone(),
        });
    }
    let found = first_failure(plan, &base(), BUDGET, &options)?;
    // The shrunk schedule still fails, and the same schedule passes without the defect.
    let again = simulate(
        plan,
        &found.minimal,
        &Options {
            seed: found.seed,
            ..options.clone()
        },
    );
    assert!(
        !again.violations.is_empty(),
        "{defect:?}: shrunk schedule passes"
    );
    let clean = simulate(
        plan,
        &found.minimal,
        &Options {
            seed: found.seed,
            ..Options::default()
        },
    );
    assert_eq!(
        clean.violations,
        Vec::new(),
        "{defect:?} without the defect"
    );
    Some(Caught {
        schedules: found.run + 1,
        shrunk_faults: found.minimal.faults.len(),
        what: found.violations[0].what.clone(),
    })
}

#[test]
fn the_default_run_and_the_defaults_of_exploration_pass_without_defects() {
    let plan = plan();
    let out = simulate(&plan, &base(), &Options::default());
    assert_eq!(out.setup_error, None);
    assert_eq!(out.violations, Vec::new());
    assert_eq!(
        first_failure(&plan, &base(), 10, &Options::default()).map(|f| f.violations),
        None
    );
}

#[test]
fn every_defect_is_caught_and_shrunk() {
    let plan = plan();
    let mut missed = Vec::new();
    for defect in Defect::ALL {
        match catch(&plan, defect) {
            Some(c) => println!(
                "{:<26} caught after {} explored schedule(s) (0: the run without faults), shrunk to {} fault(s): {}",
                defect.as_str(),
                c.schedules,
                c.shrunk_faults,
                c.what
            ),
            None => {
                println!("{:<26} MISSED in {BUDGET} schedules", defect.as_str());
                missed.push(defect);
            }
        }
    }
    assert_eq!(missed, Vec::new());
}

#[test]
fn the_oracle_catches_a_storage_whose_subscription_check_is_wrong() {
    // The apim database itself answers "subscribed" wrongly: the key manager and the gateway
    // trust it, and only an oracle with its own record of the subscriptions sees the lie.
    let options = Options {
        defects: Defects::of(Defect::SubscriptionLookupWrong),
        ..Options::default()
    };
    let out = simulate(&plan(), &base(), &options);
    assert!(
        out.violations
            .iter()
            .any(|v| v.invariant == "safety" && v.what.contains("without a subscription")),
        "{:?}",
        out.violations
    );
}
