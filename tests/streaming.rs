//! Bounded memory. With a marker, leakscope folds away what can no longer change a
//! verdict while it traces, so its memory follows what is live, not the events; and the
//! report is the same as when it keeps every record (`LEAKSCOPE_NO_FOLD=1`).

use std::path::Path;

use leakscope_tests::{
    Traced, assert_rate, class,
    compare::{assert_peak_rss_within, essentials, extract_unchanged_by, without_dir, without_rss},
    fixture, leakscope_json, leakscope_json_with_env,
};
use rstest::rstest;

/// 1,000,000 opens and closes (2,000,000 events) with a marker every 1,000.
#[test]
fn two_million_events_with_a_marker_stay_within_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.txt");
    std::fs::write(&file, "x").unwrap();
    let command = [
        fixture("open_close").to_string_lossy().into_owned(),
        "1000000".into(),
        file.to_string_lossy().into_owned(),
        "1000".into(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    let report = &traced.report;
    assert_eq!(report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(report["iterations"]["count"], 1000);
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "no-leak", "{fd}");
    // Every open counted, although almost none was kept (plus the loader's few).
    let acquired = fd["acquired"].as_u64().unwrap();
    assert!((1_000_000..1_000_010).contains(&acquired), "{acquired}");
    assert_eq!(fd["lifetime_ns"]["count"].as_u64(), Some(acquired));
    assert_peak_rss_within(&traced, 64);
}

#[rstest]
#[case::fd_leak("fd", "300")]
#[case::bounded_cache("cache", "300")]
#[case::churn("churn", "400")]
#[case::brk("brk", "300")]
fn folding_changes_no_result(
    #[case] mode: &str,
    #[case] iterations: &str,
    #[values("--iteration-symbol", "--iteration-path")] source: &str,
    #[values(None, Some("16"))] max_boundaries: Option<&str>,
) {
    // Each run in a fresh directory: the fixture's files are created by its first open.
    // With a bound of 16, both runs are judged on every 16th boundary.
    let run = |more_env: &[(&str, &Path)]| {
        let mut env: Vec<(&str, &Path)> = more_env.to_vec();
        if let Some(max) = max_boundaries {
            env.push(("LEAKSCOPE_MAX_BOUNDARIES", Path::new(max)));
        }
        let dir = tempfile::tempdir().unwrap();
        let command = [
            fixture("leaky").to_string_lossy().into_owned(),
            mode.into(),
            iterations.into(),
            dir.path().to_string_lossy().into_owned(),
        ];
        let marker = match source {
            "--iteration-symbol" => "iteration_marker",
            _ => "/tick",
        };
        let options = [source, marker];
        let traced = leakscope_json_with_env("run", &options, &command, &env);
        assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
        let stride = traced.report["iterations"]["stride"].as_u64();
        assert_eq!(stride, Some(if max_boundaries.is_some() { 16 } else { 1 }));
        // Sites name the directory: each run's own, random name, which the site's name
        // pattern may or may not have recognised as random.
        without_dir(&without_rss(essentials(&traced)).to_string(), dir.path())
    };
    let folded = run(&[]);
    let kept = run(&[("LEAKSCOPE_NO_FOLD", Path::new("1"))]);
    assert_eq!(folded, kept, "{mode} {source} {max_boundaries:?}");
}

/// The built-in job, whose files live from one extraction to the next, with a temporary
/// file leaked every iteration.
#[test]
fn folding_changes_no_result_of_extract() {
    let folded = extract_unchanged_by(&[("LEAKSCOPE_NO_FOLD", Path::new("1"))]);
    assert_eq!(class(&folded, "files")["verdict"], "leak");
}

/// `leaky MODE N` under `--iteration-symbol`, keeping at most `2 × max` boundaries.
fn leaky_at_resolution(mode: &str, iterations: &str, max: &str) -> Traced {
    let dir = tempfile::tempdir().unwrap();
    let command = [
        fixture("leaky").to_string_lossy().into_owned(),
        mode.into(),
        iterations.into(),
        dir.path().to_string_lossy().into_owned(),
    ];
    let traced = leakscope_json_with_env(
        "run",
        &["--iteration-symbol", "iteration_marker"],
        &command,
        &[("LEAKSCOPE_MAX_BOUNDARIES", Path::new(max))],
    );
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(
        traced.report["iterations"]["count"],
        iterations.parse::<u64>().unwrap(),
        "{}",
        traced.stderr()
    );
    traced
}

/// Judged on every stride-th boundary (`LEAKSCOPE_MAX_BOUNDARIES`), a leak keeps its verdict
/// and its rate per iteration, and the JSON says the stride.
#[rstest]
#[case::brk("brk", "4000", "256", 8, "brk", "bytes_per_iteration", 4096.0)]
#[case::mmap(
    "mmap-thread",
    "4000",
    "256",
    8,
    "mmap",
    "bytes_leaked_per_iteration",
    65536.0
)]
#[case::fd("fd", "1000", "32", 16, "fd", "leaked_per_iteration", 1.0)]
fn a_leak_judged_at_a_stride_keeps_its_rate(
    #[case] mode: &str,
    #[case] iterations: &str,
    #[case] max: &str,
    #[case] stride: u64,
    #[case] name: &str,
    #[case] rate_key: &str,
    #[case] rate: f64,
) {
    let traced = leaky_at_resolution(mode, iterations, max);
    let report = &traced.report;
    assert_eq!(
        report["iterations"]["stride"], stride,
        "{}",
        report["iterations"]
    );
    let judged = report["iterations"]["judged_boundaries"].as_u64().unwrap();
    let max: u64 = max.parse().unwrap();
    // The kept ones (fewer than twice the bound), and the last.
    assert!(judged <= 2 * max, "{judged} boundaries judged");
    let leaking = class(&traced, name);
    assert_eq!(leaking["verdict"], "leak", "{leaking}");
    assert_rate(&leaking[rate_key], rate, &format!("{name} {rate_key}"));
    assert!(
        traced
            .stdout()
            .contains(&format!("one every {stride} iterations")),
        "{}",
        traced.stdout()
    );
}

/// A loop that leaks nothing, judged at a stride, is never called a leak: five runs.
#[rstest]
#[case::churn("churn")]
#[case::bounded_cache("cache")]
fn no_leak_judged_at_a_stride_is_never_a_leak(#[case] mode: &str) {
    for run in 0..5 {
        let traced = leaky_at_resolution(mode, "4000", "256");
        assert_eq!(traced.report["iterations"]["stride"], 8);
        for name in ["fd", "mmap", "brk", "rss", "files", "watches"] {
            let verdict = class(&traced, name)["verdict"].as_str().unwrap_or("?");
            assert_ne!(
                verdict,
                "leak",
                "run {run} of {mode}: {name}: {}",
                class(&traced, name)
            );
        }
        // The cache fills within the first 32 iterations, 4 judged boundaries: at that
        // resolution its filling may look like one step ("no-leak") rather than a climb
        // that stopped ("plateau"); either is right, a leak is not.
        let fd = class(&traced, "fd")["verdict"].as_str().unwrap_or("?");
        let expected: &[&str] = if mode == "cache" {
            &["plateau", "no-leak"]
        } else {
            &["no-leak"]
        };
        assert!(expected.contains(&fd), "run {run} of {mode}: fd is {fd}");
    }
}
