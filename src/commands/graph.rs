//! `apim graph`: the topology and its flow hops as DOT or Mermaid.

use crate::Outcome;
use crate::output;
use apim_topology::{graph, render};

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
    let checked = match super::load(&args.file) {
        Ok(c) => c,
        Err(e) => {
            output::error(&e);
            return Outcome::Usage;
        }
    };
    if checked.errors() > 0 {
        let errors: Vec<_> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .cloned()
            .collect();
        eprint!("{}", render::human(&checked.source, &errors, false));
        output::error(&format!(
            "`{}` has errors; fix them before drawing it (apim check)",
            checked.source.name
        ));
        return Outcome::Failure;
    }
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
