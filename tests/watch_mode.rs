//! Watch mode (`--interval`, `--metrics`): while a leaking fixture runs, the verdicts so far
//! appear on stderr every interval and in a Prometheus metrics file that parses and shows
//! the leak rising; a clean loop never shows a leak, in any interval.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use leakscope_tests::{fixture, leakscope};
use prometheus_parse::{Scrape, Value};

const CLASSES: [&str; 6] = ["fd", "mmap", "brk", "rss", "files", "watches"];

/// The metrics file, parsed: every sample line must be one the parser read.
fn read_metrics(path: &Path) -> Scrape {
    let text = std::fs::read_to_string(path).unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(scrape.samples.len(), lines, "unparsed lines in:\n{text}");
    scrape
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

fn verdict(scrape: &Scrape, class: &str, verdict: &str) -> f64 {
    value(
        scrape,
        "leakscope_verdict",
        &[("class", class), ("verdict", verdict)],
    )
}

/// Waits until `path` exists (the first interval wrote it), at most `limit`.
fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The interval blocks leakscope appended to stderr (not a terminal here): their headers.
fn block_headers(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(" so far: pid "))
        .collect()
}

/// The class lines of the interval blocks that said "leak".
fn leak_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            let l = l.trim_end();
            CLASSES.iter().any(|c| l.trim_start().starts_with(c)) && l.ends_with(" leak")
        })
        .collect()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn attach_with_an_interval_shows_the_leak_as_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = Command::new(fixture("leaky"))
        .args(["fd-paced", "100000"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let metrics = dir.path().join("leakscope.prom");
    let pid = target.id().to_string();
    let tracer = Command::new(leakscope())
        .args([
            "attach",
            "--pid",
            &pid,
            "--duration",
            "6",
            "--interval",
            "1",
        ])
        .args(["--iteration-symbol", "iteration_marker", "--metrics"])
        .arg(&metrics)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Two reads about 2 s apart while it runs: the live fds rise.
    wait_for(&metrics, Duration::from_secs(5));
    let first = read_metrics(&metrics);
    std::thread::sleep(Duration::from_secs(2));
    let second = read_metrics(&metrics);
    let output = tracer.wait_with_output().unwrap();
    target.kill().unwrap();
    target.wait().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");

    let (fds1, fds2) = (
        value(&first, "leakscope_live_fds", &[]),
        value(&second, "leakscope_live_fds", &[]),
    );
    // 50 iterations a second, one fd each: about 100 more in 2 s.
    assert!(fds2 >= fds1 + 50.0, "live fds {fds1} then {fds2}");
    assert_eq!(value(&first, "leakscope_final", &[]), 0.0);
    for sample in &second.samples {
        assert_eq!(sample.labels.get("pid"), Some(pid.as_str()));
        assert_eq!(sample.labels.get("command"), Some("leaky"));
    }

    let blocks = block_headers(&stderr);
    assert!(blocks.len() >= 3, "{} blocks:\n{stderr}", blocks.len());
    // Appended, each under a timestamp, one line per class.
    for class in CLASSES {
        let lines = stderr
            .lines()
            .filter(|l| l.starts_with(&format!("  {class} ")))
            .count();
        assert_eq!(lines, blocks.len(), "{class}:\n{stderr}");
    }
    assert!(blocks.iter().all(|b| b.contains(" UTC ")), "{blocks:?}");

    // At the end: the final report's facts.
    let last = read_metrics(&metrics);
    assert_eq!(value(&last, "leakscope_final", &[]), 1.0);
    assert_eq!(verdict(&last, "fd", "leak"), 1.0, "{stderr}");
    let rate = value(
        &last,
        "leakscope_leak_rate_per_iteration",
        &[("class", "fd")],
    );
    assert!((rate - 1.0).abs() <= 0.05, "fd rate {rate}");
    let iterations = value(&last, "leakscope_iterations_total", &[]);
    assert!(iterations > 150.0, "about 6 s at 50 a second: {iterations}");
    assert_eq!(value(&last, "leakscope_lost_events_total", &[]), 0.0);
    assert!(
        !dir.path().join("leakscope.prom.tmp").exists(),
        "the temporary was renamed"
    );
}

/// `run --interval 1 --metrics FILE -- leaky MODE N DIR`.
fn run_watched(mode: &str, n: &str, dir: &Path, metrics: &Path) -> String {
    let output = Command::new(leakscope())
        .args(["run", "--interval", "1", "--metrics"])
        .arg(metrics)
        .args(["--iteration-symbol", "iteration_marker", "--"])
        .arg(fixture("leaky"))
        .args([mode, n])
        .arg(dir)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    stderr
}

#[test]
fn run_with_an_interval_shows_the_leak() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("run.prom");
    // 250 iterations at 20 ms: about 5 s.
    let stderr = run_watched("fd-paced", "250", dir.path(), &metrics);
    let blocks = block_headers(&stderr);
    assert!(blocks.len() >= 3, "{} blocks:\n{stderr}", blocks.len());
    assert!(
        stderr.contains("too few iterations yet") || !leak_lines(&stderr).is_empty(),
        "{stderr}"
    );
    let last = read_metrics(&metrics);
    assert_eq!(value(&last, "leakscope_final", &[]), 1.0);
    assert_eq!(verdict(&last, "fd", "leak"), 1.0, "{stderr}");
    assert_eq!(value(&last, "leakscope_iterations_total", &[]), 250.0);
    // The leak showed while it ran, not only at the end.
    assert!(
        leak_lines(&stderr)
            .iter()
            .any(|l| l.trim_start().starts_with("fd ")),
        "{stderr}"
    );
}

#[test]
fn a_clean_loop_never_shows_a_leak_in_any_interval() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("clean.prom");
        // 120 iterations at 20 ms: about 2.5 s, two intervals.
        let stderr = run_watched("churn-paced", "120", dir.path(), &metrics);
        assert!(
            !block_headers(&stderr).is_empty(),
            "round {round}: no interval:\n{stderr}"
        );
        assert!(
            leak_lines(&stderr).is_empty(),
            "round {round}: {:?}\n{stderr}",
            leak_lines(&stderr)
        );
        let last = read_metrics(&metrics);
        for class in CLASSES {
            assert_eq!(verdict(&last, class, "leak"), 0.0, "round {round} {class}");
        }
        assert_eq!(
            verdict(&last, "fd", "no-leak"),
            1.0,
            "round {round}: {stderr}"
        );
        let rate = value(
            &last,
            "leakscope_leak_rate_per_iteration",
            &[("class", "fd")],
        );
        assert!(rate.abs() < 0.05, "round {round}: fd rate {rate}");
    }
}

#[test]
fn a_metrics_file_in_a_missing_directory_is_refused_before_the_target_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let output = Command::new(leakscope())
        .args(["run", "--metrics", "/nonexistent-dir/leakscope.prom", "--"])
        .arg("touch")
        .arg(&marker)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("/nonexistent-dir/leakscope.prom"));
    assert!(!marker.exists(), "the target must not run");
}
