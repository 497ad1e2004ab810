//! Instances that install fds without a syscall of the process returning them: an io_uring
//! (IORING_OP_OPENAT, OPENAT2, ACCEPT, SOCKET, PIPE install fds from the ring, and
//! IORING_OP_CLOSE closes them) and a fanotify group that reports events by fd (each read
//! installs one fd per event). The probes see neither, so once a traced process has one,
//! the fd table the ledger keeps may miss fds it opened or hold fds it closed.

use crate::event::Syscall;
use leakscope_common::syscalls as nr;

/// fanotify_init flags under which events carry a file handle instead of an fd
/// (FAN_REPORT_FID, FAN_REPORT_DIR_FID; FAN_REPORT_NAME and the others need one of them).
const FAN_REPORT_FID: u64 = 0x200;
const FAN_REPORT_DIR_FID: u64 = 0x400;

/// How many such instances the traced processes created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UnseenFdSources {
    pub(crate) io_urings: u64,
    pub(crate) fanotify_groups: u64,
}

impl UnseenFdSources {
    /// Counts `call` when it made such an instance.
    pub(crate) fn note(&mut self, call: &Syscall) {
        if call.ret < 0 {
            return;
        }
        match call.nr {
            nr::IO_URING_SETUP => self.io_urings += 1,
            nr::FANOTIFY_INIT if call.args[0] & (FAN_REPORT_FID | FAN_REPORT_DIR_FID) == 0 => {
                self.fanotify_groups += 1;
            }
            _ => {}
        }
    }

    pub(crate) fn any(self) -> bool {
        self.io_urings + self.fanotify_groups > 0
    }
}
