//! Bad input gets one clear line and the contract's exit status, never a panic; data already
//! collected is still reported.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use leakscope_tests::{fixture, leakscope, leakscope_json, world_runnable_copy};

fn leakscope_cmd(args: &[&str]) -> std::process::Output {
    Command::new(leakscope())
        .args(args)
        .output()
        .expect("cannot run leakscope")
}

fn assert_one_clear_line(stderr: &str, needle: &str) {
    assert!(
        !stderr.contains("panicked"),
        "leakscope panicked:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("leakscope: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "expected `{needle}` in: {stderr}"
    );
}

#[test]
fn non_root_gets_exit_4_and_one_clear_line() {
    // nobody could not reach the binary inside a clone in a private directory, nor start in it.
    let (dir, binary) = world_runnable_copy(&leakscope());
    let output = Command::new(binary)
        .current_dir(dir.path())
        .args(["run", "--", "/bin/true"])
        .uid(65534) // nobody: no CAP_BPF, no CAP_PERFMON
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert_one_clear_line(&stderr, "root");
}

#[test]
fn bad_flags_are_usage_errors() {
    let output = leakscope_cmd(&["run", "--no-such-flag", "--", "/bin/true"]);
    assert_eq!(output.status.code(), Some(2));
    let output = leakscope_cmd(&["run", "--ring-mib", "3", "--", "/bin/true"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("power of two"));
    for bytes in ["256", "20000", "1001"] {
        let output = leakscope_cmd(&["run", "--stack-bytes", bytes, "--", "/bin/true"]);
        assert_eq!(output.status.code(), Some(2), "--stack-bytes {bytes}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("multiple of 8 between 512 and 16384"),
            "--stack-bytes {bytes}"
        );
    }
}

#[test]
fn unknown_pid_is_a_usage_error() {
    let output = leakscope_cmd(&["attach", "--pid", "999999999"]);
    assert_eq!(output.status.code(), Some(2));
    assert_one_clear_line(
        &String::from_utf8_lossy(&output.stderr),
        "no process with pid 999999999",
    );
}

#[test]
fn missing_command_is_a_usage_error() {
    let output = leakscope_cmd(&["run", "--", "/nonexistent/program"]);
    assert_eq!(output.status.code(), Some(2));
    assert_one_clear_line(
        &String::from_utf8_lossy(&output.stderr),
        "/nonexistent/program",
    );
}

#[test]
fn unknown_iteration_symbol_lists_near_matches() {
    let brk = fixture("brk");
    let output = leakscope_cmd(&[
        "run",
        "--iteration-symbol",
        "mian",
        "--",
        brk.to_str().unwrap(),
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_one_clear_line(&stderr, "near matches: main");
}

/// A C++ function is marked by its name in the source: `leak_nodes` for `_Z10leak_nodesv`,
/// `step(int)` for one of two overloads; `step` alone names both and is refused, listing
/// their symbols.
#[test]
fn cpp_functions_are_marked_by_their_source_names() {
    let program = fixture("nofp/cpp_new").to_string_lossy().into_owned();
    let traced = leakscope_json(
        "run",
        &["--iteration-symbol", "leak_nodes"],
        &[&program, "200"],
    );
    assert_eq!(
        traced.report["iterations"]["count"],
        200,
        "{}",
        traced.stderr()
    );
    let overloads = fixture("nofp/overloads").to_string_lossy().into_owned();
    let traced = leakscope_json(
        "run",
        &["--iteration-symbol", "step(int)"],
        &[&overloads, "50"],
    );
    assert_eq!(
        traced.report["iterations"]["count"],
        50,
        "{}",
        traced.stderr()
    );
    let output = leakscope_cmd(&["run", "--iteration-symbol", "step", "--", &overloads, "5"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_one_clear_line(&stderr, "`step` names 2 functions in");
    assert!(stderr.contains("step(int) (_Z4stepi)"), "{stderr}");
}

#[test]
fn a_crashing_target_is_still_reported() {
    let traced = leakscope_json("run", &[], &["sh", "-c", "exec 3</dev/null; kill -SEGV $$"]);
    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert!(traced.report["target"]["exit_code"].is_null());
    assert!(
        traced.counts()["exec"] >= 1,
        "what happened before the crash is reported"
    );
    assert!(
        traced.stderr().contains("killed by signal 11 (SIGSEGV)"),
        "{}",
        traced.stderr()
    );
}

#[test]
fn fail_on_leak_exits_3_only_when_something_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let leaky = fixture("leaky");
    let leaky = leaky.to_str().unwrap();
    let leaking = leakscope_json("run", &["--fail-on-leak"], &[leaky, "fd", "200", dir_arg]);
    assert_eq!(
        leaking.output.status.code(),
        Some(3),
        "{}",
        leaking.stderr()
    );
    assert_eq!(
        leaking.report["classes"]["fd"]["verdict"], "leak",
        "the report is still written"
    );
    let clean = leakscope_json(
        "run",
        &["--fail-on-leak"],
        &[leaky, "churn", "200", dir_arg],
    );
    assert_eq!(clean.output.status.code(), Some(0), "{}", clean.stderr());
}

#[test]
fn user_runs_the_target_as_that_user() {
    let traced = leakscope_json(
        "run",
        &["--user", "nobody"],
        &[
            "sh",
            "-c",
            "test \"$(id -u)\" = 65534 && test \"$(id -G)\" = 65534",
        ],
    );
    assert_eq!(
        traced.report["target"]["exit_code"],
        0,
        "the target did not run as nobody: {}",
        traced.stderr()
    );
    let unknown = leakscope_cmd(&["run", "--user", "no-such-user-here", "--", "/bin/true"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_one_clear_line(&String::from_utf8_lossy(&unknown.stderr), "no such user");
}
