//! The watches class (inotify watches and fanotify marks) on fixtures/watches.c, one mode per
//! idiom, and on Node's fs.watch (fixtures/node_files.js). The fixture creates the files it watches before its loop, under a fresh directory
//! removed when the case ends, so the files class stays flat. A leak is 1 watch per iteration
//! at one site naming the watched path; every "must not leak" case runs 5 times.

use rstest::rstest;

use leakscope_tests::{
    Source, Traced, assert_class, assert_no_leak_in, assert_one_leaking_site, assert_ran,
    assert_rate, class, diagnose, fixture, leakscope_json, pattern_starts_with, script, sites,
};

/// Iterations per run: enough for a conclusive verdict at 1 per iteration and for a
/// detection limit well under it (and far below fs.inotify.max_user_watches).
const N: usize = 2000;

/// Runs of each "must not leak" case: a verdict that flips is caught.
const RUNS: usize = 5;

/// The classes other than watches, which this fixture leaves flat (rss is not asserted, as
/// in the files tests: kernel memory for marks is not the target's resident memory).
const OTHERS: [&str; 4] = ["fd", "mmap", "brk", "files"];

/// watches.c exits with this when fanotify_init is refused (EPERM, ENOSYS).
const FANOTIFY_UNAVAILABLE: i64 = 77;

/// Runs `watches MODE N DIR` marked by its iteration symbol and hands the report to `check`
/// (with DIR's canonical path), then removes DIR. Returns false, without checking, only when
/// the fixture says fanotify is unavailable here.
fn watches(mode: &str, check: impl FnOnce(&str, &Traced)) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let root = root.to_string_lossy().into_owned();
    let command = vec![
        fixture("watches").to_string_lossy().into_owned(),
        mode.into(),
        N.to_string(),
        root.clone(),
    ];
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    if mode.starts_with("fanotify")
        && traced.report["target"]["exit_code"].as_i64() == Some(FANOTIFY_UNAVAILABLE)
    {
        eprintln!(
            "SKIPPED {mode}: fanotify_init is refused on this machine: {}",
            traced.stderr()
        );
        return false;
    }
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_ran(&traced, N);
    check(&root, &traced);
    dir.close().expect("cannot remove the fixture's directory");
    true
}

/// A watches leak of one watch per iteration on `ROOT/w-…`, one per path, all dropped
/// when the watching process exits.
fn assert_one_watch_leaked_per_iteration(root: &str, traced: &Traced, context: &str) {
    assert_class(traced, "watches", "leak", context);
    let watches = class(traced, "watches");
    assert_rate(
        &watches["leaked_per_iteration"],
        1.0,
        "watches per iteration",
    );
    assert_eq!(watches["acquired"], N, "{context}: one per path: {watches}");
    assert_eq!(watches["live_at_exit"], 0, "{context}: {watches}");
    let watched = format!("{root}/w-");
    assert_one_leaking_site(
        traced,
        "watches",
        &format!("naming {watched}"),
        |site| pattern_starts_with(site, &watched),
        1.0,
    );
}

#[rstest]
#[case::inotify_on_a_new_path("new-path")]
#[case::fanotify_mark_on_a_new_path("fanotify")]
#[case::by_a_worker_forked_per_iteration_on_the_inherited_fd("fork-worker")]
fn a_watch_on_a_new_path_per_iteration_is_a_watches_leak(#[case] mode: &str) {
    watches(mode, |root, traced| {
        // The exit closes the notification fd, which drops every watch it held.
        assert_one_watch_leaked_per_iteration(root, traced, mode);
        let watches = class(traced, "watches");
        assert_eq!(
            sites(traced, "watches").len(),
            1,
            "{mode}: one grouped pattern of watched paths: {watches}"
        );
        assert_no_leak_in(traced, &OTHERS, mode);
    });
}

/// `live`: watches held at the last iteration boundary.
#[rstest]
#[case::inotify_on_the_same_path("same-path", 1)]
#[case::inotify_rm_watch("rm-watch", 0)]
#[case::closing_the_inotify_fd("close-fd", 0)]
#[case::fanotify_mark_removed("fanotify-remove", 0)]
fn a_watch_reused_or_removed_is_no_watches_leak(#[case] mode: &str, #[case] live: u64) {
    for run in 0..RUNS {
        let context = format!("{mode} run {run}");
        let ran = watches(mode, |_, traced| {
            assert_class(traced, "watches", "no-leak", &context);
            let watches = class(traced, "watches");
            assert_eq!(watches["live_at_end"], live, "{context}: {watches}");
            assert_no_leak_in(traced, &OTHERS, &context);
        });
        if !ran {
            return;
        }
    }
}

#[test]
fn closing_the_inotify_fd_releases_its_watch_and_the_fd() {
    // One inotify fd and one watch per iteration, both gone when the fd is closed.
    watches("close-fd", |_, traced| {
        assert_class(traced, "fd", "no-leak", "close-fd");
        let watches = class(traced, "watches");
        assert_eq!(watches["acquired"], N, "{watches}");
        assert_eq!(watches["released"], N, "{watches}");
    });
}

#[test]
fn the_same_path_watched_again_is_one_watch() {
    // inotify_add_watch on an inode already watched returns the same watch descriptor.
    watches("same-path", |_, traced| {
        let watches = class(traced, "watches");
        assert_eq!(watches["acquired"], 1, "{watches}");
        assert_eq!(watches["live_at_end"], 1, "{watches}");
    });
}

/// The kernel drops an inotify watch with its inode: rmdir of the watched directory, at its
/// name or after a rename, releases the watch, and the directory is no entry left on disk.
#[rstest]
#[case::removed("removed-dir")]
#[case::renamed_then_removed("renamed-dir")]
fn a_watch_on_a_directory_removed_in_the_same_iteration_leaks_nothing(#[case] mode: &str) {
    for run in 0..RUNS {
        let context = format!("{mode} run {run}");
        watches(mode, |_, traced| {
            assert_class(traced, "watches", "no-leak", &context);
            assert_class(traced, "files", "no-leak", &context);
            let watches = class(traced, "watches");
            assert_eq!(watches["acquired"], N, "{context}: {watches}");
            assert_eq!(watches["released"], N, "{context}: {watches}");
            assert_eq!(watches["live_at_end"], 0, "{context}: {watches}");
            // Only the N files made before the loop live on.
            assert_eq!(class(traced, "files")["live_at_end"], N, "{context}");
            assert_no_leak_in(traced, &["fd", "mmap", "brk"], &context);
        });
    }
}

#[test]
fn a_forked_watcher_that_adds_a_watch_per_iteration_is_a_watches_leak() {
    // The parent marks the iterations; its child adds the watches on its own inotify fd
    // and exits after the loop, which drops them all.
    watches("daemon", |root, traced| {
        // The child's exit drops them.
        assert_one_watch_leaked_per_iteration(root, traced, "daemon");
        assert_eq!(traced.report["counts"]["inotify_add_watch"], N);
        assert_no_leak_in(traced, &OTHERS, "daemon");
    });
}

/// `node node_files.js N DIR MODE`, marked by DIR/tick.
fn node_watch(mode: &str, check: impl FnOnce(&str, &Traced)) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let command = vec![
        "node".to_string(),
        script("node_files.js").to_string_lossy().into_owned(),
        N.to_string(),
        root.to_string_lossy().into_owned(),
        mode.into(),
    ];
    let traced = diagnose(Source::Path, &root, &command);
    assert_ran(&traced, N);
    check(&root.to_string_lossy(), &traced);
    dir.close().expect("cannot remove the fixture's directory");
}

#[test]
fn node_fs_watch_on_a_new_path_never_closed_is_a_watches_leak() {
    node_watch("watch", |root, traced| {
        assert_class(traced, "watches", "leak", "fs.watch");
        let watches = class(traced, "watches");
        assert_rate(
            &watches["leaked_per_iteration"],
            1.0,
            "watches per iteration",
        );
        let watched = format!("{root}/w-");
        assert_one_leaking_site(
            traced,
            "watches",
            &format!("naming {watched}"),
            |site| pattern_starts_with(site, &watched),
            1.0,
        );
        // libuv shares one inotify fd for every watcher.
        assert_class(traced, "fd", "no-leak", "fs.watch");
    });
}

#[test]
fn node_fs_watch_closed_is_no_watches_leak() {
    for run in 0..RUNS {
        let context = format!("fs.watch + close run {run}");
        node_watch("watch-close", |_, traced| {
            assert_class(traced, "watches", "no-leak", &context);
            assert_eq!(class(traced, "watches")["live_at_end"], 0, "{context}");
            assert_class(traced, "fd", "no-leak", &context);
        });
    }
}
