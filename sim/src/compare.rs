//! `apim compare`: candidate topologies side by side — their size, what a public network
//! reaches, the checker's single points of failure, and for each flow the single failures
//! that break or degrade it (from each topology's single-failure matrix, never typed again),
//! with the worst recovery and a one-line summary.

use crate::failover::{Matrix, POLICIES, Row};
use crate::report::{FaultEffect, Report, Verdict};
use apim_compiler::plan::{Plan, RouteListener};
use apim_topology::Checked;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The checker's codes for a single point of failure: a cluster of one node, the only
/// balancer in front, one database for every role.
pub const SINGLE_POINTS: [&str; 3] = ["W001", "W002", "W003"];

const FLOWS: [&str; 3] = ["publish", "subscribe", "invoke"];

/// One candidate topology, as the comparison shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Column {
    pub name: String,
    pub nodes: usize,
    pub clusters: usize,
    pub balancers: usize,
    pub databases: usize,
    /// What a public network reaches: balancers on it (and the components behind them), and
    /// clusters placed on it. Empty when no network is public.
    pub public: Vec<Exposed>,
    /// The checker's single-point-of-failure warnings, as it words them.
    pub single_points: Vec<String>,
    pub flows: Vec<FlowColumn>,
    /// Single failures whose runs broke an invariant (a defect, whatever the verdicts).
    pub violations: usize,
    /// With `--compare-policies`: each token setting's invoke under the same failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyColumn>,
    /// With `--scenario`: what the scenario did to this topology.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioColumn>,
    pub summary: String,
}

/// One token setting (`failover::POLICIES`) under every single failure.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyColumn {
    pub policy: &'static str,
    pub invoke_broken_by: Vec<String>,
    /// Failures during which a gateway served a token revoked longer ago than the bound.
    pub revoked_served_during: Vec<String>,
    /// The longest such a token was served after its revocation.
    pub revoked_served_longest_ms: u64,
}

/// A scenario's verdicts on one topology.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioColumn {
    /// Every invariant held.
    pub ok: bool,
    pub violations: usize,
    pub faults: Vec<FaultEffect>,
}

impl ScenarioColumn {
    pub fn of(r: &Report) -> ScenarioColumn {
        ScenarioColumn {
            ok: r.ok,
            violations: r.violations.len(),
            faults: r.faults.clone(),
        }
    }
}

/// What the single failures did to one flow.
#[derive(Clone, Debug, Serialize)]
pub struct FlowColumn {
    pub flow: &'static str,
    pub broken_by: Vec<String>,
    pub degraded_by: Vec<String>,
    /// The longest a flow took to work again after one of those failures was repaired; `None`
    /// when none hurt it, or one never let it recover.
    pub worst_recovery_ms: Option<u64>,
    /// A failure after whose repair the flow did not recover before the run ended.
    pub unrecovered: Vec<String>,
}

/// Several candidates, compared under the same single-failure runs.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub seed: u64,
    pub fault_at_ms: u64,
    pub fault_for_ms: u64,
    pub columns: Vec<Column>,
}

/// The column of one checked topology, from its plan and its single-failure matrix.
/// The column of one checked topology, from its plan and its single-failure matrix (with
/// policies when the matrix was run under each token setting), and a scenario's report on it.
pub fn column(
    name: &str,
    checked: &Checked,
    plan: &Plan,
    matrix: &Matrix,
    scenario: Option<&Report>,
) -> Column {
    let single_points = checked
        .diagnostics
        .iter()
        .filter(|d| SINGLE_POINTS.contains(&d.code.id))
        .map(|d| d.message.clone())
        .collect();
    let clusters: BTreeSet<&str> = plan.nodes.iter().map(|n| n.cluster.as_str()).collect();
    let flows = FLOWS
        .iter()
        .map(|&flow| flow_column(flow, &matrix.rows))
        .collect();
    let mut c = Column {
        name: name.to_string(),
        nodes: plan.nodes.len(),
        clusters: clusters.len(),
        balancers: plan.balancers.len(),
        databases: plan.databases.len(),
        public: public_reach(plan),
        single_points,
        flows,
        violations: matrix.rows.iter().filter(|r| r.violations > 0).count(),
        policies: policy_columns(&matrix.rows),
        scenario: scenario.map(ScenarioColumn::of),
        summary: String::new(),
    };
    c.summary = summary(&c, &matrix.rows);
    c
}

fn policy_columns(rows: &[Row]) -> Vec<PolicyColumn> {
    if rows.iter().all(|r| r.policies.is_empty()) {
        return Vec::new();
    }
    POLICIES
        .iter()
        .map(|&(policy, _, _)| {
            let mut p = PolicyColumn {
                policy,
                invoke_broken_by: Vec::new(),
                revoked_served_during: Vec::new(),
                revoked_served_longest_ms: 0,
            };
            for r in rows {
                let Some(cell) = r.policies.iter().find(|c| c.policy == policy) else {
                    continue;
                };
                if cell.invoke == Verdict::Broken {
                    p.invoke_broken_by.push(r.failure.clone());
                }
                if cell.revoked_served_calls > 0 {
                    p.revoked_served_during.push(r.failure.clone());
                    p.revoked_served_longest_ms = p
                        .revoked_served_longest_ms
                        .max(cell.revoked_served_longest_ms);
                }
            }
            p
        })
        .collect()
}

fn flow_column(flow: &'static str, rows: &[Row]) -> FlowColumn {
    let mut f = FlowColumn {
        flow,
        broken_by: Vec::new(),
        degraded_by: Vec::new(),
        worst_recovery_ms: None,
        unrecovered: Vec::new(),
    };
    for r in rows {
        let Some(cell) = r.cells.iter().find(|c| c.flow == flow) else {
            continue;
        };
        match cell.simulated {
            Verdict::Broken => f.broken_by.push(r.failure.clone()),
            Verdict::Degraded => f.degraded_by.push(r.failure.clone()),
            _ => continue,
        }
        match cell.recovered_after_ms {
            Some(ms) => f.worst_recovery_ms = Some(f.worst_recovery_ms.unwrap_or(0).max(ms)),
            None => f.unrecovered.push(r.failure.clone()),
        }
    }
    f
}

/// Something a public network reaches.
#[derive(Clone, Debug, Serialize)]
pub struct Exposed {
    /// `balancer` or `cluster` (the cluster's nodes sit on a public network).
    pub kind: &'static str,
    pub name: String,
    /// The components a client reaches there.
    pub components: Vec<&'static str>,
}

impl Exposed {
    fn short(&self) -> String {
        match self.kind {
            "cluster" => format!("{} nodes", self.name),
            _ => self.name.clone(),
        }
    }

    fn long(&self) -> String {
        format!(
            "{} `{}` ({})",
            self.kind,
            self.name,
            self.components.join(", ")
        )
    }
}

/// What public networks reach, in plan order.
fn public_reach(plan: &Plan) -> Vec<Exposed> {
    let public: BTreeSet<&str> = plan
        .networks
        .iter()
        .filter(|n| n.public)
        .map(|n| n.name.as_str())
        .collect();
    let mut out = Vec::new();
    for b in plan
        .balancers
        .iter()
        .filter(|b| public.contains(b.network.as_str()))
    {
        let mut components: Vec<&'static str> = b
            .routes
            .iter()
            .filter(|r| r.listener == RouteListener::Public)
            .map(|r| r.component.as_str())
            .collect();
        components.sort_unstable();
        components.dedup();
        out.push(Exposed {
            kind: "balancer",
            name: b.name.clone(),
            components,
        });
    }
    for n in plan
        .nodes
        .iter()
        .filter(|n| public.contains(n.network.as_str()))
    {
        if out
            .iter()
            .any(|e| e.kind == "cluster" && e.name == n.cluster)
        {
            continue;
        }
        let mut components: Vec<&'static str> =
            n.listeners.iter().map(|l| l.component.as_str()).collect();
        components.sort_unstable();
        components.dedup();
        out.push(Exposed {
            kind: "cluster",
            name: n.cluster.clone(),
            components,
        });
    }
    out
}

/// Which kind of part a failure's description names: its first word.
fn kind_of(failure: &str) -> &str {
    failure.split_whitespace().next().unwrap_or(failure)
}

/// The flows a row broke, as words.
fn broken_flows(r: &Row) -> Option<String> {
    let broken: Vec<&str> = r
        .cells
        .iter()
        .filter(|cell| cell.simulated == Verdict::Broken)
        .map(|cell| cell.flow)
        .collect();
    match broken.as_slice() {
        [] => None,
        [one] => Some((*one).to_string()),
        [init @ .., last] => Some(format!("{} and {last}", init.join(", "))),
    }
}

/// One line a person can read at a glance: what no single crash breaks, what does, the
/// single balancers and databases every flow hangs on, and the public exposure.
fn summary(c: &Column, rows: &[Row]) -> String {
    let crashes: Vec<&Row> = rows
        .iter()
        .filter(|r| kind_of(&r.failure) == "crash")
        .collect();
    let breaking: Vec<(&Row, String)> = crashes
        .iter()
        .filter_map(|r| Some((*r, broken_flows(r)?)))
        .collect();
    let mut parts = Vec::new();
    if crashes.is_empty() {
        parts.push("no node to crash".to_string());
    } else if breaking.is_empty() {
        parts.push("survives any single node crash".to_string());
    } else if breaking.len() == crashes.len()
        && breaking
            .iter()
            .all(|(r, _)| r.cells.iter().all(|cell| cell.simulated == Verdict::Broken))
    {
        parts.push("any single node crash breaks every flow".to_string());
    } else {
        let named: Vec<String> = breaking
            .iter()
            .map(|(r, flows)| {
                let node = r.failure.split_whitespace().nth(1).unwrap_or_default();
                format!("a crash of {node} breaks {flows}")
            })
            .collect();
        parts.push(named.join("; "));
    }
    for r in rows {
        let part = match kind_of(&r.failure) {
            "balancer-outage" => "balancer",
            "database-outage" => "database",
            _ => continue,
        };
        if let Some(flows) = broken_flows(r) {
            let name = r.failure.split_whitespace().nth(1).unwrap_or_default();
            parts.push(format!(
                "the {part} `{name}` is a single point of failure for {flows}"
            ));
        }
    }
    if c.public.is_empty() {
        parts.push("no network is public".into());
    } else {
        let reached: Vec<String> = c.public.iter().map(Exposed::long).collect();
        parts.push(format!(
            "the public network reaches {}",
            reached.join(" and ")
        ));
    }
    if c.violations > 0 {
        parts.push(format!("{} failure(s) broke an invariant", c.violations));
    }
    parts.join("; ")
}

impl Comparison {
    /// The table's rows: a label, and a cell per topology.
    pub fn rows(&self) -> Vec<(String, Vec<String>)> {
        let mut rows: Vec<(String, Vec<String>)> = vec![
            ("nodes".into(), self.each(|c| c.nodes.to_string())),
            ("clusters".into(), self.each(|c| c.clusters.to_string())),
            ("balancers".into(), self.each(|c| c.balancers.to_string())),
            ("databases".into(), self.each(|c| c.databases.to_string())),
            (
                "public network reaches".into(),
                self.each(|c| match c.public.len() {
                    0 => "-".into(),
                    _ => c
                        .public
                        .iter()
                        .map(Exposed::short)
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            ),
            (
                "single points (checker)".into(),
                self.each(|c| c.single_points.len().to_string()),
            ),
        ];
        for (k, flow) in FLOWS.iter().enumerate() {
            rows.push((
                format!("{flow}: broken by"),
                self.each(|c| c.flows[k].broken_by.len().to_string()),
            ));
            rows.push((
                format!("{flow}: degraded by"),
                self.each(|c| c.flows[k].degraded_by.len().to_string()),
            ));
            rows.push((
                format!("{flow}: worst recovery"),
                self.each(|c| {
                    let f = &c.flows[k];
                    if !f.unrecovered.is_empty() {
                        "never".into()
                    } else {
                        f.worst_recovery_ms
                            .map_or("-".into(), crate::scenario::format_ms)
                    }
                }),
            ));
        }
        rows.push((
            "invariants broken".into(),
            self.each(|c| c.violations.to_string()),
        ));
        for (k, (policy, _, _)) in POLICIES.iter().enumerate() {
            if self.columns.iter().all(|c| c.policies.is_empty()) {
                break;
            }
            let at = |c: &Column| c.policies.get(k).cloned();
            rows.push((
                format!("invoke broken by, {policy}"),
                self.each(|c| at(c).map_or("-".into(), |p| p.invoke_broken_by.len().to_string())),
            ));
            rows.push((
                format!("revoked token served, {policy}"),
                self.each(|c| match at(c) {
                    Some(p) if !p.revoked_served_during.is_empty() => format!(
                        "{} failures, up to {}",
                        p.revoked_served_during.len(),
                        crate::scenario::format_ms(p.revoked_served_longest_ms)
                    ),
                    Some(_) => "never".into(),
                    None => "-".into(),
                }),
            ));
        }
        if let Some(first) = self.columns.iter().find_map(|c| c.scenario.as_ref()) {
            rows.push((
                "scenario: invariants".into(),
                self.each(|c| match &c.scenario {
                    Some(s) if s.ok => "held".into(),
                    Some(s) => format!("{} broken", s.violations),
                    None => "-".into(),
                }),
            ));
            for (i, fault) in first.faults.iter().enumerate() {
                for (j, flow) in FLOWS.iter().enumerate() {
                    rows.push((
                        format!("{}: {flow}", fault.fault),
                        self.each(|c| {
                            c.scenario
                                .as_ref()
                                .and_then(|s| s.faults.get(i))
                                .and_then(|f| f.flows.get(j))
                                .map_or("-".into(), |f| f.verdict.as_str().to_string())
                        }),
                    ));
                }
            }
        }
        rows
    }

    /// The table, a column per topology, then each one's summary.
    pub fn text(&self) -> String {
        let rows = self.rows();
        let label = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|k| {
                rows.iter()
                    .map(|(_, v)| v[k].chars().count())
                    .chain([self.columns[k].name.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut s = format!(
            "single failures of each topology (each from {} for {}; seed {}), side by side\n\n",
            crate::scenario::format_ms(self.fault_at_ms),
            crate::scenario::format_ms(self.fault_for_ms),
            self.seed
        );
        let line = |s: &mut String, l: &str, cells: Vec<&str>| {
            let mut row = format!("  {l:<label$}");
            for (k, c) in cells.iter().enumerate() {
                let _ = write!(row, "  {c:<w$}", w = widths[k]);
            }
            let _ = writeln!(s, "{}", row.trim_end());
        };
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        line(&mut s, "", names);
        for (l, v) in &rows {
            line(&mut s, l, v.iter().map(String::as_str).collect());
        }
        let _ = writeln!(s);
        for c in &self.columns {
            let _ = writeln!(s, "{}: {}", c.name, c.summary);
        }
        s
    }

    /// The failures behind each count, per topology: what `--format json` also holds.
    pub fn details(&self) -> String {
        let mut s = String::new();
        for c in &self.columns {
            let _ = writeln!(s, "\n{}", c.name);
            for p in &c.single_points {
                let _ = writeln!(s, "  single point: {p}");
            }
            for p in &c.public {
                let _ = writeln!(s, "  public network reaches {}", p.long());
            }
            for f in &c.flows {
                if !f.broken_by.is_empty() {
                    let _ = writeln!(s, "  {} broken by: {}", f.flow, f.broken_by.join(", "));
                }
                if !f.degraded_by.is_empty() {
                    let _ = writeln!(s, "  {} degraded by: {}", f.flow, f.degraded_by.join(", "));
                }
            }
        }
        s
    }

    fn each(&self, f: impl Fn(&Column) -> String) -> Vec<String> {
        self.columns.iter().map(f).collect()
    }
}
