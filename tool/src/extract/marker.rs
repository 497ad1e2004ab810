//! The iteration marker: the worker calls it once at the start of every iteration, and a uprobe
//! on it (attached by name in the leakscope binary itself) tells the tracer where iterations
//! begin. That makes the iteration count exact instead of inferred.

use std::sync::atomic::{AtomicU64, Ordering};

/// The symbol name the tracer attaches the uprobe to.
pub const MARKER_SYMBOL: &str = "leakscope_iteration_marker";

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
pub extern "C" fn leakscope_iteration_marker(iteration: u64) {
    let iteration = std::hint::black_box(iteration);
    LAST_MARKED_ITERATION.store(iteration, Ordering::Relaxed);
    MARKER_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Keeps the marker in the final binary even if no code path of a given build calls it, so
/// `--iteration-symbol leakscope_iteration_marker` always finds it.
#[used]
static KEEP_MARKER: extern "C" fn(u64) = leakscope_iteration_marker;

/// The number of marker calls so far in this process.
pub fn marker_calls() -> u64 {
    MARKER_CALLS.load(Ordering::Relaxed)
}

/// The index passed to the most recent marker call.
pub fn last_marked_iteration() -> u64 {
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
}
