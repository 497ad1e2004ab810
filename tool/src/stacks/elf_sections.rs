//! What unwinding needs from an ELF file: its CFI sections (`.eh_frame`, `.eh_frame_hdr`),
//! the address ranges framehop resolves them against, and the executable load segments
//! that give a mapping's load bias. Read once per file (by device, inode, size and mtime)
//! and shared by every process that maps it.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSegment, SegmentFlags, elf::PF_X};

/// Section bytes as framehop takes them: shared, never copied again.
pub(crate) type Data = Arc<[u8]>;

/// A file's identity: a file replaced at the same path is another file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

/// A `PT_LOAD` segment with the execute permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExecSegment {
    pub(crate) file_offset: u64,
    pub(crate) file_size: u64,
    pub(crate) vaddr: u64,
}

/// The unwinding and address-translation facts of one ELF file.
#[derive(Debug, Default)]
pub(crate) struct ElfUnwindSections {
    pub(crate) text_svma: Option<Range<u64>>,
    pub(crate) got_svma: Option<Range<u64>>,
    pub(crate) eh_frame_svma: Option<Range<u64>>,
    pub(crate) eh_frame: Option<Data>,
    pub(crate) eh_frame_hdr_svma: Option<Range<u64>>,
    pub(crate) eh_frame_hdr: Option<Data>,
    pub(crate) exec_segments: Vec<ExecSegment>,
}

impl ElfUnwindSections {
    /// Reads `path` through a memory map, copying only the two CFI sections (a program's
    /// `.text` can be tens of MiB; framehop needs it only for macOS compact unwind info).
    pub(crate) fn read(path: &Path) -> Option<ElfUnwindSections> {
        let file = File::open(path).ok()?;
        // SAFETY: the map is read-only and dropped before this returns; a file truncated
        // meanwhile could fault, as for any reader of a mapped library (perf, samply).
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let elf = object::File::parse(&*map).ok()?;
        let range = |name: &str| {
            elf.section_by_name(name)
                .map(|s| s.address()..s.address() + s.size())
        };
        let data = |name: &str| {
            elf.section_by_name(name)
                .and_then(|s| s.data().ok())
                .map(Data::from)
        };
        let exec_segments = elf
            .segments()
            .filter(|segment| {
                matches!(segment.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0)
            })
            .map(|segment| {
                let (file_offset, file_size) = segment.file_range();
                ExecSegment {
                    file_offset,
                    file_size,
                    vaddr: segment.address(),
                }
            })
            .collect();
        Some(ElfUnwindSections {
            text_svma: range(".text"),
            got_svma: range(".got"),
            eh_frame_svma: range(".eh_frame"),
            eh_frame: data(".eh_frame"),
            eh_frame_hdr_svma: range(".eh_frame_hdr"),
            eh_frame_hdr: data(".eh_frame_hdr"),
            exec_segments,
        })
    }

    /// The load bias (runtime address − ELF virtual address) of an executable mapping
    /// that starts at `map_start` and maps the file from `map_offset`.
    pub(crate) fn load_bias(&self, map_start: u64, map_offset: u64) -> Option<u64> {
        load_bias(&self.exec_segments, map_start, map_offset)
    }
}

/// The load bias from the executable `PT_LOAD` that the mapping covers.
///
/// Only executable segments are considered: the read-only segment before the code often
/// ends in the same page the code starts in (Rust: `p_offset` 0x603c0, `p_vaddr`
/// 0x613c0), so a first match over all segments would take it and be off by a page.
pub(crate) fn load_bias(segments: &[ExecSegment], map_start: u64, map_offset: u64) -> Option<u64> {
    const PAGE: u64 = 4096;
    let segment = segments.iter().find(|s| {
        s.file_offset & !(PAGE - 1) <= map_offset && map_offset < s.file_offset + s.file_size
    })?;
    Some(
        map_start
            .wrapping_sub(map_offset)
            .wrapping_add(segment.file_offset)
            .wrapping_sub(segment.vaddr),
    )
}

/// [`ElfUnwindSections`] by file identity.
#[derive(Default)]
pub(crate) struct ElfCache {
    by_file: HashMap<FileKey, Option<Arc<ElfUnwindSections>>>,
}

impl ElfCache {
    /// The sections of the file now at `path`; `None` if it is gone or no ELF file.
    pub(crate) fn get(&mut self, path: &Path) -> Option<Arc<ElfUnwindSections>> {
        let meta = std::fs::metadata(path).ok()?;
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        };
        self.by_file
            .entry(key)
            .or_insert_with(|| ElfUnwindSections::read(path).map(Arc::new))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Rust release binary's layout: the read-only segment's tail shares the page in
    /// which the code starts.
    #[test]
    fn the_bias_comes_from_the_executable_segment_not_the_first_that_matches() {
        let text = ExecSegment {
            file_offset: 0x603c0,
            file_size: 0x1_0000,
            vaddr: 0x613c0,
        };
        let map_start = 0x5555_5560_0000;
        let map_offset = 0x60000; // the page the code starts in
        let bias = load_bias(&[text], map_start, map_offset).unwrap();
        assert_eq!(bias, map_start - 0x61000);
        // An address in the code maps back to its ELF virtual address.
        assert_eq!(map_start + 0x3c0 - bias, 0x613c0);
    }

    #[test]
    fn a_mapping_outside_every_executable_segment_has_no_bias() {
        let text = ExecSegment {
            file_offset: 0x1000,
            file_size: 0x2000,
            vaddr: 0x1000,
        };
        assert_eq!(load_bias(&[text], 0x7000_0000, 0x4000), None);
        // The mapping puts file offset 0x1000, which is vaddr 0x1000, at 0x7000_0000.
        assert_eq!(
            load_bias(&[text], 0x7000_0000, 0x1000),
            Some(0x7000_0000 - 0x1000)
        );
    }

    #[test]
    fn libc_has_cfi_and_one_executable_segment() {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        let mut cache = ElfCache::default();
        let sections = cache.get(libc).expect("libc is readable");
        assert!(sections.eh_frame.as_ref().is_some_and(|d| !d.is_empty()));
        assert!(sections.eh_frame_hdr.is_some());
        assert_eq!(sections.exec_segments.len(), 1);
        // Cached: the same Arc comes back.
        assert!(Arc::ptr_eq(&sections, &cache.get(libc).unwrap()));
    }
}
