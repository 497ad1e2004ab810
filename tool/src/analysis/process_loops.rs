//! A marked loop that starts again: in processes one after another (a shell loop that runs
//! the program again and again), or in a program that execs itself between iterations.
//! Each exit or exec releases what the ended run held, so the series falls back at every
//! restart, and a leak inside each run is a sawtooth there, judged "no leak" or at a rate
//! cut by how often the loop restarts. The classes a process holds (fds, watches, mappings,
//! brk, RSS, heap) are inconclusive with this reason; files on disk outlive their process
//! and are judged as usual.
//!
//! A restart counts when at least a tenth of the boundaries come after it. Not a restart: a
//! run that ends in the series' last tenth (workers side by side ending at the tail: the
//! trend analysis sees that drop itself), a helper or wrapper that marks a few times (under
//! a tenth of the longest run), and a fork that hands the loop to its child (which inherits
//! what the parent held).

use crate::ledger::Ledger;
use crate::ledger::loop_runs::LoopRun;

/// How a run of the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Exit,
    Exec,
}

/// Why the verdicts of the classes a process holds cannot be trusted, if so: a run of the
/// marked loop ended (its process exited, or exec'd) while another went on, with at least
/// a tenth of the `boundaries` still to come. `runs`: the runs that made the boundaries
/// ([`crate::iterations::Iterations::loops`]).
pub(crate) fn doubt(ledger: &Ledger, runs: &[LoopRun], boundaries: &[u64]) -> Option<String> {
    let longest = runs.iter().map(|run| run.count).max()?;
    let floor = (longest / 10).max(2);
    let runs: Vec<&LoopRun> = runs.iter().filter(|run| run.count >= floor).collect();
    let ended: Vec<End> = runs
        .iter()
        .filter_map(|&earlier| {
            let (at, how) = end_of(ledger, earlier)?;
            let after = boundaries.len() - boundaries.partition_point(|&b| b < at);
            let goes_on = runs.iter().any(|&later| {
                later != earlier && later.last_ns > at && !handed_over(ledger, earlier, later)
            });
            (goes_on && after >= 2 && after * 10 >= boundaries.len()).then_some(how)
        })
        .collect();
    if ended.is_empty() {
        return None;
    }
    let by = |how: End, what: &str| {
        let n = ended.iter().filter(|&&end| end == how).count();
        (n > 0).then(|| format!("{n} by {what}"))
    };
    let endings: Vec<String> = [
        by(End::Exit, "their process's exit"),
        by(End::Exec, "an exec"),
    ]
    .into_iter()
    .flatten()
    .collect();
    Some(format!(
        "{} of the {} runs of the marked loop ended while it went on ({}), each releasing what it held: a leak inside each run starts again in the next one and cannot be told from the series across them; run one process with more iterations, or mark a loop that runs in one process",
        ended.len(),
        runs.len(),
        endings.join(", ")
    ))
}

/// When and how `run` ended: the exec that replaced its program, or its process's exit
/// (one after its last marker: a pid reused by a later process has its own exit).
fn end_of(ledger: &Ledger, run: &LoopRun) -> Option<(u64, End)> {
    if let Some(&exec) = ledger.exec_times(run.tgid).get(run.image as usize) {
        return Some((exec, End::Exec));
    }
    let exit = ledger.exit_time(run.tgid)?;
    (exit >= run.last_ns).then_some((exit, End::Exit))
}

/// `later` continues `earlier` in a child forked from its process, in the same program: the
/// child inherited what `earlier` held, so nothing was released.
fn handed_over(ledger: &Ledger, earlier: &LoopRun, later: &LoopRun) -> bool {
    later.tgid != earlier.tgid
        && later.image == 0
        && ledger.parent_of(later.tgid) == Some(earlier.tgid)
}

#[cfg(test)]
#[path = "process_loops_tests.rs"]
mod tests;
