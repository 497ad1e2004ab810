//! Types that cross the kernel/user boundary, written once for both sides.
//!
//! The kernel programs in `ebpf/` fill these structs and push them through a ring buffer;
//! the `leakscope` binary reads them back (with `aya::Pod`, behind the `user` feature).
//! Everything is `#[repr(C)]`, `Copy`, with explicit padding so both compilers agree on the
//! layout byte for byte.
#![no_std]

pub mod close_outcome;
pub mod drops;
mod event_kind;
pub mod fd_arrival;
pub mod heap;
pub mod lifetime_buckets;
mod object;
pub mod open_flags;
pub mod stack_rate;
pub mod syscalls;

pub use drops::DropReason;
pub use event_kind::{EventKind, UnknownKind};
pub use object::{globals, maps, programs, same_name};

/// Capacity of the path captured with an open-family event, including the NUL.
/// Longer paths are cut and flagged (`PATH_TRUNCATED`), never silently.
pub const PATH_CAP: usize = 256;

/// The most bytes of user stack a [`UserStackEvent`] carries (`--stack-bytes` at most).
/// 16 KiB reaches `main` through deep library code; the default is half of it
/// ([`USTACK_DEFAULT_BYTES`]), as `perf record --call-graph dwarf` copies.
pub const USTACK_CAP: usize = 16384;
/// The bytes of stack copied unless the user asks otherwise (`--stack-bytes`).
pub const USTACK_DEFAULT_BYTES: u32 = 8192;
/// Stacks copied per second per CPU unless the user asks otherwise (`--stack-rate`): a
/// program that opens files or maps memory now and then gets a stack on every call, a storm
/// of such calls one on some (about 1 µs of copying each, and an unwind in the reader).
pub const USTACK_DEFAULT_RATE: u32 = 2000;
/// The fewest bytes `--stack-bytes` accepts: below this, a copy rarely reaches past libc.
pub const USTACK_MIN_BYTES: u32 = 512;

/// [`UserStackEvent::flags`]: fewer bytes than asked for could be read (the stack ends
/// closer to the stack pointer, as the main thread's does near `main`): `len` says how many.
pub const USTACK_SHORT: u32 = 1 << 0;
/// [`UserStackEvent::flags`]: not even [`USTACK_MIN_BYTES`] could be read: `len` is 0 and
/// only the registers are known.
pub const USTACK_UNREADABLE: u32 = 1 << 1;

/// Set in [`PathEvent::path_len`] (and in both lengths of a [`PathPairEvent`]) when the
/// path did not fit in [`PATH_CAP`].
pub const PATH_TRUNCATED: u32 = 1 << 31;

/// `rss_pages` value meaning "not sampled for this event".
pub const RSS_NOT_SAMPLED: u64 = u64::MAX;

/// `stack_id` value meaning "no stack was taken" (the field is kept for its 8 bytes: the
/// stack travels in a [`UserStackEvent`] now).
pub const NO_STACK: i64 = -1;

/// `aux` of a pipe/pipe2/socketpair record whose `int[2]` could not be read: the pair
/// is unknown. (0 would read as fds 0 and 0; two fds of -1 cannot be a real pair.)
pub const FD_PAIR_UNKNOWN: u64 = u64::MAX;

/// One record of the ring buffer. Open-family syscalls arrive as a [`PathEvent`] instead,
/// which starts with this struct, so a reader can always look at the header first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` at the event: CLOCK_MONOTONIC.
    pub ktime_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    /// An [`EventKind`] as its `u32` (a field of a `Pod` struct must accept every bit
    /// pattern); read it with [`Event::kind`].
    pub kind: u32,
    /// The x86_64 syscall number for [`EventKind::Syscall`] and [`EventKind::Failed`],
    /// else 0.
    pub syscall_nr: u32,
    /// The syscall's return value.
    pub ret: i64,
    /// The six syscall argument registers (rdi, rsi, rdx, r10, r8, r9).
    pub args: [u64; 6],
    /// Extra data read in the kernel: for pipe/pipe2/socketpair the two new fds
    /// (low 32 bits = first, high = second), or [`FD_PAIR_UNKNOWN`]; for open, openat,
    /// openat2 and creat the flags and whether the file was created (see [`open_flags`]);
    /// for FORK the child's tgid.
    pub aux: u64,
    /// Resident set of the process in pages (file + anon + shmem), or [`RSS_NOT_SAMPLED`].
    /// Sampled on markers, opens and process exit, where iteration boundaries can fall.
    pub rss_pages: u64,
    /// Always [`NO_STACK`]: the user stack travels in a [`UserStackEvent`]. Kept so that
    /// every record keeps its layout.
    pub stack_id: i64,
}

impl Event {
    /// A record of `kind` with nothing sampled or read yet: no syscall, no RSS sample
    /// ([`RSS_NOT_SAMPLED`]), no stack ([`NO_STACK`]).
    #[inline(always)]
    pub const fn new(kind: EventKind, ktime_ns: u64, tgid: u32, tid: u32) -> Event {
        Event {
            ktime_ns,
            tgid,
            tid,
            kind: kind as u32,
            syscall_nr: 0,
            ret: 0,
            args: [0; 6],
            aux: 0,
            rss_pages: RSS_NOT_SAMPLED,
            stack_id: NO_STACK,
        }
    }

    /// What the record describes.
    #[inline(always)]
    pub fn kind(&self) -> Result<EventKind, UnknownKind> {
        EventKind::try_from(self.kind)
    }
}

/// A memory-mapping syscall (mmap, mremap, brk) with the user registers and a bounded copy
/// of the user stack, for unwinding in userspace with the binaries' CFI (`.eh_frame`), as
/// `perf record --call-graph dwarf` does. The same record with [`EventKind::UserStack`] in
/// its header is the stack of an fd-returning call, sent alone just before the call's own
/// record (see there): it is never sent as a bare header. A frame-pointer walk in the kernel stops inside
/// libc, which is built without frame pointers, and so do programs built the ordinary way.
///
/// The kernel sends it cut to `len` bytes of stack: a record is
/// `size_of::<UserStackEvent>() - USTACK_CAP + len` bytes long. The syscall's header goes
/// alone, a record of `size_of::<Event>()` bytes, when the stack is not sent: on purpose
/// while the ring is more than a quarter full (a storm of mapping calls must not crowd out the
/// records the counts are made of; nothing is counted lost), or when it could not be (the
/// ring had no room for it, the scratch slot was busy: counted in `LOST`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UserStackEvent {
    /// The syscall's own header.
    pub event: Event,
    /// The user instruction pointer at the syscall (just after the `syscall` instruction).
    pub ip: u64,
    /// The user stack pointer: `bytes[0]` is the byte at this address.
    pub sp: u64,
    /// The user frame pointer register (rbp), for code that keeps frame pointers.
    pub bp: u64,
    /// Bytes of `bytes` in use, a multiple of 8, at most [`USTACK_CAP`].
    pub len: u32,
    /// [`USTACK_SHORT`], [`USTACK_UNREADABLE`].
    pub flags: u32,
    /// The user stack from `sp` up.
    pub bytes: [u8; USTACK_CAP],
}

impl UserStackEvent {
    /// The bytes before the stack copy: the part every stack record has.
    pub const FIXED: usize = core::mem::size_of::<UserStackEvent>() - USTACK_CAP;
}

/// An open-family syscall with the path (or memfd name) it was given.
///
/// The kernel sends it cut after the path's NUL, rounded up to 8 bytes, so a record may
/// be shorter than this struct: down to the fixed part plus `path_len` bytes.
///
/// With [`EventKind::OpenClosed`] in its header it carries two calls: the open, and the
/// `close` of its fd by the same thread-less process before any other record of it
/// (see [`TrackedProcess`]); `close_tid` and `close_ktime_ns` are then the close's.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathEvent {
    pub event: Event,
    /// Bytes of `path` in use, without the NUL, or'ed with [`PATH_TRUNCATED`].
    pub path_len: u32,
    /// [`EventKind::OpenClosed`]: the thread that closed the fd; else 0.
    pub close_tid: u32,
    /// [`EventKind::OpenClosed`]: when the close returned; else 0.
    pub close_ktime_ns: u64,
    pub path: [u8; PATH_CAP],
}

/// [`TrackedProcess::held`]: the slot holds an open not sent yet.
pub const HELD_OPEN: u32 = 1;

/// The value of the traced-process map (`maps::TRACKED`), keyed by tgid: the process's
/// slot for an open held back in the kernel, so that an fd closed soon after its open
/// crosses the ring as one [`EventKind::OpenClosed`] record instead of two.
///
/// The kernel holds an open only while its process has one thread and an fd table that no
/// other task shares, and every program sends the held open before any other record of
/// the process: the slot is then written by one task only, one program at a time, and the
/// process's records keep their order. Userspace reads the slot while tracing (an idle
/// process's open must not stay hidden) and takes the open when `held == HELD_OPEN` and
/// `seal_ktime_ns` equals the open's time (the kernel writes the seal and then the flag
/// last, and clears the flag before it rewrites the slot).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TrackedProcess {
    /// [`HELD_OPEN`] while `open` is held, else 0.
    pub held: u32,
    pub _pad: u32,
    /// The held open's `ktime_ns`, written after the record.
    pub seal_ktime_ns: u64,
    pub open: PathEvent,
}

/// A call with two paths (rename, renameat, renameat2: the old name, then the new one).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathPairEvent {
    pub event: Event,
    /// Bytes of `path` in use, without the NUL, or'ed with [`PATH_TRUNCATED`].
    pub path_len: u32,
    /// The same for `path2`.
    pub path2_len: u32,
    pub path: [u8; PATH_CAP],
    pub path2: [u8; PATH_CAP],
}

/// Bytes of a received message's control data copied with a [`ControlEvent`]: room for one
/// SCM_RIGHTS message of 60 fds. More is cut and flagged ([`CONTROL_TRUNCATED`]).
pub const CONTROL_CAP: usize = 256;

/// Messages of one recvmmsg whose control data is copied; fds in later messages are
/// counted in [`ControlEvent::uncopied_messages`] instead.
pub const MMSG_COPY_CAP: u32 = 8;

/// [`ControlEvent::flags`]: the control data was longer than [`CONTROL_CAP`] and was cut.
pub const CONTROL_TRUNCATED: u32 = 1 << 0;
/// [`ControlEvent::flags`]: the control data could not be read from user memory.
pub const CONTROL_UNREADABLE: u32 = 1 << 1;

/// [`ControlEvent::flags`]: a later record of a recvmmsg call whose first record was
/// already sent, so the call is counted once.
pub const CONTROL_CONTINUED: u32 = 1 << 2;

/// `Event::aux` of a call whose fd is written to user memory (clone's pidfd, ...) when
/// that memory could not be read.
pub const FD_UNREADABLE: u64 = u64::MAX;

/// Control data a recvmsg/recvmmsg delivered, which may hold fds (SCM_RIGHTS, SCM_PIDFD).
///
/// Sent only for messages with control data, one record per message. A record with
/// `control_len == 0` and `uncopied_messages > 0` only reports messages of a recvmmsg whose
/// control data was not copied.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ControlEvent {
    pub event: Event,
    /// `msg_controllen` as the kernel wrote it back: bytes of control data delivered.
    pub control_len: u32,
    /// [`CONTROL_TRUNCATED`], [`CONTROL_UNREADABLE`], [`CONTROL_CONTINUED`].
    pub flags: u32,
    /// Which message of a recvmmsg this is (0 for recvmsg).
    pub message_index: u32,
    /// recvmmsg: when messages beyond [`MMSG_COPY_CAP`] had control data (or could not be
    /// read), how many messages there were beyond the cap (an upper bound of those whose
    /// fds are in no record); 0 when none had any.
    pub uncopied_messages: u32,
    pub control: [u8; CONTROL_CAP],
}

/// Byte offsets inside kernel structs, found in the running kernel's BTF by the loader and
/// handed to the kernel programs as globals, so one object works on every kernel layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `mm_struct.rss_stat`: an array of `struct percpu_counter`.
    pub mm_rss_stat: u32,
    /// `sizeof(struct percpu_counter)`: the stride of that array.
    pub percpu_counter_size: u32,
    /// `percpu_counter.count`: the (approximate) global value, as `/proc/PID/statm` reads it.
    pub percpu_counter_count: u32,
    /// 0 when the offsets above could not be found: RSS is then not sampled in the kernel.
    pub rss_available: u32,
    /// `task_struct.files`.
    pub task_files: u32,
    /// `files_struct.fdt`.
    pub files_fdt: u32,
    /// `fdtable.max_fds`.
    pub fdtable_max_fds: u32,
    /// `fdtable.fd`: the `struct file **` array.
    pub fdtable_fd: u32,
    /// `file.f_mode`.
    pub file_f_mode: u32,
    /// 0 when the five offsets above could not be found: opens then say nothing about
    /// whether they created the file.
    pub f_mode_available: u32,
    /// `task_struct.signal`.
    pub task_signal: u32,
    /// `signal_struct.nr_threads`: the process's threads.
    pub signal_nr_threads: u32,
    /// `files_struct.count`: the tasks that use this fd table.
    pub files_count: u32,
    /// 0 when the three offsets above (or `task_files`) could not be found: no open is
    /// then held back for pairing (see [`TrackedProcess`]).
    pub pairing_available: u32,
    /// `signal_struct.live`: the process's threads that have not begun to exit. Zero in
    /// `sched_process_exit` means the whole process is ending, not one thread (its leader
    /// may go first: a `pthread_exit`, or an exec by another thread). Always found, with
    /// `task_signal`, or the loader refuses to start.
    pub signal_live: u32,
    /// `mm_struct.start_stack`: where the main thread's stack began (its `argc`). A stack
    /// copy of the main thread that runs off the end of its stack is retried up to there.
    pub mm_start_stack: u32,
    /// 0 when `mm_start_stack` (or `task_mm`) could not be found: a copy that fails is then
    /// retried with halving lengths only.
    pub start_stack_available: u32,
    /// `mm_struct.start_code` and `mm_struct.end_code`: where the exec'd program's code lies.
    pub mm_start_code: u32,
    pub mm_end_code: u32,
    /// `linux_binprm.interp`: the name of the file really executed (the interpreter, for a
    /// script).
    pub binprm_interp: u32,
    /// `linux_binprm.file`, `file.f_inode`, `inode.i_ino`, `inode.i_sb`, `super_block.s_dev`:
    /// the identity of the file really executed, so that userspace names frames from that
    /// file only (not one put at its path since, or one seen through another root).
    pub binprm_file: u32,
    pub file_f_inode: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub super_block_s_dev: u32,
    /// 0 when the offsets above (or `task_mm`) could not be found: an
    /// [`EventKind::Exec`] record is then the header alone.
    pub exec_image_available: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of them are repr(C), Copy, with no implicit padding and no pointers.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::PathEvent {}
    unsafe impl aya::Pod for super::PathPairEvent {}
    unsafe impl aya::Pod for super::UserStackEvent {}
    unsafe impl aya::Pod for super::ControlEvent {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::TrackedProcess {}
    unsafe impl aya::Pod for super::heap::HeapKey {}
    unsafe impl aya::Pod for super::heap::HeapLive {}
    unsafe impl aya::Pod for super::heap::HeapTotals {}
    unsafe impl aya::Pod for super::heap::HeapInflight {}
    unsafe impl aya::Pod for super::lifetime_buckets::HeapLifetimes {}
}

// Layout guards: a change here is a wire-format change and must be deliberate.
const _: () = assert!(core::mem::size_of::<Event>() == 104);
const _: () = assert!(core::mem::size_of::<PathEvent>() == 104 + 16 + PATH_CAP);
const _: () = assert!(core::mem::size_of::<TrackedProcess>() == 16 + 104 + 16 + PATH_CAP);
const _: () = assert!(core::mem::size_of::<UserStackEvent>() == 104 + 32 + USTACK_CAP);
// A per-CPU map value may be at most 32 KiB (the kernel's PCPU_MIN_UNIT_SIZE): the kernel
// builds the record in one.
const _: () = assert!(core::mem::size_of::<UserStackEvent>() + 8 <= 32 * 1024);
const _: () = assert!(USTACK_CAP.is_power_of_two());
const _: () = assert!(USTACK_MIN_BYTES <= USTACK_DEFAULT_BYTES);
const _: () = assert!(USTACK_DEFAULT_BYTES as usize <= USTACK_CAP);
const _: () = assert!(core::mem::size_of::<PathPairEvent>() == 104 + 8 + 2 * PATH_CAP);
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 112);
const _: () = assert!(core::mem::size_of::<ControlEvent>() == 104 + 16 + CONTROL_CAP);
const _: () = assert!(core::mem::size_of::<heap::HeapKey>() == 16);
const _: () = assert!(core::mem::size_of::<heap::HeapLive>() == 48);
const _: () = assert!(core::mem::size_of::<heap::HeapTotals>() == 72);
const _: () = assert!(core::mem::size_of::<heap::HeapInflight>() == 40 + 48 + 8 + 16 + 8);
const _: () = assert!(
    core::mem::size_of::<lifetime_buckets::HeapLifetimes>() == 2 * 8 * lifetime_buckets::BUCKETS
);
const _: () = assert!(core::mem::size_of::<lifetime_buckets::HeapLifetimes>() <= 32 * 1024);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_header_has_its_kind_and_nothing_sampled_or_read() {
        let event = Event::new(EventKind::Marker, 7, 100, 101);
        assert_eq!(event.kind(), Ok(EventKind::Marker));
        assert_eq!((event.ktime_ns, event.tgid, event.tid), (7, 100, 101));
        assert_eq!(
            (event.rss_pages, event.stack_id),
            (RSS_NOT_SAMPLED, NO_STACK)
        );
        assert_eq!(
            (event.syscall_nr, event.ret, event.aux, event.args),
            (0, 0, 0, [0; 6])
        );
    }
}
