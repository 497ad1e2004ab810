//! The sizes of the entries on disk the target created and left: sampled during the run
//! within a bounded budget (so a file that grows shows it), and taken for every live entry
//! when tracing ends, before the analysis (which stays pure: it gets these as an input).

use std::io::ErrorKind;

use crate::analysis::FileSizes;
use crate::ledger::Ledger;

/// At most this many stats per [`SAMPLE_PERIOD_NS`] of traced time: sampling must not
/// slow the drain of the event ring, whatever the number of live entries.
const SAMPLES_PER_PERIOD: usize = 64;
const SAMPLE_PERIOD_NS: u64 = 100_000_000;

/// Samples sizes of live entries during the run, rotating through them.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    next_ns: u64,
    /// The last path sampled: the next window starts after it.
    cursor: Option<String>,
}

impl Sampler {
    /// Called after each event: once per period, stats the next window of live entries
    /// and notes their sizes at the event's time (the drain runs close behind the target,
    /// so the size is the one of about that moment).
    pub(crate) fn after_event(&mut self, ledger: &mut Ledger, time_ns: u64) {
        if time_ns < self.next_ns {
            return;
        }
        self.next_ns = time_ns.saturating_add(SAMPLE_PERIOD_NS);
        let window = ledger.live_file_window(self.cursor.as_deref(), SAMPLES_PER_PERIOD);
        for (record, path) in window {
            if let Some(Ok(bytes)) = size_of(&path) {
                ledger.note_file_size(record, time_ns, bytes);
            }
            self.cursor = Some(path);
        }
    }
}

/// Stats every entry still live in the ledger, without following symlinks (a symlink's
/// size is its own, not its target's). A relative path (the target's cwd was unknown)
/// cannot be looked up from here: its size stays unknown and it is not counted as
/// removed.
pub(crate) fn stat_live(ledger: &Ledger) -> FileSizes {
    let mut sizes = FileSizes::default();
    for (record, path) in ledger.live_file_paths() {
        match size_of(&path) {
            Some(Ok(bytes)) => {
                sizes.sizes.insert(record, bytes);
            }
            Some(Err(error)) if error.kind() == ErrorKind::NotFound => {
                sizes.gone.insert(record);
            }
            // Permission denied, a path too long...: the size is unknown, nothing more.
            Some(Err(_)) | None => {}
        }
    }
    sizes
}

/// The size of the entry at `path`, without following a symlink (a symlink's size is its
/// own, not its target's). `None` for a relative path: the target's cwd was unknown, and
/// from here it cannot be looked up.
fn size_of(path: &str) -> Option<std::io::Result<u64>> {
    path.starts_with('/')
        .then(|| std::fs::symlink_metadata(path).map(|meta| meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::{Stream, call};
    use leakscope_common::syscalls;

    #[test]
    fn sizes_live_entries_and_counts_vanished_ones() {
        let dir = std::env::temp_dir().join(format!("leakscope-sizes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kept = dir.join("kept.bin");
        std::fs::write(&kept, vec![0u8; 4096]).unwrap();
        let gone = dir.join("gone.bin");
        let mut s = Stream::new(5);
        for path in [&kept, &gone] {
            let path = path.to_str().unwrap();
            s.sys(call(syscalls::MKNOD, 0, [0, 0o100600, 0, 0, 0, 0]).with_path(path));
        }
        let sizes = stat_live(&s.ledger());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            sizes.sizes.values().copied().collect::<Vec<_>>(),
            vec![4096]
        );
        assert_eq!(sizes.removed_unseen(), 1);
    }

    #[test]
    fn sampling_rotates_within_its_budget() {
        let mut s = Stream::new(5);
        for i in 0..100 {
            let path = format!("/nonexistent-leakscope/{i:03}");
            s.sys(call(syscalls::MKNOD, 0, [0; 6]).with_path(&path));
        }
        s.sys(call(syscalls::MKNOD, 0, [0; 6]).with_path("/"));
        let mut ledger = s.ledger();
        let mut sampler = Sampler::default();
        sampler.after_event(&mut ledger, 1_000);
        sampler.after_event(&mut ledger, 2_000);
        assert_eq!(
            ledger.file_size_samples().len(),
            1,
            "'/' exists, once per period"
        );
        assert_eq!(
            sampler.cursor.as_deref(),
            Some("/nonexistent-leakscope/062")
        );
        sampler.after_event(&mut ledger, 1_000 + SAMPLE_PERIOD_NS);
        // 063..099, then around to '/' and 000..025.
        assert_eq!(
            sampler.cursor.as_deref(),
            Some("/nonexistent-leakscope/025")
        );
        assert_eq!(ledger.file_size_samples().len(), 2);
    }
}
