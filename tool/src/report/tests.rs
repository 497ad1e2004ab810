//! Rendering: every contract key in the JSON, and the text report's parts.

use crate::diagnosis::{RunInfo, TargetExit, diagnose};
use crate::iterations::IterationRequest;
use crate::ledger::test_support::Stream;

use super::Report;

fn leaking_run(exit: TargetExit) -> Report {
    let mut s = Stream::new(42);
    s.brk(0x100_0000);
    for i in 0..200 {
        s.marker_with_rss(10_000_000 + 65536 * i as u64);
        s.open("/tmp/work/a.txt", 3).close(3);
        s.open("/tmp/work/kept.txt", 10 + i);
        s.mmap_anon(0x1_0000_0000 + i as u64 * 0x10_0000, 65536);
    }
    s.exit();
    let info = RunInfo {
        command: vec!["./prog".into(), "--fast".into()],
        pid: 42,
        exit,
        lost_events: 0,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: IterationRequest::Symbol("tick".into()),
    };
    diagnose(s.ledger(), &info)
}

fn keys(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_has(value: &serde_json::Value, wanted: &[&str]) {
    let present = keys(value);
    for key in wanted {
        assert!(present.contains(key), "missing {key:?} in {present:?}");
    }
}

#[test]
fn json_has_every_contract_key() {
    let json = leaking_run(TargetExit::Code(0)).to_json();
    assert_has(
        &json,
        &[
            "schema",
            "target",
            "iterations",
            "lost_events",
            "counts",
            "classes",
        ],
    );
    assert_eq!(json["schema"], 1);
    assert_has(&json["target"], &["command", "pid", "exit_code"]);
    assert_eq!(
        json["target"]["command"],
        serde_json::json!(["./prog", "--fast"])
    );
    assert_eq!(json["target"]["exit_code"], 0);
    assert_has(&json["iterations"], &["count", "source"]);
    assert_eq!(
        (
            json["iterations"]["count"].as_u64(),
            json["iterations"]["source"].as_str()
        ),
        (Some(200), Some("symbol"))
    );
    assert_has(&json["counts"], &["openat", "close", "mmap", "brk", "exit"]);
    assert_eq!(json["counts"]["openat"], 400);
    assert_has(&json["classes"], &["fd", "mmap", "brk", "rss"]);
    let resource_keys = [
        "acquired",
        "released",
        "live_at_end",
        "leaked_per_iteration",
        "verdict",
        "lifetime_ns",
        "lifetime_iterations",
        "sites",
    ];
    for class in ["fd", "mmap"] {
        let class = &json["classes"][class];
        assert_has(class, &resource_keys);
        assert_has(&class["lifetime_ns"], &["p50", "p90", "p99", "max"]);
        assert_has(&class["lifetime_iterations"], &["p50", "p90", "p99", "max"]);
        assert_has(
            &class["sites"][0],
            &["site", "leaked", "leaked_per_iteration"],
        );
    }
    assert_has(&json["classes"]["mmap"], &["bytes_leaked_per_iteration"]);
    assert_has(&json["classes"]["brk"], &["bytes_per_iteration", "verdict"]);
    assert_has(
        &json["classes"]["rss"],
        &[
            "bytes_per_iteration",
            "verdict",
            "unexplained_bytes_per_iteration",
        ],
    );
}

#[test]
fn json_values_match_the_run() {
    let json = leaking_run(TargetExit::Code(0)).to_json();
    let fd = &json["classes"]["fd"];
    assert_eq!(
        (fd["verdict"].as_str(), fd["leaked_per_iteration"].as_f64()),
        (Some("leak"), Some(1.0))
    );
    assert_eq!(fd["sites"][0]["site"], "/tmp/work/kept.txt");
    assert_eq!(fd["sites"][0]["leaked"], 199);
    let mmap = &json["classes"]["mmap"];
    assert_eq!(mmap["bytes_leaked_per_iteration"].as_f64(), Some(65536.0));
    // The whole RSS grows, but the leaked mappings explain it: not an rss leak of its own.
    assert_eq!(json["classes"]["rss"]["total_verdict"], "leak");
    assert_eq!(json["classes"]["rss"]["verdict"], "no-leak");
    assert_eq!(json["classes"]["rss"]["unexplained_verdict"], "no-leak");
    // The break never moved: in 200 iterations a leak below glibc's 132 KiB step per
    // (200 * 0.54 / 6) iterations could hide there, so the honest verdict is inconclusive.
    assert_eq!(json["classes"]["brk"]["verdict"], "inconclusive");
    let limit = json["classes"]["brk"]["detection_limit_bytes_per_iteration"]
        .as_f64()
        .unwrap();
    assert!((limit - 135168.0 * 6.0 / 108.0).abs() < 1.0, "{limit}");
    assert_eq!(json["classes"]["brk"]["iterations_needed"], 23467);
    // Rates keep full precision in JSON, and every class states its detection limit.
    assert!(fd["detection_limit_per_iteration"].as_f64().unwrap() < 0.1);
    assert!(
        mmap["detection_limit_bytes_per_iteration"]
            .as_f64()
            .is_some()
    );
}

#[test]
fn exit_code_is_null_when_killed_or_still_running() {
    let killed = leaking_run(TargetExit::Signal(9)).to_json();
    assert!(killed["target"]["exit_code"].is_null());
    assert_eq!(killed["target"]["exit_signal"], 9);
    let running = leaking_run(TargetExit::StillRunning).to_json();
    assert!(running["target"]["exit_code"].is_null());
    assert_eq!(running["target"]["still_running"], true);
    // An attached process that exited: gone, status unknown.
    let gone = leaking_run(TargetExit::ExitedUnknownStatus);
    let json = gone.to_json();
    assert!(json["target"]["exit_code"].is_null() && json["target"]["exit_signal"].is_null());
    assert_eq!(json["target"]["still_running"], false);
    let mut text = Vec::new();
    gone.write_text(&mut text).unwrap();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .contains("exited; its status is only visible to its parent")
    );
}

#[test]
fn has_leak_follows_the_verdicts() {
    assert!(leaking_run(TargetExit::Code(0)).has_leak());
    let mut s = Stream::new(1);
    for _ in 0..50 {
        s.marker().open("/tmp/a", 3).close(3);
    }
    let info = RunInfo {
        command: vec!["true".into()],
        pid: 1,
        exit: TargetExit::Code(0),
        lost_events: 0,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: IterationRequest::Auto,
    };
    let report = diagnose(s.ledger(), &info);
    assert!(!report.has_leak());
    assert_eq!(report.to_json()["iterations"]["source"], "auto");
    assert_eq!(report.to_json()["iterations"]["path"], "/tmp/a");
}

#[test]
fn text_report_shows_table_sites_lifetimes_and_exit() {
    let report = leaking_run(TargetExit::Code(3));
    let mut out = Vec::new();
    report.write_text(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    for needle in [
        "./prog --fast",
        "exited with status 3",
        "iterations: 200 from symbol",
        "confidence 1.00",
        "lost events: 0",
        "fd      LEAK          1.00 fds",
        "64 KiB",
        "199 × /tmp/work/kept.txt",
        "anon 64 KiB rw- private",
        "lifetimes of released resources",
        "█",
        "not explained by mmap/brk",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(text.lines().count() <= 50, "one screen:\n{text}");
}

#[test]
fn bars_scale_in_eighths() {
    use super::text::bar;
    assert_eq!(bar(0, 10), "");
    assert_eq!(bar(10, 10).chars().count(), 32);
    assert_eq!(bar(1, 1000), "▏", "a nonzero count is never invisible");
    assert_eq!(bar(5, 10), "█".repeat(16));
}

#[test]
fn the_answer_names_each_leak_with_rate_and_site() {
    let report = leaking_run(TargetExit::Code(0));
    let answer = report.answer();
    assert!(
        answer.contains("fd leak: 1.00 per iteration, all at /tmp/work/kept.txt"),
        "{answer}"
    );
    assert!(
        answer.contains("mapping leak: 1.00 mappings and 64 KiB per iteration"),
        "{answer}"
    );
    assert!(!answer.contains("brk"), "{answer}");
    assert_eq!(report.to_json()["answer"], answer.as_str());
    let mut text = Vec::new();
    report.write_text(&mut text).unwrap();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .contains(&format!("answer: {answer}"))
    );
}

#[test]
fn the_answer_says_no_leak_and_what_was_bounded() {
    let mut s = Stream::new(1);
    for i in 0..100 {
        s.marker_with_rss(10_000_000).open("/tmp/a", 3).close(3);
        if i < 20 {
            s.open("/tmp/cache", 10 + i); // a cache that fills up, then stays
        }
    }
    let info = RunInfo {
        command: vec!["prog".into()],
        pid: 1,
        exit: TargetExit::Code(0),
        lost_events: 0,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: IterationRequest::Symbol("tick".into()),
    };
    let answer = diagnose(s.ledger(), &info).answer();
    assert_eq!(
        answer,
        "no fd or mapping leak in 100 iterations: fds grew, then stopped (bounded); \
         mappings stay flat; it would have seen a leak of mappings from 0.111 per iteration or \
         455 B per iteration; no files or watches created; brk heap inconclusive (no sustained growth, but a leak below \
         14.7 KiB per iteration could not show in 100 iterations: it moves in steps of 132 KiB; \
         run at least 23,467 iterations to settle it); RSS inconclusive (no sustained growth, but a leak \
         below 5.7 KiB per iteration could not show in 100 iterations; run at least 9,103 \
         iterations to settle it)"
    );
}

#[test]
fn the_answer_with_lost_events_is_inconclusive_and_says_why() {
    let mut s = Stream::new(1);
    for _ in 0..100 {
        s.marker_with_rss(10_000_000).open("/tmp/a", 3).close(3);
    }
    let info = RunInfo {
        command: vec!["prog".into()],
        pid: 1,
        exit: TargetExit::Code(0),
        lost_events: 7,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: IterationRequest::Symbol("tick".into()),
    };
    let answer = diagnose(s.ledger(), &info).answer();
    assert!(
        answer.starts_with(
            "inconclusive in 100 iterations: fds, mappings, brk heap, RSS, files and watches inconclusive (7 events were lost"
        ),
        "{answer}"
    );
}

#[test]
fn both_exporters_render_the_ending_and_projection_the_report_owns() {
    use super::{Exporter as _, JsonExporter, TextExporter, projection::DEFAULT_PROJECTION_POINTS};
    use crate::ending::{Ending, How};

    let render = |report: &Report| {
        let text = String::from_utf8(TextExporter.render(report).unwrap()).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&JsonExporter.render(report).unwrap()).unwrap();
        (text, json)
    };
    let mut report = leaking_run(TargetExit::Code(0));
    let (bare_text, bare_json) = render(&report);
    assert!(bare_json.get("ended").is_none() && bare_json.get("projection").is_none());
    assert!(!bare_text.contains("ended:"), "{bare_text}");

    report.ended = Some(Ending {
        how: How::TargetExited,
        signal: None,
        by: None,
        interrupted: None,
        processes_running: 0,
    });
    report.project_growth(&DEFAULT_PROJECTION_POINTS);
    let (text, json) = render(&report);
    // The text is the bare report, then the ending, then the projection after a blank line.
    let tail = text
        .strip_prefix(&bare_text)
        .expect("the bare report comes first");
    let (ended, projection) = tail.split_once("\n\n").expect("a blank line between");
    assert_eq!(ended, "ended: the target exited");
    assert!(
        projection.starts_with("Memory growth per extraction, projected:\n"),
        "{projection}"
    );
    assert_eq!(json["ended"]["how"], "target-exited");
    let rows = json["projection"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // The JSON is the bare one plus the two keys.
    let mut trimmed = json.clone();
    let object = trimmed.as_object_mut().unwrap();
    object.remove("ended");
    object.remove("projection");
    assert_eq!(trimmed, bare_json);
    // One model: the JSON's answer is the text's.
    assert!(text.contains(&format!("answer: {}", json["answer"].as_str().unwrap())));
}

#[test]
fn the_answer_names_a_site_by_its_share_of_what_the_sites_retain() {
    use super::answer::top_site;
    let report = leaking_run(TargetExit::Code(0));
    let mut class = report.classes.fd;
    let mut site = class.sites[0].clone();
    // A file class that leaks bytes, not files: two files written at about the same rate,
    // each above the class's own (window) rate.
    class.leaked_per_iteration = 0.0;
    class.bytes_leaked_per_iteration = Some(2100.0);
    site.leaked_per_iteration = 0.02;
    site.bytes_leaked_per_iteration = Some(2562.0);
    site.site = "file /tmp/a.map".into();
    let mut other = site.clone();
    other.bytes_leaked_per_iteration = Some(2458.0);
    other.site = "file /tmp/b.log".into();
    let mut third = other.clone();
    third.bytes_leaked_per_iteration = Some(800.0);
    class.sites = vec![other.clone(), site.clone(), third];
    assert_eq!(top_site(&class, true), ", largest share at file /tmp/a.map");
    other.bytes_leaked_per_iteration = Some(500.0);
    class.sites = vec![other.clone(), site.clone()];
    assert_eq!(top_site(&class, true), ", most at file /tmp/a.map");
    other.bytes_leaked_per_iteration = Some(0.0);
    class.sites = vec![other, site];
    assert_eq!(top_site(&class, true), ", all at file /tmp/a.map");
    // Nothing retained in the measure asked for: no site is named.
    class
        .sites
        .iter_mut()
        .for_each(|s| s.leaked_per_iteration = 0.0);
    assert_eq!(top_site(&class, false), "");
}

#[test]
fn time_windows_settle_by_marking_the_loop_not_by_more_windows_than_a_run_has() {
    use crate::iterations::IterationSource;
    let text_of = |report: &Report| {
        let mut out = Vec::new();
        report.write_text(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let mut report = leaking_run(TargetExit::Code(0));
    report.iterations.source = IterationSource::Time;
    report.classes.mmap.iterations_needed = Some(216);
    report.classes.rss.iterations_needed = Some(9_012);
    report.classes.brk.iterations_needed = None;
    let text = text_of(&report);
    assert!(!text.contains("run at least 9,012 iterations"), "{text}");
    assert!(
        text.contains(
            "to settle mmap, rss: these iterations are time windows; mark the loop's own: \
             --iteration-symbol SYMBOL"
        ),
        "{text}"
    );
    assert!(
        text.contains("(time windows cannot: it needs 9,012, a run has at most 100)"),
        "{text}"
    );
    report.classes.mmap.iterations_needed = Some(60);
    report.classes.rss.iterations_needed = None;
    let text = text_of(&report);
    assert!(
        text.contains(", or run at least 0.6 s for 60 windows of 10 ms"),
        "{text}"
    );
    // A marked loop keeps its own count.
    report.iterations.source = IterationSource::Symbol;
    assert!(
        text_of(&report).contains("to settle mmap: run at least 60 iterations"),
        "{}",
        text_of(&report)
    );
}
