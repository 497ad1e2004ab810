//! The files and watches ledger from synthetic calls: what is live on disk and watched.

use super::Ledger;
use super::records::Cause;
use super::test_support::{Stream, call};
use crate::event::What;
use leakscope_common::syscalls as nr;

const PID: u32 = 40;
const CWD: u64 = -100i64 as u64;
pub(crate) use leakscope_common::open_flags::{O_CREAT, O_EXCL};
pub(crate) const O_RDWR: u64 = 2;
/// What glibc passes for O_TMPFILE: the bit and O_DIRECTORY.
pub(crate) const O_TMPFILE: u64 = leakscope_common::open_flags::O_TMPFILE_BIT | 0o200000;
const AT_EMPTY_PATH: u64 = 0x1000;

/// Calls the files and watches tests make, as the kernel reports them.
pub(crate) trait FileCalls {
    /// mkstemp: openat(AT_FDCWD, path, O_RDWR|O_CREAT|O_EXCL).
    fn mkstemp(&mut self, path: &str, fd: i32) -> &mut Self;
    fn openat_flags(&mut self, dirfd: i32, path: &str, flags: u64, fd: i32) -> &mut Self;
    fn unlink(&mut self, path: &str) -> &mut Self;
    fn rename(&mut self, from: &str, to: &str) -> &mut Self;
    fn mkdir(&mut self, path: &str) -> &mut Self;
    fn rmdir(&mut self, path: &str) -> &mut Self;
    fn chdir(&mut self, path: &str) -> &mut Self;
    fn inotify_init(&mut self, fd: i32) -> &mut Self;
    fn add_watch(&mut self, fd: i32, path: &str, wd: i32) -> &mut Self;
    fn rm_watch(&mut self, fd: i32, wd: i32) -> &mut Self;
}

impl FileCalls for Stream {
    fn mkstemp(&mut self, path: &str, fd: i32) -> &mut Self {
        self.openat_flags(-100, path, O_RDWR | O_CREAT | O_EXCL, fd)
    }
    fn openat_flags(&mut self, dirfd: i32, path: &str, flags: u64, fd: i32) -> &mut Self {
        let dirfd = dirfd as i64 as u64;
        self.sys(call(nr::OPENAT, fd.into(), [dirfd, 0, flags, 0o600, 0, 0]).with_path(path))
    }
    fn unlink(&mut self, path: &str) -> &mut Self {
        self.sys(call(nr::UNLINK, 0, [0; 6]).with_path(path))
    }
    fn rename(&mut self, from: &str, to: &str) -> &mut Self {
        self.sys(call(nr::RENAME, 0, [0; 6]).with_path(from).with_path2(to))
    }
    fn mkdir(&mut self, path: &str) -> &mut Self {
        self.sys(call(nr::MKDIR, 0, [0, 0o700, 0, 0, 0, 0]).with_path(path))
    }
    fn rmdir(&mut self, path: &str) -> &mut Self {
        self.sys(call(nr::RMDIR, 0, [0; 6]).with_path(path))
    }
    fn chdir(&mut self, path: &str) -> &mut Self {
        self.sys(call(nr::CHDIR, 0, [0; 6]).with_path(path))
    }
    fn inotify_init(&mut self, fd: i32) -> &mut Self {
        self.sys(call(nr::INOTIFY_INIT1, fd.into(), [0; 6]))
    }
    fn add_watch(&mut self, fd: i32, path: &str, wd: i32) -> &mut Self {
        let args = [fd as u64, 0, 0x100, 0, 0, 0];
        self.sys(call(nr::INOTIFY_ADD_WATCH, wd.into(), args).with_path(path))
    }
    fn rm_watch(&mut self, fd: i32, wd: i32) -> &mut Self {
        self.sys(call(
            nr::INOTIFY_RM_WATCH,
            0,
            [fd as u64, wd as u64, 0, 0, 0, 0],
        ))
    }
}

fn live(ledger: &Ledger) -> Vec<String> {
    ledger
        .live_file_paths()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn live_watches(ledger: &Ledger) -> Vec<String> {
    let records = ledger.watch_records().all().iter();
    records
        .filter(|r| r.is_live())
        .map(|r| ledger.site_text(r.site))
        .collect()
}

#[test]
fn created_entries_live_until_removed() {
    let mut s = Stream::new(PID);
    s.mkstemp("/tmp/a-Xa81Zq", 3)
        .mkstemp("/tmp/a-k2P0dd", 4)
        .unlink("/tmp/a-Xa81Zq");
    s.mkdir("/tmp/d").exit();
    let ledger = s.ledger();
    assert_eq!(
        live(&ledger),
        vec!["/tmp/a-k2P0dd", "/tmp/d"],
        "exit releases nothing"
    );
    let sites: Vec<String> = ledger
        .file_records()
        .all()
        .iter()
        .map(|r| ledger.site_text(r.site))
        .collect();
    assert_eq!(
        sites,
        vec![
            "file /tmp/a-XXXXXX",
            "file /tmp/a-XXXXXX",
            "directory /tmp/d"
        ]
    );
}

#[test]
fn opening_existing_files_creates_nothing() {
    let mut s = Stream::new(PID);
    // O_CREAT without O_EXCL and nothing from the kernel: not a guess of "created".
    s.openat_flags(-100, "/var/log/app.log", O_RDWR | O_CREAT, 3);
    s.sys(
        call(nr::OPENAT, 4, [CWD, 0, O_RDWR | O_CREAT, 0, 0, 0])
            .with_path("/var/log/b.log")
            .with_open(O_RDWR | O_CREAT, Some(false)),
    );
    s.sys(
        call(nr::OPENAT, 5, [CWD, 0, O_RDWR | O_CREAT, 0, 0, 0])
            .with_path("/var/log/c.log")
            .with_open(O_RDWR | O_CREAT, Some(true)),
    );
    assert_eq!(live(&s.ledger()), vec!["/var/log/c.log"]);
}

#[test]
fn o_tmpfile_is_nothing_until_linked() {
    let mut s = Stream::new(PID);
    s.openat_flags(-100, "/tmp", O_TMPFILE | O_RDWR, 3);
    assert!(live(&s.ledger()).is_empty());
    // linkat(fd, "", AT_FDCWD, "/tmp/named", AT_EMPTY_PATH): the path is the new name.
    s.sys(call(nr::LINKAT, 0, [3, 0, CWD, 0, AT_EMPTY_PATH, 0]).with_path("/tmp/named"));
    let ledger = s.ledger();
    assert_eq!(live(&ledger), vec!["/tmp/named"]);
    let record = ledger.file_records().all()[0];
    assert_eq!(ledger.site_text(record.site), "hard link /tmp/named");
}

#[test]
fn recreating_a_name_replaces_the_entry() {
    let mut s = Stream::new(PID);
    s.mkstemp("/tmp/out", 3).close(3).mkstemp("/tmp/out", 3);
    let ledger = s.ledger();
    let records = ledger.file_records().all();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].cause, Some(Cause::Implicit));
    assert!(records[1].is_live());
}

#[test]
fn atomic_replace_leaves_one_entry_per_target() {
    let mut s = Stream::new(PID);
    for i in 0..5 {
        let tmp = format!("/srv/state.json.tmp{i}");
        s.mkstemp(&tmp, 3).close(3).rename(&tmp, "/srv/state.json");
    }
    let ledger = s.ledger();
    assert_eq!(live(&ledger), vec!["/srv/state.json"]);
    let live_records = ledger.file_records().all().iter().filter(|r| r.is_live());
    assert_eq!(live_records.count(), 1);
}

#[test]
fn relative_paths_resolve_against_cwd_and_dirfd() {
    let mut s = Stream::new(PID);
    s.chdir("/work").chdir("sub").mkstemp("a.txt", 3);
    s.openat_flags(-100, "/data", 0o200000, 4);
    s.openat_flags(4, "b.txt", O_RDWR | O_CREAT | O_EXCL, 5);
    s.sys(call(nr::MKDIRAT, 0, [4, 0, 0o700, 0, 0, 0]).with_path("../x"));
    // fchdir to the /data fd, then an unlink relative to it.
    s.sys(call(nr::FCHDIR, 0, [4, 0, 0, 0, 0, 0]))
        .unlink("b.txt");
    assert_eq!(live(&s.ledger()), vec!["/work/sub/a.txt", "/x"]);
}

#[test]
fn unknown_cwd_keeps_paths_relative_but_usable() {
    let mut s = Stream::new(PID);
    s.mkstemp("rel.tmp", 3);
    assert_eq!(live(&s.ledger()), vec!["rel.tmp"]);
    s.unlink("./rel.tmp");
    assert!(live(&s.ledger()).is_empty());
}

#[test]
fn renaming_a_directory_moves_its_children() {
    let mut s = Stream::new(PID);
    s.mkdir("/t/job")
        .mkstemp("/t/job/a", 3)
        .rename("/t/job", "/t/done");
    s.unlink("/t/done/a");
    assert_eq!(live(&s.ledger()), vec!["/t/done"]);
}

#[test]
fn rename_exchange_swaps_records() {
    let mut s = Stream::new(PID);
    s.mkstemp("/t/a", 3).mkdir("/t/b");
    s.sys(
        call(nr::RENAMEAT2, 0, [CWD, 0, CWD, 0, 2, 0])
            .with_path("/t/a")
            .with_path2("/t/b"),
    );
    let ledger = s.ledger();
    let kinds: Vec<(String, String)> = ledger
        .live_file_paths()
        .into_iter()
        .map(|(id, path)| (path, ledger.site_text(ledger.file_records().get(id).site)))
        .collect();
    // The kinds swap; each entry's site names where it lives now.
    assert_eq!(
        kinds,
        vec![
            ("/t/a".into(), "directory /t/a".into()),
            ("/t/b".into(), "file /t/b".into())
        ]
    );
}

#[test]
fn inotify_watches_by_descriptor() {
    let mut s = Stream::new(PID);
    s.inotify_init(3)
        .add_watch(3, "/tmp/w1", 1)
        .add_watch(3, "/tmp/w1", 1);
    assert_eq!(live_watches(&s.ledger()), vec!["inotify watch on /tmp/wN"]);
    s.add_watch(3, "/tmp/w2", 2).rm_watch(3, 1);
    assert_eq!(live_watches(&s.ledger()), vec!["inotify watch on /tmp/wN"]);
    assert_eq!(
        s.ledger().watch_records().len(),
        2,
        "the same wd is one watch"
    );
}

#[test]
fn closing_the_inotify_fd_releases_its_watches() {
    let mut s = Stream::new(PID);
    s.inotify_init(3).inotify_init(4);
    s.add_watch(3, "/a", 1)
        .add_watch(3, "/b", 2)
        .add_watch(4, "/c", 1);
    s.close(3);
    assert_eq!(live_watches(&s.ledger()), vec!["inotify watch on /c"]);
    // dup2 onto the other inotify fd closes it too.
    s.open("/dev/null", 5);
    s.sys(call(nr::DUP2, 4, [5, 4, 0, 0, 0, 0]));
    assert!(live_watches(&s.ledger()).is_empty());
}

#[test]
fn exit_and_exec_release_watches() {
    let mut s = Stream::new(PID);
    s.inotify_init(3).add_watch(3, "/a", 1).exit();
    assert!(live_watches(&s.ledger()).is_empty());
    let mut s = Stream::new(PID);
    s.sys(call(nr::INOTIFY_INIT1, 3, [0o2000000, 0, 0, 0, 0, 0]));
    s.inotify_init(4)
        .add_watch(3, "/a", 1)
        .add_watch(4, "/b", 1);
    s.push(PID, PID, crate::event::What::Exec(None), None);
    assert_eq!(live_watches(&s.ledger()), vec!["inotify watch on /b"]);
}

#[test]
fn removing_a_watched_directory_drops_its_watch() {
    let mut s = Stream::new(PID);
    s.inotify_init(3);
    for i in 0..3 {
        let dir = format!("/tmp/job-{i}");
        s.mkdir(&dir).add_watch(3, &dir, i + 1).rmdir(&dir);
    }
    let ledger = s.ledger();
    assert!(live_watches(&ledger).is_empty());
    assert!(live(&ledger).is_empty());
}

#[test]
fn a_watch_follows_its_directory_through_renames_to_its_removal() {
    let mut s = Stream::new(PID);
    s.inotify_init(3);
    for i in 0..3 {
        let (job, done) = (format!("/tmp/job-{i}"), format!("/tmp/done-{i}"));
        s.mkdir(&job)
            .add_watch(3, &job, i + 1)
            .rename(&job, &done)
            .rmdir(&done);
    }
    assert!(
        live_watches(&s.ledger()).is_empty(),
        "removed at its new name"
    );
    // A watch under a renamed directory moves with it; one renamed over is replaced.
    s.mkdir("/w").mkdir("/w/sub").add_watch(3, "/w/sub", 7);
    s.mkdir("/x").add_watch(3, "/x", 8).add_watch(3, "/wx", 9);
    s.rename("/w", "/v").rename("/v/sub", "/x");
    assert_eq!(
        live_watches(&s.ledger()),
        vec!["inotify watch on /w/sub", "inotify watch on /wx"],
        "the watch on /x went with its inode"
    );
    s.rmdir("/x");
    assert_eq!(live_watches(&s.ledger()), vec!["inotify watch on /wx"]);
}

#[test]
fn a_watch_lives_while_any_fd_on_its_instance_does() {
    const WORKER: u32 = PID + 1;
    let mut s = Stream::new(PID);
    s.inotify_init(3);
    // A worker forked per iteration adds a watch through the inherited fd and exits.
    for i in 0..3 {
        let child = WORKER + i as u32;
        s.push(PID, PID, What::Fork { child }, None);
        let add =
            call(nr::INOTIFY_ADD_WATCH, i + 1, [3, 0, 2, 0, 0, 0]).with_path(&format!("/w/w-{i}"));
        s.push(child, child, What::Syscall(add), None);
        s.push(child, child, What::Exit, None);
    }
    assert_eq!(
        live_watches(&s.ledger()).len(),
        3,
        "the parent still holds fd 3"
    );
    // A dup keeps the instance when the original closes.
    s.sys(call(nr::DUP, 7, [3, 0, 0, 0, 0, 0])).close(3);
    assert_eq!(
        live_watches(&s.ledger()).len(),
        3,
        "fd 7 is the same instance"
    );
    s.close(7);
    assert!(live_watches(&s.ledger()).is_empty(), "the last fd closed");
}

#[test]
fn fanotify_marks_add_remove_flush() {
    let mark = |flags: u64, mask: u64, path: &str| {
        call(nr::FANOTIFY_MARK, 0, [3, flags, mask, CWD, 0, 0]).with_path(path)
    };
    let mut s = Stream::new(PID);
    s.sys(call(nr::FANOTIFY_INIT, 3, [0; 6]));
    s.sys(mark(1, 0x1, "/a"))
        .sys(mark(1, 0x2, "/a"))
        .sys(mark(1, 0x1, "/b"));
    assert_eq!(s.ledger().watch_records().len(), 2, "one mark per path");
    s.sys(mark(1, 0x4000_0000, "/a")).sys(mark(2, 0x1, "/a"));
    assert_eq!(live_watches(&s.ledger()).len(), 2, "/a keeps 0x2");
    s.sys(mark(2, 0x2, "/a"));
    assert_eq!(live_watches(&s.ledger()), vec!["fanotify mark on /b"]);
    s.sys(mark(1 | 0x10, 0x1, "/mnt")).sys(mark(0x80, 0, "/"));
    assert_eq!(
        live_watches(&s.ledger()),
        vec!["fanotify mount mark on /mnt"]
    );
    s.close(3);
    assert!(live_watches(&s.ledger()).is_empty());
}
