//! Synthetic topologies of any size, valid by construction, for benchmarks and scale tests.

use std::fmt::Write;

const COMPONENTS: [&str; 4] = ["publisher", "store", "key-manager", "gateway"];
const NODES_PER_CLUSTER: usize = 10;
const ZONES: usize = 4;

fn address(prefix: u8, i: usize) -> String {
    format!("10.{prefix}.{}.{}", (i >> 8) & 255, i & 255)
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
    let fixed = [("publisher", 2), ("store", 2), ("key-manager", 2)];
    let portal: usize = fixed.iter().map(|(_, n)| n * 2).sum();
    let gateways = nodes
        .saturating_sub(portal)
        .div_ceil(NODES_PER_CLUSTER)
        .max(1);
    shaped(
        fixed
            .iter()
            .chain(fixed.iter())
            .copied()
            .chain((0..gateways).map(|_| ("gateway", NODES_PER_CLUSTER))),
    )
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
        for (nodes, text) in [1, 40, 333]
            .into_iter()
            .flat_map(|n| [(n, super::topology(n)), (n, super::gateway_heavy(n))])
        {
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
