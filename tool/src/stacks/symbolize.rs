//! Names for code addresses, through the module's ELF file (blazesym `Source::Elf` with
//! the address in the file's own layout): the same for a live process and a dead one.
//! Inlined functions become frames of their own, innermost first, so a leaking helper the
//! compiler inlined is still named.

use std::sync::Arc;

use blazesym::symbolize::{
    CodeInfo, Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};

use super::address_space::CodeRange;
use super::classify::function_kind;
use super::frame::{Frame, FrameKind};

/// Names frames, caching them by (file, address in the file).
pub(crate) struct FrameNamer {
    symbolizer: Symbolizer,
    cache: foldhash::HashMap<(u32, u64), Arc<[Frame]>>,
}

impl Default for FrameNamer {
    fn default() -> Self {
        FrameNamer {
            symbolizer: Symbolizer::new(),
            cache: foldhash::HashMap::default(),
        }
    }
}

impl FrameNamer {
    /// The frames at ELF address `vaddr` of `module`: the function, preceded by the
    /// functions inlined into it at that address; `module+0xvaddr` when no symbol covers it.
    pub(crate) fn frames(&mut self, module: &CodeRange, vaddr: u64) -> Arc<[Frame]> {
        let key = (module.file_id, vaddr);
        if let Some(frames) = self.cache.get(&key) {
            return frames.clone();
        }
        let source = Source::Elf(Elf::new(&*module.path));
        let frames: Arc<[Frame]> = match self
            .symbolizer
            .symbolize_single(&source, Input::VirtOffset(vaddr))
        {
            Ok(Symbolized::Sym(sym)) => {
                let frame = |name: &str, code_info: Option<&CodeInfo<'_>>, inlined: bool| Frame {
                    kind: function_kind(name, module.kind),
                    function: Arc::from(name),
                    file: code_info
                        .map(|info| Arc::from(info.to_path().to_string_lossy().as_ref())),
                    line: code_info.and_then(|info| info.line),
                    module: module.name.clone(),
                    inlined,
                };
                // blazesym lists inlined calls outermost first; the outer function's
                // location is where it made the first of them.
                let mut frames: Vec<Frame> = sym
                    .inlined
                    .iter()
                    .rev()
                    .map(|inlined| frame(&inlined.name, inlined.code_info.as_ref(), true))
                    .collect();
                frames.push(frame(&sym.name, sym.code_info.as_deref(), false));
                frames.into()
            }
            Ok(Symbolized::Unknown(_)) | Err(_) => {
                [Frame::unnamed_in(module.name.clone(), module.kind, vaddr)].into()
            }
        };
        self.cache.insert(key, frames.clone());
        frames
    }
}

/// A frame for an address that no readable module covers.
pub(crate) fn unlocated(module: Option<&CodeRange>, addr: u64) -> Frame {
    match module {
        // The file is gone or unreadable: name the module and the offset in the mapping.
        Some(code) => Frame::unnamed_in(
            code.name.clone(),
            code.kind,
            addr - code.range.start + code.file_offset,
        ),
        None => Frame {
            kind: FrameKind::Unknown,
            ..Frame::unknown(addr)
        },
    }
}
