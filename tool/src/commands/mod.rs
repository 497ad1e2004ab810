//! One module per subcommand; `trace` holds what they share (tracing, diagnosing and writing
//! the report).

pub(crate) mod attach;
pub(crate) mod extract;
pub(crate) mod output;
pub(crate) mod run;
mod trace;

use crate::cli::{Cli, Command};

/// Runs a parsed command line; returns the process exit status.
pub(crate) async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Attach(args) => attach::attach(args).await,
        Command::Extract(args) => extract::extract(args).await,
        Command::ExtractWorker(_) | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("these run before any runtime exists (main.rs)")
        }
    }
}
