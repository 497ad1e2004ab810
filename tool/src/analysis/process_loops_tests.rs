use super::*;
use crate::event::What;
use crate::ledger::test_support::Stream;

/// The doubt, with every marker a boundary.
fn judged(s: &Stream) -> Option<String> {
    let ledger = s.ledger();
    let runs = ledger.marker_runs();
    let mut boundaries: Vec<u64> = s
        .events
        .iter()
        .filter(|e| matches!(e.what, What::Marker { .. }))
        .map(|e| e.time_ns)
        .collect();
    boundaries.sort_unstable();
    doubt(&ledger, &runs, &boundaries)
}

fn marks(s: &mut Stream, tgid: u32, n: usize) {
    for _ in 0..n {
        s.push(tgid, tgid, What::Marker { arg: 0, heap: None }, None);
    }
}

#[test]
fn runs_in_processes_that_end_one_after_another_are_doubted() {
    let mut s = Stream::new(10);
    for tgid in [10, 11, 12] {
        marks(&mut s, tgid, 3);
        s.push(tgid, tgid, What::Exit, None);
    }
    let doubt = judged(&s).expect("doubted");
    assert!(
        doubt.contains(
            "2 of the 3 runs of the marked loop ended while it went on (2 by their process's exit)"
        ),
        "{doubt}"
    );
}

/// A program that runs itself again (exec) every few iterations, under one pid.
#[test]
fn a_loop_started_again_by_exec_is_doubted() {
    let mut s = Stream::new(10);
    for image in 0..4 {
        if image > 0 {
            s.push(10, 10, What::Exec(None), None);
        }
        marks(&mut s, 10, 3);
    }
    let doubt = judged(&s).expect("doubted");
    assert!(
        doubt.contains("3 of the 4 runs of the marked loop ended while it went on (3 by an exec)"),
        "{doubt}"
    );
}

/// Workers side by side, ending one by one at the tail: under a tenth of the boundaries
/// come after the first end.
#[test]
fn workers_side_by_side_with_staggered_exits_are_judged() {
    let mut s = Stream::new(10);
    for _ in 0..20 {
        for tgid in [10, 11, 12] {
            marks(&mut s, tgid, 1);
        }
    }
    s.push(11, 11, What::Exit, None);
    marks(&mut s, 10, 2);
    s.push(10, 10, What::Exit, None);
    marks(&mut s, 12, 1);
    s.push(12, 12, What::Exit, None);
    assert_eq!(judged(&s), None);
}

/// A pool that replaces a worker half-way: the new one's iterations follow the old one's
/// end, a restart.
#[test]
fn a_worker_replaced_half_way_is_a_restart() {
    let mut s = Stream::new(10);
    for _ in 0..20 {
        marks(&mut s, 10, 1);
        marks(&mut s, 11, 1);
    }
    s.push(11, 11, What::Exit, None);
    for _ in 0..20 {
        marks(&mut s, 10, 1);
        marks(&mut s, 12, 1);
    }
    let doubt = judged(&s).expect("doubted");
    assert!(
        doubt.contains(
            "1 of the 3 runs of the marked loop ended while it went on (1 by their process's exit)"
        ),
        "{doubt}"
    );
}

/// A helper that calls the marked function twice, among a long loop, and ends.
#[test]
fn a_helper_that_marks_a_few_times_is_no_run() {
    let mut s = Stream::new(10);
    marks(&mut s, 10, 20);
    marks(&mut s, 11, 2);
    s.push(11, 11, What::Exit, None);
    marks(&mut s, 10, 30);
    assert_eq!(judged(&s), None);
}

/// A wrapper that marks once and execs the real program; a wrapper's exec before the
/// first marker likewise.
#[test]
fn a_wrapper_that_execs_the_program_is_no_restart() {
    let mut s = Stream::new(10);
    marks(&mut s, 10, 1);
    s.push(10, 10, What::Exec(None), None);
    marks(&mut s, 10, 50);
    assert_eq!(judged(&s), None);
    let mut s = Stream::new(10);
    s.push(10, 10, What::Exec(None), None);
    marks(&mut s, 10, 50);
    assert_eq!(judged(&s), None);
}

/// A process that marks, forks and exits while its child goes on (daemonizing after a few
/// iterations): the child inherited what the parent held.
#[test]
fn a_fork_that_hands_the_loop_to_its_child_is_no_restart() {
    let mut s = Stream::new(10);
    marks(&mut s, 10, 5);
    s.push(10, 10, What::Fork { child: 11 }, None);
    s.push(10, 10, What::Exit, None);
    marks(&mut s, 11, 50);
    assert_eq!(judged(&s), None);
}

/// Loops that end after the run's last marker: their ends are the run's own teardown.
#[test]
fn runs_that_end_after_the_last_marker_are_judged() {
    let mut s = Stream::new(10);
    for _ in 0..3 {
        marks(&mut s, 10, 1);
        marks(&mut s, 11, 1);
    }
    s.push(10, 10, What::Exit, None);
    s.push(11, 11, What::Exit, None);
    assert_eq!(judged(&s), None);
}
