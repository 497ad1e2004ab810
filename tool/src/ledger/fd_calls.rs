//! What each fd-related syscall means for a process's fd table, decoded from raw
//! registers. Pure: the ledger applies the resulting [`FdOp`].

use super::sites::{FdKind, PidfdDelivery};
use crate::event::Syscall;
use leakscope_common::fd_arrival::{self, MSG_CMSG_CLOEXEC, bpf_cmd};
use leakscope_common::open_flags::O_CLOEXEC;
use leakscope_common::syscalls as nr;

pub(crate) const AT_FDCWD: i32 = -100;
const CLOSE_RANGE_CLOEXEC: u64 = 4;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_DUPFD_CLOEXEC: u64 = 1030;
const FD_CLOEXEC: u64 = 1;
const MFD_CLOEXEC: u64 = 1;
const FAN_CLOEXEC: u64 = 1;
const PERF_FLAG_FD_CLOEXEC: u64 = 8;
/// FSOPEN_CLOEXEC, FSPICK_CLOEXEC and FSMOUNT_CLOEXEC are all 1 (linux/mount.h);
/// OPEN_TREE_CLOEXEC is O_CLOEXEC.
const FS_CLOEXEC: u64 = 1;

/// The effect of one successful fd syscall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FdOp {
    /// A path was opened as `fd`; `dirfd` is what a relative path is relative to.
    Open {
        fd: i32,
        dirfd: i32,
        path: String,
        cloexec: bool,
    },
    /// A new fd of a kind without a path (a socket, an eventfd, a memfd, ...).
    New {
        fd: i32,
        kind: FdKind,
        cloexec: bool,
    },
    /// pipe/pipe2/socketpair: two new fds of one kind.
    Pair {
        fds: [i32; 2],
        kind: FdKind,
        cloexec: bool,
    },
    /// pipe/pipe2/socketpair succeeded, but the kernel could not read which two fds it
    /// made (counted as a drop there). Nothing can be installed: guessing would be wrong.
    PairUnknown,
    Close {
        fd: i32,
    },
    /// close_range; with `cloexec_only` it only marks the fds CLOEXEC.
    CloseRange {
        first: u32,
        last: u32,
        cloexec_only: bool,
    },
    /// dup/dup2/dup3/fcntl(F_DUPFD*): `new` becomes a copy of `old`, implicitly closing
    /// whatever `new` was (dup2/dup3 onto an open fd).
    Dup {
        old: i32,
        new: i32,
        cloexec: bool,
    },
    SetCloexec {
        fd: i32,
        on: bool,
    },
    /// Fds installed beyond the return value: received in control messages, or a pidfd
    /// written to user memory. `unread` deliveries could not be read (see
    /// [`crate::delivered::Delivered::unread`]).
    Received {
        fds: Vec<ReceivedFd>,
        unread: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReceivedFd {
    pub(crate) fd: i32,
    /// What it is and how it arrived: the site of its record.
    pub(crate) kind: FdKind,
    pub(crate) cloexec: bool,
}

fn flag(value: u64, bit: u64) -> bool {
    value & bit != 0
}

fn fd_arg(value: u64) -> i32 {
    value as u32 as i32
}

/// The class a failed call of `nr` was trying to acquire: fd-returning calls are fds,
/// mmap/mremap are mappings, brk is the heap. `None` for calls that acquire nothing.
pub(crate) fn failure_class(syscall: u32, errno: i32) -> Option<crate::ledger::ClassKind> {
    use crate::ledger::ClassKind;
    let out_of_room = nr::failure_is_out_of_room(syscall, -i64::from(errno));
    match syscall {
        nr::MMAP | nr::MREMAP => Some(ClassKind::Mapping),
        nr::BRK => Some(ClassKind::Heap),
        nr::CLOSE | nr::MUNMAP | nr::CLOSE_RANGE => None,
        nr::INOTIFY_ADD_WATCH | nr::FANOTIFY_MARK if out_of_room => Some(ClassKind::Watch),
        _ if out_of_room => Some(ClassKind::File),
        // An open that could not create its file for want of room failed at the files
        // class's limit, not the fd table's.
        nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::CREAT if nr::is_out_of_room(errno.into()) => {
            Some(ClassKind::File)
        }
        other if nr::acquires_no_fd_memory_or_heap(other) => None,
        // Whether a failed call of these was after an fd depends on arguments a failure
        // record does not keep (a bpf lookup, a clone without CLONE_PIDFD, a recvmsg that
        // would block): counting them would drown the real fd failures.
        nr::RECVMSG
        | nr::RECVMMSG
        | nr::GETSOCKOPT
        | nr::CLONE
        | nr::CLONE3
        | nr::BPF
        | nr::SECCOMP
        | nr::LANDLOCK_CREATE_RULESET => None,
        other => nr::info(other).map(|_| ClassKind::Fd),
    }
}

/// Decodes a successful syscall; `None` for calls that do not touch the fd table.
pub(crate) fn decode(call: &Syscall) -> Option<FdOp> {
    let a = &call.args;
    let ret = call.ret as i32;
    let path = || captured_path(call);
    let new = |kind: FdKind, cloexec: bool| new_fd(call, kind, cloexec);
    let anon = |name: &str, cloexec: bool| new(FdKind::anon(name), cloexec);
    match call.nr {
        nr::OPEN => Some(FdOp::Open {
            fd: ret,
            dirfd: AT_FDCWD,
            path: path(),
            cloexec: flag(a[1], O_CLOEXEC),
        }),
        // creat is open(O_CREAT|O_WRONLY|O_TRUNC): never CLOEXEC.
        nr::CREAT => Some(FdOp::Open {
            fd: ret,
            dirfd: AT_FDCWD,
            path: path(),
            cloexec: false,
        }),
        nr::OPENAT => Some(FdOp::Open {
            fd: ret,
            dirfd: fd_arg(a[0]),
            path: path(),
            cloexec: flag(a[2], O_CLOEXEC),
        }),
        // openat2's flags live in its `struct open_how`, which the kernel side reads. When
        // that read failed, "not CLOEXEC" keeps the fd alive across exec, which can only
        // over-report, never hide a leak.
        nr::OPENAT2 => Some(FdOp::Open {
            fd: ret,
            dirfd: fd_arg(a[0]),
            path: path(),
            cloexec: call
                .open
                .and_then(|open| open.flags)
                .is_some_and(|flags| flag(u64::from(flags), O_CLOEXEC)),
        }),
        nr::OPEN_BY_HANDLE_AT => new(FdKind::ByHandle, flag(a[2], O_CLOEXEC)),
        nr::CLOSE => Some(FdOp::Close { fd: fd_arg(a[0]) }),
        nr::CLOSE_RANGE => Some(FdOp::CloseRange {
            first: a[0] as u32,
            last: a[1] as u32,
            cloexec_only: flag(a[2], CLOSE_RANGE_CLOEXEC),
        }),
        nr::DUP => Some(FdOp::Dup {
            old: fd_arg(a[0]),
            new: ret,
            cloexec: false,
        }),
        nr::DUP2 => Some(FdOp::Dup {
            old: fd_arg(a[0]),
            new: ret,
            cloexec: false,
        }),
        nr::DUP3 => Some(FdOp::Dup {
            old: fd_arg(a[0]),
            new: ret,
            cloexec: flag(a[2], O_CLOEXEC),
        }),
        nr::FCNTL => match a[1] {
            F_DUPFD => Some(FdOp::Dup {
                old: fd_arg(a[0]),
                new: ret,
                cloexec: false,
            }),
            F_DUPFD_CLOEXEC => Some(FdOp::Dup {
                old: fd_arg(a[0]),
                new: ret,
                cloexec: true,
            }),
            F_SETFD => Some(FdOp::SetCloexec {
                fd: fd_arg(a[0]),
                on: flag(a[2], FD_CLOEXEC),
            }),
            _ => None,
        },
        nr::SOCKET => new(FdKind::Socket, flag(a[1], O_CLOEXEC)),
        nr::ACCEPT => new(FdKind::Socket, false),
        nr::ACCEPT4 => new(FdKind::Socket, flag(a[3], O_CLOEXEC)),
        nr::SOCKETPAIR => pair(call, FdKind::Socket, flag(a[1], O_CLOEXEC)),
        nr::PIPE => pair(call, FdKind::Pipe, false),
        nr::PIPE2 => pair(call, FdKind::Pipe, flag(a[1], O_CLOEXEC)),
        nr::EVENTFD => anon("eventfd", false),
        nr::EVENTFD2 => anon("eventfd", flag(a[1], O_CLOEXEC)),
        nr::EPOLL_CREATE => anon("eventpoll", false),
        nr::EPOLL_CREATE1 => anon("eventpoll", flag(a[0], O_CLOEXEC)),
        // signalfd on an existing fd (arg0 != -1) only changes its mask: no new fd.
        nr::SIGNALFD if fd_arg(a[0]) == -1 => anon("signalfd", false),
        nr::SIGNALFD4 if fd_arg(a[0]) == -1 => anon("signalfd", flag(a[3], O_CLOEXEC)),
        nr::TIMERFD_CREATE => anon("timerfd", flag(a[1], O_CLOEXEC)),
        nr::INOTIFY_INIT => anon("inotify", false),
        nr::INOTIFY_INIT1 => anon("inotify", flag(a[0], O_CLOEXEC)),
        nr::FANOTIFY_INIT => anon("fanotify", flag(a[0], FAN_CLOEXEC)),
        nr::USERFAULTFD => anon("userfaultfd", flag(a[0], O_CLOEXEC)),
        nr::PERF_EVENT_OPEN => anon("perf_event", flag(a[4], PERF_FLAG_FD_CLOEXEC)),
        // The kernel always creates these CLOEXEC.
        nr::IO_URING_SETUP => anon("io_uring", true),
        nr::PIDFD_OPEN => anon("pidfd", true),
        nr::PIDFD_GETFD => new(FdKind::FromAnotherProcess, true),
        nr::MEMFD_CREATE => new(FdKind::Memfd(path().into()), flag(a[1], MFD_CLOEXEC)),
        _ => decode_newer(call),
    }
}

/// The fd sources added with fd-arrival tracking: conditional ones (by argument), calls
/// that deliver fds beyond their return value, and the mount API.
fn decode_newer(call: &Syscall) -> Option<FdOp> {
    let a = &call.args;
    if !fd_arrival::wanted(call.nr, a, call.ret) {
        return None;
    }
    let path = || captured_path(call);
    let new = |kind: FdKind, cloexec: bool| new_fd(call, kind, cloexec);
    match call.nr {
        // POSIX: message queue descriptors close on exec; Linux installs them O_CLOEXEC.
        nr::MQ_OPEN => new(FdKind::MessageQueue(path().into()), true),
        // Every bpf fd is created O_CLOEXEC.
        nr::BPF => new(bpf_kind(a[0]), true),
        nr::SECCOMP => new(FdKind::anon("seccomp notify"), true),
        nr::LANDLOCK_CREATE_RULESET => new(FdKind::anon("landlock-ruleset"), true),
        nr::MEMFD_SECRET => new(FdKind::anon("secretmem"), flag(a[0], O_CLOEXEC)),
        nr::OPEN_TREE | nr::OPEN_TREE_ATTR => {
            new(FdKind::MountTree(path().into()), flag(a[2], O_CLOEXEC))
        }
        nr::FSOPEN => new(FdKind::FsContext(path().into()), flag(a[1], FS_CLOEXEC)),
        nr::FSPICK => new(FdKind::FsContext(path().into()), flag(a[2], FS_CLOEXEC)),
        nr::FSMOUNT => new(FdKind::anon("mount"), flag(a[1], FS_CLOEXEC)),
        nr::RECVMSG => received(call, flag(a[2], MSG_CMSG_CLOEXEC)),
        nr::RECVMMSG => received(call, flag(a[3], MSG_CMSG_CLOEXEC)),
        nr::CLONE | nr::CLONE3 | nr::GETSOCKOPT => received(call, true),
        _ => None,
    }
}

/// The path (or name) an open-family call was given, as the kernel captured it.
fn captured_path(call: &Syscall) -> String {
    call.path.as_ref().map(|p| p.display()).unwrap_or_default()
}

/// `call` returned a new fd of `kind`.
fn new_fd(call: &Syscall, kind: FdKind, cloexec: bool) -> Option<FdOp> {
    Some(FdOp::New {
        fd: call.ret as i32,
        kind,
        cloexec,
    })
}

fn bpf_kind(cmd: u64) -> FdKind {
    match cmd {
        bpf_cmd::MAP_CREATE | bpf_cmd::MAP_GET_FD_BY_ID => FdKind::anon("bpf-map"),
        bpf_cmd::PROG_LOAD | bpf_cmd::PROG_GET_FD_BY_ID => FdKind::anon("bpf-prog"),
        bpf_cmd::BTF_LOAD | bpf_cmd::BTF_GET_FD_BY_ID => FdKind::anon("btf"),
        bpf_cmd::LINK_CREATE | bpf_cmd::LINK_GET_FD_BY_ID | bpf_cmd::RAW_TRACEPOINT_OPEN => {
            FdKind::anon("bpf-link")
        }
        bpf_cmd::OBJ_GET => FdKind::BpfPinned,
        bpf_cmd::ENABLE_STATS => FdKind::anon("bpf-stats"),
        bpf_cmd::ITER_CREATE => FdKind::BpfIterator,
        bpf_cmd::TOKEN_CREATE => FdKind::anon("bpf-token"),
        _ => FdKind::Bpf,
    }
}

/// SCM_RIGHTS fds are CLOEXEC when the call asked (`rights_cloexec`); pidfds always are.
fn received(call: &Syscall, rights_cloexec: bool) -> Option<FdOp> {
    let delivered = call.delivered.as_ref()?;
    let pidfd = FdKind::DeliveredPidfd(match call.nr {
        nr::CLONE => PidfdDelivery::Clone,
        nr::CLONE3 => PidfdDelivery::Clone3,
        nr::GETSOCKOPT => PidfdDelivery::PeerPidfd,
        _ => PidfdDelivery::ScmPidfd,
    });
    let rights = delivered.rights.iter().map(|&fd| ReceivedFd {
        fd,
        kind: FdKind::Received,
        cloexec: rights_cloexec,
    });
    let pidfds = delivered.pidfds.iter().map(|&fd| ReceivedFd {
        fd,
        kind: pidfd.clone(),
        cloexec: true,
    });
    Some(FdOp::Received {
        fds: rights.chain(pidfds).collect(),
        unread: delivered.unread,
    })
}

fn pair(call: &Syscall, kind: FdKind, cloexec: bool) -> Option<FdOp> {
    Some(match call.fd_pair {
        Some(fds) => FdOp::Pair { fds, kind, cloexec },
        None => FdOp::PairUnknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::OpenInfo;
    use crate::ledger::test_support::call;

    #[test]
    fn openat_reads_dirfd_and_cloexec() {
        let op = decode(&call(nr::OPENAT, 5, [3, 0, O_CLOEXEC, 0, 0, 0]).with_path("x")).unwrap();
        assert_eq!(
            op,
            FdOp::Open {
                fd: 5,
                dirfd: 3,
                path: "x".into(),
                cloexec: true
            }
        );
    }

    #[test]
    fn a_failed_filesystem_or_watch_call_is_no_failed_acquisition() {
        use crate::ledger::ClassKind;
        assert_eq!(failure_class(nr::OPENAT, 24), Some(ClassKind::Fd));
        for filesystem_only in [
            nr::MKDIR,
            nr::UNLINKAT,
            nr::RENAMEAT2,
            nr::INOTIFY_ADD_WATCH,
        ] {
            assert_eq!(
                failure_class(filesystem_only, 17),
                None,
                "{filesystem_only}"
            );
        }
        // Running out of room is those classes' limit.
        assert_eq!(failure_class(nr::MKDIRAT, 28), Some(ClassKind::File));
        assert_eq!(failure_class(nr::LINKAT, 122), Some(ClassKind::File));
        assert_eq!(failure_class(nr::OPENAT, 28), Some(ClassKind::File));
        assert_eq!(
            failure_class(nr::INOTIFY_ADD_WATCH, 28),
            Some(ClassKind::Watch)
        );
    }

    #[test]
    fn creat_is_never_cloexec_and_openat2_as_its_open_how_says() {
        let creat = decode(&call(nr::CREAT, 4, [0, 0o777, 0, 0, 0, 0]).with_path("/f")).unwrap();
        assert!(matches!(
            creat,
            FdOp::Open {
                cloexec: false,
                dirfd: AT_FDCWD,
                ..
            }
        ));
        let openat2_with = |flags: Option<u64>| {
            let mut sample = call(nr::OPENAT2, 4, [AT_FDCWD as u64, 0, 0, 0, 0, 0]).with_path("/f");
            sample.open = Some(OpenInfo {
                flags: flags.map(|f| f as u32),
                created: None,
            });
            match decode(&sample).unwrap() {
                FdOp::Open {
                    cloexec,
                    dirfd: AT_FDCWD,
                    ..
                } => cloexec,
                other => panic!("{other:?}"),
            }
        };
        assert!(openat2_with(Some(O_CLOEXEC | 2)));
        assert!(!openat2_with(Some(2)));
        // Unreadable flags: "not CLOEXEC", which can only over-report.
        assert!(!openat2_with(None));
    }

    #[test]
    fn flag_arguments_per_call() {
        let cases = [
            (
                nr::SOCKET,
                [2, 1 | O_CLOEXEC, 0, 0, 0, 0],
                FdKind::Socket,
                true,
            ),
            (
                nr::ACCEPT4,
                [3, 0, 0, O_CLOEXEC, 0, 0],
                FdKind::Socket,
                true,
            ),
            (
                nr::EVENTFD2,
                [0, O_CLOEXEC, 0, 0, 0, 0],
                FdKind::anon("eventfd"),
                true,
            ),
            (
                nr::EPOLL_CREATE1,
                [O_CLOEXEC, 0, 0, 0, 0, 0],
                FdKind::anon("eventpoll"),
                true,
            ),
            (
                nr::TIMERFD_CREATE,
                [1, 0, 0, 0, 0, 0],
                FdKind::anon("timerfd"),
                false,
            ),
            (
                nr::INOTIFY_INIT1,
                [O_CLOEXEC, 0, 0, 0, 0, 0],
                FdKind::anon("inotify"),
                true,
            ),
            (
                nr::SIGNALFD4,
                [u64::MAX, 0, 8, O_CLOEXEC, 0, 0],
                FdKind::anon("signalfd"),
                true,
            ),
        ];
        for (number, args, kind, cloexec) in cases {
            let op = decode(&call(number, 9, args)).unwrap();
            assert_eq!(
                op,
                FdOp::New {
                    fd: 9,
                    kind,
                    cloexec
                },
                "syscall {number}"
            );
        }
        let memfd =
            decode(&call(nr::MEMFD_CREATE, 7, [0, 1, 0, 0, 0, 0]).with_path("cache")).unwrap();
        assert_eq!(
            memfd,
            FdOp::New {
                fd: 7,
                kind: FdKind::Memfd("cache".into()),
                cloexec: true
            }
        );
    }

    #[test]
    fn signalfd_on_existing_fd_creates_nothing() {
        assert_eq!(decode(&call(nr::SIGNALFD4, 5, [5, 0, 8, 0, 0, 0])), None);
    }

    #[test]
    fn fcntl_commands() {
        assert_eq!(
            decode(&call(nr::FCNTL, 8, [3, 1030, 0, 0, 0, 0])),
            Some(FdOp::Dup {
                old: 3,
                new: 8,
                cloexec: true
            })
        );
        assert_eq!(
            decode(&call(nr::FCNTL, 8, [3, 0, 0, 0, 0, 0])),
            Some(FdOp::Dup {
                old: 3,
                new: 8,
                cloexec: false
            })
        );
        assert_eq!(
            decode(&call(nr::FCNTL, 0, [3, 2, 1, 0, 0, 0])),
            Some(FdOp::SetCloexec { fd: 3, on: true })
        );
        assert_eq!(
            decode(&call(nr::FCNTL, 0, [3, 4, 0, 0, 0, 0])),
            None,
            "F_SETFL changes nothing"
        );
    }

    #[test]
    fn close_range_flags() {
        let op = decode(&call(
            nr::CLOSE_RANGE,
            0,
            [3, u32::MAX as u64, 4 | 2, 0, 0, 0],
        ))
        .unwrap();
        assert_eq!(
            op,
            FdOp::CloseRange {
                first: 3,
                last: u32::MAX,
                cloexec_only: true
            }
        );
    }
}
