//! The iterations part of the report: coverage, candidates, and the answer when no loop
//! marker is convincing.

use crate::diagnosis::{RunInfo, TargetExit, diagnose};
use crate::iterations::IterationRequest;
use crate::ledger::test_support::Stream;

use super::Report;

fn run(s: &Stream, lost_events: u64) -> Report {
    let info = RunInfo {
        command: vec!["shim".into()],
        pid: 1,
        exit: TargetExit::Code(0),
        lost_events,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: IterationRequest::Auto,
    };
    diagnose(s.ledger(), &info)
}

/// Reads a config 40 times at start-up, then leaks 300 files that recur nowhere: the
/// config is the only candidate, and it marks no loop.
fn start_up_config_then_a_leak() -> Stream {
    let mut s = Stream::new(1);
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

fn text(report: &Report) -> String {
    let mut out = Vec::new();
    report.write_text(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn an_unconvincing_loop_is_inconclusive_and_names_the_candidates() {
    let report = run(&start_up_config_then_a_leak(), 0);
    let json = report.to_json();
    let iterations = &json["iterations"];
    assert_eq!(iterations["source"], "time");
    assert_eq!(iterations["candidates"][0]["path"], "/srv/app/my config");
    assert_eq!(iterations["candidates"][0]["count"], 40);
    assert!(iterations["candidates"][0]["score"].is_f64());
    assert!(iterations["coverage"].is_f64());
    let reason = iterations["unconvincing"].as_str().unwrap();
    for class in ["fd", "mmap", "brk", "rss"] {
        assert_eq!(json["classes"][class]["verdict"], "inconclusive", "{class}");
    }
    // The fd leak is real, but it is not judged on a guess: never a silent "no leak".
    let answer = report.answer();
    assert_eq!(
        answer,
        format!("inconclusive: {reason}; try --iteration-path \"/srv/app/my config\" (40 opens)")
    );
    assert!(answer.starts_with(
        "inconclusive: no loop found: \"/srv/app/my config\" (40 opens) stops before the work does"
    ));
    let text = text(&report);
    assert!(
        text.contains("candidate markers (none convincing):\n  --iteration-path \"/srv/app/my config\"  (40 opens, score"),
        "{text}"
    );
}

#[test]
fn lost_events_stay_the_reason_and_the_candidates_are_still_offered() {
    let answer = run(&start_up_config_then_a_leak(), 3).answer();
    assert!(answer.starts_with("inconclusive in "), "{answer}");
    assert!(answer.contains("3 events were lost"), "{answer}");
    assert!(
        answer.ends_with("; try --iteration-path \"/srv/app/my config\" (40 opens)"),
        "{answer}"
    );
}

#[test]
fn a_found_loop_states_its_coverage_and_candidates() {
    let mut s = Stream::new(1);
    for i in 0..100 {
        s.open(&format!("/usr/lib/{i}.so"), 3); // start-up: half of the acquisitions
    }
    for _ in 0..100 {
        s.open("/srv/app/tick", 200).close(200);
    }
    let report = run(&s, 0);
    let json = report.to_json();
    assert_eq!(json["iterations"]["source"], "auto");
    assert_eq!(json["iterations"]["coverage"], 0.5);
    assert_eq!(json["iterations"]["candidates"][0]["path"], "/srv/app/tick");
    assert!(json["iterations"].get("unconvincing").is_none());
    let text = text(&report);
    assert!(text.contains("covering 50 % of acquisitions"), "{text}");
    assert!(!text.contains("candidate markers"), "{text}");
}

#[test]
fn pasted_paths_are_quoted_for_the_shell() {
    assert_eq!(super::answer::shell_quote("/a b/c"), "\"/a b/c\"");
    assert_eq!(
        super::answer::shell_quote("/x/$HOME\"`\\"),
        "\"/x/\\$HOME\\\"\\`\\\\\""
    );
}
