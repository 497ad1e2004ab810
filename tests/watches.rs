//! The watches class (inotify watches and fanotify marks) on fixtures/watches.c, one mode per
//! idiom. The fixture creates the files it watches before its loop, under a fresh directory
//! removed when the case ends, so the files class stays flat. A leak is 1 watch per iteration
//! at one site naming the watched path; every "must not leak" case runs 5 times.

use rstest::rstest;

use leakscope_tests::{
    Traced, assert_class, assert_no_leak_in, assert_one_leaking_site, assert_ran, assert_rate,
    class, fixture, leakscope_json, pattern_starts_with, sites,
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

#[rstest]
#[case::inotify_on_a_new_path("new-path")]
#[case::fanotify_mark_on_a_new_path("fanotify")]
fn a_watch_on_a_new_path_per_iteration_is_a_watches_leak(#[case] mode: &str) {
    watches(mode, |root, traced| {
        assert_class(traced, "watches", "leak", mode);
        let watches = class(traced, "watches");
        assert_rate(
            &watches["leaked_per_iteration"],
            1.0,
            "watches per iteration",
        );
        assert_eq!(watches["acquired"], N, "{mode}: one per path: {watches}");
        // The exit closes the notification fd, which drops every watch it held.
        assert_eq!(watches["live_at_exit"], 0, "{mode}: {watches}");
        let watched = format!("{root}/w-");
        assert_one_leaking_site(
            traced,
            "watches",
            &format!("naming {watched}"),
            |site| pattern_starts_with(site, &watched),
            1.0,
        );
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
