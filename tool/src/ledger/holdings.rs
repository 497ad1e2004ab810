//! What one process holds at a moment: its open fds (by number) and its mappings (by
//! record, bytes summed over the pieces). Kept for the target at its exit, for every
//! process that outlived it, and computed on demand for processes still alive, so the
//! report can say what a one-shot program held at exit (valgrind's `--track-fds`) and what
//! each surviving process (a daemon) holds at the end.

use std::collections::BTreeMap;

use super::Process;
use super::history::History;
use super::records::{Origin, RecordId};
use super::sites::SiteId;

/// An open fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldFd {
    pub(crate) fd: i32,
    pub(crate) site: SiteId,
    /// The process did not open it itself: it was there before tracing (stdio across
    /// the target's exec, or what an attached process already held) or came with a fork.
    pub(crate) inherited: bool,
}

/// A mapping (all live pieces of one mapping record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldMapping {
    pub(crate) site: SiteId,
    pub(crate) bytes: u64,
    pub(crate) inherited: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holdings {
    pub(crate) tgid: u32,
    /// By fd number.
    pub(crate) fds: Vec<HeldFd>,
    /// Most bytes first.
    pub(crate) mappings: Vec<HeldMapping>,
    /// brk heap bytes above the first break seen.
    pub(crate) heap_bytes: i64,
    /// When the process exited; `None` while it lives.
    pub(crate) exited_ns: Option<u64>,
}

impl Holdings {
    pub(crate) fn mapped_bytes(&self) -> u64 {
        self.mappings.iter().map(|m| m.bytes).sum()
    }

    pub(super) fn of(
        tgid: u32,
        process: &Process,
        history: &History,
        exited_ns: Option<u64>,
    ) -> Self {
        let (fd_records, map_records) = (&history.fds, &history.maps);
        let inherited = |origin: Origin| origin != Origin::Acquired;
        let fds = process
            .fds
            .iter()
            .map(|(fd, entry)| {
                let record = fd_records.get(entry.record);
                HeldFd {
                    fd,
                    site: record.site,
                    inherited: inherited(record.origin),
                }
            })
            .collect();
        let mut bytes: BTreeMap<RecordId, u64> = BTreeMap::new();
        for (_, len, record) in process.maps.pieces() {
            *bytes.entry(record).or_default() += len;
        }
        let mut mappings: Vec<HeldMapping> = bytes
            .into_iter()
            .map(|(id, bytes)| {
                let record = map_records.get(id);
                HeldMapping {
                    site: record.site,
                    bytes,
                    inherited: inherited(record.origin),
                }
            })
            .collect();
        mappings.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.site.cmp(&b.site)));
        Holdings {
            tgid,
            fds,
            mappings,
            heap_bytes: process.heap.heap_bytes(),
            exited_ns,
        }
    }
}
