//! Pairing in the kernel: an open whose fd is closed next crosses the ring as one record
//! with its close. The ledger must see exactly what it sees when every call is its own
//! record (`LEAKSCOPE_NO_PAIR=1`), so each workload here runs both ways and the reports
//! must agree on every count, verdict, rate, site and lifetime in iterations; and the cases
//! that could fool pairing (a fork, an exec, threads, an fd kept while the process idles)
//! also get their exact numbers.

use std::{path::Path, process::Command, time::Duration};

use leakscope_tests::{
    Traced, assert_rate, class,
    compare::{essentials, extract_unchanged_by, without_dir, without_rss},
    fixture, leakscope_json_with_env,
};
use rstest::rstest;

/// The environment of an unpaired run.
fn no_pair() -> [(&'static str, &'static Path); 1] {
    [("LEAKSCOPE_NO_PAIR", Path::new("1"))]
}

/// `fixture MODE N DIR` traced with `options`, paired or not; its essentials with the
/// run's own directory named DIR.
fn traced(name: &str, mode: &str, n: &str, options: &[&str], paired: bool) -> (Traced, String) {
    // Each run in a fresh directory: the fixtures' files are created by their first open.
    let dir = tempfile::tempdir().unwrap();
    let command = [
        fixture(name).to_string_lossy().into_owned(),
        mode.into(),
        n.into(),
        dir.path().to_string_lossy().into_owned(),
    ];
    let env: &[(&str, &Path)] = if paired { &[] } else { &no_pair() };
    let traced = leakscope_json_with_env("run", options, &command, env);
    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    let text = without_dir(&without_rss(essentials(&traced)).to_string(), dir.path());
    (traced, text)
}

#[rstest]
#[case::fd_leak("fd", "300", &["--iteration-symbol", "iteration_marker"])]
#[case::bounded_cache("cache", "300", &["--iteration-symbol", "iteration_marker"])]
#[case::churn("churn", "400", &["--iteration-symbol", "iteration_marker"])]
#[case::brk("brk", "300", &["--iteration-symbol", "iteration_marker"])]
#[case::fd_leak_path_boundaries("fd", "300", &["--iteration-path", "/tick"])]
#[case::churn_path_boundaries("churn", "400", &["--iteration-path", "/tick"])]
#[case::fd_leak_detected_iterations("fd", "300", &[])]
fn pairing_changes_no_result(
    #[case] mode: &str,
    #[case] iterations: &str,
    #[case] options: &[&str],
) {
    let (_, paired) = traced("leaky", mode, iterations, options, true);
    let (_, unpaired) = traced("leaky", mode, iterations, options, false);
    assert_eq!(paired, unpaired, "{mode} {options:?}");
}

#[test]
fn pairing_changes_no_result_of_extract() {
    let paired = extract_unchanged_by(&no_pair());
    assert_eq!(class(&paired, "files")["verdict"], "leak");
}

/// The fd class of a trap that must not leak: runs 5 times paired, each the same as the
/// unpaired run and without a leak.
fn no_leak_either_way(mode: &str, n: &str) -> Traced {
    let options = ["--iteration-symbol", "iteration_marker"];
    let (reference, unpaired) = traced("pair_traps", mode, n, &options, false);
    assert_eq!(class(&reference, "fd")["verdict"], "no-leak", "{mode}");
    for run in 0..5 {
        let (traced, paired) = traced("pair_traps", mode, n, &options, true);
        assert_eq!(paired, unpaired, "{mode}, run {run}");
        assert_eq!(
            class(&traced, "fd")["verdict"],
            "no-leak",
            "{mode}, run {run}"
        );
        assert_eq!(traced.report["unknown_releases"], 0, "{mode}, run {run}");
    }
    reference
}

#[test]
fn an_open_then_a_fork_whose_child_closes_the_fd() {
    let traced = no_leak_either_way("fork", "100");
    assert_eq!(traced.report["counts"]["fork"], 100);
    assert_eq!(traced.report["iterations"]["count"], 100);
}

#[test]
fn an_open_then_an_exec() {
    let traced = no_leak_either_way("exec", "100");
    assert_eq!(traced.report["counts"]["exec"], 2);
    assert_eq!(traced.report["iterations"]["count"], 100);
}

#[test]
fn an_fd_opened_by_one_thread_and_closed_by_another() {
    let traced = no_leak_either_way("threads", "100");
    assert_eq!(traced.report["iterations"]["count"], 100);
}

#[test]
fn an_fd_kept_while_its_process_pauses_is_a_leak_either_way() {
    let options = ["--iteration-symbol", "iteration_marker"];
    let (unpaired_run, unpaired) = traced("pair_traps", "leak", "300", &options, false);
    let (paired_run, paired) = traced("pair_traps", "leak", "300", &options, true);
    assert_eq!(paired, unpaired);
    for traced in [&unpaired_run, &paired_run] {
        let fd = class(traced, "fd");
        assert_eq!(fd["verdict"], "leak", "{fd}");
        assert_rate(&fd["leaked_per_iteration"], 1.0, "fds per iteration");
    }
}

/// A file created by one process and renamed by another while the creator still has it
/// open: the files ledger is shared by every process, so the creation must reach it before
/// the rename (a creating open is never held back), or the renamed files left on disk
/// would go unseen. Every iteration leaves one file, either way.
#[test]
fn a_file_created_by_one_process_and_renamed_by_another_is_a_files_leak_either_way() {
    let options = ["--iteration-symbol", "iteration_marker"];
    let (unpaired_run, unpaired) = traced("pair_traps", "rename-by-other", "200", &options, false);
    for run in 0..3 {
        let (paired_run, paired) = traced("pair_traps", "rename-by-other", "200", &options, true);
        assert_eq!(paired, unpaired, "run {run}");
        for traced in [&unpaired_run, &paired_run] {
            let files = class(traced, "files");
            assert_eq!(files["verdict"], "leak", "run {run}: {files}");
            assert_rate(&files["leaked_per_iteration"], 1.0, "files per iteration");
            assert_eq!(class(traced, "fd")["verdict"], "no-leak", "run {run}");
        }
    }
}

/// `pair_traps idle`: opens once on SIGUSR1, then sleeps until killed.
fn idle_target(dir: &Path) -> std::process::Child {
    Command::new(fixture("pair_traps"))
        .args(["idle", "0"])
        .arg(dir)
        .spawn()
        .unwrap()
}

/// An fd opened while leakscope is attached, by a process that then only sleeps: the open
/// is the process's last record, held in the kernel when tracing ends, and must be counted
/// live.
#[test]
fn an_fd_opened_by_a_process_that_then_idles_is_live_when_an_attach_ends() {
    for paired in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut target = idle_target(dir.path());
        let pid = target.id();
        // Opens once leakscope has surely attached (start-up takes about 0.3 s).
        let signaller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            nix_kill(pid);
        });
        let pid_text = pid.to_string();
        let env: &[(&str, &Path)] = if paired { &[] } else { &no_pair() };
        let traced = leakscope_json_with_env(
            "attach",
            &["--pid", &pid_text, "--duration", "3"],
            &[] as &[&str],
            env,
        );
        signaller.join().unwrap();
        target.kill().unwrap();
        target.wait().unwrap();
        assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
        assert_eq!(traced.report["lost_events"], 0);
        assert_eq!(traced.report["counts"]["openat"], 1, "paired {paired}");
        let fd = class(&traced, "fd");
        assert_eq!(fd["acquired"], 1, "paired {paired}: {fd}");
        assert_eq!(fd["released"], 0, "paired {paired}: {fd}");
        // Held when tracing stopped, and acquired while traced.
        let held: Vec<_> = traced.report["held_at_exit"]["fds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|held| leakscope_tests::resource(&held["site"]).ends_with("/idle.txt"))
            .collect();
        assert_eq!(
            held.len(),
            1,
            "paired {paired}: {}",
            traced.report["held_at_exit"]
        );
        assert_eq!(held[0]["inherited"], false, "paired {paired}");
    }
}

fn nix_kill(pid: u32) {
    // SAFETY: kill(2) with a pid this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR1) }, 0);
}

/// `leakscope_live_fds` in a watch-mode metrics file.
fn live_fds(metrics: &Path) -> f64 {
    let text = std::fs::read_to_string(metrics).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == "leakscope_live_fds")
        .unwrap_or_else(|| panic!("no leakscope_live_fds in:\n{text}"));
    match sample.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("leakscope_live_fds: {other:?}"),
    }
}

/// The same open, seen by watch mode's next view while the process still idles: the view
/// reads the kernel's slot too.
#[test]
fn an_fd_opened_by_a_process_that_then_idles_is_live_in_the_next_watch_view() {
    for paired in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut target = idle_target(dir.path());
        let pid = target.id();
        let metrics = dir.path().join("leakscope.prom");
        let mut tracer = Command::new(leakscope_tests::leakscope());
        tracer
            .args(["attach", "--pid", &pid.to_string(), "--duration", "6"])
            .args(["--interval", "1", "--metrics"])
            .arg(&metrics)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if !paired {
            tracer.envs(no_pair());
        }
        let mut tracer = tracer.spawn().unwrap();
        let start = std::time::Instant::now();
        while !metrics.exists() {
            assert!(start.elapsed() < Duration::from_secs(5), "no metrics file");
            std::thread::sleep(Duration::from_millis(50));
        }
        let before = live_fds(&metrics);
        nix_kill(pid);
        // Two views later.
        std::thread::sleep(Duration::from_millis(2500));
        let after = live_fds(&metrics);
        tracer.kill().unwrap();
        tracer.wait().unwrap();
        target.kill().unwrap();
        target.wait().unwrap();
        assert_eq!(after, before + 1.0, "paired {paired}");
    }
}

/// A close that fails never pairs with the open held before it: refused by seccomp (the
/// fd stays) or failed after freeing the fd (a FUSE flush's EIO: a release all the same).
/// Either way the reports are those of unpaired runs.
#[rstest]
#[case::seccomp("seccomp")]
#[case::fuse_eio("fuse-eio")]
fn a_failed_close_gives_the_same_report_paired_or_not(#[case] mode: &str) {
    let options = ["--iteration-symbol", "iteration_marker"];
    let (paired_run, paired) = traced("close_fail", mode, "300", &options, true);
    let (_, unpaired) = traced("close_fail", mode, "300", &options, false);
    assert_eq!(paired, unpaired, "{mode}");
    let expected = if mode == "seccomp" { "leak" } else { "no-leak" };
    assert_eq!(class(&paired_run, "fd")["verdict"], expected, "{mode}");
}
