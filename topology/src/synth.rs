//! Synthetic topologies of any size, valid by construction, for benchmarks and scale tests.

use std::fmt::Write;

const COMPONENTS: [&str; 4] = ["publisher", "store", "key-manager", "gateway"];
const NODES_PER_CLUSTER: usize = 10;
const ZONES: usize = 4;

/// The `i`th address from `10.prefix.0.0` on (past 65,535 into the next second octet).
fn address(prefix: u8, i: usize) -> String {
    let second = usize::from(prefix) + (i >> 16);
    format!("10.{second}.{}.{}", (i >> 8) & 255, i & 255)
}

/// A topology of about `nodes` nodes: clusters of ten, each component in turn, spread over
/// four networks with open firewalls, one balancer per cluster and three PostgreSQL databases.
pub fn topology(nodes: usize) -> String {
    let clusters = nodes.div_ceil(NODES_PER_CLUSTER).max(COMPONENTS.len());
    shaped((0..clusters).map(|c| (COMPONENTS[c % COMPONENTS.len()], NODES_PER_CLUSTER)))
}

/// The shape of large real deployments: a few portal and key-manager nodes (two clusters of
/// two of each), and gateways, in clusters of ten, for the rest of `nodes`.
pub fn gateway_heavy(nodes: usize) -> String {
    shaped(heavy_clusters(nodes))
}

/// The clusters of [`gateway_heavy`]: six portal and key-manager clusters (c0..c5), then the
/// gateways'.
fn heavy_clusters(nodes: usize) -> impl Iterator<Item = (&'static str, usize)> {
    let fixed = [("publisher", 2), ("store", 2), ("key-manager", 2)];
    let portal: usize = fixed.iter().map(|(_, n)| n * 2).sum();
    let gateways = nodes
        .saturating_sub(portal)
        .div_ceil(NODES_PER_CLUSTER)
        .max(1);
    fixed
        .into_iter()
        .chain(fixed)
        .chain((0..gateways).map(|_| ("gateway", NODES_PER_CLUSTER)))
}

/// A fleet: two clusters of two of each portal and key-manager, then gateways in clusters of
/// ten, every gateway cluster behind the same two edge balancers (as a fleet is fronted), every
/// key-manager cluster behind one internal balancer. The shape where a rule that scans a
/// balancer's fronts once per front turns quadratic.
pub fn fleet(nodes: usize) -> String {
    let clusters = heavy_clusters(nodes).count();
    let mut out = shaped(heavy_clusters(nodes));
    let gateways: Vec<String> = (6..clusters).map(|c| format!("\"c{c}\"")).collect();
    for (i, (name, kind, fronts)) in [
        ("edge-a", "external", gateways.join(", ")),
        ("edge-b", "external", gateways.join(", ")),
        ("km", "internal", "\"c2\", \"c5\"".to_string()),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = writeln!(
            out,
            "[load_balancers.{name}]\nkind = \"{kind}\"\nnetwork = \"zone-0\"\nhost = \"{}\"\nfronts = [{fronts}]\n",
            address(201, i + 1)
        );
    }
    out
}

/// A topology of the given clusters (component, nodes), in order.
fn shaped(clusters: impl Iterator<Item = (&'static str, usize)>) -> String {
    let mut out = String::from("version = 1\n\n[deployment]\nname = \"synthetic\"\n\n");
    for z in 0..ZONES {
        let _ = writeln!(out, "[networks.zone-{z}]\n");
    }
    for a in 0..ZONES {
        for b in (0..ZONES).filter(|&b| b != a) {
            let _ = writeln!(
                out,
                "[[firewall]]\nfrom = \"zone-{a}\"\nto = \"zone-{b}\"\n"
            );
        }
    }
    for (i, role) in ["user", "apim", "registry"].iter().enumerate() {
        let _ = writeln!(
            out,
            "[databases.{role}]\nroles = [\"{role}\"]\nengine = \"postgres\"\nurl = \"postgres://apim:${{DB_PASSWORD}}@10.250.0.{}:5432/{role}\"\nnetwork = \"zone-0\"\n",
            i + 1
        );
    }
    let mut host = 0;
    for (c, (component, nodes)) in clusters.enumerate() {
        let zone = (c / COMPONENTS.len()) % ZONES;
        let hosts: Vec<String> = (0..nodes)
            .map(|_| {
                host += 1;
                format!("\"{}\"", address(1, host))
            })
            .collect();
        let _ = writeln!(
            out,
            "[clusters.c{c}]\ncomponents = [\"{component}\"]\nnetwork = \"zone-{zone}\"\nhosts = [{}]\n",
            hosts.join(", ")
        );
        let kind = if component == "key-manager" {
            "internal"
        } else {
            "external"
        };
        let _ = writeln!(
            out,
            "[load_balancers.lb{c}]\nkind = \"{kind}\"\nnetwork = \"zone-{zone}\"\nhost = \"{}\"\nfronts = [\"c{c}\"]\n",
            address(200, c + 1)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn synthetic_topologies_are_valid_at_every_size() {
        for (nodes, text) in [1, 40, 333].into_iter().flat_map(|n| {
            [
                (n, super::topology(n)),
                (n, super::gateway_heavy(n)),
                (n, super::fleet(n)),
            ]
        }) {
            let c = crate::check_str("synthetic.toml", &text);
            let errors: Vec<_> = c
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| &d.message)
                .collect();
            assert!(errors.is_empty(), "{nodes} nodes: {errors:?}");
            assert!(
                c.topology
                    .clusters
                    .values()
                    .map(|c| c.node_count())
                    .sum::<usize>()
                    >= nodes
            );
        }
    }
}

/// A generated topology, as TOML sections (properties shuffle them).
#[derive(Clone, Debug)]
pub struct Generated {
    pub head: String,
    pub sections: Vec<String>,
}

impl Generated {
    pub fn text(&self, order: &[usize]) -> String {
        let mut s = self.head.clone();
        for &i in order {
            s.push_str(&self.sections[i]);
        }
        s
    }

    pub fn natural(&self) -> String {
        self.text(&(0..self.sections.len()).collect::<Vec<_>>())
    }
}

/// The free choices of [`varied`]; any values give a valid topology.
#[derive(Clone, Debug)]
pub struct Shape {
    /// The cluster (0..4) of each component.
    pub assign: Vec<usize>,
    /// Nodes (1..) of each cluster.
    pub nodes: Vec<usize>,
    /// The network of each cluster, modulo `nets`.
    pub cluster_net: Vec<usize>,
    /// Networks of balancers in turn, modulo `nets`.
    pub lb_net: Vec<usize>,
    pub nets: usize,
    pub public: bool,
    pub split_db: bool,
    /// Two balancers of each kind instead of one.
    pub twin: bool,
}

fn quote(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Valid by construction: open firewalls between all networks (from a public one, only from
/// the clusters and balancers on it), a balancer of each needed kind in front of every
/// multi-node cluster (and, when there is a public network, an external one on it in front of
/// every store or gateway cluster elsewhere), unique hosts, one database per role group.
pub fn varied(shape: &Shape) -> Generated {
    use crate::vocab::Component;
    let Shape {
        assign,
        nodes,
        cluster_net,
        lb_net,
        nets,
        public,
        split_db,
        twin,
    } = shape.clone();
    let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(0);
    let assign: Vec<usize> = (0..4).map(|i| at(&assign, i)).collect();
    let nodes: Vec<usize> = (0..4).map(|i| at(&nodes, i).max(1)).collect();
    let cluster_net: Vec<usize> = (0..4).map(|i| at(&cluster_net, i)).collect();
    let lb_net = if lb_net.is_empty() { vec![0] } else { lb_net };

    let nets = nets.max(1);
    let mut head = String::from("version = 1\n\n[deployment]\nname = \"generated\"\n\n");
    let mut sections = Vec::new();
    for n in 0..nets {
        let public = if public && n == 0 {
            "public = true\n"
        } else {
            ""
        };
        sections.push(format!("[networks.n{n}]\n{public}\n"));
    }
    // What sits on the public network: rules from it name these, never the network itself.
    let mut on_public: Vec<String> = Vec::new();
    let groups: Vec<Vec<&str>> = if split_db {
        vec![vec!["user", "registry"], vec!["apim"]]
    } else {
        vec![vec!["user", "apim", "registry"]]
    };
    for (i, roles) in groups.iter().enumerate() {
        sections.push(format!(
            "[databases.db{i}]\nroles = [{}]\nengine = \"postgres\"\nurl = \"postgres://apim:${{DB_PASSWORD}}@10.9.0.{}:5432/apim\"\nnetwork = \"n0\"\n\n",
            quote(&roles.iter().map(|r| r.to_string()).collect::<Vec<_>>()),
            i + 1
        ));
    }
    let mut lb_count = 0;
    for c in 0..4 {
        let runs: Vec<Component> = (0..4)
            .filter(|&k| assign[k] == c)
            .map(|k| Component::ALL[k])
            .collect();
        if runs.is_empty() {
            continue;
        }
        let net = cluster_net[c] % nets;
        if public && net == 0 {
            on_public.push(format!("c{c}"));
        }
        let hosts: Vec<String> = (0..nodes[c])
            .map(|i| format!("10.{}.0.{}", c + 1, i + 1))
            .collect();
        sections.push(format!(
            "[clusters.c{c}]\ncomponents = [{}]\nnetwork = \"n{net}\"\nhosts = [{}]\n\n",
            quote(
                &runs
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .collect::<Vec<_>>()
            ),
            quote(&hosts)
        ));
        let faces_clients = runs
            .iter()
            .any(|r| matches!(r, Component::Store | Component::Gateway));
        if nodes[c] < 2 {
            if public && net != 0 && faces_clients {
                lb_count += 1;
                on_public.push(format!("lb{lb_count}"));
                sections.push(format!(
                    "[load_balancers.lb{lb_count}]\nkind = \"external\"\nnetwork = \"n0\"\nhost = \"10.200.0.{lb_count}\"\nfronts = [\"c{c}\"]\n\n"
                ));
            }
            continue;
        }
        let mut kinds: Vec<&str> = Vec::new();
        if runs.iter().any(|r| *r != Component::KeyManager) {
            kinds.push("external");
        }
        if runs.contains(&Component::KeyManager) {
            kinds.push("internal");
        }
        for kind in kinds {
            let copies = if twin { 2 } else { 1 };
            for _ in 0..copies {
                lb_count += 1;
                let mut net = lb_net[lb_count % lb_net.len()] % nets;
                // Clients on a public network reach what faces them through a balancer there.
                if public && kind == "external" && faces_clients {
                    net = 0;
                }
                if public && net == 0 {
                    on_public.push(format!("lb{lb_count}"));
                }
                sections.push(format!(
                    "[load_balancers.lb{lb_count}]\nkind = \"{kind}\"\nnetwork = \"n{net}\"\nhost = \"10.200.0.{lb_count}\"\nfronts = [\"c{c}\"]\n\n"
                ));
            }
        }
    }
    for a in 0..nets {
        for b in (0..nets).filter(|&b| b != a) {
            if public && a == 0 {
                for m in &on_public {
                    head.push_str(&format!("[[firewall]]\nfrom = \"{m}\"\nto = \"n{b}\"\n\n"));
                }
            } else {
                head.push_str(&format!("[[firewall]]\nfrom = \"n{a}\"\nto = \"n{b}\"\n\n"));
            }
        }
    }
    Generated { head, sections }
}
