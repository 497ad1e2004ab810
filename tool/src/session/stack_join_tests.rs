use leakscope_common::syscalls;

use super::*;
use crate::event::{Syscall, UserStack};
use crate::stacks::UserRegs;

const TGID: u32 = 100;

fn stack(tid: u32, time_ns: u64) -> CallStack {
    CallStack {
        tgid: TGID,
        tid,
        time_ns,
        nr: syscalls::OPENAT,
        stack: Box::new(UserStack {
            regs: UserRegs {
                ip: 0x7f00_0000_1000,
                sp: 0x7ffc_0000_0000 + time_ns,
                bp: 0,
            },
            bytes: vec![0; 64],
            short: false,
            unreadable: false,
        }),
    }
}

fn event(tid: u32, time_ns: u64, what: What) -> Event {
    Event {
        time_ns,
        tgid: TGID,
        tid,
        rss_bytes: None,
        what,
    }
}

fn openat(tid: u32, time_ns: u64) -> Event {
    event(
        tid,
        time_ns,
        What::Syscall(Syscall::bare(syscalls::OPENAT, 3, [0; 6])),
    )
}

/// The stack pointer of the stack `event` was given, if any.
fn joined_sp(event: &Event) -> Option<u64> {
    match &event.what {
        What::Syscall(call) => call.stack.as_ref().map(|stack| stack.regs.sp),
        _ => None,
    }
}

#[test]
fn a_call_takes_the_stack_of_its_thread_and_time() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 10));
    pending.park(stack(102, 11));
    let mut other_thread = openat(102, 11);
    let mut open = openat(101, 10);
    pending.claim(&mut open);
    pending.claim(&mut other_thread);
    assert_eq!(joined_sp(&open), Some(0x7ffc_0000_0000 + 10));
    assert_eq!(joined_sp(&other_thread), Some(0x7ffc_0000_0000 + 11));
    assert_eq!(pending.len(), 0);
    assert_eq!(pending.counts.joined, 2);
    assert_eq!(pending.counts.dropped(), 0);
}

#[test]
fn an_open_paired_with_its_close_drops_its_stack_unjoined() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 10));
    let open = openat(101, 10);
    pending.paired(&open);
    // The close that came with it finds nothing waiting, nor does a later call.
    let mut close = event(
        101,
        12,
        What::Syscall(Syscall::bare(syscalls::CLOSE, 0, [3, 0, 0, 0, 0, 0])),
    );
    pending.claim(&mut close);
    assert_eq!(joined_sp(&close), None);
    assert_eq!(pending.len(), 0);
    assert_eq!(
        pending.counts,
        StackJoinCounts {
            paired: 1,
            ..Default::default()
        }
    );
}

#[test]
fn a_pairing_of_another_open_leaves_the_stack_waiting() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 20));
    // An earlier open of the thread, paired: not this stack's call.
    pending.paired(&openat(101, 10));
    assert_eq!(pending.len(), 1);
    let mut open = openat(101, 20);
    pending.claim(&mut open);
    assert!(joined_sp(&open).is_some());
}

#[test]
fn a_later_record_of_the_thread_makes_the_waiting_stack_stale() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 10));
    // The openat's record was lost; the thread's next call comes instead.
    let mut later = openat(101, 15);
    pending.claim(&mut later);
    assert_eq!(
        joined_sp(&later),
        None,
        "another call's stack is not its own"
    );
    assert_eq!(pending.len(), 0);
    assert_eq!(pending.counts.stale, 1);
}

#[test]
fn a_newer_stack_of_the_thread_replaces_an_unclaimed_one() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 10));
    pending.park(stack(101, 15));
    assert_eq!((pending.len(), pending.counts.stale), (1, 1));
    let mut open = openat(101, 15);
    pending.claim(&mut open);
    assert_eq!(joined_sp(&open), Some(0x7ffc_0000_0000 + 15));
}

#[test]
fn an_older_record_of_the_thread_leaves_the_stack_waiting() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 20));
    let mut older = openat(101, 10);
    pending.claim(&mut older);
    assert_eq!(joined_sp(&older), None);
    assert_eq!(pending.len(), 1);
}

#[test]
fn a_record_of_the_same_time_that_is_no_such_call_drops_the_stack() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 10));
    let mut mmap = event(
        101,
        10,
        What::Syscall(Syscall::bare(syscalls::MMAP, 0x7f00_0000_0000, [0; 6])),
    );
    pending.claim(&mut mmap);
    assert_eq!(joined_sp(&mmap), None);
    assert_eq!((pending.len(), pending.counts.stale), (0, 1));
}

#[test]
fn another_process_reusing_the_thread_id_makes_the_stack_stale() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 10));
    let mut open = Event {
        tgid: TGID + 1,
        ..openat(101, 10)
    };
    pending.claim(&mut open);
    assert_eq!(joined_sp(&open), None);
    assert_eq!((pending.len(), pending.counts.stale), (0, 1));
}

#[test]
fn the_process_exit_drops_its_threads_stacks_only() {
    let mut pending = PendingStacks::default();
    pending.park(stack(101, 10));
    pending.park(stack(102, 11));
    pending.park(CallStack {
        tgid: TGID + 1,
        ..stack(200, 12)
    });
    pending.claim(&mut event(TGID, 13, What::Exit));
    assert_eq!((pending.len(), pending.counts.evicted), (1, 2));
    let mut open = Event {
        tgid: TGID + 1,
        ..openat(200, 12)
    };
    pending.claim(&mut open);
    assert!(joined_sp(&open).is_some());
}

#[test]
fn the_waiting_stacks_stay_bounded_and_the_oldest_goes_first() {
    let mut pending = PendingStacks::default();
    let threads = MAX_PENDING as u32 + 10;
    for tid in 0..threads {
        pending.park(stack(1000 + tid, 1000 + u64::from(tid)));
    }
    assert_eq!(pending.len(), MAX_PENDING);
    assert_eq!(pending.counts.evicted, 10);
    // The ten oldest are gone; the newest still joins.
    let mut oldest = openat(1000, 1000);
    pending.claim(&mut oldest);
    assert_eq!(joined_sp(&oldest), None);
    let last = threads - 1;
    let mut newest = openat(1000 + last, 1000 + u64::from(last));
    pending.claim(&mut newest);
    assert!(joined_sp(&newest).is_some());
}
