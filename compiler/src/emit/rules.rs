//! `lb/<lb>/rules.toml`: the built-in balancer's rules for one balancer.

use super::header;
use crate::plan::{BalancerPlan, Plan};

pub fn render(plan: &Plan, b: &BalancerPlan) -> String {
    let body = toml::to_string(b).unwrap_or_default();
    format!(
        "{}\n{body}",
        header(
            "#",
            &format!("Balancer `{}` rules", b.name),
            &plan.deployment
        )
    )
}

pub fn parse(text: &str) -> Result<BalancerPlan, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}
