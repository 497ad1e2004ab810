//! Interned sites ("where a resource came from"), so each of possibly millions of resource
//! records carries a 4-byte id instead of its own copy of a path or stack.
//!
//! A site is typed data: an fd's path or kind and the call that kept it, a mapping's
//! backing, size, protection and stack, the stack that grew the brk heap. Only the report
//! turns a site into text (`report::sites`).

use std::hash::Hash;
use std::sync::Arc;

use procfs::process::MMapPath;

pub(crate) type SiteId = u32;
pub(crate) type StackId = u32;

use crate::stacks::{Folded, Frame, SiteStack};

/// Where a resource came from.
///
/// The variant order (and so the derived `Ord`, the ranking's last tie-break) follows the
/// text the report writes for them, so ties rank as they read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SiteKey {
    /// An fd: what it refers to, and the call that kept it if that was a dup.
    Fd(FdSite),
    /// A mapping made by mmap (or a copy of one made by mremap).
    Mapping(MappingSite),
    /// A mapping that existed before tracing, as `/proc/PID/maps` names it.
    SeededMapping(Seeded),
    /// An mremap of a range mapped before tracing and not in the snapshot.
    RemapOfUntracked,
    /// Growth of the brk heap, and the stack that asked for it.
    Brk { stack: Option<StackId> },
    /// An entry on disk the target created, by name pattern (see `name_pattern`).
    Entry(EntrySite),
    /// An inotify watch or fanotify mark, by the watched path's pattern.
    Watch(WatchSite),
}

/// Entries created from one name pattern, of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EntrySite {
    pub(crate) kind: EntryKind,
    /// The path with digits and random-looking parts grouped (`/tmp/app-XXXXXX.tmp`).
    pub(crate) pattern: Arc<str>,
}

/// What kind of entry a call created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum EntryKind {
    /// A regular file (open with O_CREAT, creat).
    File,
    Directory,
    /// mknod: a device, fifo, socket or regular file node.
    Node,
    Symlink,
    /// link/linkat: a new name for an existing inode (O_TMPFILE's way onto disk too).
    HardLink,
}

/// Watches on paths of one pattern, through one API.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WatchSite {
    pub(crate) api: WatchApi,
    pub(crate) pattern: Arc<str>,
}

/// How a path is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum WatchApi {
    Inotify,
    Fanotify(MarkType),
}

/// What a fanotify mark covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum MarkType {
    Inode,
    Mount,
    Filesystem,
}

/// What an fd refers to, and which call kept it: a leak "kept by dup" is fixed somewhere
/// else than one kept by the open.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FdSite {
    pub(crate) source: FdSource,
    /// The dup/dup2/dup3/fcntl that made this copy; `None` for the original.
    pub(crate) kept_by: Option<&'static str>,
    /// The stack of the call that made the fd (the open, or the dup that kept it), from
    /// the program's own code on: one path opened from 14 places is 14 sites. `None` when
    /// the call came without one (past `--stack-rate`, a ring a quarter full, an fd from before
    /// tracing or received from another process).
    pub(crate) stack: Option<StackId>,
}

/// What an fd refers to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FdSource {
    /// An opened path, absolute when the working directory was known.
    Path(Arc<str>),
    Kind(FdKind),
    /// A dup of an fd that was open before tracing and not in the snapshot: what it refers
    /// to is unknown.
    DupOfUntracked,
}

/// An fd without a path. Variants are in the order of their text (see [`SiteKey`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FdKind {
    /// An anonymous inode: eventfd, eventpoll, pidfd, bpf-map, ...
    Anon(Arc<str>),
    /// A pidfd a call delivered beyond its return value.
    DeliveredPidfd(PidfdDelivery),
    /// A bpf fd of a command leakscope does not name.
    Bpf,
    /// A bpf iterator (BPF_ITER_CREATE).
    BpfIterator,
    /// A pinned bpf object (BPF_OBJ_GET).
    BpfPinned,
    /// pidfd_getfd: a copy of another process's fd.
    FromAnotherProcess,
    /// Received in an SCM_RIGHTS control message.
    Received,
    /// open_by_handle_at.
    ByHandle,
    /// fsopen/fspick: a filesystem context of this filesystem type or path.
    FsContext(Arc<str>),
    Memfd(Arc<str>),
    /// open_tree: a detached mount tree of this path.
    MountTree(Arc<str>),
    MessageQueue(Arc<str>),
    Pipe,
    Socket,
    /// A `/proc/PID/fd` link of a kind leakscope does not name, with an inode
    /// ("net:[4026531840]").
    ProcInode {
        kind: Arc<str>,
        inode: u64,
    },
    /// A `/proc/PID/fd` link of a kind leakscope does not name, without an inode.
    ProcLink {
        kind: Arc<str>,
        detail: Arc<str>,
    },
}

/// How a pidfd arrived without being a call's return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum PidfdDelivery {
    Clone,
    Clone3,
    PeerPidfd,
    ScmPidfd,
}

/// A mapping made by mmap.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MappingSite {
    pub(crate) backing: Backing,
    /// The mapped length (page-rounded).
    pub(crate) len: u64,
    /// PROT_* bits.
    pub(crate) prot: u64,
    pub(crate) shared: bool,
    pub(crate) stack: Option<StackId>,
}

/// What a mapping maps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Backing {
    /// The fd's site (a path is named without the dup that kept it).
    Fd(FdSite),
    Anon,
    /// An fd the ledger did not know.
    UnknownFd(i32),
}

/// What `/proc/PID/maps` says a mapping from before tracing maps (procfs's `MMapPath`,
/// which has no order).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Seeded {
    Path(Arc<str>),
    Heap,
    Stack,
    ThreadStack(u32),
    Vdso,
    Vvar,
    Vsyscall,
    Rollup,
    Anonymous,
    SysVShm(i32),
    Other(Arc<str>),
}

impl From<&MMapPath> for Seeded {
    fn from(path: &MMapPath) -> Self {
        match path {
            MMapPath::Path(path) => Seeded::Path(Arc::from(path.to_string_lossy().as_ref())),
            MMapPath::Heap => Seeded::Heap,
            MMapPath::Stack => Seeded::Stack,
            MMapPath::TStack(tid) => Seeded::ThreadStack(*tid),
            MMapPath::Vdso => Seeded::Vdso,
            MMapPath::Vvar => Seeded::Vvar,
            MMapPath::Vsyscall => Seeded::Vsyscall,
            MMapPath::Rollup => Seeded::Rollup,
            MMapPath::Anonymous => Seeded::Anonymous,
            MMapPath::Vsys(key) => Seeded::SysVShm(*key),
            MMapPath::Other(name) => Seeded::Other(Arc::from(name.as_str())),
        }
    }
}

impl SiteKey {
    /// The site of an fd of `kind`, as its original (not a dup).
    pub(crate) fn fd_kind(kind: FdKind) -> Self {
        SiteKey::Fd(FdSite {
            source: FdSource::Kind(kind),
            kept_by: None,
            stack: None,
        })
    }

    /// The site of an fd opened from `path`.
    pub(crate) fn fd_path(path: &str) -> Self {
        SiteKey::Fd(FdSite {
            source: FdSource::Path(Arc::from(path)),
            kept_by: None,
            stack: None,
        })
    }
}

impl SiteKey {
    /// This fd site as made by a call with `stack` (unchanged for other sites).
    pub(crate) fn with_stack(self, stack: Option<StackId>) -> Self {
        match self {
            SiteKey::Fd(fd) => SiteKey::Fd(FdSite { stack, ..fd }),
            other => other,
        }
    }

    /// The site of entries of `kind` created at paths of `pattern` (see `name_pattern`).
    pub(crate) fn entry(kind: EntryKind, pattern: Arc<str>) -> Self {
        SiteKey::Entry(EntrySite { kind, pattern })
    }

    /// The site of watches through `api` on paths of `pattern`.
    pub(crate) fn watch(api: WatchApi, pattern: Arc<str>) -> Self {
        SiteKey::Watch(WatchSite { api, pattern })
    }
}

impl FdKind {
    pub(crate) fn anon(name: &str) -> Self {
        FdKind::Anon(Arc::from(name))
    }
}

/// Values interned to dense ids.
#[derive(Debug, Clone)]
struct Interner<T> {
    ids: foldhash::HashMap<T, u32>,
    values: Vec<T>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            ids: foldhash::HashMap::default(),
            values: Vec::new(),
        }
    }
}

impl<T: Clone + Eq + Hash> Interner<T> {
    fn intern(&mut self, value: T) -> u32 {
        if let Some(&id) = self.ids.get(&value) {
            return id;
        }
        let id = u32::try_from(self.values.len()).expect("fewer than 2^32 distinct values");
        self.values.push(value.clone());
        self.ids.insert(value, id);
        id
    }

    fn get(&self, id: u32) -> &T {
        &self.values[id as usize]
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Sites {
    keys: Interner<SiteKey>,
    /// A site's frames: from the first frame of the program's own code on (see
    /// [`SiteStack::fold`]).
    stacks: Interner<Arc<[Frame]>>,
    /// By stack id: what was folded above the stack's frames, as its first call had it
    /// (it does not split a site: the same code reached through another libc path is the
    /// same leak).
    folded: Vec<Folded>,
}

impl Sites {
    pub(crate) fn intern(&mut self, key: SiteKey) -> SiteId {
        self.keys.intern(key)
    }

    pub(crate) fn key(&self, id: SiteId) -> &SiteKey {
        self.keys.get(id)
    }

    /// For a site with a stack, the same site as recorded without one (a call past
    /// `--stack-rate`, or made while the ring was a quarter full), if any was: an fd's path and
    /// the call that kept it, a mapping's backing, size and protection, or brk.
    pub(crate) fn without_stack(&self, id: SiteId) -> Option<SiteId> {
        let bare = match self.key(id) {
            SiteKey::Mapping(mapping) if mapping.stack.is_some() => SiteKey::Mapping(MappingSite {
                stack: None,
                ..mapping.clone()
            }),
            SiteKey::Brk { stack: Some(_) } => SiteKey::Brk { stack: None },
            SiteKey::Fd(fd) if fd.stack.is_some() => SiteKey::Fd(FdSite {
                stack: None,
                ..fd.clone()
            }),
            _ => return None,
        };
        self.keys.ids.get(&bare).copied()
    }

    /// The path of an fd site, for the iteration detector (which matches opened paths).
    pub(crate) fn path(&self, id: SiteId) -> Option<&str> {
        match self.key(id) {
            SiteKey::Fd(FdSite {
                source: FdSource::Path(path),
                ..
            }) => Some(path),
            _ => None,
        }
    }

    /// Interns a call's stack folded to a site's frames (see [`SiteStack::fold`]);
    /// `None` without frames.
    pub(crate) fn intern_stack(&mut self, frames: Option<&[Frame]>) -> Option<StackId> {
        let SiteStack { frames, folded } = SiteStack::fold(frames?)?;
        let id = self.stacks.intern(frames);
        if id as usize == self.folded.len() {
            self.folded.push(folded);
        } else {
            // A stack without the program's frames is shared by every call with the same
            // top frames: if any of them went through unnamed JIT code, the site says so.
            self.folded[id as usize].merge_unnamed_jit(&folded);
        }
        Some(id)
    }

    /// A stack's frames, innermost first.
    pub(crate) fn stack(&self, id: StackId) -> &[Frame] {
        self.stacks.get(id)
    }

    /// What was folded above a stack's frames.
    pub(crate) fn folded(&self, id: StackId) -> &Folded {
        &self.folded[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_id() {
        let mut sites = Sites::default();
        let a = sites.intern(SiteKey::fd_path("/tmp/a"));
        let b = sites.intern(SiteKey::fd_kind(FdKind::Socket));
        assert_eq!(sites.intern(SiteKey::fd_path("/tmp/a")), a);
        assert_ne!(a, b);
        assert_eq!(sites.key(b), &SiteKey::fd_kind(FdKind::Socket));
        assert_eq!(sites.path(a), Some("/tmp/a"));
    }

    #[test]
    fn stacks_are_told_apart_by_their_innermost_frames() {
        let mut sites = Sites::default();
        let frames = |names: &[&str]| names.iter().map(|n| Frame::named(n)).collect::<Vec<_>>();
        let a = sites.intern_stack(Some(&frames(&["f", "g", "h", "main"])));
        let b = sites.intern_stack(Some(&frames(&["f", "g", "h", "other"])));
        assert_eq!(a, b);
        assert_eq!(sites.intern_stack(Some(&[])), None);
        assert_eq!(sites.stack(a.unwrap()).len(), crate::stacks::SITE_FRAMES);
        assert!(sites.folded(a.unwrap()).is_empty());
    }
}
