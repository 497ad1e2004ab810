//! Failed acquisitions, the fd limit and lost-event reasons in the JSON and text reports.

use crate::diagnosis::{RunInfo, TargetExit, diagnose};
use crate::event::{FailedCall, What};
use crate::iterations::IterationRequest;
use crate::ledger::test_support::Stream;
use leakscope_common::syscalls as nr;

use super::Report;

/// Keeps one fd per iteration; from iteration 20 on every open fails with EMFILE.
fn pinned_run() -> Report {
    let mut s = Stream::new(7);
    for i in 0..30 {
        s.marker();
        if i < 20 {
            s.open("/tmp/kept", 3 + i);
        } else {
            s.push(
                7,
                7,
                What::Failed(FailedCall {
                    nr: nr::OPENAT,
                    name: "openat",
                    errno: 24,
                }),
                None,
            );
        }
    }
    let info = RunInfo {
        command: vec!["./pinned".into()],
        pid: 7,
        exit: TargetExit::Code(0),
        lost_events: 0,
        lost_markers: 0,
        fd_limit: Some(23),
        iteration_request: IterationRequest::Symbol("tick".into()),
    };
    diagnose(s.ledger(), &info)
}

#[test]
fn json_has_failures_per_class_and_the_fd_limit() {
    let json = pinned_run().to_json();
    assert_eq!(json["target"]["fd_limit"], 23);
    assert_eq!(
        json["classes"]["fd"]["failures"],
        serde_json::json!({"EMFILE": {
            "count": 10, "first_iteration": 20, "first_syscall": "openat", "live_at_first": 20
        }})
    );
    // Always present, empty when nothing failed.
    assert_eq!(json["classes"]["mmap"]["failures"], serde_json::json!({}));
    assert_eq!(json["classes"]["brk"]["failures"], serde_json::json!({}));
    assert_eq!(json["lost_by_reason"], serde_json::json!({}));
}

#[test]
fn text_has_one_failure_line_per_failing_class() {
    let mut text = Vec::new();
    pinned_run().write_text(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("  fd: 10 calls failed with EMFILE (first at iteration 20, 20 held then)"),
        "{text}"
    );
    assert!(
        !text.contains("\n  mmap: ") && !text.contains("\n  brk: "),
        "{text}"
    );
    assert!(!text.contains("lost by reason"), "{text}");
}

#[test]
fn text_breaks_lost_events_down_by_reason() {
    let mut report = pinned_run();
    report.lost_events = 5;
    report.lost_by_reason = [("ring_full_marker", 2), ("ring_full_syscall", 3)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut text = Vec::new();
    report.write_text(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("  lost by reason: ring_full_marker 2, ring_full_syscall 3"),
        "{text}"
    );
}
