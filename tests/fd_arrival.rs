//! Fds that arrive other than as a return value, with the real probes: SCM_RIGHTS over a
//! socket (recvmsg, recvmmsg), and one leak per iteration from each newer fd source.

use rstest::rstest;

use leakscope_tests::{
    Source, assert_ran, assert_rate, assert_verdicts, class, counts_beyond_baseline, diagnose,
    fixture, leakscope_json, verdicts,
};

const RECEIVED_SITE: &str = "fd received over a socket (SCM_RIGHTS)";
const N: usize = 500;

fn fd_pass(mode: &str) -> leakscope_tests::Traced {
    let dir = tempfile::tempdir().unwrap();
    let command = vec![
        fixture("fd_pass").to_string_lossy().into_owned(),
        mode.into(),
        N.to_string(),
    ];
    let traced = diagnose(Source::Symbol, dir.path(), &command);
    assert_ran(&traced, N);
    traced
}

/// The site's leak rate, or 0 when the site is not listed.
fn site_rate(traced: &leakscope_tests::Traced, site: &str) -> f64 {
    class(traced, "fd")["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| leakscope_tests::resource(&s["site"]) == site)
        .and_then(|s| s["leaked_per_iteration"].as_f64())
        .unwrap_or(0.0)
}

fn assert_three_leak_per_iteration(mode: &str, call: &str) {
    let traced = fd_pass(mode);
    assert_verdicts(&traced, ["leak", "no-leak", "flat", "flat"], mode);
    let fd = class(&traced, "fd");
    assert_rate(&fd["leaked_per_iteration"], 3.0, "fds leaked per iteration");
    assert!(
        (site_rate(&traced, RECEIVED_SITE) - 2.0).abs() <= 0.1,
        "received site: {}",
        fd["sites"]
    );
    assert!(
        (site_rate(&traced, "socket") - 1.0).abs() <= 0.05,
        "socket site: {}",
        fd["sites"]
    );
    // One record per fd-carrying call, however many messages it received.
    assert_eq!(traced.counts().get(call), Some(&(N as i64)), "{call}");
}

#[test]
fn fds_received_with_recvmsg_leak_three_per_iteration() {
    assert_three_leak_per_iteration("leak-recvmsg", "recvmsg");
}

#[test]
fn fds_received_with_recvmmsg_leak_three_per_iteration() {
    assert_three_leak_per_iteration("leak-recvmmsg", "recvmmsg");
}

#[test]
fn received_fds_that_are_closed_do_not_leak_five_times_out_of_five() {
    for run in 0..5 {
        let traced = fd_pass("clean");
        assert_eq!(
            verdicts(&traced)[0],
            "no-leak",
            "run {run}: {}",
            class(&traced, "fd")
        );
        // Every close of a received fd found its record.
        assert_eq!(traced.report["unknown_releases"], 0, "run {run}");
        assert_eq!(traced.counts().get("recvmsg"), Some(&(N as i64)));
    }
}

const SOURCES_N: i64 = 50;

/// The sources the fixture found working here (it names the ones it skips on stderr).
fn working_sources(report: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(report).expect("fd_sources wrote no report");
    text.lines().map(str::to_string).collect()
}

#[test]
fn each_newer_fd_source_is_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("working");
    let report_arg = report.to_string_lossy().into_owned();
    let counts = counts_beyond_baseline("fd_sources", SOURCES_N as u64, &[&report_arg]);
    let working = working_sources(&report);
    eprintln!("working fd sources: {working:?}");
    assert!(
        working.len() >= 5,
        "too few sources work here to mean anything: {working:?}"
    );
    let mut expected: std::collections::BTreeMap<String, i64> = working
        .iter()
        .map(|name| (name.clone(), SOURCES_N))
        .collect();
    // Each clone3 child, and each clone child (one with CLONE_PIDFD, one of a plain fork,
    // which is not a clone the probes record), is a traced process that exits at once.
    let children = SOURCES_N * (working.contains(&"clone3".to_string()) as i64)
        + 2 * SOURCES_N * (working.contains(&"clone".to_string()) as i64);
    if children > 0 {
        expected.insert("fork".into(), children);
        expected.insert("exit".into(), children);
    }
    assert_eq!(counts, expected);
}

#[test]
fn each_newer_fd_source_leaks_one_per_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("working");
    let command = vec![
        fixture("fd_sources").to_string_lossy().into_owned(),
        SOURCES_N.to_string(),
        report.to_string_lossy().into_owned(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(
        traced.report["target"]["exit_code"],
        0,
        "{}",
        traced.stderr()
    );
    let working = working_sources(&report);
    assert_eq!(verdicts(&traced)[0], "leak", "{}", class(&traced, "fd"));
    assert_rate(
        &class(&traced, "fd")["leaked_per_iteration"],
        working.len() as f64,
        "fds leaked per iteration",
    );
}

/// More control data than the kernel side copies (64 fds in one message), or more
/// messages than it copies (9 in one recvmmsg): the ledger misses fds, so every verdict
/// must be inconclusive with that reason, never a confident answer.
#[rstest]
#[case::wide("wide")]
#[case::batch("batch")]
fn fds_past_the_copy_caps_make_the_run_inconclusive(#[case] mode: &str) {
    let traced = fd_pass(mode);
    assert_eq!(
        verdicts(&traced),
        ["inconclusive"; 4].map(String::from),
        "{mode}"
    );
    let why = class(&traced, "fd")["why"].as_str().unwrap();
    assert!(why.contains("could not be read in full"), "{mode}: {why}");
}

/// Control data without fds (SCM_CREDENTIALS on every message) is dropped in the kernel:
/// no record, and nothing leaks.
#[test]
fn control_data_without_fds_sends_nothing() {
    let traced = fd_pass("credentials");
    assert_eq!(traced.counts().get("recvmsg"), None);
    assert_eq!(verdicts(&traced)[0], "no-leak", "{}", class(&traced, "fd"));
}
