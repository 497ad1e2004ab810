//! The files class (entries on disk the target created and did not remove) on fixtures with
//! known truth: fixtures/files.c (one mode per idiom) and fixtures/temp_files.py (Python's
//! tempfile). Each fixture writes under a fresh directory, removed when the case ends. A leak
//! is 1 entry per iteration at one grouped site; every "must not leak" case runs 5 times.

use rstest::rstest;

use leakscope_tests::{
    Source, Traced, assert_class, assert_no_leak_in, assert_one_leaking_site, assert_ran,
    assert_rate, class, diagnose, fixture, leakscope_json, pattern_starts_with, script, sites,
};

/// Iterations per run: enough for a conclusive verdict at 1 per iteration and for a
/// detection limit well under it.
const N: usize = 2000;

/// Runs of each "must not leak" case: a verdict that flips is caught.
const RUNS: usize = 5;

/// Bytes every fixture writes into each file.
const FILE_BYTES: f64 = 4096.0;

/// The classes other than files, which these fixtures leave flat (rss is not asserted: the
/// page cache of the files written is not the target's resident memory, but an
/// interpreter's warm-up is).
const OTHERS: [&str; 4] = ["fd", "mmap", "brk", "watches"];

/// A fresh directory for one run and its canonical path (what the report's sites name).
fn scratch() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    (dir, root.to_string_lossy().into_owned())
}

/// Runs `files MODE N DIR` marked by its iteration symbol, hands the report to `check`, then
/// removes DIR (and fails if it cannot).
fn files(mode: &str, check: impl FnOnce(&str, &Traced)) {
    let (dir, root) = scratch();
    let command = vec![
        fixture("files").to_string_lossy().into_owned(),
        mode.into(),
        N.to_string(),
        root.clone(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_ran(&traced, N);
    check(&root, &traced);
    dir.close().expect("cannot remove the fixture's directory");
}

#[rstest]
#[case::mkstemp_never_unlinked("mkstemp-leak", "leak-", Some(FILE_BYTES))]
#[case::tmpfile_then_linkat("tmpfile-link", "linked-", Some(FILE_BYTES))]
#[case::mkdir("mkdir-leak", "d-", None)]
#[case::relative_names_after_chdir("chdir-relative", "rel-", Some(FILE_BYTES))]
fn an_entry_left_on_disk_per_iteration_is_a_files_leak(
    #[case] mode: &str,
    #[case] name_prefix: &str,
    #[case] bytes_per_file: Option<f64>,
) {
    files(mode, |root, traced| {
        assert_class(traced, "files", "leak", mode);
        let files = class(traced, "files");
        assert_rate(&files["leaked_per_iteration"], 1.0, "files per iteration");
        // The exit removes nothing from disk: every entry is still there when tracing stops.
        assert_eq!(
            files["live_at_exit"], N,
            "{mode}: all left on disk: {files}"
        );
        if mode != "tmpfile-link" {
            // Nothing is ever removed. (An unnamed O_TMPFILE file may be counted from its
            // open and released were it closed unnamed: its release count is not asserted.)
            assert_eq!(files["released"], 0, "{mode}: nothing is removed: {files}");
        }
        if let Some(bytes) = bytes_per_file {
            assert_rate(
                &files["bytes_leaked_per_iteration"],
                bytes,
                "file bytes per iteration",
            );
        }
        // Relative names are resolved against the cwd: the site is absolute, under DIR.
        let prefix = format!("{root}/{name_prefix}");
        assert_one_leaking_site(
            traced,
            "files",
            &format!("starting with {prefix}"),
            |site| pattern_starts_with(site, &prefix),
            1.0,
        );
        assert_eq!(
            sites(traced, "files").len(),
            1,
            "{mode}: the fixture creates one name pattern: {files}"
        );
        assert_no_leak_in(traced, &OTHERS, mode);
    });
}

#[test]
fn a_mkstemp_leak_is_not_an_fd_leak() {
    // The file is closed every iteration: the fd class sees open and close, nothing kept.
    files("mkstemp-leak", |_, traced| {
        assert_class(traced, "fd", "no-leak", "mkstemp-leak");
        assert_eq!(class(traced, "files")["acquired"], N);
    });
}

/// `live`: entries the mode keeps on disk after its first iteration (config.json, same.txt).
#[rstest]
#[case::mkstemp_then_unlink("mkstemp-unlink", 0)]
#[case::atomic_replace_by_rename("atomic-replace", 1)]
#[case::tmpfile_never_linked("tmpfile", 0)]
#[case::overwriting_the_same_file("overwrite", 1)]
fn an_entry_removed_replaced_or_never_named_is_no_files_leak(
    #[case] mode: &str,
    #[case] live: u64,
) {
    for run in 0..RUNS {
        let context = format!("{mode} run {run}");
        files(mode, |_, traced| {
            assert_class(traced, "files", "no-leak", &context);
            let files = class(traced, "files");
            assert_eq!(files["live_at_end"], live, "{context}: {files}");
            assert_eq!(files["live_at_exit"], live, "{context}: {files}");
            assert_no_leak_in(traced, &OTHERS, &context);
        });
    }
}

#[test]
fn overwriting_an_existing_file_creates_nothing_new() {
    // Only the first open creates same.txt; the other N - 1 open what exists.
    files("overwrite", |_, traced| {
        let files = class(traced, "files");
        assert_eq!(files["acquired"], 1, "{files}");
        assert_eq!(files["released"], 0, "{files}");
    });
}

/// `python3 temp_files.py N DIR keep|delete`, marked by its tick path.
fn python_temp_files(mode: &str, check: impl FnOnce(&str, &Traced)) {
    let (dir, root) = scratch();
    let command = vec![
        "python3".to_string(),
        script("temp_files.py").to_string_lossy().into_owned(),
        N.to_string(),
        root.clone(),
        mode.into(),
    ];
    let traced = diagnose(Source::Path, std::path::Path::new(&root), &command);
    assert_ran(&traced, N);
    check(&root, &traced);
    dir.close().expect("cannot remove the fixture's directory");
}

#[test]
fn python_named_temporary_files_kept_are_a_files_leak() {
    python_temp_files("keep", |root, traced| {
        assert_class(traced, "files", "leak", "delete=False");
        let files = class(traced, "files");
        assert_rate(&files["leaked_per_iteration"], 1.0, "files per iteration");
        assert_rate(
            &files["bytes_leaked_per_iteration"],
            FILE_BYTES,
            "file bytes per iteration",
        );
        let prefix = format!("{root}/leak-");
        assert_one_leaking_site(
            traced,
            "files",
            &format!("starting with {prefix}"),
            |site| pattern_starts_with(site, &prefix),
            1.0,
        );
        assert_no_leak_in(traced, &OTHERS, "delete=False");
    });
}

#[test]
fn python_named_temporary_files_deleted_are_no_files_leak() {
    for run in 0..RUNS {
        let context = format!("delete=True run {run}");
        python_temp_files("delete", |_, traced| {
            assert_class(traced, "files", "no-leak", &context);
            assert_no_leak_in(traced, &OTHERS, &context);
        });
    }
}
