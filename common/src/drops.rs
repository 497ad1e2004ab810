//! Why the kernel side dropped (or could only half-record) an event. Each reason has its own
//! slot in the per-CPU `LOST` array, so a lossy run says what it lost, not only how much:
//! a lost marker shortens the iteration count, a lost syscall record may hide a release,
//! a lost failure record only understates the failure counts.

use crate::EventKind;

/// One slot of the `LOST` array. The values are the slot indexes: part of the wire format.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The ring buffer was full for a plain syscall record.
    RingFullSyscall = 0,
    /// ... for an open-family record with its path.
    RingFullPath = 1,
    /// ... for a memory-mapping record with its user stack: the syscall's header is sent
    /// alone instead (when that finds no room either, [`DropReason::RingFullSyscall`]).
    RingFullStack = 2,
    /// ... for a fork record.
    RingFullFork = 3,
    /// ... for an exec record.
    RingFullExec = 4,
    /// ... for a process-exit record.
    RingFullExit = 5,
    /// ... for an iteration-marker record.
    RingFullMarker = 6,
    /// ... for a failed-acquisition record.
    RingFullFailed = 7,
    /// The filter map of traced processes was full: a forked child is not traced at all.
    TrackedFull = 8,
    /// The syscall's registers could not be read at sys_exit: the call is unknown. No
    /// longer counted since sys_exit became a BTF tracepoint that reads them with plain
    /// loads; the slot stays so every other reason keeps its number.
    RegsRead = 9,
    /// A fork's child tgid could not be read: the child is not traced.
    ChildTgidRead = 10,
    /// The two fds of pipe/pipe2/socketpair could not be read: the record arrives with
    /// [`crate::FD_PAIR_UNKNOWN`] and the ledger misses two fds.
    FdPairRead = 11,
    /// The ring buffer was full for a record of received control data (SCM_RIGHTS).
    RingFullControl = 12,
    /// The path (or memfd name) of an open-family call could not be read: the record
    /// arrives with an empty path, so the fd is placed at no real site.
    PathRead = 13,
    /// An exiting thread could not tell whether its whole process was ending (the
    /// process's live-thread count could not be read), so the leader's exit was taken as
    /// the process's end: a process whose leader went first may have stopped being traced.
    ExitUnclear = 14,
    /// A close failed (not EBADF) and the fd table could not be read to tell whether it
    /// had already freed the fd (see [`crate::close_outcome`]): it was taken as not
    /// closed, so the fd may be reported live when it is not.
    CloseUnclear = 15,
    /// The per-CPU slot where a stack record is built was in use by another program run on
    /// the same CPU (a kernel booted with full preemption): the syscall's header is sent
    /// without its stack.
    StackScratchBusy = 16,
    /// `--heap`: an allocation found no room in the live-allocation map: it counts in the
    /// process's heap totals but has no site, and its free is not paired.
    HeapLiveFull = 17,
    /// `--heap`: a thread's allocator call found no room for its stash: the allocation is
    /// not recorded at all.
    HeapInflightFull = 18,
    /// The ring buffer was full for the stack record of an fd-returning call
    /// ([`EventKind::UserStack`]): the call's own record goes without it, so its fd site
    /// has no frames (the fd is counted all the same).
    RingFullFdStack = 19,
    /// `--heap`: the ring buffer was full for the stack of an allocator call
    /// ([`EventKind::HeapStack`]): the block is recorded without it (its survivors are
    /// apportioned to the caller's sampled sites, or keep the caller's frame).
    RingFullHeapStack = 20,
    /// `--heap`: the ring buffer was full for the news that a block with a stack was freed
    /// ([`EventKind::HeapFreed`]): the reader keeps that stack until it is evicted for room.
    /// No count is touched.
    RingFullHeapFreed = 21,
    /// `--heap`: the reader let go of a live block's stack to keep its store bounded (the
    /// oldest first): that block is apportioned among its caller's sampled sites, or named
    /// by its caller. Counted by the reader, never by the kernel.
    HeapStackEvicted = 22,
}

impl DropReason {
    /// Slots in the `LOST` array.
    pub const COUNT: usize = 23;

    /// Every reason, in slot order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::RingFullSyscall,
        DropReason::RingFullPath,
        DropReason::RingFullStack,
        DropReason::RingFullFork,
        DropReason::RingFullExec,
        DropReason::RingFullExit,
        DropReason::RingFullMarker,
        DropReason::RingFullFailed,
        DropReason::TrackedFull,
        DropReason::RegsRead,
        DropReason::ChildTgidRead,
        DropReason::FdPairRead,
        DropReason::RingFullControl,
        DropReason::PathRead,
        DropReason::ExitUnclear,
        DropReason::CloseUnclear,
        DropReason::StackScratchBusy,
        DropReason::HeapLiveFull,
        DropReason::HeapInflightFull,
        DropReason::RingFullFdStack,
        DropReason::RingFullHeapStack,
        DropReason::RingFullHeapFreed,
        DropReason::HeapStackEvicted,
    ];

    /// The slot in the `LOST` array.
    pub const fn slot(self) -> u32 {
        self as u32
    }

    /// The name used in reports (`lost_by_reason` keys).
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::RingFullSyscall => "ring_full_syscall",
            DropReason::RingFullPath => "ring_full_path",
            DropReason::RingFullStack => "ring_full_stack",
            DropReason::RingFullFork => "ring_full_fork",
            DropReason::RingFullExec => "ring_full_exec",
            DropReason::RingFullExit => "ring_full_exit",
            DropReason::RingFullMarker => "ring_full_marker",
            DropReason::RingFullFailed => "ring_full_failed",
            DropReason::TrackedFull => "tracked_map_full",
            DropReason::RegsRead => "register_read_failed",
            DropReason::ChildTgidRead => "child_tgid_read_failed",
            DropReason::FdPairRead => "fd_pair_read_failed",
            DropReason::RingFullControl => "ring_full_control",
            DropReason::PathRead => "path_read_failed",
            DropReason::ExitUnclear => "exit_unclear",
            DropReason::CloseUnclear => "close_unclear",
            DropReason::StackScratchBusy => "stack_scratch_busy",
            DropReason::HeapLiveFull => "heap_live_map_full",
            DropReason::HeapInflightFull => "heap_inflight_map_full",
            DropReason::RingFullFdStack => "ring_full_fd_stack",
            DropReason::RingFullHeapStack => "ring_full_heap_stack",
            DropReason::RingFullHeapFreed => "ring_full_heap_freed",
            DropReason::HeapStackEvicted => "heap_stack_evicted",
        }
    }

    /// Whether the reason concerns `--heap`'s allocation maps only (the heap class counts
    /// those itself; no other class misses anything).
    pub const fn is_heap(self) -> bool {
        matches!(
            self,
            DropReason::HeapLiveFull | DropReason::HeapInflightFull
        )
    }

    /// Whether only a stack was dropped: the call itself went through without it (its site
    /// has no frames, its count is whole). No lost event: the ledger misses nothing.
    pub const fn is_stack_only(self) -> bool {
        matches!(
            self,
            DropReason::RingFullStack
                | DropReason::StackScratchBusy
                | DropReason::RingFullFdStack
                | DropReason::RingFullHeapStack
                | DropReason::RingFullHeapFreed
                | DropReason::HeapStackEvicted
        )
    }

    /// Whether a drop of this reason leaves the ledger short of a record (every reason but
    /// the heap maps' and the stack-only ones).
    pub const fn loses_an_event(self) -> bool {
        !self.is_heap() && !self.is_stack_only()
    }

    /// The reason a full ring gives for a plain header record of `kind`. A syscall record
    /// with a path, a stack or control data has its own reason (see the `RingFull*`s).
    #[inline(always)]
    pub const fn ring_full(kind: EventKind) -> DropReason {
        match kind {
            EventKind::Syscall => DropReason::RingFullSyscall,
            EventKind::Fork => DropReason::RingFullFork,
            EventKind::Exec => DropReason::RingFullExec,
            EventKind::Exit => DropReason::RingFullExit,
            EventKind::Marker => DropReason::RingFullMarker,
            EventKind::Failed => DropReason::RingFullFailed,
            // Never a header-only record; the kernel counts a lost pair as the two
            // records it stands for (`RingFullPath` and `RingFullSyscall`).
            EventKind::OpenClosed => DropReason::RingFullPath,
            // Never a header-only record either: sent with its stack or not at all.
            EventKind::UserStack => DropReason::RingFullFdStack,
            EventKind::HeapStack => DropReason::RingFullHeapStack,
            EventKind::HeapFreed => DropReason::RingFullHeapFreed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dense_and_in_order() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.slot() as usize, i, "{}", reason.name());
        }
    }

    #[test]
    fn every_kind_has_its_own_ring_full_reason() {
        let reasons = EventKind::ALL.map(DropReason::ring_full);
        for (i, reason) in reasons.iter().enumerate() {
            assert!(!reasons[..i].contains(reason), "{}", reason.name());
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: [&str; DropReason::COUNT] = DropReason::ALL.map(DropReason::name);
        names.sort_unstable();
        for pair in names.windows(2) {
            assert_ne!(pair[0], pair[1]);
        }
    }
}
