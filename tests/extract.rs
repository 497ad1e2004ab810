//! `leakscope extract`, the built-in scenario, end to end under the real probes.

use std::process::Command;

use leakscope_tests::{
    Traced, assert_class, assert_one_leaking_site, assert_rate, assert_verdicts, class, leakscope,
    leakscope_json_with_env, pattern_starts_with, verdicts,
};

const SHORT_RUN: [&str; 4] = ["--rounds", "3", "--iterations", "500"];

/// Iterations of a short run: 3 rounds of 500.
const SHORT_RUN_ITERATIONS: usize = 1500;

fn extract(extra: &[&str]) -> Traced {
    extract_with_env(extra, &[])
}

fn extract_with_env(extra: &[&str], env: &[(&str, &std::path::Path)]) -> Traced {
    let options: Vec<&str> = SHORT_RUN.iter().chain(extra).copied().collect();
    let traced = leakscope_json_with_env("extract", &options, &[] as &[&str], env);
    assert_eq!(traced.output.status.code(), Some(0), "{}", traced.stderr());
    assert_eq!(traced.report["lost_events"], 0);
    assert_eq!(traced.report["iterations"]["source"], "symbol");
    assert_eq!(traced.report["iterations"]["count"], SHORT_RUN_ITERATIONS);
    traced
}

#[test]
fn clean_extraction_has_no_leak_in_any_class() {
    let traced = extract(&["--inject-leak", "none"]);
    for verdict in verdicts(&traced) {
        assert_ne!(verdict, "leak", "{:?}", verdicts(&traced));
    }
    // The original report's per-round lines, and its projection table.
    let rounds = traced.stdout() + &traced.stderr();
    for round in 1..=3 {
        assert!(
            rounds.contains(&format!("Round {round}/3: RSS = ")),
            "{rounds}"
        );
    }
    assert!(
        traced.stdout().contains("at 1M extractions"),
        "{}",
        traced.stdout()
    );
    assert!(traced.report["projection"].is_object());
}

#[test]
fn injected_fd_leak_is_one_fd_per_iteration_at_the_injected_file() {
    let traced = extract(&["--inject-leak", "fd"]);
    assert_verdicts(&traced, ["leak", "no-leak", "flat", "flat"], "inject fd");
    let fd = class(&traced, "fd");
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fds per iteration");
    let site = leakscope_tests::resource(&fd["sites"][0]["site"]);
    assert!(site.ends_with("/.leakscope-injected-fd"), "{site}");
}

#[test]
fn injected_mmap_leak_is_64_kib_per_iteration_at_the_injected_code() {
    let traced = extract(&["--inject-leak", "mmap"]);
    assert_verdicts(&traced, ["no-leak", "leak", "flat", "flat"], "inject mmap");
    let mmap = class(&traced, "mmap");
    assert_rate(
        &mmap["bytes_leaked_per_iteration"],
        65536.0,
        "mapped bytes per iteration",
    );
    let site = mmap["sites"][0]["site"].as_str().unwrap();
    assert!(site.contains("injected_mmap_leak"), "{site}");
}

#[test]
fn injected_heap_leak_is_4_kib_of_brk_per_iteration_at_the_injected_code() {
    let traced = extract(&["--inject-leak", "heap"]);
    assert_verdicts(
        &traced,
        ["no-leak", "no-leak", "leak", "flat"],
        "inject heap",
    );
    let brk = class(&traced, "brk");
    assert_rate(
        &brk["bytes_per_iteration"],
        4096.0,
        "brk bytes per iteration",
    );
    let site = brk["sites"][0]["site"].as_str().unwrap();
    assert!(site.contains("injected_heap_leak"), "{site}");
}

/// A short `extract` run whose workspace is made under a fresh TMPDIR, which must be empty
/// again when leakscope is done: it never leaves files behind for its own scenario. Returns
/// the report and that TMPDIR's canonical path (what the report's sites name).
fn extract_leaving_nothing_behind(extra: &[&str]) -> (Traced, String) {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().canonicalize().unwrap();
    let traced = extract_with_env(extra, &[("TMPDIR", &root)]);
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{extra:?} left behind: {left:?}");
    (traced, root.to_string_lossy().into_owned())
}

#[test]
fn injected_tempfile_leak_is_one_4_kib_file_per_iteration_in_the_workspace() {
    let (traced, root) = extract_leaving_nothing_behind(&["--inject-leak", "tempfile"]);
    assert_verdicts(
        &traced,
        ["no-leak", "no-leak", "flat", "flat"],
        "inject tempfile",
    );
    assert_class(&traced, "watches", "no-leak", "inject tempfile");
    assert_class(&traced, "files", "leak", "inject tempfile");
    let files = class(&traced, "files");
    assert_rate(&files["leaked_per_iteration"], 1.0, "files per iteration");
    assert_rate(
        &files["bytes_leaked_per_iteration"],
        4096.0,
        "file bytes per iteration",
    );
    let workspace = format!("{root}/leakscope-extract-");
    assert_one_leaking_site(
        &traced,
        "files",
        &format!("under {workspace}"),
        |site| pattern_starts_with(site, &workspace),
        1.0,
    );
}

#[test]
fn injected_watch_leak_is_one_watch_per_iteration_in_the_workspace() {
    let (traced, root) = extract_leaving_nothing_behind(&["--inject-leak", "watch"]);
    assert_verdicts(
        &traced,
        ["no-leak", "no-leak", "flat", "flat"],
        "inject watch",
    );
    assert_class(&traced, "files", "no-leak", "inject watch");
    assert_class(&traced, "watches", "leak", "inject watch");
    let watches = class(&traced, "watches");
    assert_rate(
        &watches["leaked_per_iteration"],
        1.0,
        "watches per iteration",
    );
    let workspace = format!("{root}/leakscope-extract-");
    assert_one_leaking_site(
        &traced,
        "watches",
        &format!("naming a path under {workspace}"),
        |site| pattern_starts_with(site, &workspace),
        1.0,
    );
}

#[test]
fn the_default_extraction_leaves_no_files_or_watches_and_answers_five_suspects() {
    let (traced, _) = extract_leaving_nothing_behind(&[]);
    // Extraction overwrites the same entries every iteration: nothing is left per iteration.
    assert_class(&traced, "files", "no-leak", "default extract");
    assert_class(&traced, "watches", "no-leak", "default extract");
    let suspects = traced.report["suspects"]
        .as_array()
        .unwrap_or_else(|| panic!("no suspects array: {}", traced.report));
    assert_eq!(suspects.len(), 5, "{suspects:?}");
    for suspect in suspects {
        assert!(
            suspect.get("suspect").is_some() && suspect.get("verdict").is_some(),
            "each suspect is named and judged: {suspect}"
        );
    }
}

#[test]
fn a_real_tar_file_is_extracted_with_its_real_entries() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("real.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    for (name, content) in [
        ("docs/readme.md", "# hi\n"),
        ("data/numbers.csv", "1,2,3\n"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, content.as_bytes())
            .unwrap();
    }
    builder.finish().unwrap();
    drop(builder);

    let output = Command::new(leakscope())
        .args([
            "extract",
            "--rounds",
            "1",
            "--iterations",
            "20",
            "--keep",
            "--archive",
        ])
        .arg(&archive)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let kept = stderr
        .lines()
        .find_map(|line| line.strip_prefix("leakscope extract: kept "))
        .unwrap_or_else(|| panic!("no kept directory in:\n{stderr}"));
    let extracted = std::path::Path::new(kept).join("extract");
    assert_eq!(
        std::fs::read_to_string(extracted.join("docs/readme.md")).unwrap(),
        "# hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(extracted.join("data/numbers.csv")).unwrap(),
        "1,2,3\n"
    );
    std::fs::remove_dir_all(kept).unwrap();
}

fn assert_fails_cleanly(output: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("leakscope: ") && last.contains(needle),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_archive_is_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("corrupt.tar");
    std::fs::write(&archive, b"this is not a tar archive").unwrap();
    let output = Command::new(leakscope())
        .args(["extract", "--archive"])
        .arg(&archive)
        .output()
        .unwrap();
    assert_fails_cleanly(&output, "is not a usable tar archive");
}

#[test]
fn an_unwritable_directory_is_a_clear_error() {
    let output = Command::new(leakscope())
        .args(["extract", "--rounds", "1", "--iterations", "5"])
        .env("TMPDIR", "/proc/leakscope-cannot-write-here")
        .output()
        .unwrap();
    assert_fails_cleanly(&output, "extraction directory");
}
