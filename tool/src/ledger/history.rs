//! What the ledger records, apart from what each process holds now: resource records,
//! byte-change logs, opened paths, counts. The helpers here change one process's tables
//! (passed in) and write what happened into the history, so a process borrowed out of the
//! ledger's map and the history never need to be borrowed together by a free function.

use std::collections::HashSet;

use super::brk::Break;
use super::fd_table::FdEntry;
use super::mappings::Cut;
use super::records::{Acquisition, Cause, Origin, RecordId, Records};
use super::sites::{SiteId, Sites};
use super::{ByteChange, FailedAcquisition, HeapGrowth, NO_RECORD, OpenedPath, Process, RssSample};

#[derive(Clone, Debug, Default)]
pub(super) struct History {
    pub(crate) sites: Sites,
    pub(crate) fds: Records,
    pub(crate) maps: Records,
    pub(crate) files: Records,
    pub(crate) watches: Records,
    pub(crate) map_bytes: Vec<ByteChange>,
    pub(crate) heap_bytes: Vec<ByteChange>,
    pub(crate) heap_growth: Vec<HeapGrowth>,
    pub(crate) rss: Vec<RssSample>,
    /// `--heap`: live allocated bytes and allocations of a process at its markers.
    pub(crate) alloc_bytes: Vec<RssSample>,
    pub(crate) alloc_counts: Vec<RssSample>,
    /// `--heap`: the latest marker's missed frees and unrecorded allocations, by process.
    pub(crate) alloc_doubts: std::collections::BTreeMap<u32, (u64, u64)>,
    pub(crate) markers: Vec<u64>,
    pub(crate) opens: Vec<OpenedPath>,
    /// By name; a hash map, since every event counts once (the report sorts them).
    pub(crate) counts: foldhash::HashMap<&'static str, u64>,
    pub(crate) failures: Vec<FailedAcquisition>,
    /// Mapping records an mremap resized in place (their site names the first size).
    pub(crate) resized: HashSet<RecordId>,
    pub(crate) unknown_releases: u64,
    pub(crate) unknown_fd_pairs: u64,
    pub(crate) unread_deliveries: u64,
    /// Sizes of live entries sampled during the run.
    pub(crate) file_size_samples: Vec<super::SizeSample>,
    /// Name patterns of entry and watch sites, grouped over the run.
    pub(crate) names: super::name_pattern::Grouping,
    /// Renames whose new name was not captured (the entry left the files map).
    pub(crate) unknown_renames: u64,
    /// See [`super::Ledger::unknown_creations`].
    pub(crate) unknown_creations: u64,
}

/// A new fd record: `fd` of process `tgid` from `site`, acquired at `t`.
pub(super) struct NewFd {
    pub(crate) tgid: u32,
    pub(crate) fd: i32,
    pub(crate) site: SiteId,
    pub(crate) cloexec: bool,
    pub(crate) origin: Origin,
    pub(crate) t: u64,
}

/// A new mapping record over `[start, start + len)` of process `tgid`.
pub(super) struct Range {
    pub(crate) tgid: u32,
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) site: SiteId,
}

/// `[start, start + len)` unmapped at `t`; records left empty are released with `cause`.
pub(super) struct Unmapping {
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) t: u64,
    pub(crate) cause: Cause,
}

impl History {
    pub(crate) fn count(&mut self, name: &'static str) {
        *self.counts.entry(name).or_default() += 1;
    }

    /// Installs a new fd, releasing whatever the number held (dup2/dup3's implicit close).
    pub(crate) fn install(&mut self, process: &mut Process, new: NewFd) {
        let acquired = Acquisition::at(new.origin, new.t);
        let record = self.fds.add(new.tgid, new.site, acquired);
        let entry = FdEntry {
            record,
            cloexec: new.cloexec,
        };
        if let Some(displaced) = process.fds.insert(new.fd, entry) {
            self.fds.release(displaced.record, new.t, Cause::Implicit);
        }
    }

    /// Maps `[start, start + len)` for an existing `record` at `t`.
    pub(crate) fn map(&mut self, process: &mut Process, piece: (u64, u64, RecordId), t: u64) {
        let (start, len, record) = piece;
        if len > 0 {
            process.maps.insert(start, len, record);
            self.map_bytes.push(ByteChange {
                time_ns: t,
                bytes: len as i64,
                record,
            });
        }
    }

    /// Maps `range` as a new record at `t`, first releasing whatever it overlays (MAP_FIXED
    /// semantics; seeded ranges and moved-to ranges enter the same way).
    pub(crate) fn map_over(
        &mut self,
        process: &mut Process,
        range: Range,
        (origin, t): (Origin, u64),
    ) {
        let Range {
            tgid,
            start,
            len,
            site,
        } = range;
        let cause = Cause::Implicit;
        self.unmap(
            process,
            Unmapping {
                start,
                len,
                t,
                cause,
            },
        );
        let record = self.maps.add(tgid, site, Acquisition::at(origin, t));
        self.map(process, (start, len, record), t);
    }

    /// Unmaps a range; records left with no bytes are released. Returns the bytes unmapped.
    pub(crate) fn unmap(&mut self, process: &mut Process, unmapping: Unmapping) -> u64 {
        let Unmapping {
            start,
            len,
            t,
            cause,
        } = unmapping;
        let cuts = process.maps.remove(start, len);
        self.log_cuts(&cuts, t);
        for gone in process
            .maps
            .collect_empty(cuts.iter().map(|cut| cut.record))
        {
            self.maps.release(gone, t, cause);
        }
        cuts.iter().map(|cut| cut.bytes).sum()
    }

    pub(crate) fn log_cuts(&mut self, cuts: &[Cut], t: u64) {
        self.map_bytes.extend(cuts.iter().map(|cut| ByteChange {
            time_ns: t,
            bytes: -(cut.bytes as i64),
            record: cut.record,
        }));
    }

    /// Exec and exit: every mapping and the heap go.
    pub(crate) fn drop_address_space(&mut self, process: &mut Process, t: u64, cause: Cause) {
        let cuts = process.maps.take_all();
        self.log_cuts(&cuts, t);
        for cut in cuts {
            self.maps.release(cut.record, t, cause);
        }
        let heap = process.heap.heap_bytes();
        if heap != 0 {
            self.heap_bytes.push(ByteChange {
                time_ns: t,
                bytes: -heap,
                record: NO_RECORD,
            });
        }
        process.heap = Break::default();
    }
}
