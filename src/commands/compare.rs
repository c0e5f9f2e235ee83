//! `apim compare`: candidate topologies (files, or the built-in patterns) side by side, from
//! their checks and single-failure matrices.

use crate::Outcome;
use crate::output::{self, Format};
use apim_compiler::plan::Plan;
use apim_sim::compare::{Comparison, column};
use apim_sim::failover::matrix_jobs;
use apim_sim::report::Report;
use apim_sim::run::{Options, simulate};
use apim_sim::scenario::Scenario;
use apim_topology::SourceFile;
use std::io::IsTerminal;

/// Compare topologies side by side: size, public exposure, single points of failure, and what
/// each single failure does to publish, subscribe and invoke.
///
/// Each topology is checked, then every node, cluster, balancer, certificate, database and
/// firewall link in it is failed on its own in the simulator (the matrix of
/// `apim sim --single-failures`). The table has a column per topology: its size, what a
/// public network reaches, the checker's single-point-of-failure warnings, and per flow how
/// many single failures break or degrade it and the longest it took to work again after one
/// was repaired; under it, a one-line summary of each. `--details` names the failures behind
/// each count (the JSON always does).
///
///   apim compare --patterns                      the five built-in patterns
///   apim compare --patterns standalone,clustered-internal
///   apim compare ours.toml ours-one-gateway-less.toml --html compare.html
///
/// Exit status: 0 when every topology could be compared, 1 when one has errors (shown as
/// `apim check` shows them; nothing is simulated), 2 for usage errors and unreadable files.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Topology files to compare.
    files: Vec<String>,
    /// The built-in patterns, all five or a comma-separated list of their names
    /// (`apim init --list`); with files, they are compared together.
    #[arg(long, value_name = "NAMES", num_args = 0..=1, default_missing_value = "all", require_equals = false)]
    patterns: Option<String>,
    /// The seed of every simulated run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run the single failures on K threads (the table is the same as with one).
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// A scenario (as `apim sim --scenario`) run on each topology too: its verdicts, fault by
    /// fault, in the table. Its faults must name parts every topology has.
    #[arg(long, short)]
    scenario: Option<String>,
    /// Also run every single failure with opaque tokens and with JWT under each revocation
    /// policy: which break invoke, and under which revoked tokens were served past the bound.
    #[arg(long)]
    compare_policies: bool,
    /// Also list the failures behind each count.
    #[arg(long)]
    details: bool,
    /// Also write the comparison as one self-contained HTML page (a picture of each topology).
    #[arg(long, value_name = "FILE")]
    html: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// The candidates named on the command line, in order: files first, then patterns.
fn candidates(args: &Args) -> Result<Vec<(String, apim_topology::Checked)>, Outcome> {
    let mut out = Vec::new();
    for f in &args.files {
        let checked = super::load(f).map_err(|e| {
            output::error(&e);
            Outcome::Usage
        })?;
        out.push((f.clone(), checked));
    }
    if let Some(names) = &args.patterns {
        let ids: Vec<&str> = if names == "all" {
            apim_patterns::PATTERNS.iter().map(|p| p.id).collect()
        } else {
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        };
        for id in ids {
            let Some(p) = apim_patterns::find(id) else {
                let known: Vec<&str> = apim_patterns::PATTERNS.iter().map(|p| p.id).collect();
                output::error(&format!(
                    "no built-in pattern is named `{id}`; the patterns are {}",
                    known.join(", ")
                ));
                return Err(Outcome::Usage);
            };
            out.push((id.to_string(), apim_topology::check_str(id, p.template)));
        }
    }
    if out.len() < 2 {
        output::error(
            "compare needs two topologies or more: files, `--patterns`, or both (e.g. `apim compare --patterns`)",
        );
        return Err(Outcome::Usage);
    }
    Ok(out)
}

pub fn run(args: Args) -> Outcome {
    let candidates = match candidates(&args) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let with_errors: Vec<&(String, apim_topology::Checked)> =
        candidates.iter().filter(|(_, c)| c.errors() > 0).collect();
    if !with_errors.is_empty() {
        for (name, checked) in &with_errors {
            super::print_errors(checked, name, "nothing was compared");
        }
        return Outcome::Failure;
    }
    let show = std::io::stderr().is_terminal() && args.format == Format::Human;
    let options = Options {
        seed: args.seed,
        replay: "apim compare".into(),
        ..Options::default()
    };
    let mut columns = Vec::new();
    let mut plans = Vec::new();
    let mut timing = (0, 0);
    let scenario_text = match &args.scenario {
        Some(path) => match crate::input::read(path) {
            Ok((name, bytes)) => Some(SourceFile::new(
                name,
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
            Err(e) => {
                output::error(&e);
                return Outcome::Usage;
            }
        },
        None => None,
    };
    for (name, checked) in &candidates {
        let plan = Plan::of(&checked.topology);
        let report = match &scenario_text {
            Some(source) => match scenario_report(source, name, &plan, &options) {
                Ok(r) => Some(r),
                Err(o) => return o,
            },
            None => None,
        };
        let m = matrix_jobs(
            &plan,
            &options,
            args.compare_policies,
            usize::from(args.jobs),
            |k, n, what| {
                if show {
                    eprint!("\r\x1b[2K{name}: [{k}/{n}] {what}");
                }
            },
        );
        timing = (m.fault_at_ms, m.fault_for_ms);
        columns.push(column(name, checked, &plan, &m, report.as_ref()));
        plans.push(plan);
    }
    if show {
        eprint!("\r\x1b[2K");
    }
    let c = Comparison {
        seed: args.seed,
        fault_at_ms: timing.0,
        fault_for_ms: timing.1,
        columns,
    };
    if let Some(path) = &args.html {
        let plans: Vec<&Plan> = plans.iter().collect();
        if let Err(e) = output::write(Some(path), &apim_sim::html::compare_page(&plans, &c)) {
            output::error(&e);
            return Outcome::Usage;
        }
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default()),
        Format::Human => {
            print!("{}", c.text());
            if args.details {
                print!("{}", c.details());
            }
        }
    }
    Outcome::Success
}

/// The scenario run on one topology; its diagnostics, naming the topology, when it does not
/// fit it.
fn scenario_report(
    source: &SourceFile,
    name: &str,
    plan: &Plan,
    options: &Options,
) -> Result<Report, Outcome> {
    let scenario: Scenario = apim_sim::scenario::parse(source, plan).map_err(|diagnostics| {
        eprint!(
            "{}",
            apim_topology::render::human(source, &diagnostics, false)
        );
        output::error(&format!(
            "the scenario does not fit `{name}`; nothing was compared"
        ));
        Outcome::Usage
    })?;
    Ok(Report::new(
        plan,
        &scenario,
        options.seed,
        &options.replay,
        simulate(plan, &scenario, options),
    ))
}
