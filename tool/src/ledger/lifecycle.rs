//! A process's life in the ledger: what it held when tracing began (seeded), fork, exec
//! and exit, and what it held at its end.

use std::collections::HashMap;
use std::sync::Arc;

use procfs::process::{FDTarget, MMapPath};

use super::history::{NewFd, Range, Unmapping};
use super::holdings::Holdings;
use super::records::{Acquisition, Cause, Origin, RecordId};
use super::sites::{FdKind, SiteKey};
use super::{ByteChange, Ledger, NO_RECORD, mappings, paths};

impl Ledger {
    /// Tracing of `target` (the launched or attached process) begins at `since_ns`
    /// (CLOCK_MONOTONIC, the clock of the events). Resources seeded afterwards start
    /// there: they were acquired at some unknown earlier time, and a lifetime measured from
    /// time 0 would be the machine's uptime.
    pub(crate) fn begin(&mut self, target: u32, since_ns: u64) {
        self.target = Some(target);
        self.traced_since_ns = since_ns;
    }

    /// The process leakscope launched or attached to.
    pub(crate) fn target(&self) -> Option<u32> {
        self.target
    }

    /// Records an fd that existed before tracing (live from [`Ledger::begin`]'s time), from
    /// what its `/proc/PID/fd/N` link points to.
    pub(crate) fn seed_fd(&mut self, tgid: u32, fd: i32, link: &FDTarget, cloexec: bool) {
        let site = self.history.sites.intern(proc_link_site(link));
        let process = self.processes.entry(tgid).or_default();
        let new = NewFd {
            tgid,
            fd,
            site,
            cloexec,
            origin: Origin::Seeded,
            t: self.traced_since_ns,
        };
        self.history.install(process, new);
    }

    /// Records a mapping that existed before tracing (from `/proc/PID/maps`).
    pub(crate) fn seed_mapping(&mut self, tgid: u32, start: u64, len: u64, description: &MMapPath) {
        let len = mappings::page_round(len);
        let key = SiteKey::SeededMapping(description.into());
        let site = self.history.sites.intern(key);
        let process = self.processes.entry(tgid).or_default();
        let range = Range {
            tgid,
            start,
            len,
            site,
        };
        let since = (Origin::Seeded, self.traced_since_ns);
        self.history.map_over(process, range, since);
    }

    /// Records the break of a process that existed before tracing; heap growth is
    /// measured from it.
    #[cfg(test)]
    pub(crate) fn seed_brk(&mut self, tgid: u32, brk: u64) {
        self.processes.entry(tgid).or_default().heap = crate::ledger::brk::Break::seeded(brk);
    }

    /// The child starts with a copy of the parent's fds, mappings, heap and cwd. Each copy
    /// is a new table entry that starts at the fork: its lifetime is how long the child
    /// held it (and a copy of a resource from before tracing never gets a lifetime longer
    /// than the run).
    pub(super) fn fork(&mut self, parent: u32, child: u32, t: u64) {
        self.watches.forked(&mut self.history, parent, child, t);
        let Some(source) = self.processes.get(&parent).cloned() else {
            self.processes.entry(child).or_default();
            return;
        };
        let target = self.processes.entry(child).or_default();
        let history = &mut self.history;
        for (fd, entry) in source.fds.iter() {
            let original = *history.fds.get(entry.record);
            let copy = NewFd {
                tgid: child,
                fd,
                site: original.site,
                cloexec: entry.cloexec,
                origin: Origin::ForkCopy,
                t,
            };
            history.install(target, copy);
        }
        let mut copies: HashMap<RecordId, RecordId> = HashMap::new();
        for (start, len, parent_record) in source.maps.pieces() {
            let record = *copies.entry(parent_record).or_insert_with(|| {
                let original = *history.maps.get(parent_record);
                // The copy is live in the child from the fork; its resource is as old as
                // the parent's.
                let copy = Acquisition {
                    origin: Origin::ForkCopy,
                    origin_ns: original.origin_ns,
                    born_ns: t,
                };
                history.maps.add(child, original.site, copy)
            });
            let cause = Cause::Implicit;
            history.unmap(
                target,
                Unmapping {
                    start,
                    len,
                    t,
                    cause,
                },
            );
            history.map(target, (start, len, record), t);
        }
        let heap = source.heap.heap_bytes();
        if heap != 0 {
            history.heap_bytes.push(ByteChange {
                time_ns: t,
                bytes: heap,
                record: NO_RECORD,
            });
        }
        target.heap = source.heap;
        if target.cwd.is_none() {
            target.cwd = source.cwd;
        }
    }

    /// Exec closes the CLOEXEC fds and replaces the whole address space and heap.
    pub(super) fn exec(&mut self, tgid: u32, t: u64) {
        let process = self.processes.entry(tgid).or_default();
        for entry in process.fds.take_cloexec() {
            self.history.fds.release(entry.record, t, Cause::Exec);
        }
        let fds = &process.fds;
        self.watches
            .exec(&mut self.history, (tgid, t), |fd| fds.get(fd).is_some());
        self.history.drop_address_space(process, t, Cause::Exec);
    }

    /// Releases everything the process held. What the target held, and what every
    /// process that outlived it held, is kept for the report first.
    pub(super) fn exit(&mut self, tgid: u32, t: u64) {
        if let Some(mut process) = self.processes.remove(&tgid) {
            if self.keeps_final_holdings(tgid) {
                let held = Holdings::of(tgid, &process, &self.history, Some(t));
                self.final_holdings.insert(tgid, held);
            }
            for entry in process.fds.take_all() {
                self.history.fds.release(entry.record, t, Cause::Exit);
            }
            self.history
                .drop_address_space(&mut process, t, Cause::Exit);
        }
        // Watches go with the process's fds (even one the ledger held no table for).
        let every_fd = (i32::MIN, i32::MAX);
        self.watches
            .fds_closed(&mut self.history, (tgid, t), every_fd, Cause::Exit);
        self.exits.insert(tgid, t);
    }

    /// The target's exit is kept, and so is the exit of every process after it.
    fn keeps_final_holdings(&self, tgid: u32) -> bool {
        self.target
            .is_some_and(|target| target == tgid || self.exits.contains_key(&target))
    }

    /// What `tgid` holds now, or held when it exited (kept only for the target and the
    /// processes that outlived it).
    pub(crate) fn holdings(&self, tgid: u32) -> Option<Holdings> {
        match self.processes.get(&tgid) {
            Some(process) => Some(Holdings::of(tgid, process, &self.history, None)),
            None => self.final_holdings.get(&tgid).cloned(),
        }
    }

    /// The processes that were still alive when the target exited (a daemon after a double
    /// fork, a child left running), by pid, each with what it held at its own exit or holds
    /// now. Empty while the target lives.
    pub(crate) fn outlived_target(&self) -> Vec<Holdings> {
        let Some(target) = self.target.filter(|t| self.exits.contains_key(t)) else {
            return Vec::new();
        };
        let mut outlived: Vec<Holdings> = self
            .final_holdings
            .values()
            .filter(|held| held.tgid != target)
            .cloned()
            .chain(
                self.processes
                    .iter()
                    .map(|(&tgid, process)| Holdings::of(tgid, process, &self.history, None)),
            )
            .collect();
        outlived.sort_by_key(|held| held.tgid);
        outlived
    }
}

/// The site a `/proc/PID/fd` link names, the same a traced fd of that kind gets, so a
/// seeded socket and a traced one group together.
fn proc_link_site(link: &FDTarget) -> SiteKey {
    let text = |s: &str| Arc::from(s);
    match link {
        FDTarget::Path(path) => SiteKey::fd_path(&paths::normalize(&path.to_string_lossy())),
        FDTarget::Socket(_) => SiteKey::fd_kind(FdKind::Socket),
        FDTarget::Pipe(_) => SiteKey::fd_kind(FdKind::Pipe),
        // "anon_inode:[eventfd]" and "anon_inode:inotify" alike.
        FDTarget::AnonInode(name) => {
            SiteKey::fd_kind(FdKind::anon(name.trim_matches(|c| c == '[' || c == ']')))
        }
        FDTarget::MemFD(name) => {
            SiteKey::fd_kind(FdKind::Memfd(text(name.trim_end_matches(" (deleted)"))))
        }
        FDTarget::Net(inode) => SiteKey::fd_kind(FdKind::ProcInode {
            kind: text("net"),
            inode: *inode,
        }),
        FDTarget::Other(kind, inode) => SiteKey::fd_kind(FdKind::ProcInode {
            kind: text(kind),
            inode: *inode,
        }),
        FDTarget::Unknown(kind, detail) => SiteKey::fd_kind(FdKind::ProcLink {
            kind: text(kind),
            detail: text(detail),
        }),
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
