//! A topology as a picture, for every HTML report: networks as regions side by side, each with
//! its balancers on top, its clusters under them and its databases at the bottom; an arrow from
//! each balancer to every cluster it sends to, a dashed line from each cluster to the databases
//! it uses, and the flows' hops between components (publish, subscribe, invoke: one colour
//! each) as curves between the clusters that run them. A failed part is drawn in red, and a hop
//! to or from it dashed red. Inline SVG, laid out from the plan's order alone: the same plan
//! gives the same bytes.

use apim_compiler::plan::Plan;
use apim_topology::flows::{End, FLOWS, Flow};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const BOX_H: f64 = 38.0;
const GAP: f64 = 22.0;
const HEAD: f64 = 30.0;
const LANE: f64 = 48.0;

/// What a report marks as failed: names of nodes, clusters, balancers or databases.
#[derive(Clone, Debug, Default)]
pub struct Failed<'a> {
    pub names: Vec<&'a str>,
}

impl<'a> Failed<'a> {
    /// The parts `faults` fail (a network fault marks no box: its hops are what break).
    pub fn of(faults: impl IntoIterator<Item = &'a crate::scenario::FaultKind>) -> Failed<'a> {
        use crate::scenario::FaultKind as K;
        let names = faults
            .into_iter()
            .filter_map(|f| match f {
                K::Crash { node } | K::Isolate { node } => Some(node.as_str()),
                K::ClusterDown { cluster } | K::RollingRestart { cluster, .. } => {
                    Some(cluster.as_str())
                }
                K::BalancerOutage { balancer } => Some(balancer.as_str()),
                K::CertExpiry { name, .. } => Some(name.as_str()),
                K::DatabaseOutage { database } | K::DatabaseBlackhole { database } => {
                    Some(database.as_str())
                }
                _ => None,
            })
            .collect();
        Failed { names }
    }
}

impl Failed<'_> {
    fn has(&self, name: &str) -> bool {
        self.names.contains(&name)
    }
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A box placed in the picture.
#[derive(Clone, Copy)]
struct Placed {
    x: f64,
    y: f64,
    w: f64,
}

impl Placed {
    fn top(&self) -> (f64, f64) {
        (self.x + self.w / 2.0, self.y)
    }
    fn bottom(&self) -> (f64, f64) {
        (self.x + self.w / 2.0, self.y + BOX_H)
    }
}

/// The picture of `plan`, with `failed` parts in red; `id` names the SVG (several may share a
/// page).
pub fn svg(plan: &Plan, failed: &Failed<'_>, id: &str) -> String {
    let cols = plan.networks.len().max(1);
    let col_w = WIDTH / cols as f64;
    let mut body = String::new();
    let mut balancers: Vec<(String, Placed)> = Vec::new();
    let mut clusters: Vec<(String, Placed)> = Vec::new();
    let mut databases: Vec<(String, Placed)> = Vec::new();
    let mut bottom: f64 = 0.0;
    let mut boxes = String::new();
    for (k, net) in plan.networks.iter().enumerate() {
        let x = k as f64 * col_w + 6.0;
        // The boxes leave a lane on their right for the hops between clusters of one network.
        let w = col_w - 12.0 - LANE;
        let mut y = HEAD + 12.0;
        let mut item = |label: &str, detail: String, kind: &str, name: &str| -> Placed {
            let bad = failed.has(name);
            let (fill, stroke) = match (kind, bad) {
                (_, true) => ("#fbd5d5", "#b00"),
                ("balancer", _) => ("#ece0f7", "#7a5a99"),
                ("database", _) => ("#f7efd9", "#9a7b33"),
                _ => ("#dbe9f6", "#4a7aa8"),
            };
            let _ = write!(
                boxes,
                r#"<g class="{kind}{}" data-name="{n}"><rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{BOX_H}" rx="5" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/><text x="{tx:.1}" y="{t1:.1}" font-weight="bold">{label}</text><text x="{tx:.1}" y="{t2:.1}" font-size="10">{detail}</text></g>"#,
                if bad { " failed" } else { "" },
                n = esc(name),
                sw = if bad { 2.5 } else { 1.0 },
                tx = x + 6.0,
                t1 = y + 15.0,
                t2 = y + 30.0,
                label = esc(label),
                detail = esc(&detail),
            );
            let p = Placed { x, y, w };
            y += BOX_H + GAP;
            p
        };
        for b in plan.balancers.iter().filter(|b| b.network == net.name) {
            let mut behind: Vec<&str> = b.routes.iter().map(|r| r.component.as_str()).collect();
            behind.dedup();
            let p = item(
                &format!("balancer {}", b.name),
                behind.join(", "),
                "balancer",
                &b.name,
            );
            balancers.push((b.name.clone(), p));
        }
        let mut seen = BTreeSet::new();
        for n in plan.nodes.iter().filter(|n| n.network == net.name) {
            if !seen.insert(n.cluster.as_str()) {
                continue;
            }
            let members: Vec<&str> = plan
                .nodes
                .iter()
                .filter(|m| m.cluster == n.cluster)
                .map(|m| m.name.as_str())
                .collect();
            let comps: Vec<&str> = n.listeners.iter().map(|l| l.component.as_str()).collect();
            let down = members.iter().any(|m| failed.has(m)) || failed.has(&n.cluster);
            let name = if down && !failed.has(&n.cluster) {
                // One node of it failed: the cluster is marked, its detail names the node.
                members
                    .iter()
                    .find(|m| failed.has(m))
                    .copied()
                    .unwrap_or(&n.cluster)
            } else {
                &n.cluster
            };
            let detail = format!(
                "{} · {} node{}",
                comps.join(", "),
                members.len(),
                if members.len() == 1 { "" } else { "s" }
            );
            let p = item(&format!("cluster {}", n.cluster), detail, "cluster", name);
            clusters.push((n.cluster.clone(), p));
        }
        for d in plan
            .databases
            .iter()
            .filter(|d| d.network.as_deref() == Some(net.name.as_str()))
        {
            let roles: Vec<&str> = d.roles.iter().map(|r| r.as_str()).collect();
            let p = item(
                &format!("database {}", d.name),
                format!("{} · {}", d.engine.as_str(), roles.join(", ")),
                "database",
                &d.name,
            );
            databases.push((d.name.clone(), p));
        }
        bottom = bottom.max(y);
        let _ = write!(
            body,
            r##"<g class="network" data-name="{n}"><rect x="{rx:.1}" y="2" width="{rw:.1}" height="{{H}}" rx="8" fill="{fill}" stroke="#999" stroke-dasharray="{dash}"/><text x="{tx:.1}" y="20" font-weight="bold">{n}{public}</text></g>"##,
            n = esc(&net.name),
            rx = x - 3.0,
            rw = w + LANE + 6.0,
            fill = if net.public { "#fff6f0" } else { "#f6f8fa" },
            dash = if net.public { "6 3" } else { "none" },
            tx = x + 4.0,
            public = if net.public { " (public)" } else { "" },
        );
    }
    // Databases with no network (SQLite files) under everything, in one row.
    let mut x = 6.0;
    for d in plan.databases.iter().filter(|d| d.network.is_none()) {
        let bad = failed.has(&d.name);
        let _ = write!(
            boxes,
            r##"<g class="database{}" data-name="{n}"><rect x="{x:.1}" y="{bottom:.1}" width="200" height="{BOX_H}" rx="5" fill="{fill}" stroke="{stroke}"/><text x="{tx:.1}" y="{t1:.1}" font-weight="bold">database {n}</text><text x="{tx:.1}" y="{t2:.1}" font-size="10">{e} · on each host</text></g>"##,
            if bad { " failed" } else { "" },
            n = esc(&d.name),
            fill = if bad { "#fbd5d5" } else { "#f7efd9" },
            stroke = if bad { "#b00" } else { "#9a7b33" },
            tx = x + 6.0,
            t1 = bottom + 15.0,
            t2 = bottom + 30.0,
            e = d.engine.as_str(),
        );
        databases.push((
            d.name.clone(),
            Placed {
                x,
                y: bottom,
                w: 200.0,
            },
        ));
        x += 212.0;
    }
    if plan.databases.iter().any(|d| d.network.is_none()) {
        bottom += BOX_H + GAP;
    }
    let height = bottom + 4.0;
    let body = body.replace("{H}", &format!("{:.1}", height - 6.0));
    // Balancer → cluster, once per pair.
    let mut lines = String::new();
    let mut pairs = BTreeSet::new();
    for b in &plan.balancers {
        for r in &b.routes {
            for u in &r.upstream {
                if let Some(n) = plan.nodes.iter().find(|n| n.name == u.node) {
                    pairs.insert((b.name.as_str(), n.cluster.as_str()));
                }
            }
        }
    }
    let at = |list: &[(String, Placed)], name: &str| {
        list.iter().find(|(n, _)| n == name).map(|(_, p)| *p)
    };
    for (b, c) in &pairs {
        if let (Some(from), Some(to)) = (at(&balancers, b), at(&clusters, c)) {
            let ((x1, y1), (x2, y2)) = (from.bottom(), to.top());
            let _ = write!(
                lines,
                r##"<line class="route" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{:.1}" stroke="#7a5a99" stroke-width="1.5" marker-end="url(#{id}-arrow)"/>"##,
                y2 - 2.0
            );
        }
    }
    // Cluster → database, once per pair.
    let mut uses = BTreeSet::new();
    for n in &plan.nodes {
        for d in &n.databases {
            uses.insert((n.cluster.as_str(), d.database.as_str()));
        }
    }
    for (c, d) in &uses {
        if let (Some(from), Some(to)) = (at(&clusters, c), at(&databases, d)) {
            let ((x1, y1), (x2, y2)) = (from.bottom(), to.top());
            let _ = write!(
                lines,
                r##"<line class="uses" x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#9a7b33" stroke-width="1" stroke-dasharray="4 3"/>"##
            );
        }
    }
    // The flows' hops between components, cluster to cluster, once per flow and pair.
    let mut runs: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for n in &plan.nodes {
        for l in &n.listeners {
            runs.entry(l.component.as_str())
                .or_default()
                .insert(n.cluster.as_str());
        }
    }
    let down = |cluster: &str| {
        failed.has(cluster)
            || plan
                .nodes
                .iter()
                .any(|n| n.cluster == cluster && failed.has(&n.name))
    };
    let mut hops = BTreeSet::new();
    let mut flows = String::new();
    for h in FLOWS {
        let (End::Component(a), End::Component(b)) = (h.from, h.to) else {
            continue;
        };
        let none = BTreeSet::new();
        let (from, to) = (
            runs.get(a.as_str()).unwrap_or(&none),
            runs.get(b.as_str()).unwrap_or(&none),
        );
        for &x in from {
            for &y in to {
                if x != y {
                    // Through a balancer: broken when every balancer in front of the
                    // target's nodes for that component failed.
                    let through: Vec<&str> = match h.path {
                        apim_topology::flows::Path::Balanced(_) => plan
                            .balancers
                            .iter()
                            .filter(|lb| {
                                lb.routes.iter().any(|r| {
                                    r.component == b
                                        && r.upstream.iter().any(|u| {
                                            plan.nodes
                                                .iter()
                                                .any(|n| n.name == u.node && n.cluster == y)
                                        })
                                })
                            })
                            .map(|lb| lb.name.as_str())
                            .collect(),
                        _ => Vec::new(),
                    };
                    let cut = !through.is_empty() && through.iter().all(|lb| failed.has(lb));
                    hops.insert((flow_rank(h.flow), x, y, cut));
                }
            }
        }
    }
    for (rank, x, y, cut) in &hops {
        let (Some(from), Some(to)) = (at(&clusters, x), at(&clusters, y)) else {
            continue;
        };
        let flow = Flow::ALL[*rank];
        let broken = *cut || down(x) || down(y);
        // Each flow leaves and enters a box at its own height, bending its own way.
        let off = (*rank as f64 - 1.0) * 9.0;
        let (ya, yb) = (from.y + BOX_H / 2.0 + off, to.y + BOX_H / 2.0 + off);
        let (x1, x2, cx, cy) = if (from.x - to.x).abs() < 1.0 {
            // One network: out of the right edge, through the lane, back in.
            let edge = from.x + from.w;
            let bulge = edge + 14.0 + *rank as f64 * 11.0;
            (edge, edge, bulge + (yb - ya).abs() / 12.0, (ya + yb) / 2.0)
        } else if to.x > from.x {
            let (a, b) = (from.x + from.w, to.x);
            (a, b, (a + b) / 2.0, (ya + yb) / 2.0 - 24.0 - off)
        } else {
            let (a, b) = (from.x, to.x + to.w);
            (a, b, (a + b) / 2.0, (ya + yb) / 2.0 - 24.0 - off)
        };
        let (y1, y2) = (ya, yb);
        let _ = write!(
            flows,
            r##"<path class="hop {f}{b}" d="M{x1:.1},{y1:.1} Q{cx:.1},{cy:.1} {x2:.1},{y2:.1}" fill="none" stroke="{c}" stroke-width="1.6" stroke-dasharray="{dash}" marker-end="url(#{id}-{f})"><title>{f}: {x} to {y}</title></path>"##,
            f = flow.as_str(),
            b = if broken { " broken" } else { "" },
            c = if broken { "#b00" } else { flow_colour(flow) },
            dash = if broken { "5 3" } else { "none" },
            x = esc(x),
            y = esc(y),
        );
    }
    let mut markers = String::new();
    for f in Flow::ALL {
        let _ = write!(
            markers,
            r##"<marker id="{id}-{f}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>"##,
            f = f.as_str(),
            c = flow_colour(*f),
        );
    }
    let mut legend = String::new();
    for (k, f) in Flow::ALL.iter().enumerate() {
        let x = 10.0 + k as f64 * 120.0;
        let _ = write!(
            legend,
            r##"<g class="legend"><line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{c}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="11">{f}</text></g>"##,
            x + 24.0,
            x + 30.0,
            height + 4.0,
            y = height,
            c = flow_colour(*f),
            f = f.as_str(),
        );
    }
    let height = height + 12.0;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" class="topology" width="{WIDTH}" height="{height:.1}" viewBox="0 0 {WIDTH} {height:.1}" font-family="sans-serif" font-size="12" role="img" aria-label="topology of {dep}"><defs><marker id="{id}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7a5a99"/></marker>{markers}</defs>{body}{lines}{boxes}{flows}{legend}</svg>"##,
        dep = esc(&plan.deployment),
    )
}

fn flow_rank(f: Flow) -> usize {
    Flow::ALL.iter().position(|x| *x == f).unwrap_or(0)
}

fn flow_colour(f: Flow) -> &'static str {
    match f {
        Flow::Publish => "#2a6fb0",
        Flow::Subscribe => "#2a9d4b",
        Flow::Invoke => "#d07a12",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(id: &str) -> Plan {
        let p = apim_patterns::find(id).expect("pattern");
        Plan::of(&apim_topology::check_str(id, p.template).topology)
    }

    #[test]
    fn every_part_is_drawn_once_and_the_failed_one_in_red() {
        let plan = plan("clustered-external-store");
        let s = svg(
            &plan,
            &Failed {
                names: vec!["gateway-1", "km"],
            },
            "t",
        );
        for n in &plan.networks {
            assert!(s.contains(&format!(r#"class="network" data-name="{}""#, n.name)));
        }
        for b in &plan.balancers {
            assert_eq!(s.matches(&format!(r#"data-name="{}""#, b.name)).count(), 1);
        }
        for d in &plan.databases {
            assert!(s.contains(&format!("database {}", d.name)), "{}", d.name);
        }
        assert!(s.contains(r#"class="cluster failed" data-name="gateway-1""#));
        assert!(s.contains(r#"class="balancer failed" data-name="km""#));
        assert_eq!(s.matches(" failed\"").count(), 2);
        assert!(s.matches(r#"class="route""#).count() >= plan.balancers.len());
        assert_eq!(
            s,
            svg(
                &plan,
                &Failed {
                    names: vec!["gateway-1", "km"]
                },
                "t"
            )
        );
    }
}
