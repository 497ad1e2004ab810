//! Decoding ring-buffer records into typed events.
//!
//! The wire structs live once, in `leakscope-common`; this module only turns their bytes
//! into [`Event`], the type every later stage (ledger, analysis, report) consumes. It is
//! pure so it can be tested from hand-made records without root.

use crate::delivered::{self, Delivered};
use leakscope_common::{
    self as wire, CONTROL_CAP, CONTROL_CONTINUED, CONTROL_UNREADABLE, ControlEvent, EventKind,
    FD_PAIR_UNKNOWN, FD_UNREADABLE, PATH_CAP, PATH_TRUNCATED, PathEvent, PathPairEvent,
    RSS_NOT_SAMPLED, StackEvent, UnknownKind, open_flags, syscalls, syscalls::Delivery,
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
    /// `tgid` exec'd: CLOEXEC fds close, all mappings and the heap are replaced.
    Exec,
    /// Process `tgid` is gone: everything it held is released.
    Exit,
    /// The iteration-marker uprobe fired; `arg` is the marker function's first argument.
    Marker { arg: u64 },
    /// A call that would have acquired a resource failed (EMFILE, ENOMEM, ...): evidence
    /// that the process hit a limit, not a change of any resource.
    Failed(FailedCall),
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
    /// User stack id for mapping calls (resolve with the loader's stack map).
    pub(crate) stack_id: Option<u32>,
    /// The top of the user stack for mapping calls (see `leakscope_common::StackEvent`);
    /// empty for other calls.
    pub(crate) stack_words: Vec<u64>,
    /// Symbolized frames (innermost first) for `stack_id`/`stack_words`, filled in
    /// by the loader while the process is still alive to be symbolized. Shared, because
    /// many calls come from the same few stacks.
    pub(crate) frames: Option<std::sync::Arc<[String]>>,
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

/// Decodes one ring-buffer record. `page_size` converts RSS pages to bytes.
pub(crate) fn decode(record: &[u8], page_size: u64) -> Result<Event, DecodeError> {
    let header = read_struct::<wire::Event>(record).ok_or(DecodeError::Short(record.len()))?;
    let rss_bytes = (header.rss_pages != RSS_NOT_SAMPLED).then(|| header.rss_pages * page_size);
    let what = match header.kind().map_err(DecodeError::UnknownKind)? {
        EventKind::Syscall => What::Syscall(decode_syscall(&header, record)?),
        EventKind::Fork => What::Fork {
            child: header.aux as u32,
        },
        EventKind::Exec => What::Exec,
        EventKind::Exit => What::Exit,
        EventKind::Marker => What::Marker {
            arg: header.args[0],
        },
        EventKind::Failed => What::Failed(decode_failed(&header)?),
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
    let stack_words = if info.take_stack {
        read_struct::<StackEvent>(record)
            .ok_or(DecodeError::Short(record.len()))?
            .words
            .to_vec()
    } else {
        Vec::new()
    };
    let delivered = match info.delivery {
        Delivery::None => None,
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
        stack_id: u32::try_from(header.stack_id).ok(),
        stack_words,
        frames: None,
        delivered,
    })
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn wire_event(kind: EventKind, nr: u32, ret: i64) -> wire::Event {
        wire::Event {
            syscall_nr: nr,
            ret,
            args: [1, 2, 3, 4, 5, 6],
            ..wire::Event::new(kind, 42, 100, 101)
        }
    }

    fn bytes_of<T: aya::Pod>(value: &T) -> Vec<u8> {
        // SAFETY: Pod types have no padding-dependent invariants; reading their bytes is fine.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn decodes_close() {
        let event = decode(
            &bytes_of(&wire_event(EventKind::Syscall, syscalls::CLOSE, 0)),
            4096,
        )
        .unwrap();
        let What::Syscall(call) = event.what else {
            panic!("not a syscall")
        };
        assert_eq!(
            (call.name, call.ret, call.path, call.stack_id),
            ("close", 0, None, None)
        );
        assert_eq!((event.tgid, event.tid, event.rss_bytes), (100, 101, None));
    }

    #[test]
    fn decodes_open_path_and_truncation() {
        let mut record = PathEvent {
            event: wire_event(EventKind::Syscall, syscalls::OPENAT, 3),
            path_len: 5,
            _pad: 0,
            path: [0; PATH_CAP],
        };
        record.event.rss_pages = 10;
        record.path[..5].copy_from_slice(b"a.txt");
        let event = decode(&bytes_of(&record), 4096).unwrap();
        assert_eq!(event.rss_bytes, Some(40960));
        let What::Syscall(call) = event.what else {
            panic!()
        };
        assert_eq!(call.path.as_ref().unwrap().display(), "a.txt");

        record.path_len = (PATH_CAP as u32 - 1) | PATH_TRUNCATED;
        let What::Syscall(call) = decode(&bytes_of(&record), 4096).unwrap().what else {
            panic!()
        };
        let path = call.path.unwrap();
        assert!(path.truncated);
        assert!(path.display().ends_with('…'));
    }

    #[test]
    fn an_open_record_cut_after_its_path_decodes_and_one_cut_inside_it_is_refused() {
        let mut record = PathEvent {
            event: wire_event(EventKind::Syscall, syscalls::OPENAT, 3),
            path_len: 5,
            _pad: 0,
            path: [0xff; PATH_CAP], // what the kernel never sends must never be read
        };
        record.path[..6].copy_from_slice(b"a.txt\0");
        let bytes = bytes_of(&record);
        let fixed = size_of::<PathEvent>() - PATH_CAP;
        // As the kernel sends it: the path and its NUL, rounded up to 8 bytes.
        let sent = &bytes[..fixed + 8];
        let What::Syscall(call) = decode(sent, 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(call.path.unwrap().display(), "a.txt");
        // Exactly the path's bytes is enough; one fewer is not.
        assert!(decode(&bytes[..fixed + 5], 4096).is_ok());
        let cut = &bytes[..fixed + 4];
        assert_eq!(decode(cut, 4096), Err(DecodeError::Short(cut.len())));
        // An empty path (a failed path read) needs only the fixed part.
        record.path_len = 0;
        let empty = bytes_of(&record);
        let What::Syscall(call) = decode(&empty[..fixed], 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(call.path.unwrap().bytes.len(), 0);
        assert_eq!(
            decode(&empty[..fixed - 1], 4096),
            Err(DecodeError::Short(fixed - 1))
        );
    }

    #[test]
    fn decodes_both_paths_of_a_rename() {
        let mut record = PathPairEvent {
            event: wire_event(EventKind::Syscall, syscalls::RENAMEAT2, 0),
            path_len: 5,
            path2_len: (PATH_CAP as u32 - 1) | PATH_TRUNCATED,
            path: [0; PATH_CAP],
            path2: [b'x'; PATH_CAP],
        };
        record.path[..5].copy_from_slice(b"a.tmp");
        let What::Syscall(call) = decode(&bytes_of(&record), 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(call.path.unwrap().display(), "a.tmp");
        let new_name = call.path2.unwrap();
        assert!(new_name.truncated);
        assert_eq!(new_name.bytes.len(), PATH_CAP - 1);
        assert_eq!(call.open, None, "a rename is no open");

        // A record cut short of the second path is refused, not read half.
        let bytes = bytes_of(&record);
        let cut = &bytes[..size_of::<PathEvent>()];
        assert_eq!(decode(cut, 4096), Err(DecodeError::Short(cut.len())));
    }

    #[test]
    fn decodes_open_flags_and_creation() {
        let o_creat_excl = open_flags::O_CREAT | open_flags::O_EXCL;
        let cases = [
            // Created, not created, creation unknown, flags unknown (openat2 unreadable).
            (syscalls::OPENAT, Some(o_creat_excl), Some(true)),
            (syscalls::OPEN, Some(open_flags::O_CREAT), Some(false)),
            (syscalls::CREAT, Some(open_flags::CREAT_FLAGS), None),
            (syscalls::OPENAT2, None, None),
        ];
        for (nr, flags, created) in cases {
            let mut record = PathEvent {
                event: wire_event(EventKind::Syscall, nr, 3),
                path_len: 1,
                _pad: 0,
                path: [b'f'; PATH_CAP],
            };
            record.event.aux = open_flags::encode(flags, created);
            let What::Syscall(call) = decode(&bytes_of(&record), 4096).unwrap().what else {
                panic!()
            };
            assert_eq!(
                call.open,
                Some(OpenInfo {
                    flags: flags.map(|f| f as u32),
                    created
                }),
                "{}",
                call.name
            );
            assert_eq!(call.path2, None);
        }
        // Bit by bit, as the kernel side sets them: flags 0o100 known, created known and set.
        let mut record = PathEvent {
            event: wire_event(EventKind::Syscall, syscalls::OPENAT, 3),
            path_len: 0,
            _pad: 0,
            path: [0; PATH_CAP],
        };
        record.event.aux = 0o100 | 1 << 32 | 1 << 33 | 1 << 34;
        let What::Syscall(call) = decode(&bytes_of(&record), 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(
            call.open,
            Some(OpenInfo {
                flags: Some(0o100),
                created: Some(true)
            })
        );
        // Other calls carry no open information, whatever their aux.
        let mut mkdir = record;
        mkdir.event.syscall_nr = syscalls::MKDIR;
        let What::Syscall(call) = decode(&bytes_of(&mkdir), 4096).unwrap().what else {
            panic!()
        };
        assert_eq!((call.name, call.open), ("mkdir", None));
    }

    #[test]
    fn decodes_fd_pair_and_fork() {
        let mut pipe = wire_event(EventKind::Syscall, syscalls::PIPE2, 0);
        pipe.aux = (7u64 << 32) | 6;
        let What::Syscall(call) = decode(&bytes_of(&pipe), 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(call.fd_pair, Some([6, 7]));

        let mut fork = wire_event(EventKind::Fork, 0, 0);
        fork.aux = 555;
        assert_eq!(
            decode(&bytes_of(&fork), 4096).unwrap().what,
            What::Fork { child: 555 }
        );
    }

    #[test]
    fn decodes_every_header_only_kind() {
        for (kind, what) in [
            (EventKind::Exec, What::Exec),
            (EventKind::Exit, What::Exit),
            // The marker function's first argument travels in args[0].
            (EventKind::Marker, What::Marker { arg: 1 }),
        ] {
            let event = decode(&bytes_of(&wire_event(kind, 0, 0)), 4096).unwrap();
            assert_eq!(event.what, what, "{kind:?}");
        }
    }

    #[test]
    fn unreadable_fd_pair_decodes_as_unknown_not_as_fds_0_and_0() {
        let mut pipe = wire_event(EventKind::Syscall, syscalls::PIPE2, 0);
        pipe.aux = FD_PAIR_UNKNOWN;
        let What::Syscall(call) = decode(&bytes_of(&pipe), 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(call.fd_pair, None);
    }

    #[test]
    fn decodes_failed_acquisition_header_only() {
        // The kernel sends a bare header: no path even for openat, no stack even for mmap.
        for (nr, errno, name) in [
            (syscalls::OPENAT, 24, "openat"),
            (syscalls::MMAP, 12, "mmap"),
        ] {
            let record = wire_event(EventKind::Failed, nr, -(errno as i64));
            let event = decode(&bytes_of(&record), 4096).unwrap();
            assert_eq!(event.what, What::Failed(FailedCall { nr, name, errno }));
            assert_eq!((event.tgid, event.time_ns), (100, 42));
        }
        assert_eq!(
            decode(&bytes_of(&wire_event(EventKind::Failed, 0, -24)), 4096),
            Err(DecodeError::UnknownSyscall(0))
        );
    }

    #[test]
    fn decodes_mapping_stack_words() {
        let mut record = leakscope_common::StackEvent {
            event: wire_event(EventKind::Syscall, syscalls::MMAP, 0x7f00_0000_0000),
            words: [0; leakscope_common::STACK_SCAN_WORDS],
        };
        record.event.stack_id = 7;
        record.words[0] = 0x5555_0000_1234;
        let What::Syscall(call) = decode(&bytes_of(&record), 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(call.stack_id, Some(7));
        assert_eq!(call.stack_words[0], 0x5555_0000_1234);
        assert_eq!(call.stack_words.len(), leakscope_common::STACK_SCAN_WORDS);
    }

    #[test]
    fn decodes_received_fds_and_pidfds() {
        let mut record = ControlEvent {
            event: wire_event(EventKind::Syscall, syscalls::RECVMSG, 1),
            control_len: 24,
            flags: 0,
            message_index: 0,
            uncopied_messages: 0,
            control: [0; CONTROL_CAP],
        };
        record.control[..8].copy_from_slice(&24u64.to_ne_bytes());
        record.control[8..12].copy_from_slice(&1i32.to_ne_bytes());
        record.control[12..16].copy_from_slice(&1u32.to_ne_bytes());
        record.control[16..20].copy_from_slice(&5i32.to_ne_bytes());
        record.control[20..24].copy_from_slice(&6i32.to_ne_bytes());
        let What::Syscall(call) = decode(&bytes_of(&record), 4096).unwrap().what else {
            panic!()
        };
        let delivered = call.delivered.unwrap();
        assert_eq!((delivered.rights, delivered.unread), (vec![5, 6], 0));

        // Messages beyond recvmmsg's copy cap, and unreadable control data, are unread.
        record.event.syscall_nr = syscalls::RECVMMSG;
        record.uncopied_messages = 3;
        record.flags = CONTROL_UNREADABLE;
        let What::Syscall(call) = decode(&bytes_of(&record), 4096).unwrap().what else {
            panic!()
        };
        let delivered = call.delivered.unwrap();
        assert_eq!((delivered.rights.len(), delivered.unread), (0, 4));

        let mut clone = wire_event(EventKind::Syscall, syscalls::CLONE, 4321);
        clone.aux = 9;
        let What::Syscall(call) = decode(&bytes_of(&clone), 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(call.delivered.unwrap().pidfds, vec![9]);
        clone.aux = FD_UNREADABLE;
        let What::Syscall(call) = decode(&bytes_of(&clone), 4096).unwrap().what else {
            panic!()
        };
        assert_eq!(call.delivered.unwrap().unread, 1);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode(&[0; 8], 4096), Err(DecodeError::Short(8)));
        let mut unknown = wire_event(EventKind::Exit, 0, 0);
        unknown.kind = 99;
        assert_eq!(
            decode(&bytes_of(&unknown), 4096),
            Err(DecodeError::UnknownKind(UnknownKind(99)))
        );
        assert_eq!(
            decode(&bytes_of(&wire_event(EventKind::Syscall, 0, 0)), 4096),
            Err(DecodeError::UnknownSyscall(0))
        );
    }
}
