//! The `leakscope` binary: parse the command line, run the command, map the outcome to the
//! contract's exit status with one clear line on failure.
//!
//! leakscope: which resource leaks when a program repeats an operation.
//!
//! The flow is kernel probes -> ring buffer -> [`event`] decoding -> ledger -> analysis ->
//! report. Each stage is a module with one job; the ledger, analysis and report are pure and
//! unit-tested from synthetic event streams.

mod analysis;
mod cli;
mod commands;
mod delivered;
mod diagnosis;
mod ending;
mod event;
mod exit_code;
mod extract;
mod file_sizes;
mod followed;
mod heap;
mod iterations;
mod kernel_offsets;
mod ledger;
mod privilege;
mod probes;
mod proc_snapshot;
mod progress;
mod report;
mod run_as;
mod self_stats;
mod session;
mod shell_docs;
mod stacks;
mod stop;
mod symbols;
mod target;
mod units;
mod watch;

use std::process::ExitCode;

use crate::{
    cli::{Cli, Command},
    extract::run_worker,
};
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = Cli::parse(); // bad usage exits 2 with clap's message

    // The extract worker must stay single-threaded (its heap leak moves the break with
    // sbrk behind malloc's back), so it runs before any async runtime exists.
    if let Command::ExtractWorker(worker) = &cli.command {
        return match run_worker(&worker.config()) {
            Ok(summary) => {
                if worker.rounds_line {
                    use std::io::Write as _;
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{}", extract::worker::rounds_line(&summary));
                    let _ = stdout.flush();
                }
                if std::env::var_os(extract::worker::LOOP_NS_ENV).is_some() {
                    eprintln!("{}", extract::worker::loop_time_line(&summary));
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                let status = error.exit_status();
                eprintln!("leakscope extract: {:#}", anyhow::Error::from(error));
                ExitCode::from(status)
            }
        };
    }

    // Documentation of the command line itself: no privilege, no kernel, no runtime.
    match &cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            shell_docs::completions(*shell, &mut script);
            // `| head` closing the pipe early is no error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return ExitCode::SUCCESS;
        }
        Command::Man { dir } => {
            return match shell_docs::man_pages(dir) {
                Ok(written) => {
                    for path in written {
                        println!("{}", path.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!(
                        "leakscope: cannot write the man pages into {}: {error}",
                        dir.display()
                    );
                    ExitCode::from(exit_code::FAILURE)
                }
            };
        }
        _ => {}
    }

    // Before any other thread exists, so that every thread has the stop signals blocked
    // and only the watcher reads them.
    if let Err(error) = stop::install() {
        eprintln!("leakscope: cannot set up signal handling: {error}");
        return ExitCode::from(exit_code::FAILURE);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("leakscope: cannot start the async runtime: {error}");
            return ExitCode::from(exit_code::FAILURE);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("leakscope: {}", one_line(&error));
            ExitCode::from(exit_code::for_error(&error))
        }
    }
}

/// The error chain on one line, each cause once (`{:#}`: no message quotes its source). A
/// kernel verifier log can run to hundreds of lines; it is shown only with
/// LEAKSCOPE_VERBOSE=1.
fn one_line(error: &anyhow::Error) -> String {
    let full = format!("{error:#}");
    let mut lines = full.lines();
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_none() {
        return first;
    }
    if std::env::var_os("LEAKSCOPE_VERBOSE").is_some() {
        return full;
    }
    format!("{first} (set LEAKSCOPE_VERBOSE=1 for the kernel's full answer)")
}
