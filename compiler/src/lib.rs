//! apim-compiler: a checked topology -> the plan (per-node configs, load-balancer rules) ->
//! every file a build writes. Pure: it returns file contents; the command line writes them.

pub mod emit;
pub mod hosts;
pub mod plan;
pub mod secrets;

pub use emit::Output;
pub use hosts::HostMap;
pub use plan::Plan;

use apim_topology::Topology;

/// Compiles a topology that checked without errors into every output file.
pub fn build(t: &Topology) -> Output {
    build_with(t, &Overrides::default())
}

/// What `apim build`'s flags say over the topology.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub image: Option<String>,
    /// By `[kubernetes]` key: `cpu_request`, `memory_request`, `cpu_limit`, `memory_limit`.
    pub resources: Vec<(&'static str, String)>,
}

impl Overrides {
    /// The problems of the workload these overrides give over `t`'s, each (flag, message).
    pub fn problems(&self, t: &Topology) -> Vec<(String, String)> {
        let w = self.apply(plan::Workload::of(t));
        let mut out = Vec::new();
        if let Some(image) = &self.image
            && let Some(p) = apim_topology::kubernetes::image_problem(image)
        {
            out.push(("--image".to_string(), p));
        }
        out.extend(
            w.resources
                .problems()
                .into_iter()
                .map(|(key, p)| (format!("--{}", key.replace('_', "-")), p)),
        );
        out
    }

    fn apply(&self, mut w: plan::Workload) -> plan::Workload {
        if let Some(image) = &self.image {
            w.image = image.clone();
        }
        for (key, value) in &self.resources {
            w.resources.set(key, value.clone());
        }
        w
    }
}

/// [`build`], with the flags' overrides applied; call [`Overrides::problems`] first.
pub fn build_with(t: &Topology, overrides: &Overrides) -> Output {
    let mut plan = Plan::of(t);
    plan.workload = overrides.apply(plan.workload);
    emit::all(t, &plan)
}
