//! The token settings a deployment chooses between, simulated: with JWT access tokens under
//! the available policy API calls survive the key managers, at the price of revoked tokens a
//! cut-off gateway keeps serving (reported, not a violation); under the strict policy no
//! revoked token outlives the bound, and a cut-off gateway refuses instead.

use apim_compiler::plan::Plan;
use apim_sim::failover::with_tokens;
use apim_sim::report::grace_ms;
use apim_sim::run::{Options, Outcome, simulate};
use apim_sim::scenario::{Fault, FaultKind, Scenario, Workload};
use apim_sim::stats::Op;
use apim_topology::vocab::{Revocation, TokenFormat};

fn plan_of(text: &str) -> Plan {
    let checked = apim_topology::check_str("t.toml", text);
    assert_eq!(checked.errors(), 0);
    Plan::of(&checked.topology)
}

fn pattern(id: &str) -> Plan {
    plan_of(apim_patterns::find(id).expect("pattern").template)
}

/// clustered-external-store with a second gateway cluster on its own network (a DMZ), which
/// reaches the key managers and databases through the firewall: a partition cuts it off from
/// them while clients still reach it through the edge balancer.
fn two_gateway_networks() -> Plan {
    plan_of(include_str!("two-gateway-networks.toml"))
}

const FAULT_AT: u64 = 15_000;
const FAULT_FOR: u64 = 30_000;

fn run(plan: &Plan, kind: FaultKind, revoke_rate: f64) -> Outcome {
    let scenario = Scenario {
        workload: Workload {
            duration_ms: 60_000,
            invoke_rate: 50.0,
            token_rate: 4.0,
            revoke_rate,
            // A deployment's own lifetime: the question is the gateways' policy, not clients
            // whose tokens run out while no key manager can renew them.
            token_lifetime_ms: apim_topology::timing::TOKEN_MS,
            ..Workload::default()
        },
        faults: vec![Fault {
            at_ms: FAULT_AT,
            for_ms: Some(FAULT_FOR),
            kind,
        }],
    };
    simulate(plan, &scenario, &Options::default())
}

/// The share of calls of `op` that succeeded during the fault, after the detection time.
fn during(out: &Outcome, plan: &Plan, op: Op) -> (u64, u64) {
    let from = (FAULT_AT + grace_ms(plan)) * 1000;
    let t = out
        .stats
        .between(&[op], from, (FAULT_AT + FAULT_FOR) * 1000);
    (t.ok, t.total())
}

#[test]
fn with_jwt_under_the_available_policy_api_calls_survive_the_key_managers() {
    let base = pattern("clustered-external-store");
    let down = || FaultKind::ClusterDown {
        cluster: "key-manager".into(),
    };
    let available = with_tokens(&base, TokenFormat::Jwt, Revocation::Available);
    let out = run(&available, down(), 0.5);
    assert_eq!(out.violations, Vec::new());
    let (ok, total) = during(&out, &available, Op::Invoke);
    assert!(total > 500, "{total}");
    assert_eq!(ok, total, "every API call answered without a key manager");
    let (tokens, _) = during(&out, &available, Op::Token);
    assert_eq!(tokens, 0, "no token is issued without one");
    // The same failure breaks API calls under the strict policy and with opaque tokens.
    for (format, revocation) in [
        (TokenFormat::Jwt, Revocation::Strict),
        (TokenFormat::Opaque, Revocation::Strict),
    ] {
        let plan = with_tokens(&base, format, revocation);
        let out = run(&plan, down(), 0.5);
        assert_eq!(out.violations, Vec::new(), "{format} {revocation}");
        let (ok, total) = during(&out, &plan, Op::Invoke);
        assert!(total > 0);
        assert!(
            (ok as f64) < 0.01 * total as f64,
            "{format} {revocation}: {ok} of {total} answered"
        );
    }
}

#[test]
fn a_cut_off_gateway_serves_revoked_tokens_only_under_the_available_policy_and_it_is_reported() {
    let base = two_gateway_networks();
    let cut = || FaultKind::Partition {
        from: "dmz".into(),
        to: "internal".into(),
        one_way: false,
    };
    let strict = with_tokens(&base, TokenFormat::Jwt, Revocation::Strict);
    let s = run(&strict, cut(), 2.0);
    assert_eq!(s.violations, Vec::new());
    assert_eq!(s.revoked_served.calls, 0, "strict: never past the bound");
    let available = with_tokens(&base, TokenFormat::Jwt, Revocation::Available);
    let a = run(&available, cut(), 2.0);
    assert_eq!(
        a.violations,
        Vec::new(),
        "the price is reported, not a violation"
    );
    assert!(a.revoked_served.calls > 0, "{:?}", a.revoked_served);
    // Never longer than the cut-off: the gateway applies revocations when it reconnects.
    assert!(
        a.revoked_served.longest_ms <= FAULT_FOR + 2_000,
        "{:?}",
        a.revoked_served
    );
    let (s_ok, s_total) = during(&s, &strict, Op::Invoke);
    let (a_ok, a_total) = during(&a, &available, Op::Invoke);
    assert!(
        a_ok as f64 / a_total as f64 > s_ok as f64 / s_total as f64 + 0.1,
        "available answers more: {a_ok}/{a_total} against {s_ok}/{s_total}"
    );
}

#[test]
fn a_jwt_run_replays_byte_for_byte() {
    let plan = with_tokens(
        &two_gateway_networks(),
        TokenFormat::Jwt,
        Revocation::Available,
    );
    let cut = || FaultKind::Partition {
        from: "dmz".into(),
        to: "internal".into(),
        one_way: false,
    };
    let (a, b) = (run(&plan, cut(), 2.0), run(&plan, cut(), 2.0));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.revoked_served, b.revoked_served);
}
