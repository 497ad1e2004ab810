//! The top-level entry point: a finished ledger plus what is known about the run, in; a
//! report out.

use std::collections::{BTreeMap, BTreeSet};

use crate::analysis::{self, trend};
use crate::iterations::{self, IterationRequest, Iterations};
use crate::ledger::Ledger;
use crate::report::Report;
use crate::report::held::{self, HeldAtExit};
use crate::report::model::{Classes, IterationsReport, SCHEMA, Target};

/// How the traced program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetExit {
    Code(i32),
    Signal(i32),
    /// Tracing stopped first (attach with a duration, or the user interrupted).
    StillRunning,
    /// Attach mode: the process exited, but only its parent can learn the status.
    ExitedUnknownStatus,
}

/// What the CLI knows about the run besides the events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunInfo {
    pub(crate) command: Vec<String>,
    pub(crate) pid: u32,
    pub(crate) exit: TargetExit,
    /// Events the kernel could not deliver (ring buffer full).
    pub(crate) lost_events: u64,
    /// Of those, iteration-marker events (they make the iteration count itself short).
    pub(crate) lost_markers: u64,
    /// The target's RLIMIT_NOFILE soft limit, when it could be read.
    pub(crate) fd_limit: Option<u64>,
    pub(crate) iteration_request: IterationRequest,
}

/// What the session saw of the processes it followed (the target and all it forked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FollowedProcesses {
    /// Command lines by pid, as far as they are known.
    pub(crate) commands: BTreeMap<u32, Vec<String>>,
    /// Still running when tracing stopped; `None`: not known (the ledger decides).
    pub(crate) running_at_end: Option<BTreeSet<u32>>,
}

/// What a report holds beyond the verdicts, built only when an output asks for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extras {
    /// The run over time (`--trace`).
    pub(crate) timeline: bool,
    /// Each class's chart (`--html`, `--svg`).
    pub(crate) charts: bool,
}

#[cfg(test)]
pub(crate) fn diagnose(ledger: Ledger, info: &RunInfo) -> Report {
    let extras = Extras {
        timeline: false,
        charts: true,
    };
    diagnose_followed(ledger, info, &FollowedProcesses::default(), extras)
}

pub(crate) fn diagnose_followed(
    ledger: Ledger,
    info: &RunInfo,
    followed: &FollowedProcesses,
    extras: Extras,
) -> Report {
    let mut iterations = iterations::detect(&ledger, &info.iteration_request);
    account_lost_markers(&mut iterations, info.lost_markers);
    let facts = analysis::RunFacts {
        lost_events: info.lost_events,
        file_sizes: ledger.file_sizes().clone(),
    };
    let analysis = analysis::analyze(&ledger, &iterations, &facts);
    let mut classes = Classes::new(&analysis, ledger.sites());
    // Too few iterations for a rate (a one-shot program): no per-iteration numbers, but
    // what the target held at exit, as valgrind --track-fds reports it.
    let one_shot = iterations.count() < trend::MIN_ITERATIONS;
    let target = ledger.target().unwrap_or(info.pid);
    let held_at_exit = if one_shot {
        classes.one_shot(&held::one_shot_reason(
            iterations.count(),
            iterations.source,
            iterations.unconvincing.as_deref(),
        ));
        ledger
            .holdings(target)
            .map(|held| HeldAtExit::new(&held, ledger.sites()))
    } else {
        None
    };
    let outlived_target = held::outlived(
        &ledger.outlived_target(),
        ledger.sites(),
        &followed.commands,
        followed.running_at_end.as_ref(),
    );
    let charts = if extras.charts {
        crate::report::class_charts::class_charts(&analysis, &classes, &iterations)
    } else {
        Vec::new()
    };
    let (exit_code, exit_signal) = match info.exit {
        TargetExit::Code(code) => (Some(code), None),
        TargetExit::Signal(signal) => (None, Some(signal)),
        TargetExit::StillRunning | TargetExit::ExitedUnknownStatus => (None, None),
    };
    Report {
        schema: SCHEMA,
        target: Target {
            command: info.command.clone(),
            pid: info.pid,
            exit_code,
            exit_signal,
            still_running: info.exit == TargetExit::StillRunning,
            fd_limit: info.fd_limit,
        },
        iterations: IterationsReport::new(&iterations),
        lost_events: info.lost_events,
        lost_by_reason: Default::default(),
        stacks_dropped: Default::default(),
        counts: ledger
            .counts()
            .iter()
            .map(|(&name, &n)| (name.to_string(), n))
            .collect(),
        classes,
        unknown_releases: ledger.unknown_releases(),
        held_at_exit,
        outlived_target,
        ended: None,
        projection: None,
        suspects: None,
        self_stats: None,
        timeline: if extras.timeline {
            crate::report::timeline::Timeline::new(&ledger, &iterations)
        } else {
            Default::default()
        },
        charts,
        rounds: None,
    }
}

/// Marker events the kernel could not deliver are iterations the boundaries miss: the
/// confidence in the count falls with the share that was lost.
fn account_lost_markers(iterations: &mut Iterations, lost_markers: u64) {
    if lost_markers == 0 {
        return;
    }
    let seen = iterations.count() as f64;
    iterations.confidence *= seen / (seen + lost_markers as f64);
    iterations.detail = format!(
        "{}; {lost_markers} marker events were lost",
        iterations.detail
    );
}
