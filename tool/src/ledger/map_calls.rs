//! What each memory-mapping syscall means, decoded from raw registers. Pure.

use crate::event::Syscall;
use leakscope_common::syscalls as nr;

use super::mappings::page_round;

pub(crate) const MAP_SHARED: u64 = 0x01;
pub(crate) const MAP_ANONYMOUS: u64 = 0x20;
pub(crate) const MREMAP_DONTUNMAP: u64 = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MapOp {
    /// A new mapping at `start`. MAP_FIXED(_NOREPLACE) or not, it replaces whatever the
    /// ledger believes was there: the kernel never returns a range that is still mapped.
    Map {
        start: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i32,
    },
    Unmap {
        start: u64,
        len: u64,
    },
    /// Resize and/or move `[old, old+old_len)` to `[new, new+new_len)`.
    Remap {
        old: u64,
        old_len: u64,
        new: u64,
        new_len: u64,
        keep_old: bool,
    },
    /// The break is now `new_break`. `requested` is the argument: 0 only asks for the
    /// break; a break left below a nonzero request means the heap could not grow.
    Brk {
        requested: u64,
        new_break: u64,
    },
}

pub(crate) fn decode(call: &Syscall) -> Option<MapOp> {
    let a = &call.args;
    let ret = call.ret as u64;
    match call.nr {
        nr::MMAP => Some(MapOp::Map {
            start: ret,
            len: page_round(a[1]),
            prot: a[2],
            flags: a[3],
            fd: a[4] as u32 as i32,
        }),
        nr::MUNMAP => Some(MapOp::Unmap {
            start: a[0],
            len: page_round(a[1]),
        }),
        nr::MREMAP => Some(MapOp::Remap {
            old: a[0],
            old_len: page_round(a[1]),
            new: ret,
            new_len: page_round(a[2]),
            keep_old: a[3] & MREMAP_DONTUNMAP != 0,
        }),
        nr::BRK => Some(MapOp::Brk {
            requested: a[0],
            new_break: ret,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::call;

    #[test]
    fn decodes_lengths_rounded() {
        let op = decode(&call(nr::MMAP, 0x7000_0000, [0, 100, 3, 0x22, u64::MAX, 0])).unwrap();
        assert_eq!(
            op,
            MapOp::Map {
                start: 0x7000_0000,
                len: 4096,
                prot: 3,
                flags: 0x22,
                fd: -1
            }
        );
        let op = decode(&call(
            nr::MREMAP,
            0x9000,
            [0x5000, 4096, 8192, 1 | MREMAP_DONTUNMAP, 0, 0],
        ))
        .unwrap();
        assert_eq!(
            op,
            MapOp::Remap {
                old: 0x5000,
                old_len: 4096,
                new: 0x9000,
                new_len: 8192,
                keep_old: true
            }
        );
    }
}
