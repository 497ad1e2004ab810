//! One process's fd table: which record each open fd number belongs to, and whether it
//! closes on exec. Fd numbers are reused constantly, so the table maps numbers to
//! records; the record, not the number, is the resource.

use std::collections::BTreeMap;

use super::records::RecordId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FdEntry {
    pub(crate) record: RecordId,
    pub(crate) cloexec: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FdTable {
    entries: BTreeMap<i32, FdEntry>,
}

impl FdTable {
    /// Installs `entry` as `fd`, returning what was there (which the caller must release:
    /// a well-behaved kernel only does this for dup2/dup3, but lost close events can too).
    pub(crate) fn insert(&mut self, fd: i32, entry: FdEntry) -> Option<FdEntry> {
        self.entries.insert(fd, entry)
    }

    pub(crate) fn get(&self, fd: i32) -> Option<&FdEntry> {
        self.entries.get(&fd)
    }

    pub(crate) fn remove(&mut self, fd: i32) -> Option<FdEntry> {
        self.entries.remove(&fd)
    }

    /// Removes every fd in `first..=last` (fd numbers as the kernel's unsigned ints).
    pub(crate) fn remove_range(&mut self, first: u32, last: u32) -> Vec<FdEntry> {
        let fds: Vec<i32> = self.range(first, last).collect();
        fds.into_iter()
            .filter_map(|fd| self.entries.remove(&fd))
            .collect()
    }

    pub(crate) fn mark_cloexec_range(&mut self, first: u32, last: u32) {
        let fds: Vec<i32> = self.range(first, last).collect();
        for fd in fds {
            if let Some(entry) = self.entries.get_mut(&fd) {
                entry.cloexec = true;
            }
        }
    }

    pub(crate) fn set_cloexec(&mut self, fd: i32, on: bool) -> bool {
        self.entries
            .get_mut(&fd)
            .map(|entry| entry.cloexec = on)
            .is_some()
    }

    /// Removes the CLOEXEC fds, as exec does.
    pub(crate) fn take_cloexec(&mut self) -> Vec<FdEntry> {
        let (closing, kept): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|(_, entry)| entry.cloexec);
        self.entries = kept;
        closing.into_values().collect()
    }

    pub(crate) fn take_all(&mut self) -> Vec<FdEntry> {
        std::mem::take(&mut self.entries).into_values().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (i32, &FdEntry)> {
        self.entries.iter().map(|(&fd, entry)| (fd, entry))
    }

    fn range(&self, first: u32, last: u32) -> impl Iterator<Item = i32> + '_ {
        // Fd numbers above i32::MAX cannot exist, so clamp the unsigned range.
        let first = first.min(i32::MAX as u32) as i32;
        let last = last.min(i32::MAX as u32) as i32;
        let valid = first <= last;
        self.entries
            .range(first..=last.max(first))
            .map(|(&fd, _)| fd)
            .filter(move |_| valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(record: RecordId, cloexec: bool) -> FdEntry {
        FdEntry { record, cloexec }
    }

    #[test]
    fn range_operations() {
        let mut table = FdTable::default();
        for fd in 0..8 {
            table.insert(fd, entry(fd as RecordId, false));
        }
        table.mark_cloexec_range(6, u32::MAX);
        let closed = table.remove_range(3, 4);
        assert_eq!(
            closed.iter().map(|e| e.record).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(
            table.remove_range(5, 2),
            vec![],
            "an empty range closes nothing"
        );
        let exec_closed = table.take_cloexec();
        assert_eq!(
            exec_closed.iter().map(|e| e.record).collect::<Vec<_>>(),
            vec![6, 7]
        );
        assert_eq!(
            table.iter().map(|(fd, _)| fd).collect::<Vec<_>>(),
            vec![0, 1, 2, 5]
        );
    }
}
