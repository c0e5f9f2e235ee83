//! `apim up --smoke`: the workload of `apim sim` and `apim drill`, for a few seconds and without
//! faults, against a deployment that is running — the same set-up, clients, probes and judge,
//! so a smoke test refuses what a simulation refuses.

use crate::real::{Target, workload};
use apim_compiler::plan::Plan;
use apim_sim::report::Report;
use apim_sim::scenario::{Scenario, Workload};

/// How long the smoke test's clients run, after the set-up and before liveness.
pub const DURATION_MS: u64 = 5_000;

/// The smoke test's scenario: every flow several times in [`DURATION_MS`], no fault, tokens
/// that live as long as the deployment's own (the test cannot change them).
pub fn scenario(plan: &Plan) -> Scenario {
    let tokens = plan.nodes.iter().map(|n| &n.tokens);
    Scenario {
        workload: Workload {
            duration_ms: DURATION_MS,
            apis: 1,
            applications: 2,
            publish_rate: 0.6,
            subscribe_rate: 0.6,
            token_rate: 1.0,
            invoke_rate: 40.0,
            revoke_rate: 0.6,
            lifecycle_rate: 0.2,
            revocation_bound_ms: tokens
                .clone()
                .map(|t| t.revocation_bound_ms)
                .max()
                .unwrap_or(apim_topology::timing::REVOCATION_BOUND_MS),
            token_lifetime_ms: tokens
                .map(|t| t.lifetime_ms)
                .min()
                .unwrap_or(apim_topology::timing::TOKEN_MS),
            ..Workload::default()
        },
        faults: Vec::new(),
    }
}

/// Runs the smoke test against `target`; the report is a drill's (its `ok` is the verdict).
pub async fn run(target: Target, admin_password: &str) -> Result<Report, String> {
    let scenario = scenario(&target.plan);
    let plan = target.plan.clone();
    // Its users and APIs are named afresh: the deployment may have served a smoke test before.
    let mut tag = [0u8; 4];
    apim_runtime::random(&mut tag)?;
    let tag: String = std::iter::once("-".to_string())
        .chain(tag.iter().map(|b| format!("{b:02x}")))
        .collect();
    let outcome = workload(target, &scenario, admin_password, &tag, None, || ()).await?;
    Ok(Report::new(&plan, &scenario, 0, "apim up --smoke", outcome))
}
