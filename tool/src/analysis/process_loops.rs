//! Iterations that ran in several processes one after another (a shell loop that starts
//! the marked program again and again): each process releases what it held at its exit,
//! so the series across them falls back with every new process. A leak inside each one is
//! a sawtooth there, judged "no leak" or at a rate cut by how often a process ends. The
//! classes a process holds (fds, watches, mappings, brk, RSS, heap) are inconclusive with
//! this reason; files on disk outlive their process and are judged as usual.

use std::collections::HashMap;

use crate::ledger::{Ledger, LoopSpan};

/// Why the verdicts of the classes a process holds cannot be trusted, if so: at least two
/// processes ran the marked loop (two markers or more each), and one of them ended before
/// the run's last marker.
/// `loops`: the processes that made the boundaries ([`crate::iterations::Iterations::loops`]).
pub(crate) fn doubt(ledger: &Ledger, loops: &[(u32, LoopSpan)]) -> Option<String> {
    let loops: Vec<_> = loops.iter().filter(|(_, span)| span.count >= 2).collect();
    if loops.len() < 2 {
        return None;
    }
    let last = loops.iter().map(|(_, span)| span.last_ns).max()?;
    let exits: HashMap<u32, u64> = ledger.exits().collect();
    let ended = loops
        .iter()
        .filter(|(tgid, _)| exits.get(tgid).is_some_and(|&exit| exit < last))
        .count();
    (ended > 0).then(|| {
        format!(
            "the marked loop ran in {} processes and {ended} of them ended before the run's last iteration, releasing what they held: a leak inside each process starts again in the next one and cannot be told from the series across them; run one process with more iterations, or mark a loop that runs in one process",
            loops.len()
        )
    })
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
