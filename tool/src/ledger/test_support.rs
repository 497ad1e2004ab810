//! Builders for synthetic events, shared by the ledger, iteration and analysis tests.

use crate::event::{CapturedPath, Event, Syscall, What};
use leakscope_common::syscalls;

/// A successful syscall `nr` returning `ret`.
pub(crate) fn call(nr: u32, ret: i64, args: [u64; 6]) -> Syscall {
    assert!(syscalls::info(nr).is_some(), "a traced syscall");
    Syscall::bare(nr, ret, args)
}

impl Syscall {
    pub(crate) fn with_path(mut self, path: &str) -> Self {
        self.path = Some(CapturedPath {
            bytes: path.as_bytes().to_vec(),
            truncated: false,
        });
        self
    }

    /// The second path (rename's new name).
    pub(crate) fn with_path2(mut self, path: &str) -> Self {
        self.path2 = Some(Box::new(CapturedPath {
            bytes: path.as_bytes().to_vec(),
            truncated: false,
        }));
        self
    }

    /// What the kernel saw of an open: its flags and whether it created the file.
    pub(crate) fn with_open(mut self, flags: u64, created: Option<bool>) -> Self {
        self.open = Some(crate::event::OpenInfo {
            flags: Some(flags as u32),
            created,
        });
        self
    }

    pub(crate) fn with_pair(mut self, fds: [i32; 2]) -> Self {
        self.fd_pair = Some(fds);
        self
    }

    pub(crate) fn with_delivered(mut self, delivered: crate::delivered::Delivered) -> Self {
        self.delivered = Some(Box::new(delivered));
        self
    }

    /// A stack of fully described frames, innermost first (see [`libc_frame`],
    /// [`source_frame`]).
    pub(crate) fn with_stack(mut self, frames: Vec<crate::stacks::Frame>) -> Self {
        self.frames = Some(frames.into());
        self
    }

    pub(crate) fn with_frames(mut self, frames: &[&str]) -> Self {
        self.frames = Some(
            frames
                .iter()
                .map(|f| crate::stacks::Frame::named(f))
                .collect::<Vec<_>>()
                .into(),
        );
        self
    }
}

/// Builds a time-ordered event stream for one main process; each event gets the next
/// microsecond unless a time is set explicitly.
pub(crate) struct Stream {
    pub(crate) events: Vec<Event>,
    pub(crate) now: u64,
    pub(crate) tgid: u32,
}

impl Stream {
    pub(crate) fn new(tgid: u32) -> Self {
        Stream {
            events: Vec::new(),
            now: 1_000_000,
            tgid,
        }
    }

    pub(crate) fn push(&mut self, tgid: u32, tid: u32, what: What, rss: Option<u64>) -> &mut Self {
        self.now += 1_000;
        self.events.push(Event {
            time_ns: self.now,
            tgid,
            tid,
            rss_bytes: rss,
            what,
        });
        self
    }

    pub(crate) fn sys(&mut self, call: Syscall) -> &mut Self {
        let tgid = self.tgid;
        self.push(tgid, tgid, What::Syscall(call), None)
    }

    pub(crate) fn open(&mut self, path: &str, fd: i32) -> &mut Self {
        self.sys(call(syscalls::OPENAT, fd as i64, [-100i64 as u64, 0, 0, 0, 0, 0]).with_path(path))
    }

    pub(crate) fn open_cloexec(&mut self, path: &str, fd: i32) -> &mut Self {
        self.sys(
            call(
                syscalls::OPENAT,
                fd as i64,
                [-100i64 as u64, 0, 0o2000000, 0, 0, 0],
            )
            .with_path(path),
        )
    }

    pub(crate) fn close(&mut self, fd: i32) -> &mut Self {
        self.sys(call(syscalls::CLOSE, 0, [fd as u64, 0, 0, 0, 0, 0]))
    }

    pub(crate) fn mmap_anon(&mut self, addr: u64, len: u64) -> &mut Self {
        self.sys(call(
            syscalls::MMAP,
            addr as i64,
            [0, len, 3, 0x22, u64::MAX, 0],
        ))
    }

    pub(crate) fn munmap(&mut self, addr: u64, len: u64) -> &mut Self {
        self.sys(call(syscalls::MUNMAP, 0, [addr, len, 0, 0, 0, 0]))
    }

    pub(crate) fn brk(&mut self, new_break: u64) -> &mut Self {
        self.sys(call(
            syscalls::BRK,
            new_break as i64,
            [new_break, 0, 0, 0, 0, 0],
        ))
    }

    pub(crate) fn marker(&mut self) -> &mut Self {
        let tgid = self.tgid;
        self.push(tgid, tgid, What::Marker { arg: 0, heap: None }, None)
    }

    pub(crate) fn marker_with_rss(&mut self, rss: u64) -> &mut Self {
        let tgid = self.tgid;
        self.push(tgid, tgid, What::Marker { arg: 0, heap: None }, Some(rss))
    }

    /// A marker carrying the allocator totals `--heap` adds: (live bytes, live count).
    pub(crate) fn marker_with_heap(&mut self, live_bytes: u64, live_count: u64) -> &mut Self {
        let tgid = self.tgid;
        let heap = crate::event::MarkerHeap {
            live_bytes,
            live_count,
            missed_frees: 0,
            unrecorded: 0,
        };
        self.push(
            tgid,
            tgid,
            What::Marker {
                arg: 0,
                heap: Some(heap),
            },
            None,
        )
    }

    pub(crate) fn exit(&mut self) -> &mut Self {
        let tgid = self.tgid;
        self.push(tgid, tgid, What::Exit, None)
    }

    pub(crate) fn ledger(&self) -> crate::ledger::Ledger {
        let mut ledger = crate::ledger::Ledger::new();
        for event in &self.events {
            ledger.apply(event);
        }
        ledger
    }
}

/// Views of what a live process holds, with sites as the report writes them (tests only).
impl super::Ledger {
    /// Open fds of a live process, by number, with their site text.
    pub(crate) fn open_fds(&self, tgid: u32) -> Vec<(i32, String)> {
        self.processes.get(&tgid).map_or_else(Vec::new, |process| {
            process
                .fds
                .iter()
                .map(|(fd, entry)| (fd, self.site_text(self.history.fds.get(entry.record).site)))
                .collect()
        })
    }

    /// Whether `fd` of `tgid` is open and CLOEXEC.
    pub(crate) fn is_cloexec(&self, tgid: u32, fd: i32) -> Option<bool> {
        self.processes
            .get(&tgid)?
            .fds
            .get(fd)
            .map(|entry| entry.cloexec)
    }

    /// Mapped ranges of a live process: (start, len, site text).
    pub(crate) fn mapped_ranges(&self, tgid: u32) -> Vec<(u64, u64, String)> {
        self.processes.get(&tgid).map_or_else(Vec::new, |process| {
            process
                .maps
                .pieces()
                .map(|(start, len, record)| {
                    let site = self.history.maps.get(record).site;
                    (start, len, self.site_text(site))
                })
                .collect()
        })
    }

    /// Heap bytes of a live process above its first break.
    pub(crate) fn heap_bytes(&self, tgid: u32) -> i64 {
        self.processes
            .get(&tgid)
            .map_or(0, |process| process.heap.heap_bytes())
    }

    pub(crate) fn site_text(&self, site: super::sites::SiteId) -> String {
        crate::report::sites::site_text(site, &self.history.sites)
    }
}

/// A `/proc/PID/fd` link as procfs parses it.
pub(crate) fn link(text: &str) -> procfs::process::FDTarget {
    text.parse().expect("a /proc fd link")
}

/// A frame in libc without line information, as unwinding finds them.
pub(crate) fn libc_frame(function: &str) -> crate::stacks::Frame {
    crate::stacks::Frame {
        module: "libc.so.6".into(),
        kind: crate::stacks::FrameKind::System,
        ..crate::stacks::Frame::named(function)
    }
}

/// A frame of the program's own code with its source file and line.
pub(crate) fn source_frame(function: &str, file: &str, line: u32) -> crate::stacks::Frame {
    crate::stacks::Frame {
        file: Some(file.into()),
        line: Some(line),
        module: "parser".into(),
        ..crate::stacks::Frame::named(function)
    }
}
