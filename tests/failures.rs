//! Failed acquisitions reach the report: a program pinned at its fd limit shows its EMFILE
//! failures exactly, with the limit and where they began; mmap and brk refused by RLIMIT_AS
//! show as ENOMEM, each counted exactly.

use leakscope_tests::{Traced, class, fixture, leakscope_json};

const N: u64 = 2000;

fn run_with_marker(name: &str) -> Traced {
    let command = [fixture(name).to_string_lossy().into_owned(), N.to_string()];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_eq!(
        traced.report["target"]["exit_code"],
        0,
        "the fixture failed: {}",
        traced.stderr()
    );
    assert_eq!(traced.report["iterations"]["count"], N);
    traced
}

/// The numbers after each word of `words` in the fixture's stderr line that starts with
/// the first of them.
fn fixture_numbers(traced: &Traced, words: &[&str]) -> Vec<i64> {
    let stderr = traced.stderr();
    let line = stderr
        .lines()
        .find(|line| line.starts_with(words[0]))
        .unwrap_or_else(|| panic!("no `{}` line in:\n{stderr}", words[0]));
    let tokens: Vec<&str> = line.split_whitespace().collect();
    words
        .iter()
        .map(|word| {
            let at = tokens.iter().position(|t| t == word).unwrap();
            tokens[at + 1].parse().unwrap()
        })
        .collect()
}

#[test]
fn emfile_failures_are_counted_exactly_with_the_fd_limit() {
    let traced = run_with_marker("emfile");
    let [failed, first] = fixture_numbers(&traced, &["failed", "first"])[..] else {
        unreachable!()
    };
    assert!(failed > 1000, "the fixture must hit its limit: {failed}");
    assert_eq!(traced.report["target"]["fd_limit"], 256);
    let emfile = &class(&traced, "fd")["failures"]["EMFILE"];
    assert_eq!(
        emfile["count"],
        failed,
        "{}",
        class(&traced, "fd")["failures"]
    );
    let first_seen = emfile["first_iteration"].as_i64().unwrap();
    assert!(
        (first_seen - first).abs() <= 1,
        "first EMFILE at iteration {first_seen}, the fixture says {first}"
    );
    assert_eq!(emfile["first_syscall"], "openat");
    // Pinned at its limit after a steady climb: a leak, not a plateau.
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{}", fd["why"]);
    assert_eq!(fd["limit_hit"]["errno"], "EMFILE");
    let hit = fd["limit_hit"]["iteration"].as_i64().unwrap();
    assert!(
        (hit - first).abs() <= 1,
        "limit hit at {hit}, first failure at {first}"
    );
    // The ledger knew every fd the process held, stdio included: the table was full.
    assert_eq!(emfile["live_at_first"], 256);
    assert_eq!(class(&traced, "mmap")["failures"], serde_json::json!({}));
    assert!(
        traced
            .stdout()
            .contains(&format!("fd: {failed} calls failed with EMFILE")),
        "{}",
        traced.stdout()
    );
}

/// Failures without growth are no leak: five runs, so a flipping verdict is caught.
#[test]
fn mmap_and_brk_refused_by_rlimit_as_are_enomem_counted_exactly() {
    for _ in 0..5 {
        enomem_run();
    }
}

fn enomem_run() {
    let traced = run_with_marker("enomem");
    let [mmap_failed, brk_failed] = fixture_numbers(&traced, &["mmap_failed", "brk_failed"])[..]
    else {
        unreachable!()
    };
    assert_eq!((mmap_failed, brk_failed), (N as i64, N as i64));
    let mmap = &class(&traced, "mmap")["failures"]["ENOMEM"];
    assert_eq!(mmap["count"], mmap_failed, "{}", class(&traced, "mmap"));
    assert_eq!(mmap["first_iteration"], 0);
    let brk = &class(&traced, "brk")["failures"]["ENOMEM"];
    assert_eq!(brk["count"], brk_failed, "{}", class(&traced, "brk"));
    assert_eq!(
        (&brk["first_iteration"], &brk["first_syscall"]),
        (&0.into(), &"brk".into())
    );
    for name in ["mmap", "brk"] {
        assert_ne!(
            class(&traced, name)["verdict"],
            "leak",
            "{name}: {}",
            class(&traced, name)["why"]
        );
    }
    assert!(
        class(&traced, "fd")["failures"].get("EMFILE").is_none(),
        "{}",
        class(&traced, "fd")["failures"]
    );
}
