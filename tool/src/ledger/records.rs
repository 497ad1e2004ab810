//! One record per resource acquisition (an fd-table entry or a mapping), kept so the
//! analysis can replay what was live at any iteration boundary.
//!
//! Records are compact (48 bytes), and a record that can no longer change any verdict is
//! folded away (see [`super::streaming`]): what it adds to the counts, the lifetimes and the
//! work timeline is kept in [`Folded`], so memory follows what is live, not the events.
//! Everything that repeats (paths, stacks) is an interned [`SiteId`].

use super::sites::SiteId;
use crate::analysis::lifetimes::Lifetimes;

pub(crate) type RecordId = u64;

/// `released_ns` of a resource that is still live.
pub(crate) const NEVER: u64 = u64::MAX;

/// How a record came to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A traced call created it.
    Acquired,
    /// It existed before tracing began (seeded from /proc, or stdio inherited across the
    /// target's exec). Its record starts when tracing began: when it was really acquired
    /// is unknown.
    Seeded,
    /// A fork copied it from the parent: a new table entry, starting at the fork.
    ForkCopy,
}

/// What released a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// close, close_range, munmap.
    Explicit,
    /// dup2/dup3 onto it, a MAP_FIXED overlay, or an mremap away from it.
    Implicit,
    /// exec dropped it (CLOEXEC fds; every mapping).
    Exec,
    /// The process exited.
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// When the resource was acquired (a fork copy: the fork; a seeded one: when tracing
    /// began). Lifetimes start here.
    pub(crate) origin_ns: u64,
    /// When this record became live in its process (a fork copy: the fork). Live counts
    /// start here.
    pub(crate) born_ns: u64,
    /// When it was released, or [`NEVER`].
    pub(crate) released_ns: u64,
    pub(crate) site: SiteId,
    pub(crate) tgid: u32,
    /// Ids are handed out in order and never reused, so folding records away keeps the
    /// rest sorted by id.
    pub(crate) id: RecordId,
    pub(crate) origin: Origin,
    pub(crate) cause: Option<Cause>,
}

impl Record {
    pub(crate) fn is_live(&self) -> bool {
        self.released_ns == NEVER
    }
}

/// How and since when a new record's resource is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Acquisition {
    pub(crate) origin: Origin,
    /// See [`Record::origin_ns`].
    pub(crate) origin_ns: u64,
    /// See [`Record::born_ns`].
    pub(crate) born_ns: u64,
}

impl Acquisition {
    /// Acquired and live from `t` on.
    pub(crate) fn at(origin: Origin, t: u64) -> Self {
        Acquisition {
            origin,
            origin_ns: t,
            born_ns: t,
        }
    }
}

/// What the records folded away add to the class: released resources whose release is
/// settled (every boundary up to it is known), so what they add to each boundary's live
/// count and bytes is known for good.
#[derive(Clone, Debug)]
pub(crate) struct Folded {
    /// Records folded (seeded ones included).
    pub(crate) records: u64,
    /// Of those, acquired during tracing (not seeded): acquisitions, and releases, seen.
    pub(crate) traced: u64,
    /// Their lifetimes, in time and in iterations crossed (from the original acquisition).
    pub(crate) lifetimes: Lifetimes,
    /// Acquisitions by a traced call before the first boundary, and from it on, each with
    /// the earliest acquisition time among them. The work timeline weighs them there:
    /// exact for the only window asked of a folding run, the first boundary to past the
    /// last one.
    pub(crate) acquisitions: [(u64, u64); 2],
    /// What folded records add to the live count at each boundary, as differences:
    /// the count at boundary `k` adds `live[0..=k]`.
    pub(crate) live: Vec<i64>,
    /// Likewise for the class's bytes (mapped bytes, bytes on disk).
    pub(crate) bytes: Vec<i64>,
}

impl Default for Folded {
    fn default() -> Self {
        Folded {
            records: 0,
            traced: 0,
            lifetimes: Lifetimes::default(),
            acquisitions: [(u64::MAX, 0); 2],
            live: Vec::new(),
            bytes: Vec::new(),
        }
    }
}

/// Adds `amount` at boundary index `at` of a difference series.
pub(crate) fn add_from(differences: &mut Vec<i64>, at: usize, amount: i64) {
    if differences.len() <= at {
        differences.resize(at + 1, 0);
    }
    differences[at] += amount;
}

/// The running totals of a difference series at each of `boundaries` boundaries.
pub(crate) fn totals(differences: &[i64], boundaries: usize) -> impl Iterator<Item = i64> + '_ {
    differences
        .iter()
        .copied()
        .chain(std::iter::repeat(0))
        .take(boundaries)
        .scan(0i64, |total, d| {
            *total += d;
            Some(*total)
        })
}

impl Folded {
    /// Counts an acquisition at `born_ns`, before the first boundary or not.
    pub(crate) fn acquired(&mut self, from_first_boundary: bool, born_ns: u64) {
        let (earliest, count) = &mut self.acquisitions[usize::from(from_first_boundary)];
        *earliest = (*earliest).min(born_ns);
        *count += 1;
    }

    /// The folded acquisitions as (earliest time, count), empty groups left out.
    pub(crate) fn weighted_acquisitions(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.acquisitions.iter().copied().filter(|&(_, n)| n > 0)
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Records {
    /// The records kept, sorted by id.
    items: Vec<Record>,
    next: RecordId,
    folded: Folded,
}

impl Records {
    pub(crate) fn add(&mut self, tgid: u32, site: SiteId, acquired: Acquisition) -> RecordId {
        let id = self.next;
        // 64 bits: folding keeps memory flat, so a run may hand out ids for days.
        self.next = id + 1;
        self.items.push(Record {
            origin_ns: acquired.origin_ns,
            born_ns: acquired.born_ns,
            released_ns: NEVER,
            site,
            tgid,
            id,
            origin: acquired.origin,
            cause: None,
        });
        id
    }

    fn position(&self, id: RecordId) -> Option<usize> {
        // Records added since the last fold have consecutive ids at the end, and most
        // lookups are of recent records: try the place `id` would have there first.
        let newest = self.items.last()?;
        let back = newest.id.checked_sub(id)? as usize;
        let guess = self.items.len().checked_sub(back + 1);
        match guess.and_then(|at| self.items.get(at).map(|r| (at, r))) {
            Some((at, record)) if record.id == id => Some(at),
            _ => self.items.binary_search_by_key(&id, |r| r.id).ok(),
        }
    }

    /// Marks a record released; a second release of the same record changes nothing.
    pub(crate) fn release(&mut self, id: RecordId, at_ns: u64, cause: Cause) {
        let Some(at) = self.position(id) else {
            return; // folded: released long ago
        };
        let record = &mut self.items[at];
        if record.is_live() {
            // Another process's release can be stamped before the acquiring call returned
            // (the entry on disk exists before its creator's sys_exit): it lived no time.
            record.released_ns = at_ns.max(record.born_ns);
            record.cause = Some(cause);
        }
    }

    /// Moves a record to another site: an entry renamed is reported where it lives now.
    pub(crate) fn move_to_site(&mut self, id: RecordId, site: SiteId) {
        if let Some(at) = self.position(id) {
            self.items[at].site = site;
        }
    }

    /// A record kept; panics on an id never handed out or folded away (only released
    /// records are folded, and nothing looks those up by id).
    pub(crate) fn get(&self, id: RecordId) -> &Record {
        self.find(id).expect("a record kept in the ledger")
    }

    /// A record, if it is kept (not folded away, and handed out at all).
    pub(crate) fn find(&self, id: RecordId) -> Option<&Record> {
        self.position(id).map(|at| &self.items[at])
    }

    /// The records kept, in id order (see [`Records::folded`] for the rest).
    pub(crate) fn all(&self) -> &[Record] {
        &self.items
    }

    /// Records added so far, folded ones included: what a call added is the difference.
    pub(crate) fn handed_out(&self) -> u64 {
        self.next
    }

    /// What the records folded away add up to.
    pub(crate) fn folded(&self) -> &Folded {
        &self.folded
    }

    pub(crate) fn folded_mut(&mut self) -> &mut Folded {
        &mut self.folded
    }

    /// Folds away every record `fold` says to, handing it to `fold` to add to the
    /// aggregates first. Returns the records folded, in id order.
    pub(crate) fn fold_where(
        &mut self,
        mut fold: impl FnMut(&Record, &mut Folded) -> bool,
    ) -> Vec<Record> {
        let mut gone = Vec::new();
        let folded = &mut self.folded;
        self.items.retain(|record| {
            let out = fold(record, folded);
            if out {
                folded.records += 1;
                gone.push(*record);
            }
            !out
        });
        self.items.shrink_to(self.items.len() * 2);
        gone
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_stays_small() {
        assert!(size_of::<Record>() <= 48, "{}", size_of::<Record>());
    }

    #[test]
    fn first_release_wins() {
        let mut records = Records::default();
        let id = records.add(1, 0, Acquisition::at(Origin::Acquired, 10));
        records.release(id, 20, Cause::Explicit);
        records.release(id, 30, Cause::Exit);
        assert_eq!(
            (records.get(id).released_ns, records.get(id).cause),
            (20, Some(Cause::Explicit))
        );
    }

    #[test]
    fn records_are_found_by_id_after_folds() {
        let mut records = Records::default();
        for t in 0..100 {
            let id = records.add(1, 0, Acquisition::at(Origin::Acquired, t));
            if id % 3 != 0 {
                records.release(id, t + 1, Cause::Explicit);
            }
        }
        let gone = records.fold_where(|r, _| r.released_ns != NEVER && r.id % 2 == 0);
        assert!(gone.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(gone.len(), 33);
        for t in 100..110 {
            records.add(1, 0, Acquisition::at(Origin::Acquired, t));
        }
        for id in 0..110 {
            let kept = id >= 100 || id % 3 == 0 || id % 2 == 1;
            assert_eq!(records.find(id).map(|r| r.id), kept.then_some(id), "{id}");
        }
        assert_eq!(records.find(110), None);
        records.release(4, 500, Cause::Explicit); // folded: nothing to do
        records.release(105, 500, Cause::Explicit);
        assert_eq!(records.get(105).released_ns, 500);
    }
}
