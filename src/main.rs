//! apim, the command line: parse arguments, call the libraries, map results to exit codes.

mod commands;
mod input;
mod outdir;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// glibc's malloc was about a tenth of the gateway's own CPU per proxied request (its
// consolidation of small chunks above all); jemalloc's thread caches cost a fraction of that,
// and it gives memory back to the system, so an idle node stays small.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Describe, check, build, run and simulate a distributed API Manager deployment.
///
/// A topology file says which machines run the publisher, store, key manager and gateway,
/// on which networks, behind which load balancers, with which databases. Start from a
/// built-in pattern with `apim init`, then `apim check` it.
#[derive(Parser)]
#[command(name = "apim", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(commands::init::Args),
    Check(commands::check::Args),
    Graph(commands::graph::Args),
    Build(commands::build::BuildArgs),
    Plan(commands::build::PlanArgs),
    Up(commands::run::UpArgs),
    Node(commands::run::NodeArgs),
    Balancer(commands::run::BalancerArgs),
    Certs(commands::certs::Args),
    Sim(commands::sim::Args),
    Compare(commands::compare::Args),
    Drill(commands::drill::Args),
    Explain(commands::explain::Args),
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for `check`, no error (warnings allowed unless denied).
    Success,
    /// The input has errors, or the operation failed.
    Failure,
    /// Bad usage or an unreadable file.
    Usage,
    /// `apim plan` found changes to make.
    Changes,
}

impl Outcome {
    /// Exit codes: `plan` uses 2 for changes, so every one of its failures is 1.
    fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Usage | Outcome::Changes => 2,
        }
    }
}

/// The security log (`apim_components::security`) on standard error: one line per event, or
/// one JSON object per line with `APIM_LOG_FORMAT=json`.
fn security_log() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let only = Targets::new().with_target(apim_components::security::TARGET, LevelFilter::WARN);
    let json = std::env::var("APIM_LOG_FORMAT").is_ok_and(|f| f == "json");
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = if json {
        tracing_subscriber::registry()
            .with(layer.json().with_filter(only))
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(layer.with_ansi(false).with_filter(only))
            .try_init()
    };
}

fn main() -> ExitCode {
    security_log();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; `plan` keeps exit 2 for "changes".
            let code = match (e.use_stderr(), std::env::args().nth(1).as_deref()) {
                (false, _) => 0,
                (true, Some("plan")) => 1,
                (true, _) => 2,
            };
            return ExitCode::from(code);
        }
    };
    let outcome = match cli.command {
        Command::Init(args) => commands::init::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Graph(args) => commands::graph::run(args),
        Command::Build(args) => commands::build::build(args),
        Command::Plan(args) => commands::build::plan(args),
        Command::Up(args) => commands::run::up(args),
        Command::Node(args) => commands::run::node(args),
        Command::Balancer(args) => commands::run::balancer(args),
        Command::Certs(args) => commands::certs::run(args),
        Command::Sim(args) => commands::sim::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Drill(args) => commands::drill::run(args),
        Command::Explain(args) => commands::explain::run(args),
    };
    ExitCode::from(outcome.code())
}
