//! A child cloned with CLONE_FILES (not a thread) shares its parent's fd table, which the
//! ledger, keeping a table per process, cannot follow: the fd verdict must say so rather
//! than count the child's open as closed at its exit. Likewise a CLONE_VM child's mappings.

use super::trend::Verdict;
use super::*;
use crate::event::What;
use crate::iterations::{self, IterationRequest};
use crate::ledger::test_support::{Stream, call};
use leakscope_common::fd_arrival::{CLONE_FILES, CLONE_PIDFD, CLONE_THREAD, CLONE_VFORK, CLONE_VM};
use leakscope_common::syscalls::{CLONE, CLONE3, MMAP, OPENAT};

const PID: u32 = 7;
const SIGCHLD: u64 = 17;

/// `n` marked iterations; in each the target clones a child with `flags` (by clone, or by
/// clone3 with its flags in their slot) that opens an fd and exits without closing it.
fn child_opens_and_exits(n: usize, nr: u32, flags: u64) -> Analysis {
    let mut s = Stream::new(PID);
    for i in 0..n {
        s.marker();
        let child = 1000 + i as u32;
        s.push(PID, PID, What::Fork { child }, None);
        s.push(
            child,
            child,
            What::Syscall(
                call(OPENAT, 3 + i as i64, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/dev/null"),
            ),
            None,
        );
        let args = match nr {
            CLONE3 => [0x7ff0_0000, 88, flags, 0, 0, 0],
            _ => [flags, 0, 0, 0, 0, 0],
        };
        s.sys(call(nr, child as i64, args));
        s.push(child, child, What::Exit, None);
    }
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    analyze(&ledger, &iterations, &RunFacts::default())
}

#[test]
fn a_shared_fd_table_makes_the_fd_verdict_inconclusive_and_says_why() {
    for nr in [CLONE, CLONE3] {
        let analysis = child_opens_and_exits(200, nr, CLONE_FILES | SIGCHLD);
        assert_eq!(analysis.fd.verdict, Verdict::Inconclusive, "clone {nr}");
        let why = &analysis.fd.count.why;
        assert!(why.contains("200 children shared the fd table"), "{why}");
        assert!(why.contains("CLONE_FILES"), "{why}");
        assert!(why.contains("/proc/PID/fd"), "the next step: {why}");
        assert_eq!(analysis.watches.verdict, Verdict::Inconclusive);
        // Mappings are not the fd table's business.
        assert_eq!(analysis.mmap.verdict, Verdict::NoLeak);
    }
}

#[test]
fn a_plain_fork_or_a_pidfd_clone_keeps_its_fd_verdict() {
    for flags in [SIGCHLD, CLONE_PIDFD | SIGCHLD] {
        let analysis = child_opens_and_exits(200, CLONE, flags);
        assert_eq!(analysis.fd.verdict, Verdict::NoLeak, "flags {flags:#x}");
    }
    // clone3's unreadable flags (all bits set) are a thread's, not a shared table.
    let analysis = child_opens_and_exits(200, CLONE3, u64::MAX);
    assert!(
        !analysis.fd.count.why.contains("shared"),
        "{}",
        analysis.fd.count.why
    );
    let thread = CLONE_FILES | CLONE_THREAD | SIGCHLD;
    let analysis = child_opens_and_exits(200, CLONE, thread);
    assert_eq!(analysis.fd.verdict, Verdict::NoLeak);
}

/// `n` marked iterations; in each the target clones a child with `flags` that maps 64 KiB
/// and exits without unmapping it.
fn child_maps_and_exits(n: usize, flags: u64) -> Analysis {
    let mut s = Stream::new(PID);
    for i in 0..n {
        s.marker();
        let child = 1000 + i as u32;
        s.push(PID, PID, What::Fork { child }, None);
        let addr = 0x7f00_0000_0000 + (i as u64) * 0x10000;
        let map = call(MMAP, addr as i64, [0, 0x10000, 3, 0x22, u64::MAX, 0]);
        s.push(child, child, What::Syscall(map), None);
        s.sys(call(CLONE, child as i64, [flags, 0, 0, 0, 0, 0]));
        s.push(child, child, What::Exit, None);
    }
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    analyze(&ledger, &iterations, &RunFacts::default())
}

#[test]
fn a_shared_address_space_makes_the_memory_verdicts_inconclusive_and_says_why() {
    let analysis = child_maps_and_exits(200, CLONE_VM | SIGCHLD);
    assert_eq!(analysis.mmap.verdict, Verdict::Inconclusive);
    let why = &analysis.mmap.count.why;
    assert!(
        why.contains("200 children shared the address space"),
        "{why}"
    );
    assert!(why.contains("/proc/PID/maps"), "the next step: {why}");
    assert_eq!(analysis.brk.bytes.verdict, Verdict::Inconclusive);
    assert_ne!(analysis.rss.unexplained.verdict, Verdict::Leak);
    assert_ne!(analysis.rss.bytes.verdict, Verdict::Leak);
    // The fd table is not shared.
    assert_eq!(analysis.fd.verdict, Verdict::NoLeak);
}

#[test]
fn a_vfork_child_does_not_cast_doubt_on_the_mappings() {
    // posix_spawn: the parent sleeps until the child execs.
    let analysis = child_maps_and_exits(200, CLONE_VM | CLONE_VFORK | SIGCHLD);
    assert_eq!(analysis.mmap.verdict, Verdict::NoLeak);
}
