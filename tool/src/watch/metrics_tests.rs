//! The metrics parse back with a Prometheus text parser, every line of them, and say what
//! the report says.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use super::*;
use crate::diagnosis::{RunInfo, TargetExit, diagnose};
use crate::iterations::IterationRequest;
use crate::ledger::test_support::Stream;
use crate::watch::rows::Subject;

const PID: u32 = 4242;

/// `iterations` iterations that each open a file and close it again except every
/// `leak_every`th: fd leaks 1/`leak_every` per iteration.
fn view(iterations: usize, leak_every: Option<usize>) -> LiveView {
    let mut s = Stream::new(PID);
    for i in 0..iterations {
        s.marker_with_rss(10_000_000);
        let fd = 3 + i as i32;
        s.open("/tmp/a", fd);
        if leak_every.is_none_or(|every| i % every != 0) {
            s.close(fd);
        }
    }
    let info = RunInfo {
        command: vec!["/opt/bin/srv".into(), "--flag".into()],
        pid: PID,
        exit: TargetExit::StillRunning,
        lost_events: 0,
        lost_markers: 0,
        fd_limit: None,
        iteration_request: IterationRequest::Symbol("tick".into()),
    };
    let report = diagnose(s.ledger(), &info);
    LiveView::from_report(
        &report,
        Subject::new(PID, &info.command),
        Duration::from_secs(3),
    )
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).unwrap()
}

fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
    match found[0].value {
        Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) => v,
        ref other => panic!("{metric}: {other:?}"),
    }
}

#[test]
fn every_line_parses_and_every_family_is_documented_and_typed() {
    let text = render(&view(100, Some(1)));
    let scrape = parse(&text);
    let sample_lines = text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(
        scrape.samples.len(),
        sample_lines,
        "a line the parser skipped:\n{text}"
    );
    for sample in &scrape.samples {
        assert!(
            scrape.docs.contains_key(&sample.metric),
            "{} has no HELP",
            sample.metric
        );
        assert_eq!(sample.labels.get("pid"), Some("4242"));
        assert_eq!(sample.labels.get("command"), Some("srv"));
        assert!(sample.metric.starts_with("leakscope_"));
    }
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(types, helps);
    assert!(matches!(
        scrape
            .samples
            .iter()
            .find(|s| s.metric == "leakscope_iterations_total")
            .unwrap()
            .value,
        Value::Counter(_)
    ));
}

#[test]
fn a_leak_shows_as_its_verdict_rate_and_live_count() {
    let scrape = parse(&render(&view(100, Some(1))));
    let fd = [("class", "fd")];
    assert_eq!(
        value(
            &scrape,
            "leakscope_verdict",
            &[("class", "fd"), ("verdict", "leak")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &scrape,
            "leakscope_verdict",
            &[("class", "fd"), ("verdict", "no-leak")]
        ),
        0.0
    );
    let rate = value(&scrape, "leakscope_leak_rate_per_iteration", &fd);
    assert!((rate - 1.0).abs() < 0.01, "{rate}");
    assert_eq!(value(&scrape, "leakscope_live_fds", &[]), 100.0);
    assert_eq!(value(&scrape, "leakscope_iterations_total", &[]), 100.0);
    assert_eq!(value(&scrape, "leakscope_lost_events_total", &[]), 0.0);
    assert_eq!(value(&scrape, "leakscope_final", &[]), 0.0);
    // One current verdict per class.
    for class in ["fd", "mmap", "brk", "rss", "files", "watches"] {
        let current: f64 = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "leakscope_verdict" && s.labels.get("class") == Some(class))
            .map(|s| match s.value {
                Value::Gauge(v) => v,
                _ => panic!(),
            })
            .sum();
        assert_eq!(current, 1.0, "{class}");
    }
    // Byte rates for the byte classes only.
    assert!(
        value(
            &scrape,
            "leakscope_leak_rate_bytes_per_iteration",
            &[("class", "mmap")]
        )
        .is_finite()
    );
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.metric == "leakscope_leak_rate_bytes_per_iteration"
                && s.labels.get("class") == Some("fd"))
    );
}

#[test]
fn a_clean_loop_has_no_leak_verdict() {
    let scrape = parse(&render(&view(100, None)));
    assert_eq!(
        value(
            &scrape,
            "leakscope_verdict",
            &[("class", "fd"), ("verdict", "leak")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &scrape,
            "leakscope_verdict",
            &[("class", "fd"), ("verdict", "no-leak")]
        ),
        1.0
    );
    assert_eq!(value(&scrape, "leakscope_live_fds", &[]), 0.0);
}

#[test]
fn too_few_iterations_are_no_verdict_yet() {
    let few = view(3, Some(1));
    assert!(few.too_few_iterations());
    let scrape = parse(&render(&few));
    assert_eq!(
        value(
            &scrape,
            "leakscope_verdict",
            &[("class", "fd"), ("verdict", "leak")]
        ),
        0.0
    );
    let lines = crate::watch::text::render(&few);
    assert_eq!(lines.len(), 7, "{lines:#?}");
    assert!(lines[1].contains("too few iterations yet"), "{}", lines[1]);
}

#[test]
fn label_values_escape_quotes_backslashes_and_newlines() {
    assert_eq!(escape("my \"srv\"\\x\n"), "my \\\"srv\\\"\\\\x\\n");
}

#[test]
fn numbers_use_the_formats_spelling() {
    assert_eq!(number(f64::NAN), "NaN");
    assert_eq!(number(f64::INFINITY), "+Inf");
    assert_eq!(number(-2.5), "-2.5");
    assert_eq!(number(1e21), "1000000000000000000000");
}

#[test]
fn leakscope_own_resident_set_is_a_gauge() {
    let mut live = view(20, None);
    live.own_rss_bytes = Some(48 << 20);
    let scrape = parse(&render(&live));
    assert_eq!(
        value(&scrape, "leakscope_self_resident_bytes", &[("pid", "4242")]),
        (48u64 << 20) as f64
    );
}
