//! What each filesystem-entry, cwd and watch syscall means, decoded from raw registers.
//! Pure: the ledger applies the resulting [`FileOp`] (`files`, `watches`).

use super::fd_calls::AT_FDCWD;
use super::sites::{EntryKind, MarkType};
use crate::event::Syscall;
use leakscope_common::open_flags::{CREAT_FLAGS, O_CREAT, O_EXCL, O_TMPFILE_BIT};
use leakscope_common::syscalls as nr;

const AT_REMOVEDIR: u64 = 0x200;
const RENAME_EXCHANGE: u64 = 2;
const FAN_MARK_ADD: u64 = 0x1;
const FAN_MARK_REMOVE: u64 = 0x2;
const FAN_MARK_MOUNT: u64 = 0x10;
const FAN_MARK_FLUSH: u64 = 0x80;
const FAN_MARK_FILESYSTEM: u64 = 0x100;

/// A path as a call named it: relative paths resolve against `dirfd` (or the cwd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct At {
    pub(crate) dirfd: i32,
    /// `None` when the kernel did not capture it.
    pub(crate) path: Option<String>,
}

/// The effect of one successful call on entries, the cwd or watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileOp {
    /// A new entry on disk.
    Create {
        at: At,
        kind: EntryKind,
    },
    /// An open with O_CREAT (without O_EXCL) that may or may not have created its file:
    /// the kernel could not read whether it did. Counted, so the files class knows it
    /// may be missing entries.
    MaybeCreated,
    /// unlink/unlinkat/rmdir.
    Remove {
        at: At,
        directory: bool,
    },
    /// rename/renameat/renameat2; `exchange` swaps the two.
    Rename {
        from: At,
        to: At,
        exchange: bool,
    },
    Chdir {
        path: Option<String>,
    },
    Fchdir {
        fd: i32,
    },
    AddWatch {
        fd: i32,
        wd: i32,
        at: At,
    },
    RmWatch {
        fd: i32,
        wd: i32,
    },
    FanotifyMark(FanotifyMark),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FanotifyMark {
    pub(crate) fd: i32,
    pub(crate) action: MarkAction,
    pub(crate) mark: MarkType,
    pub(crate) mask: u64,
    /// With no path, the mark is on `dirfd` itself.
    pub(crate) at: At,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkAction {
    Add,
    Remove,
    Flush,
}

fn fd_arg(value: u64) -> i32 {
    value as u32 as i32
}

/// Decodes a successful call; `None` for calls that change no entry, cwd or watch (an open
/// of an existing file included).
pub(crate) fn decode(call: &Syscall) -> Option<FileOp> {
    let a = &call.args;
    let path = || call.path.as_ref().map(|p| p.display());
    let cwd = || At {
        dirfd: AT_FDCWD,
        path: path(),
    };
    let at = |dirfd: u64| At {
        dirfd: fd_arg(dirfd),
        path: path(),
    };
    let create = |at: At, kind| Some(FileOp::Create { at, kind });
    let second = |dirfd: i32| At {
        dirfd,
        path: call.path2.as_ref().map(|p| p.display()),
    };
    let opened = matches!(call.nr, nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT);
    match call.nr {
        _ if opened && created(call) == Creation::Unknown => Some(FileOp::MaybeCreated),
        _ if opened && created(call) == Creation::Created => {
            let dirfd = if matches!(call.nr, nr::OPENAT | nr::OPENAT2) {
                fd_arg(a[0])
            } else {
                AT_FDCWD
            };
            create(at(dirfd as u64), EntryKind::File)
        }
        nr::MKDIR => create(cwd(), EntryKind::Directory),
        nr::MKDIRAT => create(at(a[0]), EntryKind::Directory),
        nr::MKNOD => create(cwd(), EntryKind::Node),
        nr::MKNODAT => create(at(a[0]), EntryKind::Node),
        // The captured path of the link calls is the new name.
        nr::SYMLINK => create(cwd(), EntryKind::Symlink),
        nr::SYMLINKAT => create(at(a[1]), EntryKind::Symlink),
        nr::LINK => create(cwd(), EntryKind::HardLink),
        nr::LINKAT => create(at(a[2]), EntryKind::HardLink),
        nr::UNLINK => Some(FileOp::Remove {
            at: cwd(),
            directory: false,
        }),
        nr::RMDIR => Some(FileOp::Remove {
            at: cwd(),
            directory: true,
        }),
        nr::UNLINKAT => Some(FileOp::Remove {
            at: at(a[0]),
            directory: a[2] & AT_REMOVEDIR != 0,
        }),
        nr::RENAME => Some(FileOp::Rename {
            from: cwd(),
            to: second(AT_FDCWD),
            exchange: false,
        }),
        nr::RENAMEAT | nr::RENAMEAT2 => Some(FileOp::Rename {
            from: at(a[0]),
            to: second(fd_arg(a[2])),
            exchange: call.nr == nr::RENAMEAT2 && a[4] & RENAME_EXCHANGE != 0,
        }),
        nr::CHDIR => Some(FileOp::Chdir { path: path() }),
        nr::FCHDIR => Some(FileOp::Fchdir { fd: fd_arg(a[0]) }),
        nr::INOTIFY_ADD_WATCH => Some(FileOp::AddWatch {
            fd: fd_arg(a[0]),
            wd: call.ret as i32,
            at: cwd(),
        }),
        nr::INOTIFY_RM_WATCH => Some(FileOp::RmWatch {
            fd: fd_arg(a[0]),
            wd: fd_arg(a[1]),
        }),
        nr::FANOTIFY_MARK => fanotify_mark(call),
        _ => None,
    }
}

/// What a successful open-family call did to its name on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Creation {
    Created,
    /// It opened an existing file, or made an unnamed one (O_TMPFILE).
    NotCreated,
    /// O_CREAT without O_EXCL, and the kernel could not tell.
    Unknown,
}

/// Whether a successful open-family call created its file.
fn created(call: &Syscall) -> Creation {
    let flags = call
        .open
        .and_then(|open| open.flags)
        .map(u64::from)
        .or(match call.nr {
            nr::OPEN => Some(call.args[1]),
            nr::OPENAT => Some(call.args[2]),
            nr::CREAT => Some(CREAT_FLAGS),
            // openat2's flags live in a struct only the kernel side reads.
            _ => None,
        });
    // O_TMPFILE makes an unnamed file: nothing is on disk unless a linkat names it.
    if flags.is_some_and(|f| f & O_TMPFILE_BIT != 0) {
        return Creation::NotCreated;
    }
    match (call.open.and_then(|open| open.created), flags) {
        (Some(true), _) => Creation::Created,
        (Some(false), _) => Creation::NotCreated,
        // The kernel could not tell: only O_CREAT|O_EXCL is sure to have created the file
        // (it fails otherwise). Guessing for a plain O_CREAT would make every open of an
        // existing log a new entry, and a loop that appends to one file a leak; not
        // counting it may miss a leak, so it is counted as unknown.
        (None, Some(f)) if f & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL => Creation::Created,
        (None, Some(f)) if f & O_CREAT == 0 => Creation::NotCreated,
        // Flags unknown too (openat2 whose `open_how` could not be read): it may have
        // created.
        (None, _) => Creation::Unknown,
    }
}

fn fanotify_mark(call: &Syscall) -> Option<FileOp> {
    let a = &call.args;
    let flags = a[1];
    let action = if flags & FAN_MARK_FLUSH != 0 {
        MarkAction::Flush
    } else if flags & FAN_MARK_ADD != 0 {
        MarkAction::Add
    } else if flags & FAN_MARK_REMOVE != 0 {
        MarkAction::Remove
    } else {
        return None;
    };
    let mark = if flags & FAN_MARK_FILESYSTEM == FAN_MARK_FILESYSTEM {
        MarkType::Filesystem
    } else if flags & FAN_MARK_MOUNT != 0 {
        MarkType::Mount
    } else {
        MarkType::Inode
    };
    Some(FileOp::FanotifyMark(FanotifyMark {
        fd: fd_arg(a[0]),
        action,
        mark,
        mask: a[2],
        at: At {
            dirfd: fd_arg(a[3]),
            path: call.path.as_ref().map(|p| p.display()),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::call;

    const CWD: u64 = AT_FDCWD as i64 as u64;

    #[test]
    fn open_creates_only_when_the_kernel_or_o_excl_says_so() {
        let openat = |flags: u64| call(nr::OPENAT, 3, [CWD, 0, flags, 0o600, 0, 0]).with_path("f");
        let plain_creat = O_CREAT;
        let exclusive = O_CREAT | O_EXCL;
        // Without the kernel's word a plain O_CREAT creates no entry, but it is counted as
        // a creation the ledger may be missing.
        assert_eq!(decode(&openat(plain_creat)), Some(FileOp::MaybeCreated));
        let no_creat = openat(2).with_open(2, None);
        assert_eq!(
            decode(&no_creat),
            None,
            "an open without O_CREAT creates nothing"
        );
        assert!(matches!(
            decode(&openat(exclusive)),
            Some(FileOp::Create { .. })
        ));
        let told = openat(plain_creat).with_open(O_CREAT, Some(true));
        assert!(matches!(decode(&told), Some(FileOp::Create { .. })));
        let existing = openat(exclusive).with_open(O_CREAT | O_EXCL, Some(false));
        assert_eq!(decode(&existing), None);
        let tmpfile = openat(O_TMPFILE_BIT | 0o200000 | 2);
        assert_eq!(
            decode(&tmpfile.with_open(O_TMPFILE_BIT | 2, Some(true))),
            None
        );
    }

    #[test]
    fn link_calls_name_the_new_path_and_its_dirfd() {
        let linkat = call(nr::LINKAT, 0, [3, 0, 7, 0, 0x1000, 0]).with_path("new");
        assert_eq!(
            decode(&linkat),
            Some(FileOp::Create {
                at: At {
                    dirfd: 7,
                    path: Some("new".into())
                },
                kind: EntryKind::HardLink
            })
        );
    }

    #[test]
    fn unlinkat_removedir_and_renameat2_exchange() {
        let rm = call(nr::UNLINKAT, 0, [CWD, 0, AT_REMOVEDIR, 0, 0, 0]).with_path("d");
        assert!(matches!(
            decode(&rm),
            Some(FileOp::Remove {
                directory: true,
                ..
            })
        ));
        let swap = call(nr::RENAMEAT2, 0, [CWD, 0, 5, 0, RENAME_EXCHANGE, 0])
            .with_path("a")
            .with_path2("b");
        assert_eq!(
            decode(&swap),
            Some(FileOp::Rename {
                from: At {
                    dirfd: AT_FDCWD,
                    path: Some("a".into())
                },
                to: At {
                    dirfd: 5,
                    path: Some("b".into())
                },
                exchange: true
            })
        );
    }

    #[test]
    fn fanotify_flags() {
        let mark =
            |flags: u64| call(nr::FANOTIFY_MARK, 0, [4, flags, 8, CWD, 0, 0]).with_path("/mnt");
        let decoded = |flags| match decode(&mark(flags)) {
            Some(FileOp::FanotifyMark(m)) => (m.action, m.mark),
            other => panic!("{other:?}"),
        };
        assert_eq!(decoded(FAN_MARK_ADD), (MarkAction::Add, MarkType::Inode));
        assert_eq!(
            decoded(FAN_MARK_REMOVE | FAN_MARK_MOUNT),
            (MarkAction::Remove, MarkType::Mount)
        );
        assert_eq!(
            decoded(FAN_MARK_FLUSH | FAN_MARK_FILESYSTEM),
            (MarkAction::Flush, MarkType::Filesystem)
        );
    }
}
