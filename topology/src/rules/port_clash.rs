//! E030: two listeners on one host and port.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Topology;
use crate::parse::host;
use crate::source::Span;
use std::collections::BTreeMap;

code!(
    CODE,
    "E030",
    "port-clash",
    Error,
    "Two listeners (components, node admin ports, balancers) on the same host and port; loopback addresses and `localhost` count as one host.",
    "Move one of them to another host, or give it another port with `ports = { component = N }` in its cluster."
);

struct Listener<'t> {
    owner: String,
    what: String,
    host: &'t str,
    span: Span,
    /// The `ports` override that put it on this port, if any.
    set_at: Option<Span>,
}

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    let mut by_address: BTreeMap<(String, u16), Vec<Listener<'_>>> = BTreeMap::new();
    for c in t.clusters.values() {
        for (i, h) in c.hosts.iter().enumerate() {
            let machine = host::machine(&h.value);
            let listeners = c
                .components
                .iter()
                .map(|comp| {
                    let set_at = c.ports.get(&comp.value).map(|p| p.span);
                    (comp.value.as_str(), c.port(comp.value), set_at)
                })
                .chain([
                    (
                        "admin",
                        c.admin_port(),
                        c.admin_port.as_ref().map(|p| p.span),
                    ),
                    (
                        "internal",
                        c.internal_port(),
                        c.internal_port.as_ref().map(|p| p.span),
                    ),
                ]);
            for (what, port, set_at) in listeners {
                by_address
                    .entry((machine.clone(), port))
                    .or_default()
                    .push(Listener {
                        owner: c.node_name(i),
                        what: what.to_string(),
                        host: &h.value,
                        span: h.span,
                        set_at,
                    });
            }
        }
    }
    for lb in t.load_balancers.values() {
        let Some(h) = &lb.host else { continue };
        let machine = host::machine(&h.value);
        let mut ports: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for (port, comp, listener) in crate::reach::balancer_ports(t, lb) {
            let what = match listener {
                crate::flows::Listener::Public => comp.as_str().to_string(),
                crate::flows::Listener::Internal => format!("{comp} internal"),
            };
            let fronted = ports.entry(port).or_default();
            if !fronted.contains(&what) {
                fronted.push(what);
            }
        }
        for (port, components) in ports {
            // One balancer listener per port; two components on it cannot be told apart.
            for what in components {
                by_address
                    .entry((machine.clone(), port))
                    .or_default()
                    .push(Listener {
                        owner: lb.name.clone(),
                        what: format!("balancer for {what}"),
                        host: &h.value,
                        span: h.span,
                        set_at: None,
                    });
            }
        }
    }
    for ((_, port), mut listeners) in by_address {
        if listeners.len() < 2 {
            continue;
        }
        listeners.sort_by(|a, b| (&a.owner, &a.what).cmp(&(&b.owner, &b.what)));
        let names: Vec<String> = listeners
            .iter()
            .map(|l| format!("{} ({})", l.owner, l.what))
            .collect();
        let (first, last) = (&listeners[0], &listeners[listeners.len() - 1]);
        let mut d = Diagnostic::new(
            &CODE,
            format!(
                "port {port} on host `{}` is taken by {} listeners: {}",
                last.host,
                listeners.len(),
                names.join(", ")
            ),
            Label::new(
                last.span,
                format!("{} ({}) listens on {port}", last.owner, last.what),
            ),
        );
        if first.span != last.span {
            d = d.with_secondary(Label::new(
                first.span,
                format!("{} ({}) listens on {port} too", first.owner, first.what),
            ));
        }
        // Once per override: the nodes of a cluster share it.
        let mut overrides: Vec<(Span, &str)> = listeners
            .iter()
            .filter_map(|l| Some((l.set_at?, l.what.as_str())))
            .collect();
        overrides.dedup();
        for (at, what) in overrides {
            d = d.with_secondary(Label::new(at, format!("{what} set to {port} here")));
        }
        out.push(d.with_hint(
            "give each listener its own host, or move one with `ports = { <component> = <port> }` in its cluster",
        ));
    }
}
