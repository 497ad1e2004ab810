//! Stacks of this very test process: copied, unwound through libc's qsort (built without
//! frame pointers) and named with file and line.

use std::cell::RefCell;

use super::*;

/// Registers and a copy of the stack, taken inside the qsort comparator.
type Capture = (UserRegs, Vec<u8>);

thread_local! {
    static CAPTURED: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Reads this thread's registers and copies up to 16 KiB of its stack from the stack
/// pointer up, as the kernel does for a traced call (process_vm_readv stops at the end of
/// the mapping instead of faulting).
#[inline(never)]
fn capture() -> Capture {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers, writes no memory.
    unsafe {
        std::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
            ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp);
    }
    let mut bytes = vec![0u8; 16384];
    let mut copied = 0;
    while copied < bytes.len() {
        let len = 4096.min(bytes.len() - copied);
        let local = libc::iovec {
            iov_base: bytes[copied..].as_mut_ptr().cast(),
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: (sp as usize + copied) as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: the local buffer has `len` bytes; the remote side is our own memory, read
        // by the kernel, which fails instead of faulting on an unmapped page.
        let read = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if read <= 0 {
            break;
        }
        copied += read as usize;
    }
    bytes.truncate(copied);
    (UserRegs { ip, sp, bp }, bytes)
}

extern "C" fn compare(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    CAPTURED.with(|captured| {
        let mut captured = captured.borrow_mut();
        if captured.is_none() {
            *captured = Some(capture());
        }
    });
    // SAFETY: qsort passes pointers to two elements of the i32 array it sorts.
    let (a, b) = unsafe { (*a.cast::<i32>(), *b.cast::<i32>()) };
    a.cmp(&b) as libc::c_int
}

#[inline(never)]
fn user_function_that_sorts() -> Capture {
    let mut values: Vec<i32> = (0..64).rev().collect();
    // SAFETY: a valid array of `len` i32 and a comparator for them.
    unsafe {
        libc::qsort(values.as_mut_ptr().cast(), values.len(), 4, Some(compare));
    }
    std::hint::black_box(&values);
    CAPTURED
        .with(|captured| captured.borrow_mut().take())
        .expect("qsort compared")
}

#[test]
fn a_copied_stack_unwinds_through_libc_to_the_function_that_called_it() {
    let (regs, bytes) = user_function_that_sorts();
    let mut namer = StackNamer::default();
    let frames = namer.unwound(std::process::id(), regs, &bytes);
    let names: Vec<String> = frames.iter().map(|f| f.to_string()).collect();
    let position = |part: &str| names.iter().position(|name| name.contains(part));
    let compare_at = position("compare").unwrap_or_else(|| panic!("{names:#?}"));
    let sorter_at = position("user_function_that_sorts").unwrap_or_else(|| panic!("{names:#?}"));
    assert!(compare_at < sorter_at, "{names:#?}");
    // libc's qsort lies between them: frames of a library without frame pointers.
    let between = &frames[compare_at + 1..sorter_at];
    assert!(
        between
            .iter()
            .any(|f| f.kind == FrameKind::System && f.module.starts_with("libc.so")),
        "{names:#?}"
    );
    assert!(between.iter().all(|f| f.is_named()), "{names:#?}");
    // The test function is named with its file and line.
    let sorter = &frames[sorter_at];
    assert_eq!(sorter.kind, FrameKind::User);
    assert!(
        sorter
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("stacks/tests.rs")),
        "{sorter:?}"
    );
    assert!(sorter.line.is_some(), "{sorter:?}");
    // And the unwind went on past it, to this test.
    assert!(
        position("a_copied_stack_unwinds").is_some_and(|at| at > sorter_at),
        "{names:#?}"
    );

    // A site starts at the first user frame: here the innermost, the capture itself.
    let site = SiteStack::fold(&frames).unwrap();
    assert!(site.frames[0].function.contains("capture"), "{site:?}");
    assert!(site.folded.is_empty());
}

#[test]
fn a_stack_cut_short_keeps_the_frames_it_found() {
    let (regs, bytes) = user_function_that_sorts();
    let mut namer = StackNamer::default();
    let frames = namer.unwound(std::process::id(), regs, &bytes[..64]);
    assert!(!frames.is_empty());
    assert!(frames[0].function.contains("capture"), "{frames:?}");
    // Nothing at all is known of a process that does not exist.
    assert!(namer.unwound(u32::MAX - 1, regs, &bytes).is_empty());
}

#[test]
fn libc_addresses_are_named_with_their_module() {
    let mut namer = StackNamer::default();
    let me = std::process::id();
    namer.remember(me);
    let getpid = libc::getpid as *const () as u64;
    let space = namer.spaces.for_addresses(me, &[getpid]).unwrap();
    let frames = namer.name_all(me, &space, &[getpid]);
    let frame = frames.last().unwrap();
    assert!(frame.function.contains("getpid"), "{frame:?}");
    assert!(frame.module.starts_with("libc.so"), "{frame:?}");
    assert_eq!(frame.kind, FrameKind::System);
}

/// Code in anonymous executable memory is JIT code: unnamed (the site will say how to have
/// it named) while the process has no perf map, named from `/tmp/perf-PID.map` once it has.
#[test]
fn jit_code_is_named_from_the_process_s_perf_map() {
    const LEN: usize = 4096;
    // SAFETY: a fresh anonymous mapping, never executed, unmapped at the end.
    let code = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(code, libc::MAP_FAILED);
    let start = code as u64;
    let me = std::process::id();
    let path = std::path::PathBuf::from(format!("/tmp/perf-{me}.map"));
    let _ = std::fs::remove_file(&path);
    let mut namer = StackNamer::default();
    namer.remember(me);
    let space = namer.spaces.for_addresses(me, &[start]).unwrap();
    let name = |namer: &mut StackNamer| namer.name_all(me, &space, &[start + 0x10]).remove(0);
    let unnamed = name(&mut namer);
    assert_eq!(unnamed.kind, FrameKind::UnnamedJit, "{unnamed:?}");
    std::fs::write(
        &path,
        format!("{start:x} 40 JS:*leakyOpen /tmp/app/node_fd.js:12:19\n"),
    )
    .unwrap();
    namer.jit.forget(me);
    let named = name(&mut namer);
    // An address outside every entry, in a process that has a map: an unknown address.
    let missed = namer.name_all(me, &space, &[start + 0x100]).remove(0);
    std::fs::remove_file(&path).unwrap();
    // SAFETY: mapped above, no longer used.
    unsafe { libc::munmap(code, LEN) };
    assert_eq!(&*named.function, "leakyOpen", "{named:?}");
    assert_eq!(named.kind, FrameKind::User);
    assert_eq!(named.line, Some(12));
    assert_eq!(&*named.module, format!("perf-{me}.map"));
    assert_eq!(missed.kind, FrameKind::Unknown, "{missed:?}");
}
