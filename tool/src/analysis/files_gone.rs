//! Entries the ledger counts live that were gone from disk when tracing ended. Something
//! leakscope did not see removed them: a process it does not trace, or the traced program
//! itself through another name for the same directory (created under a symlink, removed
//! under the real path). When they went is unknown, so a files leak must not rest on them:
//! the class is judged again without them, and a growth made only of them is
//! inconclusive, never a leak.

use std::collections::HashSet;

use super::ResourceClass;
use super::trend::Verdict;
use crate::ledger::records::{Cause, RecordId, Records};

/// `records` with the `gone` ones as if they had never been live (released at their birth).
pub(crate) fn without(records: &Records, gone: &HashSet<RecordId>) -> Records {
    let mut surviving = records.clone();
    for &id in gone {
        if let Some(record) = records.find(id) {
            surviving.release(id, record.born_ns, Cause::Implicit);
        }
    }
    surviving
}

/// The files class judged on every entry (`all`, a leak) and on the entries still on disk
/// (`surviving`). A leak of the surviving entries stands, at their rate; otherwise the leak
/// was made of gone entries and is inconclusive.
pub(crate) fn settle(all: ResourceClass, surviving: ResourceClass) -> ResourceClass {
    if surviving.verdict == Verdict::Leak {
        return ResourceClass {
            count: surviving.count,
            bytes: surviving.bytes,
            count_series: surviving.count_series,
            bytes_series: surviving.bytes_series,
            verdict: surviving.verdict,
            sites: surviving.sites,
            ..all
        };
    }
    let mut all = all;
    // The note on the gone entries (`removed_unseen_note`) follows and says how many.
    let why = "that growth is of entries not on disk when tracing ended, gone at times unknown";
    all.count.verdict = Verdict::Inconclusive;
    all.count.why = format!("{}; {why}", all.count.why);
    all.verdict = Verdict::Inconclusive;
    for site in &mut all.sites {
        if site.verdict == Verdict::Leak {
            site.verdict = Verdict::Inconclusive;
        }
    }
    all
}
