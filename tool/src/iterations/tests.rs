//! Iteration detection on synthetic event streams.

use super::*;
use crate::event::What;
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls::{CLOSE, OPENAT};

fn open_call(path: &str, fd: i64) -> crate::event::Syscall {
    call(OPENAT, fd, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path(path)
}

fn close_call(fd: u64) -> crate::event::Syscall {
    call(CLOSE, 0, [fd, 0, 0, 0, 0, 0])
}

fn looped(iterations: usize) -> Stream {
    let mut s = Stream::new(1);
    s.open("/usr/lib/libc.so.6", 3).close(3);
    for _ in 0..iterations {
        s.marker();
        s.open("/etc/config", 3).close(3); // twice per iteration, unevenly
        s.open("/tmp/work/a.txt", 3).close(3);
        s.open("/tmp/work/b.txt", 3).close(3);
        s.now += 50_000;
        s.open("/etc/config", 3).close(3);
    }
    s
}

#[test]
fn symbol_uses_markers() {
    let ledger = looped(20).ledger();
    let iterations = detect(&ledger, &IterationRequest::Symbol("tick".into()));
    assert_eq!(
        (iterations.source, iterations.count(), iterations.confidence),
        (IterationSource::Symbol, 20, 1.0)
    );
    assert_eq!(iterations.index_at(iterations.boundaries[3] + 1), 3);
    assert_eq!(iterations.index_at(0), -1);
}

#[test]
fn path_matches_resolved_substrings() {
    let ledger = looped(20).ledger();
    let iterations = detect(&ledger, &IterationRequest::Path("work/b".into()));
    assert_eq!(
        (iterations.source, iterations.count()),
        (IterationSource::Path, 20)
    );
}

#[test]
fn auto_picks_the_first_evenly_recurring_path() {
    let ledger = looped(50).ledger();
    let iterations = detect(&ledger, &IterationRequest::Auto);
    assert_eq!(iterations.source, IterationSource::Auto);
    assert_eq!(iterations.auto_path.as_deref(), Some("/tmp/work/a.txt"));
    assert_eq!(iterations.count(), 50);
    assert!(iterations.confidence > 0.8, "{}", iterations.confidence);
    assert!(iterations.detail.contains("a.txt"));
}

#[test]
fn auto_prefers_a_long_loop_behind_a_set_up_of_many_short_processes() {
    // 40 short-lived helper processes (a shell shim, say) each open one config file,
    // evenly over a long set-up; then one process runs the real loop, briefly.
    let mut s = Stream::new(1);
    for helper in 0..40u32 {
        s.push(
            100 + helper,
            100 + helper,
            What::Syscall(open_call("/etc/shim.conf", 3)),
            None,
        );
        s.push(100 + helper, 100 + helper, What::Exit, None);
        s.now += 1_000_000;
    }
    for _ in 0..1000 {
        s.push(2, 2, What::Syscall(open_call("/tmp/work/tick", 3)), None);
        s.push(2, 2, What::Syscall(close_call(3)), None);
    }
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(
        iterations.auto_path.as_deref(),
        Some("/tmp/work/tick"),
        "{}",
        iterations.detail
    );
    assert_eq!(iterations.count(), 1000);
}

#[test]
fn missing_marker_falls_back_to_time_windows() {
    let mut s = Stream::new(1);
    for i in 0..30 {
        s.now += 100_000_000; // a run of 3 s: long enough for every window
        s.open("/tmp/unique", 3 + i);
    }
    s.exit();
    let ledger = s.ledger();
    let iterations = detect(&ledger, &IterationRequest::Symbol("never".into()));
    assert_eq!(
        (iterations.source, iterations.count()),
        (IterationSource::Time, TIME_WINDOWS)
    );
    assert!(iterations.detail.contains("fired 0 time"));
    // The windows end at the last acquisition, before the exit.
    assert!(iterations.last().unwrap() < s.events.last().unwrap().time_ns);
    assert_eq!(iterations.confidence, 0.0);
}

#[test]
fn a_start_up_burst_is_not_cut_into_meaningless_windows() {
    // A program that maps its libraries in 1 ms and exits: 10 µs windows would make
    // that burst look like steady growth.
    let mut s = Stream::new(1);
    for i in 0..200u64 {
        s.mmap_anon(0x7000_0000 + i * 0x10_0000, 65536);
    }
    s.exit();
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(iterations.source, IterationSource::Time);
    assert!(iterations.count() < 10, "{}", iterations.detail);
}

#[test]
fn auto_without_recurring_paths_uses_time() {
    let mut s = Stream::new(1);
    for i in 0..5 {
        s.open(&format!("/tmp/{i}"), 3).close(3);
    }
    let iterations = detect(&s.ledger(), &IterationRequest::Auto);
    assert_eq!(iterations.source, IterationSource::Time);
    assert_eq!(
        detect(&crate::ledger::Ledger::new(), &IterationRequest::Auto).count(),
        0
    );
}
