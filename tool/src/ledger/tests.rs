//! One test (or more) per ledger rule, each from a hand-made event sequence.

use super::records::{Cause, NEVER, Origin};
use super::test_support::{Stream, call, link};
use super::*;
use leakscope_common::syscalls as nr;
use procfs::process::MMapPath;

const PID: u32 = 100;

fn live_fds(ledger: &Ledger) -> Vec<(i32, String)> {
    ledger.open_fds(PID).into_iter().collect()
}

fn causes(ledger: &Ledger) -> Vec<Option<Cause>> {
    ledger
        .fd_records()
        .all()
        .iter()
        .map(|record| record.cause)
        .collect()
}

#[test]
fn open_and_close_are_counted_and_paired() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3).close(3).open("/tmp/b", 3);
    let ledger = s.ledger();
    assert_eq!(live_fds(&ledger), vec![(3, "/tmp/b".to_string())]);
    assert_eq!(causes(&ledger), vec![Some(Cause::Explicit), None]);
    assert_eq!(ledger.counts()["openat"], 2);
    assert_eq!(ledger.counts()["close"], 1);
}

#[test]
fn dup2_onto_an_open_fd_closes_it_implicitly() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3).open("/tmp/b", 4);
    s.sys(call(nr::DUP2, 4, [3, 4, 0, 0, 0, 0]));
    let ledger = s.ledger();
    assert_eq!(
        live_fds(&ledger),
        vec![(3, "/tmp/a".into()), (4, "/tmp/a (kept by dup2)".into())]
    );
    assert_eq!(causes(&ledger), vec![None, Some(Cause::Implicit), None]);
}

#[test]
fn a_dup_of_a_directory_still_resolves_relative_opens() {
    let mut s = Stream::new(PID);
    s.open("/srv/data", 3);
    s.sys(call(nr::DUP, 4, [3, 0, 0, 0, 0, 0]));
    s.sys(call(nr::DUP, 5, [4, 0, 0, 0, 0, 0]));
    s.sys(call(nr::OPENAT, 6, [5, 0, 0, 0, 0, 0]).with_path("x.txt"));
    let ledger = s.ledger();
    let fds = live_fds(&ledger);
    assert_eq!(
        fds[2],
        (5, "/srv/data (kept by dup)".to_string()),
        "no doubled suffix on a dup of a dup"
    );
    assert_eq!(fds[3], (6, "/srv/data/x.txt".to_string()));
}

#[test]
fn dup2_onto_itself_is_a_no_op() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3);
    s.sys(call(nr::DUP2, 3, [3, 3, 0, 0, 0, 0]));
    let ledger = s.ledger();
    assert_eq!(ledger.fd_records().len(), 1);
    assert!(ledger.fd_records().get(0).is_live());
}

#[test]
fn dup3_closes_implicitly_and_sets_cloexec() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3).open("/tmp/b", 5);
    s.sys(call(nr::DUP3, 5, [3, 5, 0o2000000, 0, 0, 0]));
    let ledger = s.ledger();
    assert_eq!(ledger.is_cloexec(PID, 5), Some(true));
    assert_eq!(ledger.fd_records().get(1).cause, Some(Cause::Implicit));
}

#[test]
fn dup_and_fcntl_dupfd_create_entries_named_by_what_kept_them() {
    let mut s = Stream::new(PID);
    s.sys(call(nr::SOCKET, 3, [2, 1, 0, 0, 0, 0]));
    s.sys(call(nr::DUP, 4, [3, 0, 0, 0, 0, 0]));
    s.sys(call(nr::FCNTL, 9, [3, 1030, 0, 0, 0, 0]));
    let ledger = s.ledger();
    assert_eq!(
        live_fds(&ledger),
        vec![
            (3, "socket".into()),
            (4, "socket (kept by dup)".into()),
            (9, "socket (kept by fcntl)".into())
        ]
    );
    assert_eq!(ledger.is_cloexec(PID, 9), Some(true));
    assert_eq!(ledger.is_cloexec(PID, 4), Some(false));
}

#[test]
fn close_range_closes_every_open_fd_in_range() {
    let mut s = Stream::new(PID);
    for fd in 3..8 {
        s.open("/tmp/x", fd);
    }
    s.sys(call(nr::CLOSE_RANGE, 0, [4, 6, 2, 0, 0, 0])); // CLOSE_RANGE_UNSHARE: ignored
    let ledger = s.ledger();
    assert_eq!(
        live_fds(&ledger)
            .iter()
            .map(|(fd, _)| *fd)
            .collect::<Vec<_>>(),
        vec![3, 7]
    );
    assert_eq!(ledger.unknown_releases(), 0);
}

#[test]
fn close_range_cloexec_only_marks_and_exec_then_closes() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3).open("/tmp/b", 4).open("/tmp/c", 5);
    s.sys(call(nr::CLOSE_RANGE, 0, [4, u32::MAX as u64, 4, 0, 0, 0]));
    let ledger = s.ledger();
    assert_eq!(
        live_fds(&ledger).len(),
        3,
        "CLOSE_RANGE_CLOEXEC closes nothing"
    );
    assert_eq!(ledger.is_cloexec(PID, 5), Some(true));
    s.push(PID, PID, What::Exec(None), None);
    let ledger = s.ledger();
    assert_eq!(live_fds(&ledger), vec![(3, "/tmp/a".into())]);
    assert_eq!(
        causes(&ledger),
        vec![None, Some(Cause::Exec), Some(Cause::Exec)]
    );
}

#[test]
fn exec_releases_cloexec_fds_and_keeps_the_rest() {
    let mut s = Stream::new(PID);
    s.open_cloexec("/tmp/a", 3)
        .open("/tmp/b", 4)
        .open("/tmp/c", 5);
    s.sys(call(nr::FCNTL, 0, [5, 2, 1, 0, 0, 0])); // F_SETFD FD_CLOEXEC
    s.sys(call(nr::FCNTL, 0, [3, 2, 0, 0, 0, 0])); // F_SETFD 0 clears it again
    s.push(PID, PID, What::Exec(None), None);
    let ledger = s.ledger();
    assert_eq!(
        live_fds(&ledger),
        vec![(3, "/tmp/a".into()), (4, "/tmp/b".into())]
    );
    assert_eq!(ledger.counts()["exec"], 1);
}

#[test]
fn exec_drops_all_mappings_and_the_heap() {
    let mut s = Stream::new(PID);
    s.mmap_anon(0x10000, 8192).brk(0x5000_0000).brk(0x5002_0000);
    s.push(PID, PID, What::Exec(None), None);
    let ledger = s.ledger();
    assert!(ledger.mapped_ranges(PID).is_empty());
    assert_eq!(ledger.map_records().get(0).cause, Some(Cause::Exec));
    assert_eq!(ledger.heap_bytes(PID), 0);
    let heap_total: i64 = ledger.heap_byte_changes().iter().map(|c| c.bytes).sum();
    assert_eq!(heap_total, 0);
    let map_total: i64 = ledger.map_byte_changes().iter().map(|c| c.bytes).sum();
    assert_eq!(map_total, 0);
}

#[test]
fn threads_share_their_process_table() {
    let mut s = Stream::new(PID);
    s.push(
        PID,
        PID + 1,
        What::Syscall(call(nr::OPENAT, 3, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/tmp/a")),
        None,
    );
    s.push(
        PID,
        PID + 2,
        What::Syscall(call(nr::CLOSE, 0, [3, 0, 0, 0, 0, 0])),
        None,
    );
    s.push(
        PID,
        PID + 1,
        What::Syscall(call(nr::OPENAT, 4, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/tmp/b")),
        None,
    );
    let ledger = s.ledger();
    assert_eq!(ledger.unknown_releases(), 0);
    assert_eq!(live_fds(&ledger), vec![(4, "/tmp/b".into())]);
}

/// The kernel reports a process's end once, from its last thread, which need not be the
/// leader (a leader that `pthread_exit`s goes first, silently).
#[test]
fn a_process_ends_with_its_last_thread_whichever_it_is() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3);
    s.push(
        PID,
        PID + 1,
        What::Syscall(call(nr::OPENAT, 4, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/tmp/b")),
        None,
    );
    let ledger = s.ledger();
    assert_eq!(
        live_fds(&ledger).len(),
        2,
        "the leader's going changed nothing"
    );
    s.push(PID, PID + 1, What::Exit, None);
    let ledger = s.ledger();
    assert!(live_fds(&ledger).is_empty());
    assert_eq!(causes(&ledger), vec![Some(Cause::Exit), Some(Cause::Exit)]);
    assert_eq!(ledger.counts()["exit"], 1);
    assert!(ledger.exit_time(PID).is_some());
}

/// An exec by a thread other than the leader reaches the ledger as any exec: the kernel
/// gives the exec'ing thread the leader's pid before `sched_process_exec`. The fds opened by
/// either thread are one table: the CLOEXEC ones go, the rest stay.
#[test]
fn an_exec_by_a_second_thread_keeps_what_any_thread_opened_without_cloexec() {
    let mut s = Stream::new(PID);
    s.open("/tmp/kept", 3).open_cloexec("/tmp/cloexec", 4);
    s.push(
        PID,
        PID + 1,
        What::Syscall(call(nr::OPENAT, 5, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/tmp/b")),
        None,
    );
    s.push(PID, PID, What::Exec(None), None);
    s.open("/tmp/after", 4);
    let ledger = s.ledger();
    assert_eq!(
        live_fds(&ledger),
        vec![
            (3, "/tmp/kept".into()),
            (4, "/tmp/after".into()),
            (5, "/tmp/b".into())
        ]
    );
    assert_eq!(ledger.unknown_releases(), 0);
}

#[test]
fn fork_copies_fds_mappings_heap_and_cwd() {
    const CHILD: u32 = 200;
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3)
        .mmap_anon(0x10000, 4096)
        .brk(0x100_0000)
        .brk(0x100_4000);
    s.push(PID, PID, What::Fork { child: CHILD }, None);
    let forked_at = s.now;
    s.push(
        CHILD,
        CHILD,
        What::Syscall(call(nr::CLOSE, 0, [3, 0, 0, 0, 0, 0])),
        None,
    );
    s.push(
        CHILD,
        CHILD,
        What::Syscall(call(nr::OPENAT, 4, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("b")),
        None,
    );
    let mut ledger = Ledger::new();
    ledger.set_cwd(PID, "/home/u");
    for event in &s.events {
        ledger.apply(event);
    }
    assert_eq!(
        live_fds(&ledger),
        vec![(3, "/tmp/a".into())],
        "the child's close leaves the parent's fd open"
    );
    assert_eq!(ledger.open_fds(CHILD), vec![(4, "/home/u/b".to_string())]);
    let copy = ledger.fd_records().get(1);
    assert_eq!(
        (copy.origin, copy.origin_ns, copy.tgid),
        (Origin::ForkCopy, forked_at, CHILD),
        "a copy's lifetime starts at the fork"
    );
    assert_eq!(copy.cause, Some(Cause::Explicit));
    assert_eq!(ledger.mapped_ranges(CHILD).len(), 1);
    assert_eq!(ledger.heap_bytes(CHILD), 0x4000);
    assert_eq!(ledger.counts()["fork"], 1);
}

#[test]
fn exit_releases_everything_the_process_held() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3)
        .mmap_anon(0x10000, 4096)
        .brk(0x100_0000)
        .brk(0x100_4000)
        .exit();
    let ledger = s.ledger();
    assert_eq!(causes(&ledger), vec![Some(Cause::Exit)]);
    assert_eq!(ledger.map_records().get(0).cause, Some(Cause::Exit));
    assert_eq!(
        ledger
            .heap_byte_changes()
            .iter()
            .map(|c| c.bytes)
            .sum::<i64>(),
        0
    );
    assert!(ledger.exit_time(PID).is_some());
    assert_eq!(ledger.counts()["exit"], 1);
}

#[test]
fn partial_munmap_splits_a_range_and_releases_only_when_all_is_gone() {
    let mut s = Stream::new(PID);
    s.mmap_anon(0x10000, 3 * 4096).munmap(0x11000, 4096);
    let ledger = s.ledger();
    let ranges: Vec<(u64, u64)> = ledger
        .mapped_ranges(PID)
        .iter()
        .map(|(start, len, _)| (*start, *len))
        .collect();
    assert_eq!(ranges, vec![(0x10000, 4096), (0x12000, 4096)]);
    assert!(ledger.map_records().get(0).is_live());
    s.munmap(0x10000, 1).munmap(0x12000, 4096); // lengths round up to a page
    let ledger = s.ledger();
    assert!(ledger.mapped_ranges(PID).is_empty());
    assert_eq!(ledger.map_records().get(0).cause, Some(Cause::Explicit));
    assert_eq!(
        ledger
            .map_byte_changes()
            .iter()
            .map(|c| c.bytes)
            .sum::<i64>(),
        0
    );
}

#[test]
fn map_fixed_replaces_what_it_overlays() {
    let mut s = Stream::new(PID);
    s.mmap_anon(0x10000, 4 * 4096);
    s.sys(call(nr::MMAP, 0x11000, [0x11000, 2 * 4096, 1, 0x12, 7, 0])); // MAP_FIXED|MAP_PRIVATE, fd 7
    let ledger = s.ledger();
    let ranges: Vec<(u64, u64)> = ledger
        .mapped_ranges(PID)
        .iter()
        .map(|(start, len, _)| (*start, *len))
        .collect();
    assert_eq!(
        ranges,
        vec![(0x10000, 4096), (0x11000, 8192), (0x13000, 4096)]
    );
    assert_eq!(
        ledger
            .map_byte_changes()
            .iter()
            .map(|c| c.bytes)
            .sum::<i64>(),
        4 * 4096
    );
    assert!(
        ledger.map_records().get(0).is_live(),
        "the anon mapping keeps two pieces"
    );
    // Overlaying all of it releases it, implicitly.
    s.sys(call(
        nr::MMAP,
        0x10000,
        [0x10000, 4 * 4096, 3, 0x32, u64::MAX, 0],
    ));
    let ledger = s.ledger();
    assert_eq!(ledger.map_records().get(0).cause, Some(Cause::Implicit));
    assert_eq!(ledger.map_records().get(1).cause, Some(Cause::Implicit));
    assert_eq!(ledger.mapped_ranges(PID).len(), 1);
}

#[test]
fn mremap_moves_and_resizes_the_same_resource() {
    let mut s = Stream::new(PID);
    s.mmap_anon(0x10000, 4096);
    s.sys(call(
        nr::MREMAP,
        0x10000,
        [0x10000, 4096, 3 * 4096, 0, 0, 0],
    )); // grow in place
    s.sys(call(
        nr::MREMAP,
        0x90000,
        [0x10000, 3 * 4096, 2 * 4096, 1, 0, 0],
    )); // move and shrink
    let ledger = s.ledger();
    assert_eq!(
        ledger.map_records().len(),
        1,
        "a resize is not a new acquisition"
    );
    assert!(ledger.map_records().get(0).is_live());
    let ranges: Vec<(u64, u64)> = ledger
        .mapped_ranges(PID)
        .iter()
        .map(|(start, len, _)| (*start, *len))
        .collect();
    assert_eq!(ranges, vec![(0x90000, 2 * 4096)]);
    assert_eq!(
        ledger
            .map_byte_changes()
            .iter()
            .map(|c| c.bytes)
            .sum::<i64>(),
        2 * 4096
    );
    s.munmap(0x90000, 2 * 4096);
    assert_eq!(s.ledger().map_records().get(0).cause, Some(Cause::Explicit));
}

#[test]
fn mremap_dontunmap_keeps_the_old_range() {
    let mut s = Stream::new(PID);
    s.mmap_anon(0x10000, 4096);
    s.sys(call(
        nr::MREMAP,
        0x50000,
        [0x10000, 4096, 4096, 1 | 4, 0, 0],
    ));
    let ledger = s.ledger();
    assert_eq!(ledger.map_records().len(), 2);
    assert_eq!(ledger.mapped_ranges(PID).len(), 2);
}

#[test]
fn releases_of_unknown_resources_are_counted_and_change_nothing() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3)
        .close(42)
        .munmap(0x7000_0000, 4096)
        .close(3)
        .close(3);
    let ledger = s.ledger();
    assert_eq!(ledger.unknown_releases(), 3);
    assert_eq!(causes(&ledger), vec![Some(Cause::Explicit)]);
    assert_eq!(ledger.fd_records().get(0).released_ns, s.events[3].time_ns);
}

#[test]
fn paths_resolve_against_dirfd_and_cwd() {
    let mut s = Stream::new(PID);
    s.open("/srv/data/", 3);
    s.sys(call(nr::OPENAT, 4, [3, 0, 0, 0, 0, 0]).with_path("./x/../a.txt"));
    s.sys(call(nr::OPEN, 5, [0, 0, 0, 0, 0, 0]).with_path("rel.txt"));
    s.sys(call(nr::SOCKET, 6, [1, 1, 0, 0, 0, 0]));
    s.sys(call(nr::OPENAT, 7, [6, 0, 0, 0, 0, 0]).with_path("odd")); // a socket is no directory
    let mut ledger = Ledger::new();
    ledger.set_cwd(PID, "/home/u/");
    for event in &s.events {
        ledger.apply(event);
    }
    let fds = live_fds(&ledger);
    assert_eq!(fds[1], (4, "/srv/data/a.txt".into()));
    assert_eq!(fds[2], (5, "/home/u/rel.txt".into()));
    assert_eq!(fds[4], (7, "odd".into()));
    // Without a known cwd the path stays relative.
    assert_eq!(s.ledger().open_fds(PID)[2], (5, "rel.txt".to_string()));
}

#[test]
fn fd_kinds_name_their_sites() {
    let mut s = Stream::new(PID);
    s.sys(call(nr::PIPE2, 0, [0, 0o2000000, 0, 0, 0, 0]).with_pair([3, 4]));
    s.sys(call(nr::MEMFD_CREATE, 5, [0, 0, 0, 0, 0, 0]).with_path("jit"));
    s.sys(call(nr::EVENTFD2, 6, [0, 0, 0, 0, 0, 0]));
    s.sys(call(nr::SOCKETPAIR, 0, [1, 1, 0, 0, 0, 0]).with_pair([7, 8]));
    let ledger = s.ledger();
    let names: Vec<String> = live_fds(&ledger)
        .into_iter()
        .map(|(_, site)| site)
        .collect();
    assert_eq!(
        names,
        [
            "pipe",
            "pipe",
            "memfd:jit",
            "anon:eventfd",
            "socket",
            "socket"
        ]
    );
    assert_eq!(ledger.is_cloexec(PID, 3), Some(true));
    assert_eq!(ledger.is_cloexec(PID, 7), Some(false));
}

#[test]
fn file_mappings_name_the_file_and_the_stack() {
    let mut s = Stream::new(PID);
    s.open("/usr/lib/libfoo.so", 3);
    s.sys(
        call(nr::MMAP, 0x7f00_0000_0000, [0, 8192, 5, 2, 3, 0])
            .with_frames(&["load", "main", "start", "x"]),
    );
    s.sys(call(
        nr::MMAP,
        0x7f00_1000_0000,
        [0, 65536, 3, 0x22, u64::MAX, 0],
    ));
    let ledger = s.ledger();
    let names: Vec<String> = ledger
        .mapped_ranges(PID)
        .into_iter()
        .map(|(_, _, site)| site)
        .collect();
    assert_eq!(
        names,
        [
            "/usr/lib/libfoo.so 8 KiB r-x private ← load ← main ← start",
            "anon 64 KiB rw- private"
        ]
    );
}

#[test]
fn brk_changes_are_logged_from_the_first_report() {
    let mut s = Stream::new(PID);
    s.brk(0x100_0000)
        .brk(0x102_1000)
        .brk(0x101_0000)
        .brk(0x101_0000);
    let ledger = s.ledger();
    let deltas: Vec<i64> = ledger.heap_byte_changes().iter().map(|c| c.bytes).collect();
    assert_eq!(deltas, vec![0x21000, -0x11000]);
    assert_eq!(ledger.heap_bytes(PID), 0x10000);
    assert_eq!(ledger.counts()["brk"], 4);
}

#[test]
fn seeded_resources_are_known_and_their_release_is_ordinary() {
    let mut ledger = Ledger::new();
    ledger.seed_fd(PID, 0, &link("/dev/pts/3"), false);
    ledger.seed_fd(PID, 5, &link("socket:[12345]"), true);
    ledger.seed_fd(PID, 6, &link("anon_inode:[eventfd]"), false);
    ledger.seed_mapping(
        PID,
        0x40_0000,
        8192,
        &MMapPath::Path("/usr/bin/prog".into()),
    );
    ledger.seed_brk(PID, 0x100_0000);
    let mut s = Stream::new(PID);
    s.close(5).munmap(0x40_0000, 8192).brk(0x100_2000);
    for event in &s.events {
        ledger.apply(event);
    }
    assert_eq!(ledger.unknown_releases(), 0);
    assert_eq!(
        ledger.open_fds(PID),
        vec![(0, "/dev/pts/3".into()), (6, "anon:eventfd".into())]
    );
    let seeded = ledger.fd_records().get(1);
    assert_eq!(
        (seeded.origin, seeded.born_ns, seeded.cause),
        (Origin::Seeded, 0, Some(Cause::Explicit))
    );
    assert_eq!(ledger.map_records().get(0).cause, Some(Cause::Explicit));
    assert_eq!(ledger.heap_bytes(PID), 0x2000);
}

#[test]
fn records_are_never_released_twice() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3).exit();
    let ledger = s.ledger();
    assert_ne!(ledger.fd_records().get(0).released_ns, NEVER);
    assert_eq!(ledger.fd_records().get(0).cause, Some(Cause::Exit));
}
