//! Iterations that ran in several processes one after another (a shell loop that starts
//! the marked program again and again), or in one process that runs its program again
//! (exec) between iterations: each exit or exec releases what the old program held, so
//! the series falls back with every restart. A leak inside each run is a sawtooth there,
//! judged "no leak" or at a rate cut by how often the loop restarts. The classes a process
//! holds (fds, watches, mappings, brk, RSS, heap) are inconclusive with this reason; files
//! on disk outlive their process and are judged as usual.

use std::collections::HashMap;

use crate::ledger::{Ledger, LoopSpan};

/// Why the verdicts of the classes a process holds cannot be trusted, if so: at least two
/// processes ran the marked loop (two markers or more each) and one of them ended before
/// the run's last marker, or a process running it exec'd between two of its markers.
/// `loops`: the processes that made the boundaries ([`crate::iterations::Iterations::loops`]).
pub(crate) fn doubt(ledger: &Ledger, loops: &[(u32, LoopSpan)]) -> Option<String> {
    let loops: Vec<_> = loops.iter().filter(|(_, span)| span.count >= 2).collect();
    let last = loops.iter().map(|(_, span)| span.last_ns).max()?;
    let exits: HashMap<u32, u64> = ledger.exits().collect();
    let ended = loops
        .iter()
        .filter(|(tgid, _)| exits.get(tgid).is_some_and(|&exit| exit < last))
        .count();
    let execs: usize = loops
        .iter()
        .map(|(tgid, span)| {
            let inside = |t: &&u64| span.first_ns < **t && **t < span.last_ns;
            ledger.exec_times(*tgid).iter().filter(inside).count()
        })
        .sum();
    let mut restarts = Vec::new();
    if loops.len() >= 2 && ended > 0 {
        restarts.push(format!(
            "ran in {} processes and {ended} of them ended before the run's last iteration",
            loops.len()
        ));
    }
    if execs > 0 {
        restarts.push(format!(
            "was started again by {} between iterations",
            plural(execs, "exec")
        ));
    }
    (!restarts.is_empty()).then(|| {
        format!(
            "the marked loop {}, releasing what it held: a leak inside each run starts again in the next one and cannot be told from the series across them; run one process with more iterations, or mark a loop that runs in one process",
            restarts.join(" and ")
        )
    })
}

fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::What;
    use crate::ledger::test_support::Stream;

    fn judged(ledger: &Ledger) -> Option<String> {
        doubt(ledger, &ledger.marker_spans())
    }

    fn marker() -> What {
        What::Marker { arg: 0, heap: None }
    }

    #[test]
    fn loops_in_processes_that_end_one_after_another_are_doubted() {
        let mut s = Stream::new(10);
        for tgid in [10, 11, 12] {
            for _ in 0..3 {
                s.push(tgid, tgid, marker(), None);
            }
            s.push(tgid, tgid, What::Exit, None);
        }
        let doubt = judged(&s.ledger()).expect("doubted");
        assert!(
            doubt.contains("ran in 3 processes and 2 of them ended"),
            "{doubt}"
        );
    }

    /// A program that runs itself again (exec) every few iterations, under one pid.
    #[test]
    fn a_loop_started_again_by_exec_is_doubted() {
        let mut s = Stream::new(10);
        for _ in 0..3 {
            for _ in 0..3 {
                s.push(10, 10, marker(), None);
            }
            s.push(10, 10, What::Exec(None), None);
        }
        s.push(10, 10, marker(), None);
        let doubt = judged(&s.ledger()).expect("doubted");
        assert!(doubt.contains("started again by 3 execs"), "{doubt}");
    }

    /// An exec before the loop (a wrapper that execs the real program) is no restart.
    #[test]
    fn an_exec_before_the_first_marker_is_judged() {
        let mut s = Stream::new(10);
        s.push(10, 10, What::Exec(None), None);
        for _ in 0..5 {
            s.push(10, 10, marker(), None);
        }
        assert_eq!(judged(&s.ledger()), None);
    }

    #[test]
    fn one_looping_process_among_helpers_is_judged() {
        let mut s = Stream::new(10);
        s.push(10, 10, marker(), None);
        // A helper that marks once (one call of the marked function) and ends.
        s.push(11, 11, marker(), None);
        s.push(11, 11, What::Exit, None);
        for _ in 0..3 {
            s.push(10, 10, marker(), None);
        }
        assert_eq!(judged(&s.ledger()), None);
    }

    #[test]
    fn loops_that_end_after_the_last_marker_are_judged() {
        let mut s = Stream::new(10);
        for _ in 0..3 {
            s.push(10, 10, marker(), None);
            s.push(11, 11, marker(), None);
        }
        s.push(10, 10, What::Exit, None);
        s.push(11, 11, What::Exit, None);
        assert_eq!(judged(&s.ledger()), None);
    }
}
