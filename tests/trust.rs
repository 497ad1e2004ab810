//! Runs built to fool a leak detector, with the real probes: every verdict must be right or
//! honestly inconclusive, and "no leak" always comes with the smallest rate the run could
//! have seen. Each "must not be a leak" case runs 5 times, so a verdict that flips is caught.

use rstest::rstest;

use leakscope_tests::{Traced, assert_ran, assert_rate, class, fixture, leakscope_json, script};

/// Runs `trust MODE N DIR` marked by its iteration symbol.
fn trust(mode: &str, n: usize) -> (tempfile::TempDir, Traced) {
    let dir = tempfile::tempdir().unwrap();
    let command = vec![
        fixture("trust").to_string_lossy().into_owned(),
        mode.into(),
        n.to_string(),
        dir.path().to_string_lossy().into_owned(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_ran(&traced, n);
    (dir, traced)
}

fn verdict<'a>(traced: &'a Traced, name: &str) -> &'a str {
    class(traced, name)["verdict"].as_str().unwrap_or("?")
}

fn answer(traced: &Traced) -> &str {
    traced.report["answer"].as_str().unwrap_or("")
}

/// No class of `traced` is judged a leak.
fn assert_never_a_leak(traced: &Traced, context: &str) {
    for name in ["fd", "mmap", "brk", "rss"] {
        assert_ne!(
            verdict(traced, name),
            "leak",
            "{context}: {name}: {}",
            answer(traced)
        );
    }
}

#[test]
fn a_heap_leak_below_the_brk_step_is_inconclusive_never_no_leak() {
    // 30 bytes × 2000 stay inside glibc's top pad: the break never moves.
    for run in 0..5 {
        let (_dir, traced) = trust("small-malloc", 2000);
        let brk = class(&traced, "brk");
        assert_eq!(brk["verdict"], "inconclusive", "run {run}: {brk}");
        assert!(brk["iterations_needed"].as_u64().unwrap() > 2000, "{brk}");
        let limit = brk["detection_limit_bytes_per_iteration"].as_f64().unwrap();
        assert!(
            limit > 30.0,
            "the limit must be above the leak it missed: {limit}"
        );
        assert_ne!(verdict(&traced, "rss"), "leak");
        let answer = answer(&traced);
        assert!(!answer.starts_with("no leak"), "{answer}");
        assert!(answer.contains("brk heap inconclusive"), "{answer}");
        assert!(
            answer.contains("run at least"),
            "the next step is named: {answer}"
        );
    }
}

#[test]
fn every_no_leak_carries_its_detection_limit() {
    let (_dir, traced) = trust("slow-fd", 20_000);
    for name in ["fd", "mmap", "brk", "rss"] {
        let class = class(&traced, name);
        if class["verdict"] == "no-leak" {
            let limit = class
                .get("detection_limit_per_iteration")
                .or_else(|| class.get("detection_limit_bytes_per_iteration"))
                .and_then(|l| l.as_f64());
            assert!(limit.is_some(), "{name}: {class}");
        }
    }
}

#[test]
fn a_slow_fd_leak_prints_at_its_own_precision() {
    let (dir, traced) = trust("slow-fd", 20_000);
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{fd}");
    assert_rate(&fd["leaked_per_iteration"], 0.001, "fd per iteration");
    let answer = answer(&traced);
    assert!(
        answer.starts_with("fd leak: 1 per 1,000 iterations"),
        "never 0.00: {answer}"
    );
    assert!(
        answer.contains(&format!("{}/data.txt", dir.path().display())),
        "{answer}"
    );
    assert!(
        traced.stdout().contains("1 per 1,000 iterations"),
        "{}",
        traced.stdout()
    );
}

#[rstest]
#[case::python("python3")]
#[case::node("node")]
fn slow_leaks_in_python_and_node_print_at_their_own_precision(#[case] interpreter: &str) {
    let script_name = if interpreter == "node" {
        "leak_files.js"
    } else {
        "leak_files.py"
    };
    let dir = tempfile::tempdir().unwrap();
    let command = vec![
        interpreter.to_string(),
        script(script_name).to_string_lossy().into_owned(),
        "5000".into(),
        dir.path().to_string_lossy().into_owned(),
        "every=100".into(),
    ];
    let tick = format!("{}/tick", dir.path().display());
    let traced = leakscope_json("run", &["--iteration-path", &tick], &command);
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{interpreter}: {fd}");
    assert_rate(&fd["leaked_per_iteration"], 0.01, "fd per iteration");
    let answer = answer(&traced);
    assert!(
        answer.starts_with("fd leak: 0.0100 per iteration")
            || answer.starts_with("fd leak: 1 per 100 iterations"),
        "{interpreter}: {answer}"
    );
}

#[test]
fn freeing_untouched_address_space_is_never_a_resident_leak() {
    for run in 0..5 {
        let (_dir, traced) = trust("unmap-untouched", 1000);
        assert_never_a_leak(&traced, &format!("run {run}"));
        assert_ne!(class(&traced, "rss")["unexplained_verdict"], "leak");
        let mmap = class(&traced, "mmap");
        assert!(
            mmap["bytes_leaked_per_iteration"].as_f64().unwrap() < 0.0,
            "{mmap}"
        );
    }
}

#[test]
fn forked_children_that_exit_never_make_a_leak() {
    // Each iteration forks a child that keeps 3 fds and exits: what a child holds dies with it.
    for run in 0..5 {
        let (_dir, traced) = trust("fork-children", 50);
        assert_never_a_leak(&traced, &format!("run {run}"));
    }
}

#[test]
fn a_mapping_grown_by_mremap_leaks_bytes_and_its_site_agrees() {
    let (_dir, traced) = trust("mremap-grow", 1000);
    let mmap = class(&traced, "mmap");
    assert_eq!(mmap["verdict"], "leak", "{mmap}");
    assert_rate(
        &mmap["bytes_leaked_per_iteration"],
        4096.0,
        "mapped bytes per iteration",
    );
    let site = &mmap["sites"][0];
    assert_eq!(site["verdict"], "leak", "{site}");
    assert_rate(
        &site["bytes_leaked_per_iteration"],
        4096.0,
        "site bytes per iteration",
    );
    let name = site["site"].as_str().unwrap();
    assert!(
        name.contains("resized by mremap to 3.9 MiB"),
        "the final size: {name}"
    );
    let answer = answer(&traced);
    assert!(
        answer.starts_with("mapping leak: 4 KiB per iteration"),
        "{answer}"
    );
    assert_ne!(
        verdict(&traced, "rss"),
        "leak",
        "the mapping explains the resident growth"
    );
}

#[test]
fn lost_events_fail_ci_with_their_own_status() {
    // A 1 MiB ring cannot hold a fast loop's records: the ledger is incomplete.
    let target = tempfile::NamedTempFile::new().unwrap();
    let command = vec![
        fixture("open_close").to_string_lossy().into_owned(),
        "300000".into(),
        target.path().to_string_lossy().into_owned(),
    ];
    let traced = leakscope_json("run", &["--ring-mib", "1", "--fail-on-leak"], &command);
    let lost = traced.report["lost_events"].as_u64().unwrap();
    assert!(lost > 0, "the test needs a lossy run");
    assert_eq!(traced.output.status.code(), Some(5), "{}", traced.stderr());
    assert!(
        traced.stderr().contains("events were lost"),
        "{}",
        traced.stderr()
    );
    for name in ["fd", "mmap", "brk", "rss"] {
        assert_eq!(verdict(&traced, name), "inconclusive");
    }
}

/// `bash leak_files.sh N DIR [clean]`, with no marker: automatic detection.
fn shell(mode: &str) -> (tempfile::TempDir, Traced) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = vec![
        "bash".to_string(),
        script("leak_files.sh").to_string_lossy().into_owned(),
        "1000".into(),
        dir.path().to_string_lossy().into_owned(),
    ];
    if mode == "clean" {
        command.push("clean".into());
    }
    let traced = leakscope_json("run", &[], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    (dir, traced)
}

#[test]
fn a_shell_loop_leaking_fds_is_found_without_a_marker() {
    let (dir, traced) = shell("leak");
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{}", answer(&traced));
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fds per iteration");
    let site = format!("{}/data.txt (kept by fcntl)", dir.path().display());
    assert_eq!(
        leakscope_tests::resource(&fd["sites"][0]["site"]),
        site.as_str(),
        "bash dups the fd above 10"
    );
}

#[test]
fn a_clean_shell_loop_is_never_a_leak() {
    for run in 0..5 {
        let (_dir, traced) = shell("clean");
        assert_never_a_leak(&traced, &format!("run {run}"));
    }
}

/// `INTERPRETER keep_blocks.* N DIR [clean]`, marked by DIR/tick. V8's resident set creeps
/// up by 100-200 B per iteration for its first few thousand iterations of a clean loop and
/// levels off by 20,000, so Node's clean runs are that long.
fn runtime_blocks(interpreter: &str, clean: bool) -> Traced {
    let n = if interpreter == "node" && clean {
        20_000
    } else {
        5000
    };
    let script_name = if interpreter == "node" {
        "keep_blocks.js"
    } else {
        "keep_blocks.py"
    };
    let dir = tempfile::tempdir().unwrap();
    let mut command = vec![
        interpreter.to_string(),
        script(script_name).to_string_lossy().into_owned(),
        n.to_string(),
        dir.path().to_string_lossy().into_owned(),
    ];
    if clean {
        command.push("clean".into());
    }
    let tick = format!("{}/tick", dir.path().display());
    let traced = leakscope_json("run", &["--iteration-path", &tick], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(traced.report["iterations"]["count"], n);
    traced
}

#[test]
fn a_python_memory_leak_is_a_brk_leak_of_its_block_size() {
    // 1024 bytes + the index + a 33-byte header, in a 16-byte-aligned malloc chunk.
    let traced = runtime_blocks("python3", false);
    let brk = class(&traced, "brk");
    assert_eq!(brk["verdict"], "leak", "{}", answer(&traced));
    assert_rate(
        &brk["bytes_per_iteration"],
        1072.0,
        "brk bytes per iteration",
    );
    assert_ne!(
        verdict(&traced, "rss"),
        "leak",
        "the brk leak explains the resident growth"
    );
}

#[test]
fn a_node_memory_leak_is_never_called_no_leak() {
    // V8 grows its heap inside memory it reserved up front, in large steps and a sawtooth
    // of collections: the leak shows in resident memory, or that class is honestly
    // inconclusive. It is never "no leak" or a plateau.
    for run in 0..3 {
        let traced = runtime_blocks("node", false);
        let leaking = ["mmap", "brk", "rss"]
            .into_iter()
            .any(|name| verdict(&traced, name) == "leak");
        let rss = verdict(&traced, "rss");
        assert!(
            leaking || rss == "inconclusive",
            "run {run}: {}",
            answer(&traced)
        );
        assert!(
            !answer(&traced).starts_with("no leak"),
            "{}",
            answer(&traced)
        );
        assert_ne!(verdict(&traced, "fd"), "leak");
    }
}

#[rstest]
#[case::python("python3")]
#[case::node("node")]
fn garbage_collected_runtimes_that_drop_their_blocks_never_leak(#[case] interpreter: &str) {
    for run in 0..5 {
        let traced = runtime_blocks(interpreter, true);
        for name in ["fd", "mmap", "brk", "rss"] {
            assert_ne!(
                verdict(&traced, name),
                "leak",
                "{interpreter} run {run}: {name}: {}",
                answer(&traced)
            );
        }
    }
}

const CLOSE_ITERATIONS: usize = 400;

/// `close_fail MODE N DIR` marked by its iteration symbol (see the fixture): every
/// iteration's close fails, and the fixture checked each fd was left as the mode says.
fn close_fail(mode: &str) -> (tempfile::TempDir, Traced) {
    let dir = tempfile::tempdir().unwrap();
    let command = vec![
        fixture("close_fail").to_string_lossy().into_owned(),
        mode.into(),
        CLOSE_ITERATIONS.to_string(),
        dir.path().to_string_lossy().into_owned(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(traced.report["unknown_releases"], 0, "{}", traced.stderr());
    assert_ran(&traced, CLOSE_ITERATIONS);
    (dir, traced)
}

/// A close (or close_range) that a seccomp filter fails with EINTR never ran: its fd
/// stays, one leaks per iteration, and the failed calls are no releases (nor paired with
/// their opens).
#[rstest]
#[case::close("seccomp")]
#[case::close_range("seccomp-close-range")]
fn a_close_refused_by_seccomp_keeps_its_fd_a_leak_of_exactly_one_per_iteration(#[case] mode: &str) {
    let (dir, traced) = close_fail(mode);
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{fd}");
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fds per iteration");
    assert_eq!(fd["sites"].as_array().unwrap().len(), 1, "{fd}");
    let site = format!("{}/f.txt", dir.path().display());
    assert_eq!(
        leakscope_tests::resource(&fd["sites"][0]["site"]),
        site.as_str()
    );
    assert_eq!(fd["sites"][0]["leaked"], CLOSE_ITERATIONS - 1, "{fd}");
    let counts = traced.counts();
    assert_eq!(counts.get("close_range"), None, "{counts:?}");
    assert_eq!(
        counts["openat"] - counts["close"],
        CLOSE_ITERATIONS as i64,
        "every open before the filter was closed, and no failed close counts as one: \
         {counts:?}"
    );
}

/// Linux frees the fd before the flush whose error close returns: a FUSE filesystem whose
/// FLUSH fails makes every close return EIO (or EINTR) with its fd gone. Each is a
/// release, so nothing leaks, five times out of five.
#[rstest]
#[case::eio("fuse-eio")]
#[case::eintr("fuse-eintr")]
fn a_close_that_fails_after_freeing_its_fd_is_a_release_five_times_out_of_five(#[case] mode: &str) {
    for run in 0..5 {
        let (_dir, traced) = close_fail(mode);
        let fd = class(&traced, "fd");
        assert_eq!(fd["verdict"], "no-leak", "{mode} run {run}: {fd}");
        assert_eq!(fd["leaked_per_iteration"], 0.0, "{fd}");
        assert!(fd["sites"].as_array().unwrap().is_empty(), "{fd}");
        assert_eq!(
            fd["acquired"], fd["released"],
            "every fd released by the end: {fd}"
        );
        assert!(
            traced.counts()["close"] >= CLOSE_ITERATIONS as i64,
            "each failed close is the release it was: {:?}",
            traced.counts()
        );
        assert_never_a_leak(&traced, &format!("{mode} run {run}"));
    }
}
