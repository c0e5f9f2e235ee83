//! apim, the command line: parse arguments, call the libraries, map results to exit codes.

mod commands;
mod input;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    Explain(commands::explain::Args),
}

/// Exit codes shared by every command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for `check`, no error (warnings allowed unless denied).
    Success = 0,
    /// The input has errors, or the operation failed.
    Failure = 1,
    /// Bad usage or an unreadable file.
    Usage = 2,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Init(args) => commands::init::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Graph(args) => commands::graph::run(args),
        Command::Explain(args) => commands::explain::run(args),
    };
    ExitCode::from(outcome as u8)
}
