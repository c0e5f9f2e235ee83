//! The features of a topology that decide its pattern.

use apim_topology::Topology;
use apim_topology::vocab::Component;
use std::collections::BTreeSet;

/// Which components share clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One cluster, running all four components.
    AllInOne,
    /// Publisher and store share clusters; gateway and key manager have their own.
    SharedPortal,
    /// Four clusters, one per component.
    OnePerComponent,
    Other,
}

impl Layout {
    pub fn describe(self) -> &'static str {
        match self {
            Layout::AllInOne => "one cluster running all four components",
            Layout::SharedPortal => {
                "publisher and store sharing a cluster, gateway and key-manager in clusters of their own"
            }
            Layout::OnePerComponent => "four clusters, one per component",
            Layout::Other => "another arrangement of components",
        }
    }
}

/// How many nodes the clusters have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nodes {
    AllSingle,
    Mixed,
    AllMultiple,
}

impl Nodes {
    pub fn describe(self) -> &'static str {
        match self {
            Nodes::AllSingle => "every cluster of a single node",
            Nodes::Mixed => "some clusters of one node and some of several",
            Nodes::AllMultiple => "every cluster of two or more nodes",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Features {
    pub layout: Layout,
    /// The layout in this topology's own words, for messages.
    pub layout_detail: String,
    pub nodes: Nodes,
    pub nodes_detail: String,
    pub store_public: bool,
}

impl Features {
    pub fn of(t: &Topology) -> Features {
        let sets: Vec<(&str, BTreeSet<Component>)> = t
            .clusters
            .values()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.components.iter().map(|c| c.value).collect(),
                )
            })
            .collect();
        let layout = layout(&sets);
        let layout_detail = if sets.is_empty() {
            "no clusters".to_string()
        } else {
            let parts: Vec<String> = sets
                .iter()
                .map(|(name, set)| {
                    let comps: Vec<&str> = set.iter().map(|c| c.as_str()).collect();
                    format!("`{name}` ({})", comps.join(", "))
                })
                .collect();
            format!("clusters {}", parts.join(", "))
        };
        let single: Vec<&str> = t
            .clusters
            .values()
            .filter(|c| c.node_count() <= 1)
            .map(|c| c.name.as_str())
            .collect();
        let nodes = match (single.len(), t.clusters.len()) {
            (s, n) if s == n => Nodes::AllSingle,
            (0, _) => Nodes::AllMultiple,
            _ => Nodes::Mixed,
        };
        let nodes_detail = match nodes {
            Nodes::AllMultiple => "every cluster has two or more nodes".to_string(),
            _ if single.len() == 1 => format!("cluster `{}` has one node", single[0]),
            _ => format!("clusters `{}` have one node", single.join("`, `")),
        };
        let public =
            |n: Option<&apim_topology::Spanned<String>>| t.network_of(n).is_some_and(|n| n.public);
        let store_public = t.clusters_running(Component::Store).any(|c| {
            public(c.network.as_ref())
                || t.balancers_fronting(&c.name)
                    .any(|lb| public(lb.network.as_ref()))
        });
        Features {
            layout,
            layout_detail,
            nodes,
            nodes_detail,
            store_public,
        }
    }
}

fn layout(sets: &[(&str, BTreeSet<Component>)]) -> Layout {
    use Component::*;
    let all: BTreeSet<Component> = Component::ALL.iter().copied().collect();
    let runs = |c: Component| sets.iter().filter(|(_, s)| s.contains(&c)).count();
    if sets.len() == 1 && sets[0].1 == all {
        return Layout::AllInOne;
    }
    if sets.len() == 4
        && sets.iter().all(|(_, s)| s.len() == 1)
        && Component::ALL.iter().all(|&c| runs(c) == 1)
    {
        return Layout::OnePerComponent;
    }
    let portal: BTreeSet<Component> = [Publisher, Store].into_iter().collect();
    let allowed = [portal.clone(), [Gateway].into(), [KeyManager].into()];
    if sets.iter().all(|(_, s)| allowed.contains(s)) && Component::ALL.iter().all(|&c| runs(c) >= 1)
    {
        return Layout::SharedPortal;
    }
    Layout::Other
}
