//! JIT code named from the process's perf map, `/tmp/perf-PID.map`, which V8 (`node
//! --perf-basic-prof`) and CPython 3.12+ (`-X perf`) write for profilers: one line
//! `START SIZE name` (hex, no `0x`) per piece of generated code, appended while it runs.
//!
//! Our own parser rather than blazesym's: blazesym reads the map only through a live
//! process's `/proc/PID/maps`, and many targets are gone when their stacks are named. The
//! map is read when a frame first falls in code no module covers, and read on (only what was
//! appended) when an address misses and the file has grown.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::frame::Frame;
use super::jit_frame::jit_frame;

/// A map larger than this is read no further (a runaway writer, or not a perf map at all).
const MAX_MAP_BYTES: u64 = 256 << 20;

/// How often, at most, to look again for the map of a process that had none.
const LOOK_AGAIN_EVERY: Duration = Duration::from_secs(1);

/// One line of a perf map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) start: u64,
    pub(crate) size: u64,
    pub(crate) name: String,
}

/// Parses one line: `7f43c37e4a80 378 JS:~leakyOpen /tmp/app.js:3:19`. The name is the rest
/// of the line, spaces included; `None` for a line that is not an entry.
pub(crate) fn parse_line(line: &str) -> Option<Entry> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (start, rest) = line.split_once(' ')?;
    let (size, name) = rest.split_once(' ')?;
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok();
    Some(Entry {
        start: hex(start)?,
        size: hex(size)?,
        name: name.to_string(),
    })
}

/// The entries of a perf map by start address, each as the frame it names.
#[derive(Default)]
pub(crate) struct Entries {
    by_start: BTreeMap<u64, (u64, Frame)>,
}

/// Entries that can overlap the one found first, looked at before giving up (code freed and
/// generated again at the same place is logged again: the later line wins).
const OVERLAP_LOOKBACK: usize = 4;

impl Entries {
    /// Adds the entries in `text` (whole lines), in file order: a later entry at the same
    /// start replaces the earlier one.
    pub(crate) fn add_lines(&mut self, text: &str, module: &Arc<str>) {
        for entry in text.lines().filter_map(parse_line) {
            // A size-0 entry covers no address: nothing to name with it.
            if entry.size == 0 {
                continue;
            }
            let end = entry.start.saturating_add(entry.size);
            let frame = jit_frame(&entry.name, module);
            self.by_start.insert(entry.start, (end, frame));
        }
    }

    /// The frame of the code at `addr`.
    pub(crate) fn find(&self, addr: u64) -> Option<&Frame> {
        self.by_start
            .range(..=addr)
            .rev()
            .take(OVERLAP_LOOKBACK)
            .find(|(_, (end, _))| addr < *end)
            .map(|(_, (_, frame))| frame)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_start.len()
    }
}

/// One process's perf map file, read up to its last whole line.
pub(crate) struct PerfMap {
    file: File,
    /// Bytes parsed: up to the end of the last whole line read.
    parsed: u64,
    /// The map's file name, as frames name their module (`perf-1234.map`).
    module: Arc<str>,
    entries: Entries,
}

impl PerfMap {
    /// Opens the map at `path` and reads what it holds. `None` when it does not exist, is
    /// not a regular file (nor followed if it is a symbolic link: /tmp is anyone's), or
    /// belongs to neither root nor `owner` (the process's user, when known), as perf checks.
    pub(crate) fn open(path: &Path, owner: Option<u32>) -> Option<PerfMap> {
        use std::os::unix::fs::MetadataExt as _;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || owner.is_some_and(|uid| meta.uid() != 0 && meta.uid() != uid) {
            return None;
        }
        let module: Arc<str> = path
            .file_name()
            .map_or_else(|| path.to_string_lossy(), |name| name.to_string_lossy())
            .into();
        let mut map = PerfMap {
            file,
            parsed: 0,
            module,
            entries: Entries::default(),
        };
        map.read_on();
        Some(map)
    }

    /// The frame of the code at `addr`, reading what was appended to the map first when
    /// the entries read so far do not cover it.
    pub(crate) fn find(&mut self, addr: u64) -> Option<Frame> {
        if self.entries.find(addr).is_none() && self.grew() {
            self.read_on();
        }
        self.entries.find(addr).cloned()
    }

    /// The map's file name (`perf-1234.map`).
    #[cfg(test)]
    pub(crate) fn module(&self) -> &str {
        &self.module
    }

    fn grew(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|meta| meta.len() != self.parsed)
    }

    /// Parses the whole lines appended since the last read. A map that shrank was written
    /// anew (the process exec'd a program that writes one too): it is read from the start.
    fn read_on(&mut self) {
        let Ok(len) = self.file.metadata().map(|meta| meta.len()) else {
            return;
        };
        if len < self.parsed {
            self.parsed = 0;
            self.entries = Entries::default();
        }
        let end = len.min(MAX_MAP_BYTES);
        if end <= self.parsed || self.file.seek(SeekFrom::Start(self.parsed)).is_err() {
            return;
        }
        let mut bytes = Vec::with_capacity((end - self.parsed) as usize);
        if (&self.file)
            .take(end - self.parsed)
            .read_to_end(&mut bytes)
            .is_err()
        {
            return;
        }
        // A line still being written is read with the rest of it, next time.
        let Some(whole) = bytes.iter().rposition(|&b| b == b'\n').map(|i| i + 1) else {
            return;
        };
        self.entries
            .add_lines(&String::from_utf8_lossy(&bytes[..whole]), &self.module);
        self.parsed += whole as u64;
    }
}

/// What is known of one process's map.
enum Known {
    Map(PerfMap),
    /// None was found at `looked`.
    Absent {
        looked: Instant,
    },
}

/// What a perf map says of an address in code no module covers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum JitName {
    Named(Frame),
    /// The process has a perf map, which does not name the address.
    NotInMap,
    /// The process has no perf map: it was not asked to write one.
    NoMap,
}

/// The perf maps of the traced processes, by tgid, opened on first need.
#[derive(Default)]
pub(crate) struct PerfMaps {
    maps: HashMap<u32, Known>,
}

impl PerfMaps {
    /// Names `addr` of process `tgid` from its perf map.
    pub(crate) fn name(&mut self, tgid: u32, addr: u64) -> JitName {
        let known = self
            .maps
            .entry(tgid)
            .or_insert_with(|| Known::Absent { looked: far_past() });
        if let Known::Absent { looked } = known {
            if looked.elapsed() < LOOK_AGAIN_EVERY {
                return JitName::NoMap;
            }
            let (paths, owner) = map_paths(tgid);
            match paths.iter().find_map(|path| PerfMap::open(path, owner)) {
                Some(map) => *known = Known::Map(map),
                None => {
                    *looked = Instant::now();
                    return JitName::NoMap;
                }
            }
        }
        let Known::Map(map) = known else {
            unreachable!("opened above")
        };
        map.find(addr).map_or(JitName::NotInMap, JitName::Named)
    }

    /// `tgid` exec'd or exited: its map, if any, belongs to what ran before.
    pub(crate) fn forget(&mut self, tgid: u32) {
        self.maps.remove(&tgid);
    }
}

/// An instant long enough ago that a first look is never put off.
fn far_past() -> Instant {
    let now = Instant::now();
    now.checked_sub(LOOK_AGAIN_EVERY * 2).unwrap_or(now)
}

/// Where the map of `tgid` may be: while it lives, its own /tmp under its own pid (it may
/// run in another mount and pid namespace, a container); after, ours. And the user the
/// process runs as, while it lives.
fn map_paths(tgid: u32) -> (Vec<PathBuf>, Option<u32>) {
    let mut paths = Vec::with_capacity(2);
    let mut owner = None;
    if let Ok(status) = procfs::process::Process::new(tgid as i32).and_then(|p| p.status()) {
        let inner = status
            .nstgid
            .and_then(|ids| ids.last().copied())
            .unwrap_or(tgid as i32);
        paths.push(PathBuf::from(format!(
            "/proc/{tgid}/root/tmp/perf-{inner}.map"
        )));
        owner = Some(status.euid);
    }
    paths.push(PathBuf::from(format!("/tmp/perf-{tgid}.map")));
    (paths, owner)
}

#[cfg(test)]
#[path = "perf_map_tests.rs"]
mod tests;
