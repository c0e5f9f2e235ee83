//! W005: a password written out in a database URL.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;

code!(
    CODE,
    "W005",
    "literal-password",
    Warning,
    "A database URL contains a password in clear text, which would be copied into every built output.",
    "Write the password as an environment reference: `postgres://apim:${DB_PASSWORD}@host/db`."
);

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    for db in t.databases.values().filter(|d| d.literal_password) {
        let Some(url) = &db.url else { continue };
        out.push(
            Diagnostic::new(
                &CODE,
                format!("the URL of database `{}` contains a literal password", db.name),
                Label::new(url.span, "password in clear text"),
            )
            .with_hint("write `${DB_PASSWORD}` in place of the password and set the variable where the node runs"),
        );
    }
}
