//! The probes see every filesystem and watch call exactly: the fixture makes each a known
//! number of times per iteration (with N = 0 and N = 1000, so start-up noise cancels out),
//! none of them may lose its record or a path (a NULL fanotify_mark path is no failed
//! read), and none of them counts as an fd.

use leakscope_tests::{counts_beyond_baseline, expect};

const N: i64 = 1000;

#[test]
fn every_filesystem_and_watch_call_is_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let counts = counts_beyond_baseline("fs_calls", N as u64, &[dir.path().to_str().unwrap()]);
    assert_eq!(
        counts,
        expect(&[
            ("open", N),
            ("openat", 2 * N),
            ("openat2", N),
            ("creat", N),
            ("close", 5 * N),
            ("mkdir", N),
            ("mkdirat", N),
            ("rename", N),
            ("renameat", N),
            ("renameat2", N),
            ("link", N),
            ("linkat", 2 * N),
            ("symlink", N),
            ("symlinkat", N),
            ("mknod", N),
            ("mknodat", N),
            ("chdir", N),
            ("fchdir", N),
            ("inotify_add_watch", N),
            ("inotify_rm_watch", N),
            ("fanotify_mark", 2 * N),
            ("unlink", 7 * N),
            ("unlinkat", 4 * N),
            ("rmdir", N),
        ])
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the fixture removes all it creates"
    );
}
