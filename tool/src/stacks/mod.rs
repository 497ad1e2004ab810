//! User stacks: from what the kernel captured to named frames.
//!
//! - `address_space`: each process's code modules (copies of its maps), fork and exec;
//! - `elf_sections`: a file's CFI sections and load bias, cached per file;
//! - `unwind`: framehop over a copied stack, through code without frame pointers;
//! - `symbolize`: blazesym over the module's file, inlined functions as frames;
//! - `classify`: the program's own frames, and how a site folds the others;
//! - `frame`: the [`Frame`] the ledger, the report and JSON share.

mod address_space;
mod classify;
mod elf_sections;
mod frame;
mod symbolize;
mod unwind;

use std::collections::HashMap;
use std::sync::Arc;

use framehop::x86_64::CacheX86_64;

use address_space::{AddressSpaces, Space};
pub(crate) use classify::{Folded, SITE_FRAMES, SiteStack};
use elf_sections::ElfCache;
pub(crate) use frame::{Frame, FrameJson, FrameKind, Frames};
use symbolize::FrameNamer;
pub(crate) use unwind::UserRegs;

/// How many frames the frame-pointer walk (the old capture) keeps, before folding.
const WALKED_FRAMES: usize = 16;

/// Turns captured user stacks into frames, per traced process.
pub(crate) struct StackNamer {
    spaces: AddressSpaces,
    files: ElfCache,
    names: FrameNamer,
    unwind_cache: CacheX86_64,
    /// Frame-pointer walks by (tgid, stack id, word at the stack pointer, first own-code
    /// word): the same few stacks come again and again.
    walked: HashMap<(u32, u32, u64, u64), Option<Frames>>,
}

impl Default for StackNamer {
    fn default() -> Self {
        StackNamer {
            spaces: AddressSpaces::default(),
            files: ElfCache::default(),
            names: FrameNamer::default(),
            unwind_cache: CacheX86_64::new(),
            walked: HashMap::new(),
        }
    }
}

impl StackNamer {
    /// Copies the code mappings of a target that has just exec'd (see
    /// [`AddressSpaces::remember_after_exec`]).
    pub(crate) fn remember_after_exec(&mut self, tgid: u32) {
        self.spaces.remember_after_exec(tgid);
    }

    /// Copies the code mappings of `tgid` now, while it is alive.
    pub(crate) fn remember(&mut self, tgid: u32) {
        self.spaces.remember(tgid);
    }

    /// A forked child has its parent's address space.
    pub(crate) fn inherit(&mut self, parent: u32, child: u32) {
        self.spaces.inherit(parent, child);
    }

    /// Follows the opens and executable mmaps that load code (see
    /// [`AddressSpaces::observe`]).
    pub(crate) fn observe(&mut self, event: &crate::event::Event) {
        self.spaces.observe(event);
    }

    /// `tgid` exec'd at `time_ns`: its old code mappings no longer apply.
    pub(crate) fn exec(&mut self, tgid: u32, time_ns: u64) {
        self.spaces.exec(tgid, time_ns);
    }

    /// Unwinds a copied user stack with the binaries' CFI and names the frames.
    ///
    /// `stack` holds the bytes from `regs.sp` up. Frames come innermost first, inlined
    /// functions expanded; an unwind cut short (the copy ended, code without CFI or frame
    /// pointer) keeps the frames it found. Empty when nothing is known of the process.
    pub(crate) fn unwound(&mut self, tgid: u32, regs: UserRegs, stack: &[u8]) -> Frames {
        let Some(mut space) = self.spaces.for_addresses(tgid, &[regs.ip]) else {
            return Arc::from([]);
        };
        let mut addrs = self.unwind_in(&space, regs, stack);
        // A library loaded after the copy was taken: take it again and unwind once more.
        if let Some(newer) = self.spaces.for_addresses(tgid, &addrs)
            && !Arc::ptr_eq(&newer, &space)
        {
            space = newer;
            addrs = self.unwind_in(&space, regs, stack);
        }
        self.name_all(&space, &addrs).into()
    }

    fn unwind_in(&mut self, space: &Space, regs: UserRegs, stack: &[u8]) -> Vec<u64> {
        let resolved = space.resolved(&mut self.files);
        unwind::unwind(&resolved.unwinder, &mut self.unwind_cache, regs, stack).0
    }

    /// Frames for lookup addresses, innermost first.
    fn name_all(&mut self, space: &Space, addrs: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            match space.locate(&mut self.files, addr) {
                Some(located) => {
                    frames.extend_from_slice(&self.names.frames(located.module, located.vaddr));
                }
                None => frames.push(symbolize::unlocated(space.module_at(addr), addr)),
            }
        }
        frames.truncate(unwind::MAX_FRAMES);
        frames
    }

    /// Frames for a mapping call in process `tgid`, innermost first, from the kernel's
    /// frame-pointer walk (`stack_id`, fetched by `read_stack`) with the word at the stack
    /// pointer as the libc wrapper's caller. When that reaches none of the program's own
    /// code, the `stack_words` that point into it follow, each marked with a trailing `?`
    /// (found by scanning, not by walking).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the kernel sends copied stacks (UserStackEvent) now; the walk goes with its tests"
        )
    )]
    pub(crate) fn frames(
        &mut self,
        tgid: u32,
        stack_id: Option<u32>,
        stack_words: &[u64],
        read_stack: impl FnOnce(u32) -> Vec<u64>,
    ) -> Option<Frames> {
        let return_address = stack_words.first().copied().unwrap_or(0);
        let mut ips = stack_id.map(read_stack).unwrap_or_default();
        // The frame-pointer walk starts inside libc's wrapper and skips its caller; the
        // word at the stack pointer is that caller's return address. Put it second.
        if return_address != 0 && !ips.contains(&return_address) {
            let at = ips.len().min(1);
            ips.insert(at, return_address);
        }
        ips.truncate(WALKED_FRAMES);
        let space = self.spaces.for_addresses(tgid, &ips)?;
        let scanned: Vec<u64> = stack_words
            .iter()
            .copied()
            .filter(|&word| space.in_own_code(word))
            .collect();
        let key = (
            tgid,
            stack_id.unwrap_or(u32::MAX),
            return_address,
            scanned.first().copied().unwrap_or(0),
        );
        if let Some(frames) = self.walked.get(&key) {
            return frames.clone();
        }
        // A frame-pointer walk through code built without them (libc, ld.so) yields words
        // that are no code at all, and the guessed return address may be none: drop what
        // no executable mapping covers.
        ips.retain(|&ip| space.covers(ip));
        // Return addresses name the call before them.
        let lookups: Vec<u64> = ips.iter().map(|ip| ip.saturating_sub(1)).collect();
        let mut frames = self.name_all(&space, &lookups);
        if !frames.iter().any(|frame| frame.kind == FrameKind::User) {
            let mut own: Vec<u64> = scanned.iter().map(|w| w.saturating_sub(1)).collect();
            own.dedup();
            own.truncate(SITE_FRAMES * 2);
            frames.extend(self.name_all(&space, &own).into_iter().map(|frame| Frame {
                function: Arc::from(format!("{}?", frame.function)),
                ..frame
            }));
        }
        frames.dedup();
        // Unresolved addresses below the named frames (start-up code mapped after the copy
        // was taken) add nothing a reader can use.
        while frames.len() > 1 && frames.last().is_some_and(|f| f.kind == FrameKind::Unknown) {
            frames.pop();
        }
        let frames: Option<Frames> = (!frames.is_empty()).then(|| frames.into());
        self.walked.insert(key, frames.clone());
        frames
    }
}

#[cfg(test)]
mod tests;
