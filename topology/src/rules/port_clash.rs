//! E030: two listeners on one host and port.

use crate::code;
use crate::diagnostic::{Diagnostic, Label};
use crate::flows;
use crate::model::{Cluster, LoadBalancer, Topology};
use crate::parse::host;
use crate::source::Span;
use crate::vocab::Component;
use std::collections::{BTreeMap, HashMap};

code!(
    CODE,
    "E030",
    "port-clash",
    Error,
    "Two listeners (components, node admin ports, balancers) on the same host and port; loopback addresses and `localhost` count as one host.",
    "Move one of them to another host, or give it another port with `ports = { component = N }` in its cluster."
);

/// Who listens: gathered for every node and balancer, named only when it clashes (a fleet
/// has hundreds of thousands of listeners and no clash).
#[derive(Clone, Copy)]
enum Owner<'t> {
    Node(&'t Cluster, usize),
    Balancer(&'t LoadBalancer),
}

impl Owner<'_> {
    fn name(self) -> String {
        match self {
            Owner::Node(c, i) => c.node_name(i),
            Owner::Balancer(lb) => lb.name.clone(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum What {
    Component(Component),
    Admin,
    Internal,
    Balancer(Component, flows::Listener),
}

impl What {
    fn name(self) -> String {
        match self {
            What::Component(c) => c.as_str().to_string(),
            What::Admin => "admin".to_string(),
            What::Internal => "internal".to_string(),
            What::Balancer(c, flows::Listener::Public) => format!("balancer for {c}"),
            What::Balancer(c, flows::Listener::Internal) => format!("balancer for {c} internal"),
        }
    }
}

struct Listener<'t> {
    owner: String,
    what: String,
    host: &'t str,
    span: Span,
    /// The `ports` override that put it on this port, if any.
    set_at: Option<Span>,
}

/// A listener as gathered: (machine id, port) first, the rest named on a clash.
struct Gathered<'t> {
    machine: u32,
    port: u16,
    owner: Owner<'t>,
    what: What,
    host: &'t str,
    span: Span,
    set_at: Option<Span>,
}

pub fn check(t: &Topology, out: &mut Vec<Diagnostic>) {
    // Machines by id: one string per host, not per listener.
    let mut machines: HashMap<host::Machine, u32> = HashMap::new();
    let mut machine_names: Vec<host::Machine> = Vec::new();
    let mut machine_id = |host: &str| {
        let m = host::Machine::of(host);
        if let Some(&id) = machines.get(&m) {
            return id;
        }
        let id = u32::try_from(machine_names.len()).unwrap_or(u32::MAX);
        machines.insert(m.clone(), id);
        machine_names.push(m);
        id
    };
    let mut all: Vec<Gathered<'_>> = Vec::new();
    for c in t.clusters.values() {
        for (i, h) in c.hosts.iter().enumerate() {
            let machine = machine_id(&h.value);
            let listeners = c
                .components
                .iter()
                .map(|comp| {
                    let set_at = c.ports.get(&comp.value).map(|p| p.span);
                    (What::Component(comp.value), c.port(comp.value), set_at)
                })
                .chain([
                    (
                        What::Admin,
                        c.admin_port(),
                        c.admin_port.as_ref().map(|p| p.span),
                    ),
                    (
                        What::Internal,
                        c.internal_port(),
                        c.internal_port.as_ref().map(|p| p.span),
                    ),
                ]);
            for (what, port, set_at) in listeners {
                all.push(Gathered {
                    machine,
                    port,
                    owner: Owner::Node(c, i),
                    what,
                    host: &h.value,
                    span: h.span,
                    set_at,
                });
            }
        }
    }
    for lb in t.load_balancers.values() {
        let Some(h) = &lb.host else { continue };
        let machine = machine_id(&h.value);
        let mut ports: BTreeMap<u16, Vec<What>> = BTreeMap::new();
        for (port, comp, listener) in crate::reach::balancer_ports(t, lb) {
            let what = What::Balancer(comp, listener);
            let fronted = ports.entry(port).or_default();
            if !fronted.contains(&what) {
                fronted.push(what);
            }
        }
        for (port, components) in ports {
            // One balancer listener per port; two components on it cannot be told apart.
            for what in components {
                all.push(Gathered {
                    machine,
                    port,
                    owner: Owner::Balancer(lb),
                    what,
                    host: &h.value,
                    span: h.span,
                    set_at: None,
                });
            }
        }
    }
    // Stable: within an address, listeners keep the order they were gathered in.
    all.sort_by_key(|g| (g.machine, g.port));
    let mut clashes: Vec<(String, u16, Vec<Listener<'_>>)> = all
        .chunk_by(|a, b| (a.machine, a.port) == (b.machine, b.port))
        .filter(|group| group.len() >= 2)
        .map(|group| {
            let listeners = group
                .iter()
                .map(|g| Listener {
                    owner: g.owner.name(),
                    what: g.what.name(),
                    host: g.host,
                    span: g.span,
                    set_at: g.set_at,
                })
                .collect();
            let machine = machine_names
                .get(group[0].machine as usize)
                .map(ToString::to_string)
                .unwrap_or_default();
            (machine, group[0].port, listeners)
        })
        .collect();
    clashes.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (_, port, mut listeners) in clashes {
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
