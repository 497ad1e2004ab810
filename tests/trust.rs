//! Runs built to fool a leak detector, with the real probes: every verdict must be right or
//! honestly inconclusive, and "no leak" always comes with the smallest rate the run could
//! have seen. Each "must not be a leak" case runs 5 times, so a verdict that flips is caught.

use leakscope_tests::{
    Traced, assert_rate, class, fixture, leakscope_json, real_interpreter, script,
};

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
    assert_eq!(
        traced.report["target"]["exit_code"],
        0,
        "{}",
        traced.stderr()
    );
    assert_eq!(
        traced.report["iterations"]["count"], n,
        "{}",
        traced.report["iterations"]
    );
    (dir, traced)
}

fn verdict<'a>(traced: &'a Traced, name: &str) -> &'a str {
    class(traced, name)["verdict"].as_str().unwrap_or("?")
}

fn answer(traced: &Traced) -> &str {
    traced.report["answer"].as_str().unwrap_or("")
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

#[test]
fn slow_leaks_in_python_and_node_print_at_their_own_precision() {
    for interpreter in ["python3", "node"] {
        let script_name = if interpreter == "node" {
            "leak_files.js"
        } else {
            "leak_files.py"
        };
        let dir = tempfile::tempdir().unwrap();
        let command = vec![
            real_interpreter(interpreter),
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
}

#[test]
fn freeing_untouched_address_space_is_never_a_resident_leak() {
    for run in 0..5 {
        let (_dir, traced) = trust("unmap-untouched", 1000);
        for name in ["fd", "mmap", "brk", "rss"] {
            assert_ne!(
                verdict(&traced, name),
                "leak",
                "run {run}: {name}: {}",
                answer(&traced)
            );
        }
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
        for name in ["fd", "mmap", "brk", "rss"] {
            assert_ne!(
                verdict(&traced, name),
                "leak",
                "run {run}: {name}: {}",
                answer(&traced)
            );
        }
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
