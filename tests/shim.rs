//! Automatic loop detection behind a version-manager shim (pyenv, asdf, nvm and rbenv work
//! this way): a shell script runs helper processes that read one config file 40 times at
//! start-up, then execs the real program, which keeps the shim's pid. The start-up reads
//! recur evenly, but they are not the loop: the loop is the program's, and when no path
//! marks it the verdicts are inconclusive, with the candidates named.

use leakscope_tests::{
    Source, Traced, assert_rate, assert_verdicts, class, diagnose, fixture, leakscope_json, script,
    verdicts,
};

const N: usize = 1000;
const HELPERS: &str = "40";
/// A "must not leak" case runs this many times, so a flipping verdict is caught.
const CLEAN_RUNS: usize = 5;

/// `shim.sh CONFIG 40 PROGRAM...` in a fresh directory holding CONFIG (`shim.conf`).
fn through_shim(
    program: impl Fn(&std::path::Path) -> Vec<String>,
) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shim.conf");
    std::fs::write(&config, "version = 3.12\n").unwrap();
    let mut command = vec![
        "sh".to_string(),
        script("shim.sh").to_string_lossy().into_owned(),
        config.to_string_lossy().into_owned(),
        HELPERS.into(),
    ];
    command.extend(program(dir.path()));
    (dir, command)
}

fn python(dir: &std::path::Path, mode: &str, n: usize) -> Vec<String> {
    vec![
        "python3".into(),
        script("loop.py").to_string_lossy().into_owned(),
        n.to_string(),
        dir.to_string_lossy().into_owned(),
        mode.into(),
    ]
}

fn node(dir: &std::path::Path, clean: bool, n: usize) -> Vec<String> {
    let mut command = vec![
        "node".into(),
        script("leak_files.js").to_string_lossy().into_owned(),
        n.to_string(),
        dir.to_string_lossy().into_owned(),
    ];
    if clean {
        command.push("clean".into());
    }
    command
}

fn c_fixture(dir: &std::path::Path, mode: &str, n: usize) -> Vec<String> {
    vec![
        fixture("leaky").to_string_lossy().into_owned(),
        mode.into(),
        n.to_string(),
        dir.to_string_lossy().into_owned(),
        "1".into(),
    ]
}

/// Runs `program(dir)` through the shim with automatic detection: the loop must be found
/// (`n` iterations from the program's tick, not the shim's config).
fn diagnose_through_shim(n: usize, program: impl Fn(&std::path::Path) -> Vec<String>) -> Traced {
    let (dir, command) = through_shim(program);
    let traced = diagnose(Source::Auto, dir.path(), &command);
    let iterations = &traced.report["iterations"];
    assert_eq!(iterations["count"], n, "{iterations}");
    let path = iterations["path"].as_str().unwrap();
    assert!(
        path.starts_with(&dir.path().to_string_lossy().into_owned())
            && !path.ends_with("shim.conf"),
        "{iterations}"
    );
    let coverage = iterations["coverage"].as_f64().unwrap();
    assert!((0.25..=1.0).contains(&coverage), "{iterations}");
    assert!(
        traced.report["counts"]["exec"].as_u64().unwrap() > 40,
        "the helpers ran: {}",
        traced.report["counts"]
    );
    traced
}

fn assert_fd_leak(traced: &Traced) {
    let fd = class(traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{}", traced.report["answer"]);
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fds leaked per iteration");
    let site = fd["sites"][0]["site"].as_str().unwrap();
    assert!(site.contains("/data.txt"), "{site}");
}

/// Clean loops run `n` iterations, more than the leaking ones: a runtime warms up over its
/// first thousands (its heap and JIT grow, then level off), as in the diagnosis tests.
fn assert_never_a_leak(
    n: usize,
    program: impl Fn(&std::path::Path, usize) -> Vec<String>,
    what: &str,
) {
    for run in 0..CLEAN_RUNS {
        let traced = diagnose_through_shim(n, |dir| program(dir, n));
        for (class, verdict) in ["fd", "mmap", "brk", "rss"].iter().zip(verdicts(&traced)) {
            assert_ne!(
                verdict, "leak",
                "{what}, run {run}: {class}: {}",
                traced.report["classes"][class]
            );
        }
    }
}

#[test]
fn python_fd_leak_behind_a_shim() {
    assert_fd_leak(&diagnose_through_shim(N, |dir| python(dir, "fd", N)));
}

#[test]
fn python_mapping_leak_behind_a_shim() {
    let traced = diagnose_through_shim(N, |dir| python(dir, "mmap", N));
    let mmap = class(&traced, "mmap");
    assert_eq!(mmap["verdict"], "leak", "{}", traced.report["answer"]);
    assert_rate(&mmap["leaked_per_iteration"], 1.0, "mappings per iteration");
    assert_rate(
        &mmap["bytes_leaked_per_iteration"],
        65536.0,
        "mapped bytes per iteration",
    );
}

#[test]
fn node_fd_leak_behind_a_shim() {
    assert_fd_leak(&diagnose_through_shim(N, |dir| node(dir, false, N)));
}

#[test]
fn c_fd_leak_behind_a_shim() {
    let traced = diagnose_through_shim(N, |dir| c_fixture(dir, "fd", N));
    assert_fd_leak(&traced);
    assert_verdicts(
        &traced,
        ["leak", "no-leak", "flat", "flat"],
        "C behind a shim",
    );
}

#[test]
fn python_clean_loop_behind_a_shim_is_never_a_leak() {
    assert_never_a_leak(5 * N, |dir, n| python(dir, "clean", n), "python");
}

#[test]
fn node_clean_loop_behind_a_shim_is_never_a_leak() {
    // V8's resident set still creeps up by ~100-200 B per iteration over 5000 (just over
    // the rss floor in about one run of ten); by 20000 it has levelled off.
    assert_never_a_leak(20 * N, |dir, n| node(dir, true, n), "node");
}

#[test]
fn c_clean_loop_behind_a_shim_is_never_a_leak() {
    assert_never_a_leak(5 * N, |dir, n| c_fixture(dir, "churn", n), "C churn");
}

/// Inconclusive because no candidate marks a loop: the answer says so and names the
/// candidates, ready to paste.
fn assert_inconclusive_with_candidates(traced: &Traced) {
    let iterations = &traced.report["iterations"];
    assert_eq!(iterations["source"], "time", "{iterations}");
    assert!(
        iterations["unconvincing"]
            .as_str()
            .unwrap()
            .starts_with("no loop found"),
        "{iterations}"
    );
    assert_eq!(verdicts(traced), ["inconclusive"; 4].map(String::from));
    let answer = traced.report["answer"].as_str().unwrap();
    assert!(
        answer.starts_with("inconclusive: no loop found"),
        "{answer}"
    );
    let candidates = iterations["candidates"].as_array().unwrap();
    assert!(
        !candidates.is_empty() && candidates.len() <= 5,
        "{iterations}"
    );
    for candidate in candidates {
        let pasted = format!(
            "--iteration-path \"{}\" ({} opens)",
            candidate["path"].as_str().unwrap(),
            candidate["count"]
        );
        assert!(answer.contains(&pasted), "{pasted} is not in: {answer}");
    }
    let first = format!(
        "--iteration-path \"{}\"",
        candidates[0]["path"].as_str().unwrap()
    );
    assert!(traced.stdout().contains(&first), "{}", traced.stdout());
}

#[test]
fn start_up_reads_with_no_loop_after_them_are_inconclusive_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app.conf");
    std::fs::write(&config, "x = 1\n").unwrap();
    let config = config.to_string_lossy().into_owned();
    let command = [
        fixture("startup_config").to_string_lossy().into_owned(),
        config.clone(),
        N.to_string(),
    ];
    let traced = leakscope_json("run", &[], &command);
    assert_eq!(traced.report["lost_events"], 0);
    assert_inconclusive_with_candidates(&traced);
    // The start-up reads are the one candidate.
    let candidates = &traced.report["iterations"]["candidates"];
    assert_eq!(candidates[0]["path"], config.as_str(), "{candidates}");
    assert_eq!(candidates[0]["count"], 40, "{candidates}");
    let reason = traced.report["iterations"]["unconvincing"]
        .as_str()
        .unwrap();
    assert!(reason.contains("stops before the work does"), "{reason}");
}

#[test]
fn a_shim_before_a_program_with_no_marker_is_inconclusive_and_named() {
    // The program leaks memory but opens nothing per iteration: only the shim's reads
    // recur, and they must not be judged as its loop ("no leak" was the wrong answer).
    let (_dir, command) = through_shim(|_| {
        vec![
            "python3".into(),
            "-c".into(),
            "kept = [bytearray(65536) for _ in range(1000)]".into(),
        ]
    });
    let traced = leakscope_json("run", &[], &command);
    assert_eq!(traced.report["lost_events"], 0);
    assert_inconclusive_with_candidates(&traced);
    // Only start-up files recur (the shim's config, its helpers' and the interpreter's own
    // start-up files), all opened by other processes or images than the working one.
    let reason = traced.report["iterations"]["unconvincing"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("is not a loop of the process that does the work"),
        "{reason}"
    );
}
