//! A process's life in the ledger: what it held when tracing began (seeded), fork, exec
//! and exit, and what it held at its end.

use std::collections::HashMap;

use super::holdings::Holdings;
use super::records::{Cause, Origin, RecordId};
use super::{
    ByteChange, FdEntry, Ledger, NO_RECORD, Range, drop_address_space, map, map_over, mappings,
    paths, unmap,
};
use crate::ledger::brk::Break;

impl Ledger {
    /// Tracing of `target` (the launched or attached process) begins at `since_ns`
    /// (CLOCK_MONOTONIC, the clock of the events). Resources seeded afterwards start
    /// there: they were acquired at some unknown earlier time, and a lifetime measured from
    /// time 0 would be the machine's uptime.
    pub fn begin(&mut self, target: u32, since_ns: u64) {
        self.target = Some(target);
        self.traced_since_ns = since_ns;
    }

    /// The process leakscope launched or attached to.
    pub fn target(&self) -> Option<u32> {
        self.target
    }

    /// Records an fd that existed before tracing (live from [`Ledger::begin`]'s time). `description` is a path or what
    /// `/proc/PID/fd/N` links to ("socket:[123]", "pipe:[4]", "anon_inode:[eventfd]").
    pub fn seed_fd(&mut self, tgid: u32, fd: i32, description: &str, cloexec: bool) {
        let (site_name, is_path) = describe_proc_link(description);
        let site = self.sites.intern(&site_name);
        let path = is_path.then_some(site);
        let since = self.traced_since_ns;
        let record = self.fds.add(tgid, site, Origin::Seeded, since, since);
        let process = self.processes.entry(tgid).or_default();
        if let Some(displaced) = process.fds.insert(
            fd,
            FdEntry {
                record,
                cloexec,
                path,
            },
        ) {
            self.fds.release(displaced.record, since, Cause::Implicit);
        }
    }

    /// Records a mapping that existed before tracing (from `/proc/PID/maps`).
    pub fn seed_mapping(&mut self, tgid: u32, start: u64, len: u64, description: &str) {
        let len = mappings::page_round(len);
        let site = self.sites.intern(description);
        let process = self.processes.entry(tgid).or_default();
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
            Origin::Seeded,
            self.traced_since_ns,
        );
    }

    /// Records the break of a process that existed before tracing; heap growth is
    /// measured from it.
    pub fn seed_brk(&mut self, tgid: u32, brk: u64) {
        self.processes.entry(tgid).or_default().heap = Break::seeded(brk);
    }

    /// The child starts with a copy of the parent's fds, mappings, heap and cwd. Each copy
    /// is a new table entry that starts at the fork: its lifetime is how long the child
    /// held it (and a copy of a resource from before tracing never gets a lifetime longer
    /// than the run).
    pub(super) fn fork(&mut self, parent: u32, child: u32, t: u64) {
        let Some(source) = self.processes.get(&parent).cloned() else {
            self.processes.entry(child).or_default();
            return;
        };
        let target = self.processes.entry(child).or_default();
        for (fd, entry) in source.fds.iter() {
            let original = *self.fds.get(entry.record);
            let record = self.fds.add(child, original.site, Origin::ForkCopy, t, t);
            if let Some(displaced) = target.fds.insert(fd, FdEntry { record, ..*entry }) {
                self.fds.release(displaced.record, t, Cause::Implicit);
            }
        }
        let mut copies: HashMap<RecordId, RecordId> = HashMap::new();
        for (start, len, parent_record) in source.maps.pieces() {
            let record = *copies.entry(parent_record).or_insert_with(|| {
                let original = *self.maps.get(parent_record);
                self.maps.add(
                    child,
                    original.site,
                    Origin::ForkCopy,
                    original.origin_ns,
                    t,
                )
            });
            unmap(
                target,
                &mut self.maps,
                &mut self.map_bytes,
                start,
                len,
                t,
                Cause::Implicit,
            );
            map(target, &mut self.map_bytes, start, len, record, t);
        }
        let heap = source.heap.heap_bytes();
        if heap != 0 {
            self.heap_bytes.push(ByteChange {
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
            self.fds.release(entry.record, t, Cause::Exec);
        }
        drop_address_space(
            process,
            &mut self.maps,
            &mut self.map_bytes,
            &mut self.heap_bytes,
            t,
            Cause::Exec,
        );
    }

    /// Releases everything the process held. What the target held, and what every
    /// process that outlived it held, is kept for the report first.
    pub(super) fn exit(&mut self, tgid: u32, t: u64) {
        if let Some(mut process) = self.processes.remove(&tgid) {
            if self.keeps_final_holdings(tgid) {
                let held = Holdings::of(tgid, &process, &self.fds, &self.maps, Some(t));
                self.final_holdings.insert(tgid, held);
            }
            for entry in process.fds.take_all() {
                self.fds.release(entry.record, t, Cause::Exit);
            }
            drop_address_space(
                &mut process,
                &mut self.maps,
                &mut self.map_bytes,
                &mut self.heap_bytes,
                t,
                Cause::Exit,
            );
        }
        self.exits.insert(tgid, t);
    }

    /// The target's exit is kept, and so is the exit of every process after it.
    fn keeps_final_holdings(&self, tgid: u32) -> bool {
        self.target
            .is_some_and(|target| target == tgid || self.exits.contains_key(&target))
    }

    /// What `tgid` holds now, or held when it exited (kept only for the target and the
    /// processes that outlived it).
    pub fn holdings(&self, tgid: u32) -> Option<Holdings> {
        match self.processes.get(&tgid) {
            Some(process) => Some(Holdings::of(tgid, process, &self.fds, &self.maps, None)),
            None => self.final_holdings.get(&tgid).cloned(),
        }
    }

    /// The processes that were still alive when the target exited (a daemon after a double
    /// fork, a child left running), by pid, each with what it held at its own exit or holds
    /// now. Empty while the target lives.
    pub fn outlived_target(&self) -> Vec<Holdings> {
        let Some(target) = self.target.filter(|t| self.exits.contains_key(t)) else {
            return Vec::new();
        };
        let mut outlived: Vec<Holdings> =
            self.final_holdings
                .values()
                .filter(|held| held.tgid != target)
                .cloned()
                .chain(self.processes.iter().map(|(&tgid, process)| {
                    Holdings::of(tgid, process, &self.fds, &self.maps, None)
                }))
                .collect();
        outlived.sort_by_key(|held| held.tgid);
        outlived
    }
}

/// Turns a `/proc/PID/fd` link target into the site names traced fds get, so a seeded
/// socket and a traced one group together. Returns (site, is_path).
fn describe_proc_link(link: &str) -> (String, bool) {
    let bracketed = |prefix: &str| {
        link.strip_prefix(prefix)
            .map(|rest| rest.trim_matches(|c| c == '[' || c == ']'))
    };
    if link.starts_with("socket:") {
        ("socket".into(), false)
    } else if link.starts_with("pipe:") {
        ("pipe".into(), false)
    } else if let Some(name) = bracketed("anon_inode:") {
        (format!("anon:{name}"), false)
    } else if let Some(name) = link.strip_prefix("/memfd:") {
        (
            format!("memfd:{}", name.trim_end_matches(" (deleted)")),
            false,
        )
    } else if link.starts_with('/') {
        (paths::normalize(link), true)
    } else {
        (link.to_string(), false)
    }
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
