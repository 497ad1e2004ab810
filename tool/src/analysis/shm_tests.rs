//! SysV segments attached per iteration and kept are address space the mapping class does
//! not count: its verdict must be inconclusive with the reason, never "no leak".

use super::trend::Verdict;
use super::*;
use crate::iterations::{self, IterationRequest};
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls::{SHMAT, SHMDT};

const PID: u32 = 7;

/// 200 marked iterations, each attaching a segment; detached in the iteration when
/// `detach`, else at teardown (after the last iteration) or never.
fn attaching(detach: bool, teardown: bool) -> Analysis {
    let mut s = Stream::new(PID);
    let address = |i: u64| 0x7f00_0000_0000 + i * 0x10000;
    for i in 0..200u64 {
        s.marker();
        s.sys(call(SHMAT, address(i) as i64, [i, 0, 0, 0, 0, 0]));
        if detach {
            s.sys(call(SHMDT, 0, [address(i), 0, 0, 0, 0, 0]));
        }
    }
    if teardown {
        for i in 0..200u64 {
            s.sys(call(SHMDT, 0, [address(i), 0, 0, 0, 0, 0]));
        }
    }
    s.exit();
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    analyze(&ledger, &iterations, &RunFacts::default())
}

#[test]
fn segments_kept_across_iterations_make_the_mapping_verdict_inconclusive() {
    for teardown in [false, true] {
        let analysis = attaching(false, teardown);
        assert_eq!(
            analysis.mmap.verdict,
            Verdict::Inconclusive,
            "teardown {teardown}"
        );
        let why = &analysis.mmap.count.why;
        assert!(
            why.contains("SysV shared memory segments attached"),
            "{why}"
        );
        assert!(why.contains("/proc/PID/maps"), "{why}");
        // Only the mappings are in doubt.
        assert_eq!(analysis.fd.verdict, Verdict::NoLeak);
    }
}

#[test]
fn segments_detached_within_their_iteration_leave_the_verdict_alone() {
    let analysis = attaching(true, false);
    assert_eq!(
        analysis.mmap.verdict,
        Verdict::NoLeak,
        "{}",
        analysis.mmap.count.why
    );
}
