//! One-shot runs and processes that outlive the target, from synthetic streams.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnosis::{FollowedProcesses, RunInfo, TargetExit, diagnose_followed};
use crate::event::What;
use crate::iterations::IterationRequest;
use crate::ledger::Ledger;
use crate::ledger::test_support::{Stream, link};

use super::super::Report;

const TARGET: u32 = 42;
const DAEMON: u32 = 43;

fn info(request: IterationRequest) -> RunInfo {
    RunInfo {
        command: vec!["./prog".into()],
        pid: TARGET,
        exit: TargetExit::Code(0),
        lost_events: 0,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: request,
    }
}

/// A ledger that began tracing `TARGET` with stdio inherited, fed `stream`.
fn ledger(stream: &Stream) -> Ledger {
    let mut ledger = Ledger::new();
    ledger.begin(TARGET, 500_000);
    for fd in 0..3 {
        ledger.seed_fd(TARGET, fd, &link("/dev/pts/0"), false);
    }
    for event in &stream.events {
        ledger.apply(event);
    }
    ledger
}

fn text(report: &Report) -> String {
    let mut out = Vec::new();
    report.write_text(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_one_shot_run_lists_what_it_held_at_exit_and_no_rates() {
    let mut s = Stream::new(TARGET);
    s.push(TARGET, TARGET, What::Exec(None), None);
    // Mappings made and released at start-up, then a file opened last and never closed:
    // a rate over time windows would be negative, and the windows end before the open.
    for i in 0..4 {
        s.mmap_anon(0x7000_0000 + i * 0x10_0000, 65536);
    }
    s.munmap(0x7000_0000, 65536).munmap(0x7010_0000, 65536);
    s.open("/tmp/x", 3).exit();
    let report = diagnose_followed(
        ledger(&s),
        &info(IterationRequest::Auto),
        &FollowedProcesses::default(),
        crate::diagnosis::Extras::default(),
    );
    let held = report.held_at_exit.as_ref().expect("a one-shot run");
    let fds: Vec<(i32, &str, bool)> = held
        .fds
        .iter()
        .map(|fd| (fd.fd, fd.site.as_str(), fd.inherited))
        .collect();
    assert_eq!(
        fds,
        vec![
            (0, "/dev/pts/0", true),
            (1, "/dev/pts/0", true),
            (2, "/dev/pts/0", true),
            (3, "/tmp/x", false)
        ]
    );
    assert_eq!((held.mappings.len(), held.mapped_bytes), (2, 2 * 65536));

    let json = report.to_json();
    for class in ["fd", "mmap"] {
        assert_eq!(json["classes"][class]["leaked_per_iteration"], 0.0);
        assert_eq!(json["classes"][class]["verdict"], "inconclusive");
        assert!(json["classes"][class]["detection_limit_per_iteration"].is_null());
    }
    assert_eq!(json["classes"]["mmap"]["bytes_leaked_per_iteration"], 0.0);
    assert_eq!(json["classes"]["brk"]["bytes_per_iteration"], 0.0);
    assert_eq!(json["classes"]["rss"]["bytes_per_iteration"], 0.0);
    assert_eq!(json["held_at_exit"]["fds"][3]["site"], "/tmp/x");
    assert!(
        report
            .answer()
            .starts_with("inconclusive: no repeated operation")
    );

    let text = text(&report);
    for needle in [
        "held at exit by pid 42: 4 open fds (3 inherited), 2 mappings (128 KiB)",
        "fd 0    /dev/pts/0  (inherited)",
        "fd 3    /tmp/x\n",
        "fd      inconclusive  4 (3 inherited)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("per iteration"), "{text}");
    assert!(!text.contains("outlived"), "{text}");
}

#[test]
fn a_run_with_enough_iterations_has_no_held_at_exit() {
    let mut s = Stream::new(TARGET);
    for _ in 0..50 {
        s.marker().open("/tmp/a", 3).close(3);
    }
    s.exit();
    let report = diagnose_followed(
        ledger(&s),
        &info(IterationRequest::Symbol("tick".into())),
        &FollowedProcesses::default(),
        crate::diagnosis::Extras::default(),
    );
    assert!(report.held_at_exit.is_none());
    assert!(report.to_json().get("held_at_exit").is_none());
    assert_eq!(report.to_json()["outlived_target"], serde_json::json!([]));
}

fn daemon_run() -> Stream {
    let mut s = Stream::new(TARGET);
    s.push(TARGET, TARGET, What::Fork { child: DAEMON }, None);
    s.exit();
    s.tgid = DAEMON;
    for i in 0..50 {
        s.marker().open("/tmp/d", 3 + i);
    }
    s
}

#[test]
fn a_daemon_that_outlived_the_target_is_named_with_what_it_held() {
    let mut s = daemon_run();
    s.exit();
    let followed = FollowedProcesses {
        commands: BTreeMap::from([(DAEMON, vec!["./prog".into(), "--daemon".into()])]),
        running_at_end: Some(BTreeSet::new()),
    };
    let report = diagnose_followed(
        ledger(&s),
        &info(IterationRequest::Symbol("tick".into())),
        &followed,
        crate::diagnosis::Extras::default(),
    );
    assert_eq!(report.classes.fd.verdict.as_str(), "leak");
    let [daemon] = &report.outlived_target[..] else {
        panic!("{:?}", report.outlived_target);
    };
    assert_eq!(
        (daemon.pid, daemon.fds, daemon.still_running),
        (DAEMON, 53, false)
    );
    assert_eq!(daemon.command, ["./prog", "--daemon"]);
    assert_eq!(
        daemon
            .fd_sites
            .iter()
            .filter(|fd| fd.site == "/tmp/d")
            .count(),
        50
    );
    let text = text(&report);
    for needle in [
        "outlived the target (pid 42): 1 process(es), followed until they exited",
        "pid 43 (exited) ./prog --daemon: 53 fds, 0 mappings (0 B)",
        "50 × fd /tmp/d",
        "3 × fd /dev/pts/0  (inherited)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn a_daemon_still_running_when_tracing_stopped_says_so() {
    let s = daemon_run();
    let report = diagnose_followed(
        ledger(&s),
        &info(IterationRequest::Symbol("tick".into())),
        &FollowedProcesses::default(),
        crate::diagnosis::Extras::default(),
    );
    assert!(report.outlived_target[0].still_running);
    // The session saw it gone (its exit event was lost): not "still running".
    let gone = FollowedProcesses {
        running_at_end: Some(BTreeSet::new()),
        ..FollowedProcesses::default()
    };
    let report = diagnose_followed(
        ledger(&s),
        &info(IterationRequest::Symbol("tick".into())),
        &gone,
        crate::diagnosis::Extras::default(),
    );
    assert!(!report.outlived_target[0].still_running);
    assert!(report.outlived_target[0].command.is_empty());
    assert!(text(&report).contains("pid 43 (exited) ?: 53 fds"));
}
