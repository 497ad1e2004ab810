//! The temp-file and watch leaks, counted on disk and in /proc/self/fdinfo.

use std::os::unix::fs::MetadataExt as _;

use super::*;
use crate::extract::{
    ExtractOptions, ExtractWorkspace, archive::ArchiveEntry, proc_stats, run_worker_to,
    test_support,
};

/// The files `--inject-leak tempfile` left in `dir`, with their sizes.
fn left_behind(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, entry.metadata().unwrap().size())
        })
        .collect();
    files.sort();
    files
}

/// The process's open inotify instances.
fn inotify_instances() -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.as_os_str() == "anon_inode:inotify")
        .count()
}

/// One line per watch: "inotify wd:1 ino:... sdev:... mask:2 ...".
fn watches_of(inotify: RawFd) -> usize {
    fs::read_to_string(format!("/proc/self/fdinfo/{inotify}"))
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("inotify wd:"))
        .count()
}

#[test]
fn the_tempfile_leak_leaves_one_4_kib_file_per_call_and_no_fd() {
    let _serial = test_support::serial();
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..7)
        .map(|_| injected_tempfile_leak(dir.path()).unwrap())
        .collect();
    // Only the files are leaked: no fd is left open on any of them.
    for path in &paths {
        assert_eq!(proc_stats::fds_pointing_at(path).unwrap(), 0, "{path:?}");
    }
    let files = left_behind(dir.path());
    assert_eq!(files.len(), 7);
    for (name, size) in &files {
        let suffix = name.strip_prefix(TEMPFILE_PREFIX).expect(name);
        assert_eq!(suffix.len(), 6, "{name}");
        assert!(suffix.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        assert_eq!(*size, TEMPFILE_LEAK_BYTES as u64);
    }
    for path in paths {
        assert_eq!(path.parent(), Some(dir.path()));
    }
}

#[test]
fn the_watch_leak_adds_one_watch_per_new_path() {
    let _serial = test_support::serial();
    let dir = tempfile::tempdir().unwrap();
    let extract = dir.path().join("extract");
    fs::create_dir(&extract).unwrap();
    prepare_workspace(InjectLeak::Watch, &extract, 9, None).unwrap();
    let leaks = DiskLeaks::new(InjectLeak::Watch).unwrap();
    let inotify = leaks.inotify.as_ref().unwrap().as_raw_fd();
    let mut descriptors = Vec::new();
    for iteration in 0..9 {
        let target = watch_target(&extract, iteration);
        descriptors.push(injected_watch_leak(inotify, &target).unwrap());
    }
    descriptors.dedup();
    assert_eq!(descriptors.len(), 9, "one watch per path");
    assert_eq!(watches_of(inotify), 9);
    // The same path again is the same watch: no new one.
    injected_watch_leak(inotify, &watch_target(&extract, 0)).unwrap();
    assert_eq!(watches_of(inotify), 9);
}

#[test]
fn the_watched_files_are_made_up_front_and_empty() {
    let _serial = test_support::serial();
    let dir = tempfile::tempdir().unwrap();
    let extract = dir.path().join("extract");
    fs::create_dir(&extract).unwrap();
    prepare_workspace(InjectLeak::Watch, &extract, 5, None).unwrap();
    let made = left_behind(&dir.path().join("watched"));
    let names: Vec<&str> = made.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["0", "1", "2", "3", "4"]);
    assert!(made.iter().all(|(_, size)| *size == 0));
    prepare_workspace(InjectLeak::Tempfile, &extract, 5, None).unwrap();
    assert!(temp_dir(&extract).is_dir());
    assert!(left_behind(&temp_dir(&extract)).is_empty());
}

#[test]
fn budgets_beyond_the_limits_fail_before_anything_runs() {
    let _serial = test_support::serial();
    let limit = max_user_watches().expect("inotify is available");
    let err = InjectLeak::Watch.prepare(limit).unwrap_err();
    assert!(matches!(err, ExtractError::WatchBudget { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("max_user_watches"), "{message}");
    assert!(
        message.contains("lower --rounds or --iterations"),
        "{message}"
    );
    InjectLeak::Watch
        .prepare(limit / 2 - WATCH_HEADROOM)
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let err = check_disk(dir.path(), u64::MAX / 8192).unwrap_err();
    assert!(matches!(err, ExtractError::DiskBudget { .. }), "{err:?}");
    assert!(err.to_string().contains("TMPDIR"), "{err}");
    check_disk(dir.path(), 10).unwrap();
}

fn options(inject_leak: InjectLeak) -> ExtractOptions {
    ExtractOptions {
        rounds: 2,
        iterations: 15,
        inject_leak,
        archive: None,
        files: vec![ArchiveEntry::new("only.txt", "one")],
        keep: false,
    }
}

#[test]
fn a_tempfile_run_leaves_a_file_per_iteration_until_the_workspace_goes() {
    let _serial = test_support::serial();
    let workspace = ExtractWorkspace::create(&options(InjectLeak::Tempfile), None).unwrap();
    let root = workspace.root().to_owned();
    run_worker_to(workspace.worker_config(), &mut Vec::new()).unwrap();
    let files = left_behind(&root.join("tmp"));
    assert_eq!(files.len(), 30);
    for (name, size) in &files {
        assert_eq!(*size, 4096);
        let fds = proc_stats::fds_pointing_at(&root.join("tmp").join(name)).unwrap();
        assert_eq!(fds, 0, "{name}");
    }
    workspace.remove().unwrap();
    assert!(!root.exists());
}

#[test]
fn a_watch_run_watches_every_prepared_file_and_cleans_up() {
    let _serial = test_support::serial();
    let workspace = ExtractWorkspace::create(&options(InjectLeak::Watch), None).unwrap();
    let root = workspace.root().to_owned();
    assert_eq!(left_behind(&root.join("watched")).len(), 30);
    let before = inotify_instances();
    run_worker_to(workspace.worker_config(), &mut Vec::new()).unwrap();
    // The inotify instance closed with the worker's run (here, its return).
    assert_eq!(inotify_instances(), before);
    workspace.remove().unwrap();
    assert!(!root.exists());
}
