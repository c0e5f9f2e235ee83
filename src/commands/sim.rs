//! `apim sim`: the deterministic simulator — a scenario's workload and faults run against the
//! topology's own component logic, with invariants, exploration and a single-failure matrix.

use crate::Outcome;
use crate::output::{self, Color, Format};
use apim_compiler::plan::Plan;
use apim_sim::report::Report;
use apim_sim::run::{Options, simulate};
use apim_sim::scenario::{self, FAULT_KINDS, Scenario};
use apim_topology::{SourceFile, render};
use serde_json::json;
use std::io::IsTerminal;

/// Simulate a topology: publish, subscribe and invoke under crashes, partitions and outages.
///
/// The simulator builds the plan of the topology and runs every node's real component logic
/// in a simulated world: databases in memory, a virtual network with the firewall's rules, a
/// virtual clock, one seeded random source. The same topology, scenario and seed give the same
/// report, byte for byte.
///
/// A scenario file (TOML) sets the workload and the faults:
///
///   [workload]
///   duration = "2m"
///   invoke_rate = 500
///
///   [[faults]]
///   kind = "crash"
///   node = "gateway-1"
///   at = "30s"
///   for = "20s"
///
/// Without one, a built-in workload runs for 60 s with no faults. `--list-faults` shows every
/// fault kind. Exit status: 0 when every invariant held, 1 on a violation (or a finding of
/// `--single-failures`), 2 for usage errors and unreadable or invalid files.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("runs many").args(["explore", "single_failures"]).multiple(true)))]
pub struct Args {
    /// The topology file; without one, the built-in clustered-external-store pattern.
    file: Option<String>,
    /// The scenario: workload and fault schedule.
    #[arg(long, short)]
    scenario: Option<String>,
    /// The seed of the run's random source.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Overrides the workload's duration, e.g. "10m".
    #[arg(long)]
    duration: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Also write the report as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<String>,
    /// Run twice and compare the reports and trace hashes byte for byte.
    #[arg(long)]
    check_determinism: bool,
    /// Draw N random fault schedules, run each, and shrink every failing one.
    #[arg(long, value_name = "N")]
    explore: Option<usize>,
    /// With --explore or --single-failures: run the schedules or failures on K threads (each
    /// still from its own seed; what is printed is the same as with one).
    #[arg(long, value_name = "K", default_value_t = 1, requires = "runs many", value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// Fail every node, cluster, balancer, database and firewall link in turn and print
    /// which flows keep working, compared with a static reachability analysis.
    #[arg(long)]
    single_failures: bool,
    /// With --single-failures: also run every failure with opaque tokens and with JWT under
    /// each revocation policy (strict, available), and show which break invoke and how long
    /// a revoked token was served.
    #[arg(long, requires = "single_failures")]
    compare_policies: bool,
    /// List the fault kinds and their keys.
    #[arg(long)]
    list_faults: bool,
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn list_faults(format: Format) -> Outcome {
    match format {
        Format::Json => {
            let kinds: Vec<_> = FAULT_KINDS
                .iter()
                .map(|(k, keys, what)| json!({"kind": k, "keys": keys, "effect": what}))
                .collect();
            print_json(&json!({ "common_keys": ["kind", "at", "for"], "faults": kinds }));
        }
        Format::Human => {
            println!(
                "Every fault takes `kind`, `at` (when it starts, e.g. \"30s\") and `for` (how long;"
            );
            println!("absent: to the end of the run). The kinds and their own keys:\n");
            for (k, keys, what) in FAULT_KINDS {
                println!("  {k:<16} {}", keys.join(", "));
                println!("  {:<16} {what}\n", "");
            }
        }
    }
    Outcome::Success
}

fn progress(enabled: bool, line: &str) {
    if enabled {
        eprint!("\r\x1b[2K{line}");
    }
}

/// The topology a simulation or drill runs, and its file name (empty for the default pattern).
pub(super) fn topology(file: Option<&str>) -> Result<(apim_topology::Checked, String), Outcome> {
    match file {
        Some(f) => Ok((super::load_clean(f, "nothing was run")?, f.to_string())),
        None => {
            let p = apim_patterns::find(apim_patterns::DEFAULT)
                .map(|p| p.template)
                .unwrap_or_default();
            Ok((
                apim_topology::check_str(apim_patterns::DEFAULT, p),
                String::new(),
            ))
        }
    }
}

/// The scenario at `path` (the built-in one without), its diagnostics printed when invalid,
/// with `--duration` applied (faults that would start after it dropped).
pub(super) fn scenario_of(
    path: Option<&str>,
    duration: Option<&str>,
    plan: &Plan,
    format: Format,
    color: bool,
) -> Result<Scenario, Outcome> {
    let mut scenario = read_scenario(path, plan, format, color)?;
    if let Some(d) = duration {
        match scenario::parse_duration(d) {
            Ok(ms) if ms > 0 => {
                scenario.workload.duration_ms = ms;
                scenario.faults.retain(|f| f.at_ms < ms);
            }
            Ok(_) => {
                output::error("--duration must be longer than 0s");
                return Err(Outcome::Usage);
            }
            Err(e) => {
                output::error(&format!("--duration: {e}"));
                return Err(Outcome::Usage);
            }
        }
    }
    Ok(scenario)
}

fn read_scenario(
    path: Option<&str>,
    plan: &Plan,
    format: Format,
    color: bool,
) -> Result<Scenario, Outcome> {
    let Some(path) = path else {
        return Ok(Scenario::default());
    };
    let (name, bytes) = crate::input::read(path).map_err(|e| {
        output::error(&e);
        Outcome::Usage
    })?;
    let source = SourceFile::new(name, String::from_utf8_lossy(&bytes).into_owned());
    scenario::parse(&source, plan).map_err(|diagnostics| {
        match format {
            Format::Json => print_json(&json!({
                "file": source.name,
                "ok": false,
                "diagnostics": diagnostics.iter().map(|d| render::json(&source, d)).collect::<Vec<_>>(),
            })),
            Format::Human => eprint!("{}", render::human(&source, &diagnostics, color)),
        }
        Outcome::Usage
    })
}

pub fn run(args: Args) -> Outcome {
    if args.list_faults {
        return list_faults(args.format);
    }
    let (checked, file) = match topology(args.file.as_deref()) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let plan = Plan::of(&checked.topology);
    let scenario = match scenario_of(
        args.scenario.as_deref(),
        args.duration.as_deref(),
        &plan,
        args.format,
        args.color.enabled(),
    ) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let replay = {
        let mut r = String::from("apim sim");
        if !file.is_empty() {
            r.push_str(&format!(" {file}"));
        }
        if let Some(s) = &args.scenario {
            r.push_str(&format!(" --scenario {s}"));
        }
        if let Some(d) = &args.duration {
            r.push_str(&format!(" --duration {d}"));
        }
        r.push_str(&format!(" --seed {}", args.seed));
        r
    };
    let options = Options {
        seed: args.seed,
        replay: replay.clone(),
        ..Options::default()
    };
    let show = std::io::stderr().is_terminal() && args.format == Format::Human;
    if args.single_failures {
        let each = |k: usize, n: usize, what: &str| progress(show, &format!("[{k}/{n}] {what}"));
        let m = apim_sim::failover::matrix_jobs(
            &plan,
            &options,
            args.compare_policies,
            usize::from(args.jobs),
            each,
        );
        progress(show, "");
        if let Some(path) = &args.html
            && let Err(e) = output::write(Some(path), &apim_sim::html::matrix_page(&plan, &m))
        {
            output::error(&e);
            return Outcome::Usage;
        }
        match args.format {
            Format::Json => print_json(&serde_json::to_value(&m).unwrap_or_default()),
            Format::Human => print!("{}", m.text()),
        }
        return if m.findings.is_empty() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
    }
    if let Some(n) = args.explore {
        let mut failing = 0;
        let jobs = usize::from(args.jobs);
        let found =
            apim_sim::explore::explore_jobs(&plan, &scenario, n, &options, jobs, |k, n, failed| {
                failing += usize::from(failed);
                progress(show, &format!("[{k}/{n}] {failing} failing"));
            });
        progress(show, "");
        let file_arg = if file.is_empty() {
            String::new()
        } else {
            format!(" {file}")
        };
        match args.format {
            Format::Json => print_json(&json!({
                "runs": n,
                "failing": found.len(),
                "found": found.iter().map(|f| json!({
                    "run": f.run,
                    "seed": f.seed,
                    "violations": f.violations,
                    "minimal_scenario": f.minimal.to_toml(),
                    "drawn_scenario": f.drawn.to_toml(),
                    "shrink_runs": f.shrink_runs,
                    "replay": format!("apim sim{file_arg} --scenario minimal.toml --seed {}", f.seed),
                })).collect::<Vec<_>>(),
            })),
            Format::Human => {
                println!(
                    "explored {n} random fault schedules from seed {}: {} failing",
                    args.seed,
                    found.len()
                );
                for f in &found {
                    println!(
                        "\nrun {} (seed {}): {} fault(s) drawn, shrunk to {} in {} runs",
                        f.run,
                        f.seed,
                        f.drawn.faults.len(),
                        f.minimal.faults.len(),
                        f.shrink_runs
                    );
                    for v in f.violations.iter().take(3) {
                        println!(
                            "  {} at {}: {}",
                            v.invariant,
                            scenario::format_ms(v.at_ms),
                            v.what
                        );
                    }
                    println!("  minimal schedule (save as minimal.toml):\n");
                    for line in f.minimal.to_toml().lines() {
                        println!("    {line}");
                    }
                    println!(
                        "\n  replay: apim sim{file_arg} --scenario minimal.toml --seed {}",
                        f.seed
                    );
                }
            }
        }
        return if found.is_empty() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
    }
    let report = Report::new(
        &plan,
        &scenario,
        args.seed,
        &replay,
        simulate(&plan, &scenario, &options),
    );
    if args.check_determinism {
        let again = Report::new(
            &plan,
            &scenario,
            args.seed,
            &replay,
            simulate(&plan, &scenario, &options),
        );
        let (a, b) = (
            serde_json::to_string(&report).unwrap_or_default(),
            serde_json::to_string(&again).unwrap_or_default(),
        );
        if a != b {
            output::error(&format!(
                "two runs with seed {} differ: trace hashes {} and {}",
                args.seed, report.trace_hash, again.trace_hash
            ));
            return Outcome::Failure;
        }
        if args.format == Format::Human {
            println!(
                "deterministic: two runs gave identical reports (trace hash {})",
                report.trace_hash
            );
        }
    }
    if let Some(path) = &args.html
        && let Err(e) = output::write(Some(path), &apim_sim::html::page(&plan, &report))
    {
        output::error(&e);
        return Outcome::Usage;
    }
    match args.format {
        Format::Json => print_json(&serde_json::to_value(&report).unwrap_or_default()),
        Format::Human => print!("{}", report.text()),
    }
    if report.ok {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}
