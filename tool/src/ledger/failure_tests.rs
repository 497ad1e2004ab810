//! Failed acquisitions and half-recorded calls in the ledger.

use super::test_support::{Stream, call};
use super::{ClassKind, FailedAcquisition};
use crate::event::{FailedCall, What};
use leakscope_common::syscalls as nr;

fn failed(nr: u32, errno: i32) -> What {
    What::Failed(FailedCall {
        nr,
        name: nr::info(nr).unwrap().name,
        errno,
    })
}

#[test]
fn failed_calls_are_filed_by_class() {
    let mut s = Stream::new(10);
    s.push(10, 10, failed(nr::OPENAT, 24), None)
        .push(10, 11, failed(nr::MMAP, 12), None)
        .push(10, 10, failed(nr::CLOSE, 9), None); // not an acquisition
    let ledger = s.ledger();
    let filed: Vec<(ClassKind, &str, i32)> = ledger
        .failed_acquisitions()
        .iter()
        .map(|f| (f.class, f.syscall, f.errno))
        .collect();
    assert_eq!(
        filed,
        [
            (ClassKind::Fd, "openat", 24),
            (ClassKind::Mapping, "mmap", 12)
        ]
    );
    assert!(ledger.open_fds(10).is_empty(), "a failure installs nothing");
}

#[test]
fn brk_left_below_its_request_is_a_failed_heap_acquisition() {
    let mut s = Stream::new(10);
    s.sys(call(nr::BRK, 0x100_0000, [0, 0, 0, 0, 0, 0])) // asks for the break
        .brk(0x100_4000) // grows
        .sys(call(nr::BRK, 0x100_4000, [0x200_0000, 0, 0, 0, 0, 0])) // cannot grow
        .brk(0x100_2000); // shrinks: asked for exactly what it got
    let failure_time = s.events[2].time_ns;
    let ledger = s.ledger();
    assert_eq!(
        ledger.failed_acquisitions(),
        [FailedAcquisition {
            time_ns: failure_time,
            tgid: 10,
            class: ClassKind::Heap,
            syscall: "brk",
            errno: 12,
        }]
    );
    assert_eq!(
        ledger.heap_bytes(10),
        0x2000,
        "the failed brk changed nothing"
    );
}

#[test]
fn unreadable_fd_pair_is_counted_not_installed_as_fds_0_and_0() {
    let mut s = Stream::new(10);
    s.sys(call(nr::PIPE2, 0, [0, 0, 0, 0, 0, 0])) // fd_pair None: the kernel could not read it
        .sys(call(nr::PIPE2, 0, [0, 0, 0, 0, 0, 0]).with_pair([5, 6]));
    let ledger = s.ledger();
    assert_eq!(ledger.unknown_fd_pairs(), 1);
    let fds: Vec<i32> = ledger.open_fds(10).iter().map(|(fd, _)| *fd).collect();
    assert_eq!(fds.len(), 2);
    assert!(fds.contains(&5) && fds.contains(&6), "{fds:?}");
}
