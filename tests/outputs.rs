//! Outputs and refusals checked before anything runs: `--json -` keeps stdout pure JSON, a
//! bad `--json` path stops the run before the target starts, and attach refuses what it
//! cannot trace.

use std::process::{Command, Output};

use leakscope_tests::leakscope;
use rstest::rstest;

fn assert_one_line(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{stderr}");
    assert!(lines[0].starts_with("leakscope: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "expected `{needle}` in: {stderr}"
    );
}

#[test]
fn json_on_stdout_is_pure_json_while_the_target_prints_to_stdout() {
    let output = Command::new(leakscope())
        .args(["run", "--json", "-", "--", "sh", "-c"])
        .arg("echo 'not json {'; echo second line; printf 'no newline'")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    assert_eq!(report["target"]["exit_code"], 0);
    assert_eq!(report["ended"]["how"], "target-exited");
    // The target's output and the text report went to stderr.
    assert!(
        stderr.contains("not json {") && stderr.contains("second line"),
        "{stderr}"
    );
    assert!(stderr.contains("answer:"), "{stderr}");
}

/// `bad`: a path under the test's directory, or `None` for the directory itself.
#[rstest]
#[case::in_a_missing_directory(Some("no-such-dir/report.json"))]
#[case::a_directory(None)]
fn a_bad_json_path_is_a_usage_error_and_the_target_never_runs(#[case] bad: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let bad = bad.map_or_else(|| dir.path().to_owned(), |path| dir.path().join(path));
    let output = Command::new(leakscope())
        .args(["run", "--json"])
        .arg(&bad)
        .args(["--", "touch"])
        .arg(&ran)
        .output()
        .unwrap();
    assert_one_line(&output, "--json");
    assert!(!ran.exists(), "the target ran");
}

#[test]
fn extract_checks_a_bad_json_path_before_it_prepares_anything() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(leakscope())
        .args(["extract", "--json"])
        .arg(dir.path().join("no-such-dir/r.json"))
        .output()
        .unwrap();
    assert_one_line(&output, "--json");
}

#[test]
fn attach_refuses_a_kernel_thread() {
    let output = Command::new(leakscope())
        .args(["attach", "--pid", "2"])
        .output()
        .unwrap();
    assert_one_line(&output, "kernel thread");
}

#[test]
fn attach_refuses_leakscope_itself_and_its_ancestors() {
    // `exec` makes leakscope the shell's pid: $$ is leakscope itself.
    let itself = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {} attach --pid $$", leakscope().display()))
        .output()
        .unwrap();
    assert_one_line(&itself, "leakscope itself");
    // Without exec, $$ is the shell that waits for leakscope.
    let parent = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} attach --pid $$; exit $?",
            leakscope().display()
        ))
        .output()
        .unwrap();
    assert_one_line(&parent, "ancestor");
    let own_test = Command::new(leakscope())
        .args(["attach", "--pid", &std::process::id().to_string()])
        .output()
        .unwrap();
    assert_one_line(&own_test, "ancestor");
}

#[test]
fn attach_with_user_is_a_usage_error() {
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let output = Command::new(leakscope())
        .args([
            "attach",
            "--pid",
            &target.id().to_string(),
            "--user",
            "nobody",
        ])
        .output()
        .unwrap();
    target.kill().unwrap();
    target.wait().unwrap();
    assert_one_line(&output, "--user");
}

#[test]
fn attach_refused_access_to_proc_is_exit_4_with_the_reason() {
    use std::os::unix::process::CommandExt as _;
    // Another user's process, and leakscope without CAP_SYS_PTRACE: /proc refuses the
    // links of its fds.
    let mut target = Command::new("sleep")
        .arg("30")
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    let output = Command::new("setpriv")
        .args(["--bounding-set", "-sys_ptrace"])
        .arg(leakscope())
        .args([
            "attach",
            "--pid",
            &target.id().to_string(),
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    target.kill().unwrap();
    target.wait().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("permission denied") && lines[0].contains("CAP_SYS_PTRACE"),
        "{stderr}"
    );
}

/// Every report says what leakscope itself cost: its peak RSS, how long the probes took to be
/// ready, and how long the report took after the target ended, each within sane bounds.
#[test]
fn the_report_states_leakscope_s_own_cost() {
    let output = Command::new(leakscope())
        .args(["run", "--json", "-", "--", "sh", "-c", "sleep 0.2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let own = &report["self"];
    let number = |key: &str| {
        own[key]
            .as_u64()
            .unwrap_or_else(|| panic!("self.{key} is not a number: {own}"))
    };
    let peak = number("peak_rss_bytes");
    assert!(
        (1 << 20..1 << 30).contains(&peak),
        "a peak RSS between 1 MiB and 1 GiB: {own}"
    );
    // Start-up is measured from the process start with clock-tick precision (10 ms).
    let startup = number("startup_ns");
    assert!(startup < 30_000_000_000, "ready within 30 s: {own}");
    let report_ns = number("report_ns");
    assert!(
        report_ns > 0 && report_ns < 30_000_000_000,
        "a report within 30 s of the end: {own}"
    );
}
