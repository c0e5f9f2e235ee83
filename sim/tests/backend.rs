//! The APIs' backend failing as a real one does: reads that break before any answer. The
//! gateway's rule (a bodiless read is sent once more, a write never) is the components' own,
//! so the simulator runs it as production does.

use apim_compiler::plan::Plan;
use apim_sim::run::{Options, Outcome, simulate};
use apim_sim::scenario::{Scenario, Workload};
use apim_sim::stats::Op;

fn plan() -> Plan {
    let p = apim_patterns::find("clustered-internal").expect("pattern");
    let checked = apim_topology::check_str(p.id, p.template);
    assert_eq!(checked.errors(), 0);
    Plan::of(&checked.topology)
}

fn run(breaks: f64) -> Outcome {
    let scenario = Scenario {
        workload: Workload {
            duration_ms: 20_000,
            invoke_rate: 100.0,
            invoke_writes: 0.5,
            backend_breaks: breaks,
            ..Workload::default()
        },
        faults: Vec::new(),
    };
    simulate(&plan(), &scenario, &Options::default())
}

fn invokes(out: &Outcome) -> (u64, u64) {
    let t = out.stats.between(&[Op::Invoke], 0, u64::MAX);
    (t.ok, t.failed)
}

#[test]
fn a_backend_that_breaks_every_read_gets_each_read_twice_and_each_write_once() {
    let out = run(1.0);
    assert_eq!(out.setup_error, None);
    // Only liveness can fail: no API answers through a backend that never does.
    assert!(
        out.violations
            .iter()
            .all(|v| v.invariant == "liveness" && v.what.contains("status 502")),
        "{:?}",
        out.violations
    );
    let b = out.backend;
    assert!(b.reads > 0 && b.writes > 0, "{b:?}");
    assert_eq!((b.reads_broken, b.writes_broken), (b.reads, b.writes));
    assert_eq!(b.reads % 2, 0, "every read twice: {b:?}");
    let (ok, failed) = invokes(&out);
    assert_eq!(ok, 0, "no invoke can succeed");
    // Every invoke reached the backend and failed there, a read asked twice and a write
    // once (the liveness check's reads after the workload come on top).
    let reached = b.reads / 2 + b.writes;
    assert!(
        reached >= failed && reached - failed <= failed / 20,
        "{b:?}, {failed} failed"
    );
    // Writes and reads are asked for alike (every other invoke), so the backend saw about
    // twice as many reads as writes.
    assert!(
        b.reads > b.writes * 3 / 2 && b.reads < b.writes * 5 / 2,
        "{b:?}"
    );
}

#[test]
fn a_backend_that_breaks_some_reads_fails_more_writes_than_reads() {
    let healthy = run(0.0);
    assert_eq!(
        healthy.backend.reads_broken + healthy.backend.writes_broken,
        0
    );
    assert_eq!(invokes(&healthy).1, 0);
    let out = run(0.3);
    assert_eq!(out.setup_error, None);
    assert_eq!(out.violations, Vec::new());
    let b = out.backend;
    // Of the reads, 30 % break at first and 30 % of those again: about 9 % fail; of the
    // writes, 30 %.
    let (ok, failed) = invokes(&out);
    let share = failed as f64 / (ok + failed) as f64;
    assert!(
        (0.12..0.28).contains(&share),
        "about (9 % + 30 %) / 2 of invokes fail: {share} ({b:?})"
    );
    // The retries show: more reads than writes reached the backend.
    assert!(b.reads > b.writes, "{b:?}");
}
