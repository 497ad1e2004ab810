//! The allocator class on synthetic marker totals and snapshots.

use std::collections::BTreeMap;

use leakscope_common::heap::{HeapLive, HeapTotals};

use super::*;
use crate::heap::snapshot::{HeapSnapshot, aggregate};
use crate::iterations::{self, IterationRequest};
use crate::ledger::test_support::Stream;
use crate::stacks::Frame;

const PID: u32 = 7;

/// `n` marked iterations; the allocator totals at marker `i` are `totals(i)`.
fn run(n: u64, totals: impl Fn(u64) -> (u64, u64)) -> Ledger {
    let mut s = Stream::new(PID);
    for i in 0..n {
        let (bytes, count) = totals(i);
        s.marker_with_heap(bytes, count);
    }
    s.ledger()
}

fn judged(ledger: &Ledger) -> AllocClass {
    let iterations = iterations::detect(ledger, &IterationRequest::Symbol("tick".into()));
    alloc_class(ledger, &iterations, None).expect("--heap totals were there")
}

#[test]
fn thirty_bytes_per_iteration_is_a_leak_of_thirty_bytes() {
    let class = judged(&run(2000, |i| (4096 + 30 * i, 10 + i)));
    assert_eq!(class.verdict, Verdict::Leak, "{}", class.bytes.why);
    assert!(
        (class.bytes.rate - 30.0).abs() < 0.5,
        "{}",
        class.bytes.rate
    );
    assert!(
        (class.count.rate - 1.0).abs() < 0.05,
        "{}",
        class.count.rate
    );
}

#[test]
fn freeing_everything_is_no_leak_whatever_the_churn_in_between() {
    // The totals at each marker: start-up's 4 KiB, and what one iteration has in flight
    // at its start (nothing: it freed everything).
    let class = judged(&run(2000, |_| (4096, 10)));
    assert_eq!(class.verdict, Verdict::NoLeak, "{}", class.bytes.why);
    assert!(class.bytes.limit.is_some_and(|l| l < 64.0));
}

#[test]
fn without_marker_totals_there_is_no_allocator_class() {
    let mut s = Stream::new(PID);
    for _ in 0..100 {
        s.marker();
    }
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    assert!(alloc_class(&ledger, &iterations, None).is_none());
}

#[test]
fn allocations_the_kernel_could_not_record_make_the_class_inconclusive() {
    let mut ledger = run(2000, |_| (4096, 10));
    ledger.note_heap_snapshot(HeapSnapshot {
        totals: BTreeMap::from([(
            PID,
            HeapTotals {
                iteration: 2000,
                unrecorded: 3,
                ..HeapTotals::default()
            },
        )]),
        span: (0, 1),
        unfollowed: 0,
        dropped: 0,
        freed_ns: Vec::new(),
        freed_iterations: Vec::new(),
        survivors: Vec::new(),
    });
    let class = judged(&ledger);
    assert_eq!(class.verdict, Verdict::Inconclusive);
    assert!(
        class.bytes.why.contains("3 allocations"),
        "{}",
        class.bytes.why
    );
}

#[test]
fn sites_are_the_callers_of_what_was_made_in_the_loop_and_survived() {
    let mut ledger = run(11, |i| (30 * i, i));
    let mut snapshot = crate::heap::snapshot::thirty_byte_survivors(PID, 11);
    let frame = Frame {
        file: Some("/src/heap_small.c".into()),
        line: Some(16),
        ..Frame::named("leak_thirty")
    };
    snapshot.name_callers(|_, _| vec![frame.clone()]);
    ledger.note_heap_snapshot(snapshot);
    let class = judged(&ledger);
    let site = &class.sites[0];
    assert_eq!(site.function, "leak_thirty");
    assert_eq!(
        site.frames,
        [frame],
        "the caller's frame, with its file and line"
    );
    // Made after markers 1..=10, before the 11th: 10 iterations, one each (the one
    // before the first marker is start-up).
    assert_eq!((site.count, site.bytes), (10, 300));
    assert!((site.bytes_per_iteration - 30.0).abs() < 1e-9);
}

#[test]
fn without_markers_in_the_kernel_sites_count_what_was_made_between_the_boundaries() {
    // 101 boundaries at 1.001 ms .. 1.101 ms (the stream's microseconds); one 30-byte block
    // made in each iteration, and a 4 KiB block at start-up, before the first boundary.
    let ledger_events = run(101, |i| (30 * i, i));
    let mut ledger = ledger_events;
    let span = (1_000_000, 1_000_000 + 256 * 1_000);
    let allocation = |alloc_ns, size, caller| HeapLive {
        size,
        alloc_ns,
        alloc_iter: 0,
        caller,
        tid: PID,
        kind: 1,
        stack_ns: 0,
    };
    let live = (0..100)
        .map(|i| (PID, allocation(1_001_500 + i * 1_000, 30, 0xb)))
        .chain(std::iter::once((PID, allocation(1_000_100, 4096, 0xa))));
    let totals = BTreeMap::from([(PID, HeapTotals::default())]);
    let mut snapshot = HeapSnapshot {
        survivors: aggregate(live, &totals, span, |_, _| None),
        totals,
        span,
        unfollowed: 0,
        dropped: 0,
        freed_ns: Vec::new(),
        freed_iterations: Vec::new(),
    };
    snapshot.name_callers(|_, address| {
        // Looked up one byte before the return address.
        vec![Frame::named(if address == 0xa - 1 {
            "startup"
        } else {
            "leak_thirty"
        })]
    });
    ledger.note_heap_snapshot(snapshot);
    let class = judged(&ledger);
    assert_eq!(class.sites.len(), 1, "{:?}", class.sites);
    let site = &class.sites[0];
    assert_eq!(site.function, "leak_thirty");
    assert_eq!((site.count, site.bytes), (100, 3000));
    assert!((site.bytes_per_iteration - 30.0).abs() < 1e-9);
}

#[test]
fn processes_left_without_allocator_probes_make_the_class_inconclusive() {
    let mut ledger = run(2000, |_| (4096, 10));
    ledger.note_heap_snapshot(HeapSnapshot {
        totals: BTreeMap::new(),
        span: (0, 1),
        unfollowed: 2,
        dropped: 0,
        freed_ns: Vec::new(),
        freed_iterations: Vec::new(),
        survivors: Vec::new(),
    });
    let class = judged(&ledger);
    assert_eq!(class.verdict, Verdict::Inconclusive);
    assert!(
        class.bytes.why.contains("2 traced processes"),
        "{}",
        class.bytes.why
    );
}
