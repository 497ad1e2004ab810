//! The iteration marker: the worker calls it once at the start of every iteration, and a uprobe
//! on it (attached by name in the leakscope binary itself) tells the tracer where iterations
//! begin. That makes the iteration count exact instead of inferred.

use std::sync::atomic::{AtomicU64, Ordering};

/// The symbol name the tracer attaches the uprobe to.
pub(crate) const MARKER_SYMBOL: &str = "leakscope_iteration_marker";

/// How often the marker has been called in this process, and with which index last. Storing
/// into these statics also gives the function a body no other function has, so identical-code
/// folding in the linker cannot merge it with a look-alike (a fold would make the uprobe fire
/// for the other function's calls too).
static MARKER_CALLS: AtomicU64 = AtomicU64::new(0);
static LAST_MARKED_ITERATION: AtomicU64 = AtomicU64::new(0);

/// Marks the start of iteration `iteration` (0-based, counted across all rounds).
///
/// - `no_mangle` + `extern "C"`: a stable symbol name the uprobe can find in the symbol table.
/// - `inline(never)`: every iteration is a real call to that address, even with LTO.
/// - `black_box`: the argument stays live in the ABI register (rdi), so the probe can read it.
#[unsafe(no_mangle)]
#[inline(never)]
pub(crate) extern "C" fn leakscope_iteration_marker(iteration: u64) {
    let iteration = std::hint::black_box(iteration);
    LAST_MARKED_ITERATION.store(iteration, Ordering::Relaxed);
    MARKER_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Keeps the marker in the final binary even if no code path of a given build calls it, so
/// `--iteration-symbol leakscope_iteration_marker` always finds it.
#[used]
static KEEP_MARKER: extern "C" fn(u64) = leakscope_iteration_marker;

/// The number of marker calls so far in this process.
#[cfg(test)]
pub(crate) fn marker_calls() -> u64 {
    MARKER_CALLS.load(Ordering::Relaxed)
}

/// The index passed to the most recent marker call.
#[cfg(test)]
pub(crate) fn last_marked_iteration() -> u64 {
    LAST_MARKED_ITERATION.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symbol_name_matches_the_function() {
        // A rename of the function without the constant would leave the uprobe with nothing
        // to attach to; `no_mangle` makes the Rust name the symbol name.
        let name = std::any::type_name_of_val(&leakscope_iteration_marker);
        assert!(name.ends_with(MARKER_SYMBOL), "{name}");
        let _ = &KEEP_MARKER;
    }

    #[test]
    fn the_symbol_is_a_function_in_the_binarys_symbol_table() {
        // What the uprobe loader does: look the name up in the ELF symbol table of the binary.
        let elf = std::fs::read("/proc/self/exe").unwrap();
        let symbol = find_function_symbol(&elf, MARKER_SYMBOL.as_bytes());
        let (value, size) = symbol.expect("the marker symbol is in .symtab");
        assert!(value != 0 && size != 0, "value {value:#x}, size {size}");
        assert_eq!(
            find_function_symbol(&elf, b"leakscope_no_such_marker"),
            None
        );
    }

    /// A minimal ELF64 little-endian .symtab lookup: (st_value, st_size) of a FUNC symbol.
    fn find_function_symbol(elf: &[u8], name: &[u8]) -> Option<(u64, u64)> {
        const SHT_SYMTAB: u32 = 2;
        const STT_FUNC: u8 = 2;
        let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
        let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
        assert_eq!(&elf[..5], b"\x7fELF\x02", "an ELF64 file");
        let (shoff, shentsize, shnum) = (u64_at(0x28) as usize, u16_at(0x3a), u16_at(0x3c));
        let section = |index: usize| shoff + index * shentsize;
        let symtab = (0..shnum).find(|&i| u32_at(section(i) + 4) == SHT_SYMTAB)?;
        let (sym_off, sym_size) = (
            u64_at(section(symtab) + 0x18) as usize,
            u64_at(section(symtab) + 0x20) as usize,
        );
        let strtab = section(u32_at(section(symtab) + 0x28) as usize);
        let str_off = u64_at(strtab + 0x18) as usize;
        (sym_off..sym_off + sym_size).step_by(24).find_map(|sym| {
            let name_start = str_off + u32_at(sym) as usize;
            let name_len = elf[name_start..].iter().position(|&b| b == 0)?;
            let is_function = elf[sym + 4] & 0xf == STT_FUNC;
            (is_function && &elf[name_start..name_start + name_len] == name)
                .then(|| (u64_at(sym + 8), u64_at(sym + 16)))
        })
    }
}
