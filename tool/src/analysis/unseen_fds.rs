//! A traced process with an io_uring, or with a fanotify group that reports events by fd,
//! gets and drops fds where no probe looks: an io_uring installs them from the ring
//! (IORING_OP_OPENAT, ACCEPT, SOCKET, ...) and closes them (IORING_OP_CLOSE), a fanotify
//! read installs one per event. A program that leaks such fds reads "no fd leak", so
//! neither "leak" nor "no leak" can be said of the fd table: inconclusive, with the reason.

use crate::ledger::Ledger;

/// Why the fd verdict cannot be trusted, if so.
pub(crate) fn doubt(ledger: &Ledger) -> Option<String> {
    let sources = ledger.unseen_fd_sources();
    if !sources.any() {
        return None;
    }
    let mut made = Vec::new();
    if sources.io_urings > 0 {
        made.push(format!(
            "{} (io_uring_setup), which can open, accept and close fds inside the kernel",
            instances(sources.io_urings, "io_uring")
        ));
    }
    if sources.fanotify_groups > 0 {
        made.push(format!(
            "{} reporting events by fd, whose reads install an fd per event",
            instances(sources.fanotify_groups, "fanotify group")
        ));
    }
    Some(format!(
        "the program made {}, and leakscope sees only the fds syscalls return; count the entries of /proc/PID/fd between iterations instead",
        made.join(" and ")
    ))
}

fn instances(count: u64, what: &str) -> String {
    match count {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}
