//! `apim explain`: what a diagnostic code means and how to fix it.

use crate::Outcome;
use crate::output::{self, Format};
use apim_topology::Code;
use serde_json::json;

/// Explain a diagnostic code (such as E040), or list every code.
#[derive(clap::Args)]
pub struct Args {
    /// The code or its name; omit it to list every code.
    code: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Every code apim can report, in documentation order.
pub fn all_codes() -> Vec<&'static Code> {
    apim_topology::codes::ALL
        .iter()
        .chain(apim_patterns::CODES)
        .chain(apim_pki::check::CODES)
        .chain(apim_sim::codes::ALL)
        .copied()
        .collect()
}

pub fn run(args: Args) -> Outcome {
    let codes = all_codes();
    let selected: Vec<&Code> = match &args.code {
        None => codes,
        Some(wanted) => match codes
            .into_iter()
            .find(|c| c.id.eq_ignore_ascii_case(wanted) || c.name == wanted)
        {
            Some(c) => vec![c],
            None => {
                output::error(&format!(
                    "unknown code `{wanted}`; `apim explain` lists them all"
                ));
                return Outcome::Usage;
            }
        },
    };
    match args.format {
        Format::Json => {
            let list: Vec<_> = selected
                .iter()
                .map(|c| json!({ "code": c.id, "name": c.name, "severity": c.severity.as_str(), "summary": c.summary, "fix": c.fix }))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
        }
        Format::Human if args.code.is_some() => {
            print!("{}", apim_topology::docs::explain(selected[0]))
        }
        Format::Human => {
            for c in selected {
                println!("{}  {:28} {}", c.id, c.name, c.summary);
            }
        }
    }
    Outcome::Success
}
