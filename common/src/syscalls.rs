//! The syscalls leakscope traces, by x86_64 number, and what the kernel side must capture
//! for each. This table is the single source of truth: the kernel filter and the userspace
//! decoder both call [`info`].

/// What to capture for a traced syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallInfo {
    pub nr: u32,
    pub name: &'static str,
    /// Which argument holds a user-space path or name to copy, if any. For calls that
    /// create a name from another (link, symlink) this is the new name, the entry created.
    pub path_arg: Option<u8>,
    /// Which argument holds a second path (the new name of rename/renameat/renameat2);
    /// such a call is sent as a [`crate::PathPairEvent`].
    pub second_path_arg: Option<u8>,
    /// Which argument points at an `int[2]` the kernel filled with two new fds.
    pub fd_pair_arg: Option<u8>,
    /// Memory-mapping calls are sent as a [`crate::UserStackEvent`] (registers and a copy
    /// of the user stack), so leaked mappings can be placed.
    pub take_stack: bool,
    /// The call returns new fds (its return value, or an `int[2]`): its user stack is sent
    /// as a record of its own ([`crate::EventKind::UserStack`]) just before the call's, so
    /// an fd site can name the code that opened it. See [`fd_stack_wanted`] for fcntl.
    pub fd_stack: bool,
    /// Whether the return value is an address (mmap, mremap, brk), where errors are
    /// `-4095..=-1` and everything else, even "negative" high addresses, is success.
    pub returns_address: bool,
    /// Fds the call installs somewhere other than its return value, which the kernel side
    /// must read from user memory at sys_exit (see [`Delivery`]).
    pub delivery: Delivery,
}

/// Where a call puts fds that are not its return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nowhere: the return value (or `fd_pair_arg`) says everything.
    None,
    /// recvmsg: SCM_RIGHTS / SCM_PIDFD control messages in the `struct msghdr` at `args[1]`.
    /// Sent as a [`crate::ControlEvent`], and only when control data arrived.
    ControlMessage,
    /// recvmmsg: the same for each `struct mmsghdr` of the array at `args[1]`; the return
    /// value is the number of messages.
    ControlMessages,
    /// An `int` the kernel wrote to the user pointer in this argument (clone's
    /// `parent_tid` with CLONE_PIDFD, getsockopt's `optval` with SO_PEERPIDFD); read into
    /// `aux`, or [`crate::FD_UNREADABLE`].
    IntAt(u8),
    /// clone3: the `int` at `clone_args.pidfd` (a u64 pointer at offset 8 of the struct at
    /// `args[0]`), when `clone_args.flags` (offset 0) has CLONE_PIDFD.
    Clone3Pidfd,
}

const fn plain(nr: u32, name: &'static str) -> SyscallInfo {
    SyscallInfo {
        nr,
        name,
        path_arg: None,
        second_path_arg: None,
        fd_pair_arg: None,
        take_stack: false,
        fd_stack: false,
        returns_address: false,
        delivery: Delivery::None,
    }
}
/// A call that returns a new fd (or two): see [`SyscallInfo::fd_stack`].
const fn fd(info: SyscallInfo) -> SyscallInfo {
    SyscallInfo {
        fd_stack: true,
        ..info
    }
}
const fn with_path(nr: u32, name: &'static str, arg: u8) -> SyscallInfo {
    SyscallInfo {
        path_arg: Some(arg),
        ..plain(nr, name)
    }
}
const fn with_two_paths(nr: u32, name: &'static str, arg: u8, second: u8) -> SyscallInfo {
    SyscallInfo {
        path_arg: Some(arg),
        second_path_arg: Some(second),
        ..plain(nr, name)
    }
}
const fn with_fd_pair(nr: u32, name: &'static str, arg: u8) -> SyscallInfo {
    SyscallInfo {
        fd_pair_arg: Some(arg),
        ..plain(nr, name)
    }
}
const fn delivering(nr: u32, name: &'static str, delivery: Delivery) -> SyscallInfo {
    SyscallInfo {
        delivery,
        ..plain(nr, name)
    }
}
/// A call that creates or moves a mapping (or grows the heap): it returns an address, and
/// its user stack is copied so its site can name the code that asked. munmap releases, and
/// nobody asks where a release came from: it gets no stack, which would cost a copy of
/// the user stack on every unmap.
/// A call that returns an address but whose user stack is not wanted (shmat).
const fn attaching(nr: u32, name: &'static str) -> SyscallInfo {
    SyscallInfo {
        returns_address: true,
        ..plain(nr, name)
    }
}

const fn mapping(nr: u32, name: &'static str) -> SyscallInfo {
    SyscallInfo {
        take_stack: true,
        returns_address: true,
        ..plain(nr, name)
    }
}

pub const OPEN: u32 = 2;
pub const CLOSE: u32 = 3;
pub const MMAP: u32 = 9;
pub const MUNMAP: u32 = 11;
pub const BRK: u32 = 12;
pub const PIPE: u32 = 22;
pub const MREMAP: u32 = 25;
pub const SHMAT: u32 = 30;
pub const SHMDT: u32 = 67;
pub const DUP: u32 = 32;
pub const DUP2: u32 = 33;
pub const SOCKET: u32 = 41;
pub const ACCEPT: u32 = 43;
pub const RECVMSG: u32 = 47;
pub const SOCKETPAIR: u32 = 53;
pub const GETSOCKOPT: u32 = 55;
pub const CLONE: u32 = 56;
pub const FCNTL: u32 = 72;
pub const CHDIR: u32 = 80;
pub const FCHDIR: u32 = 81;
pub const RENAME: u32 = 82;
pub const MKDIR: u32 = 83;
pub const RMDIR: u32 = 84;
pub const CREAT: u32 = 85;
pub const LINK: u32 = 86;
pub const UNLINK: u32 = 87;
pub const SYMLINK: u32 = 88;
pub const MKNOD: u32 = 133;
pub const EPOLL_CREATE: u32 = 213;
pub const MQ_OPEN: u32 = 240;
pub const INOTIFY_INIT: u32 = 253;
pub const INOTIFY_ADD_WATCH: u32 = 254;
pub const INOTIFY_RM_WATCH: u32 = 255;
pub const OPENAT: u32 = 257;
pub const MKDIRAT: u32 = 258;
pub const MKNODAT: u32 = 259;
pub const UNLINKAT: u32 = 263;
pub const RENAMEAT: u32 = 264;
pub const LINKAT: u32 = 265;
pub const SYMLINKAT: u32 = 266;
pub const SIGNALFD: u32 = 282;
pub const TIMERFD_CREATE: u32 = 283;
pub const EVENTFD: u32 = 284;
pub const ACCEPT4: u32 = 288;
pub const SIGNALFD4: u32 = 289;
pub const EVENTFD2: u32 = 290;
pub const EPOLL_CREATE1: u32 = 291;
pub const DUP3: u32 = 292;
pub const PIPE2: u32 = 293;
pub const INOTIFY_INIT1: u32 = 294;
pub const PERF_EVENT_OPEN: u32 = 298;
pub const RECVMMSG: u32 = 299;
pub const FANOTIFY_INIT: u32 = 300;
pub const FANOTIFY_MARK: u32 = 301;
pub const OPEN_BY_HANDLE_AT: u32 = 304;
pub const RENAMEAT2: u32 = 316;
pub const SECCOMP: u32 = 317;
pub const MEMFD_CREATE: u32 = 319;
pub const BPF: u32 = 321;
pub const USERFAULTFD: u32 = 323;
pub const IO_URING_SETUP: u32 = 425;
pub const OPEN_TREE: u32 = 428;
pub const FSOPEN: u32 = 430;
pub const FSMOUNT: u32 = 432;
pub const FSPICK: u32 = 433;
pub const PIDFD_OPEN: u32 = 434;
pub const CLONE3: u32 = 435;
pub const CLOSE_RANGE: u32 = 436;
pub const OPENAT2: u32 = 437;
pub const PIDFD_GETFD: u32 = 438;
pub const LANDLOCK_CREATE_RULESET: u32 = 444;
pub const MEMFD_SECRET: u32 = 447;
pub const OPEN_TREE_ATTR: u32 = 467;

/// Every traced syscall, in number order.
pub const ALL: &[SyscallInfo] = &[
    fd(with_path(OPEN, "open", 0)),
    plain(CLOSE, "close"),
    mapping(MMAP, "mmap"),
    plain(MUNMAP, "munmap"),
    mapping(BRK, "brk"),
    fd(with_fd_pair(PIPE, "pipe", 0)),
    mapping(MREMAP, "mremap"),
    // SysV shared memory: the ledger does not size the segments, only notes which stay
    // attached (see the mapping class's doubt).
    attaching(SHMAT, "shmat"),
    fd(plain(DUP, "dup")),
    fd(plain(DUP2, "dup2")),
    fd(plain(SOCKET, "socket")),
    fd(plain(ACCEPT, "accept")),
    delivering(RECVMSG, "recvmsg", Delivery::ControlMessage),
    fd(with_fd_pair(SOCKETPAIR, "socketpair", 3)),
    delivering(GETSOCKOPT, "getsockopt", Delivery::IntAt(3)),
    delivering(CLONE, "clone", Delivery::IntAt(2)),
    plain(SHMDT, "shmdt"),
    fd(plain(FCNTL, "fcntl")),
    with_path(CHDIR, "chdir", 0),
    plain(FCHDIR, "fchdir"),
    with_two_paths(RENAME, "rename", 0, 1),
    with_path(MKDIR, "mkdir", 0),
    with_path(RMDIR, "rmdir", 0),
    fd(with_path(CREAT, "creat", 0)),
    with_path(LINK, "link", 1),
    with_path(UNLINK, "unlink", 0),
    with_path(SYMLINK, "symlink", 1),
    with_path(MKNOD, "mknod", 0),
    fd(plain(EPOLL_CREATE, "epoll_create")),
    fd(with_path(MQ_OPEN, "mq_open", 0)),
    fd(plain(INOTIFY_INIT, "inotify_init")),
    with_path(INOTIFY_ADD_WATCH, "inotify_add_watch", 1),
    plain(INOTIFY_RM_WATCH, "inotify_rm_watch"),
    fd(with_path(OPENAT, "openat", 1)),
    with_path(MKDIRAT, "mkdirat", 1),
    with_path(MKNODAT, "mknodat", 1),
    with_path(UNLINKAT, "unlinkat", 1),
    with_two_paths(RENAMEAT, "renameat", 1, 3),
    with_path(LINKAT, "linkat", 3),
    with_path(SYMLINKAT, "symlinkat", 2),
    fd(plain(SIGNALFD, "signalfd")),
    fd(plain(TIMERFD_CREATE, "timerfd_create")),
    fd(plain(EVENTFD, "eventfd")),
    fd(plain(ACCEPT4, "accept4")),
    fd(plain(SIGNALFD4, "signalfd4")),
    fd(plain(EVENTFD2, "eventfd2")),
    fd(plain(EPOLL_CREATE1, "epoll_create1")),
    fd(plain(DUP3, "dup3")),
    fd(with_fd_pair(PIPE2, "pipe2", 0)),
    fd(plain(INOTIFY_INIT1, "inotify_init1")),
    fd(plain(PERF_EVENT_OPEN, "perf_event_open")),
    delivering(RECVMMSG, "recvmmsg", Delivery::ControlMessages),
    fd(plain(FANOTIFY_INIT, "fanotify_init")),
    with_path(FANOTIFY_MARK, "fanotify_mark", 4),
    fd(plain(OPEN_BY_HANDLE_AT, "open_by_handle_at")),
    with_two_paths(RENAMEAT2, "renameat2", 1, 3),
    fd(plain(SECCOMP, "seccomp")),
    fd(with_path(MEMFD_CREATE, "memfd_create", 0)),
    fd(plain(BPF, "bpf")),
    fd(plain(USERFAULTFD, "userfaultfd")),
    fd(plain(IO_URING_SETUP, "io_uring_setup")),
    fd(with_path(OPEN_TREE, "open_tree", 1)),
    fd(with_path(FSOPEN, "fsopen", 0)),
    fd(plain(FSMOUNT, "fsmount")),
    fd(with_path(FSPICK, "fspick", 1)),
    fd(plain(PIDFD_OPEN, "pidfd_open")),
    delivering(CLONE3, "clone3", Delivery::Clone3Pidfd),
    plain(CLOSE_RANGE, "close_range"),
    fd(with_path(OPENAT2, "openat2", 1)),
    fd(plain(PIDFD_GETFD, "pidfd_getfd")),
    fd(plain(LANDLOCK_CREATE_RULESET, "landlock_create_ruleset")),
    fd(plain(MEMFD_SECRET, "memfd_secret")),
    fd(with_path(OPEN_TREE_ATTR, "open_tree_attr", 1)),
];

/// Looks a syscall up by number. `None` means leakscope does not trace it.
///
/// Written as a `match` rather than a search of [`ALL`] so the eBPF verifier sees a short,
/// loop-free branch on the hot path of every syscall.
#[inline(always)]
pub const fn info(nr: u32) -> Option<SyscallInfo> {
    let i = match nr {
        OPEN => 0,
        CLOSE => 1,
        MMAP => 2,
        MUNMAP => 3,
        BRK => 4,
        PIPE => 5,
        MREMAP => 6,
        SHMAT => 7,
        DUP => 8,
        DUP2 => 9,
        SOCKET => 10,
        ACCEPT => 11,
        RECVMSG => 12,
        SOCKETPAIR => 13,
        GETSOCKOPT => 14,
        CLONE => 15,
        SHMDT => 16,
        FCNTL => 17,
        CHDIR => 18,
        FCHDIR => 19,
        RENAME => 20,
        MKDIR => 21,
        RMDIR => 22,
        CREAT => 23,
        LINK => 24,
        UNLINK => 25,
        SYMLINK => 26,
        MKNOD => 27,
        EPOLL_CREATE => 28,
        MQ_OPEN => 29,
        INOTIFY_INIT => 30,
        INOTIFY_ADD_WATCH => 31,
        INOTIFY_RM_WATCH => 32,
        OPENAT => 33,
        MKDIRAT => 34,
        MKNODAT => 35,
        UNLINKAT => 36,
        RENAMEAT => 37,
        LINKAT => 38,
        SYMLINKAT => 39,
        SIGNALFD => 40,
        TIMERFD_CREATE => 41,
        EVENTFD => 42,
        ACCEPT4 => 43,
        SIGNALFD4 => 44,
        EVENTFD2 => 45,
        EPOLL_CREATE1 => 46,
        DUP3 => 47,
        PIPE2 => 48,
        INOTIFY_INIT1 => 49,
        PERF_EVENT_OPEN => 50,
        RECVMMSG => 51,
        FANOTIFY_INIT => 52,
        FANOTIFY_MARK => 53,
        OPEN_BY_HANDLE_AT => 54,
        RENAMEAT2 => 55,
        SECCOMP => 56,
        MEMFD_CREATE => 57,
        BPF => 58,
        USERFAULTFD => 59,
        IO_URING_SETUP => 60,
        OPEN_TREE => 61,
        FSOPEN => 62,
        FSMOUNT => 63,
        FSPICK => 64,
        PIDFD_OPEN => 65,
        CLONE3 => 66,
        CLOSE_RANGE => 67,
        OPENAT2 => 68,
        PIDFD_GETFD => 69,
        LANDLOCK_CREATE_RULESET => 70,
        MEMFD_SECRET => 71,
        OPEN_TREE_ATTR => 72,
        _ => return None,
    };
    Some(ALL[i])
}

/// Whether a return value means the call succeeded (the kernel's `IS_ERR_VALUE` rule for
/// address returns; any negative value otherwise).
#[inline(always)]
pub const fn succeeded(info: &SyscallInfo, ret: i64) -> bool {
    if info.returns_address {
        !(ret < 0 && ret >= -4095)
    } else {
        ret >= 0
    }
}

/// fcntl commands that create an fd (the others only read or set flags).
const F_DUPFD: u64 = 0;
const F_DUPFD_CLOEXEC: u64 = 1030;

/// Whether a successful call gets a stack record of its own (see [`SyscallInfo::fd_stack`]):
/// the calls that return new fds, and of fcntl only the commands that do (F_DUPFD*).
#[inline(always)]
pub const fn fd_stack_wanted(info: &SyscallInfo, args: &[u64; 6]) -> bool {
    info.fd_stack && (info.nr != FCNTL || args[1] == F_DUPFD || args[1] == F_DUPFD_CLOEXEC)
}

/// Whether `nr` only changes names on disk, the working directory or inotify/fanotify
/// watches: it never installs an fd, a mapping or heap, so its failure is no failed
/// acquisition (a failed mkdir or unlink is routine: EEXIST, ENOENT).
#[inline(always)]
pub const fn acquires_no_fd_memory_or_heap(nr: u32) -> bool {
    matches!(
        nr,
        CHDIR
            | FCHDIR
            | RENAME
            | MKDIR
            | RMDIR
            | LINK
            | UNLINK
            | SYMLINK
            | MKNOD
            | INOTIFY_ADD_WATCH
            | INOTIFY_RM_WATCH
            | MKDIRAT
            | MKNODAT
            | UNLINKAT
            | RENAMEAT
            | LINKAT
            | SYMLINKAT
            | FANOTIFY_MARK
            | RENAMEAT2
    )
}

/// Whether a *failure* of syscall `nr` is a failed acquisition, worth an `EventKind::Failed`
/// record: every traced call that would have created an fd, a mapping or heap, but not the
/// releases (close, munmap, close_range), nor the fcntl commands that only read or set
/// flags, nor the calls that change only the filesystem or watches. `arg1` is the second
/// argument register (fcntl's command).
#[inline(always)]
pub const fn failure_is_acquisition(nr: u32, arg1: u64) -> bool {
    if acquires_no_fd_memory_or_heap(nr) {
        return false;
    }
    match nr {
        CLOSE | MUNMAP | CLOSE_RANGE | SHMAT | SHMDT => false,
        FCNTL => arg1 == F_DUPFD || arg1 == F_DUPFD_CLOEXEC,
        _ => info(nr).is_some(),
    }
}

/// `-errno` of "no space left on device": a full file system, or inotify's
/// `max_user_watches` reached.
pub const ENOSPC: i64 = 28;
/// `-errno` of "disk quota exceeded".
pub const EDQUOT: i64 = 122;

/// Whether positive `errno` says the file system (or inotify) ran out of room: ENOSPC or
/// EDQUOT.
#[inline(always)]
pub const fn is_out_of_room(errno: i64) -> bool {
    errno == ENOSPC || errno == EDQUOT
}

/// Whether a failed call of `nr` with return value `ret` ran out of room for a name on disk
/// or a watch (ENOSPC, EDQUOT). Those failures are the files and watches classes' limit
/// (as EMFILE is the fd class's), so they are worth a record even though a failed mkdir
/// or unlink is otherwise routine and left out.
#[inline(always)]
pub const fn failure_is_out_of_room(nr: u32, ret: i64) -> bool {
    is_out_of_room(-ret)
        && matches!(
            nr,
            RENAME
                | MKDIR
                | LINK
                | SYMLINK
                | MKNOD
                | INOTIFY_ADD_WATCH
                | MKDIRAT
                | MKNODAT
                | RENAMEAT
                | LINKAT
                | SYMLINKAT
                | FANOTIFY_MARK
                | RENAMEAT2
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_and_table_agree() {
        for (i, entry) in ALL.iter().enumerate() {
            assert_eq!(info(entry.nr), Some(*entry), "entry {i} ({})", entry.name);
            if i > 0 {
                assert!(ALL[i - 1].nr < entry.nr, "ALL must stay in number order");
            }
        }
        assert_eq!(info(0), None, "read is not traced");
    }

    #[test]
    fn only_calls_that_create_mappings_or_grow_the_heap_copy_the_user_stack() {
        let stacked: [u32; 3] = [MMAP, BRK, MREMAP];
        for entry in ALL {
            assert_eq!(
                entry.take_stack,
                stacked.contains(&entry.nr),
                "{}",
                entry.name
            );
        }
    }

    #[test]
    fn calls_that_return_new_fds_send_their_stack_alone() {
        // Every traced call returns a new fd (or two) but these: the releases, the calls
        // that change only names on disk or watches, the mapping calls (their stack comes
        // with their own record), and the calls that deliver fds elsewhere.
        for entry in ALL {
            let makes_no_fd_itself = entry.take_stack
                || acquires_no_fd_memory_or_heap(entry.nr)
                || entry.delivery != Delivery::None
                || matches!(entry.nr, CLOSE | MUNMAP | CLOSE_RANGE | SHMAT | SHMDT);
            assert_eq!(entry.fd_stack, !makes_no_fd_itself, "{}", entry.name);
            // A call has its stack one way or the other, never both.
            assert!(!(entry.fd_stack && entry.take_stack), "{}", entry.name);
        }
        let fcntl = info(FCNTL).unwrap();
        let with_cmd = |cmd| [3, cmd, 0, 0, 0, 0];
        assert!(fd_stack_wanted(&fcntl, &with_cmd(F_DUPFD_CLOEXEC)));
        assert!(fd_stack_wanted(&fcntl, &with_cmd(F_DUPFD)));
        assert!(
            !fd_stack_wanted(&fcntl, &with_cmd(2)),
            "F_SETFD makes no fd"
        );
        assert!(fd_stack_wanted(&info(OPENAT).unwrap(), &[0; 6]));
        assert!(!fd_stack_wanted(&info(CLOSE).unwrap(), &[0; 6]));
    }

    #[test]
    fn address_errors_follow_is_err_value() {
        let mmap = info(MMAP).unwrap();
        assert!(succeeded(&mmap, 0x7f00_0000_0000));
        assert!(!succeeded(&mmap, -12));
        let close = info(CLOSE).unwrap();
        assert!(succeeded(&close, 0));
        assert!(!succeeded(&close, -9));
    }

    #[test]
    fn releases_and_flag_fcntls_are_not_acquisitions() {
        assert!(failure_is_acquisition(OPENAT, 0));
        assert!(failure_is_acquisition(MMAP, 0));
        assert!(failure_is_acquisition(FCNTL, F_DUPFD_CLOEXEC));
        assert!(!failure_is_acquisition(FCNTL, 2)); // F_SETFD
        for release in [CLOSE, MUNMAP, CLOSE_RANGE] {
            assert!(!failure_is_acquisition(release, 0));
        }
        assert!(!failure_is_acquisition(0, 0), "read is not traced");
    }

    #[test]
    fn only_running_out_of_room_is_a_failure_worth_sending_for_names_and_watches() {
        assert!(failure_is_out_of_room(MKDIRAT, -ENOSPC));
        assert!(failure_is_out_of_room(INOTIFY_ADD_WATCH, -ENOSPC));
        assert!(failure_is_out_of_room(LINKAT, -EDQUOT));
        assert!(!failure_is_out_of_room(MKDIRAT, -17), "EEXIST is routine");
        assert!(
            !failure_is_out_of_room(UNLINKAT, -ENOSPC),
            "a removal takes no room"
        );
        assert!(
            !failure_is_out_of_room(OPENAT, -ENOSPC),
            "opens are judged as fds"
        );
    }

    /// (number, name, first path argument, second path argument) of every call that
    /// changes names on disk, the working directory or watches.
    const FILESYSTEM_CALLS: &[(u32, &str, Option<u8>, Option<u8>)] = &[
        (80, "chdir", Some(0), None),
        (81, "fchdir", None, None),
        (82, "rename", Some(0), Some(1)),
        (83, "mkdir", Some(0), None),
        (84, "rmdir", Some(0), None),
        (86, "link", Some(1), None),
        (87, "unlink", Some(0), None),
        (88, "symlink", Some(1), None),
        (133, "mknod", Some(0), None),
        (254, "inotify_add_watch", Some(1), None),
        (255, "inotify_rm_watch", None, None),
        (258, "mkdirat", Some(1), None),
        (259, "mknodat", Some(1), None),
        (263, "unlinkat", Some(1), None),
        (264, "renameat", Some(1), Some(3)),
        (265, "linkat", Some(3), None),
        (266, "symlinkat", Some(2), None),
        (301, "fanotify_mark", Some(4), None),
        (316, "renameat2", Some(1), Some(3)),
    ];

    #[test]
    fn filesystem_calls_capture_the_right_paths_and_are_no_acquisitions() {
        for &(nr, name, path, second) in FILESYSTEM_CALLS {
            let entry = info(nr).unwrap_or_else(|| panic!("{name} ({nr}) is not traced"));
            assert_eq!(entry.name, name, "{nr}");
            assert_eq!(entry.path_arg, path, "{name}: path argument");
            assert_eq!(
                entry.second_path_arg, second,
                "{name}: second path argument"
            );
            assert_eq!(entry.fd_pair_arg, None, "{name}");
            assert_eq!(entry.delivery, Delivery::None, "{name}");
            assert!(!entry.take_stack && !entry.returns_address, "{name}");
            assert!(acquires_no_fd_memory_or_heap(nr), "{name}");
            assert!(!failure_is_acquisition(nr, 0), "{name}");
            assert!(succeeded(&entry, 0) && !succeeded(&entry, -2), "{name}");
        }
        // Only the rename family carries a second path.
        for entry in ALL {
            let listed = FILESYSTEM_CALLS.iter().any(|c| c.0 == entry.nr);
            assert!(entry.second_path_arg.is_none() || listed, "{}", entry.name);
            assert_eq!(
                acquires_no_fd_memory_or_heap(entry.nr),
                listed,
                "{}",
                entry.name
            );
        }
    }
}
