//! One process's address-space ledger: which record owns each mapped range.
//!
//! A `BTreeMap` keyed by start address holds non-overlapping pieces. A record can own
//! several pieces (munmap may cut a range in the middle; mremap moves it), so live bytes are
//! also kept per record: a record is released when its last byte is unmapped.
//! (An interval-map crate would coalesce equal neighbours and lose record identity, which
//! is exactly what the lifetime and site analysis need.)

use std::collections::{BTreeMap, HashMap};

use super::records::RecordId;

pub(crate) const PAGE: u64 = 4096;

/// Rounds a length up to whole pages, as the kernel does.
pub(crate) fn page_round(len: u64) -> u64 {
    len.saturating_add(PAGE - 1) & !(PAGE - 1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    end: u64,
    record: RecordId,
}

/// Bytes a range operation took away from one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) record: RecordId,
    pub(crate) bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct MappingSet {
    pieces: BTreeMap<u64, Piece>,
    live_bytes: HashMap<RecordId, u64>,
}

impl MappingSet {
    /// Maps `[start, start+len)` for `record`. The caller removes any overlap first.
    pub(crate) fn insert(&mut self, start: u64, len: u64, record: RecordId) {
        if len == 0 {
            return;
        }
        self.pieces.insert(
            start,
            Piece {
                end: start.saturating_add(len),
                record,
            },
        );
        *self.live_bytes.entry(record).or_default() += len;
    }

    /// Unmaps `[start, start+len)`, splitting pieces it cuts through. Returns the bytes
    /// taken from each record, in address order (a record may appear more than once).
    pub(crate) fn remove(&mut self, start: u64, len: u64) -> Vec<Cut> {
        let end = start.saturating_add(len);
        let overlapping: Vec<(u64, Piece)> = self
            .pieces
            .range(..end)
            .rev()
            .take_while(|(_, piece)| piece.end > start)
            .map(|(&s, &piece)| (s, piece))
            .collect();
        let mut cuts = Vec::with_capacity(overlapping.len());
        for (piece_start, piece) in overlapping.into_iter().rev() {
            self.pieces.remove(&piece_start);
            if piece_start < start {
                self.pieces.insert(
                    piece_start,
                    Piece {
                        end: start,
                        record: piece.record,
                    },
                );
            }
            if piece.end > end {
                self.pieces.insert(
                    end,
                    Piece {
                        end: piece.end,
                        record: piece.record,
                    },
                );
            }
            let bytes = piece.end.min(end) - piece_start.max(start);
            if let Some(live) = self.live_bytes.get_mut(&piece.record) {
                *live -= bytes;
            }
            cuts.push(Cut {
                record: piece.record,
                bytes,
            });
        }
        cuts
    }

    /// Forgets records that have no bytes left; returns them (now released).
    pub(crate) fn collect_empty(
        &mut self,
        candidates: impl IntoIterator<Item = RecordId>,
    ) -> Vec<RecordId> {
        let mut gone = Vec::new();
        for record in candidates {
            if self.live_bytes.get(&record) == Some(&0) {
                self.live_bytes.remove(&record);
                gone.push(record);
            }
        }
        gone
    }

    /// The record owning the byte at `addr`.
    pub(crate) fn record_at(&self, addr: u64) -> Option<RecordId> {
        self.pieces
            .range(..=addr)
            .next_back()
            .filter(|(_, piece)| piece.end > addr)
            .map(|(_, piece)| piece.record)
    }

    #[cfg(test)]
    pub(crate) fn live_bytes(&self, record: RecordId) -> u64 {
        self.live_bytes.get(&record).copied().unwrap_or(0)
    }

    /// Every piece as (start, len, record), in address order.
    pub(crate) fn pieces(&self) -> impl Iterator<Item = (u64, u64, RecordId)> + '_ {
        self.pieces
            .iter()
            .map(|(&start, piece)| (start, piece.end - start, piece.record))
    }

    /// Drops everything (exec, exit); returns each record with the bytes it still had.
    pub(crate) fn take_all(&mut self) -> Vec<Cut> {
        self.pieces.clear();
        let mut all: Vec<Cut> = self
            .live_bytes
            .drain()
            .map(|(record, bytes)| Cut { record, bytes })
            .collect();
        all.sort_by_key(|cut| cut.record);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_pages() {
        assert_eq!(
            (page_round(1), page_round(4096), page_round(4097)),
            (4096, 4096, 8192)
        );
    }

    #[test]
    fn munmap_in_the_middle_splits() {
        let mut set = MappingSet::default();
        set.insert(0x10000, 4 * PAGE, 7);
        let cuts = set.remove(0x11000, PAGE);
        assert_eq!(
            cuts,
            vec![Cut {
                record: 7,
                bytes: PAGE
            }]
        );
        assert_eq!(
            set.pieces().collect::<Vec<_>>(),
            vec![(0x10000, PAGE, 7), (0x12000, 2 * PAGE, 7)]
        );
        assert_eq!(set.live_bytes(7), 3 * PAGE);
        assert_eq!(set.collect_empty([7]), Vec::<RecordId>::new());
        assert_eq!(set.record_at(0x11000), None);
        assert_eq!(set.record_at(0x12fff), Some(7));
    }

    #[test]
    fn removal_spanning_pieces_and_gaps() {
        let mut set = MappingSet::default();
        set.insert(0x10000, PAGE, 1);
        set.insert(0x13000, 2 * PAGE, 2);
        let cuts = set.remove(0x10000, 4 * PAGE);
        assert_eq!(
            cuts,
            vec![
                Cut {
                    record: 1,
                    bytes: PAGE
                },
                Cut {
                    record: 2,
                    bytes: PAGE
                }
            ]
        );
        assert_eq!(set.collect_empty([1, 2]), vec![1]);
        assert_eq!(set.pieces().collect::<Vec<_>>(), vec![(0x14000, PAGE, 2)]);
    }

    #[test]
    fn removing_nothing_is_harmless() {
        let mut set = MappingSet::default();
        assert!(set.remove(0x1000, PAGE).is_empty());
        assert_eq!(set.pieces().count(), 0);
    }
}
