//! `--heap` runs ended by a signal to leakscope. The allocator's uprobes and uretprobe are
//! links to the target's libc, made after it exec'd: they must go with leakscope's other
//! programs however it ends, the target must not be left behind, and a single SIGINT or
//! SIGTERM must still give the full report, heap class included (exit status 0).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use leakscope_tests::{
    assert_rate, fixture, leakscope,
    lifecycle::{
        Watched, assert_ended_by, assert_gone, assert_probes_gone, read_report,
        wait_for_heap_probes,
    },
};
use rstest::rstest;

const LONG: Duration = Duration::from_secs(30);

/// `leakscope run --heap --iteration-symbol iteration_marker --json JSON -- heap_small N
/// 2000`: N iterations 2 ms apart, each leaking 30 bytes from `leak_thirty`.
fn heap_run(json: &Path, iterations: u64) -> Watched {
    let mut command = Command::new(leakscope());
    command
        .args(["run", "--heap", "--iteration-symbol", "iteration_marker"])
        .arg("--json")
        .arg(json)
        .arg("--")
        .arg(fixture("nofp/heap_small"))
        .args([iterations.to_string(), "2000".into()]);
    Watched::start(command, Stdio::null())
}

/// The target: leakscope's only child (the fixture, exec'd).
fn child_of(leakscope: u32) -> u32 {
    let start = Instant::now();
    loop {
        let children: Vec<u32> = std::fs::read_dir(format!("/proc/{leakscope}/task"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|text| {
                text.split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        if let [child] = children[..] {
            return child;
        }
        assert!(
            start.elapsed() < LONG,
            "leakscope {leakscope} has children {children:?}, not one target"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[rstest]
#[case::sigint(libc::SIGINT, "SIGINT")]
#[case::sigterm(libc::SIGTERM, "SIGTERM")]
fn a_stop_signal_during_a_heap_run_reports_the_heap_leak_and_leaves_no_probe_or_target(
    #[case] signal: libc::c_int,
    #[case] name: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // 100,000 iterations, over three minutes: only the signal ends this run.
    let mut watched = heap_run(&json, 100_000);
    let probes = wait_for_heap_probes(watched.pid(), LONG);
    let target = child_of(watched.pid());
    // Some hundreds of iterations, for a verdict on what was collected.
    std::thread::sleep(Duration::from_millis(1500));
    watched.signal(signal);
    let status = watched.wait(LONG);
    // One stop signal during tracing keeps the usual status.
    assert_eq!(status.code(), Some(0), "{name}: {}", watched.stderr_text());
    let report = read_report(&json, &watched);
    assert_eq!(report["target"]["pid"], target, "{name}");
    assert_eq!(report["target"]["exit_signal"], signal, "{name}");
    let ended = &report["ended"];
    assert_eq!(ended["how"], "target-killed", "{name}: {ended}");
    assert_eq!(ended["interrupted"]["signal"], name, "{ended}");
    assert_eq!(ended["interrupted"]["count"], 1, "{ended}");
    // What was collected until the signal: the 30 bytes per iteration, at leak_thirty.
    let heap = &report["classes"]["heap"];
    assert_eq!(heap["verdict"], "leak", "{name}: {heap}");
    assert_rate(
        &heap["bytes_per_iteration"],
        30.0,
        "heap bytes per iteration",
    );
    assert_eq!(heap["unrecorded"], 0, "{name}: {heap}");
    assert_eq!(heap["sites"][0]["site"], "leak_thirty", "{name}: {heap}");
    assert!(
        report["iterations"]["count"].as_u64().unwrap() >= 100,
        "{name}: {}",
        report["iterations"]
    );
    assert_gone(target, Duration::from_secs(1), name);
    assert_probes_gone(&probes, name);
}

#[test]
fn sigkill_during_a_heap_run_leaves_no_uprobe_and_no_frozen_target() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // 1,000 iterations, about 2.5 s: the target outlives leakscope and ends by itself.
    let mut watched = heap_run(&json, 1000);
    let probes = wait_for_heap_probes(watched.pid(), LONG);
    let target = child_of(watched.pid());
    std::thread::sleep(Duration::from_millis(300));
    watched.signal(libc::SIGKILL);
    let status = watched.wait(LONG);
    assert_ended_by(status, libc::SIGKILL, &watched);
    // Nothing can catch SIGKILL, and nothing is needed: the kernel drops the links and the
    // programs with leakscope's last fd.
    assert_probes_gone(&probes, "SIGKILL");
    assert_gone(target, Duration::from_secs(10), "target after SIGKILL");
}
