//! The whole text report and the whole JSON, pinned by snapshots for a handful of synthetic
//! runs. The other report tests check single facts with `contains`; these catch every
//! unintended change of layout, wording or number. Every time and pid comes from the stream,
//! so the output is the same on every machine and needs no redaction.
//!
//! A missing or different snapshot fails the test (insta never accepts on its own). After a
//! deliberate change of the report, review and accept the new `.snap` files with
//! `cargo insta review`, or rerun with `INSTA_UPDATE=always` and read the diff before
//! committing it.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnosis::{FollowedProcesses, RunInfo, TargetExit, diagnose, diagnose_followed};
use crate::event::{FailedCall, What};
use crate::iterations::IterationRequest;
use crate::ledger::Ledger;
use crate::ledger::test_support::{Stream, call, libc_frame, link, source_frame};
use leakscope_common::syscalls as nr;

use super::Report;
use super::model::FailureReport;
use super::synthetic;

const PID: u32 = 42;

fn info(command: &str, request: IterationRequest) -> RunInfo {
    RunInfo {
        command: command.split(' ').map(String::from).collect(),
        pid: PID,
        exit: TargetExit::Code(0),
        lost_events: 0,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: request,
    }
}

fn tick() -> IterationRequest {
    IterationRequest::Symbol("tick".into())
}

/// A ledger that began tracing `PID` with stdio inherited from a terminal, fed `stream`.
fn ledger_with_stdio(stream: &Stream) -> Ledger {
    let mut ledger = Ledger::new();
    ledger.begin(PID, 500_000);
    for fd in 0..3 {
        ledger.seed_fd(PID, fd, &link("/dev/pts/0"), false);
    }
    for event in &stream.events {
        ledger.apply(event);
    }
    ledger
}

/// Both renderings of one report, checked against `NAME_text` and `NAME_json`.
fn assert_report_snapshots(name: &str, report: &Report) {
    let mut text = Vec::new();
    report.write_text(&mut text).expect("writing to a Vec");
    let text = String::from_utf8(text).expect("the report is UTF-8");
    let json = serde_json::to_string_pretty(&report.to_json()).expect("a JSON value prints");
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

#[test]
fn an_fd_leak_with_its_site() {
    let mut s = Stream::new(PID);
    for i in 0..100 {
        s.marker_with_rss(10_000_000);
        s.open("/etc/app.conf", 3).close(3);
        s.open("/var/log/app/session.log", 10 + i);
    }
    s.exit();
    let report = diagnose(s.ledger(), &info("./server --port 8080", tick()));
    assert_report_snapshots("fd_leak", &report);
}

#[test]
fn a_mapping_leak_with_its_stack() {
    let mut s = Stream::new(PID);
    for i in 0..100 {
        s.marker_with_rss(20_000_000 + 65536 * i as u64);
        // A scratch mapping made and released each time, and one that is kept.
        s.mmap_anon(0x7f00_0000_0000, 8192)
            .munmap(0x7f00_0000_0000, 8192);
        s.sys(
            call(
                nr::MMAP,
                0x1_0000_0000 + i as i64 * 0x10_0000,
                [0, 65536, 3, 0x22, u64::MAX, 0],
            )
            .with_frames(&["mmap", "grow_cache", "handle_request", "main"]),
        );
    }
    s.exit();
    let report = diagnose(s.ledger(), &info("./cache", tick()));
    assert_report_snapshots("mapping_leak", &report);
}

#[test]
fn a_brk_leak_with_its_stack() {
    let mut s = Stream::new(PID);
    s.brk(0x100_0000);
    for i in 0..100u64 {
        s.marker_with_rss(8_000_000 + 8192 * i);
        let top = 0x100_0000 + 8192 * (i + 1);
        s.sys(
            // Unwound through libc (folded in the site) to the program's function.
            call(nr::BRK, top as i64, [top, 0, 0, 0, 0, 0]).with_stack(vec![
                libc_frame("__brk"),
                libc_frame("__sbrk"),
                libc_frame("sysmalloc"),
                libc_frame("malloc"),
                source_frame("parse_line", "/src/parser/parse.c", 88),
                source_frame("main", "/src/parser/main.c", 140),
                libc_frame("__libc_start_call_main"),
                libc_frame("__libc_start_main_impl"),
            ]),
        );
        s.open("/srv/data/input.csv", 3).close(3);
    }
    s.exit();
    let report = diagnose(s.ledger(), &info("./parser input.csv", tick()));
    assert_report_snapshots("brk_leak", &report);
}

#[test]
fn a_clean_run_states_its_detection_limits_and_inconclusive_classes() {
    assert_report_snapshots("clean_run", &synthetic::clean_report("./clean"));
}

#[test]
fn a_cache_that_fills_up_is_a_plateau() {
    let mut s = Stream::new(PID);
    for i in 0..100 {
        s.marker_with_rss(10_000_000);
        s.open("/tmp/a", 3).close(3);
        if i < 20 {
            s.open(&format!("/var/cache/app/{i}"), 10 + i);
        }
    }
    s.exit();
    let report = diagnose(s.ledger(), &info("./cached", tick()));
    assert_report_snapshots("plateau", &report);
}

#[test]
fn a_run_that_hits_the_fd_limit() {
    // One fd kept per iteration; from iteration 20 on every open fails with EMFILE.
    let mut s = Stream::new(PID);
    for i in 0..30 {
        s.marker();
        if i < 20 {
            s.open("/tmp/kept", 3 + i);
        } else {
            s.push(
                PID,
                PID,
                What::Failed(FailedCall {
                    nr: nr::OPENAT,
                    name: "openat",
                    errno: 24,
                }),
                None,
            );
        }
    }
    s.exit();
    let info = RunInfo {
        fd_limit: Some(23),
        ..info("./pinned", tick())
    };
    let report = diagnose(s.ledger(), &info);
    assert_report_snapshots("fd_limit_hit", &report);
}

#[test]
fn a_one_shot_run_lists_what_it_held_at_exit() {
    let mut s = Stream::new(PID);
    s.push(PID, PID, What::Exec(None), None);
    for i in 0..4 {
        s.mmap_anon(0x7000_0000 + i * 0x10_0000, 65536);
    }
    s.munmap(0x7000_0000, 65536).munmap(0x7010_0000, 65536);
    s.open("/tmp/x", 3).exit();
    let report = diagnose_followed(
        ledger_with_stdio(&s),
        &info("./once", IterationRequest::Auto),
        &FollowedProcesses::default(),
        crate::diagnosis::Extras::default(),
    );
    assert_report_snapshots("one_shot_held_at_exit", &report);
}

#[test]
fn a_daemon_that_outlived_the_target() {
    const DAEMON: u32 = PID + 1;
    let mut s = Stream::new(PID);
    s.push(PID, PID, What::Fork { child: DAEMON }, None);
    s.exit();
    s.tgid = DAEMON;
    for i in 0..50 {
        s.marker().open("/tmp/d", 3 + i);
    }
    s.exit();
    let followed = FollowedProcesses {
        commands: BTreeMap::from([(DAEMON, vec!["./prog".into(), "--daemon".into()])]),
        running_at_end: Some(BTreeSet::new()),
    };
    let report = diagnose_followed(
        ledger_with_stdio(&s),
        &info("./prog", tick()),
        &followed,
        crate::diagnosis::Extras::default(),
    );
    assert_report_snapshots("outlived_target", &report);
}

/// Reads a config 40 times at start-up, then leaks 300 files that recur nowhere: the
/// config is the only candidate, and it marks no loop.
fn start_up_config_then_a_leak() -> Stream {
    let mut s = Stream::new(PID);
    for _ in 0..40 {
        s.open("/srv/app/my config", 3).close(3);
    }
    for i in 0..300 {
        s.now += 1_000_000;
        s.open(&format!("/srv/app/out/{i}"), 4 + i);
    }
    s.exit();
    s
}

#[test]
fn an_unconvincing_loop_names_its_candidates() {
    let report = diagnose(
        start_up_config_then_a_leak().ledger(),
        &info("shim", IterationRequest::Auto),
    );
    assert_report_snapshots("unconvincing_loop", &report);
}

#[test]
fn lost_events_make_every_class_inconclusive() {
    let mut s = Stream::new(PID);
    for i in 0..100 {
        s.marker_with_rss(10_000_000);
        s.open("/tmp/a", 3).close(3);
        s.open("/tmp/kept", 10 + i);
    }
    s.exit();
    let info = RunInfo {
        lost_events: 7,
        lost_markers: 2,
        ..info("./busy", tick())
    };
    let mut report = diagnose(s.ledger(), &info);
    // The session fills the breakdown in from the kernel's per-reason counters.
    report.lost_by_reason = [("ring_full_marker", 2), ("ring_full_path", 5)]
        .into_iter()
        .map(|(reason, n)| (reason.to_string(), n))
        .collect();
    assert_report_snapshots("lost_events", &report);
}

/// A temp file of 4 KiB left behind per iteration (the files class is made up: see
/// `synthetic`), with its failures.
#[test]
fn a_files_leak_with_its_pattern_site() {
    let mut report = synthetic::clean_report("./app");
    report.classes.files = synthetic::leaking("/tmp/app-XXXXXX.tmp", Some(4096));
    report.classes.files.failures = [(
        "ENOSPC".to_string(),
        FailureReport {
            count: 3,
            first_iteration: Some(97),
            first_syscall: "openat".into(),
            live_at_first: None,
        },
    )]
    .into();
    assert!(report.has_leak());
    assert_report_snapshots("files_leak", &report);
}

#[test]
fn a_watches_leak_with_its_path() {
    let mut report = synthetic::clean_report("./jobs");
    report.classes.watches = synthetic::leaking("inotify watch on /tmp/job-N", None);
    report.classes.watches.failures = [(
        "ENOSPC".to_string(),
        FailureReport {
            count: 12,
            first_iteration: Some(99),
            first_syscall: "inotify_add_watch".into(),
            live_at_first: None,
        },
    )]
    .into();
    report.classes.files = synthetic::flat(1, true);
    assert!(report.has_leak());
    assert_report_snapshots("watches_leak", &report);
}

/// `extract`'s report: the class table, then the suspects, then the projection.
#[test]
fn an_extract_report_answers_the_suspects() {
    let mut report = synthetic::clean_report("leakscope __extract-worker");
    report.classes.files = synthetic::flat(2, true);
    report.project_growth(&super::projection::DEFAULT_PROJECTION_POINTS);
    report.answer_suspects();
    assert_report_snapshots("extract_suspects", &report);
}

/// `--heap`: 30 bytes a run of `leak_thirty` (inlined into `main`) never frees; the heap
/// class, its site's frames in JSON and its stack in the text.
#[test]
fn a_heap_leak_with_its_caller_s_frames() {
    let report = synthetic::heap_leak(vec![
        crate::stacks::Frame {
            inlined: true,
            ..source_frame("leak_thirty", "/src/fixtures/heap_small.c", 16)
        },
        source_frame("main", "/src/fixtures/heap_small.c", 33),
    ]);
    assert_report_snapshots("heap_leak", &report);
}
