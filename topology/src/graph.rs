//! The topology as a graph — networks, clusters, balancers, databases and the flow hops as
//! labelled edges — rendered as Graphviz DOT or Mermaid.

use crate::flows::{Client, End, FLOWS, Path};
use crate::model::Topology;
use crate::reach::{self, Route};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Client,
    Cluster,
    Balancer,
    Database,
}

#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub lines: Vec<String>,
    pub shape: Shape,
    pub network: Option<String>,
}

/// The drawable graph, computed once and rendered by [`dot`] and [`mermaid`].
#[derive(Debug, Default)]
pub struct Graph {
    pub name: String,
    /// Network name -> (public, node ids), in name order.
    pub networks: BTreeMap<String, bool>,
    pub nodes: Vec<Node>,
    /// (from id, to id) -> labels, in order.
    pub edges: BTreeMap<(String, String), Vec<String>>,
}

fn client_id(c: Client) -> String {
    match c {
        Client::Provider => "clients-providers",
        Client::Consumer => "clients-consumers",
        Client::Application => "clients-applications",
    }
    .to_string()
}

impl Graph {
    pub fn of(t: &Topology) -> Graph {
        let mut g = Graph {
            name: t
                .deployment
                .name
                .as_ref()
                .map_or("apim".to_string(), |n| n.value.clone()),
            networks: t
                .networks
                .values()
                .map(|n| (n.name.clone(), n.public))
                .collect(),
            ..Graph::default()
        };
        let net = |n: Option<&crate::Spanned<String>>| t.network_of(n).map(|n| n.name.clone());
        for c in [Client::Provider, Client::Consumer, Client::Application] {
            g.nodes.push(Node {
                id: client_id(c),
                lines: vec![c.as_str().to_string()],
                shape: Shape::Client,
                network: None,
            });
        }
        for c in t.clusters.values() {
            let comps: Vec<&str> = c.components.iter().map(|c| c.value.as_str()).collect();
            let n = c.node_count();
            g.nodes.push(Node {
                id: format!("cluster-{}", c.name),
                lines: vec![
                    c.name.clone(),
                    comps.join(", "),
                    format!("{n} node{}", if n == 1 { "" } else { "s" }),
                ],
                shape: Shape::Cluster,
                network: net(c.network.as_ref()),
            });
        }
        for lb in t.load_balancers.values() {
            let kind = lb.kind().map_or("", |k| k.as_str());
            g.nodes.push(Node {
                id: format!("lb-{}", lb.name),
                lines: vec![lb.name.clone(), format!("{kind} balancer")],
                shape: Shape::Balancer,
                network: net(lb.network.as_ref()),
            });
        }
        for d in t.databases.values() {
            let roles: Vec<&str> = d.roles.iter().map(|r| r.value.as_str()).collect();
            let engine = d.engine().map_or("", |e| e.as_str());
            g.nodes.push(Node {
                id: format!("db-{}", d.name),
                lines: vec![d.name.clone(), format!("{engine}: {}", roles.join(", "))],
                shape: Shape::Database,
                network: net(d.network.as_ref()),
            });
        }
        for hop in FLOWS {
            let sources: Vec<String> = match hop.from {
                End::Client(c) => vec![client_id(c)],
                End::Component(c) => t
                    .clusters_running(c)
                    .map(|c| format!("cluster-{}", c.name))
                    .collect(),
                End::Database(_) => Vec::new(),
            };
            let each = if hop.path == Path::EachNode {
                " (each node)"
            } else {
                ""
            };
            let label = format!("{}: {}{each}", hop.flow, hop.why);
            let mut targets: Vec<Vec<String>> = Vec::new();
            match hop.to {
                End::Database(role) => {
                    targets.extend(t.database_for(role).map(|d| vec![format!("db-{}", d.name)]))
                }
                End::Component(c) => {
                    for r in reach::routes(t, c, hop.path) {
                        targets.push(match r {
                            Route::Direct(c) => vec![format!("cluster-{}", c.name)],
                            Route::Via(lb, c) => {
                                vec![format!("lb-{}", lb.name), format!("cluster-{}", c.name)]
                            }
                        });
                    }
                }
                End::Client(_) => {}
            }
            for src in &sources {
                for path in &targets {
                    let mut from = src.clone();
                    for to in path {
                        let labels = g.edges.entry((from.clone(), to.clone())).or_default();
                        if !labels.contains(&label) {
                            labels.push(label.clone());
                        }
                        from = to.clone();
                    }
                }
            }
        }
        g
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: one `cluster_` subgraph per network.
pub fn dot(t: &Topology) -> String {
    let g = Graph::of(t);
    let mut out = format!("digraph \"{}\" {{\n", dot_escape(&g.name));
    out.push_str("  graph [rankdir=LR, fontname=\"Helvetica\", compound=true];\n");
    out.push_str("  node [fontname=\"Helvetica\", shape=box, style=rounded];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=10];\n");
    let node_line = |n: &Node, indent: &str| {
        let shape = match n.shape {
            Shape::Client => "ellipse",
            Shape::Cluster => "box",
            Shape::Balancer => "hexagon",
            Shape::Database => "cylinder",
        };
        let label: Vec<String> = n.lines.iter().map(|l| dot_escape(l)).collect();
        format!(
            "{indent}\"{}\" [label=\"{}\", shape={shape}];\n",
            n.id,
            label.join("\\n")
        )
    };
    for n in g.nodes.iter().filter(|n| n.network.is_none()) {
        out.push_str(&node_line(n, "  "));
    }
    for (name, public) in &g.networks {
        out.push_str(&format!("  subgraph \"cluster_{name}\" {{\n"));
        let public = if *public { " (public)" } else { "" };
        out.push_str(&format!("    label=\"network {name}{public}\";\n"));
        for n in g
            .nodes
            .iter()
            .filter(|n| n.network.as_deref() == Some(name))
        {
            out.push_str(&node_line(n, "    "));
        }
        out.push_str("  }\n");
    }
    for ((from, to), labels) in &g.edges {
        let label: Vec<String> = labels.iter().map(|l| dot_escape(l)).collect();
        out.push_str(&format!(
            "  \"{from}\" -> \"{to}\" [label=\"{}\"];\n",
            label.join("\\n")
        ));
    }
    out.push_str("}\n");
    out
}

fn mermaid_id(id: &str) -> String {
    id.replace('-', "_")
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// Mermaid flowchart: one subgraph per network.
pub fn mermaid(t: &Topology) -> String {
    let g = Graph::of(t);
    let mut out = format!("%% apim topology {}\nflowchart LR\n", g.name);
    let node_line = |n: &Node, indent: &str| {
        let text: Vec<String> = n.lines.iter().map(|l| mermaid_text(l)).collect();
        let text = text.join("<br/>");
        let id = mermaid_id(&n.id);
        match n.shape {
            Shape::Client => format!("{indent}{id}([\"{text}\"])\n"),
            Shape::Cluster => format!("{indent}{id}[\"{text}\"]\n"),
            Shape::Balancer => format!("{indent}{id}{{{{\"{text}\"}}}}\n"),
            Shape::Database => format!("{indent}{id}[(\"{text}\")]\n"),
        }
    };
    for n in g.nodes.iter().filter(|n| n.network.is_none()) {
        out.push_str(&node_line(n, "  "));
    }
    for (name, public) in &g.networks {
        let public = if *public { " (public)" } else { "" };
        out.push_str(&format!(
            "  subgraph net_{}[\"network {name}{public}\"]\n",
            mermaid_id(name)
        ));
        for n in g
            .nodes
            .iter()
            .filter(|n| n.network.as_deref() == Some(name))
        {
            out.push_str(&node_line(n, "    "));
        }
        out.push_str("  end\n");
    }
    for ((from, to), labels) in &g.edges {
        let label: Vec<String> = labels.iter().map(|l| mermaid_text(l)).collect();
        out.push_str(&format!(
            "  {} -->|\"{}\"| {}\n",
            mermaid_id(from),
            label.join("<br/>"),
            mermaid_id(to)
        ));
    }
    out
}
