//! `--heap` follows the traced processes like the rest of leakscope (`strace -f`): a
//! process the target forks gets the allocator probes too (they are scoped to one process),
//! and a process that execs gets them on the objects of its new program. The drain notes
//! forks, execs and exits as it applies them; the session attaches and detaches between
//! polls.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use crate::event::{Event, What};
use crate::probes::{HeapLink, Probes};

/// Processes with heap probes at once, at most: each costs about 45 links (fds). Beyond it
/// a process's allocations are not traced, and the heap class says so.
const MAX_PROCESSES: usize = 256;

/// Polls an exec'd process's mappings are looked at again: the dynamic loader maps its
/// libraries in the first milliseconds after the exec.
const POLLS_AFTER_EXEC: u32 = 10;

#[derive(Default)]
struct Attached {
    /// Canonical paths of the objects the process has the probes on.
    objects: BTreeSet<PathBuf>,
    links: Vec<HeapLink>,
}

pub(crate) struct HeapFollower {
    attached: BTreeMap<u32, Attached>,
    /// Processes that forked or exec'd, and how many more polls to look at their mappings.
    pending: BTreeMap<u32, u32>,
    /// Processes gone: their links are detached at the next poll.
    gone: Vec<u32>,
    /// Processes whose allocations were not traced ([`MAX_PROCESSES`]).
    pub(crate) unfollowed: u64,
}

fn canonical(paths: impl IntoIterator<Item = PathBuf>) -> BTreeSet<PathBuf> {
    paths
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect()
}

impl HeapFollower {
    /// `pid` has the probes on `objects` already.
    pub(crate) fn new(pid: u32, objects: Vec<PathBuf>) -> HeapFollower {
        HeapFollower {
            attached: BTreeMap::from([(
                pid,
                Attached {
                    objects: canonical(objects),
                    links: Vec::new(),
                },
            )]),
            pending: BTreeMap::new(),
            gone: Vec::new(),
            unfollowed: 0,
        }
    }

    pub(crate) fn observe(&mut self, event: &Event) {
        match event.what {
            What::Fork { child } => {
                // A copy of its parent's address space: complete at once.
                self.pending.insert(child, 1);
            }
            What::Exec(_) => {
                self.pending.insert(event.tgid, POLLS_AFTER_EXEC);
            }
            // Sent once per process, when its last thread exits (whichever thread that is).
            What::Exit => {
                self.pending.remove(&event.tgid);
                self.gone.push(event.tgid);
            }
            _ => {}
        }
    }

    /// Detaches the probes of processes gone; attaches them to the objects each pending
    /// process maps now and does not have them on yet. A process gone meanwhile, or one
    /// the kernel refuses, is skipped.
    pub(crate) fn attach_pending(&mut self, probes: &mut Probes) {
        for pid in std::mem::take(&mut self.gone) {
            if let Some(attached) = self.attached.remove(&pid) {
                probes.detach_heap(attached.links);
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for (pid, polls_left) in pending {
            if polls_left > 1 {
                self.pending.insert(pid, polls_left - 1);
            }
            if !self.attached.contains_key(&pid) && self.attached.len() >= MAX_PROCESSES {
                if polls_left <= 1 {
                    self.unfollowed += 1;
                }
                continue;
            }
            let done = self.attached.get(&pid).map(|a| &a.objects);
            let objects: Vec<PathBuf> = canonical(super::attach::objects_of_process(pid))
                .into_iter()
                .filter(|object| done.is_none_or(|done| !done.contains(object)))
                .collect();
            if objects.is_empty() {
                continue;
            }
            let points = super::attach::entry_points(&objects);
            let links = if points.is_empty() {
                Vec::new()
            } else {
                match probes.attach_heap(pid, &points) {
                    Ok(links) => links,
                    Err(_) => continue,
                }
            };
            let attached = self.attached.entry(pid).or_default();
            attached.objects.extend(objects);
            attached.links.extend(links);
        }
    }
}
