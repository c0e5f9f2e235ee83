//! `apim graph`: the topology and its flow hops as DOT or Mermaid.

use crate::Outcome;
use crate::output;
use apim_topology::graph;

/// Draw a topology: networks, balancers, clusters, databases and the flow hops between them.
///
/// DOT renders with Graphviz (`apim graph t.toml | dot -Tsvg > t.svg`); Mermaid renders in
/// Markdown viewers that support it.
#[derive(clap::Args)]
pub struct Args {
    /// The topology file (`-` reads standard input).
    file: String,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

pub fn run(args: Args) -> Outcome {
    let checked = match super::load_clean(&args.file, "nothing was drawn") {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let text = match args.format {
        GraphFormat::Dot => graph::dot(&checked.topology),
        GraphFormat::Mermaid => graph::mermaid(&checked.topology),
    };
    match output::write(args.output.as_deref(), &text) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            output::error(&e);
            Outcome::Failure
        }
    }
}
