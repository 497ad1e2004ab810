//! Decoding ring-buffer records into typed events.
//!
//! The wire structs live once, in `leakscope-common`; this module only turns their bytes
//! into [`Event`], the type every later stage (ledger, analysis, report) consumes. It is
//! pure so it can be tested from hand-made records without root.

use crate::{
    delivered::{self, Delivered},
    stacks::{Frames, UserRegs},
};
use leakscope_common::{
    self as wire, CONTROL_CAP, CONTROL_CONTINUED, CONTROL_UNREADABLE, ControlEvent, EventKind,
    FD_PAIR_UNKNOWN, FD_UNREADABLE, PATH_CAP, PATH_TRUNCATED, PathEvent, PathPairEvent,
    RSS_NOT_SAMPLED, USTACK_CAP, USTACK_SHORT, USTACK_UNREADABLE, UnknownKind, UserStackEvent,
    fd_arrival, open_flags, syscalls, syscalls::Delivery,
};
use thiserror::Error;

/// One decoded event of a traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub(crate) time_ns: u64,
    pub(crate) tgid: u32,
    pub(crate) tid: u32,
    /// Resident set in bytes, where the kernel sampled it (markers, opens, exec).
    pub(crate) rss_bytes: Option<u64>,
    pub(crate) what: What,
}

// Nearly every event is a syscall, so boxing the large variant would add an allocation to
// almost every record and save memory on almost none.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// A successful syscall.
    Syscall(Syscall),
    /// `tgid` created process `child` (a copy of its fd table and mappings).
    Fork { child: u32 },
    /// `tgid` exec'd: CLOEXEC fds close, all mappings and the heap are replaced. The new
    /// program's file and code range, when the kernel could read them.
    Exec(Option<Box<ExecImage>>),
    /// Process `tgid` is gone: everything it held is released.
    Exit,
    /// The iteration-marker uprobe fired; `arg` is the marker function's first argument.
    /// Under `--heap`, `heap` is the process's allocator totals at that instant.
    Marker { arg: u64, heap: Option<MarkerHeap> },
    /// A call that would have acquired a resource failed (EMFILE, ENOMEM, ...): evidence
    /// that the process hit a limit, not a change of any resource.
    Failed(FailedCall),
}

/// The program an exec started, as the kernel saw it: the file really executed (the
/// interpreter, for a script; as the exec call named it, so maybe relative to the
/// process's working directory) and where its code lies (`mm->start_code..mm->end_code`).
/// It names the program's own frames when the process is gone before its maps are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExecImage {
    pub(crate) path: std::path::PathBuf,
    pub(crate) code: std::ops::Range<u64>,
    /// The file's inode number and device (as `stat` gives them): the path names the
    /// program only while it leads to this file.
    pub(crate) ino: u64,
    pub(crate) dev: u64,
}

impl ExecImage {
    /// The image with its path made absolute against `cwd` (the exec'ing process's working
    /// directory); `None` for a relative path when the directory is unknown.
    pub(crate) fn resolved(&self, cwd: Option<&str>) -> Option<ExecImage> {
        if self.path.is_absolute() {
            return Some(self.clone());
        }
        Some(ExecImage {
            path: std::path::Path::new(cwd?).join(&self.path),
            ..self.clone()
        })
    }
}

/// `--heap`: a process's allocator totals, as the kernel kept them, at its iteration marker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MarkerHeap {
    /// Bytes allocated and not freed (paired in the kernel).
    pub(crate) live_bytes: u64,
    pub(crate) live_count: u64,
    /// Allocations whose free was never seen (their address came back while live).
    pub(crate) missed_frees: u64,
    /// Allocations the kernel could not record (its map was full).
    pub(crate) unrecorded: u64,
}

impl From<&leakscope_common::heap::HeapTotals> for MarkerHeap {
    fn from(totals: &leakscope_common::heap::HeapTotals) -> Self {
        MarkerHeap {
            live_bytes: totals.live_bytes.max(0) as u64,
            live_count: totals.live_count.max(0) as u64,
            missed_frees: totals.missed_frees,
            unrecorded: totals.unrecorded,
        }
    }
}

/// A failed acquiring syscall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FailedCall {
    pub(crate) nr: u32,
    pub(crate) name: &'static str,
    /// The positive errno (EMFILE = 24, ...).
    pub(crate) errno: i32,
}

/// A successful syscall with its raw arguments. The ledger gives them meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Syscall {
    /// The x86_64 number (see `leakscope_common::syscalls`).
    pub(crate) nr: u32,
    /// Its name, e.g. `"openat"`.
    pub(crate) name: &'static str,
    pub(crate) ret: i64,
    pub(crate) args: [u64; 6],
    /// The two fds that pipe/pipe2/socketpair created. `None` for those calls means the
    /// kernel could not read the pair (it counted that as a drop); always `None` for others.
    pub(crate) fd_pair: Option<[i32; 2]>,
    /// The first path the call was given (or memfd name), as given, not yet resolved: for
    /// link/linkat/symlink/symlinkat the new name, the entry being created; for the rename
    /// family the old name.
    pub(crate) path: Option<CapturedPath>,
    /// The registers and a copy of the user stack, for mapping calls (mmap, mremap, brk)
    /// whose stack reached userspace, and for fd-returning calls whose stack record the
    /// drain joined to them; taken by the drain once it has unwound them into `frames`.
    /// Boxed: kilobytes, and most calls have none.
    pub(crate) stack: Option<Box<UserStack>>,
    /// Symbolized frames (innermost first) unwound from `stack`, filled in by the drain
    /// while the process is still alive to be symbolized. Shared, because many calls come
    /// from the same few stacks.
    pub(crate) frames: Option<Frames>,
    /// Fds the call installed beyond its return value (recvmsg/recvmmsg control messages,
    /// clone's CLONE_PIDFD, SO_PEERPIDFD); `None` for calls that deliver none that way.
    /// Boxed: rare, and every event would otherwise carry its room.
    pub(crate) delivered: Option<Box<Delivered>>,
    /// The second path of rename/renameat/renameat2 (the new name), as given. Boxed: few
    /// calls have one, and every event would otherwise carry its room.
    pub(crate) path2: Option<Box<CapturedPath>>,
    /// open/openat/openat2/creat only.
    pub(crate) open: Option<OpenInfo>,
}

impl Syscall {
    /// A call of `nr` (a traced syscall) with its return value and arguments, and nothing
    /// else captured: no path, stack, fd pair or deliveries.
    pub(crate) fn bare(nr: u32, ret: i64, args: [u64; 6]) -> Syscall {
        Syscall {
            nr,
            name: syscalls::info(nr).map_or("?", |info| info.name),
            ret,
            args,
            fd_pair: None,
            path: None,
            stack: None,
            frames: None,
            delivered: None,
            path2: None,
            open: None,
        }
    }
}

/// Where the user code stood at a call, and the user stack above it
/// (a [`UserStackEvent`] decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UserStack {
    pub(crate) regs: UserRegs,
    /// The stack from `regs.sp` up: up to `--stack-bytes` bytes, fewer when the stack ended
    /// sooner (`short`), none when nothing could be read (`unreadable`).
    pub(crate) bytes: Vec<u8>,
    pub(crate) short: bool,
    pub(crate) unreadable: bool,
}

/// What the kernel saw of an open, openat, openat2 or creat beyond its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenInfo {
    /// The open flags (O_CREAT, O_EXCL, O_TMPFILE, O_CLOEXEC...), `None` when they could not
    /// be read. Open flags are an `int`: 32 bits keep the decoded event small.
    pub(crate) flags: Option<u32>,
    /// Whether the open created the file (FMODE_CREATED); `None` when the kernel could not tell.
    /// Only read for opens with O_CREAT or O_TMPFILE (`None` for the others, which never
    /// create). O_TMPFILE opens read `Some(false)` (measured on 6.18): they make no name.
    pub(crate) created: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CapturedPath {
    pub(crate) bytes: Vec<u8>,
    /// The path was longer than the kernel buffer and was cut.
    pub(crate) truncated: bool,
}

impl CapturedPath {
    /// A path from a record's buffer and its length field (with [`PATH_TRUNCATED`]).
    fn from_wire(buffer: &[u8; PATH_CAP], len_field: u32) -> CapturedPath {
        let len = (len_field & !PATH_TRUNCATED) as usize;
        CapturedPath {
            bytes: buffer[..len.min(PATH_CAP)].to_vec(),
            truncated: len_field & PATH_TRUNCATED != 0,
        }
    }

    /// The path for display; a cut path ends in `…` so it is never mistaken for a whole one.
    pub(crate) fn display(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            text.push('…');
        }
        text
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("ring buffer record of {0} bytes is shorter than an event header")]
    Short(usize),
    #[error("event kind {} is unknown: the kernel object and this binary disagree", .0.0)]
    UnknownKind(UnknownKind),
    #[error("syscall {0} is not one leakscope traces")]
    UnknownSyscall(u32),
}

/// CLOCK_MONOTONIC now, the clock of `bpf_ktime_get_ns` and so of every event's `time_ns`.
pub(crate) fn monotonic_now_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// The events of one ring-buffer record: one, or an open and the close of its fd that the
/// kernel paired into one record ([`EventKind::OpenClosed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub(crate) first: Event,
    /// The close of `first`'s fd, for a paired record.
    pub(crate) close: Option<Event>,
}

/// One ring-buffer record, decoded.
// Nearly every record holds events, which are moved on at once: boxing them would add an
// allocation to almost every record.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// Events of the traced processes.
    Events(Decoded),
    /// The user stack of an fd-returning call, sent just before the call's own record
    /// ([`EventKind::UserStack`]): the drain gives it to that record.
    Stack(CallStack),
    /// `--heap`: the user stack at an allocator call's entry ([`EventKind::HeapStack`]);
    /// `time_ns` is the entry's, which the block it made carries.
    HeapStack(CallStack),
    /// `--heap`: the block whose stack was sent at `stack_ns` ended ([`EventKind::HeapFreed`]).
    HeapFreed { tgid: u32, stack_ns: u64 },
}

/// The stack of the call that thread `tid` of `tgid` made at `time_ns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CallStack {
    pub(crate) tgid: u32,
    pub(crate) tid: u32,
    pub(crate) time_ns: u64,
    /// The call's syscall number.
    pub(crate) nr: u32,
    pub(crate) stack: Box<UserStack>,
}

/// Decodes one ring-buffer record. `page_size` converts RSS pages to bytes.
pub(crate) fn decode_record(record: &[u8], page_size: u64) -> Result<Record, DecodeError> {
    let header = read_struct::<wire::Event>(record).ok_or(DecodeError::Short(record.len()))?;
    match header.kind() {
        Ok(EventKind::OpenClosed) => decode_pair(&header, record, page_size).map(Record::Events),
        Ok(EventKind::UserStack) => {
            // Never sent as a bare header: a stack record without its stack is corrupt.
            let stack = read_user_stack(record)?.ok_or(DecodeError::Short(record.len()))?;
            Ok(Record::Stack(CallStack {
                tgid: header.tgid,
                tid: header.tid,
                time_ns: header.ktime_ns,
                nr: header.syscall_nr,
                stack: Box::new(stack),
            }))
        }
        Ok(EventKind::HeapStack) => {
            let stack = read_user_stack(record)?.ok_or(DecodeError::Short(record.len()))?;
            Ok(Record::HeapStack(CallStack {
                tgid: header.tgid,
                tid: header.tid,
                time_ns: header.ktime_ns,
                nr: 0,
                stack: Box::new(stack),
            }))
        }
        Ok(EventKind::HeapFreed) => Ok(Record::HeapFreed {
            tgid: header.tgid,
            stack_ns: header.aux,
        }),
        _ => Ok(Record::Events(Decoded {
            first: decode_header(&header, record, page_size)?,
            close: None,
        })),
    }
}

/// An [`EventKind::OpenClosed`] record: the open, and the close of its fd.
fn decode_pair(
    header: &wire::Event,
    record: &[u8],
    page_size: u64,
) -> Result<Decoded, DecodeError> {
    // The open as it would have come alone, then its close as the kernel would have sent
    // it: a header with the fd in the first argument and nothing sampled.
    let paired = read_path_event(record).ok_or(DecodeError::Short(record.len()))?;
    let open_header = wire::Event {
        kind: EventKind::Syscall as u32,
        ..*header
    };
    let first = decode_header(&open_header, record, page_size)?;
    let fd = header.ret as u32 as u64;
    let close = Event {
        time_ns: paired.close_ktime_ns,
        tgid: header.tgid,
        tid: paired.close_tid,
        rss_bytes: None,
        what: What::Syscall(Syscall::bare(syscalls::CLOSE, 0, [fd, 0, 0, 0, 0, 0])),
    };
    Ok(Decoded {
        first,
        close: Some(close),
    })
}

/// Decodes an open the kernel holds back for pairing, read from its slot.
pub(crate) fn decode_held(open: &PathEvent, page_size: u64) -> Result<Event, DecodeError> {
    // SAFETY: PathEvent is repr(C) plain data without implicit padding.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (open as *const PathEvent).cast::<u8>(),
            size_of::<PathEvent>(),
        )
    };
    first_event(decode_record(bytes, page_size)?, &open.event)
}

/// Decodes a record that holds one event.
#[cfg(test)]
pub(crate) fn decode(record: &[u8], page_size: u64) -> Result<Event, DecodeError> {
    let header = read_struct::<wire::Event>(record).ok_or(DecodeError::Short(record.len()))?;
    first_event(decode_record(record, page_size)?, &header)
}

/// The first event of a record that must hold events.
fn first_event(record: Record, header: &wire::Event) -> Result<Event, DecodeError> {
    match record {
        Record::Events(decoded) => Ok(decoded.first),
        Record::Stack(_) | Record::HeapStack(_) | Record::HeapFreed { .. } => {
            Err(DecodeError::UnknownKind(UnknownKind(header.kind)))
        }
    }
}

fn decode_header(
    header: &wire::Event,
    record: &[u8],
    page_size: u64,
) -> Result<Event, DecodeError> {
    let rss_bytes = (header.rss_pages != RSS_NOT_SAMPLED).then(|| header.rss_pages * page_size);
    let what = match header.kind().map_err(DecodeError::UnknownKind)? {
        EventKind::Syscall => What::Syscall(decode_syscall(header, record)?),
        EventKind::Fork => What::Fork {
            child: header.aux as u32,
        },
        EventKind::Exec => What::Exec(decode_exec_image(header, record).map(Box::new)),
        EventKind::Exit => What::Exit,
        EventKind::Marker => What::Marker {
            arg: header.args[0],
            // See the kernel's `iteration_marker`: args[5] = 1 when args[1..5] are there.
            heap: (header.args[5] == 1).then(|| MarkerHeap {
                live_bytes: (header.args[1] as i64).max(0) as u64,
                live_count: (header.args[2] as i64).max(0) as u64,
                missed_frees: header.args[3],
                unrecorded: header.args[4],
            }),
        },
        EventKind::Failed => What::Failed(decode_failed(header)?),
        // Split (or set apart) by `decode_record` before it gets here.
        EventKind::OpenClosed
        | EventKind::UserStack
        | EventKind::HeapStack
        | EventKind::HeapFreed => {
            return Err(DecodeError::UnknownKind(UnknownKind(header.kind)));
        }
    };
    Ok(Event {
        time_ns: header.ktime_ns,
        tgid: header.tgid,
        tid: header.tid,
        rss_bytes,
        what,
    })
}

fn decode_syscall(header: &wire::Event, record: &[u8]) -> Result<Syscall, DecodeError> {
    let info =
        syscalls::info(header.syscall_nr).ok_or(DecodeError::UnknownSyscall(header.syscall_nr))?;
    let short = || DecodeError::Short(record.len());
    let (path, path2) = match (info.path_arg, info.second_path_arg) {
        (Some(_), Some(_)) => {
            let pair = read_struct::<PathPairEvent>(record).ok_or_else(short)?;
            (
                Some(CapturedPath::from_wire(&pair.path, pair.path_len)),
                Some(CapturedPath::from_wire(&pair.path2, pair.path2_len)),
            )
        }
        (Some(_), None) => {
            let one = read_path_event(record).ok_or_else(short)?;
            (Some(CapturedPath::from_wire(&one.path, one.path_len)), None)
        }
        (None, _) => (None, None),
    };
    let open = open_flags::flags_at(header.syscall_nr).map(|_| {
        let (flags, created) = open_flags::decode(header.aux);
        OpenInfo {
            flags: flags.map(|f| f as u32),
            created,
        }
    });
    let stack = if info.take_stack {
        read_user_stack(record)?.map(Box::new)
    } else {
        None
    };
    let delivered = match info.delivery {
        Delivery::None => None,
        // A clone sent for its shared fd table alone delivered no pidfd.
        Delivery::IntAt(_) | Delivery::Clone3Pidfd
            if !fd_arrival::delivers_pidfd(header.syscall_nr, &header.args) =>
        {
            None
        }
        Delivery::IntAt(_) | Delivery::Clone3Pidfd => Some(Delivered::pidfd(
            (header.aux != FD_UNREADABLE).then_some(header.aux as u32 as i32),
        )),
        Delivery::ControlMessage | Delivery::ControlMessages => {
            let record =
                read_struct::<ControlEvent>(record).ok_or(DecodeError::Short(record.len()))?;
            let len = record.control_len as usize;
            let mut delivered = if record.flags & CONTROL_UNREADABLE != 0 {
                Delivered {
                    unread: 1,
                    ..Default::default()
                }
            } else {
                delivered::decode_control(&record.control[..len.min(CONTROL_CAP)], len)
            };
            delivered.unread += record.uncopied_messages;
            delivered.continues_call = record.flags & CONTROL_CONTINUED != 0;
            Some(delivered)
        }
    }
    .map(Box::new);
    let fd_pair = info
        .fd_pair_arg
        .filter(|_| header.aux != FD_PAIR_UNKNOWN)
        .map(|_| [header.aux as u32 as i32, (header.aux >> 32) as u32 as i32]);
    Ok(Syscall {
        nr: header.syscall_nr,
        name: info.name,
        ret: header.ret,
        args: header.args,
        fd_pair,
        path,
        path2: path2.map(Box::new),
        open,
        stack,
        frames: None,
        delivered,
    })
}

/// The image an [`EventKind::Exec`] record carries, if whole: a header-only record (the
/// kernel could not read it), a cut path, a path that names another file when leakscope
/// reads it, or an empty code range give none. A relative path is relative to the
/// process's working directory, which the drain knows.
fn decode_exec_image(header: &wire::Event, record: &[u8]) -> Option<ExecImage> {
    use std::os::unix::ffi::OsStrExt;
    if record.len() <= size_of::<wire::Event>() {
        return None;
    }
    let event = read_path_event(record)?;
    let captured = CapturedPath::from_wire(&event.path, event.path_len);
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&captured.bytes));
    let code = header.args[0]..header.args[1];
    // `/proc/self/exe` and `/dev/fd/N` (fexecve) name another file when read from here.
    let names_a_file =
        !path.as_os_str().is_empty() && !path.starts_with("/proc") && !path.starts_with("/dev/fd");
    (names_a_file && !captured.truncated && !code.is_empty()).then(|| ExecImage {
        path: path.to_path_buf(),
        code,
        ino: header.args[2],
        dev: user_dev(header.args[3] as u32),
    })
}

/// A device number as the kernel keeps it (`major << 20 | minor`) in the encoding `stat`
/// gives (glibc's `makedev`).
fn user_dev(kernel: u32) -> u64 {
    let (major, minor) = (u64::from(kernel >> 20), u64::from(kernel & 0xf_ffff));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

fn decode_failed(header: &wire::Event) -> Result<FailedCall, DecodeError> {
    let info =
        syscalls::info(header.syscall_nr).ok_or(DecodeError::UnknownSyscall(header.syscall_nr))?;
    Ok(FailedCall {
        nr: header.syscall_nr,
        name: info.name,
        // The kernel returns -errno; keep the errno positive, as errno(3) does.
        errno: header.ret.unsigned_abs().min(i32::MAX as u64) as i32,
    })
}

/// The stack part of a [`UserStackEvent`], which the kernel sends cut after `len` bytes of
/// stack. A record of the header alone is a call whose stack could not be sent (the kernel
/// counted why): `None`. A record shorter than its own `len` says is corrupt.
fn read_user_stack(record: &[u8]) -> Result<Option<UserStack>, DecodeError> {
    use std::mem::offset_of;
    if record.len() == size_of::<wire::Event>() {
        return Ok(None);
    }
    let short = || DecodeError::Short(record.len());
    let fixed = record.get(..UserStackEvent::FIXED).ok_or_else(short)?;
    let u64_at = |at: usize| u64::from_ne_bytes(fixed[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_ne_bytes(fixed[at..at + 4].try_into().unwrap());
    let len = u32_at(offset_of!(UserStackEvent, len)) as usize;
    let flags = u32_at(offset_of!(UserStackEvent, flags));
    if len > USTACK_CAP {
        return Err(short());
    }
    let bytes = record
        .get(UserStackEvent::FIXED..UserStackEvent::FIXED + len)
        .ok_or_else(short)?;
    Ok(Some(UserStack {
        regs: UserRegs {
            ip: u64_at(offset_of!(UserStackEvent, ip)),
            sp: u64_at(offset_of!(UserStackEvent, sp)),
            bp: u64_at(offset_of!(UserStackEvent, bp)),
        },
        bytes: bytes.to_vec(),
        short: flags & USTACK_SHORT != 0,
        unreadable: flags & USTACK_UNREADABLE != 0,
    }))
}

/// A [`PathEvent`], which the kernel sends cut after its path's NUL (the ring then carries
/// only the bytes in use): the header and lengths must be there, and the path's bytes.
fn read_path_event(record: &[u8]) -> Option<PathEvent> {
    let fixed = size_of::<PathEvent>() - PATH_CAP;
    if record.len() < fixed {
        return None;
    }
    // SAFETY: PathEvent is Pod: all zeroes is a valid value.
    let mut event: PathEvent = unsafe { std::mem::zeroed() };
    let n = record.len().min(size_of::<PathEvent>());
    // SAFETY: n bytes fit in both; PathEvent is Pod, so any bytes make a valid value.
    unsafe {
        std::ptr::copy_nonoverlapping(record.as_ptr(), (&raw mut event).cast::<u8>(), n);
    }
    let path_bytes = (event.path_len & !PATH_TRUNCATED) as usize;
    (fixed + path_bytes <= n).then_some(event)
}

/// Copies a `#[repr(C)]` plain-old-data struct out of a possibly unaligned byte slice.
fn read_struct<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>())
        // SAFETY: T is Pod (any bit pattern is valid) and the length was checked.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

#[cfg(test)]
#[path = "event_tests.rs"]
pub(crate) mod tests;
