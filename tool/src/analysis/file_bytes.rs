//! The bytes of the entries on disk the target left: each live entry's size, taken by the
//! session when tracing ended (`crate::file_sizes`), replayed at the iteration boundaries.

use std::collections::{HashMap, HashSet};

use crate::ledger::records::{NEVER, Record, RecordId};
use crate::ledger::{ByteChange, Ledger};

/// What the session found of the entries still live in the ledger when tracing ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileSizes {
    /// Size of each live entry found on disk (not following symlinks).
    pub(crate) sizes: HashMap<RecordId, u64>,
    /// Live entries missing from disk: removed by a process leakscope did not trace, or
    /// through another name (a symlinked directory).
    pub(crate) gone: HashSet<RecordId>,
}

impl FileSizes {
    /// How many live entries were missing from disk.
    pub(crate) fn removed_unseen(&self) -> u64 {
        self.gone.len() as u64
    }
}

/// Each entry's bytes as changes over time, in time order, from what the session saw of
/// it: sizes sampled during the run and the size when tracing ended.
///
/// Between two looks the size is the one of the next look (a file created, written and
/// closed within an iteration counts its written size from its creation); after the last
/// look before its removal it keeps that size until removed. An entry never seen on disk
/// counts 0: removed before anyone looked, its bytes are not what is left on disk.
pub(crate) fn changes(ledger: &Ledger, sizes: &FileSizes) -> Vec<ByteChange> {
    let records = ledger.file_records();
    let mut looks: HashMap<RecordId, Vec<(u64, u64)>> = HashMap::new();
    for sample in ledger.file_size_samples() {
        looks
            .entry(sample.record)
            .or_default()
            .push((sample.time_ns, sample.bytes));
    }
    for (&record, &bytes) in &sizes.sizes {
        looks.entry(record).or_default().push((u64::MAX, bytes));
    }
    let mut changes = Vec::new();
    for (record, seen) in looks {
        if let Some(held) = records.find(record) {
            changes.extend(record_changes(held, seen));
        }
    }
    changes.sort_by_key(|c| (c.time_ns, c.record));
    changes
}

/// Why the files class may be missing entries or counting gone ones, if it may.
pub(crate) fn doubt(ledger: &Ledger) -> Option<String> {
    let renames = ledger.unknown_renames();
    let creations = ledger.unknown_creations();
    let unread = match (renames, creations) {
        (0, 0) => return None,
        (renames, 0) => format!("{renames} renames' new names could not be read"),
        (0, creations) => {
            format!("the kernel could not say whether {creations} O_CREAT opens created their file")
        }
        (renames, creations) => format!(
            "{renames} renames' new names could not be read, and the kernel could not say whether {creations} O_CREAT opens created their file"
        ),
    };
    Some(format!("{unread}; entries may be missing from the ledger"))
}

/// The note a files judgement carries when entries vanished unseen.
pub(crate) fn removed_unseen_note(sizes: &FileSizes) -> Option<String> {
    let removed_unseen = sizes.removed_unseen();
    (removed_unseen > 0).then(|| {
        format!(
            "{removed_unseen} entries still counted live were gone from disk when tracing ended (removed by a process not traced, or through another name such as a symlinked directory)"
        )
    })
}

/// One entry's bytes as changes over time, from its looks (time, size); a look at
/// `u64::MAX` is the size when tracing ended.
pub(crate) fn record_changes(held: &Record, mut seen: Vec<(u64, u64)>) -> Vec<ByteChange> {
    let record = held.id;
    let mut changes = Vec::new();
    seen.sort_unstable();
    seen.retain(|&(t, _)| t < held.released_ns || t == u64::MAX);
    let Some(&(_, first)) = seen.first() else {
        return changes;
    };
    let mut push = |time_ns: u64, bytes: i64| {
        if bytes != 0 {
            changes.push(ByteChange {
                time_ns,
                bytes,
                record,
            });
        }
    };
    let signed = |bytes: u64| bytes.min(i64::MAX as u64) as i64;
    push(held.born_ns, signed(first));
    let mut current = first;
    for pair in seen.windows(2) {
        let ((looked, _), (_, next)) = (pair[0], pair[1]);
        // The next look's size holds from just after this look.
        if looked.saturating_add(1) < held.released_ns {
            push(looked.saturating_add(1), signed(next) - signed(current));
            current = next;
        }
    }
    if held.released_ns != NEVER {
        push(held.released_ns, -signed(current));
    }
    changes
}
