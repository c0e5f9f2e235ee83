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
    let plan = Plan::of(t);
    emit::all(t, &plan)
}
