//! inotify watches and fanotify marks, per process and watching fd.
//!
//! A watch lives in the kernel object behind an inotify or fanotify fd. A fork copies the
//! fd, not the ownership: to keep it simple, a watch belongs to the process that added it
//! and goes when that process's fd closes (close, close_range, dup2 onto it, exec of a
//! CLOEXEC fd, exit). A child that keeps the inherited fd open after its parent closed
//! it keeps the kernel's watches alive unseen.
//!
//! inotify watches follow their inode: a rename of the watched path (or of a directory
//! above it) moves the watch to the new path, so removing it there drops the watch. The
//! site keeps the path the watch was added with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::history::History;
use super::records::{Acquisition, Cause, Origin, RecordId};
use super::sites::{MarkType, SiteKey, WatchApi};

const FAN_ONDIR: u64 = 0x4000_0000;
const FAN_EVENT_ON_CHILD: u64 = 0x0800_0000;

/// One inotify watch: (tgid, watching fd, watch descriptor).
type WatchKey = (u32, i32, i32);

/// A watched path and the watches on it.
type WatchedPath = (Arc<str>, HashSet<WatchKey>);

#[derive(Debug, Default)]
pub(crate) struct Watches {
    /// The watches of each watching fd, by (tgid, fd).
    instances: BTreeMap<(u32, i32), Instance>,
    /// inotify watches by exact watched path, ordered so a renamed directory can move
    /// everything under it: removing the path drops them.
    by_path: BTreeMap<Arc<str>, HashSet<WatchKey>>,
}

#[derive(Debug, Default)]
struct Instance {
    /// inotify: watch descriptor -> record and watched path.
    inotify: HashMap<i32, (RecordId, Arc<str>)>,
    /// fanotify: (mark type, path) -> record and event mask.
    marks: HashMap<(MarkType, Arc<str>), (RecordId, u64)>,
}

/// Who changes a watch, and when.
#[derive(Clone, Copy)]
pub(super) struct By {
    pub(super) tgid: u32,
    pub(super) fd: i32,
    pub(super) t: u64,
}

impl Watches {
    /// inotify_add_watch returned `wd`. A descriptor already live on this fd is the same
    /// watch (the kernel returns it again for the same inode): no new record.
    pub(super) fn add_inotify(&mut self, history: &mut History, by: By, wd: i32, path: &str) {
        let instance = self.instances.entry((by.tgid, by.fd)).or_default();
        if instance.inotify.contains_key(&wd) {
            return;
        }
        let pattern = history.names.pattern(path);
        let site = history
            .sites
            .intern(SiteKey::watch(WatchApi::Inotify, pattern));
        let record = history
            .watches
            .add(by.tgid, site, Acquisition::at(Origin::Acquired, by.t));
        let path: Arc<str> = Arc::from(path);
        instance.inotify.insert(wd, (record, path.clone()));
        self.by_path
            .entry(path)
            .or_default()
            .insert((by.tgid, by.fd, wd));
    }

    /// inotify_rm_watch(fd, wd).
    pub(super) fn rm_inotify(&mut self, history: &mut History, by: By, wd: i32) {
        self.drop_inotify((by.tgid, by.fd, wd), history, by.t, Cause::Explicit);
    }

    /// The watched entry at `path` was removed: the kernel drops its watches (IN_IGNORED).
    pub(super) fn path_removed(&mut self, history: &mut History, path: &str, t: u64) {
        if let Some(keys) = self.by_path.remove(path) {
            for key in keys {
                self.drop_inotify(key, history, t, Cause::Implicit);
            }
        }
    }

    /// rename(from, to): watches on `to` lose their inode (replaced), and watches on
    /// `from` and under it move with their inodes to `to`.
    pub(super) fn path_renamed(&mut self, history: &mut History, from: &str, to: &str, t: u64) {
        if from == to {
            return;
        }
        self.path_removed(history, to, t);
        let moved = self.take_subtree(from);
        self.put_subtree(moved, from, to);
    }

    /// renameat2(RENAME_EXCHANGE): the watches on the two paths (and under them) swap.
    pub(super) fn paths_exchanged(&mut self, a: &str, b: &str) {
        if a == b {
            return;
        }
        let under_a = self.take_subtree(a);
        let under_b = self.take_subtree(b);
        self.put_subtree(under_a, a, b);
        self.put_subtree(under_b, b, a);
    }

    /// Removes and returns the watched paths `path` and under it, with their watches.
    fn take_subtree(&mut self, path: &str) -> Vec<WatchedPath> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let under = self
            .by_path
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(&prefix));
        let keys: Vec<Arc<str>> = self
            .by_path
            .get_key_value(path)
            .map(|(key, _)| key)
            .into_iter()
            .chain(under)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|key| self.by_path.remove_entry(&key))
            .collect()
    }

    /// Puts watched paths taken from under `from` back under `to`, telling each watch.
    fn put_subtree(&mut self, moved: Vec<WatchedPath>, from: &str, to: &str) {
        for (path, keys) in moved {
            let new: Arc<str> = Arc::from(format!("{to}{}", &path[from.len()..]));
            for &(tgid, fd, wd) in &keys {
                let watch = self
                    .instances
                    .get_mut(&(tgid, fd))
                    .and_then(|instance| instance.inotify.get_mut(&wd));
                if let Some((_, watched)) = watch {
                    *watched = new.clone();
                }
            }
            self.by_path.entry(new).or_default().extend(keys);
        }
    }

    /// fanotify_mark(FAN_MARK_ADD): the mask joins the mark's; a new mark is a new record.
    pub(super) fn add_mark(
        &mut self,
        history: &mut History,
        by: By,
        key: (MarkType, &str),
        mask: u64,
    ) {
        let instance = self.instances.entry((by.tgid, by.fd)).or_default();
        let (mark, path) = key;
        let path: Arc<str> = Arc::from(path);
        if let Some((_, existing)) = instance.marks.get_mut(&(mark, path.clone())) {
            *existing |= mask;
            return;
        }
        let pattern = history.names.pattern(&path);
        let site = history
            .sites
            .intern(SiteKey::watch(WatchApi::Fanotify(mark), pattern));
        let record = history
            .watches
            .add(by.tgid, site, Acquisition::at(Origin::Acquired, by.t));
        instance.marks.insert((mark, path), (record, mask));
    }

    /// fanotify_mark(FAN_MARK_REMOVE): the mask's bits go; a mark left empty goes.
    pub(super) fn remove_mark(
        &mut self,
        history: &mut History,
        by: By,
        key: (MarkType, &str),
        mask: u64,
    ) {
        let Some(instance) = self.instances.get_mut(&(by.tgid, by.fd)) else {
            return;
        };
        let key = (key.0, Arc::from(key.1));
        let Some((record, existing)) = instance.marks.get_mut(&key) else {
            return;
        };
        *existing &= !mask;
        // Flags that only qualify events keep no mark alive (the kernel's umask).
        if *existing & !(FAN_ONDIR | FAN_EVENT_ON_CHILD) == 0 {
            history.watches.release(*record, by.t, Cause::Explicit);
            instance.marks.remove(&key);
        }
    }

    /// fanotify_mark(FAN_MARK_FLUSH): every mark of this type on the fd goes.
    pub(super) fn flush_marks(&mut self, history: &mut History, by: By, mark: MarkType) {
        let Some(instance) = self.instances.get_mut(&(by.tgid, by.fd)) else {
            return;
        };
        instance.marks.retain(|&(kind, _), &mut (record, _)| {
            let flushed = kind == mark;
            if flushed {
                history.watches.release(record, by.t, Cause::Explicit);
            }
            !flushed
        });
    }

    /// Fds `first..=last` of `tgid` closed: their watches go with them.
    pub(super) fn fds_closed(
        &mut self,
        history: &mut History,
        (tgid, t): (u32, u64),
        (first, last): (i32, i32),
        cause: Cause,
    ) {
        if first > last {
            return;
        }
        let fds: Vec<i32> = self
            .instances
            .range((tgid, first)..=(tgid, last))
            .map(|(&(_, fd), _)| fd)
            .collect();
        for fd in fds {
            self.drop_instance((tgid, fd), history, t, cause);
        }
    }

    /// Exec closed the fds of `tgid` that `still_open` no longer lists.
    pub(super) fn exec(
        &mut self,
        history: &mut History,
        (tgid, t): (u32, u64),
        still_open: impl Fn(i32) -> bool,
    ) {
        let gone: Vec<i32> = self
            .instances
            .range((tgid, i32::MIN)..=(tgid, i32::MAX))
            .map(|(&(_, fd), _)| fd)
            .filter(|&fd| !still_open(fd))
            .collect();
        for fd in gone {
            self.drop_instance((tgid, fd), history, t, Cause::Exec);
        }
    }

    fn drop_instance(&mut self, key: (u32, i32), history: &mut History, t: u64, cause: Cause) {
        let Some(instance) = self.instances.remove(&key) else {
            return;
        };
        for (wd, (record, path)) in instance.inotify {
            history.watches.release(record, t, cause);
            self.forget_path(&path, (key.0, key.1, wd));
        }
        for (record, _) in instance.marks.into_values() {
            history.watches.release(record, t, cause);
        }
    }

    fn drop_inotify(&mut self, key: (u32, i32, i32), history: &mut History, t: u64, cause: Cause) {
        let (tgid, fd, wd) = key;
        let Some(instance) = self.instances.get_mut(&(tgid, fd)) else {
            return;
        };
        if let Some((record, path)) = instance.inotify.remove(&wd) {
            history.watches.release(record, t, cause);
            self.forget_path(&path, key);
        }
    }

    fn forget_path(&mut self, path: &Arc<str>, key: (u32, i32, i32)) {
        if let Some(keys) = self.by_path.get_mut(path) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_path.remove(path);
            }
        }
    }
}
