//! Seeding, fork, exec and exit from synthetic streams: when lifetimes start, and what the
//! target and the processes that outlived it held at their end.

use super::super::Ledger;
use super::super::records::{Cause, Origin};
use super::super::test_support::{Stream, call, link};
use crate::event::What;
use leakscope_common::syscalls as nr;
use procfs::process::MMapPath;

const PID: u32 = 100;
const CHILD: u32 = 200;
const GRANDCHILD: u32 = 300;

fn apply(ledger: &mut Ledger, stream: &Stream) {
    for event in &stream.events {
        ledger.apply(event);
    }
}

fn fd_sites(ledger: &Ledger, tgid: u32) -> Vec<(i32, String, bool)> {
    ledger
        .holdings(tgid)
        .unwrap()
        .fds
        .iter()
        .map(|fd| (fd.fd, ledger.site_text(fd.site), fd.inherited))
        .collect()
}

/// The stream starts at 1 ms (see `Stream::new`); tracing began just before.
const SINCE: u64 = 900_000;

#[test]
fn seeded_resources_start_when_tracing_began() {
    let mut ledger = Ledger::new();
    ledger.begin(PID, SINCE);
    ledger.seed_fd(PID, 0, &link("/dev/pts/3"), false);
    ledger.seed_mapping(
        PID,
        0x40_0000,
        8192,
        &MMapPath::Path("/usr/bin/prog".into()),
    );
    let mut s = Stream::new(PID);
    s.close(0).munmap(0x40_0000, 8192);
    apply(&mut ledger, &s);
    for record in [ledger.fd_records().get(0), ledger.map_records().get(0)] {
        assert_eq!(
            (record.origin, record.origin_ns, record.born_ns),
            (Origin::Seeded, SINCE, SINCE)
        );
        assert!(
            record.released_ns - record.origin_ns < 1_000_000,
            "{record:?}"
        );
    }
}

#[test]
fn a_fork_copy_of_a_seeded_fd_lives_from_the_fork() {
    let mut ledger = Ledger::new();
    ledger.begin(PID, SINCE);
    ledger.seed_fd(PID, 1, &link("/dev/null"), false);
    let mut s = Stream::new(PID);
    s.push(PID, PID, What::Fork { child: CHILD }, None);
    let forked_at = s.now;
    s.push(
        CHILD,
        CHILD,
        What::Syscall(call(nr::CLOSE, 0, [1, 0, 0, 0, 0, 0])),
        None,
    );
    apply(&mut ledger, &s);
    let copy = ledger.fd_records().get(1);
    assert_eq!(
        (copy.origin, copy.origin_ns, copy.tgid),
        (Origin::ForkCopy, forked_at, CHILD)
    );
    assert_eq!(copy.released_ns - copy.origin_ns, 1_000);
}

#[test]
fn what_the_target_held_at_exit_is_kept_with_the_last_fd_it_opened() {
    let mut ledger = Ledger::new();
    ledger.begin(PID, SINCE);
    for fd in 0..3 {
        ledger.seed_fd(PID, fd, &link("/dev/pts/0"), false);
    }
    let mut s = Stream::new(PID);
    s.push(PID, PID, What::Exec(None), None);
    s.open("/tmp/x", 3)
        .mmap_anon(0x10000, 8192)
        .mmap_anon(0x20000, 4096);
    s.munmap(0x11000, 4096).exit(); // one page of the first mapping is left
    apply(&mut ledger, &s);
    assert_eq!(
        fd_sites(&ledger, PID),
        vec![
            (0, "/dev/pts/0".into(), true),
            (1, "/dev/pts/0".into(), true),
            (2, "/dev/pts/0".into(), true),
            (3, "/tmp/x".into(), false)
        ]
    );
    let held = ledger.holdings(PID).unwrap();
    assert_eq!(held.exited_ns, Some(s.now));
    let bytes: Vec<(u64, bool)> = held
        .mappings
        .iter()
        .map(|m| (m.bytes, m.inherited))
        .collect();
    assert_eq!(bytes, vec![(4096, false), (4096, false)]);
    assert_eq!(held.mapped_bytes(), 8192);
    // The ledger itself released everything at the exit.
    assert!(
        ledger
            .fd_records()
            .all()
            .iter()
            .all(|r| r.cause == Some(Cause::Exit))
    );
    assert!(ledger.outlived_target().is_empty());
}

#[test]
fn processes_that_outlive_the_target_are_listed_with_what_they_hold() {
    let mut ledger = Ledger::new();
    ledger.begin(PID, SINCE);
    ledger.seed_fd(PID, 0, &link("/dev/null"), false);
    let mut s = Stream::new(PID);
    // A helper that ends before the target is not listed.
    s.push(PID, PID, What::Fork { child: 150 }, None);
    s.push(150, 150, What::Exit, None);
    // A double fork: the child outlives the target briefly, the grandchild keeps going.
    s.push(PID, PID, What::Fork { child: CHILD }, None);
    s.exit();
    s.push(CHILD, CHILD, What::Fork { child: GRANDCHILD }, None);
    s.push(CHILD, CHILD, What::Exit, None);
    for fd in 1..=3 {
        let open = call(nr::OPENAT, fd, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path("/tmp/leak");
        s.push(GRANDCHILD, GRANDCHILD, What::Syscall(open), None);
    }
    apply(&mut ledger, &s);
    let outlived = ledger.outlived_target();
    let summary: Vec<(u32, usize, bool)> = outlived
        .iter()
        .map(|held| (held.tgid, held.fds.len(), held.exited_ns.is_none()))
        .collect();
    assert_eq!(summary, vec![(CHILD, 1, false), (GRANDCHILD, 4, true)]);
    assert_eq!(
        fd_sites(&ledger, GRANDCHILD)[1..],
        [
            (1, "/tmp/leak".into(), false),
            (2, "/tmp/leak".into(), false),
            (3, "/tmp/leak".into(), false)
        ]
    );
    // The copy of the seeded fd came with the forks: inherited.
    assert_eq!(
        fd_sites(&ledger, GRANDCHILD)[0],
        (0, "/dev/null".into(), true)
    );
}

#[test]
fn without_a_target_nothing_is_kept_past_an_exit() {
    let mut s = Stream::new(PID);
    s.open("/tmp/a", 3).exit();
    let ledger = s.ledger();
    assert_eq!(ledger.holdings(PID), None);
    assert!(ledger.outlived_target().is_empty());
}

#[test]
fn seeded_fds_are_named_like_traced_ones_from_their_proc_link() {
    let mut ledger = Ledger::new();
    let links = [
        "/memfd:jit (deleted)",
        "anon_inode:inotify",
        "anon_inode:[eventfd]",
        "pipe:[77]",
        "net:[4026531840]",
        "/tmp/../tmp/a",
    ];
    for (fd, text) in links.iter().enumerate() {
        ledger.seed_fd(PID, fd as i32, &link(text), false);
    }
    let names: Vec<String> = ledger.open_fds(PID).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        names,
        [
            "memfd:jit",
            "anon:inotify",
            "anon:eventfd",
            "pipe",
            "net:[4026531840]",
            "/tmp/a"
        ]
    );
}

#[test]
fn a_dup_of_an_untracked_fd_says_so_and_its_dup_names_the_call() {
    let mut s = Stream::new(PID);
    s.sys(call(nr::DUP, 5, [42, 0, 0, 0, 0, 0]));
    s.sys(call(nr::DUP2, 6, [5, 6, 0, 0, 0, 0]));
    let names: Vec<String> = s
        .ledger()
        .open_fds(PID)
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        names,
        [
            "dup of an fd from before tracing",
            "dup of an fd from before tracing (kept by dup2)"
        ]
    );
}
