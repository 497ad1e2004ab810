//! What the kernel side records in `Event::aux` for open, openat, openat2 and creat: the
//! open flags, and whether the open created the file (FMODE_CREATED on the new `struct file`).
//!
//! An open with O_CREAT may create the file or open one that exists; only the kernel knows
//! which, so the kernel side reads the new file's `f_mode` and says so here. The encoding
//! is written once for both sides ([`encode`] in the kernel, [`decode`] in userspace).

use crate::syscalls;

/// `O_WRONLY` (x86_64, as every flag here).
pub const O_WRONLY: u64 = 0o1;
/// `O_CREAT`.
pub const O_CREAT: u64 = 0o100;
/// `O_EXCL`.
pub const O_EXCL: u64 = 0o200;
/// `O_TRUNC`.
pub const O_TRUNC: u64 = 0o1000;
/// `O_CLOEXEC`.
pub const O_CLOEXEC: u64 = 0o2000000;
/// `__O_TMPFILE`: the bit that makes an open an O_TMPFILE one (the `O_TMPFILE` macro also
/// has `O_DIRECTORY`).
pub const O_TMPFILE_BIT: u64 = 0o20000000;
/// The flags creat(2) opens with.
pub const CREAT_FLAGS: u64 = O_CREAT | O_WRONLY | O_TRUNC;

/// `FMODE_CREATED` in `struct file.f_mode` (bit 20 since Linux 4.19): the open created
/// the file. Measured on 6.18: set by O_CREAT|O_EXCL and by creat of a new name, clear for
/// O_CREAT of an existing file, and clear for O_TMPFILE (which makes no name: tell those
/// by [`O_TMPFILE_BIT`] in the flags).
pub const FMODE_CREATED: u32 = 1 << 20;

/// Offset of `flags` (a u64) in the user `struct open_how` that openat2 takes in `args[2]`.
pub const OPEN_HOW_FLAGS: u64 = 0;

/// `aux` low 32 bits: the open flags, valid when [`OPEN_FLAGS_KNOWN`] is set.
pub const OPEN_FLAGS_MASK: u64 = 0xffff_ffff;
/// `aux`: the low 32 bits hold the open flags (openat2's could not be read without it).
pub const OPEN_FLAGS_KNOWN: u64 = 1 << 32;
/// `aux`: the open created the file, when [`OPEN_CREATION_KNOWN`] is set.
pub const OPEN_CREATED: u64 = 1 << 33;
/// `aux`: the new file's `f_mode` was read, so [`OPEN_CREATED`] is meaningful.
pub const OPEN_CREATION_KNOWN: u64 = 1 << 34;

/// Where an open-family call's flags are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagsAt {
    /// In this argument register.
    Arg(u8),
    /// Fixed by the call (creat).
    Fixed(u64),
    /// In the `struct open_how` the argument points at (openat2).
    OpenHow(u8),
}

/// Where the flags of `nr` are; `None` for calls that are not open, openat, openat2 or creat.
#[inline(always)]
pub const fn flags_at(nr: u32) -> Option<FlagsAt> {
    match nr {
        syscalls::OPEN => Some(FlagsAt::Arg(1)),
        syscalls::OPENAT => Some(FlagsAt::Arg(2)),
        syscalls::CREAT => Some(FlagsAt::Fixed(CREAT_FLAGS)),
        syscalls::OPENAT2 => Some(FlagsAt::OpenHow(2)),
        _ => None,
    }
}

/// Whether an open with `flags` may create a file, so that its `f_mode` is worth reading.
#[inline(always)]
pub const fn may_create(flags: u64) -> bool {
    flags & (O_CREAT | O_TMPFILE_BIT) != 0
}

/// The `aux` of an open: `flags` when known, and whether it created the file when known.
#[inline(always)]
pub const fn encode(flags: Option<u64>, created: Option<bool>) -> u64 {
    let mut aux = match flags {
        Some(flags) => (flags & OPEN_FLAGS_MASK) | OPEN_FLAGS_KNOWN,
        None => 0,
    };
    match created {
        Some(true) => aux |= OPEN_CREATION_KNOWN | OPEN_CREATED,
        Some(false) => aux |= OPEN_CREATION_KNOWN,
        None => {}
    }
    aux
}

/// The flags and the creation of an open's `aux`, as [`encode`] took them.
pub const fn decode(aux: u64) -> (Option<u64>, Option<bool>) {
    let flags = if aux & OPEN_FLAGS_KNOWN != 0 {
        Some(aux & OPEN_FLAGS_MASK)
    } else {
        None
    };
    let created = if aux & OPEN_CREATION_KNOWN != 0 {
        Some(aux & OPEN_CREATED != 0)
    } else {
        None
    };
    (flags, created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_unknown_stays_unknown() {
        let excl = O_CREAT | O_EXCL | O_CLOEXEC;
        for flags in [
            None,
            Some(0),
            Some(excl),
            Some(O_TMPFILE_BIT | 0o200000 | 2),
        ] {
            for created in [None, Some(false), Some(true)] {
                assert_eq!(decode(encode(flags, created)), (flags, created));
            }
        }
        // An event from before this encoding, or a failed read, says nothing.
        assert_eq!(decode(0), (None, None));
    }

    #[test]
    fn flags_are_where_each_call_takes_them() {
        assert_eq!(flags_at(syscalls::OPEN), Some(FlagsAt::Arg(1)));
        assert_eq!(flags_at(syscalls::OPENAT), Some(FlagsAt::Arg(2)));
        assert_eq!(flags_at(syscalls::CREAT), Some(FlagsAt::Fixed(0o1101)));
        assert_eq!(flags_at(syscalls::OPENAT2), Some(FlagsAt::OpenHow(2)));
        assert_eq!(flags_at(syscalls::MKDIR), None);
        assert!(may_create(O_CREAT) && may_create(O_TMPFILE_BIT) && !may_create(O_EXCL | 2));
    }
}
