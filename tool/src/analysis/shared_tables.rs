//! Children that share a table with the process that cloned them, without being its
//! threads: the ledger keeps one fd table and one address space per process, so what such
//! a child does in the shared table lands in the wrong process. An fd the child opens and
//! leaves open counts as closed at the child's exit, one it closes for the parent stays
//! open; likewise its mappings and break. Neither "leak" nor "no leak" could be trusted
//! for the classes that live in the shared table: they are inconclusive with this reason.

use crate::ledger::Ledger;

/// Why the fd verdict (and the watches', which live on fds) cannot be trusted, if so.
pub(crate) fn fd_doubt(ledger: &Ledger) -> Option<String> {
    let shared = ledger.shared_fd_tables();
    (shared > 0).then(|| {
        format!(
            "{} shared the fd table of the process that cloned them (clone with CLONE_FILES, not a thread), and leakscope follows one fd table per process; count the entries of /proc/PID/fd of the parent between iterations instead",
            children(shared)
        )
    })
}

/// Why the mapping, heap and resident-memory verdicts cannot be trusted, if so.
pub(crate) fn memory_doubt(ledger: &Ledger) -> Option<String> {
    let shared = ledger.shared_address_spaces();
    (shared > 0).then(|| {
        format!(
            "{} shared the address space of the process that cloned them (clone with CLONE_VM, not a thread nor a vfork), and leakscope follows one address space per process; compare /proc/PID/maps and /proc/PID/status (VmSize, VmRSS) of the parent between iterations instead",
            children(shared)
        )
    })
}

fn children(count: u64) -> String {
    match count {
        1 => "1 child".to_string(),
        n => format!("{n} children"),
    }
}
