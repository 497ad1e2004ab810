//! The sizes of the entries on disk the target created and left, taken when tracing ends
//! and before the analysis (which stays pure: it gets these as an input).

use std::io::ErrorKind;

use crate::analysis::FileSizes;
use crate::ledger::Ledger;

/// Stats every entry still live in the ledger, without following symlinks (a symlink's
/// size is its own, not its target's). A relative path (the target's cwd was unknown)
/// cannot be looked up from here: its size stays unknown and it is not counted as
/// removed.
pub(crate) fn stat_live(ledger: &Ledger) -> FileSizes {
    let mut sizes = FileSizes::default();
    for (record, path) in ledger.live_file_paths() {
        if !path.starts_with('/') {
            continue;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                sizes.sizes.insert(record, meta.len());
            }
            Err(error) if error.kind() == ErrorKind::NotFound => sizes.removed_unseen += 1,
            // Permission denied, a path too long...: the size is unknown, nothing more.
            Err(_) => {}
        }
    }
    sizes
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
        assert_eq!(sizes.removed_unseen, 1);
    }
}
