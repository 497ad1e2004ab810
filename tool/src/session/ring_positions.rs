//! The ring buffer's consumer and producer positions, read from the kernel's own pages
//! (mapped read-only a second time): aya's reader says when it has nothing more to read,
//! but not whether that is because the ring is empty or because the next record is still
//! being written. Held opens need the difference (see [`super::held`]).

use std::{
    os::fd::AsFd,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

pub(super) struct RingPositions {
    /// The consumer page, then the producer page (each position is its page's first word).
    pages: NonNull<std::ffi::c_void>,
    page_size: usize,
}

impl RingPositions {
    pub(super) fn new(ring: &impl AsFd) -> nix::Result<RingPositions> {
        let page_size = procfs::page_size() as usize;
        let len = std::num::NonZeroUsize::new(2 * page_size).expect("pages are not empty");
        // SAFETY: a new shared read-only mapping of the ring's two metadata pages; nothing
        // else refers to it.
        let pages = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                ring.as_fd(),
                0,
            )?
        };
        Ok(RingPositions { pages, page_size })
    }

    fn position(&self, page: usize) -> u64 {
        // SAFETY: the mapping lives as long as self, is page-aligned, and the kernel keeps
        // the position as an unsigned long at the start of each page.
        let word = unsafe {
            &*self
                .pages
                .as_ptr()
                .cast::<u8>()
                .add(page * self.page_size)
                .cast::<AtomicU64>()
        };
        word.load(Ordering::Acquire)
    }

    /// Where the kernel will write the next record.
    pub(super) fn producer(&self) -> u64 {
        self.position(1)
    }

    /// Where the reader will read next.
    pub(super) fn consumer(&self) -> u64 {
        self.position(0)
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of this length, unmapped once.
        let _ = unsafe { munmap(self.pages, 2 * self.page_size) };
    }
}
