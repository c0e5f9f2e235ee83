//! Known answers: what the simulator must say about the built-in patterns.

use apim_compiler::plan::Plan;
use apim_sim::run::{Options, simulate};
use apim_sim::scenario::{Scenario, Workload};

fn plan(pattern: &str) -> Plan {
    let p = apim_patterns::find(pattern).expect("pattern");
    let checked = apim_topology::check_str(pattern, p.template);
    assert_eq!(checked.errors(), 0, "{pattern}");
    Plan::of(&checked.topology)
}

fn quiet(duration_ms: u64) -> Scenario {
    Scenario {
        workload: Workload {
            duration_ms,
            ..Workload::default()
        },
        faults: Vec::new(),
    }
}

#[test]
fn without_faults_every_pattern_keeps_every_invariant() {
    for p in apim_patterns::PATTERNS {
        let t = std::time::Instant::now();
        let out = simulate(&plan(p.id), &quiet(20_000), &Options::default());
        assert_eq!(out.setup_error, None, "{}", p.id);
        assert_eq!(out.violations, Vec::new(), "{}", p.id);
        let all = out.stats.between(&apim_sim::stats::Op::ALL, 0, u64::MAX);
        eprintln!(
            "{}: {} requests, {} failed, {:?}",
            p.id,
            all.total(),
            all.failed,
            t.elapsed()
        );
        assert!(all.total() > 1000, "{}", p.id);
        assert_eq!(all.failed, 0, "{}", p.id);
    }
}
