//! The opens the kernel holds back for pairing (see `leakscope_common::TrackedProcess`),
//! brought in from their slots so that an idle process's open is never hidden: each drain
//! is a round that reads the slots first, drains the ring, and then delivers the opens that
//! did not arrive through the ring meanwhile. The ring may still bring a copy of such an
//! open later (flushed on the process's next record, or paired with its close): that copy
//! is dropped here, so the ledger sees every open once, in its process's order.
//!
//! Why the order holds: a held open is the latest record of its process (the kernel sends
//! it before any later one). Every earlier record of the process was in the ring before
//! the open was held, so before the slots were read; a round delivers its opens only once
//! the drain has consumed everything the ring held at that moment (`complete`).

use std::collections::HashMap;

use leakscope_common::{HELD_OPEN, PathEvent, TrackedProcess};

use crate::event::{Event, What};

/// The open a slot holds, when two reads of it agree and it is sealed: the kernel clears
/// `held` before it rewrites a slot, and writes the seal (the open's time) and then `held`
/// last, so a copy taken while it was writing fails one of these checks.
pub(crate) fn sealed_open(first: &TrackedProcess, second: &TrackedProcess) -> Option<PathEvent> {
    let sealed = |slot: &TrackedProcess| {
        slot.held == HELD_OPEN && slot.seal_ktime_ns == slot.open.event.ktime_ns
    };
    (sealed(first) && sealed(second) && bytes_of(first) == bytes_of(second)).then_some(first.open)
}

fn bytes_of(slot: &TrackedProcess) -> &[u8] {
    // SAFETY: TrackedProcess is repr(C) plain data without implicit padding.
    unsafe {
        std::slice::from_raw_parts(
            (slot as *const TrackedProcess).cast::<u8>(),
            size_of::<TrackedProcess>(),
        )
    }
}

/// Which held opens were delivered from their slots, and the current round's.
#[derive(Debug, Default)]
pub(super) struct HeldOpens {
    /// Per process, the time of the open delivered from its slot whose ring copy has not
    /// come yet (a process holds one open at a time).
    taken: HashMap<u32, u64>,
    /// This round's opens read from the slots, and whether the ring brought each of them.
    round: Vec<(Event, bool)>,
}

impl HeldOpens {
    /// Starts a round with the opens just read from the slots.
    pub(super) fn begin_round(&mut self, opens: Vec<Event>) {
        self.round = opens
            .into_iter()
            .filter(|open| self.taken.get(&open.tgid) != Some(&open.time_ns))
            .map(|open| (open, false))
            .collect();
    }

    /// Called for each event from the ring, in order, before it is applied: whether to
    /// apply it (false for the ring's copy of an open already delivered from its slot).
    pub(super) fn admit(&mut self, event: &Event) -> bool {
        match &event.what {
            What::Syscall(call) if call.open.is_some() => {
                if self.taken.get(&event.tgid) == Some(&event.time_ns) {
                    self.taken.remove(&event.tgid);
                    return false;
                }
                for (open, arrived) in &mut self.round {
                    if open.tgid == event.tgid && open.time_ns == event.time_ns {
                        *arrived = true;
                    }
                }
            }
            // A later process with the same pid starts afresh.
            What::Exit => {
                self.taken.remove(&event.tgid);
            }
            _ => {}
        }
        true
    }

    /// Ends the round: the opens to deliver now, those the ring did not bring. `complete`
    /// says whether the drain consumed everything the ring held when the slots were read;
    /// if not, an earlier record of their process may still be behind, so none is
    /// delivered (the next round reads the slots again).
    pub(super) fn end_round(&mut self, complete: bool) -> Vec<Event> {
        let round = std::mem::take(&mut self.round);
        if !complete {
            return Vec::new();
        }
        let deliver: Vec<Event> = round
            .into_iter()
            .filter(|(_, arrived)| !arrived)
            .map(|(open, _)| open)
            .collect();
        for open in &deliver {
            self.taken.insert(open.tgid, open.time_ns);
        }
        deliver
    }
}

#[cfg(test)]
#[path = "held_tests.rs"]
mod tests;
