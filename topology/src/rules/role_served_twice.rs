//! E022: a database role served by two databases.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::vocab::Role;

code!(
    CODE,
    "E022",
    "role-served-twice",
    Error,
    "Two databases serve the same role, so nodes would disagree on where its data lives.",
    "Keep the role in exactly one database's `roles`."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    for &role in Role::ALL {
        let serving: Vec<_> = t
            .databases
            .values()
            .filter_map(|d| Some((d, d.roles.iter().find(|r| r.value == role)?)))
            .collect();
        let Some(((first_db, first), rest)) = serving.split_first() else {
            continue;
        };
        for (db, entry) in rest {
            out.push(
                Diagnostic::new(
                    &CODE,
                    format!(
                        "the `{role}` role is served by both `{}` and `{}`",
                        first_db.name, db.name
                    ),
                    Label::new(entry.span, format!("`{}` serves `{role}`", db.name)),
                )
                .with_secondary(Label::new(
                    first.span,
                    format!("`{}` serves it too", first_db.name),
                ))
                .with_hint(format!("remove \"{role}\" from the `roles` of one of them")),
            );
        }
    }
}
