//! The checker's rules over the model, one file each, registered in [`RULES`].

pub mod balancer_unreachable;
pub mod component_not_deployed;
pub mod hop_blocked;
pub mod literal_password;
pub mod name_shared;
pub mod not_balanced;
pub mod not_public;
pub mod port_clash;
pub mod public_exposure;
pub mod publisher_exposed;
pub mod references;
pub mod role_not_served;
pub mod role_served_twice;
pub mod single_balancer;
pub mod single_database;
pub mod single_node_cluster;
pub mod sqlite_shared;

use crate::diagnostic::Diagnostic;
use crate::model::Topology;

pub type Check = fn(&Topology, &mut Vec<Diagnostic>);

/// Every rule, in the order they run. Each returns all it finds; none depends on another.
pub static RULES: &[Check] = &[
    references::check,
    name_shared::check,
    component_not_deployed::check,
    role_not_served::check,
    role_served_twice::check,
    port_clash::check,
    sqlite_shared::check,
    hop_blocked::check,
    balancer_unreachable::check,
    not_public::check,
    public_exposure::check,
    not_balanced::check,
    single_node_cluster::check,
    single_balancer::check,
    single_database::check,
    publisher_exposed::check,
    literal_password::check,
];

pub fn run(t: &Topology) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for rule in RULES {
        rule(t, &mut out);
    }
    out
}

/// `a`, `b` and `c`, for messages.
pub(crate) fn list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{}`", s.as_ref())).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}
