//! E031: a SQLite database used by nodes on more than one host.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::flows;
use crate::model::Topology;
use crate::parse::host;
use crate::source::Span;
use crate::vocab::{Component, Engine};
use std::collections::BTreeMap;

code!(
    CODE,
    "E031",
    "sqlite-shared-across-hosts",
    Error,
    "A SQLite database is used by nodes on two or more hosts; a SQLite file lives on one machine and cannot be shared over the network.",
    "Use `engine = \"postgres\"` or `\"mysql\"` for a database shared across hosts, or keep every node that uses it on one host."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    for db in t.databases.values() {
        if db.engine() != Some(Engine::Sqlite) {
            continue;
        }
        let users: Vec<Component> = Component::ALL
            .iter()
            .copied()
            .filter(|&c| flows::roles_used_by(c).any(|r| db.serves(r)))
            .collect();
        // machine -> (first host as written, its span)
        let mut machines: BTreeMap<String, (&str, Span)> = BTreeMap::new();
        for c in t
            .clusters
            .values()
            .filter(|c| users.iter().any(|&u| c.runs(u)))
        {
            for h in &c.hosts {
                machines
                    .entry(host::machine(&h.value))
                    .or_insert((&h.value, h.span));
            }
        }
        if machines.len() < 2 {
            continue;
        }
        let hosts: Vec<&str> = machines.values().map(|(h, _)| *h).collect();
        let at = db.url.as_ref().map_or(db.span, |u| u.span);
        let mut d = Diagnostic::new(
            &CODE,
            format!(
                "SQLite database `{}` is used by nodes on {} hosts ({}), but a SQLite file lives on one machine",
                db.name,
                hosts.len(),
                hosts.join(", ")
            ),
            Label::new(at, "a SQLite file"),
        );
        for (h, span) in machines.values().take(2) {
            d = d.with_secondary(Label::new(*span, format!("a node on `{h}` uses it")));
        }
        out.push(d.with_hint(
            "use engine \"postgres\" or \"mysql\" for a database shared by several hosts",
        ));
    }
}
