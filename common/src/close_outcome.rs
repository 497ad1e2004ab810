//! Whether a `close(fd)` released its fd, judged as it returns.
//!
//! Its return value alone does not say. Linux takes the fd out of the table first, then
//! flushes the file, and reports the flush's error (EIO, or EINTR for an interrupted one:
//! a network or FUSE filesystem's flush): the fd is gone whatever the return. EBADF means
//! there was nothing to close. But an error may also come from no close at all: a seccomp
//! filter that returns ERRNO for close skips the call, and the fd stays. So a failure
//! other than EBADF is judged by the fd table after the call: closed iff the fd is no
//! longer in it.
//!
//! close_range needs no such rule: it ignores its files' flush errors, and fails (EINVAL,
//! or ENOMEM unsharing the table) only before it closes anything. dup2/dup3 likewise
//! ignore the flush error of the fd they replace.

/// `-EBADF`: no such fd, nothing was closed.
pub const EBADF: i64 = -9;

/// What a close did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The fd was released (whatever the return).
    Closed,
    /// The fd was not released: the call returned EBADF, or failed with the fd still in
    /// the table (a seccomp ERRNO).
    NotClosed,
    /// It failed after perhaps releasing the fd, and the fd table could not be read.
    Unclear,
}

/// The outcome of a `close` that returned `ret`, given whether its fd is in the caller's
/// fd table after the call (`None`: unreadable). The table is only consulted for a
/// failure other than EBADF.
#[inline(always)]
pub const fn close_outcome(ret: i64, fd_in_table_after: Option<bool>) -> CloseOutcome {
    if ret >= 0 {
        return CloseOutcome::Closed;
    }
    if ret == EBADF {
        return CloseOutcome::NotClosed;
    }
    match fd_in_table_after {
        Some(false) => CloseOutcome::Closed,
        Some(true) => CloseOutcome::NotClosed,
        None => CloseOutcome::Unclear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EINTR: i64 = -4;
    const EIO: i64 = -5;

    #[test]
    fn success_closes_and_ebadf_closes_nothing_whatever_the_table_says() {
        for table in [Some(true), Some(false), None] {
            assert_eq!(close_outcome(0, table), CloseOutcome::Closed);
            assert_eq!(close_outcome(EBADF, table), CloseOutcome::NotClosed);
        }
    }

    #[test]
    fn a_failed_flush_closed_the_fd_and_a_seccomp_errno_did_not() {
        for errno in [EINTR, EIO] {
            // The fd is gone from the table: the kernel freed it before the flush failed.
            assert_eq!(close_outcome(errno, Some(false)), CloseOutcome::Closed);
            // Still there: the call never ran (a seccomp filter's ERRNO).
            assert_eq!(close_outcome(errno, Some(true)), CloseOutcome::NotClosed);
            assert_eq!(close_outcome(errno, None), CloseOutcome::Unclear);
        }
    }
}
