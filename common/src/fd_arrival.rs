//! Which calls of the conditionally fd-installing syscalls really install an fd, and the
//! user-memory layouts the kernel side reads to find fds that are not a return value.
//!
//! Pure and `const`, so the kernel filter and the userspace decoder agree, and both are
//! unit-tested here. Numbers and flags are x86_64 uapi values (checked against the kernel
//! headers: linux/sched.h, linux/seccomp.h, linux/landlock.h, linux/bpf.h,
//! asm-generic/socket.h).

use crate::syscalls as nr;

/// `clone`/`clone3` flag: a pidfd for the child is installed in the parent.
pub const CLONE_PIDFD: u64 = 0x1000;
/// `clone`/`clone3` flag: the child shares the parent's fd table.
pub const CLONE_FILES: u64 = 0x400;
/// `clone`/`clone3` flag: the child is a thread of the parent's process.
pub const CLONE_THREAD: u64 = 0x10000;
/// `clone`/`clone3` flag: the child runs in the parent's address space.
pub const CLONE_VM: u64 = 0x100;
/// `clone`/`clone3` flag: the parent sleeps until the child execs or exits (vfork).
pub const CLONE_VFORK: u64 = 0x4000;
/// The argument slot where a clone3 record carries `clone_args.flags`: they live in user
/// memory that userspace can no longer read, so the kernel side copies them there (clone3
/// takes two arguments; the slot otherwise holds a leftover register). All bits are set
/// when the kernel side could not read them (CLONE_PIDFD then says "pidfd unread").
pub const CLONE3_FLAGS_SLOT: usize = 2;
/// `seccomp(SECCOMP_SET_MODE_FILTER, ...)`.
pub const SECCOMP_SET_MODE_FILTER: u64 = 1;
/// With it, `seccomp` returns a notification listener fd.
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 1 << 3;
/// `landlock_create_ruleset` flags that return a number instead of a ruleset fd
/// (LANDLOCK_CREATE_RULESET_VERSION, LANDLOCK_CREATE_RULESET_ERRATA).
pub const LANDLOCK_CREATE_RULESET_NOT_FD: u64 = (1 << 0) | (1 << 1);
pub const SOL_SOCKET: u64 = 1;
/// `getsockopt(SOL_SOCKET, SO_PEERPIDFD)` installs a pidfd of the peer in `optval`.
pub const SO_PEERPIDFD: u64 = 77;
/// Control message types at SOL_SOCKET that carry fds.
pub const SCM_RIGHTS: u32 = 1;
pub const SCM_PIDFD: u32 = 4;
/// recvmsg flag: received SCM_RIGHTS fds are close-on-exec.
pub const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;

/// `enum bpf_cmd` values whose successful return is a new fd.
pub mod bpf_cmd {
    pub const MAP_CREATE: u64 = 0;
    pub const PROG_LOAD: u64 = 5;
    pub const OBJ_GET: u64 = 7;
    pub const PROG_GET_FD_BY_ID: u64 = 13;
    pub const MAP_GET_FD_BY_ID: u64 = 14;
    pub const RAW_TRACEPOINT_OPEN: u64 = 17;
    pub const BTF_LOAD: u64 = 18;
    pub const BTF_GET_FD_BY_ID: u64 = 19;
    pub const LINK_CREATE: u64 = 28;
    pub const LINK_GET_FD_BY_ID: u64 = 30;
    pub const ENABLE_STATS: u64 = 32;
    pub const ITER_CREATE: u64 = 33;
    pub const TOKEN_CREATE: u64 = 36;
}

/// `struct msghdr` (x86_64): `msg_control` and `msg_controllen` (the kernel writes the
/// used length back at return).
pub const MSGHDR_CONTROL: u64 = 32;
pub const MSGHDR_CONTROLLEN: u64 = 40;
/// `sizeof(struct mmsghdr)`: a `struct msghdr` (56) and `msg_len`, padded to 8.
pub const MMSGHDR_SIZE: u64 = 64;
/// `struct clone_args`: `flags` at 0, `pidfd` (a u64 user pointer to an int) at 8.
pub const CLONE_ARGS_FLAGS: u64 = 0;
pub const CLONE_ARGS_PIDFD: u64 = 8;
/// `sizeof(struct cmsghdr)` on x86_64: `size_t cmsg_len; int cmsg_level; int cmsg_type;`.
pub const CMSGHDR_SIZE: usize = 16;

/// The kernel's limit on recvmmsg's `vlen` (UIO_MAXIOV): no call returns more messages.
pub const MMSG_MAX: u32 = 1024;

/// Whether a successful call (`ret >= 0`) of a traced syscall is worth a record, judged
/// from its registers alone. False for calls of the conditional fd sources that install
/// no fd (a bpf command that returns 0, a clone without CLONE_PIDFD, the child's side of
/// a clone, ...); true for everything else. A clone whose child shares a table the ledger
/// keeps per process ([`shares_tables`]) is sent too, without a pidfd. clone3's flags live
/// in user memory: the kernel side checks them itself, so clone3 passes here when `ret > 0`.
#[inline(always)]
pub const fn wanted(syscall: u32, args: &[u64; 6], ret: i64) -> bool {
    match syscall {
        nr::CLONE => ret > 0 && (args[0] & CLONE_PIDFD != 0 || shares_tables(args[0])),
        nr::CLONE3 => ret > 0,
        nr::GETSOCKOPT => args[1] == SOL_SOCKET && args[2] == SO_PEERPIDFD,
        nr::SECCOMP => {
            args[0] == SECCOMP_SET_MODE_FILTER && args[1] & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
        }
        nr::LANDLOCK_CREATE_RULESET => args[2] & LANDLOCK_CREATE_RULESET_NOT_FD == 0,
        nr::BPF => bpf_returns_fd(args[0]),
        _ => true,
    }
}

/// Whether a *failed* call (`ret < 0`) of a traced syscall was an attempt to install an
/// fd, judged from its registers: for the kernel's failure records, so that a recvmsg
/// that would block (EAGAIN, constantly on non-blocking sockets) or a failed bpf lookup
/// is not taken for an fd-limit failure. recvmsg/recvmmsg never fail for want of an fd
/// (the kernel cuts the control data and sets MSG_CTRUNC instead); clone3's flags are in
/// user memory.
#[inline(always)]
pub const fn failure_was_fd_attempt(syscall: u32, args: &[u64; 6]) -> bool {
    match syscall {
        nr::RECVMSG | nr::RECVMMSG | nr::CLONE3 => false,
        nr::CLONE => args[0] & CLONE_PIDFD != 0,
        _ => wanted(syscall, args, 1),
    }
}

/// The flags of a clone/clone3 record (clone3's as the kernel side copied them, see
/// [`CLONE3_FLAGS_SLOT`]); `None` for other calls.
#[inline(always)]
pub const fn clone_flags(syscall: u32, args: &[u64; 6]) -> Option<u64> {
    match syscall {
        nr::CLONE => Some(args[0]),
        nr::CLONE3 => Some(args[CLONE3_FLAGS_SLOT]),
        _ => None,
    }
}

/// A clone whose child is another process (not a thread) that shares the parent's fd
/// table: an fd either opens is the other's too, and the child's exit closes nothing.
#[inline(always)]
pub const fn shares_fd_table(flags: u64) -> bool {
    flags & CLONE_FILES != 0 && flags & CLONE_THREAD == 0
}

/// A clone whose child is another process (not a thread) that changes the parent's
/// mappings and heap as its own. A vfork child (CLONE_VFORK) borrows the memory only until
/// it execs or exits, and may not change it (posix_spawn, Go's and Rust's exec): not one.
#[inline(always)]
pub const fn shares_address_space(flags: u64) -> bool {
    flags & CLONE_VM != 0 && flags & (CLONE_THREAD | CLONE_VFORK) == 0
}

/// A clone the ledger must hear of though it installs no fd: its child shares a table
/// (fds, or the address space) that the ledger keeps per process.
#[inline(always)]
pub const fn shares_tables(flags: u64) -> bool {
    shares_fd_table(flags) || shares_address_space(flags)
}

/// Whether the call's record carries a pidfd written to user memory: always for the calls
/// that deliver one, but for clone/clone3 only with CLONE_PIDFD (a clone is also sent for
/// a shared fd table, with no pidfd).
#[inline(always)]
pub const fn delivers_pidfd(syscall: u32, args: &[u64; 6]) -> bool {
    match clone_flags(syscall, args) {
        Some(flags) => flags & CLONE_PIDFD != 0,
        None => true,
    }
}

#[inline(always)]
pub const fn bpf_returns_fd(cmd: u64) -> bool {
    use bpf_cmd::*;
    matches!(
        cmd,
        MAP_CREATE
            | PROG_LOAD
            | OBJ_GET
            | PROG_GET_FD_BY_ID
            | MAP_GET_FD_BY_ID
            | RAW_TRACEPOINT_OPEN
            | BTF_LOAD
            | BTF_GET_FD_BY_ID
            | LINK_CREATE
            | LINK_GET_FD_BY_ID
            | ENABLE_STATS
            | ITER_CREATE
            | TOKEN_CREATE
    )
}

/// Whether control data of `control_len` bytes, starting with a cmsghdr of `first_len`,
/// `first_level` and `first_type`, may carry fds. Only a buffer that is provably one
/// single cmsg of another kind (IP_PKTINFO, SO_TIMESTAMP, SCM_CREDENTIALS, ...) is ruled
/// out, so the kernel side can drop the most common fd-less control data cheaply; a
/// buffer of several cmsgs is always sent and decoded in userspace.
#[inline(always)]
pub const fn control_may_carry_fds(
    control_len: u64,
    first_len: u64,
    first_level: u32,
    first_type: u32,
) -> bool {
    let carries =
        first_level as u64 == SOL_SOCKET && (first_type == SCM_RIGHTS || first_type == SCM_PIDFD);
    let only_one = first_len >= CMSGHDR_SIZE as u64 && cmsg_align(first_len) >= control_len;
    carries || !only_one
}

/// CMSG_ALIGN on x86_64: cmsgs start at 8-byte boundaries.
#[inline(always)]
pub const fn cmsg_align(len: u64) -> u64 {
    (len + 7) & !7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_needs_pidfd_flag_and_the_parent_side() {
        assert!(wanted(nr::CLONE, &[CLONE_PIDFD | 17, 0, 0, 0, 0, 0], 1234));
        assert!(
            !wanted(nr::CLONE, &[CLONE_PIDFD | 17, 0, 0, 0, 0, 0], 0),
            "the child"
        );
        assert!(
            !wanted(nr::CLONE, &[17, 0, 0, 0, 0, 0], 1234),
            "no CLONE_PIDFD"
        );
        assert!(wanted(nr::CLONE3, &[0; 6], 1234));
        assert!(!wanted(nr::CLONE3, &[0; 6], 0));
    }

    #[test]
    fn a_clone_that_shares_the_fd_table_is_sent_without_a_pidfd() {
        let shared = [CLONE_FILES | 17, 0, 0, 0, 0, 0];
        assert!(wanted(nr::CLONE, &shared, 1234));
        assert!(!wanted(nr::CLONE, &shared, 0), "the child");
        assert!(!delivers_pidfd(nr::CLONE, &shared));
        assert!(shares_fd_table(CLONE_FILES | 17));
        // A thread shares the table within its own process: nothing to flag.
        let thread = CLONE_FILES | CLONE_THREAD | 0x100 | 0x800 | 0x10000;
        assert!(!wanted(nr::CLONE, &[thread, 0, 0, 0, 0, 0], 1234));
        assert!(!shares_fd_table(thread));
        // A failed clone is an fd attempt only with CLONE_PIDFD.
        assert!(!failure_was_fd_attempt(nr::CLONE, &shared));
        // clone3's flags come in their slot; unreadable ones (all bits) mean "pidfd unread".
        let mut args = [0u64; 6];
        args[CLONE3_FLAGS_SLOT] = CLONE_FILES;
        assert_eq!(clone_flags(nr::CLONE3, &args), Some(CLONE_FILES));
        assert!(!delivers_pidfd(nr::CLONE3, &args));
        args[CLONE3_FLAGS_SLOT] = u64::MAX;
        assert!(delivers_pidfd(nr::CLONE3, &args));
        assert!(!shares_fd_table(u64::MAX));
        assert!(delivers_pidfd(nr::GETSOCKOPT, &[3, 1, 77, 0, 0, 0]));
    }

    #[test]
    fn a_clone_that_shares_the_address_space_is_sent_but_a_vfork_is_not() {
        assert!(wanted(nr::CLONE, &[CLONE_VM | 17, 0, 0, 0, 0, 0], 1234));
        assert!(shares_address_space(CLONE_VM | 17));
        // posix_spawn: CLONE_VM | CLONE_VFORK.
        let spawn = CLONE_VM | CLONE_VFORK | 17;
        assert!(!wanted(nr::CLONE, &[spawn, 0, 0, 0, 0, 0], 1234));
        assert!(!shares_address_space(spawn));
        assert!(!shares_address_space(u64::MAX), "unreadable clone3 flags");
    }

    #[test]
    fn bpf_only_commands_that_return_fds() {
        let cmd = |c: u64| wanted(nr::BPF, &[c, 0, 0, 0, 0, 0], 3);
        for fd_cmd in [0, 5, 7, 13, 14, 17, 18, 19, 28, 30, 32, 33, 36] {
            assert!(cmd(fd_cmd), "bpf cmd {fd_cmd}");
        }
        // lookup/update/delete, pin, attach/detach, test run, get-next-id, info, query,
        // freeze, batches, link update/detach, bind map, stream read.
        for other in [
            1, 2, 3, 4, 6, 8, 9, 10, 11, 12, 15, 16, 20, 21, 22, 23, 24, 25, 26, 27, 29, 31, 34,
            35, 37,
        ] {
            assert!(!cmd(other), "bpf cmd {other}");
        }
    }

    #[test]
    fn seccomp_landlock_getsockopt_conditions() {
        let listener = SECCOMP_FILTER_FLAG_NEW_LISTENER;
        assert!(wanted(nr::SECCOMP, &[1, listener, 0, 0, 0, 0], 5));
        assert!(!wanted(nr::SECCOMP, &[1, 0, 0, 0, 0, 0], 0));
        assert!(
            !wanted(nr::SECCOMP, &[0, listener, 0, 0, 0, 0], 0),
            "strict mode"
        );
        assert!(wanted(nr::LANDLOCK_CREATE_RULESET, &[8, 16, 0, 0, 0, 0], 5));
        assert!(
            !wanted(nr::LANDLOCK_CREATE_RULESET, &[0, 0, 1, 0, 0, 0], 6),
            "version"
        );
        assert!(
            !wanted(nr::LANDLOCK_CREATE_RULESET, &[0, 0, 2, 0, 0, 0], 0),
            "errata"
        );
        assert!(wanted(nr::GETSOCKOPT, &[3, 1, 77, 0, 0, 0], 0));
        assert!(
            !wanted(nr::GETSOCKOPT, &[3, 1, 17, 0, 0, 0], 0),
            "SO_PEERCRED"
        );
        assert!(
            !wanted(nr::GETSOCKOPT, &[3, 6, 77, 0, 0, 0], 0),
            "another level"
        );
        assert!(wanted(nr::OPENAT, &[0; 6], 3), "unconditional calls pass");
    }

    #[test]
    fn failures_count_only_fd_attempts() {
        assert!(failure_was_fd_attempt(nr::OPENAT, &[0; 6]));
        assert!(!failure_was_fd_attempt(nr::RECVMSG, &[3, 0, 0, 0, 0, 0]));
        assert!(!failure_was_fd_attempt(nr::RECVMMSG, &[3, 0, 8, 0, 0, 0]));
        assert!(
            !failure_was_fd_attempt(nr::BPF, &[1, 0, 0, 0, 0, 0]),
            "a lookup"
        );
        assert!(
            failure_was_fd_attempt(nr::BPF, &[0, 0, 0, 0, 0, 0]),
            "MAP_CREATE"
        );
        assert!(!failure_was_fd_attempt(nr::CLONE, &[17, 0, 0, 0, 0, 0]));
        assert!(failure_was_fd_attempt(
            nr::CLONE,
            &[CLONE_PIDFD | 17, 0, 0, 0, 0, 0]
        ));
    }

    #[test]
    fn control_filter_drops_only_a_single_fdless_cmsg() {
        // One SCM_RIGHTS cmsg with two fds: 16 + 8 bytes.
        assert!(control_may_carry_fds(24, 24, 1, SCM_RIGHTS));
        assert!(control_may_carry_fds(24, 20, 1, SCM_PIDFD));
        // One IP_PKTINFO (level 0, type 8, 28 bytes -> 32 aligned).
        assert!(!control_may_carry_fds(32, 28, 0, 8));
        // SCM_CREDENTIALS alone.
        assert!(!control_may_carry_fds(32, 28, 1, 2));
        // A timestamp followed by something else: userspace decides.
        assert!(control_may_carry_fds(64, 32, 1, 29));
        // A garbage first length never rules anything out.
        assert!(control_may_carry_fds(64, 0, 0, 8));
    }
}
