//! Properties of builds over generated valid topologies: every fronted node is in its
//! balancer's upstreams in every format, every hop of the flows table is a peer of the node
//! configs, no two listeners share a host and port, and builds are byte-identical across runs
//! and table orders.

use apim_compiler::plan::{PeerPath, Plan};
use apim_topology::flows::{self, End, FLOWS, Path};
use apim_topology::synth::{self, Generated, Shape};
use apim_topology::vocab::{Component, Role};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Valid by construction (see `apim_topology::synth::varied`).
fn topology() -> impl Strategy<Value = Generated> {
    let components = proptest::collection::vec(0usize..4, 4); // cluster index of each component
    let nodes = proptest::collection::vec(1usize..4, 4);
    let networks = proptest::collection::vec(0usize..3, 4); // network of each cluster
    let lb_networks = proptest::collection::vec(0usize..3, 8);
    (
        components,
        nodes,
        networks,
        lb_networks,
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(assign, nodes, cluster_net, lb_net, nets, public, split_db, twin)| {
                synth::varied(&Shape {
                    assign,
                    nodes,
                    cluster_net,
                    lb_net,
                    nets,
                    public,
                    split_db,
                    twin,
                })
            },
        )
}

fn checked(text: &str) -> apim_topology::Checked {
    let c = apim_topology::check_str("generated.toml", text);
    let errors: Vec<_> = c
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect();
    assert!(
        errors.is_empty(),
        "the generator made an invalid topology: {errors:?}\n{text}"
    );
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_fronted_node_is_upstream_in_every_balancer_format(g in topology()) {
        let c = checked(&g.natural());
        let out = apim_compiler::build(&c.topology);
        for lb in c.topology.load_balancers.values() {
            for f in &lb.fronts {
                let cluster = &c.topology.clusters[&f.value];
                for h in &cluster.hosts {
                    for comp in &cluster.components {
                        let address = format!("{}:{}", h.value, cluster.port(comp.value));
                        for file in ["nginx.conf", "haproxy.cfg"] {
                            let text = &out.files[&format!("lb/{}/{file}", lb.name)];
                            prop_assert!(text.contains(&format!(" {address} ")), "{address} missing in lb/{}/{file}", lb.name);
                        }
                        let rules = apim_compiler::emit::rules::parse(&out.files[&format!("lb/{}/rules.toml", lb.name)]).map_err(TestCaseError::fail)?;
                        prop_assert!(rules.routes.iter().any(|r| r.component == comp.value && r.upstream.iter().any(|u| u.host == h.value)));
                    }
                }
            }
        }
    }

    #[test]
    fn every_hop_of_every_flow_is_a_peer_of_the_node_configs(g in topology()) {
        let c = checked(&g.natural());
        let out = apim_compiler::build(&c.topology);
        let plan = Plan::of(&c.topology);
        for node in &plan.nodes {
            // What `apim node` reads is what the plan says.
            let read = apim_compiler::emit::node::parse(&out.files[&format!("nodes/{}.toml", node.name)]).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&read, node);
            let runs: Vec<Component> = node.listeners.iter().map(|l| l.component).collect();
            for hop in FLOWS {
                let End::Component(from) = hop.from else { continue };
                if !runs.contains(&from) {
                    continue;
                }
                match hop.to {
                    End::Database(role) => prop_assert!(node.databases.iter().any(|d| d.role == role), "{} lacks {role:?}", node.name),
                    End::Component(to) => {
                        let path = if hop.path == Path::EachNode { PeerPath::EachNode } else { PeerPath::Any };
                        let peer = node.peers.iter().find(|p| p.component == to && p.path == path && p.flows.contains(&format!("{}: {}", hop.flow, hop.why)));
                        prop_assert!(peer.is_some(), "{} has no peer for {:?}", node.name, hop);
                        let peer = peer.expect("checked");
                        for target in c.topology.clusters_running(to) {
                            let through_balancer = matches!(hop.path, Path::Balanced(_)) && target.node_count() >= 2;
                            if through_balancer {
                                prop_assert!(peer.endpoints.iter().any(|e| e.balancer && target.port_for(to, hop.listener) == e.port));
                            } else {
                                for h in &target.hosts {
                                    prop_assert!(peer.endpoints.iter().any(|e| e.host == h.value && e.port == target.port_for(to, hop.listener)));
                                }
                            }
                        }
                    }
                    End::Client(_) => {}
                }
            }
            let used: BTreeSet<Role> = runs.iter().flat_map(|&c| flows::roles_used_by(c)).collect();
            prop_assert_eq!(used, node.databases.iter().map(|d| d.role).collect::<BTreeSet<_>>());
        }
    }

    #[test]
    fn no_two_listeners_share_a_host_and_port(g in topology()) {
        let plan = Plan::of(&checked(&g.natural()).topology);
        let mut seen = BTreeSet::new();
        for n in &plan.nodes {
            for port in n.listeners.iter().map(|l| l.port).chain([n.admin_port]) {
                prop_assert!(seen.insert((n.host.clone(), port)), "{}:{port} twice", n.host);
            }
        }
        for b in &plan.balancers {
            let ports: BTreeSet<u16> = b.routes.iter().map(|r| r.port).collect();
            for port in ports {
                prop_assert!(seen.insert((b.host.clone(), port)), "{}:{port} twice", b.host);
            }
        }
    }

    #[test]
    fn builds_are_byte_identical_across_runs_and_table_orders(
        (g, order) in topology().prop_flat_map(|g| {
            let n = g.sections.len();
            (Just(g), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        })
    ) {
        let a = apim_compiler::build(&checked(&g.natural()).topology);
        let b = apim_compiler::build(&checked(&g.natural()).topology);
        let shuffled = apim_compiler::build(&checked(&g.text(&order)).topology);
        prop_assert_eq!(&a.files, &b.files);
        prop_assert_eq!(&a.files, &shuffled.files);
        prop_assert_eq!(a.warnings, shuffled.warnings);
    }
}

/// What a WSO2 node listens on, by WSO2's rule (the default ports plus `[server] offset`;
/// WSO2 docs, "Changing the Default Ports with Offset"), from its deployment.toml alone: the
/// profile in its header, `node_ip` and `offset`.
fn wso2_listeners(text: &str) -> Vec<(String, u16)> {
    let value: toml::Value = toml::from_str(text).expect("deployment.toml is TOML");
    let ip = value["server"]["node_ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let offset = value["server"]["offset"].as_integer().unwrap_or_default() as u16;
    let header = text.lines().next().unwrap_or_default();
    let ports: &[u16] = if header.contains("(Universal Gateway)") {
        &[9443, 8243, 8280]
    } else if header.contains("key-manager profile") {
        &[9443]
    } else if header.contains("all-in-one") {
        &[9443, 8243, 8280, 5672, 9611, 9711]
    } else {
        &[9443, 5672, 9611, 9711]
    };
    ports.iter().map(|p| (ip.clone(), p + offset)).collect()
}

/// Every `scheme://host:port` in a text, with `localhost` as the node's own address.
fn urls(text: &str, me: &str) -> Vec<(String, String, u16)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for (i, _) in line.match_indices("://") {
            let scheme = line[..i]
                .rsplit(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default();
            let rest = &line[i + 3..];
            let end = rest.find(['/', '"']).unwrap_or(rest.len());
            let Some((host, port)) = rest[..end].rsplit_once(':') else {
                out.push((scheme.to_string(), rest[..end].to_string(), 0));
                continue;
            };
            let host = if host == "localhost" { me } else { host };
            out.push((
                scheme.to_string(),
                host.to_string(),
                port.parse().unwrap_or(0),
            ));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The rule for the WSO2 files: every URL names a host and port that the same build
    /// gives a listener — a WSO2 node's port, or a balancer's route.
    #[test]
    fn every_url_in_the_wso2_files_names_a_listener_of_the_build(g in topology()) {
        let c = checked(&g.natural());
        let out = apim_compiler::build(&c.topology);
        let plan = Plan::of(&c.topology);
        let mut listening: BTreeSet<(String, u16)> = BTreeSet::new();
        for (path, text) in &out.files {
            if path.starts_with("wso2/") {
                listening.extend(wso2_listeners(text));
            }
        }
        for b in &plan.balancers {
            listening.extend(b.routes.iter().map(|r| (b.host.clone(), r.port)));
        }
        // The balancers in front of WSO2 nodes forward to, and check, what WSO2 nodes listen on.
        for (path, text) in out.files.iter().filter(|(p, _)| p.ends_with("/wso2/haproxy.cfg")) {
            for line in text.lines().filter(|l| l.trim_start().starts_with("server ")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                let (host, port) = words[2].rsplit_once(':').expect("host:port");
                let check: u16 = words[5].parse().expect("check port");
                for p in [port.parse::<u16>().expect("port"), check] {
                    prop_assert!(
                        listening.contains(&(host.to_string(), p)),
                        "{path}: {host}:{p} is no WSO2 listener"
                    );
                }
            }
        }
        for (path, text) in out.files.iter().filter(|(p, _)| p.starts_with("wso2/")) {
            let value: toml::Value = toml::from_str(text).expect("TOML");
            let me = value["server"]["node_ip"].as_str().unwrap_or_default();
            for (scheme, host, port) in urls(text, me) {
                if scheme == "jdbc:postgresql" || scheme == "postgresql" || scheme == "mysql" {
                    continue;
                }
                prop_assert!(scheme != "http", "{path}: plain http to {host}:{port}");
                prop_assert!(
                    listening.contains(&(host.clone(), port)),
                    "{path}: {scheme}://{host}:{port} names nothing that listens"
                );
            }
        }
    }
}
