//! Every way a run can end: a signal to leakscope at each stage (before the probes load, at
//! the gate, during the run, during the report), twice, under `timeout`, for run, extract
//! and attach. Each test checks that no process leakscope started is left and that none of
//! its BPF programs is loaded a second later (listed through the bpf syscall).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use leakscope_tests::{
    leakscope,
    lifecycle::{
        Watched, assert_ended_by, assert_gone, assert_unloaded, bpf_fds_of, is_gone, paused_child,
        programs_held_by, read_report, wait_for_programs,
    },
};
use rstest::rstest;
use serde_json::Value;

const PAUSE: &str = "LEAKSCOPE_TEST_PAUSE";
const LONG: Duration = Duration::from_secs(30);

fn run_command(json: &Path, pause: Option<&str>, target: &[&str]) -> Command {
    let mut command = Command::new(leakscope());
    command
        .arg("run")
        .arg("--json")
        .arg(json)
        .arg("--")
        .args(target);
    if let Some(stage) = pause {
        command.env(PAUSE, stage);
    }
    command
}

fn pid_in(file: &Path) -> u32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(start.elapsed() < LONG, "the target never wrote its pid");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[rstest]
#[case::sigkill(libc::SIGKILL, "SIGKILL")]
#[case::sigterm(libc::SIGTERM, "SIGTERM")]
#[case::sigint(libc::SIGINT, "SIGINT")]
#[case::sighup(libc::SIGHUP, "SIGHUP")]
fn a_signal_at_the_gate_leaves_no_process_and_no_probe_and_the_target_never_runs(
    #[case] signal: libc::c_int,
    #[case] name: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let ran = dir.path().join("ran");
    let touch = format!("touch {}", ran.display());
    let mut watched = Watched::start(
        run_command(&json, Some("gate"), &["sh", "-c", &touch]),
        Stdio::null(),
    );
    let child = paused_child(&watched.wait_for_line("test pause at gate", LONG));
    let programs = wait_for_programs(watched.pid(), LONG);
    // The waiting child holds none of leakscope's BPF fds.
    assert_eq!(bpf_fds_of(child), Vec::<String>::new(), "{name}");
    assert!(programs_held_by(child).is_empty(), "{name}");

    watched.signal(signal);
    let status = watched.wait(LONG);
    assert_ended_by(status, signal, &watched);
    if signal != libc::SIGKILL {
        assert!(
            watched.stderr_text().contains("before tracing started"),
            "{name}: {}",
            watched.stderr_text()
        );
        assert!(!json.exists(), "{name}: an empty report file was left");
    }
    assert_gone(child, Duration::from_secs(1), name);
    assert_unloaded(&programs, name);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!ran.exists(), "{name}: the target ran untraced");
}

#[rstest]
#[case::sigkill(libc::SIGKILL, "SIGKILL")]
#[case::sigterm(libc::SIGTERM, "SIGTERM")]
fn a_signal_before_the_probes_load_stops_cleanly(#[case] signal: libc::c_int, #[case] name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let ran = dir.path().join("ran");
    let touch = format!("touch {}", ran.display());
    let mut watched = Watched::start(
        run_command(&json, Some("before-probes"), &["sh", "-c", &touch]),
        Stdio::null(),
    );
    watched.wait_for_line("test pause at before-probes", LONG);
    assert!(programs_held_by(watched.pid()).is_empty());
    let pid = watched.pid();
    watched.signal(signal);
    let status = watched.wait(LONG);
    assert_ended_by(status, signal, &watched);
    assert_gone(pid, Duration::from_secs(1), name);
    assert!(!ran.exists(), "{name}: the target ran");
}

#[rstest]
#[case::sigterm(libc::SIGTERM, "SIGTERM")]
#[case::sighup(libc::SIGHUP, "SIGHUP")]
fn sigterm_and_sighup_during_the_run_forward_reap_and_report(
    #[case] signal: libc::c_int,
    #[case] name: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let mut watched = Watched::start(
        run_command(&json, None, &["sh", "-c", &script]),
        Stdio::null(),
    );
    let target = pid_in(&pid_file);
    let programs = wait_for_programs(watched.pid(), LONG);
    // The target runs with the stop signals unblocked, as without leakscope.
    std::thread::sleep(Duration::from_millis(200));
    let status_file = std::fs::read_to_string(format!("/proc/{target}/status")).unwrap();
    let blocked = status_file
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .unwrap()
        .trim();
    assert_eq!(u64::from_str_radix(blocked, 16).unwrap(), 0, "{name}");

    watched.signal(signal);
    let status = watched.wait(LONG);
    assert_eq!(status.code(), Some(0), "{name}: {}", watched.stderr_text());
    let report = read_report(&json, &watched);
    assert_eq!(report["target"]["exit_signal"], signal, "{name}");
    let ended = &report["ended"];
    assert_eq!(ended["how"], "target-killed", "{name}: {ended}");
    assert_eq!(ended["by"], "leakscope", "{name}: {ended}");
    assert_eq!(ended["signal"], name, "{ended}");
    assert_eq!(ended["interrupted"]["signal"], name, "{ended}");
    assert_eq!(ended["interrupted"]["count"], 1, "{ended}");
    assert_eq!(
        ended["interrupted"]["sender_pid"],
        std::process::id(),
        "{ended}"
    );
    assert_eq!(ended["processes_running"], 0, "{ended}");
    assert!(report["answer"].is_string(), "the full report: {report}");
    assert_gone(target, Duration::from_secs(1), name);
    assert_unloaded(&programs, name);
}

#[test]
fn a_second_sigint_kills_a_target_that_ignores_it() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let pid_file = dir.path().join("pid");
    let script = format!(
        "trap '' INT; echo $$ > {}; while :; do sleep 0.1; done",
        pid_file.display()
    );
    let mut watched = Watched::start(
        run_command(&json, None, &["sh", "-c", &script]),
        Stdio::null(),
    );
    let target = pid_in(&pid_file);
    let programs = wait_for_programs(watched.pid(), LONG);
    watched.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        watched.child.try_wait().unwrap().is_none(),
        "the target ignores SIGINT, so the first one only asks"
    );
    assert!(!is_gone(target));
    watched.signal(libc::SIGINT);
    let status = watched.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "{}", watched.stderr_text());
    let report = read_report(&json, &watched);
    let ended = &report["ended"];
    assert_eq!(ended["how"], "target-killed", "{ended}");
    assert_eq!(ended["signal"], "SIGKILL", "{ended}");
    assert_eq!(ended["by"], "leakscope", "{ended}");
    assert_eq!(ended["interrupted"]["count"], 2, "{ended}");
    assert!(
        watched.stderr_text().contains("stopped at once"),
        "{}",
        watched.stderr_text()
    );
    assert_gone(target, Duration::from_secs(1), "target");
    assert_unloaded(&programs, "second SIGINT");
}

#[rstest]
#[case::sigterm(libc::SIGTERM, "SIGTERM")]
#[case::sigkill(libc::SIGKILL, "SIGKILL")]
fn a_signal_during_the_report_still_gives_the_report_and_sigkill_leaves_no_probe(
    #[case] signal: libc::c_int,
    #[case] name: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // The target lives a little while: the probes are let go before the report, and a
    // target that exits at once leaves them loaded for only a few tens of milliseconds,
    // which polling can miss.
    let mut watched = Watched::start(
        run_command(
            &json,
            Some("report"),
            &["sh", "-c", "exec 3</dev/null; sleep 0.5"],
        ),
        Stdio::null(),
    );
    let programs = wait_for_programs(watched.pid(), LONG);
    watched.wait_for_line("test pause at report", LONG);
    watched.signal(signal);
    let status = watched.wait(LONG);
    if signal == libc::SIGTERM {
        // Tracing was over: the report is complete and true, and the status normal.
        assert_eq!(status.code(), Some(0), "{}", watched.stderr_text());
        let report = read_report(&json, &watched);
        assert_eq!(report["ended"]["how"], "target-exited");
        assert_eq!(report["target"]["exit_code"], 0);
    } else {
        assert_ended_by(status, signal, &watched);
    }
    assert_unloaded(&programs, name);
}

#[test]
fn sigkill_during_the_run_leaves_no_probe_and_no_frozen_target() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 2", pid_file.display());
    let mut watched = Watched::start(
        run_command(&json, None, &["sh", "-c", &script]),
        Stdio::null(),
    );
    let target = pid_in(&pid_file);
    let programs = wait_for_programs(watched.pid(), LONG);
    watched.signal(libc::SIGKILL);
    watched.wait(LONG);
    assert_unloaded(&programs, "SIGKILL");
    // Nothing can catch SIGKILL: the target (already exec'd) runs on untraced and ends by
    // itself; it is not left frozen.
    assert_gone(target, Duration::from_secs(5), "target after SIGKILL");
}

#[test]
fn timeout_gets_a_report_and_the_target_is_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let mut command = Command::new("timeout");
    command
        .arg("3")
        .arg(leakscope())
        .args(["run", "--json"])
        .arg(&json)
        .args(["--", "sh", "-c", &script]);
    let mut watched = Watched::start(command, Stdio::null());
    let target = pid_in(&pid_file);
    let programs = wait_for_programs(parent_of(target), LONG);
    let status = watched.wait(LONG);
    assert_eq!(status.code(), Some(124), "timeout's own status");
    let report = read_report(&json, &watched);
    let ended = &report["ended"];
    // timeout signals its child and then its whole group: one request, not two.
    assert_eq!(ended["interrupted"]["count"], 1, "{ended}");
    assert_eq!(ended["how"], "target-killed", "{ended}");
    assert_eq!(report["target"]["exit_signal"], libc::SIGTERM);
    assert_gone(target, Duration::from_secs(1), "target");
    assert_unloaded(&programs, "timeout");
}

/// How the extract test interrupts: once, twice while tracing, twice while reporting.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Interrupt {
    Once,
    TwiceTracing,
    TwiceReporting,
}

#[rstest]
#[case::once(Interrupt::Once)]
#[case::twice_tracing(Interrupt::TwiceTracing)]
#[case::twice_reporting(Interrupt::TwiceReporting)]
fn extract_interrupted_once_or_twice_removes_its_directory(#[case] interrupt: Interrupt) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut command = Command::new(leakscope());
    command.arg("extract").arg("--json").arg(&json);
    if interrupt == Interrupt::TwiceReporting {
        // A short run that pauses before its report.
        command.args(["--rounds", "1", "--iterations", "10"]);
        command.env(PAUSE, "report");
    } else {
        command.args(["--rounds", "1000", "--iterations", "1000"]);
    }
    let mut watched = Watched::start(command, Stdio::null());
    let line = watched.wait_for_line("leakscope extract: ", LONG);
    let extract_dir = line
        .split_whitespace()
        .find(|word| word.contains("/leakscope-extract-"))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no directory in `{line}`"));
    let root = extract_dir.parent().unwrap().to_owned();
    let programs = wait_for_programs(watched.pid(), LONG);
    if interrupt == Interrupt::TwiceReporting {
        watched.wait_for_line("test pause at report", LONG);
    } else {
        std::thread::sleep(Duration::from_millis(500)); // the worker is extracting
    }
    watched.signal(libc::SIGTERM);
    if interrupt != Interrupt::Once {
        // A different signal straight after: a second request, not a repeat.
        watched.signal(libc::SIGINT);
    }
    let status = watched.wait(LONG);
    // Twice: 128 + the number of whichever of the two the kernel delivered last
    // (pending signals are read lowest number first).
    let expected: &[i32] = match interrupt {
        Interrupt::Once => &[0],
        _ => &[130, 143],
    };
    assert!(
        status.code().is_some_and(|code| expected.contains(&code)),
        "{interrupt:?}: {status}: {}",
        watched.stderr_text()
    );
    assert!(
        !root.exists(),
        "{interrupt:?}: {} was left behind",
        root.display()
    );
    if interrupt != Interrupt::TwiceReporting {
        let report = read_report(&json, &watched);
        let ended = &report["ended"];
        assert_eq!(ended["how"], "target-killed", "{interrupt:?}: {ended}");
        assert_eq!(ended["by"], "leakscope", "{ended}");
        let count = if interrupt == Interrupt::Once { 1 } else { 2 };
        assert_eq!(ended["interrupted"]["count"], count, "{ended}");
        if interrupt == Interrupt::Once {
            assert_eq!(report["target"]["exit_signal"], libc::SIGTERM, "{ended}");
        }
        // Whatever killed the worker, leakscope sent it (the first signal passed on,
        // or SIGKILL at the second, whichever came first).
        let sent = ended["interrupted"]["sent_to_target"].as_array().unwrap();
        assert!(sent.contains(&ended["signal"]), "{ended}");
        let worker = report["target"]["pid"].as_u64().unwrap() as u32;
        assert_gone(worker, Duration::from_secs(1), "worker");
    }
    assert_unloaded(&programs, "extract");
}

#[test]
fn attach_stopped_by_sigterm_detaches_and_never_signals_the_target() {
    let mut target = Command::new("sleep").arg("60").spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut command = Command::new(leakscope());
    command
        .args(["attach", "--pid", &target.id().to_string(), "--json"])
        .arg(&json);
    let mut watched = Watched::start(command, Stdio::null());
    let programs = wait_for_programs(watched.pid(), LONG);
    std::thread::sleep(Duration::from_millis(300));
    watched.signal(libc::SIGTERM);
    let status = watched.wait(LONG);
    assert_eq!(status.code(), Some(0), "{}", watched.stderr_text());
    let report = read_report(&json, &watched);
    let ended = &report["ended"];
    assert_eq!(ended["how"], "detached", "{ended}");
    assert_eq!(
        ended["interrupted"]["sent_to_target"],
        serde_json::json!([])
    );
    assert_eq!(ended["processes_running"], 1, "{ended}");
    assert_eq!(report["target"]["still_running"], true);
    assert!(
        target.try_wait().unwrap().is_none(),
        "the target was signalled"
    );
    assert_unloaded(&programs, "attach");
    target.kill().unwrap();
    target.wait().unwrap();
}

#[test]
fn the_directory_of_a_killed_extract_is_removed_by_the_next_one() {
    let mut command = Command::new(leakscope());
    command.args(["extract", "--rounds", "1000", "--iterations", "1000"]);
    let mut watched = Watched::start(command, Stdio::null());
    let line = watched.wait_for_line("leakscope extract: ", LONG);
    let root = line
        .split_whitespace()
        .find(|word| word.contains("/leakscope-extract-"))
        .map(|dir| Path::new(dir).parent().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no directory in `{line}`"));
    let programs = wait_for_programs(watched.pid(), LONG);
    watched.signal(libc::SIGKILL);
    watched.wait(LONG);
    assert_unloaded(&programs, "SIGKILL extract");
    assert!(root.exists(), "nothing can clean up after SIGKILL");
    let next = Command::new(leakscope())
        .args(["extract", "--rounds", "1", "--iterations", "10"])
        .output()
        .unwrap();
    assert_eq!(
        next.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert!(!root.exists(), "{} was left behind", root.display());
}

#[test]
fn a_terminals_ctrl_c_reaches_the_target_once_and_is_not_passed_on_again() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let pid_file = dir.path().join("pid");
    // A target that counts its SIGINTs: each one prints a line; the second exits.
    let script = format!(
        "echo $$ > {}; n=0; trap 'n=$((n+1)); echo got-int-$n; [ $n -ge 2 ] && exit 7' INT; \
         i=0; while [ $i -lt 40 ]; do sleep 0.1; i=$((i+1)); done; exit 3",
        pid_file.display()
    );
    let inner = format!(
        "{} run --json {} -- sh -c \"{}\"",
        leakscope().display(),
        json.display(),
        script.replace('$', "\\$")
    );
    // script(1) gives leakscope a terminal; a ^C written to it is the terminal's SIGINT to
    // the foreground process group (leakscope and the target).
    let mut terminal =
        leakscope_tests::lifecycle::with_default_stop_signals(&mut Command::new("script"))
            .args(["-qfec", &inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let target = pid_in(&pid_file);
    let leakscope_pid = parent_of(target);
    let programs = wait_for_programs(leakscope_pid, LONG);
    std::thread::sleep(Duration::from_millis(300));
    let mut input = terminal.stdin.take().unwrap();
    input.write_all(b"\x03").unwrap();
    let mut transcript = String::new();
    terminal
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut transcript)
        .unwrap();
    drop(input);
    terminal.wait().unwrap();
    assert!(
        transcript.contains("got-int-1") && !transcript.contains("got-int-2"),
        "the target got one SIGINT per Ctrl-C:\n{transcript}"
    );
    let text =
        std::fs::read_to_string(&json).unwrap_or_else(|_| panic!("no report:\n{transcript}"));
    let report: Value = serde_json::from_str(&text).unwrap();
    let ended = &report["ended"];
    assert_eq!(ended["interrupted"]["from_terminal"], true, "{ended}");
    assert_eq!(
        ended["interrupted"]["sent_to_target"],
        serde_json::json!([])
    );
    // One SIGINT: the target goes on counting its loop and exits with 3, traced to its end.
    assert_eq!(report["target"]["exit_code"], 3, "{transcript}");
    assert_gone(target, Duration::from_secs(1), "target");
    assert_gone(leakscope_pid, Duration::from_secs(1), "leakscope");
    assert_unloaded(&programs, "terminal Ctrl-C");
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}
