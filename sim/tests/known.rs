//! Known answers: what the simulator must say about the built-in patterns, and that it
//! catches a deliberately broken gateway.

use apim_compiler::plan::Plan;
use apim_sim::report::{FlowEffect, Verdict, effect, grace_ms};
use apim_sim::run::{Options, Outcome, simulate};
use apim_sim::scenario::{Fault, FaultKind, Scenario, Workload};
use apim_sim::stats::Op;
use apim_sim::world::{Defect, Defects};

fn plan(pattern: &str) -> Plan {
    let p = apim_patterns::find(pattern).expect("pattern");
    let checked = apim_topology::check_str(pattern, p.template);
    assert_eq!(checked.errors(), 0, "{pattern}");
    Plan::of(&checked.topology)
}

fn workload(duration_ms: u64) -> Workload {
    Workload {
        duration_ms,
        invoke_rate: 100.0,
        publish_rate: 1.0,
        subscribe_rate: 1.0,
        token_rate: 4.0,
        revoke_rate: 0.5,
        ..Workload::default()
    }
}

/// Nothing happening but what the nodes do by themselves.
fn idle(duration_ms: u64) -> Workload {
    Workload {
        duration_ms,
        invoke_rate: 0.0,
        publish_rate: 0.0,
        subscribe_rate: 0.0,
        token_rate: 0.0,
        revoke_rate: 0.0,
        lifecycle_rate: 0.0,
        ..Workload::default()
    }
}

/// A run without faults.
fn unfaulted(plan: &Plan, workload: Workload) -> Outcome {
    let scenario = Scenario {
        workload,
        faults: Vec::new(),
    };
    simulate(plan, &scenario, &Options::default())
}

/// Runs one fault from 10 s to 40 s of a 55 s run; its effect on publish, subscribe, invoke.
fn one_fault(pattern: &str, kind: FaultKind) -> (Outcome, Vec<FlowEffect>) {
    let plan = plan(pattern);
    let scenario = Scenario {
        workload: workload(55_000),
        faults: vec![Fault {
            at_ms: 10_000,
            for_ms: Some(30_000),
            kind,
        }],
    };
    let out = simulate(&plan, &scenario, &Options::default());
    let e = effect(&out.stats, (10_000, 40_000), grace_ms(&plan), 55_000, |f| {
        out.recovered.get(&(0, f)).copied()
    });
    (out, e)
}

fn verdicts(e: &[FlowEffect]) -> Vec<Verdict> {
    e.iter().map(|f| f.verdict).collect()
}

#[test]
fn without_faults_every_pattern_keeps_every_invariant_and_every_request_succeeds() {
    for p in apim_patterns::PATTERNS {
        let out = simulate(
            &plan(p.id),
            &Scenario {
                workload: workload(20_000),
                faults: Vec::new(),
            },
            &Options::default(),
        );
        assert_eq!(out.setup_error, None, "{}", p.id);
        assert_eq!(out.violations, Vec::new(), "{}", p.id);
        for op in Op::ALL {
            let t = out.stats.between(&[op], 0, u64::MAX);
            assert!(t.total() > 0, "{}: no {op:?}", p.id);
            assert_eq!(t.failed, 0, "{}: {op:?} failed", p.id);
        }
    }
}

#[test]
fn crashing_the_standalone_node_breaks_every_flow_until_it_restarts() {
    let (out, e) = one_fault(
        "standalone",
        FaultKind::Crash {
            node: "all-in-one-1".into(),
        },
    );
    assert_eq!(out.violations, Vec::new());
    assert_eq!(verdicts(&e), [Verdict::Broken; 3]);
    for f in &e {
        assert_eq!(f.before, Some(1.0), "{}", f.flow);
        let back = f.recovered_after_ms.expect("recovers");
        assert!(back <= 5_000, "{}: {back} ms", f.flow);
    }
}

#[test]
fn in_clustered_patterns_one_gateway_or_key_manager_down_keeps_invoke_working() {
    for pattern in ["clustered-internal", "clustered-external-store"] {
        for node in ["gateway-1", "gateway-2", "key-manager-1", "key-manager-2"] {
            let (out, e) = one_fault(pattern, FaultKind::Crash { node: node.into() });
            assert_eq!(out.violations, Vec::new(), "{pattern} {node}");
            assert_eq!(e[2].flow, "invoke");
            assert_eq!(e[2].verdict, Verdict::Works, "{pattern}: crash {node}");
        }
    }
}

#[test]
fn in_external_store_cutting_external_off_from_internal_breaks_subscribe_until_it_heals() {
    let (out, e) = one_fault(
        "external-store",
        FaultKind::Partition {
            from: "external".into(),
            to: "internal".into(),
            one_way: true,
        },
    );
    assert_eq!(out.violations, Vec::new());
    assert_eq!(e[1].flow, "subscribe");
    assert_eq!(e[1].verdict, Verdict::Broken);
    // The store's breakers on its databases close on the first probe after the repair (one
    // probe period and bound at most): subscribing works again at once.
    let bound = apim_topology::timing::PROBE_EVERY_MS + apim_topology::timing::PROBE_BOUND_MS + 250;
    assert!(
        e[1].recovered_after_ms.is_some_and(|ms| ms <= bound),
        "{:?}",
        e[1]
    );
    assert_eq!(e[1].after.map(|r| r > 0.75), Some(true), "{:?}", e[1]);
}

/// The plan of a pattern with opaque tokens: every gateway asks the key manager.
fn opaque(mut plan: Plan) -> Plan {
    for n in &mut plan.nodes {
        n.tokens.format = apim_topology::vocab::TokenFormat::Opaque;
    }
    plan
}

/// The apim database down from 10 s to 70 s of an 80 s run: no violation, and no token issued
/// during the outage. Tokens live an hour, as a deployment's do: the question is what the
/// gateways decide alone, not what a client does once its token expires.
fn apim_outage(plan: Plan) -> Outcome {
    let scenario = Scenario {
        workload: Workload {
            token_lifetime_ms: apim_topology::timing::TOKEN_MS,
            ..workload(80_000)
        },
        faults: vec![Fault {
            at_ms: 10_000,
            for_ms: Some(60_000),
            kind: FaultKind::DatabaseOutage {
                database: "apim".into(),
            },
        }],
    };
    let out = simulate(&plan, &scenario, &Options::default());
    assert_eq!(out.violations, Vec::new());
    let tokens = out.stats.between(&[Op::Token], 11_000_000, 70_000_000);
    assert!(tokens.total() > 0);
    assert_eq!(tokens.ok, 0, "no token is issued without the apim database");
    out
}

#[test]
fn with_jwt_tokens_invoke_goes_on_through_an_apim_database_outage() {
    let out = apim_outage(plan("clustered-external-store"));
    let s = &out.stats;
    // Tokens already issued keep working to the end: the gateways decide alone.
    let during = s.between(&[Op::Invoke], 11_000_000, 70_000_000);
    assert!(during.total() > 0);
    assert_eq!(during.failed, 0, "{during:?}");
}

#[test]
fn an_apim_database_outage_stops_new_tokens_while_cached_validations_go_on_until_they_expire() {
    let out = apim_outage(opaque(plan("clustered-external-store")));
    let s = &out.stats;
    // Pairs of token and API validated in the last 30 s are cached; the others fail.
    let early = s.between(&[Op::Invoke], 11_000_000, 20_000_000);
    assert!(
        early.ok as f64 > 0.6 * early.total() as f64,
        "cached validations answer: {} of {}",
        early.ok,
        early.total()
    );
    let late = s.between(&[Op::Invoke], 45_000_000, 70_000_000);
    assert!(late.total() > 0);
    assert_eq!(late.ok, 0, "cached validations ended with the cache's 30 s");
    let after = s.between(&[Op::Invoke, Op::Token], 72_000_000, 80_000_000);
    assert_eq!(
        after.failed, 0,
        "everything works once the database is back"
    );
}

#[test]
fn a_gateway_that_skips_the_subscription_check_is_caught_and_the_failure_shrinks() {
    let plan = plan("clustered-external-store");
    let options = Options {
        defects: Defects::of(Defect::SubscriptionSkipped),
        ..Options::default()
    };
    let base = Scenario {
        workload: workload(20_000),
        faults: Vec::new(),
    };
    let found = apim_sim::explore::explore(&plan, &base, 1, &options, |_, _, _| {});
    assert_eq!(found.len(), 1, "the broken gateway must fail the run");
    let f = &found[0];
    assert!(
        f.violations
            .iter()
            .all(|v| v.invariant == "safety" && v.what.contains("without a subscription")),
        "{:?}",
        f.violations
    );
    assert!(f.minimal.faults.len() <= 1, "{:?}", f.minimal.faults);
    assert!(f.minimal.faults.len() <= f.drawn.faults.len());
    assert!(f.minimal.workload.duration_ms <= base.workload.duration_ms);
    // The same gateway, not broken, passes the same schedule.
    let clean = simulate(&plan, &f.minimal, &Options::default());
    assert_eq!(clean.violations, Vec::new());
}

/// `--explore N --jobs 2` finds what one thread finds, in the same order, shrunk alike.
#[test]
fn exploring_on_two_threads_finds_what_one_finds() {
    let plan = plan("clustered-external-store");
    let options = Options {
        defects: Defects::of(Defect::SubscriptionSkipped),
        seed: 40,
        ..Options::default()
    };
    let base = Scenario {
        workload: workload(10_000),
        faults: Vec::new(),
    };
    let summary = |found: Vec<apim_sim::explore::Found>| -> Vec<_> {
        found
            .into_iter()
            .map(|f| {
                (
                    f.run,
                    f.seed,
                    f.drawn.to_toml(),
                    f.minimal.to_toml(),
                    f.violations,
                    f.shrink_runs,
                )
            })
            .collect()
    };
    let one = summary(apim_sim::explore::explore(
        &plan,
        &base,
        3,
        &options,
        |_, _, _| {},
    ));
    let mut heard = 0;
    let two = summary(apim_sim::explore::explore_jobs(
        &plan,
        &base,
        3,
        &options,
        2,
        |_, _, _| heard += 1,
    ));
    assert_eq!(one.len(), 3, "the broken gateway fails every schedule");
    assert_eq!(one, two);
    assert_eq!(heard, 3, "progress hears of every run");
}

#[test]
fn an_expired_certificate_takes_its_node_out_until_renewed_and_the_matrix_agrees() {
    // The standalone node's certificate: nobody can reach it, every flow is broken, and all
    // come back once it is renewed.
    let (out, e) = one_fault(
        "standalone",
        FaultKind::CertExpiry {
            name: "all-in-one-1".into(),
            balancer: false,
        },
    );
    assert_eq!(out.violations, Vec::new());
    assert_eq!(verdicts(&e), [Verdict::Broken; 3]);
    assert!(e.iter().all(|f| f.recovered_after_ms.is_some()));
    // One key manager's certificate in a cluster: the other answers the gateways.
    let (out, e) = one_fault(
        "clustered-external-store",
        FaultKind::CertExpiry {
            name: "key-manager-1".into(),
            balancer: false,
        },
    );
    assert_eq!(out.violations, Vec::new());
    assert_eq!(e[2].verdict, Verdict::Works);
    // The edge balancer's certificate: clients reach nothing through it.
    let (_, e) = one_fault(
        "clustered-external-store",
        FaultKind::CertExpiry {
            name: "edge".into(),
            balancer: true,
        },
    );
    assert_eq!(e[2].verdict, Verdict::Broken, "invoke through the edge");
    // Every node's and balancer's expiry is in the single-failure matrix, agreeing with the
    // static analysis.
    let plan = plan("clustered-external-store");
    let m = apim_sim::failover::matrix(&plan, &apim_sim::run::Options::default(), |_, _, _| {});
    let expiries = m
        .rows
        .iter()
        .filter(|r| r.failure.starts_with("cert-expiry"))
        .count();
    assert_eq!(expiries, plan.nodes.len() + plan.balancers.len());
    assert_eq!(m.findings, Vec::<String>::new());
}

#[test]
fn a_gateway_that_missed_a_revocation_does_not_trust_its_cache_through_a_database_outage() {
    // The gateway is cut off while revocations are acknowledged (their push misses it), comes
    // back, and the apim database is down for a second just then: the key manager answers
    // the catch-up `database_unavailable`. The gateway's trust had lapsed while it was cut
    // off, so that answer does not restore it, and no revoked token outlives the bound.
    let plan = plan("clustered-external-store");
    for seed in 0..8 {
        let scenario = Scenario {
            workload: Workload {
                revoke_rate: 4.0,
                ..workload(30_000)
            },
            faults: vec![
                Fault {
                    at_ms: 10_000,
                    for_ms: Some(5_000),
                    kind: FaultKind::Isolate {
                        node: "gateway-1".into(),
                    },
                },
                Fault {
                    at_ms: 15_000,
                    for_ms: Some(1_000),
                    kind: FaultKind::DatabaseOutage {
                        database: "apim".into(),
                    },
                },
            ],
        };
        let out = simulate(
            &plan,
            &scenario,
            &Options {
                seed,
                ..Options::default()
            },
        );
        assert_eq!(out.violations, Vec::new(), "seed {seed}");
    }
}

#[test]
fn a_faults_after_ends_where_the_next_fault_starts() {
    // A gateway crash, then ten minutes later a partition that breaks subscribe: the crash's
    // "after" must not count the partition's failures.
    let plan = plan("external-store");
    let scenario = Scenario {
        workload: workload(900_000),
        faults: vec![
            Fault {
                at_ms: 10_000,
                for_ms: Some(20_000),
                kind: FaultKind::Crash {
                    node: "gateway-1".into(),
                },
            },
            Fault {
                at_ms: 630_000,
                for_ms: Some(60_000),
                kind: FaultKind::Partition {
                    from: "external".into(),
                    to: "internal".into(),
                    one_way: false,
                },
            },
        ],
    };
    let out = simulate(&plan, &scenario, &Options::default());
    assert_eq!(out.violations, Vec::new());
    let report = apim_sim::report::Report::new(&plan, &scenario, 0, "", out);
    let crash = &report.faults[0];
    for f in &crash.flows {
        assert_eq!(f.after, Some(1.0), "{}: {:?}", f.flow, f);
    }
    // Only flows the crash hurt say when they recovered.
    for f in &crash.flows {
        assert_eq!(
            f.recovered_after_ms.is_some(),
            matches!(f.verdict, Verdict::Broken | Verdict::Degraded),
            "{f:?}"
        );
    }
    let partition = &report.faults[1];
    assert!(
        partition.flows.iter().any(|f| f.verdict == Verdict::Broken),
        "{:?}",
        partition.flows
    );
}

#[test]
fn every_invoke_the_scenario_asks_for_is_counted_even_when_no_token_can_be_had() {
    // Both key managers down for longer than tokens live: applications whose token expires
    // cannot get another, and their invokes count as failed attempts, not as nothing.
    let plan = plan("clustered-external-store");
    let scenario = Scenario {
        workload: Workload {
            invoke_rate: 200.0,
            token_lifetime_ms: 20_000,
            ..workload(60_000)
        },
        faults: vec![Fault {
            at_ms: 20_000,
            for_ms: Some(30_000),
            kind: FaultKind::ClusterDown {
                cluster: "key-manager".into(),
            },
        }],
    };
    let out = simulate(&plan, &scenario, &Options::default());
    assert_eq!(out.violations, Vec::new());
    let invokes = out.stats.between(&[Op::Invoke], 0, u64::MAX);
    let asked = 200.0 * 60.0;
    let ratio = invokes.total() as f64 / asked;
    assert!(
        (0.95..1.05).contains(&ratio),
        "{} invokes counted for {asked} asked",
        invokes.total()
    );
    assert!(invokes.failed > 0, "the key managers' outage shows");
}

#[test]
fn a_database_that_refuses_and_one_that_never_answers_give_the_same_verdicts() {
    // As in the real deployment test (runtime/server/tests/outage.rs): the standalone node's
    // database down for 10 s, refusing or blackholed. Cached API calls go on; token requests
    // fail (the blackholed ones after the 2 s bound, until the breaker opens).
    let plan = plan("standalone");
    let mut verdicts_of = Vec::new();
    for kind in [
        FaultKind::DatabaseOutage {
            database: "local".into(),
        },
        FaultKind::DatabaseBlackhole {
            database: "local".into(),
        },
    ] {
        let scenario = Scenario {
            workload: workload(30_000),
            faults: vec![Fault {
                at_ms: 10_000,
                for_ms: Some(10_000),
                kind: kind.clone(),
            }],
        };
        let out = simulate(&plan, &scenario, &Options::default());
        assert_eq!(out.violations, Vec::new(), "{kind:?}");
        let invokes = out.stats.between(&[Op::Invoke], 11_000_000, 20_000_000);
        assert!(
            invokes.ok as f64 > 0.8 * invokes.total() as f64,
            "{kind:?}: cached calls answer ({} of {})",
            invokes.ok,
            invokes.total()
        );
        let tokens = out.stats.between(&[Op::Token], 11_000_000, 20_000_000);
        assert!(tokens.total() > 0 && tokens.ok == 0, "{kind:?}: {tokens:?}");
        let after = out
            .stats
            .between(&[Op::Invoke, Op::Token], 23_000_000, 30_000_000);
        assert_eq!(after.failed, 0, "{kind:?}: back within 3 s of the repair");
        let e = effect(&out.stats, (10_000, 20_000), grace_ms(&plan), 30_000, |f| {
            out.recovered.get(&(0, f)).copied()
        });
        verdicts_of.push(verdicts(&e));
    }
    assert_eq!(verdicts_of[0], verdicts_of[1]);
}

/// Every node of every cluster of clustered-external-store, one after the other, as a rolling
/// restart: no request is lost. The same schedule with crashes instead loses the writes in
/// flight (reads broken in flight are sent again to another node, writes never).
#[test]
fn a_rolling_restart_of_every_cluster_loses_no_request_and_crashes_would() {
    let plan = plan("clustered-external-store");
    let clusters = ["gateway", "key-manager", "publisher", "store"];
    let run = |crash: bool| {
        let mut faults = Vec::new();
        for (k, cluster) in clusters.iter().enumerate() {
            let at_ms = 5_000 + 35_000 * k as u64;
            if crash {
                for n in plan.nodes.iter().filter(|n| n.cluster == *cluster) {
                    faults.push(Fault {
                        at_ms: at_ms + 13_000 * (n.ordinal as u64 - 1),
                        for_ms: Some(1_000),
                        kind: FaultKind::Crash {
                            node: n.name.clone(),
                        },
                    });
                }
            } else {
                faults.push(Fault {
                    at_ms,
                    for_ms: Some(
                        2 * (apim_topology::timing::DRAIN_MS
                            + apim_sim::scenario::STOP_MS
                            + apim_sim::scenario::STARTUP_MS
                            + apim_sim::scenario::ROLLING_PAUSE_MS),
                    ),
                    kind: FaultKind::RollingRestart {
                        cluster: (*cluster).into(),
                        drain_ms: apim_topology::timing::DRAIN_MS,
                        pause_ms: apim_sim::scenario::ROLLING_PAUSE_MS,
                    },
                });
            }
        }
        let scenario = Scenario {
            workload: Workload {
                duration_ms: 150_000,
                invoke_rate: 200.0,
                // Calls take a while, so that some are in flight when a node stops.
                backend_latency_ms: 50,
                invoke_writes: 0.5,
                ..workload(150_000)
            },
            faults,
        };
        let out = simulate(&plan, &scenario, &Options::default());
        assert!(out.violations.is_empty(), "{:?}", out.violations);
        Op::ALL
            .iter()
            .map(|op| out.stats.between(&[*op], 0, u64::MAX).failed)
            .sum::<u64>()
    };
    assert_eq!(run(false), 0, "requests lost in a rolling restart");
    assert!(
        run(true) > 0,
        "crashes in the same places lose the writes in flight"
    );
}

/// A sparse flow's recovery is measured, not waited for: publications at one a minute, the
/// publisher cluster down from 10 s to 30 s. Its nodes serve again at once (they start in no
/// time here), and the report says so within the probes' 250 ms — the first report window with
/// a publication in it, the measure before the probes, would have said tens of seconds. Every
/// flow also has a verdict for the fault, whatever its rate.
#[test]
fn a_sparse_flow_recovers_as_soon_as_the_probes_after_the_repair_find_it_working() {
    let plan = plan("clustered-internal");
    let scenario = Scenario {
        workload: Workload {
            duration_ms: 60_000,
            publish_rate: 1.0 / 60.0,
            lifecycle_rate: 0.0,
            subscribe_rate: 1.0 / 60.0,
            invoke_rate: 20.0,
            ..Workload::default()
        },
        faults: vec![Fault {
            at_ms: 10_000,
            for_ms: Some(20_000),
            kind: FaultKind::ClusterDown {
                cluster: "publisher".into(),
            },
        }],
    };
    let out = simulate(&plan, &scenario, &Options::default());
    assert_eq!(out.violations, Vec::new());
    let report = apim_sim::report::Report::new(&plan, &scenario, 0, "test", out);
    let flows = &report.faults[0].flows;
    let publish = flows.iter().find(|f| f.flow == "publish").expect("publish");
    assert_eq!(publish.verdict, Verdict::Broken, "{publish:?}");
    assert!(
        publish
            .recovered_after_ms
            .is_some_and(|ms| ms < apim_sim::workload::RECOVERY_PROBE_MS),
        "{publish:?}"
    );
    assert!(
        flows.iter().all(|f| f.verdict != Verdict::Idle),
        "every flow judged: {flows:?}"
    );
}

/// A database that does not answer (a blackhole) comes back while probes are in flight: the
/// flows it broke work again within one probe period and one probe bound of the repair (plus
/// the workload's 250 ms between recovery tries), wherever the repair falls among the nodes'
/// timers. The breaker used to back off 1 s, then 2 s, between probes that waited out a whole
/// operation's bound, so a repair just after a probe went out cost up to 4 s — the real and
/// the simulated deployment then differed by where their timers happened to stand.
#[test]
fn a_database_that_comes_back_is_used_within_a_probe_wherever_the_repair_falls() {
    use apim_topology::timing::{PROBE_BOUND_MS, PROBE_EVERY_MS};
    let plan = plan("clustered-internal");
    let mut worst = 0;
    for database in ["apim", "shared"] {
        for k in 0..8u64 {
            // Repairs spread over two seconds: every phase of the old backoff.
            let for_ms = 20_000 + k * 263;
            let scenario = Scenario {
                workload: workload(45_000),
                faults: vec![Fault {
                    at_ms: 10_000,
                    for_ms: Some(for_ms),
                    kind: FaultKind::DatabaseBlackhole {
                        database: database.into(),
                    },
                }],
            };
            let out = simulate(&plan, &scenario, &Options::default());
            let e = effect(
                &out.stats,
                (10_000, 10_000 + for_ms),
                grace_ms(&plan),
                45_000,
                |f| out.recovered.get(&(0, f)).copied(),
            );
            for f in e.iter().filter(|f| f.verdict != Verdict::Works) {
                let back = f.recovered_after_ms.expect("recovers");
                worst = worst.max(back);
                assert!(
                    back <= PROBE_EVERY_MS + PROBE_BOUND_MS + 250,
                    "{database} blackholed for {for_ms} ms: {} back {back} ms",
                    f.flow
                );
            }
        }
    }
    eprintln!("worst recovery: {worst} ms");
}

/// What a fleet's gateways cost its key managers when nothing happens: the report counts
/// every internal request a gateway makes of a key manager. Today each gateway catches up on
/// revocations twice a second (`timing::REVOCATIONS_MS`), so an idle gateway asks about two a
/// second; a design whose idle cost does not grow with the fleet lowers this figure.
#[test]
fn the_report_counts_what_idle_gateways_ask_of_the_key_managers() {
    let out = unfaulted(&plan("clustered-external-store"), idle(30_000));
    let k = out.key_managers.expect("the simulator counts");
    assert_eq!(k.gateways, 2);
    let per_s = k.per_gateway_per_s(out.virtual_ms);
    let catch_ups = 1000.0 / apim_topology::timing::REVOCATIONS_MS as f64;
    assert!(
        per_s >= catch_ups * 0.9 && per_s <= catch_ups * 1.5,
        "{per_s:.2} requests per gateway per second at idle ({k:?} in {} ms)",
        out.virtual_ms
    );
}

#[test]
fn every_failed_operation_names_the_step_that_failed() {
    // The store cluster down: subscribes fail at their first step, the consumer's sign-in, and
    // the report says so per operation (as it always said for API calls).
    let (out, _) = one_fault(
        "clustered-external-store",
        FaultKind::ClusterDown {
            cluster: "store".into(),
        },
    );
    let failed = out.stats.between(&[Op::Subscribe], 10_000_000, 40_000_000);
    assert!(failed.failed > 0, "the store's outage shows");
    let why = &out.stats.failures[Op::Subscribe as usize];
    assert_eq!(
        why.values().sum::<u64>(),
        out.stats.between(&[Op::Subscribe], 0, u64::MAX).failed,
        "every failure is counted once: {why:?}"
    );
    assert!(
        why.keys().all(|k| k.starts_with("login ")),
        "a subscribe fails at its sign-in while no store answers: {why:?}"
    );
}

#[test]
fn a_fleets_catch_ups_cost_each_key_manager_a_bounded_number_of_reads() {
    // About a hundred idle gateways ask twice a second each; their key managers read the
    // revocations for all of them together, at most once per feed period each.
    let checked = apim_topology::check_str("fleet", &apim_topology::synth::gateway_heavy(112));
    assert_eq!(checked.errors(), 0);
    let plan = Plan::of(&checked.topology);
    let key_managers = plan
        .nodes
        .iter()
        .filter(|n| {
            n.listeners
                .iter()
                .any(|l| l.component == apim_topology::vocab::Component::KeyManager)
        })
        .count() as f64;
    let idle = Workload {
        applications: 1,
        apis: 1,
        ..idle(10_000)
    };
    let out = unfaulted(&plan, idle);
    let k = out.key_managers.expect("the simulator counts");
    assert!(k.gateways >= 90, "{k:?}");
    let seconds = out.virtual_ms as f64 / 1000.0;
    let reads = k.catch_up_reads as f64 / seconds;
    let most = key_managers * 1000.0 / apim_topology::timing::FEED_EVERY_MS as f64;
    assert!(
        reads <= most,
        "{reads:.1} reads a second by {key_managers} key managers ({k:?})"
    );
    assert!(
        (k.catch_up_reads as f64) < k.requests as f64 / 4.0,
        "one read serves many catch-ups: {k:?}"
    );
}
