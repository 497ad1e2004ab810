//! Unwinding a copied user stack with the binaries' DWARF CFI (framehop), as
//! `perf --call-graph dwarf` and samply do: works through code built without frame
//! pointers, and falls back to the frame pointer where no CFI covers the code (JIT).

use framehop::{
    ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};

use super::address_space::CodeRange;
use super::elf_sections::{Data, ElfUnwindSections};

/// The deepest stack kept: a site needs its first user frame and a few below it.
pub(crate) const MAX_FRAMES: usize = 128;

/// The registers a stack copy starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UserRegs {
    pub(crate) ip: u64,
    pub(crate) sp: u64,
    pub(crate) bp: u64,
}

/// A framehop module for an executable mapping of a file, from its cached sections.
pub(crate) fn module(code: &CodeRange, bias: u64, sections: &ElfUnwindSections) -> Module<Data> {
    Module::new(
        code.path.display().to_string(),
        code.range.clone(),
        bias,
        ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: sections.text_svma.clone(),
            got_svma: sections.got_svma.clone(),
            eh_frame_svma: sections.eh_frame_svma.clone(),
            eh_frame: sections.eh_frame.clone(),
            eh_frame_hdr_svma: sections.eh_frame_hdr_svma.clone(),
            eh_frame_hdr: sections.eh_frame_hdr.clone(),
            ..Default::default()
        },
    )
}

/// The addresses to symbolize for the stack `bytes` copied from `regs.sp` up, innermost
/// first (return addresses already moved back into their call instruction), and whether
/// the unwind reached the stack's root. A truncated unwind (the copy ended, no rule)
/// keeps what it found.
pub(crate) fn unwind(
    unwinder: &UnwinderX86_64<Data>,
    cache: &mut CacheX86_64,
    regs: UserRegs,
    bytes: &[u8],
) -> (Vec<u64>, bool) {
    let sp = regs.sp;
    let mut read_stack = |addr: u64| {
        let offset = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
        let word = bytes
            .get(offset..offset.checked_add(8).ok_or(())?)
            .ok_or(())?;
        Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
    };
    let mut frames = unwinder.iter_frames(
        regs.ip,
        UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp),
        cache,
        &mut read_stack,
    );
    let mut addrs = Vec::new();
    loop {
        match frames.next() {
            Ok(Some(_)) if addrs.len() >= MAX_FRAMES => return (addrs, false),
            Ok(Some(frame)) => addrs.push(lookup_address(frame)),
            Ok(None) => return (addrs, true),
            Err(_) => return (addrs, false),
        }
    }
}

/// The address whose symbol names the frame: inside the call for a return address.
fn lookup_address(frame: FrameAddress) -> u64 {
    frame.address_for_lookup()
}
