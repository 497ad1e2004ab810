//! The files class (entries on disk the target created and did not remove) on fixtures with
//! known truth: fixtures/files.c (one mode per idiom), fixtures/temp_files.py (Python's
//! tempfile), fixtures/mktemp_files.sh (a shell loop whose files a child creates) and
//! fixtures/node_files.js (Node's mkdtemp). Each fixture writes under a fresh directory,
//! removed when the case ends. A leak is 1 entry per iteration at one grouped site unless
//! said otherwise; every "must not leak" case runs 5 times.

use rstest::rstest;

use leakscope_tests::{
    Source, Traced, assert_class, assert_no_leak_in, assert_one_leaking_site, assert_ran,
    assert_rate, class, diagnose, fixture, leakscope_json, pattern_starts_with, script, site_path,
    sites,
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
    check(&root, &files_in(mode, &root));
    dir.close().expect("cannot remove the fixture's directory");
}

/// `files MODE N ROOT` marked by its iteration symbol, run to the end.
fn files_in(mode: &str, root: &str) -> Traced {
    let command = vec![
        fixture("files").to_string_lossy().into_owned(),
        mode.into(),
        N.to_string(),
        root.into(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_ran(&traced, N);
    traced
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
        assert_one_4_kib_file_per_iteration(traced, "delete=False");
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

/// A tmpfs of 1 MiB and `INODES` inodes mounted on a fresh directory for one test, unmounted
/// (and the directory removed) when dropped, a failed assertion included.
struct TinyTmpfs {
    dir: Option<tempfile::TempDir>,
    root: String,
}

/// Inodes of the tiny tmpfs: its root directory takes one, so 299 entries fit.
const INODES: usize = 300;

impl TinyTmpfs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let root = root.to_string_lossy().into_owned();
        let options = format!("size=1m,nr_inodes={INODES}");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs", &root])
            .status()
            .expect("cannot run mount");
        assert!(status.success(), "mount -t tmpfs on {root}: {status}");
        TinyTmpfs {
            dir: Some(dir),
            root,
        }
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount")
            .arg(&self.root)
            .status();
        let unmounted = status.is_ok_and(|s| s.success());
        if let Some(dir) = self.dir.take() {
            // The entries went with the file system; only the mount point is left.
            if unmounted {
                let _ = dir.close();
            } else {
                eprintln!("cannot unmount {}: left mounted", self.root);
                std::mem::forget(dir);
            }
        }
    }
}

/// A leak that fills its file system: 299 entries fit, then every create fails with ENOSPC
/// (counted by the fixture, which goes on). Judged on the count alone that is a plateau; it
/// is a leak of 1 per iteration until the limit, and the report says so.
#[rstest]
#[case::files("fill-files")]
#[case::directories("fill-dirs")]
fn a_files_leak_that_fills_its_file_system_is_a_leak_at_its_limit(#[case] mode: &str) {
    let tmpfs = TinyTmpfs::mount();
    let traced = files_in(mode, &tmpfs.root);
    let fitted = INODES - 1;
    let refused = N - fitted;
    assert!(
        traced.stderr().contains(&format!("out of room: {refused}")),
        "{mode}: the fixture counts its ENOSPC failures: {}",
        traced.stderr()
    );
    assert_class(&traced, "files", "leak", mode);
    let files = class(&traced, "files");
    assert_rate(&files["leaked_per_iteration"], 1.0, "files per iteration");
    assert_eq!(files["acquired"], fitted, "{mode}: {files}");
    assert_eq!(files["live_at_end"], fitted, "{mode}: {files}");
    let hit = &files["limit_hit"];
    assert_eq!(hit["errno"], "ENOSPC", "{mode}: {files}");
    assert_eq!(hit["failures"], refused, "{mode}: {files}");
    assert_eq!(
        hit["iteration"], fitted,
        "{mode}: the first refused: {files}"
    );
    let site = assert_one_leaking_site(
        &traced,
        "files",
        "under the tmpfs",
        |site| pattern_starts_with(site, &format!("{}/", tmpfs.root)),
        1.0,
    );
    // A directory has a size on tmpfs: its site leaks it at the rate the class does, not
    // spread over the iterations that failed.
    let class_bytes = files["bytes_leaked_per_iteration"].as_f64().unwrap();
    if class_bytes > 0.0 {
        assert_rate(
            &site["bytes_leaked_per_iteration"],
            class_bytes,
            "site bytes per iteration",
        );
    }
    let text = traced.stdout();
    assert!(
        text.contains(&format!("it hit ENOSPC at iteration {fitted}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{refused} calls failed with ENOSPC")),
        "{text}"
    );
    assert_no_leak_in(&traced, &OTHERS, mode);
}

#[test]
fn rotated_logs_never_deleted_are_a_files_leak_at_their_rotated_name() {
    files("rotate", |root, traced| {
        assert_one_4_kib_file_per_iteration(traced, "rotate");
        // Where they pile up: app.log.N, not the one app.log they were created as.
        let rotated = format!("{root}/app.log.N");
        assert_one_leaking_site(
            traced,
            "files",
            &format!("named {rotated}"),
            |site| site_path(site).len() == rotated.len() && pattern_starts_with(site, &rotated),
            1.0,
        );
        assert_no_leak_in(traced, &OTHERS, "rotate");
    });
}

#[test]
fn rotated_logs_kept_to_the_last_three_are_no_files_leak() {
    for run in 0..RUNS {
        let context = format!("rotate-keep3 run {run}");
        files("rotate-keep3", |_, traced| {
            let files = class(traced, "files");
            assert_ne!(files["verdict"], "leak", "{context}: {files}");
            assert_ne!(files["verdict"], "inconclusive", "{context}: {files}");
            // app.log and the three newest rotated ones.
            assert_eq!(files["live_at_end"], 4, "{context}: {files}");
            assert_no_leak_in(traced, &OTHERS, &context);
        });
    }
}

/// A directory with three files per iteration, removed as rm -rf does or through a trash
/// directory.
#[rstest]
#[case::rm_rf("tree-rm", 0)]
#[case::moved_to_trash_then_removed("tree-trash", 1)]
fn a_tree_removed_each_iteration_is_no_files_leak(#[case] mode: &str, #[case] live: u64) {
    for run in 0..RUNS {
        let context = format!("{mode} run {run}");
        files(mode, |_, traced| {
            assert_class(traced, "files", "no-leak", &context);
            let files = class(traced, "files");
            assert_eq!(files["acquired"], 4 * N as u64 + live, "{context}: {files}");
            // The trash directory itself lives on.
            assert_eq!(files["live_at_end"], live, "{context}: {files}");
            assert_no_leak_in(traced, &OTHERS, &context);
        });
    }
}

#[test]
fn a_tree_left_each_iteration_leaks_its_four_entries() {
    files("tree-leave", |root, traced| {
        assert_class(traced, "files", "leak", "tree-leave");
        let files = class(traced, "files");
        assert_rate(&files["leaked_per_iteration"], 4.0, "entries per iteration");
        assert_eq!(files["live_at_exit"], 4 * N as u64, "{files}");
        // The directory and each of its three files: one site each.
        let leaking: Vec<&str> = sites(traced, "files")
            .iter()
            .filter(|site| site["verdict"] == "leak")
            .map(|site| site["site"].as_str().unwrap())
            .collect();
        assert_eq!(leaking.len(), 4, "{leaking:?}");
        let tree = format!("{root}/t-N");
        assert!(
            leaking.iter().all(|site| pattern_starts_with(site, &tree)),
            "{leaking:?}"
        );
        assert_no_leak_in(traced, &OTHERS, "tree-leave");
    });
}

/// 1 file per 50 iterations over 2000: 40 entries. Resolved, it is a leak at 0.02; never
/// "no-leak".
#[test]
fn a_files_leak_below_one_per_iteration_is_a_leak_or_inconclusive_never_no_leak() {
    for run in 0..RUNS {
        let context = format!("slow run {run}");
        files("slow", |root, traced| {
            let files = class(traced, "files");
            match files["verdict"].as_str() {
                Some("leak") => {
                    assert_rate(&files["leaked_per_iteration"], 0.02, &context);
                    let prefix = format!("{root}/s-");
                    assert_one_leaking_site(
                        traced,
                        "files",
                        &format!("starting with {prefix}"),
                        |site| pattern_starts_with(site, &prefix),
                        0.02,
                    );
                }
                Some("inconclusive") => {}
                _ => panic!("{context}: never no-leak: {files}"),
            }
            assert_eq!(files["live_at_exit"], (N / 50) as u64, "{context}: {files}");
        });
    }
}

/// `COMMAND... N DIR [MODE]` marked by DIR/tick.
fn ticked(program: &[&str], mode: Option<&str>, check: impl FnOnce(&str, &Traced)) {
    let (dir, root) = scratch();
    let mut command: Vec<String> = program.iter().map(|s| s.to_string()).collect();
    command.extend([N.to_string(), root.clone()]);
    command.extend(mode.map(str::to_string));
    let traced = diagnose(Source::Path, std::path::Path::new(&root), &command);
    assert_ran(&traced, N);
    check(&root, &traced);
    dir.close().expect("cannot remove the fixture's directory");
}

fn mktemp_loop(clean: bool, check: impl FnOnce(&str, &Traced)) {
    let script = script("mktemp_files.sh").to_string_lossy().into_owned();
    ticked(&["bash", &script], clean.then_some("clean"), check);
}

#[test]
fn files_an_external_mktemp_leaves_are_a_files_leak() {
    // Each file is created by a child process that exits right after: the filesystem is
    // shared, so its exit removes nothing.
    mktemp_loop(false, |root, traced| {
        assert_class(traced, "files", "leak", "mktemp");
        let files = class(traced, "files");
        assert_rate(&files["leaked_per_iteration"], 1.0, "files per iteration");
        let pattern = format!("{root}/tmp.XXXXXXXXXX");
        assert_one_leaking_site(
            traced,
            "files",
            &format!("named {pattern}"),
            |site| site_path(site).len() == pattern.len() && pattern_starts_with(site, &pattern),
            1.0,
        );
        assert_no_leak_in(traced, &["fd", "watches"], "mktemp");
    });
}

#[test]
fn files_an_external_mktemp_makes_and_rm_removes_are_no_files_leak() {
    for run in 0..RUNS {
        let context = format!("mktemp + rm run {run}");
        mktemp_loop(true, |_, traced| {
            assert_class(traced, "files", "no-leak", &context);
            // DIR/tick, created by the first iteration.
            assert_eq!(class(traced, "files")["live_at_end"], 1, "{context}");
            assert_no_leak_in(traced, &["fd", "watches"], &context);
        });
    }
}

fn node_files(mode: &str, check: impl FnOnce(&str, &Traced)) {
    let script = script("node_files.js").to_string_lossy().into_owned();
    ticked(&["node", &script], Some(mode), check);
}

#[test]
fn node_mkdtemp_never_removed_is_a_files_leak() {
    node_files("mkdtemp", |root, traced| {
        assert_class(traced, "files", "leak", "mkdtemp");
        let files = class(traced, "files");
        assert_rate(
            &files["leaked_per_iteration"],
            1.0,
            "directories per iteration",
        );
        let pattern = format!("{root}/job-XXXXXX");
        let site = assert_one_leaking_site(
            traced,
            "files",
            &format!("named {pattern}"),
            |site| site_path(site).len() == pattern.len() && pattern_starts_with(site, &pattern),
            1.0,
        );
        assert!(
            site["site"].as_str().unwrap().starts_with("directory "),
            "{site}"
        );
        // Its first names may read like words (job-FSVN12): they join the one site, which
        // holds every directory kept across a boundary (all but the last iteration's).
        assert_eq!(site["leaked"], N - 1, "{site}");
    });
}

#[test]
fn node_mkdtemp_removed_is_no_files_leak() {
    for run in 0..RUNS {
        let context = format!("mkdtemp + rmSync run {run}");
        node_files("mkdtemp-rm", |_, traced| {
            assert_class(traced, "files", "no-leak", &context);
            assert_eq!(class(traced, "files")["live_at_end"], 1, "{context}: tick");
        });
    }
}

#[test]
fn files_created_through_a_symlink_and_removed_by_their_real_path_are_never_a_leak() {
    // The ledger sees two names for one file; the disk, checked when tracing ends, has
    // none of them. When they went is unknown: inconclusive at worst, never a leak.
    for run in 0..RUNS {
        let context = format!("symlink-alias run {run}");
        files("symlink-alias", |_, traced| {
            let files = class(traced, "files");
            assert_ne!(files["verdict"], "leak", "{context}: {files}");
            assert!(
                sites(traced, "files")
                    .iter()
                    .all(|site| site["verdict"] != "leak"),
                "{context}: {files}"
            );
            assert!(
                files["why"].as_str().unwrap().contains("gone from disk"),
                "{context}: {files}"
            );
            assert_no_leak_in(traced, &OTHERS, &context);
        });
    }
}

/// The files class leaks one 4 KiB file per iteration (±5 %).
fn assert_one_4_kib_file_per_iteration(traced: &Traced, context: &str) {
    assert_class(traced, "files", "leak", context);
    let files = class(traced, "files");
    assert_rate(&files["leaked_per_iteration"], 1.0, "files per iteration");
    assert_rate(
        &files["bytes_leaked_per_iteration"],
        FILE_BYTES,
        "file bytes per iteration",
    );
}
