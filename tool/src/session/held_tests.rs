use super::*;
use crate::event::{OpenInfo, Syscall};
use leakscope_common::{Event as WireEvent, EventKind, PATH_CAP, syscalls};

fn open(tgid: u32, time_ns: u64, fd: i64) -> Event {
    Event {
        time_ns,
        tgid,
        tid: tgid,
        rss_bytes: None,
        what: What::Syscall(Syscall {
            open: Some(OpenInfo {
                flags: Some(0),
                created: None,
            }),
            ..Syscall::bare(syscalls::OPENAT, fd, [0; 6])
        }),
    }
}

fn exit(tgid: u32, time_ns: u64) -> Event {
    Event {
        time_ns,
        tgid,
        tid: tgid,
        rss_bytes: None,
        what: What::Exit,
    }
}

#[test]
fn an_open_only_in_its_slot_is_delivered_after_the_drain_and_its_later_ring_copy_dropped() {
    let mut held = HeldOpens::default();
    held.begin_round(vec![open(7, 100, 3)]);
    assert_eq!(held.end_round(true), vec![open(7, 100, 3)]);
    // Still held at the next round: not delivered twice.
    held.begin_round(vec![open(7, 100, 3)]);
    assert_eq!(held.end_round(true), vec![]);
    // The ring brings it later (flushed, or paired with its close): dropped once.
    assert!(!held.admit(&open(7, 100, 3)));
    // Another open of the same process at another time is a different one.
    assert!(held.admit(&open(7, 200, 3)));
}

#[test]
fn an_open_the_ring_brings_in_the_same_round_is_not_delivered_from_its_slot() {
    let mut held = HeldOpens::default();
    held.begin_round(vec![open(7, 100, 3), open(8, 150, 4)]);
    assert!(held.admit(&open(7, 100, 3)));
    assert_eq!(held.end_round(true), vec![open(8, 150, 4)]);
    assert!(held.admit(&open(7, 300, 5)));
}

#[test]
fn an_incomplete_drain_delivers_nothing_from_the_slots() {
    let mut held = HeldOpens::default();
    held.begin_round(vec![open(7, 100, 3)]);
    assert_eq!(held.end_round(false), vec![]);
    // Nothing was taken: the ring's copy is applied.
    assert!(held.admit(&open(7, 100, 3)));
}

#[test]
fn an_exit_forgets_what_was_taken_for_its_pid() {
    let mut held = HeldOpens::default();
    held.begin_round(vec![open(7, 100, 3)]);
    assert_eq!(held.end_round(true).len(), 1);
    assert!(held.admit(&exit(7, 150)));
    // A new process with pid 7 whose open happened at the very same time cannot be
    // confused with the old one.
    assert!(held.admit(&open(7, 100, 3)));
}

/// Takes `open` from its slot in a complete round.
fn taken(held: &mut HeldOpens, open: Event) {
    held.begin_round(vec![open.clone()]);
    assert_eq!(held.end_round(true), vec![open]);
}

#[test]
fn a_taken_open_whose_copy_comes_was_not_lost() {
    let mut held = HeldOpens::default();
    taken(&mut held, open(7, 100, 3));
    assert!(!held.admit(&open(7, 100, 3)));
    assert!(held.admit(&exit(7, 150)));
    assert_eq!(held.copies_lost(&[]), 0);
}

#[test]
fn a_later_record_of_its_process_means_the_copy_of_a_taken_open_was_lost() {
    let mut held = HeldOpens::default();
    taken(&mut held, open(7, 100, 3));
    // The kernel flushes the held open before this exit; the flush found the ring full.
    assert!(held.admit(&exit(7, 150)));
    assert_eq!(held.copies_lost_so_far(), 1);
    // Another process's record says nothing of process 7's open.
    taken(&mut held, open(8, 200, 3));
    assert!(held.admit(&exit(9, 250)));
    assert_eq!(held.copies_lost(&[open(8, 200, 3)]), 1);
}

#[test]
fn a_newer_open_in_the_slot_means_the_copy_of_the_older_was_lost() {
    let mut held = HeldOpens::default();
    taken(&mut held, open(7, 100, 3));
    taken(&mut held, open(7, 200, 4));
    assert_eq!(held.copies_lost_so_far(), 1);
    // The newer one's copy comes: nothing more.
    assert!(!held.admit(&open(7, 200, 4)));
    assert_eq!(held.copies_lost(&[]), 1);
}

#[test]
fn at_the_end_a_taken_open_gone_from_its_slot_without_a_copy_was_lost() {
    let mut held = HeldOpens::default();
    taken(&mut held, open(7, 100, 3));
    taken(&mut held, open(8, 100, 3));
    // Process 7 still holds its open (an attached process left running): not flushed.
    assert_eq!(held.copies_lost(&[open(7, 100, 3)]), 1);
    assert_eq!(held.copies_lost(&[open(7, 100, 3), open(8, 100, 3)]), 0);
}

fn slot(held: u32, seal: u64, time: u64) -> TrackedProcess {
    TrackedProcess {
        held,
        _pad: 0,
        seal_ktime_ns: seal,
        open: PathEvent {
            event: WireEvent::new(EventKind::Syscall, time, 7, 7),
            path_len: 0,
            close_tid: 0,
            close_ktime_ns: 0,
            path: [0; PATH_CAP],
        },
    }
}

#[test]
fn only_two_equal_sealed_reads_of_a_held_slot_give_an_open() {
    let good = slot(HELD_OPEN, 100, 100);
    assert_eq!(
        sealed_open(&good, &good).map(|open| open.event.ktime_ns),
        Some(100)
    );
    assert!(sealed_open(&slot(0, 100, 100), &good).is_none(), "not held");
    assert!(
        sealed_open(&slot(HELD_OPEN, 90, 100), &slot(HELD_OPEN, 90, 100)).is_none(),
        "seal of an older open: being rewritten"
    );
    let mut other = good;
    other.open.path[0] = b'x';
    assert!(
        sealed_open(&good, &other).is_none(),
        "changed between reads"
    );
}
