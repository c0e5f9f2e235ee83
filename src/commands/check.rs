//! `apim check`: every problem in a topology file, and the pattern it matches.

use crate::Outcome;
use crate::output::{self, Color, Format};
use apim_topology::render;
use serde_json::json;

/// Check a topology file: every mistake, with file, line, column and a hint.
///
/// Exit status: 0 when there is no error (warnings are allowed unless --deny-warnings),
/// 1 when there are errors, 2 for usage errors and unreadable files.
#[derive(clap::Args)]
pub struct Args {
    /// The topology file (`-` reads standard input).
    file: String,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Also check the certificates in this folder (`apim certs`' layout) against the
    /// topology: chain to the CA, key, validity, SPIFFE ID, and the host of each node and
    /// balancer.
    #[arg(long)]
    certs: Option<std::path::PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let mut checked = match super::load(&args.file) {
        Ok(c) => c,
        Err(e) => {
            output::error(&e);
            return Outcome::Usage;
        }
    };
    if let Some(dir) = &args.certs
        && checked.errors() == 0
    {
        let plan = apim_compiler::Plan::of(&checked.topology);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let found = apim_pki::check::check_dir(&checked.topology, &plan, dir, now);
        checked.extend(found);
    }
    let recognition = apim_patterns::recognise(&checked.topology);
    let failed = checked.errors() > 0 || (args.deny_warnings && checked.warnings() > 0);
    match args.format {
        Format::Json => {
            let diagnostics: Vec<_> = checked
                .diagnostics
                .iter()
                .map(|d| render::json(&checked.source, d))
                .collect();
            let report = json!({
                "file": checked.source.name,
                "ok": !failed,
                "errors": checked.errors(),
                "warnings": checked.warnings(),
                "pattern": {
                    "id": recognition.pattern.id,
                    "matches": recognition.matches(),
                    "differences": recognition.differences,
                },
                "diagnostics": diagnostics,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        Format::Human => {
            print!(
                "{}",
                render::human(&checked.source, &checked.diagnostics, args.color.enabled())
            );
            // A pattern says little about a file that could not be read.
            if checked.errors() == 0 {
                if recognition.matches() {
                    println!("pattern: {}", recognition.pattern.id);
                } else {
                    println!(
                        "pattern: none; nearest is {} ({})",
                        recognition.pattern.id,
                        recognition.differences.join("; ")
                    );
                }
            }
            println!(
                "{}: {} error{}, {} warning{}",
                checked.source.name,
                checked.errors(),
                plural(checked.errors()),
                checked.warnings(),
                plural(checked.warnings())
            );
        }
    }
    if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
