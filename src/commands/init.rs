//! `apim init`: write a commented topology file from a built-in pattern.

use crate::Outcome;
use crate::output::{self, Format};
use apim_patterns::PATTERNS;
use serde_json::json;
use std::path::Path;

/// Start a topology from a built-in pattern, as a commented TOML file.
///
/// Patterns: standalone, internal-store, external-store, clustered-internal,
/// clustered-external-store (`apim init --list` describes them).
#[derive(clap::Args)]
pub struct Args {
    /// The pattern to start from.
    #[arg(long, short, default_value = apim_patterns::DEFAULT, value_parser = pattern_ids())]
    pattern: String,
    /// Where to write it (`-` for standard output).
    #[arg(long, short, default_value = "topology.toml")]
    output: String,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
    /// List the patterns instead.
    #[arg(long)]
    list: bool,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

fn pattern_ids() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(PATTERNS.iter().map(|p| p.id))
}

pub fn run(args: Args) -> Outcome {
    if args.list {
        match args.format {
            Format::Json => {
                let list: Vec<_> = PATTERNS
                    .iter()
                    .map(|p| json!({ "id": p.id, "summary": p.summary }))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            }
            Format::Human => {
                let width = PATTERNS.iter().map(|p| p.id.len()).max().unwrap_or(0);
                for p in PATTERNS {
                    println!("{:width$}  {}", p.id, p.summary);
                }
                println!("\nwhat each single failure breaks in each: apim compare --patterns");
            }
        }
        return Outcome::Success;
    }
    let Some(pattern) = apim_patterns::find(&args.pattern) else {
        output::error(&format!("unknown pattern `{}`", args.pattern));
        return Outcome::Usage;
    };
    let to_stdout = args.output == "-";
    if !to_stdout && !args.force && Path::new(&args.output).exists() {
        output::error(&format!(
            "`{}` already exists; pass --force to overwrite it",
            args.output
        ));
        return Outcome::Failure;
    }
    if let Err(e) = output::write(Some(&args.output), pattern.template) {
        output::error(&e);
        return Outcome::Failure;
    }
    if !to_stdout {
        match args.format {
            Format::Json => println!("{}", json!({ "file": args.output, "pattern": pattern.id })),
            Format::Human => {
                eprintln!("wrote {} (pattern {})", args.output, pattern.id);
                eprintln!("next: apim check {}", args.output);
            }
        }
    }
    Outcome::Success
}
