//! Applying a decoded mapping or brk call ([`MapOp`]) to a process's address space and
//! the history.

use super::fd_apply::fd_site;
use super::history::{History, Range, Unmapping};
use super::map_calls::{MAP_ANONYMOUS, MAP_SHARED, MapOp};
use super::records::{Cause, Origin, RecordId};
use super::sites::{Backing, FdSite, FdSource, MappingSite, SiteKey};
use super::{ByteChange, ClassKind, FailedAcquisition, HeapGrowth, Ledger, NO_RECORD, Process};
use crate::event::Syscall;

impl Ledger {
    pub(super) fn apply_map(&mut self, tgid: u32, t: u64, op: MapOp, call: &Syscall) {
        let process = self.processes.entry(tgid).or_default();
        let history = &mut self.history;
        match op {
            MapOp::Map {
                start,
                len,
                prot,
                flags,
                fd,
            } => {
                let backing = if flags & MAP_ANONYMOUS != 0 {
                    Backing::Anon
                } else {
                    backing_of(history, process, fd)
                };
                let key = SiteKey::Mapping(MappingSite {
                    backing,
                    len,
                    prot,
                    shared: flags & MAP_SHARED != 0,
                    stack: history.sites.intern_stack(call.frames.as_deref()),
                });
                let site = history.sites.intern(key);
                let range = Range {
                    tgid,
                    start,
                    len,
                    site,
                };
                history.map_over(process, range, (Origin::Acquired, t));
            }
            MapOp::Unmap { start, len } => {
                let cause = Cause::Explicit;
                if history.unmap(
                    process,
                    Unmapping {
                        start,
                        len,
                        t,
                        cause,
                    },
                ) == 0
                {
                    history.unknown_releases += 1;
                }
            }
            MapOp::Remap {
                old,
                old_len,
                new,
                new_len,
                keep_old,
            } => match process.maps.record_at(old) {
                // An in-place resize or a move: the same resource, still live, so its
                // acquisition time (and lifetime) carries over.
                Some(record) if !keep_old && old_len > 0 => {
                    if new_len != old_len {
                        history.resized.insert(record);
                    }
                    let moved = Move {
                        old: (old, old_len),
                        new: (new, new_len),
                        record,
                    };
                    move_mapping(history, process, moved, t);
                }
                // MREMAP_DONTUNMAP or old_len 0 leave the old range mapped: the new range
                // is a new resource of the same site.
                source => {
                    let site = match source {
                        Some(record) => history.maps.get(record).site,
                        None => {
                            history.unknown_releases += 1;
                            history.sites.intern(SiteKey::RemapOfUntracked)
                        }
                    };
                    let range = Range {
                        tgid,
                        start: new,
                        len: new_len,
                        site,
                    };
                    history.map_over(process, range, (Origin::Acquired, t));
                }
            },
            MapOp::Brk {
                requested,
                new_break,
            } => {
                // brk never returns an error: when it cannot grow (RLIMIT_DATA, no memory)
                // it returns the old break. That is the heap's ENOMEM.
                if requested != 0 && new_break < requested {
                    history.failures.push(FailedAcquisition {
                        time_ns: t,
                        tgid,
                        class: ClassKind::Heap,
                        syscall: call.name,
                        errno: nix::errno::Errno::ENOMEM as i32,
                    });
                }
                let delta = process.heap.update(new_break);
                if delta != 0 {
                    history.heap_bytes.push(ByteChange {
                        time_ns: t,
                        bytes: delta,
                        record: NO_RECORD,
                    });
                }
                if delta > 0 {
                    let stack = history.sites.intern_stack(call.frames.as_deref());
                    let site = history.sites.intern(SiteKey::Brk { stack });
                    history.heap_growth.push(HeapGrowth {
                        time_ns: t,
                        bytes: delta as u64,
                        site,
                    });
                }
            }
        }
    }
}

/// What a file mapping maps: the fd's path (without the dup that kept it), or its whole
/// site when it has no path.
fn backing_of(history: &History, process: &Process, fd: i32) -> Backing {
    match fd_site(history, process, fd) {
        Some(FdSite {
            source: FdSource::Path(path),
            ..
        }) => Backing::Fd(FdSite {
            source: FdSource::Path(path.clone()),
            kept_by: None,
            stack: None,
        }),
        // The mapping has its own stack: the open's would split its site for nothing.
        Some(site) => Backing::Fd(FdSite {
            stack: None,
            ..site.clone()
        }),
        None => Backing::UnknownFd(fd),
    }
}

/// An mremap that resizes or moves `record` from `old` to `new` (start, len).
struct Move {
    old: (u64, u64),
    new: (u64, u64),
    record: RecordId,
}

fn move_mapping(history: &mut History, process: &mut Process, moved: Move, t: u64) {
    let Move { old, new, record } = moved;
    let mut cuts = process.maps.remove(old.0, old.1);
    cuts.extend(process.maps.remove(new.0, new.1));
    history.log_cuts(&cuts, t);
    history.map(process, (new.0, new.1, record), t);
    for gone in process
        .maps
        .collect_empty(cuts.iter().map(|cut| cut.record))
    {
        history.maps.release(gone, t, Cause::Implicit);
    }
}
