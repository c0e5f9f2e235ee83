//! The report of a run: per operation success and latency, each fault's effect on each flow,
//! every invariant violation with the command that replays it, and the trace hash.

use crate::run::{Outcome, Violation};
use crate::scenario::{Scenario, format_ms};
use crate::stats::{Op, Stats, Tally};
use apim_compiler::plan::Plan;
use apim_topology::flows::Flow;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A flow's state in a window: works (≥ 99 % succeed), broken (< 1 %), degraded, or idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Works,
    Degraded,
    Broken,
    Idle,
}

impl Verdict {
    pub fn of(t: &Tally) -> Verdict {
        if t.total() == 0 {
            return Verdict::Idle;
        }
        let ratio = t.ok as f64 / t.total() as f64;
        if ratio >= 0.99 {
            Verdict::Works
        } else if ratio < 0.01 {
            Verdict::Broken
        } else {
            Verdict::Degraded
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Works => "works",
            Verdict::Degraded => "degraded",
            Verdict::Broken => "broken",
            Verdict::Idle => "idle",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct OpSummary {
    pub op: Op,
    pub flow: &'static str,
    pub requests: u64,
    pub succeeded: u64,
    pub success_ratio: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Why the failed requests failed: the step that failed and its answer's status
    /// (`subscribe 503`, `keys no answer`); for API calls `no token` (none could be had), `no
    /// application`, `no answer`, or the gateway's status.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FlowEffect {
    pub flow: &'static str,
    /// Success ratio before the fault, during it (after the grace period), and after repair
    /// until the next fault starts (or the run ends).
    pub before: Option<f64>,
    pub during: Option<f64>,
    pub after: Option<f64>,
    pub verdict: Verdict,
    /// For a flow the fault hurt: from repair until a window where the flow works again;
    /// absent when it never did before the next fault, or was not hurt.
    pub recovered_after_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FaultEffect {
    pub fault: String,
    pub at_ms: u64,
    pub until_ms: u64,
    pub flows: Vec<FlowEffect>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ViolationReport {
    #[serde(flatten)]
    pub violation: Violation,
    pub replay: String,
}

/// One window of the timeline: per operation, succeeded, failed and p99 latency.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub start_ms: u64,
    pub ops: Vec<(Op, u64, u64, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub deployment: String,
    pub seed: u64,
    pub ok: bool,
    pub setup_error: Option<String>,
    pub duration_ms: u64,
    pub virtual_ms: u64,
    pub grace_ms: u64,
    pub window_ms: u64,
    pub operations: Vec<OpSummary>,
    pub faults: Vec<FaultEffect>,
    pub violations: Vec<ViolationReport>,
    /// Under the available revocation policy: revoked tokens served past the bound (its
    /// price, not a violation).
    pub revoked_served: crate::run::RevokedServed,
    /// What the APIs' backend was asked, when the scenario breaks some of its requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<crate::world::BackendRequests>,
    /// What the gateways asked of the key managers (simulated runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_managers: Option<KeyManagerLoad>,
    pub timeline: Vec<Window>,
    pub events: u64,
    pub trace_hash: String,
    pub scenario: Scenario,
}

/// What the gateways asked of the key managers in a run: catch-ups, keys, token questions.
#[derive(Clone, Debug, Serialize)]
pub struct KeyManagerLoad {
    pub gateways: u64,
    pub requests: u64,
    /// Over the whole run (its virtual time, liveness included).
    pub per_gateway_per_s: f64,
    /// The key managers' reads of the apim database for the gateways' catch-ups, a second.
    pub catch_up_reads_per_s: f64,
}

/// How long after its fault starts a drilled certificate runs out: the drill presents one that
/// must still pass the node's reload check. Both worlds judge a certificate's expiry from then,
/// so that the drill's lag is never taken for a difference between them.
pub const CERT_EXPIRY_LAG_MS: u64 = 1_000;

/// The parts of a fault's window not judged: after its start and before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grace {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl From<u64> for Grace {
    fn from(ms: u64) -> Grace {
        Grace {
            start_ms: ms,
            end_ms: ms,
        }
    }
}

/// The parts of `kind`'s window not judged: the balancers' detection time at both ends,
/// counted at the start of a certificate's expiry from when the certificate has run out in
/// both worlds (its repair is at once in both).
pub fn grace_of(plan: &Plan, kind: &crate::scenario::FaultKind) -> Grace {
    let lag = match kind {
        crate::scenario::FaultKind::CertExpiry { .. } => CERT_EXPIRY_LAG_MS,
        _ => 0,
    };
    Grace {
        start_ms: grace_ms(plan) + lag,
        end_ms: grace_ms(plan),
    }
}

/// The balancers' failure detection time: a fault's first moments are not judged.
pub fn grace_ms(plan: &Plan) -> u64 {
    plan.balancers
        .iter()
        .flat_map(|b| &b.routes)
        .map(|r| u64::from(r.health.fall) * r.health.interval_ms + r.health.timeout_ms)
        .max()
        .unwrap_or(0)
}

fn ops_of(flow: Flow) -> Vec<Op> {
    Op::ALL
        .into_iter()
        .filter(|o| o.flow() == Some(flow))
        .collect()
}

fn ratio(t: &Tally) -> Option<f64> {
    (t.total() > 0).then(|| t.ok as f64 / t.total() as f64)
}

fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

/// What a fault from `at_ms` to `until_ms` did to each flow; `end_ms` ends its "after" (the
/// next fault's start, or the end of the run). A flow it hurt recovered when `probed` says (the
/// workload's recovery probes), else in the first report window after the repair in which it
/// worked.
pub fn effect(
    stats: &Stats,
    (at_ms, until_ms): (u64, u64),
    grace: impl Into<Grace>,
    end_ms: u64,
    probed: impl Fn(Flow) -> Option<u64>,
) -> Vec<FlowEffect> {
    let grace = grace.into();
    let w = stats.window_us / 1000;
    Flow::ALL
        .iter()
        .map(|&flow| {
            let ops = ops_of(flow);
            let us = |m: u64| m * 1000;
            let before = stats.between(&ops, 0, us(at_ms));
            // Judged from the detection time after the fault starts to the detection time
            // before it ends: requests retried across the repair are neither.
            let from = at_ms + grace.start_ms;
            let judged_end = until_ms.saturating_sub(grace.end_ms).max(from);
            let during = stats.between(&ops, us(from), us(judged_end));
            let after = stats.between(&ops, us(until_ms), us(end_ms.max(until_ms)));
            let verdict = Verdict::of(&during);
            let hurt = matches!(verdict, Verdict::Degraded | Verdict::Broken);
            let mut recovered = probed(flow).filter(|_| hurt);
            let mut t = until_ms.div_ceil(w) * w;
            while hurt && recovered.is_none() && t + w <= end_ms {
                let win = stats.between(&ops, us(t), us(t + w));
                if Verdict::of(&win) == Verdict::Works {
                    recovered = Some(t + w - until_ms);
                    break;
                }
                t += w;
            }
            FlowEffect {
                flow: flow.as_str(),
                before: ratio(&before),
                during: ratio(&during),
                after: ratio(&after),
                verdict,
                recovered_after_ms: recovered,
            }
        })
        .collect()
}

impl Report {
    pub fn new(plan: &Plan, scenario: &Scenario, seed: u64, replay: &str, out: Outcome) -> Report {
        let stats = &out.stats;
        let end_ms = scenario.workload.duration_ms;
        let grace = grace_ms(plan);
        let operations = Op::ALL
            .into_iter()
            .map(|op| {
                let t = stats.between(&[op], 0, u64::MAX);
                OpSummary {
                    op,
                    flow: op.flow().map_or("-", |f| f.as_str()),
                    requests: t.total(),
                    succeeded: t.ok,
                    success_ratio: ratio(&t).unwrap_or(1.0),
                    p50_ms: ms(t.latency.quantile(0.5)),
                    p99_ms: ms(t.latency.quantile(0.99)),
                    failures: stats.failures[op as usize].clone(),
                }
            })
            .collect();
        let faults = scenario
            .faults
            .iter()
            .enumerate()
            .map(|(k, f)| {
                let until = f.for_ms.map_or(end_ms, |d| (f.at_ms + d).min(end_ms));
                // Its "after" ends where the next fault starts: what follows is that one's.
                let next = scenario
                    .faults
                    .iter()
                    .map(|g| g.at_ms)
                    .filter(|&a| a > f.at_ms)
                    .min()
                    .unwrap_or(end_ms)
                    .min(end_ms);
                FaultEffect {
                    fault: f.kind.describe(),
                    at_ms: f.at_ms,
                    until_ms: until,
                    flows: effect(
                        stats,
                        (f.at_ms, until),
                        grace_of(plan, &f.kind),
                        next,
                        |flow| out.recovered.get(&(k, flow)).copied(),
                    ),
                }
            })
            .collect();
        let timeline = stats
            .windows
            .iter()
            .enumerate()
            .map(|(i, w)| Window {
                start_ms: i as u64 * stats.window_us / 1000,
                ops: Op::ALL
                    .into_iter()
                    .map(|op| {
                        let t = &w[op as usize];
                        (op, t.ok, t.failed, ms(t.latency.quantile(0.99)))
                    })
                    .collect(),
            })
            .collect();
        let violations: Vec<ViolationReport> = out
            .violations
            .into_iter()
            .map(|v| ViolationReport {
                violation: v,
                replay: replay.to_string(),
            })
            .collect();
        Report {
            deployment: plan.deployment.clone(),
            seed,
            ok: violations.is_empty() && out.setup_error.is_none(),
            setup_error: out.setup_error,
            duration_ms: end_ms,
            virtual_ms: out.virtual_ms,
            grace_ms: grace,
            window_ms: stats.window_us / 1000,
            operations,
            faults,
            violations,
            revoked_served: out.revoked_served,
            backend: (scenario.workload.backend_breaks > 0.0).then_some(out.backend),
            key_managers: out.key_managers.map(|k| KeyManagerLoad {
                gateways: k.gateways,
                requests: k.requests,
                per_gateway_per_s: k.per_gateway_per_s(out.virtual_ms),
                catch_up_reads_per_s: k.catch_up_reads as f64 * 1000.0
                    / out.virtual_ms.max(1) as f64,
            }),
            timeline,
            events: out.events,
            trace_hash: format!("{:016x}", out.trace_hash),
            scenario: scenario.clone(),
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "simulated {} for {} (seed {}), {} requests",
            self.deployment,
            format_ms(self.duration_ms),
            self.seed,
            self.events
        );
        if let Some(e) = &self.setup_error {
            let _ = writeln!(s, "\nsetup failed: {e}");
        }
        let _ = writeln!(
            s,
            "\n  {:<10} {:<10} {:>9} {:>9} {:>9} {:>9}",
            "operation", "flow", "requests", "success", "p50", "p99"
        );
        for o in &self.operations {
            let _ = writeln!(
                s,
                "  {:<10} {:<10} {:>9} {:>8.2}% {:>7.2}ms {:>7.2}ms",
                o.op.as_str(),
                o.flow,
                o.requests,
                o.success_ratio * 100.0,
                o.p50_ms,
                o.p99_ms
            );
            if !o.failures.is_empty() {
                let why: Vec<String> = o.failures.iter().map(|(k, n)| format!("{k} {n}")).collect();
                let _ = writeln!(s, "  {:<21} failed: {}", "", why.join(", "));
            }
        }
        if !self.faults.is_empty() {
            let _ = writeln!(
                s,
                "\nfaults (judged {} after each starts, the balancers' detection time; a certificate's expiry {} later):",
                format_ms(self.grace_ms),
                format_ms(CERT_EXPIRY_LAG_MS)
            );
            for f in &self.faults {
                let _ = writeln!(
                    s,
                    "  {} from {} to {}",
                    f.fault,
                    format_ms(f.at_ms),
                    format_ms(f.until_ms)
                );
                for e in &f.flows {
                    let pct = |r: Option<f64>| {
                        r.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
                    };
                    let rec = match (e.verdict, e.recovered_after_ms) {
                        (Verdict::Works | Verdict::Idle, _) => String::new(),
                        (_, Some(m)) => format!("recovered {} after repair", format_ms(m)),
                        (_, None) => "not recovered before the next fault or the end".into(),
                    };
                    let line = format!(
                        "    {:<10} {:<9} before {:>6}  during {:>6}  after {:>6}  {rec}",
                        e.flow,
                        e.verdict.as_str(),
                        pct(e.before),
                        pct(e.during),
                        pct(e.after)
                    );
                    let _ = writeln!(s, "{}", line.trim_end());
                }
            }
        }
        if self.revoked_served.calls > 0 {
            let _ = writeln!(
                s,
                "\nrevocation (available policy): {} call(s) served a token revoked longer ago than the bound, the longest {} after its revocation",
                self.revoked_served.calls,
                crate::scenario::format_ms(self.revoked_served.longest_ms)
            );
        }
        if let Some(b) = &self.backend {
            let _ = writeln!(
                s,
                "\nbackend (breaking {:.0} % of its requests): {} reads asked, {} broken; {} writes asked, {} broken (a broken read is asked once more, a write never)",
                self.scenario.workload.backend_breaks * 100.0,
                b.reads,
                b.reads_broken,
                b.writes,
                b.writes_broken
            );
        }
        if let Some(k) = &self.key_managers {
            let _ = writeln!(
                s,
                "\nkey managers: {} requests from {} gateway(s), {:.2} per gateway per second; {:.1} reads of the revocations a second",
                k.requests, k.gateways, k.per_gateway_per_s, k.catch_up_reads_per_s
            );
        }
        if self.violations.is_empty() {
            let _ = writeln!(s, "\ninvariants: all held");
        } else {
            let _ = writeln!(
                s,
                "\ninvariants: {} violation{}",
                self.violations.len(),
                if self.violations.len() == 1 { "" } else { "s" }
            );
            for v in self.violations.iter().take(10) {
                let nodes = if v.violation.nodes.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", v.violation.nodes.join(", "))
                };
                let _ = writeln!(
                    s,
                    "  {} at {}: {}{nodes}\n    replay: {}",
                    v.violation.invariant,
                    format_ms(v.violation.at_ms),
                    v.violation.what,
                    v.replay
                );
            }
        }
        if self.violations.len() > 10 {
            let _ = writeln!(
                s,
                "  ... and {} more (--format json lists them all)",
                self.violations.len() - 10
            );
        }
        let _ = writeln!(s, "trace hash: {}", self.trace_hash);
        s
    }
}
