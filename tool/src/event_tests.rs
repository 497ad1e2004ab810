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
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
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
        (call.name, call.ret, call.path, call.stack),
        ("close", 0, None, None)
    );
    assert_eq!((event.tgid, event.tid, event.rss_bytes), (100, 101, None));
}

#[test]
fn decodes_open_path_and_truncation() {
    let mut record = open_record();
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
        close_tid: 0,
        close_ktime_ns: 0,
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
            close_tid: 0,
            close_ktime_ns: 0,
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
        close_tid: 0,
        close_ktime_ns: 0,
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
        (EventKind::Exec, What::Exec(None)),
        (EventKind::Exit, What::Exit),
        // The marker function's first argument travels in args[0].
        (EventKind::Marker, What::Marker { arg: 1, heap: None }),
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

/// An mmap record as the kernel sends it: cut after `len` bytes of stack, each byte its
/// offset (mod 251) so that a misplaced cut shows.
fn stack_record(len: u32, flags: u32) -> Vec<u8> {
    let mut record = Box::new(UserStackEvent {
        event: wire_event(EventKind::Syscall, syscalls::MMAP, 0x7f00_0000_0000),
        ip: 0x7f11_0000_0010,
        sp: 0x7ffc_0000_1000,
        bp: 0x7ffc_0000_2000,
        len,
        flags,
        bytes: [0xff; USTACK_CAP], // what the kernel never sends must never be read
    });
    for (i, byte) in record.bytes.iter_mut().enumerate().take(len as usize) {
        *byte = (i % 251) as u8;
    }
    let mut bytes = bytes_of(&*record);
    bytes.truncate(UserStackEvent::FIXED + len as usize);
    bytes
}

fn decoded_stack(record: &[u8]) -> Result<Option<Box<UserStack>>, DecodeError> {
    decode(record, 4096).map(|event| match event.what {
        What::Syscall(call) => call.stack,
        other => panic!("not a syscall: {other:?}"),
    })
}

#[test]
fn a_full_stack_record_decodes_with_its_registers_and_bytes() {
    let stack = decoded_stack(&stack_record(8192, 0)).unwrap().unwrap();
    assert_eq!(
        stack.regs,
        UserRegs {
            ip: 0x7f11_0000_0010,
            sp: 0x7ffc_0000_1000,
            bp: 0x7ffc_0000_2000
        }
    );
    assert_eq!(stack.bytes.len(), 8192);
    assert_eq!((stack.bytes[0], stack.bytes[8191]), (0, (8191 % 251) as u8));
    assert!(!stack.short && !stack.unreadable);
}

#[test]
fn a_short_stack_record_carries_the_bytes_that_could_be_read() {
    let stack = decoded_stack(&stack_record(1224, USTACK_SHORT))
        .unwrap()
        .unwrap();
    assert_eq!(stack.bytes.len(), 1224);
    assert!(stack.short && !stack.unreadable);
}

#[test]
fn an_unreadable_stack_record_has_registers_and_no_bytes() {
    let stack = decoded_stack(&stack_record(0, USTACK_UNREADABLE))
        .unwrap()
        .unwrap();
    assert!(stack.bytes.is_empty() && stack.unreadable);
    assert_eq!(stack.regs.sp, 0x7ffc_0000_1000);
}

#[test]
fn a_mapping_call_sent_without_its_stack_decodes_without_one() {
    // The ring had no room for the stack (or the slot was busy): the header went alone.
    let header = wire_event(EventKind::Syscall, syscalls::MMAP, 0x7f00_0000_0000);
    assert_eq!(decoded_stack(&bytes_of(&header)), Ok(None));
}

/// The stack of an openat, as the kernel sends it before the openat's own record.
fn fd_stack_record(len: u32) -> Vec<u8> {
    let mut record = stack_record(len, 0);
    let header = wire_event(EventKind::UserStack, syscalls::OPENAT, 3);
    record[..size_of::<wire::Event>()].copy_from_slice(&bytes_of(&header));
    record
}

#[test]
fn an_fd_calls_stack_record_decodes_apart_with_its_thread_and_time() {
    let Record::Stack(stack) = decode_record(&fd_stack_record(4096), 4096).unwrap() else {
        panic!("not a stack record")
    };
    assert_eq!(
        (stack.tgid, stack.tid, stack.time_ns, stack.nr),
        (100, 101, 42, syscalls::OPENAT)
    );
    assert_eq!(stack.stack.bytes.len(), 4096);
    assert_eq!(stack.stack.regs.sp, 0x7ffc_0000_1000);
    // It holds no event of its own.
    let record = fd_stack_record(64);
    assert!(matches!(
        decode(&record, 4096),
        Err(DecodeError::UnknownKind(_))
    ));
}

#[test]
fn a_heap_stack_record_and_a_heap_freed_record_decode_apart() {
    let mut record = stack_record(512, 0);
    let header = wire_event(EventKind::HeapStack, 0, 0);
    record[..size_of::<wire::Event>()].copy_from_slice(&bytes_of(&header));
    let Record::HeapStack(stack) = decode_record(&record, 4096).unwrap() else {
        panic!("not a heap stack record")
    };
    assert_eq!((stack.tgid, stack.tid, stack.time_ns), (100, 101, 42));
    assert_eq!(stack.stack.bytes.len(), 512);
    // Never a bare header.
    let header_only = &record[..size_of::<wire::Event>()];
    assert!(decode_record(header_only, 4096).is_err());
    let mut freed = wire_event(EventKind::HeapFreed, 0, 0);
    freed.aux = 41;
    assert_eq!(
        decode_record(&bytes_of(&freed), 4096),
        Ok(Record::HeapFreed {
            tgid: 100,
            stack_ns: 41
        })
    );
}

#[test]
fn an_fd_calls_stack_record_without_its_stack_is_refused() {
    let record = fd_stack_record(0);
    let header_only = &record[..size_of::<wire::Event>()];
    assert_eq!(
        decode_record(header_only, 4096),
        Err(DecodeError::Short(header_only.len()))
    );
    let cut = &record[..UserStackEvent::FIXED - 8];
    assert_eq!(decode_record(cut, 4096), Err(DecodeError::Short(cut.len())));
}

#[test]
fn a_stack_record_cut_before_its_length_or_inside_its_registers_is_refused() {
    let mut record = stack_record(4096, 0);
    record.truncate(record.len() - 8);
    assert_eq!(
        decoded_stack(&record),
        Err(DecodeError::Short(record.len()))
    );
    let mut record = stack_record(0, USTACK_UNREADABLE);
    record.truncate(UserStackEvent::FIXED - 4);
    assert_eq!(
        decoded_stack(&record),
        Err(DecodeError::Short(record.len()))
    );
    // A length beyond the capacity cannot be the kernel's.
    let mut record = stack_record(16, 0);
    let at = std::mem::offset_of!(UserStackEvent, len);
    record[at..at + 4].copy_from_slice(&(USTACK_CAP as u32 + 8).to_ne_bytes());
    assert_eq!(
        decoded_stack(&record),
        Err(DecodeError::Short(record.len()))
    );
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
    clone.args[0] = fd_arrival::CLONE_PIDFD | 17;
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

    // A clone sent for its shared fd table alone delivered no pidfd (its aux is no fd).
    clone.args[0] = fd_arrival::CLONE_FILES | 17;
    clone.aux = 0;
    let What::Syscall(call) = decode(&bytes_of(&clone), 4096).unwrap().what else {
        panic!()
    };
    assert_eq!(call.delivered, None);
    // clone3's flags travel in their slot.
    let mut clone3 = wire_event(EventKind::Syscall, syscalls::CLONE3, 4321);
    clone3.args[fd_arrival::CLONE3_FLAGS_SLOT] = fd_arrival::CLONE_FILES;
    let What::Syscall(call) = decode(&bytes_of(&clone3), 4096).unwrap().what else {
        panic!()
    };
    assert_eq!(call.delivered, None);
    clone3.args[fd_arrival::CLONE3_FLAGS_SLOT] = fd_arrival::CLONE_PIDFD;
    clone3.aux = 9;
    let What::Syscall(call) = decode(&bytes_of(&clone3), 4096).unwrap().what else {
        panic!()
    };
    assert_eq!(call.delivered.unwrap().pidfds, vec![9]);
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

/// An open of `a.txt` returning fd 3, as the kernel sends it alone.
fn open_record() -> PathEvent {
    let mut record = PathEvent {
        event: wire_event(EventKind::Syscall, syscalls::OPENAT, 3),
        path_len: 5,
        close_tid: 0,
        close_ktime_ns: 0,
        path: [0; PATH_CAP],
    };
    record.event.rss_pages = 10;
    record.path[..5].copy_from_slice(b"a.txt");
    record
}

fn events_of(record: Record) -> Decoded {
    match record {
        Record::Events(decoded) => decoded,
        other => panic!("not an event record: {other:?}"),
    }
}

#[test]
fn a_paired_record_is_the_open_alone_then_its_close() {
    let alone = events_of(decode_record(&bytes_of(&open_record()), 4096).unwrap());
    assert_eq!(alone.close, None);

    let mut paired = open_record();
    paired.event.kind = EventKind::OpenClosed as u32;
    paired.close_tid = 102;
    paired.close_ktime_ns = 50;
    // Cut after the path, as the kernel sends it.
    let fixed = size_of::<PathEvent>() - PATH_CAP;
    let decoded = events_of(decode_record(&bytes_of(&paired)[..fixed + 8], 4096).unwrap());
    assert_eq!(decoded.first, alone.first, "the open, as if sent alone");
    let close = decoded.close.expect("the close");
    assert_eq!(
        (close.time_ns, close.tgid, close.tid, close.rss_bytes),
        (50, 100, 102, None)
    );
    let What::Syscall(call) = close.what else {
        panic!("not a syscall")
    };
    // What the ledger reads of a close that came as its own record.
    let What::Syscall(own) = decode(
        &bytes_of(&wire_event(EventKind::Syscall, syscalls::CLOSE, 0)),
        4096,
    )
    .unwrap()
    .what
    else {
        panic!()
    };
    assert_eq!(
        (call.nr, call.name, call.ret, call.args[0]),
        (own.nr, own.name, 0, 3)
    );
    assert_eq!(
        (
            call.path,
            call.open,
            call.stack,
            call.delivered,
            call.fd_pair
        ),
        (None, None, None, None, None)
    );
}

#[test]
fn a_paired_record_cut_inside_its_path_is_short() {
    let mut paired = open_record();
    paired.event.kind = EventKind::OpenClosed as u32;
    let fixed = size_of::<PathEvent>() - PATH_CAP;
    let bytes = bytes_of(&paired);
    let cut = &bytes[..fixed + 2];
    assert_eq!(decode_record(cut, 4096), Err(DecodeError::Short(cut.len())));
}

#[test]
fn a_held_open_read_from_its_slot_decodes_as_the_open() {
    let record = open_record();
    assert_eq!(
        decode_held(&record, 4096).unwrap(),
        decode(&bytes_of(&record), 4096).unwrap()
    );
}

/// An exec record with the kernel's image: the file and its code range, kept only when the
/// path still names that file when leakscope reads it.
#[test]
fn an_exec_record_carries_the_programs_image_when_its_path_can_be_read_later() {
    let exec = |path: &[u8], truncated: bool| {
        let mut record = PathEvent {
            event: wire_event(EventKind::Exec, 0, 0),
            path_len: path.len() as u32 | if truncated { PATH_TRUNCATED } else { 0 },
            close_tid: 0,
            close_ktime_ns: 0,
            path: [0; PATH_CAP],
        };
        record.event.args[0] = 0x5555_0000_1000;
        record.event.args[1] = 0x5555_0000_9000;
        record.event.args[2] = 1234; // inode
        record.event.args[3] = (259 << 20) | 3; // device 259:3, as the kernel keeps it
        record.path[..path.len()].copy_from_slice(path);
        decode(&bytes_of(&record), 4096).unwrap().what
    };
    let What::Exec(Some(image)) = exec(b"/usr/bin/app", false) else {
        panic!("an absolute path is kept")
    };
    assert_eq!(image.path, std::path::Path::new("/usr/bin/app"));
    assert_eq!(image.code, 0x5555_0000_1000..0x5555_0000_9000);
    assert_eq!(
        (image.ino, image.dev),
        (1234, nix::sys::stat::makedev(259, 3))
    );
    let What::Exec(Some(image)) = exec(b"./app", false) else {
        panic!("a relative path is kept, for the drain to resolve")
    };
    assert_eq!(
        image.resolved(Some("/srv")).unwrap().path,
        std::path::Path::new("/srv/./app")
    );
    assert_eq!(image.resolved(None), None);
    for (path, truncated) in [
        (&b""[..], false),
        (b"/proc/self/exe", false),
        (b"/dev/fd/3", false),
        (b"/usr/bin/a-long-name", true),
    ] {
        assert_eq!(exec(path, truncated), What::Exec(None), "{path:?}");
    }
}
