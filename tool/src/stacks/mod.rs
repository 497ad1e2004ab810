//! User stacks: from what the kernel captured to named frames.
//!
//! - `address_space`: each process's code modules (copies of its maps), fork and exec;
//! - `elf_sections`: a file's CFI sections and load bias, cached per file;
//! - `unwind`: framehop over a copied stack, through code without frame pointers;
//! - `symbolize`: blazesym over the module's file, inlined functions as frames;
//! - `perf_map`, `jit_frame`: JIT code named from the process's `/tmp/perf-PID.map`;
//! - `classify`: the program's own frames, and how a site folds the others;
//! - `frame`: the [`Frame`] the ledger, the report and JSON share.

mod address_space;
mod classify;
mod elf_sections;
mod frame;
mod jit_frame;
mod perf_map;
mod symbolize;
mod unwind;

use std::sync::Arc;

use framehop::x86_64::CacheX86_64;

use crate::event::ExecImage;

use address_space::{AddressSpaces, Space};
#[cfg(test)]
pub(crate) use classify::SITE_FRAMES;
pub(crate) use classify::{Folded, SiteStack};
use elf_sections::ElfCache;
pub(crate) use frame::FrameKind;
pub(crate) use frame::{Frame, FrameJson, Frames};
use perf_map::{JitName, PerfMaps};
use symbolize::FrameNamer;
pub(crate) use unwind::UserRegs;

/// Turns captured user stacks into frames, per traced process.
pub(crate) struct StackNamer {
    spaces: AddressSpaces,
    files: ElfCache,
    names: FrameNamer,
    jit: PerfMaps,
    unwind_cache: CacheX86_64,
    /// See [`StackNamer::keep_exited_spaces`].
    keep_exited: bool,
}

impl Default for StackNamer {
    fn default() -> Self {
        StackNamer {
            spaces: AddressSpaces::default(),
            files: ElfCache::default(),
            names: FrameNamer::default(),
            jit: PerfMaps::default(),
            unwind_cache: CacheX86_64::new(),
            keep_exited: false,
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

    /// Follows the executable mmaps that load code (see [`AddressSpaces::observe`]);
    /// `path_of_fd` names the fds the processes hold.
    pub(crate) fn observe(
        &mut self,
        event: &crate::event::Event,
        path_of_fd: &dyn Fn(u32, i32) -> Option<std::sync::Arc<str>>,
    ) {
        self.spaces.observe(event, path_of_fd);
        // A new program writes its own map; an exited process's stacks are all named.
        if matches!(event.what, crate::event::What::Exec(_))
            || matches!(event.what, crate::event::What::Exit) && !self.keep_exited
        {
            self.jit.forget(event.tgid);
        }
    }

    /// Processes' code modules stay known after they exit, so addresses can be named
    /// when the run ends (`--heap` names its survivors' callers then).
    pub(crate) fn keep_exited_spaces(&mut self) {
        self.keep_exited = true;
        self.spaces.keep_exited();
    }

    /// `tgid` exec'd at `time_ns`: its old code mappings no longer apply; `image` is the
    /// new program as the kernel saw it.
    pub(crate) fn exec(&mut self, tgid: u32, time_ns: u64, image: Option<&ExecImage>) {
        self.spaces.exec(tgid, time_ns);
        if let Some(image) = image {
            self.spaces
                .add_exec_image(tgid, time_ns, image, &mut self.files);
        }
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
        self.name_all(tgid, &space, &addrs).into()
    }

    /// The frames at lookup address `addr` of process `tgid` (a caller's return address
    /// minus one), innermost inlined function first, with file and line where the debug
    /// info has them: `--heap` names its callers this way. Empty when nothing is known of
    /// the process.
    pub(crate) fn frames_at(&mut self, tgid: u32, addr: u64) -> Vec<Frame> {
        let Some(space) = self.spaces.for_addresses(tgid, &[addr]) else {
            return Vec::new();
        };
        self.name_all(tgid, &space, &[addr])
    }

    /// The frame of an address no readable module covers: JIT code, named from the
    /// process's perf map when it has one.
    fn unlocated(&mut self, tgid: u32, space: &Space, addr: u64) -> Frame {
        let module = space.module_at(addr);
        if module.is_some() {
            return symbolize::unlocated(module, addr);
        }
        match self.jit.name(tgid, addr) {
            JitName::Named(frame) => frame,
            // Anonymous executable memory, and no map to name it: say how to get one.
            JitName::NoMap if space.covers(addr) => Frame {
                kind: FrameKind::UnnamedJit,
                ..Frame::unknown(addr)
            },
            JitName::NoMap | JitName::NotInMap => symbolize::unlocated(None, addr),
        }
    }

    fn unwind_in(&mut self, space: &Space, regs: UserRegs, stack: &[u8]) -> Vec<u64> {
        let resolved = space.resolved(&mut self.files);
        unwind::unwind(&resolved.unwinder, &mut self.unwind_cache, regs, stack).0
    }

    /// Frames for lookup addresses of process `tgid`, innermost first.
    fn name_all(&mut self, tgid: u32, space: &Space, addrs: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            match space.locate(&mut self.files, addr) {
                Some(located) => {
                    frames.extend_from_slice(&self.names.frames(located.module, located.vaddr));
                }
                None => frames.push(self.unlocated(tgid, space, addr)),
            }
        }
        frames.truncate(unwind::MAX_FRAMES);
        frames
    }
}

#[cfg(test)]
mod tests;
