//! The ring-buffer writers: one per record shape (header only, with one or two paths, with
//! control data; the one with a user stack is in [`crate::ustack`]). Each counts its own ring-full reason in `LOST`.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
    bpf_probe_read_user_str_bytes,
};
use leakscope_common::{
    CONTROL_CAP, CONTROL_CONTINUED, CONTROL_TRUNCATED, CONTROL_UNREADABLE, ControlEvent,
    DropReason, Event, MMSG_COPY_CAP, PATH_CAP, PATH_TRUNCATED, PathEvent, PathPairEvent,
    fd_arrival,
};

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::helpers::generated;

use crate::kernel::ExecImage;
use crate::{EVENTS, PATH_SCRATCH, SUBMIT_FLAGS, count_lost};

/// Sends a header-only record (a record with a path, a stack or control data goes through
/// its own `emit_*`, which counts its own ring-full reason).
#[inline(always)]
pub(crate) fn emit(event: Event) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(SUBMIT_FLAGS);
        }
        // `header` wrote the kind from an `EventKind`, so it always converts back.
        None => count_lost(
            event
                .kind()
                .map_or(DropReason::RingFullSyscall, DropReason::ring_full),
        ),
    }
}

/// A call with one path (or memfd name), sent cut after the path's NUL (rounded up to 8
/// bytes): `bpf_ringbuf_reserve` needs a constant size, so the record is built in
/// [`PATH_SCRATCH`] and copied with `bpf_ringbuf_output`. Measured on the 1M open+close
/// storm: about 11% less sys_exit time than reserving the whole 368-byte record, lower in
/// every interleaved run. The slot cannot be overwritten halfway: a program does not run
/// twice at once on one CPU (the kernel skips a nested run).
#[inline(always)]
pub(crate) fn emit_with_path(event: Event, user_path: *const u8) {
    let Some(record) = PATH_SCRATCH.get_ptr_mut(0) else {
        count_lost(DropReason::RingFullPath); // cannot happen: slot 0 always exists
        return;
    };
    unsafe { fill_path_record(record, event, user_path) };
    if !output_path_record(record) {
        count_lost(DropReason::RingFullPath);
    }
}

/// Writes `event` and the user string at `user_path` into `record`.
///
/// # Safety
/// `record` points at a map value that only this program run writes.
#[inline(always)]
pub(crate) unsafe fn fill_path_record(record: *mut PathEvent, event: Event, user_path: *const u8) {
    unsafe {
        (*record).event = event;
        (*record).close_tid = 0;
        (*record).close_ktime_ns = 0;
        (*record).path_len = read_path(user_path, &mut (*record).path);
    }
}

/// Copies the path record at `record` (a map value) into the ring, cut after its path's
/// NUL. Returns whether the ring had room.
#[inline(always)]
pub(crate) fn output_path_record(record: *mut PathEvent) -> bool {
    let len = unsafe { (*record).path_len };
    // The path's bytes and its NUL, rounded up to 8; masked, so that the verifier sees
    // the bound (a length is at most PATH_CAP - 1, plus the truncation bit).
    const _: () = assert!(PATH_CAP <= 0x200);
    let used = ((len & 0x1ff) as u64 + 1 + 7) & !7;
    let size = (size_of::<PathEvent>() - PATH_CAP) as u64 + used.min(PATH_CAP as u64);
    let sent = unsafe {
        generated::bpf_ringbuf_output(
            &EVENTS as *const _ as *mut c_void,
            record as *mut c_void,
            size,
            SUBMIT_FLAGS,
        )
    };
    sent >= 0
}

/// The [`EventKind::Exec`](leakscope_common::EventKind::Exec) record: with the new
/// program's file name and code range when the kernel could read them, else the header
/// alone (userspace then knows the program only from its maps, if it lives long enough).
#[inline(always)]
pub(crate) fn emit_exec(mut event: Event, image: Option<ExecImage>) {
    let (Some(image), Some(record)) = (image, PATH_SCRATCH.get_ptr_mut(0)) else {
        emit(event);
        return;
    };
    event.args[0] = image.start_code;
    event.args[1] = image.end_code;
    event.args[2] = image.ino;
    event.args[3] = image.dev as u64;
    unsafe {
        (*record).event = event;
        (*record).close_tid = 0;
        (*record).close_ktime_ns = 0;
        (*record).path_len = read_kernel_path(image.interp, &mut (*record).path);
    }
    // No room for the path: the exec itself still matters (it closes the CLOEXEC fds and
    // replaces the address space), so send the header alone (counted lost if that fails).
    if !output_path_record(record) {
        emit(event);
    }
}

/// Copies the kernel string at `path` (length, or'ed with [`PATH_TRUNCATED`] when cut).
/// A failed read leaves the path empty: the exec is still recorded, without its image.
#[inline(always)]
fn read_kernel_path(path: *const u8, buffer: &mut [u8; PATH_CAP]) -> u32 {
    let len = match unsafe { bpf_probe_read_kernel_str_bytes(path, buffer) } {
        Ok(bytes) => bytes.len() as u32,
        Err(_) => return 0,
    };
    if len as usize == PATH_CAP - 1
        && let Ok(next) = unsafe { bpf_probe_read_kernel(path.wrapping_add(PATH_CAP - 1)) }
        && next != 0u8
    {
        return len | PATH_TRUNCATED;
    }
    len
}

/// A call with two paths (the rename family: old name, new name).
#[inline(always)]
pub(crate) fn emit_with_path_pair(event: Event, user_path: *const u8, user_path2: *const u8) {
    let Some(mut entry) = EVENTS.reserve::<PathPairEvent>(0) else {
        count_lost(DropReason::RingFullPath);
        return;
    };
    let record = entry.as_mut_ptr();
    unsafe {
        (*record).event = event;
        (*record).path_len = read_path(user_path, &mut (*record).path);
        (*record).path2_len = read_path(user_path2, &mut (*record).path2);
    }
    entry.submit(SUBMIT_FLAGS);
}

/// Copies the user string at `user_path` into `buffer`; returns its length, or'ed with
/// [`PATH_TRUNCATED`] when it did not fit.
#[inline(always)]
fn read_path(user_path: *const u8, buffer: &mut [u8; PATH_CAP]) -> u32 {
    let len = match unsafe { bpf_probe_read_user_str_bytes(user_path, buffer) } {
        Ok(bytes) => bytes.len() as u32,
        // A NULL path is an empty one (AT_EMPTY_PATH, fanotify_mark's "the dirfd itself");
        // any other failure leaves the call with no real site, so the record is
        // half-recorded and counted.
        Err(_) => {
            if !user_path.is_null() {
                count_lost(DropReason::PathRead);
            }
            0
        }
    };
    // A full buffer may hold the whole string or a cut one: the byte after decides.
    let mut flags = 0;
    if len as usize == PATH_CAP - 1
        && let Ok(next) = unsafe { bpf_probe_read_user(user_path.wrapping_add(PATH_CAP - 1)) }
        && next != 0u8
    {
        flags = PATH_TRUNCATED;
    }
    len | flags
}

/// `msg_control` and `msg_controllen` of the user `struct msghdr` at `msghdr`: adjacent
/// fields, so one read (this runs on every recvmsg of the target).
#[inline(always)]
fn read_control_fields(msghdr: u64) -> Option<(u64, u64)> {
    const _: () = assert!(fd_arrival::MSGHDR_CONTROLLEN == fd_arrival::MSGHDR_CONTROL + 8);
    let [control, len] =
        unsafe { bpf_probe_read_user((msghdr + fd_arrival::MSGHDR_CONTROL) as *const [u64; 2]) }
            .ok()?;
    Some((control, len))
}

/// Whether `len` bytes of control data at `control` may hold fds (see
/// [`fd_arrival::control_may_carry_fds`]); unreadable data may.
#[inline(always)]
fn control_may_carry_fds(control: u64, len: u64) -> bool {
    match unsafe { bpf_probe_read_user(control as *const [u32; 4]) } {
        Ok(h) => {
            fd_arrival::control_may_carry_fds(len, h[0] as u64 | (h[1] as u64) << 32, h[2], h[3])
        }
        Err(_) => true,
    }
}

/// recvmsg: one [`ControlEvent`] if the message at `msghdr` delivered control data that
/// may hold fds; nothing otherwise (most recvmsg calls carry none). Returns whether a
/// record was sent.
#[inline(always)]
pub(crate) fn emit_message_control(event: Event, msghdr: u64, index: u32, flags: u32) -> bool {
    match read_control_fields(msghdr) {
        Some((_, 0)) => false,
        Some((control, len)) => {
            let send = control_may_carry_fds(control, len);
            if send {
                emit_control(event, control, len, index, 0, flags);
            }
            send
        }
        // The header cannot be read back: fds may have arrived unseen.
        None => {
            emit_control(event, 0, 0, index, 0, flags | CONTROL_UNREADABLE);
            true
        }
    }
}

/// recvmmsg: the first [`MMSG_COPY_CAP`] messages as recvmsg; later ones are only checked
/// for control data (of any kind: the cmsg filter would need branches), and those that
/// have some are counted in one extra record, so a recvmmsg that delivered fds beyond the
/// cap never looks complete.
#[inline(always)]
pub(crate) fn emit_mmsg_controls(event: Event, vector: u64, messages: u64) {
    // Records after the first say so, so that the call is counted once.
    let mut continued = 0;
    for i in 0..MMSG_COPY_CAP {
        if i as u64 >= messages {
            return;
        }
        let msghdr = vector + i as u64 * fd_arrival::MMSGHDR_SIZE;
        if emit_message_control(event, msghdr, i, continued) {
            continued = CONTROL_CONTINUED;
        }
    }
    // Branch-free on purpose, and without a count: a loop of up to 1016 messages whose
    // state differs per path (a counter the verifier must track exactly) is too much for
    // it (E2BIG). `any` is nonzero when some message had control data, or when a header
    // could not be read.
    let mut any: u64 = 0;
    for i in MMSG_COPY_CAP..fd_arrival::MMSG_MAX {
        if i as u64 >= messages {
            break;
        }
        let field = vector + i as u64 * fd_arrival::MMSGHDR_SIZE + fd_arrival::MSGHDR_CONTROLLEN;
        let mut len: u64 = 0;
        let status = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_user(
                &mut len as *mut u64 as *mut core::ffi::c_void,
                8,
                field as *const core::ffi::c_void,
            )
        } as u64;
        any |= len | status;
    }
    // Which of them had it is unknown: all messages past the cap are counted, an upper bound.
    let uncopied = if any != 0 {
        (messages - MMSG_COPY_CAP as u64) as u32
    } else {
        0
    };
    if uncopied > 0 {
        emit_control(event, 0, 0, MMSG_COPY_CAP, uncopied, continued);
    }
}

/// One [`ControlEvent`]: up to [`CONTROL_CAP`] bytes of the `len` bytes at `control`.
#[inline(always)]
fn emit_control(event: Event, control: u64, len: u64, index: u32, uncopied: u32, flags: u32) {
    let Some(mut entry) = EVENTS.reserve::<ControlEvent>(0) else {
        count_lost(DropReason::RingFullControl);
        return;
    };
    let record = entry.as_mut_ptr();
    unsafe {
        (*record).event = event;
        (*record).control_len = len as u32;
        (*record).message_index = index;
        (*record).uncopied_messages = uncopied;
        let mut flags = flags;
        if len > CONTROL_CAP as u64 {
            flags |= CONTROL_TRUNCATED;
        }
        // Bounded for the verifier: at most CONTROL_CAP bytes into the record's buffer.
        let copy = if len >= CONTROL_CAP as u64 {
            CONTROL_CAP as u32
        } else {
            (len as u32) & (CONTROL_CAP as u32 - 1)
        };
        // Not zeroed (a 256-byte memset is not worth it): userspace reads only the first
        // `control_len` bytes, and none of an unreadable record.
        let buffer = &mut (*record).control;
        if copy > 0
            && aya_ebpf::helpers::generated::bpf_probe_read_user(
                buffer.as_mut_ptr() as *mut core::ffi::c_void,
                copy,
                control as *const core::ffi::c_void,
            ) != 0
        {
            flags |= CONTROL_UNREADABLE;
        }
        (*record).flags = flags;
    }
    entry.submit(SUBMIT_FLAGS);
}
