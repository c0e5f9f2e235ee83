//! The report as one self-contained HTML page: the topology, a timeline of the faults, and
//! per-flow success and latency charts, all inline SVG (nothing is fetched to view it).

use crate::report::Report;
use crate::scenario::format_ms;
use crate::stats::Op;
use apim_compiler::plan::Plan;
use apim_topology::flows::Flow;
use std::fmt::Write as _;

const W: f64 = 900.0;
const CHART_H: f64 = 140.0;
const LEFT: f64 = 60.0;

use crate::diagram::{Failed, esc};

/// Every page: nothing may load or run; the page's own style sheet is the only exception.
const HEAD: &str = r#"<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">"#;

fn x_of(ms: u64, total_ms: u64) -> f64 {
    LEFT + (W - LEFT - 10.0) * ms as f64 / total_ms.max(1) as f64
}

/// One row per fault: its label on a line of its own above its bar, so no label covers a bar
/// or another label; a label that would run past the right edge ends at its bar's end.
fn timeline_svg(r: &Report) -> String {
    const ROW: f64 = 34.0;
    let total = r.duration_ms;
    let mut body = String::new();
    for (i, f) in r.faults.iter().enumerate() {
        let y = 6.0 + i as f64 * ROW;
        let (x0, x1) = (x_of(f.at_ms, total), x_of(f.until_ms, total));
        let label = format!(
            "{} ({} – {})",
            f.fault,
            format_ms(f.at_ms),
            format_ms(f.until_ms)
        );
        // About 6 px a character at 11 px.
        let wide = label.chars().count() as f64 * 6.0;
        let (tx, anchor) = if x0 + wide > W - 10.0 {
            (x1.max(LEFT + wide), "end")
        } else {
            (x0, "start")
        };
        let _ = write!(
            body,
            r##"<g class="fault"><text x="{tx:.1}" y="{:.1}" font-size="11" text-anchor="{anchor}">{}</text><rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="12" fill="#f4a6a6"/></g>"##,
            y + 11.0,
            esc(&label),
            y + 16.0,
            (x1 - x0).max(2.0),
        );
    }
    let h = 14.0 + r.faults.len().max(1) as f64 * ROW;
    let axis = axis(total, h - 4.0);
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{W}" height="{}" font-family="sans-serif" font-size="11">{body}{axis}</svg>"#,
        h + 14.0
    )
}

fn axis(total: u64, y: f64) -> String {
    let mut s = format!(
        r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#444"/>"##,
        W - 10.0
    );
    for k in 0..=4 {
        let ms = total * k / 4;
        let x = x_of(ms, total);
        let _ = write!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            y + 12.0,
            format_ms(ms / 1000 * 1000)
        );
    }
    s
}

/// Success ratio (green line) and p99 latency (blue line, own scale) of one flow per window.
fn flow_svg(r: &Report, flow: Flow) -> String {
    let total = r.duration_ms;
    let ops: Vec<Op> = Op::ALL
        .into_iter()
        .filter(|o| o.flow() == Some(flow))
        .collect();
    let mut ratio_pts = String::new();
    let mut lat_pts = String::new();
    let mut points = Vec::new();
    for w in &r.timeline {
        let (mut ok, mut failed, mut p99) = (0, 0, 0.0f64);
        for (op, o, f, p) in &w.ops {
            if ops.contains(op) {
                ok += o;
                failed += f;
                p99 = p99.max(*p);
            }
        }
        if ok + failed > 0 {
            points.push((
                w.start_ms + r.window_ms / 2,
                ok as f64 / (ok + failed) as f64,
                p99,
            ));
        }
    }
    let max_lat = points.iter().map(|p| p.2).fold(1.0f64, f64::max);
    for (ms, ratio, p99) in &points {
        let x = x_of(*ms, total);
        let _ = write!(
            ratio_pts,
            "{x:.1},{:.1} ",
            10.0 + (1.0 - ratio) * (CHART_H - 20.0)
        );
        let _ = write!(
            lat_pts,
            "{x:.1},{:.1} ",
            10.0 + (1.0 - p99 / max_lat) * (CHART_H - 20.0)
        );
    }
    let mut bands = String::new();
    for f in &r.faults {
        let (x0, x1) = (x_of(f.at_ms, total), x_of(f.until_ms, total));
        let _ = write!(
            bands,
            r##"<rect x="{x0}" y="10" width="{}" height="{}" fill="#fbe3e3"/>"##,
            (x1 - x0).max(2.0),
            CHART_H - 20.0
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" font-family="sans-serif" font-size="11">{bands}<text x="4" y="16">100%</text><text x="4" y="{}">0%</text><text x="{}" y="16" text-anchor="end" fill="#2a6fb0">p99 max {max_lat:.1} ms</text><polyline fill="none" stroke="#2a6fb0" stroke-width="1" points="{lat_pts}"/><polyline fill="none" stroke="#2a9d4b" stroke-width="2" points="{ratio_pts}"/>{}</svg>"##,
        CHART_H + 14.0,
        CHART_H - 10.0,
        W - 12.0,
        axis(total, CHART_H - 6.0)
    )
}

pub fn page(plan: &Plan, r: &Report) -> String {
    let mut s = String::new();
    let status = if r.ok {
        "all invariants held"
    } else {
        "invariants violated"
    };
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head>{HEAD}<title>apim sim — {dep}</title><style>body{{font-family:sans-serif;margin:24px;max-width:960px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#eee}}.bad{{color:#b00}}.good{{color:#070}}code{{background:#f3f3f3;padding:1px 4px}}</style></head><body><h1>apim sim — {dep}</h1><p>{dur} of virtual time, seed {seed}, {events} requests, trace hash <code>{hash}</code>: <b class="{cls}">{status}</b></p>"#,
        dep = esc(&r.deployment),
        dur = format_ms(r.duration_ms),
        seed = r.seed,
        events = r.events,
        hash = r.trace_hash,
        cls = if r.ok { "good" } else { "bad" },
    );
    let _ = write!(
        s,
        "<h2>Topology</h2><p>Parts the scenario fails are drawn in red.</p>{}",
        crate::diagram::svg(
            plan,
            &Failed::of(r.scenario.faults.iter().map(|f| &f.kind)),
            "topology"
        )
    );
    let _ = write!(s, "<h2>Faults</h2>");
    if r.faults.is_empty() {
        s.push_str("<p>No faults.</p>");
    } else {
        s.push_str(&timeline_svg(r));
        s.push_str("<table><tr><th>fault</th><th>flow</th><th>before</th><th>during</th><th>after</th><th>verdict</th><th>recovered after</th></tr>");
        for f in &r.faults {
            for e in &f.flows {
                let pct = |x: Option<f64>| x.map_or("–".into(), |x| format!("{:.1}%", x * 100.0));
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&f.fault),
                    e.flow,
                    pct(e.before),
                    pct(e.during),
                    pct(e.after),
                    e.verdict.as_str(),
                    e.recovered_after_ms.map_or("–".into(), format_ms)
                );
            }
        }
        s.push_str("</table>");
    }
    s.push_str("<h2>Operations</h2><table><tr><th>operation</th><th>flow</th><th>requests</th><th>success</th><th>p50</th><th>p99</th></tr>");
    for o in &r.operations {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{:.2} ms</td><td>{:.2} ms</td></tr>",
            o.op.as_str(),
            o.flow,
            o.requests,
            o.success_ratio * 100.0,
            o.p50_ms,
            o.p99_ms
        );
    }
    s.push_str("</table>");
    for flow in Flow::ALL {
        let _ = write!(
            s,
            "<h2>Flow: {flow}</h2><p>Success per {} window (green), p99 latency (blue); faults shaded.</p>{}",
            format_ms(r.window_ms),
            flow_svg(r, *flow)
        );
    }
    s.push_str("<h2>Invariants</h2>");
    if r.violations.is_empty() {
        s.push_str("<p class=\"good\">Every invariant held.</p>");
    } else {
        s.push_str("<table><tr><th>at</th><th>invariant</th><th>what</th><th>nodes</th><th>replay</th></tr>");
        for v in &r.violations {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
                format_ms(v.violation.at_ms),
                v.violation.invariant,
                esc(&v.violation.what),
                esc(&v.violation.nodes.join(", ")),
                esc(&v.replay)
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}

/// The single-failure matrix as one page: each failure's verdicts per flow and, when policies
/// were compared, invoke under each token setting and how long revoked tokens were served.
pub fn matrix_page(plan: &Plan, m: &crate::failover::Matrix) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head>{HEAD}<title>apim sim — single failures of {dep}</title><style>body{{font-family:sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}th{{background:#eee}}.broken{{color:#b00}}.degraded{{color:#a60}}.works{{color:#070}}</style></head><body><h1>apim sim — single failures of {dep}</h1><p>Each part failed alone from {at} for {for_}, judged after {grace}; seed {seed}.</p>"#,
        dep = esc(&m.deployment),
        at = format_ms(m.fault_at_ms),
        for_ = format_ms(m.fault_for_ms),
        grace = format_ms(m.grace_ms),
        seed = m.seed,
    );
    let _ = write!(
        s,
        "<h2>Topology</h2>{}",
        crate::diagram::svg(plan, &Failed::default(), "topology")
    );
    let compared = m.rows.iter().any(|r| !r.policies.is_empty());
    s.push_str("<h2>Verdicts</h2><table><tr><th>failure</th><th>publish</th><th>subscribe</th><th>invoke</th>");
    if compared {
        for (name, _, _) in crate::failover::POLICIES {
            let _ = write!(s, "<th>invoke, {}</th>", esc(name));
        }
        s.push_str("<th>revoked token served past the bound</th>");
    }
    s.push_str("</tr>");
    let verdict = |v: crate::report::Verdict| format!(r#"<td class="{0}">{0}</td>"#, v.as_str());
    for r in &m.rows {
        let _ = write!(s, "<tr><td>{}</td>", esc(&r.failure));
        for c in &r.cells {
            s.push_str(&verdict(c.simulated));
        }
        if compared {
            for p in &r.policies {
                s.push_str(&verdict(p.invoke));
            }
            let late = r.revoked_served().map_or("–".into(), |l| esc(&l));
            let _ = write!(s, "<td>{late}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    // Each failure's picture: the failed part in red, the hops to and from it dashed.
    let parts = crate::failover::parts(plan);
    s.push_str("<h2>Each failure</h2>");
    for (k, r) in m.rows.iter().enumerate() {
        let kind = parts.iter().find(|p| p.describe() == r.failure);
        let _ = write!(
            s,
            r#"<details><summary>{}</summary>{}</details>"#,
            esc(&r.failure),
            crate::diagram::svg(plan, &Failed::of(kind), &format!("failure-{k}"))
        );
    }
    if m.findings.is_empty() {
        s.push_str(
            "<p>No findings: the simulation and static analysis agree, every invariant held.</p>",
        );
    } else {
        s.push_str("<h2>Findings</h2><ul>");
        for f in &m.findings {
            let _ = write!(s, "<li>{}</li>", esc(f));
        }
        s.push_str("</ul>");
    }
    s.push_str("</body></html>\n");
    s
}

/// `apim compare --html`: the table, each topology's picture and summary, and the failures
/// behind every count.
pub fn compare_page(plans: &[&Plan], c: &crate::compare::Comparison) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head>{HEAD}<title>apim compare</title><style>body{{font-family:sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}th{{background:#eee}}svg{{max-width:100%;height:auto}}</style></head><body><h1>apim compare</h1><p>Every part of each topology failed on its own from {at} for {for_} (seed {seed}).</p>"#,
        at = format_ms(c.fault_at_ms),
        for_ = format_ms(c.fault_for_ms),
        seed = c.seed,
    );
    s.push_str(r#"<h2>Side by side</h2><table id="comparison"><tr><th scope="col"></th>"#);
    for col in &c.columns {
        let _ = write!(s, r#"<th scope="col">{}</th>"#, esc(&col.name));
    }
    s.push_str("</tr>");
    for (label, cells) in c.rows() {
        let _ = write!(s, r#"<tr><th scope="row">{}</th>"#, esc(&label));
        for cell in cells {
            let _ = write!(s, "<td>{}</td>", esc(&cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    for (k, col) in c.columns.iter().enumerate() {
        let _ = write!(
            s,
            r#"<section><h2>{name}</h2><p>{summary}</p>"#,
            name = esc(&col.name),
            summary = esc(&col.summary)
        );
        if let Some(plan) = plans.get(k) {
            s.push_str(&crate::diagram::svg(
                plan,
                &Failed::default(),
                &format!("topology-{k}"),
            ));
        }
        s.push_str("<ul>");
        for p in &col.single_points {
            let _ = write!(s, "<li>single point: {}</li>", esc(p));
        }
        for f in &col.flows {
            if !f.broken_by.is_empty() {
                let _ = write!(
                    s,
                    "<li>{} broken by: {}</li>",
                    f.flow,
                    esc(&f.broken_by.join(", "))
                );
            }
            if !f.degraded_by.is_empty() {
                let _ = write!(
                    s,
                    "<li>{} degraded by: {}</li>",
                    f.flow,
                    esc(&f.degraded_by.join(", "))
                );
            }
        }
        s.push_str("</ul></section>");
    }
    s.push_str("</body></html>\n");
    s
}
