//! The drain: moves the ring buffer's records into the sink, follows the traced processes,
//! and assembles the session's [`Outcome`].

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use leakscope_common::DropReason;

use super::{
    EventSink, Outcome, held::HeldOpens, ring_positions::RingPositions, stack_join::PendingStacks,
};
use crate::{
    diagnosis::TargetExit,
    ending::{self, Ending},
    event::{self, Event, What},
    followed::Followed,
    probes::{ProbeError, Probes},
    stacks::StackNamer,
    stop,
};

/// Every this many polls, followed processes that are no longer running but whose exit
/// event never came (it was lost) are let go, so tracing cannot wait for them forever.
const LIVENESS_EVERY: u32 = 50;

/// How often the ring is drained while the target is quiet. The kernel side submits
/// without wakeups (they cost more than the events themselves), so userspace polls.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How soon the next drain comes after one that read at least [`BUSY_BYTES`]: in a burst,
/// 10 ms of records and stacks (a loop mapping 260 KiB blocks makes 500 stack copies of
/// 8 KiB in that time) fill the share of the ring stacks may use, and the calls after it
/// lose their frames; records past the ring's size are lost.
const BUSY_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A drain that read this much means a burst (a quiet program writes a few KiB in 10 ms).
const BUSY_BYTES: u64 = 256 * 1024;

/// How many rounds the last drain tries, 1 ms apart, to read past a record still being
/// written (a program fills one in microseconds).
const FINAL_DRAIN_ATTEMPTS: u32 = 100;

/// How the session traced its target, for the ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Launched,
    Attached,
    /// Attached, and `--duration` passed.
    AttachedUntilDuration,
}

pub(super) struct Drainer {
    ring: RingBuf<MapData>,
    positions: RingPositions,
    held: HeldOpens,
    /// Stacks of fd-returning calls waiting for their call's record.
    fd_stacks: PendingStacks,
    /// `--heap`: the sampled stacks of live blocks, unwound on arrival.
    heap_stacks: crate::heap::stacks::HeapStacks,
    pub(super) followed: Followed,
    polls: u32,
    /// Bytes the last periodic drain read (see [`Drainer::poll_interval`]).
    last_poll_bytes: u64,
    pub(super) namer: StackNamer,
    page_size: u64,
    undecodable: u64,
    /// `--heap` without a marker: read the heap totals at every poll.
    pub(super) sample_heap: bool,
    /// When tracing began (CLOCK_MONOTONIC ns).
    pub(super) since_ns: u64,
    /// `--heap`: the allocator probes of each process, and the processes that forked or
    /// exec'd since the last poll and may need more (see [`Drainer::follow_heap`]).
    pub(super) heap: Option<crate::heap::follow::HeapFollower>,
}

impl Drainer {
    pub(super) fn new(ring: RingBuf<MapData>) -> Result<Drainer, ProbeError> {
        let positions = RingPositions::new(&ring).map_err(|errno| ProbeError::Map {
            map: leakscope_common::maps::EVENTS,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "mmap",
                io_error: errno.into(),
            }),
        })?;
        Ok(Drainer {
            ring,
            positions,
            held: HeldOpens::default(),
            fd_stacks: PendingStacks::default(),
            heap_stacks: Default::default(),
            namer: StackNamer::default(),
            page_size: procfs::page_size(),
            undecodable: 0,
            followed: Followed::default(),
            polls: 0,
            last_poll_bytes: 0,
            sample_heap: false,
            since_ns: crate::event::monotonic_now_ns(),
            heap: None,
        })
    }

    /// One periodic drain; now and then, also lets go of followed processes that are gone
    /// but whose exit event was lost.
    pub(super) fn poll(&mut self, probes: &Probes, sink: &mut dyn EventSink) {
        self.polls += 1;
        let consumed_before = self.positions.consumer();
        if self.polls.is_multiple_of(LIVENESS_EVERY) {
            // Looked up before the drain: an exit event sent before a process was gone
            // is in the ring by now, so whichever is still listed after it was lost.
            let gone = self.followed.not_running();
            self.drain(probes, sink);
            self.followed.forget(&gone);
        } else {
            self.drain(probes, sink);
        }
        self.last_poll_bytes = self.positions.consumer().saturating_sub(consumed_before);
        self.sample_heap_totals(probes, sink);
        // An incomplete round's held opens wait for the next poll (see `poll_interval`).
        let copies_lost = self.held.copies_lost_so_far();
        sink.polled(&|| {
            let by_reason = without_delivered_opens(probes.lost_by_reason(), copies_lost);
            let lost = |reason| {
                by_reason
                    .iter()
                    .filter(|(r, _)| *r == reason)
                    .map(|(_, n)| n)
                    .sum::<u64>()
            };
            (
                // The heap class's own drops and dropped stacks are no lost events (see
                // `outcome`).
                by_reason
                    .iter()
                    .filter(|(r, _)| r.loses_an_event())
                    .map(|(_, n)| n)
                    .sum(),
                lost(DropReason::RingFullMarker),
            )
        });
    }

    /// How long to wait before the next periodic drain: sooner while the target writes
    /// records in a burst.
    pub(super) fn poll_interval(&self) -> Duration {
        if self.last_poll_bytes >= BUSY_BYTES {
            BUSY_POLL_INTERVAL
        } else {
            POLL_INTERVAL
        }
    }

    /// Moves everything in the ring into the sink, and the opens the kernel holds back for
    /// pairing (see [`super::held`]): the slots are read first, then the ring, and the
    /// opens that the ring did not bring meanwhile come last.
    /// Returns whether the round was complete: an incomplete one (a record reserved before
    /// the slots were read is still being written) keeps the held opens for the next round.
    pub(super) fn drain(&mut self, probes: &Probes, sink: &mut dyn EventSink) -> bool {
        self.drain_round(probes, sink, false)
    }

    /// [`Drain::drain`]; with `force`, the held opens are delivered even if the round was
    /// not complete.
    fn drain_round(&mut self, probes: &Probes, sink: &mut dyn EventSink, force: bool) -> bool {
        let opens = self.held_now(probes);
        // Every record reserved before the slots were read lies before this position.
        let reserved = self.positions.producer();
        self.held.begin_round(opens);
        loop {
            // The item hands its slot back to the kernel at the end of this block, before
            // the slower work below.
            let decoded = match self.ring.next() {
                Some(item) => event::decode_record(&item, self.page_size),
                None => break,
            };
            let decoded = match decoded {
                Ok(event::Record::Events(decoded)) => decoded,
                Ok(event::Record::Stack(stack)) => {
                    self.fd_stacks.park(stack);
                    continue;
                }
                Ok(event::Record::HeapStack(stack)) => {
                    // Unwound now, while the process is surely there; only its site is kept.
                    let frames =
                        self.namer
                            .unwound(stack.tgid, stack.stack.regs, &stack.stack.bytes);
                    self.heap_stacks.arrived(stack.tgid, stack.time_ns, &frames);
                    continue;
                }
                Ok(event::Record::HeapFreed { tgid, stack_ns }) => {
                    self.heap_stacks.freed(tgid, stack_ns);
                    continue;
                }
                Err(_) => {
                    self.undecodable += 1;
                    continue;
                }
            };
            if decoded.close.is_some() {
                // A paired open leaves no fd behind: its stack is not unwound.
                self.fd_stacks.paired(&decoded.first);
            }
            if self.held.admit(&decoded.first) {
                self.apply(decoded.first, sink);
            }
            if let Some(close) = decoded.close {
                self.apply(close, sink);
            }
        }
        let complete = self.positions.consumer() >= reserved;
        for open in self.held.end_round(complete || force) {
            self.apply(open, sink);
        }
        complete
    }

    /// The opens the kernel's slots hold now.
    fn held_now(&self, probes: &Probes) -> Vec<Event> {
        probes
            .held_opens()
            .iter()
            .filter_map(|open| event::decode_held(open, self.page_size).ok())
            .collect()
    }

    /// Drains until a round delivers the held opens too (a record still being written
    /// stops the reader), or `attempts` rounds passed: for the last drain.
    /// The held opens are delivered in the end all the same: a record still unwritten after
    /// every attempt is lost either way, and the opens are real.
    pub(super) fn drain_fully(&mut self, probes: &Probes, sink: &mut dyn EventSink) {
        self.drain_rounds(probes, sink);
        self.sample_heap_totals(probes, sink);
    }

    fn drain_rounds(&mut self, probes: &Probes, sink: &mut dyn EventSink) {
        for _ in 0..FINAL_DRAIN_ATTEMPTS {
            // The round's own completeness: it compares the consumer with the producer
            // position it read itself, after reading the slots.
            if self.drain(probes, sink) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.drain_round(probes, sink, true);
    }

    /// `--heap`: attaches the allocator probes to the processes that forked or exec'd since
    /// the last call (their allocations before it are not seen: a miss, never a false leak).
    pub(super) fn follow_heap(&mut self, probes: &mut Probes) {
        if let Some(heap) = &mut self.heap {
            heap.attach_pending(probes);
        }
    }

    /// `--heap` without a marker: every process's allocator totals now, after the records
    /// drained before (the sample is stamped when it was read).
    fn sample_heap_totals(&self, probes: &Probes, sink: &mut dyn EventSink) {
        let Some(maps) = probes.heap_maps().filter(|_| self.sample_heap) else {
            return;
        };
        let totals: Vec<(u32, crate::event::MarkerHeap)> = maps
            .totals
            .iter()
            .filter_map(Result::ok)
            // An exited process holds nothing: its exit already said so.
            .filter(|(tgid, _)| self.followed.live().contains(tgid))
            .map(|(tgid, t)| (tgid, crate::event::MarkerHeap::from(&t)))
            .collect();
        sink.heap_sampled(crate::event::monotonic_now_ns(), &totals);
    }

    fn apply(&mut self, mut event: Event, sink: &mut dyn EventSink) {
        self.fd_stacks.claim(&mut event);
        // Unwound now, while the process is likely still there to be symbolized; the copy
        // of the stack is not needed past this point.
        if let What::Syscall(call) = &mut event.what
            && let Some(stack) = call.stack.take()
        {
            let frames = self.namer.unwound(event.tgid, stack.regs, &stack.bytes);
            call.frames = (!frames.is_empty()).then_some(frames);
        }
        self.followed.observe(&event);
        self.namer
            .observe(&event, &|tgid, fd| sink.path_of_fd(tgid, fd));
        if let Some(heap) = &mut self.heap {
            heap.observe(&event);
        }
        match &event.what {
            What::Fork { child } => self.namer.inherit(event.tgid, *child),
            What::Exec(image) => {
                let image = image
                    .as_deref()
                    .and_then(|image| image.resolved(sink.cwd_of(event.tgid).as_deref()));
                self.namer.exec(event.tgid, event.time_ns, image.as_ref());
            }
            _ => {}
        }
        sink.apply(&event);
    }

    pub(super) fn outcome(
        &mut self,
        probes: &Probes,
        pid: u32,
        command: Vec<String>,
        end: TargetExit,
        mode: Mode,
        fd_limit: Option<u64>,
    ) -> Outcome {
        let received = stop::received();
        let running_at_end = self.followed.live().clone();
        let ending = Ending::new(&ending::Facts {
            exit: end,
            attached: mode != Mode::Launched,
            duration_passed: mode == Mode::AttachedUntilDuration,
            received: &received,
            sent_to_target: &stop::sent_to_target(),
            processes_running: running_at_end.len(),
        });
        // A heap allocation the kernel could not record casts doubt on the heap class only,
        // which says so itself: it is no lost event (`lost_by_reason` sums to those).
        let all = without_delivered_opens(
            probes.lost_by_reason(),
            self.held.copies_lost(&self.held_now(probes)),
        );
        let of = |keep: fn(&DropReason) -> bool| -> Vec<(DropReason, u64)> {
            all.iter().filter(|(r, _)| keep(r)).copied().collect()
        };
        let heap_drops = of(|r| r.is_heap());
        // A stack dropped costs its call's frames, not the call: reported apart.
        let mut stacks_dropped = of(|r| r.is_stack_only());
        // The reader's own drops: live blocks' stacks let go of for room.
        let evicted = self.heap_stacks.counts.evicted;
        if evicted > 0 {
            stacks_dropped.push((DropReason::HeapStackEvicted, evicted));
        }
        let lost_by_reason = of(|r| r.loses_an_event());
        let lost = |reason| {
            lost_by_reason
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, n)| *n)
        };
        if std::env::var_os("LEAKSCOPE_VERBOSE").is_some() {
            let counts = self.fd_stacks.counts;
            eprintln!(
                "leakscope: fd stacks: {} joined to their call, {} dropped ({} of paired \
                 opens, {} stale, {} evicted)",
                counts.joined,
                counts.dropped(),
                counts.paired,
                counts.stale,
                counts.evicted
            );
            let heap = self.heap_stacks.counts;
            eprintln!(
                "leakscope: heap stacks: {} arrived, {} kept at the end, {} dropped as their \
                 block ended, {} evicted for room, {} unwound to nothing",
                heap.arrived,
                self.heap_stacks.len(),
                heap.freed,
                heap.evicted,
                heap.empty
            );
        }
        let heap = probes.heap_maps().map(|maps| {
            let mut snapshot =
                crate::heap::snapshot::HeapSnapshot::take(maps, self.since_ns, &self.heap_stacks);
            snapshot.unfollowed = self.heap.as_ref().map_or(0, |h| h.unfollowed);
            snapshot.dropped = heap_drops.iter().map(|(_, n)| n).sum();
            snapshot.name_callers(|tgid, address| self.namer.frames_at(tgid, address));
            snapshot
        });
        Outcome {
            heap,
            pid,
            command,
            end,
            running_at_end,
            commands: std::mem::take(&mut self.followed).into_commands(),
            lost_events: lost_by_reason.iter().map(|(_, n)| n).sum(),
            lost_markers: lost(DropReason::RingFullMarker),
            lost_by_reason,
            stacks_dropped,
            fd_limit,
            undecodable: self.undecodable,
            ending,
        }
    }
}

/// The kernel's drop counts, less `delivered` opens it counted under `ring_full_path` that
/// the reader had taken from their slots (see [`HeldOpens::copies_lost`]).
fn without_delivered_opens(
    mut by_reason: Vec<(DropReason, u64)>,
    delivered: u64,
) -> Vec<(DropReason, u64)> {
    if let Some((_, n)) = by_reason
        .iter_mut()
        .find(|(reason, _)| *reason == DropReason::RingFullPath)
    {
        *n = n.saturating_sub(delivered);
    }
    by_reason.retain(|(_, n)| *n > 0);
    by_reason
}
