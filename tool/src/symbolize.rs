//! Names for the user stacks of mapping calls, resolved with blazesym while the traced
//! process is still alive (its /proc/PID/maps says which file each address belongs to).

use std::{collections::HashMap, sync::Arc};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Process, Source},
};

/// How many frames a site keeps: enough to see past allocator wrappers.
const MAX_FRAMES: usize = 6;

pub struct StackNamer {
    symbolizer: Symbolizer,
    cache: HashMap<(u32, u32, u64), Arc<[String]>>,
}

impl Default for StackNamer {
    fn default() -> Self {
        Self {
            symbolizer: Symbolizer::new(),
            cache: HashMap::new(),
        }
    }
}

impl StackNamer {
    /// Frames for `(stack_id, return_address)` in process `tgid`, innermost first.
    /// `read_stack` fetches the raw instruction pointers for a stack id.
    pub fn frames(
        &mut self,
        tgid: u32,
        stack_id: Option<u32>,
        return_address: u64,
        read_stack: impl FnOnce(u32) -> Vec<u64>,
    ) -> Option<Arc<[String]>> {
        let key = (tgid, stack_id.unwrap_or(u32::MAX), return_address);
        if let Some(frames) = self.cache.get(&key) {
            return Some(frames.clone());
        }
        let mut ips = stack_id.map(read_stack).unwrap_or_default();
        // The frame-pointer walk starts inside libc's wrapper and skips its caller; the
        // word at the stack pointer is that caller's return address. Put it second.
        if return_address != 0 && !ips.contains(&return_address) {
            let at = ips.len().min(1);
            ips.insert(at, return_address);
        }
        ips.truncate(MAX_FRAMES + 1);
        if ips.is_empty() {
            return None;
        }
        let source = Source::Process(Process::new(tgid.into()));
        let names: Vec<String> = match self.symbolizer.symbolize(&source, Input::AbsAddr(&ips)) {
            Ok(symbols) => symbols
                .iter()
                .zip(&ips)
                .filter_map(|(symbol, ip)| match symbol {
                    Symbolized::Sym(sym) => Some(sym.name.to_string()),
                    // The guessed return address may not be code at all: drop it.
                    Symbolized::Unknown(_) if *ip == return_address => None,
                    Symbolized::Unknown(_) => Some(format!("{ip:#x}")),
                })
                .take(MAX_FRAMES)
                .collect(),
            Err(_) => return None,
        };
        let frames: Arc<[String]> = names.into();
        self.cache.insert(key, frames.clone());
        Some(frames)
    }
}
