//! The syscalls leakscope traces, by x86_64 number, and what the kernel side must capture
//! for each. This table is the single source of truth: the kernel filter and the userspace
//! decoder both call [`info`].

/// What to capture for a traced syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallInfo {
    pub nr: u32,
    pub name: &'static str,
    /// Which argument holds a user-space path or name to copy, if any.
    pub path_arg: Option<u8>,
    /// Which argument points at an `int[2]` the kernel filled with two new fds.
    pub fd_pair_arg: Option<u8>,
    /// Memory-mapping calls get a user stack, so leaked mappings can be placed.
    pub take_stack: bool,
    /// Whether the return value is an address (mmap, mremap, brk), where errors are
    /// `-4095..=-1` and everything else, even "negative" high addresses, is success.
    pub returns_address: bool,
}

const fn plain(nr: u32, name: &'static str) -> SyscallInfo {
    SyscallInfo {
        nr,
        name,
        path_arg: None,
        fd_pair_arg: None,
        take_stack: false,
        returns_address: false,
    }
}
const fn with_path(nr: u32, name: &'static str, arg: u8) -> SyscallInfo {
    SyscallInfo {
        path_arg: Some(arg),
        ..plain(nr, name)
    }
}
const fn with_fd_pair(nr: u32, name: &'static str, arg: u8) -> SyscallInfo {
    SyscallInfo {
        fd_pair_arg: Some(arg),
        ..plain(nr, name)
    }
}
const fn mapping(nr: u32, name: &'static str, returns_address: bool) -> SyscallInfo {
    SyscallInfo {
        take_stack: true,
        returns_address,
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
pub const DUP: u32 = 32;
pub const DUP2: u32 = 33;
pub const SOCKET: u32 = 41;
pub const ACCEPT: u32 = 43;
pub const SOCKETPAIR: u32 = 53;
pub const FCNTL: u32 = 72;
pub const CREAT: u32 = 85;
pub const EPOLL_CREATE: u32 = 213;
pub const INOTIFY_INIT: u32 = 253;
pub const OPENAT: u32 = 257;
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
pub const FANOTIFY_INIT: u32 = 300;
pub const OPEN_BY_HANDLE_AT: u32 = 304;
pub const MEMFD_CREATE: u32 = 319;
pub const USERFAULTFD: u32 = 323;
pub const IO_URING_SETUP: u32 = 425;
pub const PIDFD_OPEN: u32 = 434;
pub const CLOSE_RANGE: u32 = 436;
pub const OPENAT2: u32 = 437;
pub const PIDFD_GETFD: u32 = 438;

/// Every traced syscall, in number order.
pub const ALL: &[SyscallInfo] = &[
    with_path(OPEN, "open", 0),
    plain(CLOSE, "close"),
    mapping(MMAP, "mmap", true),
    mapping(MUNMAP, "munmap", false),
    mapping(BRK, "brk", true),
    with_fd_pair(PIPE, "pipe", 0),
    mapping(MREMAP, "mremap", true),
    plain(DUP, "dup"),
    plain(DUP2, "dup2"),
    plain(SOCKET, "socket"),
    plain(ACCEPT, "accept"),
    with_fd_pair(SOCKETPAIR, "socketpair", 3),
    plain(FCNTL, "fcntl"),
    with_path(CREAT, "creat", 0),
    plain(EPOLL_CREATE, "epoll_create"),
    plain(INOTIFY_INIT, "inotify_init"),
    with_path(OPENAT, "openat", 1),
    plain(SIGNALFD, "signalfd"),
    plain(TIMERFD_CREATE, "timerfd_create"),
    plain(EVENTFD, "eventfd"),
    plain(ACCEPT4, "accept4"),
    plain(SIGNALFD4, "signalfd4"),
    plain(EVENTFD2, "eventfd2"),
    plain(EPOLL_CREATE1, "epoll_create1"),
    plain(DUP3, "dup3"),
    with_fd_pair(PIPE2, "pipe2", 0),
    plain(INOTIFY_INIT1, "inotify_init1"),
    plain(PERF_EVENT_OPEN, "perf_event_open"),
    plain(FANOTIFY_INIT, "fanotify_init"),
    plain(OPEN_BY_HANDLE_AT, "open_by_handle_at"),
    with_path(MEMFD_CREATE, "memfd_create", 0),
    plain(USERFAULTFD, "userfaultfd"),
    plain(IO_URING_SETUP, "io_uring_setup"),
    plain(PIDFD_OPEN, "pidfd_open"),
    plain(CLOSE_RANGE, "close_range"),
    with_path(OPENAT2, "openat2", 1),
    plain(PIDFD_GETFD, "pidfd_getfd"),
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
        DUP => 7,
        DUP2 => 8,
        SOCKET => 9,
        ACCEPT => 10,
        SOCKETPAIR => 11,
        FCNTL => 12,
        CREAT => 13,
        EPOLL_CREATE => 14,
        INOTIFY_INIT => 15,
        OPENAT => 16,
        SIGNALFD => 17,
        TIMERFD_CREATE => 18,
        EVENTFD => 19,
        ACCEPT4 => 20,
        SIGNALFD4 => 21,
        EVENTFD2 => 22,
        EPOLL_CREATE1 => 23,
        DUP3 => 24,
        PIPE2 => 25,
        INOTIFY_INIT1 => 26,
        PERF_EVENT_OPEN => 27,
        FANOTIFY_INIT => 28,
        OPEN_BY_HANDLE_AT => 29,
        MEMFD_CREATE => 30,
        USERFAULTFD => 31,
        IO_URING_SETUP => 32,
        PIDFD_OPEN => 33,
        CLOSE_RANGE => 34,
        OPENAT2 => 35,
        PIDFD_GETFD => 36,
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

/// Whether a *failure* of syscall `nr` is a failed acquisition, worth a `kind::FAILED`
/// record: every traced call that would have created an fd, a mapping or heap, but not the
/// releases (close, munmap, close_range), nor the fcntl commands that only read or set
/// flags. `arg1` is the second argument register (fcntl's command).
#[inline(always)]
pub const fn failure_is_acquisition(nr: u32, arg1: u64) -> bool {
    match nr {
        CLOSE | MUNMAP | CLOSE_RANGE => false,
        FCNTL => arg1 == F_DUPFD || arg1 == F_DUPFD_CLOEXEC,
        _ => info(nr).is_some(),
    }
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
}
