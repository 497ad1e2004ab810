//! The kinds of ring-buffer record, typed on both sides: the kernel writes an
//! [`EventKind`] into [`crate::Event::kind`], and the reader gets it back with
//! `TryFrom<u32>`, which refuses a value that this build does not know.

/// What an [`crate::Event`] describes. The discriminants are the values of [`crate::Event::kind`] on the
/// wire: fixed, part of the wire format.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A successful syscall of interest returned; `syscall_nr`, `ret` and `args` say which.
    Syscall = 1,
    /// A traced process created a new process (not a thread); `aux` is the child's tgid.
    Fork = 2,
    /// A traced process finished an exec. Sent as a [`crate::PathEvent`] when the kernel
    /// could read the new program: the path is the file really executed (`bprm->interp`,
    /// as the exec call named it), `args[0]..args[1]` its code (`mm->start_code`,
    /// `mm->end_code`), `args[2]` its inode number and `args[3]` its device (the kernel's
    /// encoding: major << 20 | minor), so that a process gone before its maps were read
    /// still has its own frames named. Else the header alone.
    Exec = 3,
    /// A thread of a traced process exited; `tid == tgid` means the whole process is gone.
    Exit = 4,
    /// The iteration-marker uprobe fired.
    Marker = 5,
    /// A traced syscall that acquires a resource failed: `syscall_nr` says which, `ret` is
    /// the negative errno. Only the header is sent (no path, no stack): failures can come
    /// in floods (EMFILE in a loop), and the errno is what matters.
    Failed = 6,
    /// A successful open-family call and the `close` of the fd it returned, paired in the
    /// kernel: a [`crate::PathEvent`] whose header is the open's and whose `close_tid` and
    /// `close_ktime_ns` are the close's. The reader splits it back into the two calls.
    OpenClosed = 7,
    /// The user stack of an fd-returning call, sent on its own just before the call's
    /// record (which is unchanged: held for pairing or not): a [`crate::UserStackEvent`]
    /// whose header has the call's `ktime_ns`, `tgid`, `tid`, `syscall_nr` and `ret`. The
    /// reader gives it to the record of the same thread with the same time, and drops it
    /// when that open was paired with its close ([`EventKind::OpenClosed`]) or never came.
    UserStack = 8,
    /// `--heap`: the user stack at an allocator call's entry (sampled, as the fd stacks
    /// are): a [`crate::UserStackEvent`] whose header has the entry's `ktime_ns`, `tgid` and
    /// `tid`. The block it makes carries the same time in [`crate::heap::HeapLive::stack_ns`],
    /// so the survivors read at the end find their stacks by (tgid, time).
    HeapStack = 9,
    /// `--heap`: a block whose stack was sent ([`EventKind::HeapStack`]) was freed (or its
    /// allocation failed): header only, `aux` is the block's `stack_ns`. The reader drops
    /// that stack, so it keeps only the stacks of live blocks.
    HeapFreed = 10,
}

impl EventKind {
    /// Every kind, in wire order.
    pub const ALL: [EventKind; 10] = [
        EventKind::Syscall,
        EventKind::Fork,
        EventKind::Exec,
        EventKind::Exit,
        EventKind::Marker,
        EventKind::Failed,
        EventKind::OpenClosed,
        EventKind::UserStack,
        EventKind::HeapStack,
        EventKind::HeapFreed,
    ];
}

/// A [`crate::Event::kind`] value that is no [`EventKind`]: the kernel object and the reader
/// were built from different versions of this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownKind(pub u32);

impl TryFrom<u32> for EventKind {
    type Error = UnknownKind;

    #[inline(always)]
    fn try_from(value: u32) -> Result<Self, UnknownKind> {
        Ok(match value {
            1 => EventKind::Syscall,
            2 => EventKind::Fork,
            3 => EventKind::Exec,
            4 => EventKind::Exit,
            5 => EventKind::Marker,
            6 => EventKind::Failed,
            7 => EventKind::OpenClosed,
            8 => EventKind::UserStack,
            9 => EventKind::HeapStack,
            10 => EventKind::HeapFreed,
            other => return Err(UnknownKind(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_are_fixed() {
        // A change here is a wire-format change: kernel objects and readers of other
        // versions would misread each other.
        let values = EventKind::ALL.map(|kind| kind as u32);
        assert_eq!(values, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn every_kind_round_trips_through_its_wire_value() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::try_from(kind as u32), Ok(kind));
        }
    }

    #[test]
    fn values_outside_the_enum_are_refused_with_the_value() {
        for value in [0, 11, 99, u32::MAX] {
            assert_eq!(EventKind::try_from(value), Err(UnknownKind(value)));
        }
    }
}
