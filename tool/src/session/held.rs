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
//!
//! An open taken from its slot may also be counted lost by the kernel: when its flush finds
//! the ring full, the kernel counts it (`ring_full_path`) without knowing the reader has it.
//! Such an open was delivered, so [`HeldOpens::copies_lost`] says how many to take off
//! that count. The copy is known lost once a later record of its process arrives, or the
//! slot holds another open (the kernel sends the held open before anything else of its
//! process), or, at the end, the slot no longer holds it and the ring never brought it.

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
    /// Opens delivered from their slots whose ring copy the kernel failed to send, and so
    /// counted lost although they were not (see the module's notes).
    copies_lost: u64,
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
        let is_open = matches!(&event.what, What::Syscall(call) if call.open.is_some());
        if let Some(&taken) = self.taken.get(&event.tgid) {
            self.taken.remove(&event.tgid);
            if is_open && taken == event.time_ns {
                return false;
            }
            // The kernel sends a held open before any later record of its process: this
            // record came, so the copy cannot.
            self.copies_lost += 1;
        }
        match &event.what {
            What::Syscall(call) if call.open.is_some() => {
                for (open, arrived) in &mut self.round {
                    if open.tgid == event.tgid && open.time_ns == event.time_ns {
                        *arrived = true;
                    }
                }
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
            // The slot holds a newer open: the earlier one was sent (or failed to be) before
            // it was held, before this complete round began, and the ring did not bring it.
            if self.taken.insert(open.tgid, open.time_ns).is_some() {
                self.copies_lost += 1;
            }
        }
        deliver
    }

    /// How many opens delivered from their slots the kernel also counted lost, once the
    /// last drain is done and `still_held` are the opens the slots hold now: a taken open
    /// no longer in its slot was sent or lost, and the ring did not bring it.
    pub(super) fn copies_lost(&self, still_held: &[Event]) -> u64 {
        let flushed_unseen = self
            .taken
            .iter()
            .filter(|&(&tgid, &time_ns)| {
                !still_held
                    .iter()
                    .any(|open| open.tgid == tgid && open.time_ns == time_ns)
            })
            .count() as u64;
        self.copies_lost + flushed_unseen
    }

    /// [`HeldOpens::copies_lost`] so far, while tracing (the slots not read).
    pub(super) fn copies_lost_so_far(&self) -> u64 {
        self.copies_lost
    }
}

#[cfg(test)]
#[path = "held_tests.rs"]
mod tests;
