//! W003: one database serving every role.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::vocab::Role;

code!(
    CODE,
    "W003",
    "single-database",
    Warning,
    "One database serves every role: an outage of it stops publish, subscribe and invoke at once.",
    "Run it with replication and failover, or split the roles so that one outage stops less."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    for db in t.databases.values() {
        if Role::ALL.iter().all(|&r| db.serves(r)) {
            out.push(
                Diagnostic::new(
                    &CODE,
                    format!(
                        "database `{}` serves every role: a single point of failure for every flow",
                        db.name
                    ),
                    Label::new(db.span, "user, apim and registry"),
                )
                .with_hint(
                    "run it with replication and failover, or split the roles across databases",
                ),
            );
        }
    }
}
