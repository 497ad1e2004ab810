//! `leakscope attach`: a process that was already running and already held leaked fds.

use std::{process::Command, time::Duration};

use leakscope_tests::{assert_rate, class, fixture, leakscope_json};

#[test]
fn attach_sees_the_leak_of_a_running_process_and_knows_what_it_held_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = Command::new(fixture("leaky"))
        .args(["fd-slow", "100000"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300)); // it leaks ~150 fds before we attach
    let pid = target.id().to_string();
    let traced = leakscope_json(
        "attach",
        &["--pid", &pid, "--duration", "2"],
        &[] as &[&str],
    );
    target.kill().unwrap();
    target.wait().unwrap();

    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert_eq!(
        traced.report["target"]["pid"].as_u64(),
        Some(target.id() as u64)
    );
    assert_eq!(traced.report["target"]["still_running"], true);
    assert!(traced.report["target"]["exit_code"].is_null());
    // The target inherited this test's fd limit; attach reads it from /proc.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    assert_eq!(traced.report["target"]["fd_limit"], limit.rlim_cur);
    let iterations = traced.report["iterations"]["count"].as_u64().unwrap();
    assert!(
        iterations > 300,
        "about 2 s / 2 ms iterations, got {iterations}"
    );
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak");
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fds per iteration");
    assert!(
        leakscope_tests::resource(&fd["sites"][0]["site"]).ends_with("/data.txt (kept by dup)")
    );
    // What it held before the attach (~150 leaked fds) was read from /proc: live at the
    // end beside the traced leak, and never mistaken for the release of something unknown.
    let traced_leak = fd["sites"][0]["leaked"].as_u64().unwrap();
    assert!(
        fd["live_at_exit"].as_u64().unwrap() >= traced_leak + 100,
        "{fd}"
    );
    assert_eq!(traced.report["unknown_releases"], 0);
}

#[test]
fn attach_ends_when_the_process_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = Command::new(fixture("leaky"))
        .args(["fd-slow", "1500"])
        .arg(dir.path())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let pid = target.id().to_string();
    // No --duration: tracing lasts until the process is gone (about 3 s more: long enough
    // that it is still running once the probes are loaded, even on a busy machine).
    let traced = leakscope_json("attach", &["--pid", &pid], &[] as &[&str]);
    target.wait().unwrap();
    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert_eq!(traced.report["target"]["still_running"], false);
    assert!(
        traced.report["target"]["exit_code"].is_null(),
        "only the parent learns it"
    );
    assert_eq!(traced.report["counts"]["exit"], 1);
}
