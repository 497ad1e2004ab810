//! SysV shared memory attached with shmat is address space the mapping class does not
//! count: the ledger does not know a segment's size (its shmget may be another process's,
//! or older than the trace). Segments attached during the iterations and kept across them
//! could be a mapping leak the class would call "no leak" (64 KiB attached per iteration
//! and never detached read "no mapping leak"), so the mapping verdict is then inconclusive.

use crate::iterations::Iterations;
use crate::ledger::Ledger;

/// Why the mapping verdict cannot be trusted, if so.
pub(crate) fn doubt(ledger: &Ledger, iterations: &Iterations) -> Option<String> {
    let (&first, &last) = (
        iterations.boundaries.first()?,
        iterations.boundaries.last()?,
    );
    let kept = ledger.shm_attachments().kept(first, last);
    (kept > 0).then(|| {
        let segments = match kept {
            1 => "1 SysV shared memory segment".to_string(),
            n => format!("{n} SysV shared memory segments"),
        };
        format!(
            "{segments} attached during the iterations (shmat) stayed attached across them, and leakscope does not count shared memory segments as mappings; compare /proc/PID/maps of the process between iterations instead"
        )
    })
}
