//! An io_uring opens and closes fds inside the kernel, a fanotify group installs them on
//! read: the fd verdict must be inconclusive with the reason, never "no leak" from a table
//! that misses them (a program opening a file per iteration through its ring read
//! "no fd leak").

use super::trend::Verdict;
use super::*;
use crate::iterations::{self, IterationRequest};
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls::{FANOTIFY_INIT, IO_URING_SETUP, OPENAT};

const PID: u32 = 7;
const FAN_REPORT_FID: u64 = 0x200;

/// `setup` once, then 200 marked iterations that open and close one fd by syscall.
fn clean_loop_after(setup: Option<crate::event::Syscall>) -> Analysis {
    let mut s = Stream::new(PID);
    if let Some(setup) = setup {
        s.sys(setup);
    }
    for _ in 0..200 {
        s.marker();
        s.sys(call(OPENAT, 5, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/dev/null"));
        s.sys(call(3, 0, [5, 0, 0, 0, 0, 0]));
    }
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    analyze(&ledger, &iterations, &RunFacts::default())
}

#[test]
fn an_io_uring_makes_the_fd_verdict_inconclusive_and_says_why() {
    let analysis = clean_loop_after(Some(call(IO_URING_SETUP, 4, [8, 0, 0, 0, 0, 0])));
    assert_eq!(analysis.fd.verdict, Verdict::Inconclusive);
    let why = &analysis.fd.count.why;
    assert!(why.contains("1 io_uring (io_uring_setup)"), "{why}");
    assert!(why.contains("/proc/PID/fd"), "{why}");
    // Only the fd table is in doubt.
    assert_eq!(analysis.mmap.verdict, Verdict::NoLeak);
    assert_eq!(analysis.watches.verdict, Verdict::NoLeak);
}

#[test]
fn a_fanotify_group_reporting_fds_makes_the_fd_verdict_inconclusive() {
    let analysis = clean_loop_after(Some(call(FANOTIFY_INIT, 4, [0, 0, 0, 0, 0, 0])));
    assert_eq!(analysis.fd.verdict, Verdict::Inconclusive);
    assert!(
        analysis.fd.count.why.contains("1 fanotify group"),
        "{}",
        analysis.fd.count.why
    );
}

#[test]
fn without_them_or_when_they_failed_the_fd_verdict_stands() {
    let fid_group = call(FANOTIFY_INIT, 4, [FAN_REPORT_FID, 0, 0, 0, 0, 0]);
    let failed_ring = call(IO_URING_SETUP, -1, [8, 0, 0, 0, 0, 0]);
    for setup in [None, Some(fid_group), Some(failed_ring)] {
        let analysis = clean_loop_after(setup.clone());
        assert_eq!(analysis.fd.verdict, Verdict::NoLeak, "{setup:?}");
    }
}
