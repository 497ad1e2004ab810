//! Entries on disk the traced processes created and have not removed.
//!
//! The filesystem is shared: an entry belongs to no process. A process's exit or exec
//! releases nothing, and a file one process creates and another removes is one record.
//! One live map, exact resolved path -> record, ordered so a renamed directory can re-key
//! everything under it. An entry's site is the pattern of the name it has now: a renamed
//! entry moves to the site of its new name (a rotated log leaks at `app.log.N`, where it
//! piles up, not at the `app.log` it was created as).

use std::collections::BTreeMap;

use super::history::History;
use super::records::{Acquisition, Cause, Origin, RecordId, Records};
use super::sites::{EntryKind, SiteKey};

#[derive(Clone, Debug, Default)]
pub(crate) struct Entries {
    live: BTreeMap<String, RecordId>,
}

impl Entries {
    /// A new entry at `path`. A live record at the same path was replaced unseen (removed
    /// by someone not traced, or the create replaced it): it is released, so re-creating
    /// one name every iteration stays one live entry.
    pub(super) fn create(
        &mut self,
        history: &mut History,
        (tgid, t): (u32, u64),
        path: String,
        kind: EntryKind,
    ) {
        let site = site_of(history, kind, &path);
        let record = history
            .files
            .add(tgid, site, Acquisition::at(Origin::Acquired, t));
        if let Some(replaced) = self.live.insert(path, record) {
            history.files.release(replaced, t, Cause::Implicit);
        }
        self.regroup(history);
    }

    /// Live entries whose pattern the grouping has superseded move to the new pattern's
    /// site, so a loop whose first names read like words is still one site.
    fn regroup(&mut self, history: &mut History) {
        for superseded in history.names.take_superseded() {
            for (path, &record) in &self.live {
                let SiteKey::Entry(entry) = history.sites.key(history.files.get(record).site)
                else {
                    continue;
                };
                if entry.pattern == superseded.old && superseded.covers(path) {
                    let site = history
                        .sites
                        .intern(SiteKey::entry(entry.kind, superseded.new.clone()));
                    history.files.move_to_site(record, site);
                }
            }
        }
    }

    /// unlink/rmdir of `path`. A removed directory was empty: whatever the ledger still
    /// had under it was removed unseen. Unknown paths are ignored: most removals are of
    /// entries made before tracing or by other programs.
    pub(super) fn remove(&mut self, records: &mut Records, path: &str, directory: bool, t: u64) {
        if let Some(record) = self.live.remove(path) {
            records.release(record, t, Cause::Explicit);
        }
        if directory {
            for (_, record) in self.take_under(path) {
                records.release(record, t, Cause::Implicit);
            }
        }
    }

    /// rename(from, to): whatever was at `to` (and under it) is replaced, and the entry at
    /// `from` and everything under it move to `to`, keeping their records (same birth).
    pub(super) fn rename(&mut self, history: &mut History, from: &str, to: &str, t: u64) {
        if from == to {
            return;
        }
        let replaced = self.live.remove(to).into_iter();
        for record in replaced.chain(self.take_under(to).into_iter().map(|(_, r)| r)) {
            history.files.release(record, t, Cause::Implicit);
        }
        let moved = self.take_subtree(from);
        self.put_subtree(history, moved, from, to);
        self.regroup(history);
    }

    /// renameat2(RENAME_EXCHANGE): the two paths (and what is under them) swap records.
    pub(super) fn exchange(&mut self, history: &mut History, a: &str, b: &str) {
        if a == b {
            return;
        }
        let under_a = self.take_subtree(a);
        let under_b = self.take_subtree(b);
        self.put_subtree(history, under_a, a, b);
        self.put_subtree(history, under_b, b, a);
        self.regroup(history);
    }

    /// Every live entry: its record and exact path.
    pub(crate) fn live(&self) -> impl Iterator<Item = (RecordId, &str)> {
        self.live
            .iter()
            .map(|(path, &record)| (record, path.as_str()))
    }

    /// Up to `n` live entries after path `after` (from the start without one), wrapping
    /// around: a rotating window over every live entry.
    pub(crate) fn window(&self, after: Option<&str>, n: usize) -> Vec<(RecordId, String)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, |a| Excluded(a.to_string()));
        let tail = self.live.range((start, Unbounded));
        let head = self.live.iter();
        let mut seen = std::collections::HashSet::new();
        tail.chain(head)
            .filter(|(_, record)| seen.insert(**record))
            .take(n)
            .map(|(path, &record)| (record, path.clone()))
            .collect()
    }

    /// Removes and returns the entries strictly under directory `dir`.
    fn take_under(&mut self, dir: &str) -> Vec<(String, RecordId)> {
        let prefix = if dir.ends_with('/') {
            dir.to_string()
        } else {
            format!("{dir}/")
        };
        let keys: Vec<String> = self
            .live
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| key.clone())
            .collect();
        keys.into_iter()
            .filter_map(|key| self.live.remove(&key).map(|record| (key, record)))
            .collect()
    }

    /// Removes `path` and everything under it.
    fn take_subtree(&mut self, path: &str) -> Vec<(String, RecordId)> {
        let mut taken = self.take_under(path);
        if let Some(record) = self.live.remove(path) {
            taken.push((path.to_string(), record));
        }
        taken
    }

    /// Puts entries taken from under `from` back under `to`, each at the site of its new
    /// name (same kind of entry).
    fn put_subtree(
        &mut self,
        history: &mut History,
        entries: Vec<(String, RecordId)>,
        from: &str,
        to: &str,
    ) {
        for (path, record) in entries {
            let moved = format!("{to}{}", &path[from.len()..]);
            if let SiteKey::Entry(entry) = history.sites.key(history.files.get(record).site) {
                let site = site_of(history, entry.kind, &moved);
                history.files.move_to_site(record, site);
            }
            self.live.insert(moved, record);
        }
    }
}

/// The site of an entry of `kind` named `path`.
fn site_of(history: &mut History, kind: EntryKind, path: &str) -> super::sites::SiteId {
    let pattern = history.names.pattern(path);
    history.sites.intern(SiteKey::entry(kind, pattern))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(paths: &[&str]) -> (Entries, History) {
        let mut history = History::default();
        let mut entries = Entries::default();
        for (i, path) in paths.iter().enumerate() {
            let at = (1, i as u64);
            entries.create(&mut history, at, path.to_string(), EntryKind::File);
        }
        (entries, history)
    }

    fn paths(entries: &Entries) -> Vec<(RecordId, String)> {
        entries.live().map(|(r, p)| (r, p.to_string())).collect()
    }

    #[test]
    fn directory_rename_rekeys_children_only() {
        let (mut e, mut h) = entries(&["/a", "/a/x", "/a/y/z", "/ab", "/b"]);
        e.rename(&mut h, "/a", "/b", 10);
        assert_eq!(
            paths(&e),
            vec![
                (3, "/ab".into()),
                (0, "/b".into()),
                (1, "/b/x".into()),
                (2, "/b/y/z".into())
            ]
        );
        assert!(!h.files.get(4).is_live(), "the replaced /b");
    }

    #[test]
    fn exchange_swaps_subtrees() {
        let (mut e, mut h) = entries(&["/a", "/a/x", "/b"]);
        e.exchange(&mut h, "/a", "/b");
        assert_eq!(
            paths(&e),
            vec![(2, "/a".into()), (0, "/b".into()), (1, "/b/x".into())]
        );
    }

    /// The pattern of the site record `id` is at now.
    fn site_pattern(h: &History, id: RecordId) -> String {
        match h.sites.key(h.files.get(id).site) {
            SiteKey::Entry(entry) => entry.pattern.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_renamed_entry_moves_to_the_site_of_its_new_name() {
        // Log rotation: app.log becomes app.log.N and a new app.log is created.
        let mut h = History::default();
        let mut e = Entries::default();
        e.create(&mut h, (1, 0), "/log/app.log".into(), EntryKind::File);
        for n in 1..=3u64 {
            e.rename(&mut h, "/log/app.log", &format!("/log/app.log.{n}"), n * 10);
            e.create(
                &mut h,
                (1, n * 10 + 1),
                "/log/app.log".into(),
                EntryKind::File,
            );
        }
        let rotated: Vec<String> = (0..3).map(|id| site_pattern(&h, id)).collect();
        assert_eq!(rotated, vec!["/log/app.log.N"; 3]);
        assert_eq!(site_pattern(&h, 3), "/log/app.log", "the current log");
        assert!(h.files.all().iter().all(|r| r.is_live()), "nothing removed");
    }

    #[test]
    fn a_renamed_directory_moves_its_children_to_their_new_sites() {
        let mut h = History::default();
        let mut e = Entries::default();
        e.create(&mut h, (1, 0), "/w/t-1".into(), EntryKind::Directory);
        e.create(&mut h, (1, 1), "/w/t-1/a".into(), EntryKind::File);
        e.rename(&mut h, "/w/t-1", "/w/trash/t-1", 10);
        assert_eq!(site_pattern(&h, 0), "/w/trash/t-N");
        assert_eq!(site_pattern(&h, 1), "/w/trash/t-N/a");
        assert!(
            matches!(
                h.sites.key(h.files.get(0).site),
                SiteKey::Entry(entry) if entry.kind == EntryKind::Directory
            ),
            "a directory stays a directory"
        );
    }

    #[test]
    fn entries_named_before_their_pattern_was_known_join_its_site() {
        let (_, h) = entries(&["/w/job-FSVN12", "/w/job-aQ3xZk", "/w/job-ABCD1"]);
        assert_eq!(site_pattern(&h, 0), "/w/job-XXXXXX");
        assert_eq!(site_pattern(&h, 1), "/w/job-XXXXXX");
        assert_eq!(site_pattern(&h, 2), "/w/job-ABCDN", "another shape stays");
        let (_, h) = entries(&["/w/leak-123456", "/w/leak-aQ3xZk", "/w/leak-7"]);
        assert_eq!(
            site_pattern(&h, 0),
            "/w/leak-XXXXXX",
            "an all-digit random part"
        );
        assert_eq!(site_pattern(&h, 2), "/w/leak-N", "a counter");
    }

    #[test]
    fn rmdir_releases_what_was_left_under_it() {
        let (mut e, mut h) = entries(&["/d", "/d/f", "/dd"]);
        e.remove(&mut h.files, "/d", true, 10);
        assert_eq!(paths(&e), vec![(2, "/dd".into())]);
        assert_eq!(h.files.get(1).cause, Some(Cause::Implicit));
        assert_eq!(h.files.get(0).cause, Some(Cause::Explicit));
    }
}
