//! The bytes of the entries on disk the target left: each live entry's size, taken by the
//! session when tracing ended (`crate::file_sizes`), replayed at the iteration boundaries.

use std::collections::HashMap;

use crate::ledger::records::{RecordId, Records};
use crate::ledger::{ByteChange, Ledger};

/// What the session found of the entries still live in the ledger when tracing ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileSizes {
    /// Size of each live entry found on disk (not following symlinks).
    pub(crate) sizes: HashMap<RecordId, u64>,
    /// Live entries missing from disk: removed by a process leakscope did not trace.
    pub(crate) removed_unseen: u64,
}

/// Each sized entry's bytes as a change at its birth, in time order. An entry released
/// before tracing ended has no size (it was gone when the session looked) and counts 0:
/// the bytes series shows what is left on disk, not what passed through it.
pub(crate) fn changes(records: &Records, sizes: &FileSizes) -> Vec<ByteChange> {
    let mut changes: Vec<ByteChange> = sizes
        .sizes
        .iter()
        .filter(|&(&id, _)| (id as usize) < records.all().len())
        .map(|(&record, &bytes)| ByteChange {
            time_ns: records.get(record).born_ns,
            bytes: bytes.min(i64::MAX as u64) as i64,
            record,
        })
        .collect();
    changes.sort_by_key(|c| (c.time_ns, c.record));
    changes
}

/// Why the files class may be missing entries or counting gone ones, if it may.
pub(crate) fn doubt(ledger: &Ledger) -> Option<String> {
    let unknown = ledger.unknown_renames();
    (unknown > 0).then(|| {
        format!(
            "{unknown} renames' new names could not be read; entries may be missing from the ledger"
        )
    })
}

/// The note a files judgement carries when entries vanished unseen.
pub(crate) fn removed_unseen_note(sizes: &FileSizes) -> Option<String> {
    (sizes.removed_unseen > 0).then(|| {
        format!(
            "{} entries still counted live were gone from disk when tracing ended (removed by a process not traced)",
            sizes.removed_unseen
        )
    })
}
