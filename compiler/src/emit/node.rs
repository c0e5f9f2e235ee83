//! `nodes/<node>.toml`: the runtime's own config for one node, what `apim node` runs.

use super::header;
use crate::plan::{NodePlan, Plan};

pub fn render(plan: &Plan, node: &NodePlan) -> String {
    let body = toml::to_string(node).unwrap_or_default();
    format!(
        "{}# Run it on {} with: apim node {}.toml\n\n{body}",
        header("#", &format!("Node `{}`", node.name), &plan.deployment),
        node.host,
        node.name
    )
}

/// Reads a node config back, as `apim node` does.
pub fn parse(text: &str) -> Result<NodePlan, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}
