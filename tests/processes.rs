//! Every process followed (like strace -f), one-shot programs reported like valgrind
//! --track-fds, and lifetimes that start at acquisition or at trace start.

use std::{collections::BTreeSet, time::Instant};

use leakscope_tests::{
    Traced, assert_ran, assert_rate, assert_verdicts, class, fixture, leakscope_json, resource,
    verdicts,
};
use serde_json::Value;

const DAEMON_ITERATIONS: usize = 400;

fn daemon(mode: &str) -> (tempfile::TempDir, Traced) {
    let dir = tempfile::tempdir().unwrap();
    let command = [
        fixture("daemon").to_string_lossy().into_owned(),
        DAEMON_ITERATIONS.to_string(),
        dir.path().to_string_lossy().into_owned(),
        mode.into(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(
        traced.report["iterations"]["count"], DAEMON_ITERATIONS,
        "the daemon's iterations all happen after the launched process exited: {}",
        traced.report["iterations"]
    );
    assert_eq!(traced.report["target"]["exit_code"], 0);
    (dir, traced)
}

fn daemon_pid(dir: &tempfile::TempDir) -> u64 {
    std::fs::read_to_string(dir.path().join("daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_double_forked_daemon_is_followed_to_its_end_and_named() {
    let (dir, traced) = daemon("leak");
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{fd}");
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fds per iteration");
    let leak = format!("{}/leak.txt", dir.path().display());
    assert_eq!(resource(&fd["sites"][0]["site"]), leak.as_str());

    let outlived = traced.report["outlived_target"].as_array().unwrap();
    let pid = daemon_pid(&dir);
    let daemon = outlived
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("the daemon {pid} is not in {outlived:?}"));
    assert_eq!(
        daemon["still_running"], false,
        "it exited before tracing ended"
    );
    let sites = daemon["fd_sites"].as_array().unwrap();
    let leaked = sites
        .iter()
        .filter(|fd| resource(&fd["site"]) == leak.as_str())
        .count();
    assert_eq!(leaked, DAEMON_ITERATIONS, "{daemon}");
    assert_eq!(daemon["fds"].as_u64().unwrap() as usize, sites.len());
    assert!(
        sites
            .iter()
            .all(|fd| fd["inherited"] == (resource(&fd["site"]) != leak.as_str()))
    );
    assert!(
        daemon["command"][0].as_str().unwrap().ends_with("/daemon"),
        "{daemon}"
    );
    assert!(
        daemon["mappings"].as_u64().unwrap() > 0 && daemon["mapped_bytes"].as_u64().unwrap() > 0
    );
    // The launched process is the target, not an outliver; its report has no one-shot list.
    assert!(
        outlived
            .iter()
            .all(|p| p["pid"] != traced.report["target"]["pid"])
    );
    assert!(traced.report.get("held_at_exit").is_none());
    assert!(
        traced.stdout().contains(&format!("pid {pid} (exited)")),
        "{}",
        traced.stdout()
    );
}

#[test]
fn a_daemon_that_closes_what_it_opens_does_not_leak_five_times_out_of_five() {
    for run in 0..5 {
        let (dir, traced) = daemon("close");
        assert_verdicts(
            &traced,
            ["no-leak", "no-leak", "flat", "flat"],
            &format!("run {run}"),
        );
        let pid = daemon_pid(&dir);
        assert!(
            traced.report["outlived_target"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["pid"] == pid),
            "run {run}"
        );
    }
}

/// Every number in `value`, with its path.
fn numbers(value: &Value, path: String, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Number(n) => out.push((path, n.as_f64().unwrap())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                numbers(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                numbers(item, format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// The fds this test process would pass on to a child: those without CLOEXEC.
fn our_inheritable_fds() -> BTreeSet<i64> {
    std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd: i64 = entry.file_name().to_str()?.parse().ok()?;
            let info = std::fs::read_to_string(entry.path()).ok()?;
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
            let flags = u64::from_str_radix(flags.trim(), 8).ok()?;
            (flags & libc::O_CLOEXEC as u64 == 0).then_some(fd)
        })
        .collect()
}

#[test]
fn true_reports_what_it_held_at_exit_and_no_negative_rate_five_times_out_of_five() {
    for run in 0..5 {
        let traced = leakscope_json("run", &[], &["true"]);
        assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
        let mut all = Vec::new();
        numbers(&traced.report, String::new(), &mut all);
        let negative: Vec<_> = all.iter().filter(|(_, n)| *n < 0.0).collect();
        assert!(
            negative.is_empty(),
            "run {run}: negative numbers {negative:?}"
        );
        assert_eq!(
            verdicts(&traced),
            ["inconclusive"; 4].map(String::from),
            "run {run}"
        );
        for name in ["fd", "mmap"] {
            let class = class(&traced, name);
            assert_eq!(class["leaked_per_iteration"], 0.0, "{class}");
            assert!(
                class["why"].as_str().unwrap().contains("held at exit"),
                "{class}"
            );
        }
        assert_eq!(class(&traced, "mmap")["bytes_leaked_per_iteration"], 0.0);

        let held = &traced.report["held_at_exit"];
        assert_eq!(held["pid"], traced.report["target"]["pid"]);
        assert_eq!(held["exited"], true);
        let fds = held["fds"].as_array().unwrap();
        let numbers: BTreeSet<i64> = fds.iter().map(|fd| fd["fd"].as_i64().unwrap()).collect();
        // stdio, and whatever else this test hands down: all inherited, none of leakscope's.
        assert!(numbers.is_superset(&BTreeSet::from([0, 1, 2])), "{held}");
        let mut expected = our_inheritable_fds();
        expected.extend([0, 1, 2]);
        assert!(
            numbers.is_subset(&expected),
            "run {run}: {numbers:?} beyond {expected:?}"
        );
        assert!(fds.iter().all(|fd| fd["inherited"] == true), "{held}");
        for mapping in held["mappings"].as_array().unwrap() {
            let site = mapping["site"].as_str().unwrap();
            assert!(
                !site.contains("leakscope"),
                "leakscope's own mapping: {site}"
            );
            assert_eq!(mapping["inherited"], false, "{mapping}");
        }
        // Only libc and its loader's anonymous pages: well under leakscope's own 100+ MiB.
        assert!(held["mapped_bytes"].as_u64().unwrap() < 16 << 20, "{held}");
        assert!(
            traced.stdout().contains("held at exit by pid"),
            "{}",
            traced.stdout()
        );
        assert!(
            !traced.stdout().contains("per iteration"),
            "{}",
            traced.stdout()
        );
    }
}

#[test]
fn a_program_that_opens_a_file_and_exits_held_it_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.txt");
    let traced = leakscope_json("run", &[], &[fixture("open_exit"), path.clone()]);
    assert_eq!(
        traced.report["target"]["exit_code"],
        0,
        "{}",
        traced.stderr()
    );
    let fds = traced.report["held_at_exit"]["fds"].as_array().unwrap();
    let kept: Vec<&Value> = fds
        .iter()
        .filter(|fd| resource(&fd["site"]) == path.to_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 1, "{fds:?}");
    assert_eq!(kept[0]["inherited"], false);
    let fd = kept[0]["fd"].as_i64().unwrap();
    assert!(fd >= 3, "{fd}");
    assert!(
        traced
            .stdout()
            .contains(&format!("fd {fd:<4} {}", path.display())),
        "{}",
        traced.stdout()
    );
}

#[test]
fn lifetimes_never_exceed_the_run() {
    let started = Instant::now();
    let traced = leakscope_json(
        "run",
        &[],
        &[fixture("fork").to_string_lossy().as_ref(), "20"],
    );
    let run_ns = started.elapsed().as_nanos() as u64;
    assert_eq!(traced.report["counts"]["fork"], 1, "{}", traced.stderr());
    for name in ["fd", "mmap"] {
        let lifetimes = &class(&traced, name)["lifetime_ns"];
        assert!(
            lifetimes["count"].as_u64().unwrap() > 0,
            "{name}: {lifetimes}"
        );
        for percentile in ["p50", "p90", "p99", "max"] {
            let ns = lifetimes[percentile].as_u64().unwrap();
            assert!(
                ns <= run_ns,
                "{name} {percentile} {ns} ns > the run's {run_ns} ns"
            );
        }
    }
}

const THREAD_ITERATIONS: usize = 400;

/// `exec_thread MODE N DIR leak|close`, marked by its iteration symbol (see the fixture).
fn exec_thread(mode: &str, what: &str, processes: u64) -> (tempfile::TempDir, Traced) {
    let dir = tempfile::tempdir().unwrap();
    let command = [
        fixture("exec_thread").to_string_lossy().into_owned(),
        mode.into(),
        THREAD_ITERATIONS.to_string(),
        dir.path().to_string_lossy().into_owned(),
        what.into(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(traced.report["unknown_releases"], 0, "{}", traced.stderr());
    // Every iteration runs after the leader thread is gone.
    assert_ran(&traced, THREAD_ITERATIONS);
    assert_eq!(
        traced.report["counts"]["exit"], processes,
        "each process ends once"
    );
    (dir, traced)
}

/// A leader that goes while the process lives on must not end its tracing: an exec by a
/// second thread (the kernel ends the old leader and gives its pid to the exec'ing
/// thread), and a leader's `pthread_exit` (it stays a zombie while the other thread runs).
/// A forked process whose leader `pthread_exit`s is still followed after the target is
/// gone: a zombie leader is no process gone.
#[rstest::rstest]
#[case::exec_by_a_second_thread("thread-exec", 2, 1)]
#[case::leader_pthread_exit("leader-exit", 1, 1)]
#[case::forked_leader_pthread_exit("forked-leader-exit", 1, 2)]
fn a_leak_after_the_leader_thread_is_gone_is_seen_in_full(
    #[case] mode: &str,
    #[case] execs: u64,
    #[case] processes: u64,
) {
    let (dir, traced) = exec_thread(mode, "leak", processes);
    assert_eq!(traced.report["counts"]["exec"], execs);
    assert_eq!(
        traced.report["counts"]["openat"].as_u64().unwrap()
            - traced.report["counts"]["close"].as_u64().unwrap(),
        THREAD_ITERATIONS as u64 + 2 * (execs - 1),
        "each iteration's open, and thread-exec's two opens before its exec"
    );
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{fd}");
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fds per iteration");
    let leak = format!("{}/leak.txt", dir.path().display());
    assert_eq!(fd["sites"].as_array().unwrap().len(), 1, "{fd}");
    assert_eq!(resource(&fd["sites"][0]["site"]), leak.as_str());
    // Retained across an iteration boundary: all but the last iteration's fd.
    assert_eq!(fd["sites"][0]["leaked"], THREAD_ITERATIONS - 1, "{fd}");
}

#[rstest::rstest]
#[case::exec_by_a_second_thread("thread-exec", 1)]
#[case::leader_pthread_exit("leader-exit", 1)]
#[case::forked_leader_pthread_exit("forked-leader-exit", 2)]
fn closing_after_the_leader_thread_is_gone_is_no_leak_five_times_out_of_five(
    #[case] mode: &str,
    #[case] processes: u64,
) {
    for run in 0..5 {
        let (_dir, traced) = exec_thread(mode, "close", processes);
        assert_verdicts(
            &traced,
            ["no-leak", "no-leak", "flat", "flat"],
            &format!("{mode} run {run}"),
        );
    }
}

/// The exec by a second thread closes the CLOEXEC fd and keeps the other, in the ledger as
/// in the kernel (the fixture checks the kernel's side and exits 3 if it differs): what the
/// program holds at exit is kept.txt at fd 3, then its three leaks from fd 4 on, the number
/// the closed cloexec.txt had.
#[test]
fn an_exec_by_a_second_thread_keeps_only_the_fds_without_cloexec() {
    let dir = tempfile::tempdir().unwrap();
    let command = [
        fixture("exec_thread").to_string_lossy().into_owned(),
        "thread-exec".into(),
        "3".into(),
        dir.path().to_string_lossy().into_owned(),
        "leak".into(),
    ];
    let traced = leakscope_json("run", &[], &command);
    assert_eq!(
        traced.report["target"]["exit_code"],
        0,
        "{}",
        traced.stderr()
    );
    assert_eq!(traced.report["lost_events"], 0);
    let held = &traced.report["held_at_exit"];
    assert_eq!(held["exited"], true, "{held}");
    let opened: Vec<(i64, String)> = held["fds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|fd| fd["inherited"] == false)
        .map(|fd| {
            let site = resource(&fd["site"]);
            let name = site.rsplit('/').next().unwrap().to_string();
            (fd["fd"].as_i64().unwrap(), name)
        })
        .collect();
    assert_eq!(
        opened,
        [
            (3, "kept.txt"),
            (4, "leak.txt"),
            (5, "leak.txt"),
            (6, "leak.txt")
        ]
        .map(|(fd, name)| (fd, name.to_string())),
        "{held}"
    );
}
