//! The ledger: every resource each traced process acquired and released, replayed from
//! the event stream.
//!
//! It keeps three kinds of facts:
//! - resource records (fds and mappings) with acquisition and release times, so the
//!   analysis can tell what was live at any iteration boundary;
//! - byte-change logs for mappings and the brk heap, so byte totals can be replayed too;
//! - raw series the iteration detector needs: markers, opened paths, rss samples.
//!
//! Fd tables and address spaces belong to a process (tgid), shared by its threads. The
//! ledger never looks at `tid` except to tell a thread's exit from its process's.

pub mod brk;
pub mod fd_calls;
pub mod fd_table;
pub mod holdings;
mod lifecycle;
pub mod map_calls;
pub mod mappings;
pub mod paths;
pub mod records;
pub mod sites;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::event::{Event, Syscall, What};
use crate::units;
use brk::Break;
use fd_calls::{AT_FDCWD, FdOp};
use fd_table::{FdEntry, FdTable};
use holdings::Holdings;
use map_calls::{MAP_ANONYMOUS, MAP_SHARED, MapOp};
use mappings::{Cut, MappingSet};
use records::{Cause, Origin, RecordId, Records};
use sites::{SiteId, Sites};

/// A change of mapped or heap bytes at a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteChange {
    pub time_ns: u64,
    pub bytes: i64,
    /// The mapping record it belongs to ([`NO_RECORD`] for the heap).
    pub record: RecordId,
}

pub const NO_RECORD: RecordId = RecordId::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RssSample {
    pub time_ns: u64,
    pub tgid: u32,
    pub bytes: u64,
}

/// A growth of the brk heap and the call site that asked for it (heap bytes have no
/// records to hang a site on, so growth is kept with its stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapGrowth {
    pub time_ns: u64,
    pub bytes: u64,
    pub site: SiteId,
}

/// A successful open of a path (the `--iteration-path` and auto-detection input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenedPath {
    pub time_ns: u64,
    pub path: SiteId,
    /// The process that opened it.
    pub tgid: u32,
}

/// The resource class a failed acquisition was after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClassKind {
    Fd,
    Mapping,
    Heap,
}

/// A call that would have acquired a resource and failed (see [`What::Failed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedAcquisition {
    pub time_ns: u64,
    pub tgid: u32,
    pub class: ClassKind,
    pub syscall: &'static str,
    /// Positive errno: EMFILE, ENFILE, ENOMEM, ...
    pub errno: i32,
}

/// What one process holds now.
#[derive(Clone, Debug, Default)]
struct Process {
    fds: FdTable,
    maps: MappingSet,
    heap: Break,
    cwd: Option<Arc<str>>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    processes: HashMap<u32, Process>,
    sites: Sites,
    fds: Records,
    maps: Records,
    map_bytes: Vec<ByteChange>,
    heap_bytes: Vec<ByteChange>,
    heap_growth: Vec<HeapGrowth>,
    rss: Vec<RssSample>,
    markers: Vec<u64>,
    opens: Vec<OpenedPath>,
    counts: BTreeMap<&'static str, u64>,
    failures: Vec<FailedAcquisition>,
    /// Mapping records an mremap resized in place (their site names the first size).
    resized: HashSet<RecordId>,
    unknown_releases: u64,
    unknown_fd_pairs: u64,
    unread_deliveries: u64,
    exits: HashMap<u32, u64>,
    span: Option<(u64, u64)>,
    /// When each process was first seen.
    first_seen: HashMap<u32, u64>,
    /// The process leakscope launched or attached to (see [`Ledger::begin`]).
    target: Option<u32>,
    /// When tracing began (CLOCK_MONOTONIC ns): what was held before starts here.
    traced_since_ns: u64,
    /// What processes held when they exited: the target, and every process that
    /// outlived it (see [`Ledger::outlived_target`]).
    final_holdings: BTreeMap<u32, Holdings>,
    /// When each process exec'd, in time order: a new program image starts there.
    execs: HashMap<u32, Vec<u64>>,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the working directory relative paths of `tgid` resolve against (unknown by
    /// default: relative paths then stay relative). Forks inherit it.
    pub fn set_cwd(&mut self, tgid: u32, path: &str) {
        self.processes.entry(tgid).or_default().cwd = Some(Arc::from(paths::normalize(path)));
    }

    /// Applies one event. Events must arrive in time order per process.
    pub fn apply(&mut self, event: &Event) {
        let (t, tgid) = (event.time_ns, event.tgid);
        self.span = Some(match self.span {
            None => (t, t),
            Some((first, last)) => (first.min(t), last.max(t)),
        });
        self.first_seen.entry(tgid).or_insert(t);
        if let Some(bytes) = event.rss_bytes {
            self.rss.push(RssSample {
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
                self.fork(tgid, *child, t);
            }
            What::Exec => {
                self.count("exec");
                self.execs.entry(tgid).or_default().push(t);
                self.exec(tgid, t);
            }
            // A thread's exit releases nothing: its process still holds the table. The
            // process is gone when its leader (tid == tgid) exits.
            What::Exit if event.tid == tgid => {
                self.count("exit");
                self.exit(tgid, t);
            }
            What::Exit => {}
            What::Marker { .. } => self.markers.push(t),
            What::Failed(failed) => {
                if let Some(class) = fd_calls::failure_class(failed.nr) {
                    self.failures.push(FailedAcquisition {
                        time_ns: t,
                        tgid,
                        class,
                        syscall: failed.name,
                        errno: failed.errno,
                    });
                }
            }
        }
    }

    fn count(&mut self, name: &'static str) {
        *self.counts.entry(name).or_default() += 1;
    }

    fn apply_syscall(&mut self, tgid: u32, t: u64, call: &Syscall) {
        if let Some(op) = fd_calls::decode(call) {
            self.apply_fd(tgid, t, op, call.name);
        } else if let Some(op) = map_calls::decode(call) {
            self.apply_map(tgid, t, op, call);
        }
    }

    fn apply_fd(&mut self, tgid: u32, t: u64, op: FdOp, syscall: &'static str) {
        let process = self.processes.entry(tgid).or_default();
        match op {
            FdOp::Open {
                fd,
                dirfd,
                path,
                cloexec,
            } => {
                let base = if path.starts_with('/') {
                    None
                } else if dirfd == AT_FDCWD {
                    process.cwd.as_deref().map(str::to_string)
                } else {
                    process
                        .fds
                        .get(dirfd)
                        .and_then(|entry| entry.path)
                        .map(|path| self.sites.name(path).to_string())
                };
                let site = self.sites.intern(&paths::resolve(&path, base.as_deref()));
                self.opens.push(OpenedPath {
                    time_ns: t,
                    path: site,
                    tgid,
                });
                install(
                    process,
                    &mut self.fds,
                    tgid,
                    fd,
                    site,
                    Some(site),
                    cloexec,
                    t,
                );
            }
            FdOp::New { fd, kind, cloexec } => {
                let site = self.sites.intern(&kind);
                install(process, &mut self.fds, tgid, fd, site, None, cloexec, t);
            }
            FdOp::Pair { fds, kind, cloexec } => {
                let site = self.sites.intern(kind);
                for fd in fds {
                    install(process, &mut self.fds, tgid, fd, site, None, cloexec, t);
                }
            }
            FdOp::PairUnknown => self.unknown_fd_pairs += 1,
            FdOp::Close { fd } => match process.fds.remove(fd) {
                Some(entry) => self.fds.release(entry.record, t, Cause::Explicit),
                None => self.unknown_releases += 1,
            },
            FdOp::CloseRange {
                first,
                last,
                cloexec_only: true,
            } => process.fds.mark_cloexec_range(first, last),
            FdOp::CloseRange {
                first,
                last,
                cloexec_only: false,
            } => {
                for entry in process.fds.remove_range(first, last) {
                    self.fds.release(entry.record, t, Cause::Explicit);
                }
            }
            // dup2(x, x) is a no-op: nothing is closed, nothing created.
            FdOp::Dup { old, new, .. } if old == new => {}
            FdOp::Dup { old, new, cloexec } => {
                // The copy's site says what it refers to and which call kept it: a leak
                // "kept by dup" is fixed somewhere else than one kept by the open.
                let (site, path) = match process.fds.get(old) {
                    Some(entry) => {
                        let original = entry.path.unwrap_or(self.fds.get(entry.record).site);
                        let name = self.sites.name(original);
                        let name = name.split(" (kept by ").next().unwrap_or(name);
                        (
                            self.sites.intern(&format!("{name} (kept by {syscall})")),
                            entry.path,
                        )
                    }
                    None => (self.sites.intern("dup of an fd from before tracing"), None),
                };
                install(process, &mut self.fds, tgid, new, site, path, cloexec, t);
            }
            FdOp::SetCloexec { fd, on } => {
                process.fds.set_cloexec(fd, on);
            }
            FdOp::Received { fds, unread } => {
                self.unread_deliveries += u64::from(unread);
                for received in fds {
                    let site = self.sites.intern(received.site);
                    install(
                        process,
                        &mut self.fds,
                        tgid,
                        received.fd,
                        site,
                        None,
                        received.cloexec,
                        t,
                    );
                }
            }
        }
    }

    fn apply_map(&mut self, tgid: u32, t: u64, op: MapOp, call: &Syscall) {
        let process = self.processes.entry(tgid).or_default();
        match op {
            MapOp::Map {
                start,
                len,
                prot,
                flags,
                fd,
            } => {
                let what = if flags & MAP_ANONYMOUS != 0 {
                    "anon".to_string()
                } else {
                    match process.fds.get(fd) {
                        Some(entry) => {
                            let named = entry.path.unwrap_or(self.fds.get(entry.record).site);
                            self.sites.name(named).to_string()
                        }
                        None => format!("file (fd {fd})"),
                    }
                };
                let sharing = if flags & MAP_SHARED != 0 {
                    "shared"
                } else {
                    "private"
                };
                let name = format!(
                    "{what} {} {} {sharing}{}",
                    units::bytes(len as f64),
                    map_calls::prot_text(prot),
                    frames_suffix(call)
                );
                let site = self.sites.intern(&name);
                let range = Range {
                    tgid,
                    start,
                    len,
                    site,
                };
                map_over(
                    process,
                    &mut self.maps,
                    &mut self.map_bytes,
                    range,
                    Origin::Acquired,
                    t,
                );
            }
            MapOp::Unmap { start, len } => {
                if unmap(
                    process,
                    &mut self.maps,
                    &mut self.map_bytes,
                    start,
                    len,
                    t,
                    Cause::Explicit,
                ) == 0
                {
                    self.unknown_releases += 1;
                }
            }
            MapOp::Remap {
                old,
                old_len,
                new,
                new_len,
                keep_old,
            } => {
                let source = process.maps.record_at(old);
                match source {
                    // An in-place resize or a move: the same resource, still live, so its
                    // acquisition time (and lifetime) carries over.
                    Some(record) if !keep_old && old_len > 0 => {
                        if new_len != old_len {
                            self.resized.insert(record);
                        }
                        let mut cuts = process.maps.remove(old, old_len);
                        cuts.extend(process.maps.remove(new, new_len));
                        log_cuts(&mut self.map_bytes, &cuts, t);
                        map(process, &mut self.map_bytes, new, new_len, record, t);
                        for gone in process
                            .maps
                            .collect_empty(cuts.iter().map(|cut| cut.record))
                        {
                            self.maps.release(gone, t, Cause::Implicit);
                        }
                    }
                    // MREMAP_DONTUNMAP or old_len 0 leave the old range mapped: the new range
                    // is a new resource of the same site.
                    _ => {
                        let site = match source {
                            Some(record) => self.maps.get(record).site,
                            None => {
                                self.unknown_releases += 1;
                                self.sites.intern("mremap of a mapping from before tracing")
                            }
                        };
                        let range = Range {
                            tgid,
                            start: new,
                            len: new_len,
                            site,
                        };
                        map_over(
                            process,
                            &mut self.maps,
                            &mut self.map_bytes,
                            range,
                            Origin::Acquired,
                            t,
                        );
                    }
                }
            }
            MapOp::Brk {
                requested,
                new_break,
            } => {
                // brk never returns an error: when it cannot grow (RLIMIT_DATA, no memory)
                // it returns the old break. That is the heap's ENOMEM.
                if requested != 0 && new_break < requested {
                    self.failures.push(FailedAcquisition {
                        time_ns: t,
                        tgid,
                        class: ClassKind::Heap,
                        syscall: call.name,
                        errno: nix::errno::Errno::ENOMEM as i32,
                    });
                }
                let delta = process.heap.update(new_break);
                if delta != 0 {
                    self.heap_bytes.push(ByteChange {
                        time_ns: t,
                        bytes: delta,
                        record: NO_RECORD,
                    });
                }
                if delta > 0 {
                    let site = self.sites.intern(&format!("brk{}", frames_suffix(call)));
                    self.heap_growth.push(HeapGrowth {
                        time_ns: t,
                        bytes: delta as u64,
                        site,
                    });
                }
            }
        }
    }

    // ---- read access for the analysis ----

    pub fn sites(&self) -> &Sites {
        &self.sites
    }
    pub fn fd_records(&self) -> &Records {
        &self.fds
    }
    pub fn map_records(&self) -> &Records {
        &self.maps
    }
    /// Every change of mapped bytes, in apply order (time order).
    pub fn map_byte_changes(&self) -> &[ByteChange] {
        &self.map_bytes
    }
    /// Every growth of a brk heap with its call site, in apply order.
    pub fn heap_growth(&self) -> &[HeapGrowth] {
        &self.heap_growth
    }
    /// Every change of brk heap bytes, in apply order.
    pub fn heap_byte_changes(&self) -> &[ByteChange] {
        &self.heap_bytes
    }
    pub fn rss_samples(&self) -> &[RssSample] {
        &self.rss
    }
    pub fn markers(&self) -> &[u64] {
        &self.markers
    }
    pub fn opened_paths(&self) -> &[OpenedPath] {
        &self.opens
    }
    /// Successful calls by syscall name, plus "fork", "exec", "exit".
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }
    /// Mapping records an mremap resized in place.
    pub fn resized_mappings(&self) -> &HashSet<RecordId> {
        &self.resized
    }
    /// Failed acquisitions, in apply order (time order).
    pub fn failed_acquisitions(&self) -> &[FailedAcquisition] {
        &self.failures
    }
    /// Closes of unknown fds and unmaps of unmapped ranges: counted, otherwise ignored.
    /// Fd deliveries (received control messages, pidfds written to user memory) whose fds
    /// could not be read: nonzero means fds may be missing from the ledger.
    pub fn unread_deliveries(&self) -> u64 {
        self.unread_deliveries
    }

    pub fn unknown_releases(&self) -> u64 {
        self.unknown_releases
    }
    /// pipe/pipe2/socketpair calls whose two fds the kernel could not read: their fds are
    /// missing from the tables (the kernel's drop counter reports them too).
    pub fn unknown_fd_pairs(&self) -> u64 {
        self.unknown_fd_pairs
    }
    /// When process `tgid` exited, if it did.
    pub fn exit_time(&self, tgid: u32) -> Option<u64> {
        self.exits.get(&tgid).copied()
    }
    /// The span of process `tgid`: first event to exit (or the run's end if it lived on).
    pub fn process_span(&self, tgid: u32) -> Option<(u64, u64)> {
        let first = *self.first_seen.get(&tgid)?;
        let last = self.exit_time(tgid).or(self.span.map(|(_, end)| end))?;
        Some((first, last))
    }
    /// When process `tgid` exec'd, in time order (empty if it never did): each exec
    /// starts a new program image under the same tgid.
    pub fn exec_times(&self, tgid: u32) -> &[u64] {
        self.execs.get(&tgid).map_or(&[], Vec::as_slice)
    }
    /// Every process exit seen, as (tgid, time).
    pub fn exits(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.exits.iter().map(|(&tgid, &t)| (tgid, t))
    }
    /// The first and last event times.
    pub fn span(&self) -> Option<(u64, u64)> {
        self.span
    }
    /// Fds open and ranges mapped right now, summed over the live processes (for a
    /// progress display: no allocation).
    pub fn live_totals(&self) -> (usize, usize) {
        self.processes
            .values()
            .fold((0, 0), |(fds, maps), process| {
                (
                    fds + process.fds.iter().count(),
                    maps + process.maps.pieces().count(),
                )
            })
    }
    /// Open fds of a live process, by number, with their site names (for tests and
    /// debugging).
    pub fn open_fds(&self, tgid: u32) -> Vec<(i32, &str)> {
        self.processes.get(&tgid).map_or_else(Vec::new, |process| {
            process
                .fds
                .iter()
                .map(|(fd, entry)| (fd, self.sites.name(self.fds.get(entry.record).site)))
                .collect()
        })
    }
    /// Whether `fd` of `tgid` is open and CLOEXEC.
    pub fn is_cloexec(&self, tgid: u32, fd: i32) -> Option<bool> {
        self.processes
            .get(&tgid)?
            .fds
            .get(fd)
            .map(|entry| entry.cloexec)
    }
    /// Mapped ranges of a live process: (start, len, site name).
    pub fn mapped_ranges(&self, tgid: u32) -> Vec<(u64, u64, &str)> {
        self.processes.get(&tgid).map_or_else(Vec::new, |process| {
            process
                .maps
                .pieces()
                .map(|(start, len, record)| {
                    (start, len, self.sites.name(self.maps.get(record).site))
                })
                .collect()
        })
    }
    /// Heap bytes of a live process above its first break.
    pub fn heap_bytes(&self, tgid: u32) -> i64 {
        self.processes
            .get(&tgid)
            .map_or(0, |process| process.heap.heap_bytes())
    }
}

/// Installs a new fd, releasing whatever the number held (dup2/dup3's implicit close).
#[allow(clippy::too_many_arguments)]
fn install(
    process: &mut Process,
    records: &mut Records,
    tgid: u32,
    fd: i32,
    site: SiteId,
    path: Option<SiteId>,
    cloexec: bool,
    t: u64,
) {
    let record = records.add(tgid, site, Origin::Acquired, t, t);
    if let Some(displaced) = process.fds.insert(
        fd,
        FdEntry {
            record,
            cloexec,
            path,
        },
    ) {
        records.release(displaced.record, t, Cause::Implicit);
    }
}

fn map(
    process: &mut Process,
    log: &mut Vec<ByteChange>,
    start: u64,
    len: u64,
    record: RecordId,
    t: u64,
) {
    if len > 0 {
        process.maps.insert(start, len, record);
        log.push(ByteChange {
            time_ns: t,
            bytes: len as i64,
            record,
        });
    }
}

/// A new mapping record over `[start, start + len)` of process `tgid`.
struct Range {
    tgid: u32,
    start: u64,
    len: u64,
    site: SiteId,
}

/// Maps `range` as a new record at `t`, first releasing whatever it overlays (MAP_FIXED
/// semantics; seeded ranges and moved-to ranges enter the same way).
fn map_over(
    process: &mut Process,
    records: &mut Records,
    map_bytes: &mut Vec<ByteChange>,
    range: Range,
    origin: Origin,
    t: u64,
) {
    let Range {
        tgid,
        start,
        len,
        site,
    } = range;
    unmap(process, records, map_bytes, start, len, t, Cause::Implicit);
    let record = records.add(tgid, site, origin, t, t);
    map(process, map_bytes, start, len, record, t);
}

/// Unmaps a range; records left with no bytes are released with `cause`. Returns the
/// bytes unmapped.
fn unmap(
    process: &mut Process,
    records: &mut Records,
    log: &mut Vec<ByteChange>,
    start: u64,
    len: u64,
    t: u64,
    cause: Cause,
) -> u64 {
    let cuts = process.maps.remove(start, len);
    log_cuts(log, &cuts, t);
    for gone in process
        .maps
        .collect_empty(cuts.iter().map(|cut| cut.record))
    {
        records.release(gone, t, cause);
    }
    cuts.iter().map(|cut| cut.bytes).sum()
}

fn log_cuts(log: &mut Vec<ByteChange>, cuts: &[Cut], t: u64) {
    log.extend(cuts.iter().map(|cut| ByteChange {
        time_ns: t,
        bytes: -(cut.bytes as i64),
        record: cut.record,
    }));
}

fn drop_address_space(
    process: &mut Process,
    records: &mut Records,
    map_log: &mut Vec<ByteChange>,
    heap_log: &mut Vec<ByteChange>,
    t: u64,
    cause: Cause,
) {
    let cuts = process.maps.take_all();
    log_cuts(map_log, &cuts, t);
    for cut in cuts {
        records.release(cut.record, t, cause);
    }
    let heap = process.heap.heap_bytes();
    if heap != 0 {
        heap_log.push(ByteChange {
            time_ns: t,
            bytes: -heap,
            record: NO_RECORD,
        });
    }
    process.heap = Break::default();
}

/// " ← f ← g ← h" for the innermost frames of a mapping call, when symbolized.
fn frames_suffix(call: &Syscall) -> String {
    const SHOWN: usize = 3;
    match &call.frames {
        Some(frames) if !frames.is_empty() => frames
            .iter()
            .take(SHOWN)
            .map(|frame| format!(" ← {frame}"))
            .collect(),
        _ => String::new(),
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
