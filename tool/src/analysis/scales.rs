//! What one unit of each class's series means: the smallest rise worth calling growth,
//! the step the class moves by, and the detection limit above which "no leak" stops being
//! a useful answer.

use super::trend::{Scale, Unit};
use crate::ledger::Ledger;
use crate::ledger::mappings::PAGE;

/// The smallest leak, in bytes per iteration, worth ruling out. A 30-byte malloc occupies
/// a 48-byte chunk in glibc; a byte class that cannot see 64 B/iteration says so instead of
/// "no leak".
pub(crate) const SMALLEST_BYTES_WORTH_RULING_OUT: f64 = 64.0;
/// A count class that cannot rule out one leaked resource every other iteration says so.
pub(crate) const SMALLEST_COUNT_WORTH_RULING_OUT: f64 = 0.5;
/// glibc's malloc grows the break by its top pad (128 KiB) plus the request, rounded to
/// pages: the step assumed when the run never showed one.
pub(crate) const DEFAULT_BRK_STEP: f64 = 132.0 * 1024.0;

/// fds and mapping counts: one resource is one step; a rise of one resource over the whole
/// window is too little to call sustained.
pub(crate) const COUNT: Scale = Scale {
    floor: 2.0,
    resolution: 1.0,
    meaningful: SMALLEST_COUNT_WORTH_RULING_OUT,
    unit: Unit::Count,
};

/// Mapped bytes: mappings are whole pages. A new leaked mapping shows in the count; bytes
/// add growth of existing mappings (mremap), which moves by pages: ruling out a page per
/// iteration is what the bytes can promise.
pub(crate) fn mapped_bytes() -> Scale {
    Scale {
        floor: 2.0 * PAGE as f64,
        resolution: PAGE as f64,
        meaningful: PAGE as f64,
        unit: Unit::Bytes,
    }
}

/// Bytes on disk of the entries left behind. File sizes move by any number of bytes, but a
/// leak of less than a page per iteration (one small file's block) is not worth a verdict
/// of its own: the entry count already shows each file left.
pub(crate) fn file_bytes() -> Scale {
    Scale {
        floor: 2.0 * PAGE as f64,
        resolution: 1.0,
        meaningful: PAGE as f64,
        unit: Unit::Bytes,
    }
}

/// The brk heap moves in the allocator's steps: the typical growth this run showed, or
/// glibc's default when it never grew.
pub(crate) fn heap_bytes(ledger: &Ledger) -> Scale {
    Scale {
        floor: 2.0 * PAGE as f64,
        resolution: brk_step(ledger),
        meaningful: SMALLEST_BYTES_WORTH_RULING_OUT,
        unit: Unit::Bytes,
    }
}

/// Resident memory jitters with allocator and page-cache effects: less than 256 KiB over
/// the judged window is noise.
pub(crate) fn resident_bytes() -> Scale {
    Scale {
        floor: 256.0 * 1024.0,
        resolution: PAGE as f64,
        meaningful: SMALLEST_BYTES_WORTH_RULING_OUT,
        unit: Unit::Bytes,
    }
}

/// The median growth of the break over the run.
fn brk_step(ledger: &Ledger) -> f64 {
    let mut steps: Vec<u64> = ledger.heap_growth().iter().map(|g| g.bytes).collect();
    if steps.is_empty() {
        return DEFAULT_BRK_STEP;
    }
    steps.sort_unstable();
    steps[steps.len() / 2] as f64
}
