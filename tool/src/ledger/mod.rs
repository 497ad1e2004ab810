//! The ledger: every resource each traced process acquired and released, replayed from
//! the event stream.
//!
//! It keeps three kinds of facts:
//! - resource records (fds, mappings, entries on disk, watches) with acquisition and release times, so the
//!   analysis can tell what was live at any iteration boundary;
//! - byte-change logs for mappings and the brk heap, so byte totals can be replayed too;
//! - raw series the iteration detector needs: markers, opened paths, rss samples.
//!
//! Entries on disk (`files`) belong to no process: the filesystem is shared, so one map of
//! live paths serves every process, and exit or exec releases none. Watches (`watches`)
//! belong to the process and fd that added them.
//!
//! Fd tables and address spaces belong to a process (tgid), shared by its threads. The
//! ledger never looks at `tid` except to tell a thread's exit from its process's.
//!
//! What each live process holds now (`Process`) is kept apart from what the ledger
//! records (`history::History`): applying a call borrows one process and the history side
//! by side (`fd_apply`, `map_apply`, `lifecycle`).

pub(crate) mod boundaries;
pub(crate) mod brk;
mod fd_apply;
pub(crate) mod fd_calls;
pub(crate) mod fd_table;
mod file_apply;
pub(crate) mod file_calls;
pub(crate) mod files;
mod history;
pub(crate) mod holdings;
mod lifecycle;
pub(crate) mod loop_runs;
mod map_apply;
pub(crate) mod map_calls;
pub(crate) mod mappings;
pub(crate) mod name_pattern;
pub(crate) mod paths;
pub(crate) mod recent_boundaries;
pub(crate) mod records;
pub(crate) mod shm;
pub(crate) mod sites;
pub(crate) mod streaming;
pub(crate) mod unseen_fds;
pub(crate) mod watches;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::event::{Event, Syscall, What};
use brk::Break;
use fd_table::FdTable;
use history::History;
use holdings::Holdings;
use leakscope_common::fd_arrival;
use loop_runs::{LoopRun, LoopRuns};
use mappings::MappingSet;
use records::{RecordId, Records};
use sites::{SiteId, Sites};

/// A change of mapped or heap bytes at a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ByteChange {
    pub(crate) time_ns: u64,
    pub(crate) bytes: i64,
    /// The mapping record it belongs to ([`NO_RECORD`] for the heap).
    pub(crate) record: RecordId,
}

pub(crate) const NO_RECORD: RecordId = RecordId::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RssSample {
    pub(crate) time_ns: u64,
    pub(crate) tgid: u32,
    pub(crate) bytes: u64,
}

/// A growth of the brk heap and the call site that asked for it (heap bytes have no
/// records to hang a site on, so growth is kept with its stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeapGrowth {
    pub(crate) time_ns: u64,
    pub(crate) bytes: u64,
    pub(crate) site: SiteId,
}

/// The size of a live entry on disk, as the session found it during the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SizeSample {
    pub(crate) time_ns: u64,
    pub(crate) record: RecordId,
    pub(crate) bytes: u64,
}

/// A successful open of a path (the `--iteration-path` and auto-detection input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenedPath {
    pub(crate) time_ns: u64,
    pub(crate) path: SiteId,
    /// The process that opened it.
    pub(crate) tgid: u32,
    /// The program image it ran (see [`Ledger::image_of`]).
    pub(crate) image: u32,
}

/// The resource class a failed acquisition was after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ClassKind {
    Fd,
    Mapping,
    Heap,
    /// Entries on disk (files, directories, links, nodes) the target created.
    File,
    /// inotify watches and fanotify marks.
    Watch,
}

/// A call that would have acquired a resource and failed (see [`What::Failed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FailedAcquisition {
    pub(crate) time_ns: u64,
    pub(crate) tgid: u32,
    pub(crate) class: ClassKind,
    pub(crate) syscall: &'static str,
    /// Positive errno: EMFILE, ENFILE, ENOMEM, ...
    pub(crate) errno: i32,
}

/// What one process holds now.
#[derive(Clone, Debug, Default)]
struct Process {
    fds: FdTable,
    maps: MappingSet,
    heap: Break,
    cwd: Option<Arc<str>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Ledger {
    /// What each live process holds now.
    processes: foldhash::HashMap<u32, Process>,
    /// What happened: records, byte logs, opened paths, counts.
    history: History,
    exits: HashMap<u32, u64>,
    span: Option<(u64, u64)>,
    /// When each process was first seen.
    first_seen: foldhash::HashMap<u32, u64>,
    /// The process leakscope launched or attached to (see [`Ledger::begin`]).
    target: Option<u32>,
    /// When tracing began (CLOCK_MONOTONIC ns): what was held before starts here.
    traced_since_ns: u64,
    /// What processes held when they exited: the target, and every process that
    /// outlived it (see [`Ledger::outlived_target`]).
    final_holdings: BTreeMap<u32, Holdings>,
    /// When each process exec'd, in time order: a new program image starts there. Read on
    /// every open (the image an open ran in), so hashed as the other hot maps are.
    execs: foldhash::HashMap<u32, Vec<u64>>,
    /// The runs of the marked loop, by its markers.
    marker_runs: LoopRuns,
    /// Likewise by the opens of the streamed `--iteration-path` paths.
    marking_open_runs: LoopRuns,
    /// The process each traced process was forked from.
    parents: HashMap<u32, u32>,
    /// Entries on disk created and not removed: shared by every process.
    entries: files::Entries,
    /// inotify watches and fanotify marks, by process and watching fd.
    watches: watches::Watches,
    /// Sizes of the live entries, taken when tracing ended (see [`Ledger::note_file_sizes`]).
    file_sizes: crate::analysis::FileSizes,
    /// Folding settled records away as the run goes (marker iterations only).
    streaming: streaming::Streaming,
    /// Automatic detection while tracing, when it is on (see [`Ledger::detect_early`]).
    early: Option<Box<crate::iterations::early::Early>>,
    /// `--heap`: the kernel's heap maps when tracing ended.
    heap_snapshot: Option<crate::heap::snapshot::HeapSnapshot>,
    /// Children cloned with CLONE_FILES but not CLONE_THREAD: they share their parent's fd
    /// table, which the ledger, keeping one table per process, cannot follow.
    shared_fd_tables: u64,
    /// Likewise children cloned with CLONE_VM, not a thread nor a vfork: they share the
    /// parent's mappings and heap.
    shared_address_spaces: u64,
    /// io_urings and fd-reporting fanotify groups: they install fds the probes never see.
    unseen_fd_sources: unseen_fds::UnseenFdSources,
    /// SysV shared memory attached by shmat, which the mapping class does not count.
    shm: shm::ShmAttachments,
}

impl Ledger {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets the working directory relative paths of `tgid` resolve against (unknown by
    /// default: relative paths then stay relative). Forks inherit it.
    pub(crate) fn set_cwd(&mut self, tgid: u32, path: &str) {
        self.processes.entry(tgid).or_default().cwd = Some(Arc::from(paths::normalize(path)));
    }

    /// Applies one event. Events must arrive in time order per process.
    pub(crate) fn apply(&mut self, event: &Event) {
        let (t, tgid) = (event.time_ns, event.tgid);
        self.span = Some(match self.span {
            None => (t, t),
            Some((first, last)) => (first.min(t), last.max(t)),
        });
        self.first_seen.entry(tgid).or_insert(t);
        if let Some(bytes) = event.rss_bytes {
            self.history.rss.push(RssSample {
                time_ns: t,
                tgid,
                bytes,
            });
        }
        match &event.what {
            What::Syscall(call) => {
                // recvmmsg sends a record per message with fds; count the call once.
                if !call.delivered.as_ref().is_some_and(|d| d.continues_call) {
                    self.count(call.name);
                }
                self.apply_syscall(tgid, t, call);
            }
            What::Fork { child } => {
                self.count("fork");
                self.parents.insert(*child, tgid);
                self.fork(tgid, *child, t);
            }
            What::Exec(_) => {
                self.count("exec");
                self.execs.entry(tgid).or_default().push(t);
                self.shm.detach_all(tgid, t);
                self.exec(tgid, t);
            }
            // The kernel sends one exit per process, when its last thread exits (from
            // whichever thread that is: the leader may have gone first). A thread's own
            // exit, the leader's included, releases nothing and is not sent.
            What::Exit => {
                self.count("exit");
                self.shm.detach_all(tgid, t);
                self.exit(tgid, t);
            }
            What::Marker { heap, .. } => {
                if let Some(heap) = heap {
                    self.note_heap_totals(tgid, t, heap);
                }
                self.marker_runs.note(tgid, self.image_of(tgid), t);
                if !self.note_marker(t) {
                    self.history.markers.push(t);
                }
            }
            What::Failed(failed) => {
                if let Some(class) = fd_calls::failure_class(failed.nr, failed.errno) {
                    self.history.failures.push(FailedAcquisition {
                        time_ns: t,
                        tgid,
                        class,
                        syscall: failed.name,
                        errno: failed.errno,
                    });
                }
            }
        }
        if self.early.is_some() {
            crate::iterations::early::after_event(self, event);
        }
        self.maybe_fold();
    }

    /// Turns automatic detection while tracing on: the first try after `events` events
    /// (see [`crate::iterations::early`]).
    pub(crate) fn detect_early(&mut self, events: u64) {
        self.early = Some(Box::new(crate::iterations::early::Early::new(events)));
    }

    /// Likewise, with the detector given (tests).
    #[cfg(test)]
    pub(crate) fn detect_early_with(&mut self, early: crate::iterations::early::Early) {
        self.early = Some(Box::new(early));
    }

    /// Between drains: automatic detection tries to choose the loop if it is time.
    pub(crate) fn poll_early(&mut self) {
        if self.early.is_some() {
            crate::iterations::early::poll(self);
        }
    }

    /// The detector while tracing, taken out to work on the ledger beside it.
    pub(crate) fn take_early(&mut self) -> Option<Box<crate::iterations::early::Early>> {
        self.early.take()
    }

    pub(crate) fn put_early(&mut self, early: Box<crate::iterations::early::Early>) {
        self.early = Some(early);
    }

    /// The rule automatic detection committed to while tracing, if it did.
    pub(crate) fn early_commit(&self) -> Option<&crate::iterations::early::Commit> {
        self.early.as_deref().and_then(|early| early.commit())
    }

    /// A note for the user from the detector while tracing, once.
    pub(crate) fn take_early_note(&mut self) -> Option<String> {
        self.early
            .as_deref_mut()
            .and_then(|early| early.take_note())
    }

    fn count(&mut self, name: &'static str) {
        self.history.count(name);
    }

    fn apply_syscall(&mut self, tgid: u32, t: u64, call: &Syscall) {
        let flags = fd_arrival::clone_flags(call.nr, &call.args);
        if let Some(flags) = flags.filter(|_| call.ret > 0) {
            self.shared_fd_tables += u64::from(fd_arrival::shares_fd_table(flags));
            self.shared_address_spaces += u64::from(fd_arrival::shares_address_space(flags));
        }
        self.unseen_fd_sources.note(call);
        self.shm.note(tgid, t, call);
        if let Some(op) = fd_calls::decode(call) {
            self.apply_fd(tgid, t, op, (call.name, call.frames.as_deref()));
        } else if let Some(op) = map_calls::decode(call) {
            self.apply_map(tgid, t, op, call);
        }
        // An open that created its file is an fd and an entry on disk.
        if let Some(op) = file_calls::decode(call) {
            self.apply_file(tgid, t, op);
        }
    }

    // ---- read access for the analysis ----

    pub(crate) fn sites(&self) -> &Sites {
        &self.history.sites
    }
    pub(crate) fn fd_records(&self) -> &Records {
        &self.history.fds
    }
    /// The working directory of `tgid`, when known (absolute).
    pub(crate) fn cwd_of(&self, tgid: u32) -> Option<Arc<str>> {
        self.processes.get(&tgid)?.cwd.clone()
    }
    /// The path `tgid`'s open `fd` was opened by, if it was opened by path.
    pub(crate) fn path_of_fd(&self, tgid: u32, fd: i32) -> Option<Arc<str>> {
        let process = self.processes.get(&tgid)?;
        match fd_apply::fd_site(&self.history, process, fd)?.source {
            sites::FdSource::Path(ref path) => Some(path.clone()),
            _ => None,
        }
    }
    pub(crate) fn map_records(&self) -> &Records {
        &self.history.maps
    }
    /// Filesystem entries the traced processes created (released when removed).
    pub(crate) fn file_records(&self) -> &Records {
        &self.history.files
    }
    /// inotify watches and fanotify marks (released when removed or their fd closes).
    pub(crate) fn watch_records(&self) -> &Records {
        &self.history.watches
    }
    /// What the session found on disk of the live entries when tracing ended.
    /// `--heap`: a process's allocator totals at its marker, or read at a poll.
    pub(crate) fn note_heap_totals(
        &mut self,
        tgid: u32,
        time_ns: u64,
        heap: &crate::event::MarkerHeap,
    ) {
        let sample = |bytes| RssSample {
            time_ns,
            tgid,
            bytes,
        };
        self.history.alloc_bytes.push(sample(heap.live_bytes));
        self.history.alloc_counts.push(sample(heap.live_count));
        self.history
            .alloc_doubts
            .insert(tgid, (heap.missed_frees, heap.unrecorded));
    }

    /// `--heap`: live allocated bytes of each process at its markers.
    pub(crate) fn alloc_byte_samples(&self) -> &[RssSample] {
        &self.history.alloc_bytes
    }

    /// `--heap`: live allocations of each process at its markers.
    pub(crate) fn alloc_count_samples(&self) -> &[RssSample] {
        &self.history.alloc_counts
    }

    /// `--heap`: (missed frees, unrecorded allocations) summed over the processes, as of
    /// their latest markers.
    pub(crate) fn alloc_doubts(&self) -> (u64, u64) {
        self.history
            .alloc_doubts
            .values()
            .fold((0, 0), |(m, u), (dm, du)| (m + dm, u + du))
    }

    /// `--heap`: the kernel's heap maps as tracing ended.
    pub(crate) fn note_heap_snapshot(&mut self, snapshot: crate::heap::snapshot::HeapSnapshot) {
        self.heap_snapshot = Some(snapshot);
    }

    pub(crate) fn heap_snapshot(&self) -> Option<&crate::heap::snapshot::HeapSnapshot> {
        self.heap_snapshot.as_ref()
    }

    pub(crate) fn note_file_sizes(&mut self, sizes: crate::analysis::FileSizes) {
        self.file_sizes = sizes;
    }
    pub(crate) fn file_sizes(&self) -> &crate::analysis::FileSizes {
        &self.file_sizes
    }
    /// Every change of mapped bytes, in apply order (time order).
    pub(crate) fn map_byte_changes(&self) -> &[ByteChange] {
        &self.history.map_bytes
    }
    /// Every growth of a brk heap with its call site, in apply order.
    pub(crate) fn heap_growth(&self) -> &[HeapGrowth] {
        &self.history.heap_growth
    }
    /// Every change of brk heap bytes, in apply order.
    pub(crate) fn heap_byte_changes(&self) -> &[ByteChange] {
        &self.history.heap_bytes
    }
    /// The resident samples a boundary can read (superseded ones may be folded away).
    pub(crate) fn rss_samples(&self) -> &[RssSample] {
        &self.history.rss
    }
    /// Every resident sample taken, folded ones included.
    pub(crate) fn rss_samples_taken(&self) -> u64 {
        self.history.rss.len() as u64 + self.streaming.rss_folded
    }
    /// Every marker hit, when the marker's hits are not streamed (see
    /// [`Ledger::streamed_boundaries`]).
    pub(crate) fn markers(&self) -> &[u64] {
        &self.history.markers
    }
    pub(crate) fn opened_paths(&self) -> &[OpenedPath] {
        &self.history.opens
    }
    /// Successful calls by syscall name, plus "fork", "exec", "exit".
    pub(crate) fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.history.counts.iter().map(|(&k, &v)| (k, v)).collect()
    }
    /// Mapping records an mremap resized in place.
    pub(crate) fn resized_mappings(&self) -> &HashSet<RecordId> {
        &self.history.resized
    }
    /// Failed acquisitions, in apply order (time order).
    pub(crate) fn failed_acquisitions(&self) -> &[FailedAcquisition] {
        &self.history.failures
    }
    /// Closes of unknown fds and unmaps of unmapped ranges: counted, otherwise ignored.
    /// Fd deliveries (received control messages, pidfds written to user memory) whose fds
    /// could not be read: nonzero means fds may be missing from the ledger.
    pub(crate) fn unread_deliveries(&self) -> u64 {
        self.history.unread_deliveries
    }

    /// Children that shared their parent's fd table (clone with CLONE_FILES, not a thread).
    pub(crate) fn shared_fd_tables(&self) -> u64 {
        self.shared_fd_tables
    }

    /// Children that shared their parent's address space (clone with CLONE_VM, not a
    /// thread nor a vfork).
    pub(crate) fn shared_address_spaces(&self) -> u64 {
        self.shared_address_spaces
    }

    /// SysV shared memory segments attached (shmat) by the traced processes.
    pub(crate) fn shm_attachments(&self) -> &shm::ShmAttachments {
        &self.shm
    }

    /// io_urings and fd-reporting fanotify groups the traced processes created.
    pub(crate) fn unseen_fd_sources(&self) -> unseen_fds::UnseenFdSources {
        self.unseen_fd_sources
    }

    pub(crate) fn unknown_releases(&self) -> u64 {
        self.history.unknown_releases
    }
    /// pipe/pipe2/socketpair calls whose two fds the kernel could not read: their fds are
    /// missing from the tables (the kernel's drop counter reports them too).
    #[cfg(test)]
    pub(crate) fn unknown_fd_pairs(&self) -> u64 {
        self.history.unknown_fd_pairs
    }
    /// When process `tgid` exited, if it did.
    pub(crate) fn exit_time(&self, tgid: u32) -> Option<u64> {
        self.exits.get(&tgid).copied()
    }
    /// The span of process `tgid`: first event to exit (or the run's end if it lived on).
    pub(crate) fn process_span(&self, tgid: u32) -> Option<(u64, u64)> {
        let first = *self.first_seen.get(&tgid)?;
        let last = self.exit_time(tgid).or(self.span.map(|(_, end)| end))?;
        Some((first, last))
    }
    /// When process `tgid` exec'd, in time order (empty if it never did): each exec
    /// starts a new program image under the same tgid.
    pub(crate) fn exec_times(&self, tgid: u32) -> &[u64] {
        self.execs.get(&tgid).map_or(&[], Vec::as_slice)
    }
    /// The runs of the marked loop, by its markers.
    pub(crate) fn marker_runs(&self) -> Vec<LoopRun> {
        self.marker_runs.runs()
    }
    /// The runs of the marked loop, by the opens of the streamed `--iteration-path` paths.
    pub(crate) fn marking_open_runs(&self) -> Vec<LoopRun> {
        self.marking_open_runs.runs()
    }
    /// How many times `tgid` exec'd: the program image it runs now.
    pub(crate) fn image_of(&self, tgid: u32) -> u32 {
        self.exec_times(tgid).len() as u32
    }
    /// The process `tgid` was forked from, if traced.
    pub(crate) fn parent_of(&self, tgid: u32) -> Option<u32> {
        self.parents.get(&tgid).copied()
    }
    /// Every process exit seen, as (tgid, time).
    pub(crate) fn exits(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.exits.iter().map(|(&tgid, &t)| (tgid, t))
    }
    /// The first and last event times.
    pub(crate) fn span(&self) -> Option<(u64, u64)> {
        self.span
    }
    /// Fds open and ranges mapped right now, summed over the live processes (for a
    /// progress display: no allocation).
    pub(crate) fn live_totals(&self) -> (usize, usize) {
        self.processes
            .values()
            .fold((0, 0), |(fds, maps), process| {
                (
                    fds + process.fds.iter().count(),
                    maps + process.maps.pieces().count(),
                )
            })
    }
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod failure_tests;

#[cfg(test)]
mod fd_coverage;

#[cfg(test)]
mod received_tests;

#[cfg(test)]
pub(crate) mod file_tests;
