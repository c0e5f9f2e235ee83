//! `apim drill`: a scenario against a real deployment on this machine, in network namespaces;
//! with `--compare`, side by side with the simulator's verdicts.

use crate::Outcome;
use crate::output::{self, Color, Format};
use apim_compiler::plan::Plan;
use apim_sim::report::{Report, Verdict};
use apim_sim::run::{Options, simulate};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Rehearse a scenario for real: every node and balancer as its own process, each host in a
/// network namespace of its own, the faults made for real.
///
/// The drill builds the topology's plan, maps every host to an address in --range (a private
/// range of namespaces it creates, joined by a bridge with no route out; never the topology's
/// own addresses), writes the node configs, balancer rules and a throwaway PKI into --data,
/// runs `apim node` and `apim balancer` processes, and waits until every node is ready. Then
/// the scenario's clients call the deployment in wall time while its faults happen: crash =
/// SIGKILL (restarted when the fault ends), cluster-down, balancer-outage, rolling-restart =
/// SIGTERM (drain) and restart, node by node; isolate, partition and loss = nftables rules in
/// the namespaces (the drill's clients sit on the public network). Databases are SQLite files
/// shared by the processes, or with --database places of their own on this machine's
/// PostgreSQL or MariaDB, each reached through a relay the drill makes refuse
/// (database-outage) or swallow (database-blackhole). Latency and certificate expiry are
/// refused, as are partitions and loss that would also cut a node from a database in the
/// simulation.
///
/// The report is the simulator's, computed from what the clients saw (`world: real`).
/// `--compare` also simulates the same scenario and prints each fault's verdicts side by side;
/// a disagreement exits 1. Needs root (network namespaces); everything the drill made is removed
/// when it ends, also on Ctrl-C.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The topology file; without one, the built-in clustered-external-store pattern.
    file: Option<String>,
    /// The scenario: workload and fault schedule (crash, cluster-down, balancer-outage,
    /// rolling-restart, isolate, partition, loss).
    #[arg(long, short, conflicts_with = "single_failures")]
    scenario: Option<String>,
    /// The simulator's single-failure matrix for real: every part the drill can fail, one after
    /// the other (20 s each, 10 s apart) on one deployment, compared with the simulation
    /// (implies --compare); prints the parts it cannot fail, and why.
    #[arg(long)]
    single_failures: bool,
    /// The invoke rate of --single-failures, per second.
    #[arg(long, default_value_t = 50.0, requires = "single_failures")]
    rate: f64,
    /// Overrides the workload's duration, e.g. "30s".
    #[arg(long)]
    duration: Option<String>,
    /// The private range the drill's namespaces get their addresses from.
    #[arg(long, default_value = "10.250.0.0/16")]
    range: String,
    /// The folder for the drill's files (configs, PKI, SQLite files, each process's log).
    #[arg(long, default_value = ".apim-drill")]
    data: PathBuf,
    /// Keep the drill's folder inside --data when it ends (it is removed otherwise, unless the
    /// drill fails: then it is kept for its logs, and named).
    #[arg(long)]
    keep: bool,
    /// A PostgreSQL or MariaDB server on this machine, as a URL it takes `CREATE SCHEMA` or
    /// `CREATE DATABASE` on (e.g. postgres://postgres@127.0.0.1:5432/test,
    /// mysql://root@127.0.0.1:3306/test): the drill's databases, each a place of its own there
    /// (removed at the end), so that database faults can be made. Without it, SQLite files.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Also simulate the scenario and compare the verdicts.
    #[arg(long)]
    compare: bool,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

/// One fault's verdict on one flow, in both worlds.
struct Row {
    fault: String,
    flow: &'static str,
    real: Verdict,
    simulated: Verdict,
    real_during: Option<f64>,
    simulated_during: Option<f64>,
    /// How long after the fault ended the flow worked again, when it was hurt.
    real_recovered_ms: Option<u64>,
    simulated_recovered_ms: Option<u64>,
}

impl Row {
    /// Whether both worlds saw requests of the flow during the fault: a flow with none in one
    /// (the simulator's rare operations arrive at random, the drill's at fixed intervals) has
    /// no verdict to compare.
    fn judged(&self) -> bool {
        self.real != Verdict::Idle && self.simulated != Verdict::Idle
    }

    fn disagrees(&self) -> bool {
        self.judged() && self.real != self.simulated
    }
}

/// The flows whose verdicts are compared: every flow the drill's clients exercise.
const DRILLED: &[&str] = &["publish", "subscribe", "invoke"];

fn compare(real: &Report, simulated: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    for (r, s) in real.faults.iter().zip(&simulated.faults) {
        for rf in r.flows.iter().filter(|f| DRILLED.contains(&f.flow)) {
            let Some(sf) = s.flows.iter().find(|f| f.flow == rf.flow) else {
                continue;
            };
            rows.push(Row {
                fault: r.fault.clone(),
                flow: rf.flow,
                real: rf.verdict,
                simulated: sf.verdict,
                real_during: rf.during,
                simulated_during: sf.during,
                real_recovered_ms: rf.recovered_after_ms,
                simulated_recovered_ms: sf.recovered_after_ms,
            });
        }
    }
    rows
}

fn recovered(ms: Option<u64>) -> String {
    ms.map_or(String::new(), |ms| {
        format!(", back {}", apim_sim::scenario::format_ms(ms))
    })
}

fn share(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{:.1} %", r * 100.0))
}

pub fn run(args: Args) -> Outcome {
    let (checked, _) = match super::sim::topology(args.file.as_deref()) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let plan = Plan::of(&checked.topology);
    let database = match args
        .database
        .as_deref()
        .map(apim_runtime::databases::Server::parse)
        .transpose()
    {
        Ok(d) => d,
        Err(e) => {
            output::error(&format!("--database: {e}"));
            return Outcome::Usage;
        }
    };
    let networked = database.is_some();
    let scenario = if args.single_failures {
        if !(args.rate > 0.0 && args.rate <= 1000.0) {
            output::error("--rate: between 0 and 1000 invokes per second");
            return Outcome::Usage;
        }
        let (scenario, skipped) = apim_drill::single_failures(&plan, args.rate, networked);
        for (part, why) in &skipped {
            eprintln!("drill: not failed: {part}: {why}");
        }
        scenario
    } else {
        match super::sim::scenario_of(
            args.scenario.as_deref(),
            args.duration.as_deref(),
            &plan,
            args.format,
            args.color.enabled(),
        ) {
            Ok(s) => s,
            Err(o) => return o,
        }
    };
    let compare_worlds = args.compare || args.single_failures;
    if let Err(e) = apim_drill::refuse(&plan, &scenario, networked) {
        output::error(&e);
        return Outcome::Usage;
    }
    let range = match apim_drill::lab::Range::parse(&args.range) {
        Ok(r) => r,
        Err(e) => {
            output::error(&format!("--range: {e}"));
            return Outcome::Usage;
        }
    };
    let show = std::io::stderr().is_terminal() || args.format == Format::Human;
    let password = std::env::var("APIM_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            let mut b = [0u8; 12];
            let _ = apim_runtime::random(&mut b);
            b.iter().map(|x| format!("{x:02x}")).collect()
        });
    let opts = apim_drill::Options {
        range,
        data: args.data.clone(),
        admin_password: password,
        database,
        keep: args.keep,
        progress: Box::new(move |line| {
            if show {
                eprintln!("drill: {line}");
            }
        }),
    };
    let started = std::time::Instant::now();
    let result = apim_runtime::block_on(async {
        let r = tokio::select! {
            r = apim_drill::run(&plan, &scenario, &opts) => r,
            _ = apim_runtime::until_signal() => Err("interrupted; every namespace, process and database place the drill made was removed".to_string()),
        };
        if r.is_err()
            && let Some(server) = &opts.database
        {
            apim_drill::remove_places(&plan, server).await;
        }
        r
    });
    let outcome = match result {
        Ok(Ok(o)) => o,
        Err(e) | Ok(Err(e)) => {
            output::error(&format!("drill: {e}"));
            return Outcome::Failure;
        }
    };
    let took = started.elapsed();
    let replay = "apim drill".to_string();
    let real = Report::new(&plan, &scenario, 0, &replay, outcome);
    let simulated = compare_worlds.then(|| {
        let options = Options {
            replay: "apim sim".into(),
            ..Options::default()
        };
        Report::new(
            &plan,
            &scenario,
            0,
            "apim sim",
            simulate(&plan, &scenario, &options),
        )
    });
    let rows = simulated
        .as_ref()
        .map(|s| compare(&real, s))
        .unwrap_or_default();
    let disagree = rows.iter().filter(|r| r.disagrees()).count();
    match args.format {
        Format::Json => {
            let mut v = json!({"world": "real", "seconds": took.as_secs_f64(), "report": real});
            if args.keep {
                v["kept"] = json!(args.data.join(format!("drill-{}", std::process::id())));
            }
            if let Some(sim) = &simulated {
                v["simulated"] = serde_json::to_value(sim).unwrap_or_default();
                v["compare"] = rows
                    .iter()
                    .map(|r| json!({"fault": r.fault, "flow": r.flow, "real": r.real, "simulated": r.simulated, "compared": r.judged(), "real_during": r.real_during, "simulated_during": r.simulated_during, "real_recovered_ms": r.real_recovered_ms, "simulated_recovered_ms": r.simulated_recovered_ms}))
                    .collect();
                v["agree"] = json!(disagree == 0);
            }
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Human => {
            println!("world: real (a drill of {:.0} s)", took.as_secs_f64());
            // The report's words are the simulator's; this run was not simulated.
            print!("{}", real.text().replacen("simulated ", "drilled ", 1));
            if simulated.is_some() {
                println!("\ndrill vs simulation, per fault and flow (success during the fault):");
                for r in &rows {
                    println!(
                        "  {} {:<40} {:<7} real {:<9} ({:>7}{})  simulated {:<9} ({:>7}{})",
                        if r.disagrees() {
                            "!"
                        } else if r.judged() {
                            " "
                        } else {
                            "?"
                        },
                        r.fault,
                        r.flow,
                        r.real.as_str(),
                        share(r.real_during),
                        recovered(r.real_recovered_ms),
                        r.simulated.as_str(),
                        share(r.simulated_during),
                        recovered(r.simulated_recovered_ms)
                    );
                }
                if rows.iter().any(|r| !r.judged()) {
                    println!(
                        "  (?: no requests of that flow during the fault in one world, so not compared)"
                    );
                }
                println!(
                    "{}",
                    if disagree == 0 {
                        "the drill agrees with the simulation".to_string()
                    } else {
                        format!("{disagree} verdict(s) disagree")
                    }
                );
            }
        }
    }
    if disagree == 0 {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}
