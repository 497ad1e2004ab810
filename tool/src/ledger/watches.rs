//! inotify watches and fanotify marks, per process and watching fd.
//!
//! A watch lives in the kernel object behind an inotify or fanotify fd (the instance). A
//! fork or a dup makes another fd on the same instance, so watches go when the last fd the
//! ledger knows on their instance closes (close, close_range, dup2 onto it, exec of a
//! CLOEXEC fd, exit): a worker forked per iteration that adds a watch through the inherited
//! fd and exits leaves its watch in the instance its parent still holds. An instance fd
//! received over a socket is a new instance to the ledger.
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

/// An inotify or fanotify instance, as the ledger numbers them.
type InstanceId = u64;

/// One inotify watch: its instance and watch descriptor.
type WatchKey = (InstanceId, i32);

/// A watched path and the watches on it.
type WatchedPath = (Arc<str>, HashSet<WatchKey>);

#[derive(Clone, Debug, Default)]
pub(crate) struct Watches {
    /// The instance behind each watching fd, by (tgid, fd).
    handles: BTreeMap<(u32, i32), InstanceId>,
    instances: HashMap<InstanceId, Instance>,
    /// The last instance id handed out.
    last_id: InstanceId,
    /// inotify watches by exact watched path, ordered so a renamed directory can move
    /// everything under it: removing the path drops them.
    by_path: BTreeMap<Arc<str>, HashSet<WatchKey>>,
}

#[derive(Clone, Debug, Default)]
struct Instance {
    /// Fds the ledger knows on this instance, across processes.
    holders: u32,
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
        let (id, instance) = self.instance(by);
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
        self.by_path.entry(path).or_default().insert((id, wd));
    }

    /// inotify_rm_watch(fd, wd).
    pub(super) fn rm_inotify(&mut self, history: &mut History, by: By, wd: i32) {
        if let Some(&id) = self.handles.get(&(by.tgid, by.fd)) {
            self.drop_inotify((id, wd), history, by.t, Cause::Explicit);
        }
    }

    /// The instance behind `by`'s fd; a new one when the ledger knows none there.
    fn instance(&mut self, by: By) -> (InstanceId, &mut Instance) {
        let last_id = &mut self.last_id;
        let id = *self.handles.entry((by.tgid, by.fd)).or_insert_with(|| {
            *last_id += 1;
            *last_id
        });
        let instance = self.instances.entry(id).or_insert_with(|| Instance {
            holders: 1,
            ..Instance::default()
        });
        (id, instance)
    }

    /// The instance behind `by`'s fd, if the ledger knows one.
    fn existing(&mut self, by: By) -> Option<&mut Instance> {
        let id = self.handles.get(&(by.tgid, by.fd))?;
        self.instances.get_mut(id)
    }

    /// inotify_init/fanotify_init returned `fd`: a new instance, known from its start so a
    /// fork before its first watch shares it.
    pub(super) fn opened(&mut self, history: &mut History, (tgid, t): (u32, u64), fd: i32) {
        self.fds_closed(history, (tgid, t), (fd, fd), Cause::Implicit);
        self.instance(By { tgid, fd, t });
    }

    /// A fork: the child's fds are the parent's, on the same instances.
    pub(super) fn forked(&mut self, history: &mut History, parent: u32, child: u32, t: u64) {
        let every_fd = (i32::MIN, i32::MAX);
        self.fds_closed(history, (child, t), every_fd, Cause::Implicit);
        let inherited: Vec<(i32, InstanceId)> = self
            .handles
            .range((parent, i32::MIN)..=(parent, i32::MAX))
            .map(|(&(_, fd), &id)| (fd, id))
            .collect();
        for (fd, id) in inherited {
            self.share(id, (child, fd));
        }
    }

    /// dup/dup2/dup3/F_DUPFD: `new` is another fd on `old`'s instance (whatever `new` was
    /// is closed first by the caller).
    pub(super) fn duplicated(&mut self, tgid: u32, old: i32, new: i32) {
        if let Some(&id) = self.handles.get(&(tgid, old)) {
            self.share(id, (tgid, new));
        }
    }

    fn share(&mut self, id: InstanceId, handle: (u32, i32)) {
        if let Some(instance) = self.instances.get_mut(&id) {
            instance.holders += 1;
            self.handles.insert(handle, id);
        }
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
            for &(id, wd) in &keys {
                let watch = self
                    .instances
                    .get_mut(&id)
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
        let (_, instance) = self.instance(by);
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
        let Some(instance) = self.existing(by) else {
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
        let Some(instance) = self.existing(by) else {
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

    /// Fds `first..=last` of `tgid` closed: the watches of an instance go with its last fd.
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
            .handles
            .range((tgid, first)..=(tgid, last))
            .map(|(&(_, fd), _)| fd)
            .collect();
        for fd in fds {
            self.close_handle((tgid, fd), history, t, cause);
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
            .handles
            .range((tgid, i32::MIN)..=(tgid, i32::MAX))
            .map(|(&(_, fd), _)| fd)
            .filter(|&fd| !still_open(fd))
            .collect();
        for fd in gone {
            self.close_handle((tgid, fd), history, t, Cause::Exec);
        }
    }

    /// One fd on an instance closed; the instance and its watches go with its last.
    fn close_handle(&mut self, handle: (u32, i32), history: &mut History, t: u64, cause: Cause) {
        let Some(id) = self.handles.remove(&handle) else {
            return;
        };
        let Some(instance) = self.instances.get_mut(&id) else {
            return;
        };
        instance.holders = instance.holders.saturating_sub(1);
        if instance.holders > 0 {
            return;
        }
        let Some(instance) = self.instances.remove(&id) else {
            return;
        };
        for (wd, (record, path)) in instance.inotify {
            history.watches.release(record, t, cause);
            self.forget_path(&path, (id, wd));
        }
        for (record, _) in instance.marks.into_values() {
            history.watches.release(record, t, cause);
        }
    }

    fn drop_inotify(&mut self, key: WatchKey, history: &mut History, t: u64, cause: Cause) {
        let (id, wd) = key;
        let Some(instance) = self.instances.get_mut(&id) else {
            return;
        };
        if let Some((record, path)) = instance.inotify.remove(&wd) {
            history.watches.release(record, t, cause);
            self.forget_path(&path, key);
        }
    }

    fn forget_path(&mut self, path: &Arc<str>, key: WatchKey) {
        if let Some(keys) = self.by_path.get_mut(path) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_path.remove(path);
            }
        }
    }
}
