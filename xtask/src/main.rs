//! Project tasks. `cargo xtask test|run|build|bench|man` install what a fresh machine lacks
//! (rust-src for nightly, bpf-linker) and then do their job, saying each step out loud in
//! one line. Builds are quiet: the compiler's output appears only when a build fails.

mod bench;
mod bootstrap;
mod build_log;
mod shell;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "leakscope's build, test, run and bench tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install missing tools, then build target/release/leakscope.
    Build,
    /// Build, then run leakscope (default: `extract`, the built-in tar-extraction loop).
    /// Arguments after `--` go to leakscope instead, e.g. `cargo xtask run -- extract --inject-leak fd`.
    Run {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Install missing tools, run the unit tests, then the root integration tests against
    /// the real probes (one at a time: they share kernel state).
    Test {
        /// Only the unit tests (no root needed).
        #[arg(long)]
        unit_only: bool,
    },
    /// leakscope's cost against untraced runs, in interleaved pairs, on the open+close storm
    /// and the extract loop, with strace, perf trace, bpftrace and valgrind on the same
    /// workloads, leakscope's peak RSS, start-up and report times, and issue 11's bars.
    Bench {
        /// Interleaved (untraced, traced) pairs per setup; the table shows their median ratio.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        pairs: u64,
        /// Open+close pairs of the storm.
        #[arg(long, default_value_t = 1_000_000)]
        iterations: u64,
        /// Rounds of the extract loop.
        #[arg(long, default_value_t = 3)]
        extract_rounds: u64,
        /// Extractions per round of the extract loop (the original report's 10,000).
        #[arg(long, default_value_t = 10_000)]
        extract_iterations: u64,
        /// leakscope alone, without the peers.
        #[arg(long)]
        no_peers: bool,
        /// malloc+free pairs of the heap row (`leakscope run --heap` against bcc's
        /// memleak-bpfcc); 0 leaves the row out.
        #[arg(long, default_value_t = 100_000)]
        heap_iterations: u64,
        /// Only the heap row.
        #[arg(long)]
        only_heap: bool,
    },
    /// Build, then write the man pages (leakscope.1, and leakscope-run.1 etc.) with
    /// clap_mangen. Read one with `man -l target/man/leakscope.1`; install with
    /// `sudo cp target/man/*.1 /usr/local/share/man/man1/ && sudo mandb`.
    Man {
        /// Where to write them.
        #[arg(long, default_value = "target/man")]
        out: std::path::PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Build => {
            build()?;
        }
        Task::Run { args } => {
            let binary = build()?;
            let args = if args.is_empty() {
                vec!["extract".to_string()]
            } else {
                args
            };
            shell::step(&format!("running leakscope {}", args.join(" ")));
            shell::run_as_root(&binary, &args)?;
        }
        Task::Test { unit_only } => test(unit_only)?,
        Task::Bench {
            pairs,
            iterations,
            extract_rounds,
            extract_iterations,
            no_peers,
            heap_iterations,
            only_heap,
        } => {
            let binary = build()?;
            let options = bench::Options {
                pairs: usize::try_from(pairs)?,
                storm_iterations: iterations,
                extract_rounds,
                extract_iterations,
                peers: !no_peers,
                heap_iterations,
                only_heap,
            };
            bench::run(&binary, &options)?;
        }
        Task::Man { out } => {
            let binary = build()?;
            let out = shell::workspace_root().join(out);
            shell::step(&format!("writing the man pages into {}", out.display()));
            let status = std::process::Command::new(&binary)
                .arg("man")
                .arg(&out)
                .status()
                .with_context(|| format!("running {}", binary.display()))?;
            anyhow::ensure!(status.success(), "leakscope man failed: {status}");
        }
    }
    Ok(())
}

fn build() -> Result<std::path::PathBuf> {
    bootstrap::ensure_toolchain()?;
    shell::step("building target/release/leakscope (about a minute when nothing is built yet)");
    shell::cargo_build(&["build", "--release", "--package", "leakscope"], &[])?;
    Ok(shell::workspace_root().join("target/release/leakscope"))
}

fn test(unit_only: bool) -> Result<()> {
    let mut tally = shell::TestTally::default();
    let result = run_tests(unit_only, &mut tally);
    // One closing line for the whole run, whatever cargo's last block happened to be.
    println!("tests: {} passed, {} failed", tally.passed, tally.failed);
    result
}

fn run_tests(unit_only: bool, tally: &mut shell::TestTally) -> Result<()> {
    bootstrap::ensure_toolchain()?;
    bootstrap::ensure_fixture_tools()?;
    let unit = [
        "test",
        "--package",
        "leakscope-common",
        "--package",
        "leakscope",
        "--package",
        "xtask",
    ];
    shell::step("building the unit tests");
    shell::cargo_test_build(&unit, &[])?;
    shell::step("unit tests (ledger, analysis, report, decoding: no root needed)");
    shell::cargo_test(&unit, &[], &[], tally)?;
    if unit_only {
        return Ok(());
    }
    if !shell::is_root() {
        anyhow::bail!(
            "the integration tests load real eBPF programs and need root: run `sudo -E cargo xtask test` \
             (or `cargo xtask test --unit-only`)"
        );
    }
    let binary = build()?;
    let integration = [
        "test",
        "--release",
        "--package",
        "leakscope-tests",
        "--tests",
    ];
    let binary_env = [("LEAKSCOPE_BIN", binary.to_str().context("non-UTF-8 path")?)];
    shell::step("building the integration tests and their C fixtures");
    shell::cargo_test_build(&integration, &[])?;
    shell::step("integration tests (real probes, real fixture programs; one at a time)");
    shell::cargo_test(&integration, &["--test-threads=1"], &binary_env, tally)
}
