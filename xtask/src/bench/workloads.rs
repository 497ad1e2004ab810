//! The bench's workloads, each able to run untraced at any count and traced by leakscope at
//! its full count. Every one times its own loop and prints `loop_ns=N` on stderr.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Result;

use crate::shell::{self, step};

/// The extract worker prints its loop time when this is set (leakscope's
/// `extract::worker::LOOP_NS_ENV`).
const LOOP_NS_ENV: &str = "LEAKSCOPE_LOOP_NS";

/// The storm calls its marker function before every this many pairs, untraced or not, so
/// leakscope can be given `--iteration-symbol` (and so keep bounded memory).
const STORM_PAIRS_PER_MARK: &str = "1000";
const STORM_MARKER: &str = "iteration_marker";

pub(crate) struct Workload {
    /// The table's title.
    pub(crate) title: String,
    /// The bar's name: `storm` or `extract`.
    pub(crate) name: &'static str,
    pub(crate) iterations: u64,
    /// Issue 11's overhead bar for this workload.
    pub(crate) bar: f64,
    kind: Kind,
}

enum Kind {
    /// tests/fixtures/open_close.c: N x (openat + close) of one file, raw syscalls.
    Storm { fixture: PathBuf, file: PathBuf },
    /// `leakscope extract`'s worker: rounds x per_round extractions of the built-in archive.
    Extract {
        leakscope: PathBuf,
        rounds: u64,
        per_round: u64,
    },
}

impl Workload {
    /// Compiles the storm fixture into `workdir` (as the tests do, -O2 here) and makes its file.
    pub(crate) fn storm(workdir: &Path, iterations: u64) -> Result<Workload> {
        let fixture = workdir.join("open_close");
        step("compiling the open+close loop fixture");
        shell::status(
            Command::new("cc")
                .args(["-O2", "-o"])
                .arg(&fixture)
                .arg(shell::workspace_root().join("tests/fixtures/open_close.c")),
        )?;
        let file = workdir.join("bench.txt");
        std::fs::write(&file, b"x")?;
        Ok(Workload {
            title: format!(
                "open+close storm: {iterations} x (openat + close) of one file, a marker call every {STORM_PAIRS_PER_MARK} (tests/fixtures/open_close.c)"
            ),
            name: "storm",
            iterations,
            bar: 1.15,
            kind: Kind::Storm { fixture, file },
        })
    }

    pub(crate) fn extract(leakscope: &Path, rounds: u64, per_round: u64) -> Workload {
        Workload {
            title: format!(
                "extract loop: {rounds} rounds x {per_round} extractions of the built-in archive (leakscope extract)"
            ),
            name: "extract",
            iterations: rounds * per_round,
            bar: 1.05,
            kind: Kind::Extract {
                leakscope: leakscope.to_owned(),
                rounds,
                per_round,
            },
        }
    }

    /// The workload without any tracer, doing `n` iterations (the full count, or a peer's
    /// reduced one: then the extract loop runs them as one round).
    pub(crate) fn untraced(&self, n: u64) -> Command {
        match &self.kind {
            Kind::Storm { fixture, file } => {
                let mut command = Command::new(fixture);
                command
                    .arg(n.to_string())
                    .arg(file)
                    .arg(STORM_PAIRS_PER_MARK);
                command
            }
            Kind::Extract { leakscope, .. } => {
                let (rounds, per_round) = self.rounds_for(n);
                let mut command = Command::new(leakscope);
                command
                    .args(["extract", "--untraced", "--rounds", &rounds.to_string()])
                    .args(["--iterations", &per_round.to_string()])
                    .env(LOOP_NS_ENV, "1");
                command
            }
        }
    }

    /// leakscope tracing the full workload, its JSON report written to `json`.
    pub(crate) fn traced(&self, leakscope: &Path, json: &Path) -> Command {
        self.traced_at(leakscope, json, self.iterations)
    }

    /// leakscope tracing the workload at `n` iterations (the storm; the extract loop
    /// always runs its full count).
    pub(crate) fn traced_at(&self, leakscope: &Path, json: &Path, n: u64) -> Command {
        match &self.kind {
            Kind::Storm { fixture, file } => {
                let mut command = Command::new(leakscope);
                command
                    .args(["run", "--iteration-symbol", STORM_MARKER, "--json"])
                    .arg(json)
                    .arg("--")
                    .arg(fixture)
                    .arg(n.to_string())
                    .arg(file)
                    .arg(STORM_PAIRS_PER_MARK);
                command
            }
            Kind::Extract {
                rounds, per_round, ..
            } => {
                let mut command = Command::new(leakscope);
                command
                    .args(["extract", "--rounds", &rounds.to_string()])
                    .args(["--iterations", &per_round.to_string(), "--json"])
                    .arg(json)
                    .env(LOOP_NS_ENV, "1");
                command
            }
        }
    }

    fn rounds_for(&self, n: u64) -> (u64, u64) {
        match self.kind {
            Kind::Extract {
                rounds, per_round, ..
            } if n == rounds * per_round => (rounds, per_round),
            _ => (1, n.max(1)),
        }
    }
}
