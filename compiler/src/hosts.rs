//! Host maps: where nodes and balancers answer on a platform that names them its own way
//! (Kubernetes DNS names, Compose services, loopback addresses for `apim up`).
//!
//! Node configs keep the topology's hosts; a platform ships one map beside them, and
//! `apim node FILE --hosts MAP` reads every address through it.

use crate::plan::{BalancerPlan, NodePlan, Plan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMap {
    /// Node name -> address.
    #[serde(default)]
    pub nodes: BTreeMap<String, String>,
    /// Balancer name -> address.
    #[serde(default)]
    pub balancers: BTreeMap<String, String>,
}

impl HostMap {
    /// Maps every node and balancer of `plan` with `node` and `balancer` (name -> address).
    pub fn of(
        plan: &Plan,
        node: impl Fn(&NodePlan) -> String,
        balancer: impl Fn(&str) -> String,
    ) -> HostMap {
        HostMap {
            nodes: plan
                .nodes
                .iter()
                .map(|n| (n.name.clone(), node(n)))
                .collect(),
            balancers: plan
                .balancers
                .iter()
                .map(|b| (b.name.clone(), balancer(&b.name)))
                .collect(),
        }
    }

    fn node_address(&self, name: &str, default: &str) -> String {
        self.nodes
            .get(name)
            .map_or_else(|| default.to_string(), Clone::clone)
    }

    fn balancer_address(&self, name: &str, default: &str) -> String {
        self.balancers
            .get(name)
            .map_or_else(|| default.to_string(), Clone::clone)
    }

    /// One node config with its own address and its peers' read through the map; the node
    /// binds its mapped address.
    pub fn node(&self, n: &NodePlan) -> NodePlan {
        let mut n = n.clone();
        n.host = self.node_address(&n.name, &n.host);
        if !n.backends.is_empty() {
            n.backends
                .add_own(self.nodes.values().chain(self.balancers.values()));
        }
        n.bind = n.host.clone();
        for peer in &mut n.peers {
            for e in &mut peer.endpoints {
                e.host = if e.balancer {
                    self.balancer_address(&e.name, &e.host)
                } else {
                    self.node_address(&e.name, &e.host)
                };
            }
        }
        n
    }

    /// One balancer with its own address and its upstreams' read through the map.
    pub fn balancer(&self, b: &BalancerPlan) -> BalancerPlan {
        let mut b = b.clone();
        b.host = self.balancer_address(&b.name, &b.host);
        for r in &mut b.routes {
            for u in &mut r.upstream {
                u.host = self.node_address(&u.node, &u.host);
            }
        }
        b
    }

    /// The whole plan read through the map.
    pub fn plan(&self, plan: &Plan) -> Plan {
        Plan {
            nodes: plan.nodes.iter().map(|n| self.node(n)).collect(),
            balancers: plan.balancers.iter().map(|b| self.balancer(b)).collect(),
            ..plan.clone_without_members()
        }
    }

    pub fn to_toml(&self, header: &str) -> String {
        format!("{header}\n{}", toml::to_string(self).unwrap_or_default())
    }

    pub fn parse(text: &str) -> Result<HostMap, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_balancers_of_the_same_name_map_apart() {
        let t = apim_topology::check_str(
            "t.toml",
            r#"version = 1
[deployment]
name = "t"
[networks.n]
[databases.d]
roles = ["user", "apim", "registry"]
engine = "sqlite"
url = "sqlite://a.db"
[clusters.a]
components = ["publisher", "store", "key-manager", "gateway"]
network = "n"
hosts = ["10.0.0.1", "10.0.0.2"]
[load_balancers.a-1]
kind = "external"
network = "n"
host = "10.0.0.3"
fronts = ["a"]
"#,
        );
        let plan = Plan::of(&t.topology);
        let map = HostMap::of(
            &plan,
            |n| format!("node.{}", n.name),
            |b| format!("balancer.{b}"),
        );
        let mapped = map.plan(&plan);
        assert_eq!(mapped.nodes[0].host, "node.a-1");
        assert_eq!(mapped.balancers[0].host, "balancer.a-1");
        assert_eq!(mapped.balancers[0].routes[0].upstream[1].host, "node.a-2");
        assert_eq!(HostMap::parse(&map.to_toml("# map")), Ok(map));
    }
}
