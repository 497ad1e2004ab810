//! Joining the stack of an fd-returning call to the call's record.
//!
//! The kernel sends such a stack as a record of its own ([`crate::event::CallStack`]) just
//! before the call's record, with the call's thread and time: the call's record itself is
//! unchanged, and an open may be held back in the kernel for pairing with its close. So the
//! stack waits here, one per thread, until its call comes:
//! - the call's record (from the ring, or an open delivered from its slot) takes it;
//! - an open paired with its close ([`leakscope_common::EventKind::OpenClosed`]) needs no
//!   stack: a released fd is no site, and nothing is unwound for it;
//! - a later record of the thread means the call's record never came (the ring was full):
//!   the stack is stale, as is one that a newer stack of the thread replaces;
//! - the process's exit ends its threads' waits, and at most [`MAX_PENDING`] stacks wait
//!   at once (the oldest goes first), so a reader that never sees the calls stays bounded.
//!
//! Why one per thread is enough: a thread's records keep their order in the ring, and a
//! held open goes out before any later record of its process, so nothing of the thread
//! comes between a stack and its call but that call.

use crate::event::{CallStack, Event, What};

/// The most stacks waiting for their calls at once: at 8 KiB each, 8 MiB.
pub(super) const MAX_PENDING: usize = 1024;

/// What became of the fd stacks that arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StackJoinCounts {
    /// Given to their call.
    pub(crate) joined: u64,
    /// Dropped: the open was paired with its close in the kernel.
    pub(crate) paired: u64,
    /// Dropped: the call's record never came (a later record of the thread did, or a newer
    /// stack), or it was no call the stack could belong to.
    pub(crate) stale: u64,
    /// Dropped for room ([`MAX_PENDING`]) or because the process exited.
    pub(crate) evicted: u64,
}

impl StackJoinCounts {
    pub(crate) fn dropped(&self) -> u64 {
        self.paired + self.stale + self.evicted
    }
}

/// The stacks waiting for their calls, by thread.
#[derive(Debug, Default)]
pub(super) struct PendingStacks {
    /// Looked up for every event the drain applies: a fast hasher, as the ledger's maps.
    by_tid: foldhash::HashMap<u32, CallStack>,
    pub(super) counts: StackJoinCounts,
}

impl PendingStacks {
    /// A stack from the ring: it waits for its call.
    pub(super) fn park(&mut self, stack: CallStack) {
        if self.by_tid.insert(stack.tid, stack).is_some() {
            self.counts.stale += 1;
            return;
        }
        if self.by_tid.len() > MAX_PENDING
            && let Some(oldest) = self
                .by_tid
                .values()
                .min_by_key(|pending| pending.time_ns)
                .map(|pending| pending.tid)
        {
            self.by_tid.remove(&oldest);
            self.counts.evicted += 1;
        }
    }

    /// The open of an [`leakscope_common::EventKind::OpenClosed`] record: its stack, if it
    /// is waiting, is not needed.
    pub(super) fn paired(&mut self, open: &Event) {
        if self.waiting_for(open) == Some(true) {
            self.by_tid.remove(&open.tid);
            self.counts.paired += 1;
        }
    }

    /// Called for each event before it is applied: gives a call its stack, and drops the
    /// stacks that the event shows will never be claimed.
    pub(super) fn claim(&mut self, event: &mut Event) {
        if matches!(event.what, What::Exit) {
            let before = self.by_tid.len();
            self.by_tid.retain(|_, pending| pending.tgid != event.tgid);
            self.counts.evicted += (before - self.by_tid.len()) as u64;
            return;
        }
        match self.waiting_for(event) {
            None => {}
            Some(true) => {
                let pending = self.by_tid.remove(&event.tid).expect("it is waiting");
                match &mut event.what {
                    What::Syscall(call) if call.nr == pending.nr && call.stack.is_none() => {
                        call.stack = Some(pending.stack);
                        self.counts.joined += 1;
                    }
                    _ => self.counts.stale += 1,
                }
            }
            Some(false) => {
                self.by_tid.remove(&event.tid);
                self.counts.stale += 1;
            }
        }
    }

    /// Whether the stack waiting on `event`'s thread is that event's (`Some(true)`), or
    /// one whose call can no longer come (`Some(false)`: a later record of the thread, or
    /// one of another process that reuses the thread id); `None` when none waits, or when
    /// the event is older than the stack.
    fn waiting_for(&self, event: &Event) -> Option<bool> {
        let pending = self.by_tid.get(&event.tid)?;
        if pending.tgid != event.tgid {
            return Some(false);
        }
        match pending.time_ns.cmp(&event.time_ns) {
            std::cmp::Ordering::Equal => Some(true),
            std::cmp::Ordering::Less => Some(false),
            std::cmp::Ordering::Greater => None,
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_tid.len()
    }
}

#[cfg(test)]
#[path = "stack_join_tests.rs"]
mod tests;
