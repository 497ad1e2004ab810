//! Failed acquisitions per class: how often each errno came back, and when it started.
//!
//! A failure changes no resource, but it is evidence. EMFILE after a steady climb of open
//! fds means the table filled up, which is what a leak does when it runs long enough. The
//! verdict rules read these facts; the report shows them as they are.

use std::collections::BTreeMap;

use crate::iterations::Iterations;
use crate::ledger::records::Records;
use crate::ledger::{ClassKind, FailedAcquisition, Ledger};

/// The failed acquisitions of one class, by errno (positive, e.g. EMFILE = 24).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Failures {
    pub(crate) by_errno: BTreeMap<i32, ErrnoFailures>,
}

/// One errno of one class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ErrnoFailures {
    pub(crate) count: u64,
    /// The first failure with this errno.
    pub(crate) first_ns: u64,
    /// The iteration it fell in (`Iterations::iteration_at`): -1 before the first boundary.
    pub(crate) first_iteration: i64,
    /// The call that failed first.
    pub(crate) first_syscall: &'static str,
    /// What the failing process held of the class at the first failure: open fds or mapped
    /// ranges, resources from before tracing included, since they count against the
    /// limit too. `None` for the heap, which is bytes, not resources.
    pub(crate) live_at_first: Option<u64>,
}

#[cfg(test)]
impl Failures {
    pub(crate) fn total(&self) -> u64 {
        self.by_errno.values().map(|f| f.count).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_errno.is_empty()
    }
}

/// The failures of `class` in the whole run, iteration indexes from `iterations`.
pub(crate) fn of_class(ledger: &Ledger, iterations: &Iterations, class: ClassKind) -> Failures {
    let mut by_errno: BTreeMap<i32, (u64, &FailedAcquisition)> = BTreeMap::new();
    for failure in ledger
        .failed_acquisitions()
        .iter()
        .filter(|f| f.class == class)
    {
        // Apply order is time order, so the first one seen stays the first.
        by_errno.entry(failure.errno).or_insert((0, failure)).0 += 1;
    }
    let records = match class {
        ClassKind::Fd => Some(ledger.fd_records()),
        ClassKind::Mapping => Some(ledger.map_records()),
        ClassKind::File => Some(ledger.file_records()),
        ClassKind::Watch => Some(ledger.watch_records()),
        ClassKind::Heap => None,
    };
    Failures {
        by_errno: by_errno
            .into_iter()
            .map(|(errno, (count, first))| {
                let failures = ErrnoFailures {
                    count: count + ledger.folded_failures(class, errno),
                    first_ns: first.time_ns,
                    first_iteration: iterations.iteration_at(first.time_ns),
                    first_syscall: first.syscall,
                    live_at_first: records.map(|r| live_in_process(r, first.tgid, first.time_ns)),
                };
                (errno, failures)
            })
            .collect(),
    }
}

/// Records of process `tgid` live at `t`. A scan, but only once per class and errno.
fn live_in_process(records: &Records, tgid: u32, t: u64) -> u64 {
    records
        .all()
        .iter()
        .filter(|r| r.tgid == tgid && r.born_ns <= t && r.released_ns > t)
        .count() as u64
}

/// "EMFILE", or "errno 4242" for a number the platform does not name.
pub(crate) fn errno_name(errno: i32) -> String {
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("errno {errno}"),
        known => format!("{known:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FailedCall, What};
    use crate::iterations::{IterationRequest, detect};
    use crate::ledger::test_support::{Stream, call};
    use leakscope_common::syscalls as nr;

    fn failed(nr: u32, errno: i32) -> What {
        What::Failed(FailedCall {
            nr,
            name: nr::info(nr).unwrap().name,
            errno,
        })
    }

    /// A process that keeps one fd per iteration; from iteration 5 on its table is full and
    /// every open fails with EMFILE. One mmap fails with ENOMEM in iteration 7, and a brk
    /// cannot grow in iteration 8.
    fn pinned_run() -> Ledger {
        let mut s = Stream::new(10);
        s.open("/stdin", 0);
        s.sys(call(nr::BRK, 0x100_0000, [0, 0, 0, 0, 0, 0]));
        for i in 0..12 {
            s.marker();
            if i < 5 {
                s.open(&format!("/data/{i}"), 1 + i);
            } else {
                s.push(10, 10, failed(nr::OPENAT, 24), None);
            }
            if i == 7 {
                s.push(10, 10, failed(nr::MMAP, 12), None);
            }
            if i == 8 {
                s.sys(call(nr::BRK, 0x100_0000, [0x900_0000, 0, 0, 0, 0, 0]));
            }
        }
        s.push(10, 10, failed(nr::OPENAT, 2), None); // ENOENT, after the last boundary
        s.ledger()
    }

    #[test]
    fn counts_each_errno_and_finds_its_first_iteration() {
        let ledger = pinned_run();
        let iterations = detect(&ledger, &IterationRequest::Symbol("tick".into()));
        let fd = of_class(&ledger, &iterations, ClassKind::Fd);
        assert_eq!(fd.total(), 8);
        let emfile = &fd.by_errno[&24];
        assert_eq!(
            (emfile.count, emfile.first_iteration, emfile.first_syscall),
            (7, 5, "openat")
        );
        assert_eq!(emfile.live_at_first, Some(6), "stdin and the 5 kept fds");
        assert_eq!(
            (fd.by_errno[&2].count, fd.by_errno[&2].first_iteration),
            (1, 11)
        );

        let mmap = of_class(&ledger, &iterations, ClassKind::Mapping);
        assert_eq!((mmap.total(), mmap.by_errno[&12].first_iteration), (1, 7));
        assert_eq!(mmap.by_errno[&12].live_at_first, Some(0));

        let brk = of_class(&ledger, &iterations, ClassKind::Heap);
        let enomem = &brk.by_errno[&12];
        assert_eq!((enomem.count, enomem.first_iteration), (1, 8));
        assert_eq!((enomem.first_syscall, enomem.live_at_first), ("brk", None));
    }

    #[test]
    fn a_run_without_failures_has_none() {
        let mut s = Stream::new(10);
        s.marker().open("/a", 3).close(3).marker();
        let ledger = s.ledger();
        let iterations = detect(&ledger, &IterationRequest::Symbol("tick".into()));
        for class in [ClassKind::Fd, ClassKind::Mapping, ClassKind::Heap] {
            assert!(of_class(&ledger, &iterations, class).is_empty());
        }
    }

    #[test]
    fn errnos_have_their_names() {
        assert_eq!(errno_name(24), "EMFILE");
        assert_eq!(errno_name(12), "ENOMEM");
        assert_eq!(errno_name(4242), "errno 4242");
    }
}
