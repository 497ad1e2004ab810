//! One record per resource acquisition (an fd-table entry or a mapping), kept for the whole
//! run so the analysis can replay what was live at any iteration boundary.
//!
//! Records are compact (40 bytes): a long run can have millions of them. Everything that
//! repeats (paths, stacks) is an interned [`SiteId`].

use super::sites::SiteId;

pub(crate) type RecordId = u32;

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

#[derive(Debug, Default, Clone)]
pub(crate) struct Records {
    items: Vec<Record>,
}

impl Records {
    pub(crate) fn add(&mut self, tgid: u32, site: SiteId, acquired: Acquisition) -> RecordId {
        let id = RecordId::try_from(self.items.len()).expect("fewer than 2^32 records");
        self.items.push(Record {
            origin_ns: acquired.origin_ns,
            born_ns: acquired.born_ns,
            released_ns: NEVER,
            site,
            tgid,
            origin: acquired.origin,
            cause: None,
        });
        id
    }

    /// Marks a record released; a second release of the same record changes nothing.
    pub(crate) fn release(&mut self, id: RecordId, at_ns: u64, cause: Cause) {
        let record = &mut self.items[id as usize];
        if record.is_live() {
            record.released_ns = at_ns;
            record.cause = Some(cause);
        }
    }

    /// Moves a record to another site: an entry renamed is reported where it lives now.
    pub(crate) fn move_to_site(&mut self, id: RecordId, site: SiteId) {
        self.items[id as usize].site = site;
    }

    pub(crate) fn get(&self, id: RecordId) -> &Record {
        &self.items[id as usize]
    }

    pub(crate) fn all(&self) -> &[Record] {
        &self.items
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
        assert!(size_of::<Record>() <= 40, "{}", size_of::<Record>());
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
}
