//! E021: a database role that no database serves.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::vocab::Role;

code!(
    CODE,
    "E021",
    "role-not-served",
    Error,
    "A database role (user, apim, registry) that no database serves.",
    "Add the role to a database's `roles`, or add a database for it."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    let anchor = t
        .databases
        .values()
        .map(|d| d.span)
        .min()
        .unwrap_or(t.deployment.span);
    for &role in Role::ALL {
        if t.database_for(role).is_some() {
            continue;
        }
        out.push(
            Diagnostic::new(
                &CODE,
                format!("no database serves the `{role}` role"),
                Label::new(anchor, format!("none of the databases has `{role}` in its roles")),
            )
            .with_hint(format!(
                "add \"{role}\" to a database's `roles`, or add a database such as [databases.{role}]"
            )),
        );
    }
}
