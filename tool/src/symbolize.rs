//! Names for the user stacks of mapping calls, resolved with blazesym.
//!
//! A live process is symbolized through its /proc/PID/maps. Many targets are gone before
//! their events are drained, so the loader also keeps a copy of each process's file
//! mappings, taken as soon as it is known (after exec, at attach, inherited at fork), and
//! resolves addresses of a dead process through its ELF files by file offset.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use blazesym::symbolize::{
    Input, Sym, Symbolized, Symbolizer,
    source::{Elf, Process, Source},
};
use procfs::process::MMapPath;

/// How many frames a site keeps: enough to see past allocator wrappers.
const MAX_FRAMES: usize = 6;

/// A file-backed range of a process's address space.
struct FileRange {
    start: u64,
    end: u64,
    file_offset: u64,
    path: PathBuf,
    executable: bool,
}

/// A copy of a process's file mappings and when it was taken (CLOCK_MONOTONIC ns, the
/// probes' clock), so an exec after it can be recognised as making it stale.
struct MapsCopy {
    taken_ns: u64,
    ranges: Arc<Vec<FileRange>>,
    /// Taken by the spawner right after the target's first exec: it already describes the
    /// program that exec's event (drained later) announces.
    covers_next_exec: bool,
}

pub(crate) struct StackNamer {
    symbolizer: Symbolizer,
    /// By (tgid, stack id, word at the stack pointer, first own-code word).
    cache: HashMap<(u32, u32, u64, u64), Arc<[String]>>,
    maps: HashMap<u32, MapsCopy>,
}

impl Default for StackNamer {
    fn default() -> Self {
        Self {
            symbolizer: Symbolizer::new(),
            cache: HashMap::new(),
            maps: HashMap::new(),
        }
    }
}

impl StackNamer {
    /// Copies the file mappings of a target that has just exec'd. The spawner learns of
    /// the exec when the close-on-exec pipe closes, which is before the kernel maps the new
    /// program; so wait (briefly) until its code is mapped.
    pub(crate) fn remember_after_exec(&mut self, tgid: u32) {
        const WAIT: std::time::Duration = std::time::Duration::from_micros(200);
        for _ in 0..100 {
            let exe = procfs::process::Process::new(tgid as i32).and_then(|p| p.exe());
            self.remember(tgid);
            let Some(copy) = self.maps.get_mut(&tgid) else {
                return;
            }; // gone already
            if exe.is_ok_and(|exe| copy.ranges.iter().any(|r| r.executable && r.path == exe)) {
                copy.covers_next_exec = true;
                return;
            }
            std::thread::sleep(WAIT);
        }
    }

    /// Copies the file mappings of `tgid` now, while it is alive.
    pub(crate) fn remember(&mut self, tgid: u32) {
        let taken_ns = crate::event::monotonic_now_ns();
        let Ok(maps) = procfs::process::Process::new(tgid as i32).and_then(|p| p.maps()) else {
            return;
        };
        let ranges = maps
            .into_iter()
            .filter_map(|map| match map.pathname {
                MMapPath::Path(path) => Some(FileRange {
                    start: map.address.0,
                    end: map.address.1,
                    file_offset: map.offset,
                    executable: map.perms.contains(procfs::process::MMPermissions::EXECUTE),
                    path,
                }),
                _ => None,
            })
            .collect();
        self.maps.insert(
            tgid,
            MapsCopy {
                taken_ns,
                ranges: Arc::new(ranges),
                covers_next_exec: false,
            },
        );
    }

    /// A forked child has its parent's address space.
    pub(crate) fn inherit(&mut self, parent: u32, child: u32) {
        if let Some(copy) = self.maps.get(&parent) {
            let copy = MapsCopy {
                taken_ns: copy.taken_ns,
                ranges: copy.ranges.clone(),
                covers_next_exec: false,
            };
            self.maps.insert(child, copy);
        }
    }

    /// `tgid` exec'd at `time_ns`: copy its new mappings, or forget a copy that predates
    /// the exec (it describes the old program).
    pub(crate) fn exec(&mut self, tgid: u32, time_ns: u64) {
        if let Some(copy) = self.maps.get_mut(&tgid)
            && copy.covers_next_exec
        {
            copy.covers_next_exec = false;
            return;
        }
        self.remember(tgid);
        if self
            .maps
            .get(&tgid)
            .is_some_and(|copy| copy.taken_ns < time_ns)
        {
            self.maps.remove(&tgid);
        }
    }

    /// Frames for a mapping call in process `tgid`, innermost first: the kernel's
    /// frame-pointer walk (`stack_id`, fetched by `read_stack`), with the word at the stack
    /// pointer as the libc wrapper's caller. When that yields nothing but libc, the
    /// `stack_words` that point into the program's own code are used instead, each marked
    /// with a trailing `?` (found by scanning, not by walking).
    pub(crate) fn frames(
        &mut self,
        tgid: u32,
        stack_id: Option<u32>,
        stack_words: &[u64],
        read_stack: impl FnOnce(u32) -> Vec<u64>,
    ) -> Option<Arc<[String]>> {
        let return_address = stack_words.first().copied().unwrap_or(0);
        let scanned = self.own_code_words(tgid, stack_words);
        let key = (
            tgid,
            stack_id.unwrap_or(u32::MAX),
            return_address,
            scanned.first().copied().unwrap_or(0),
        );
        if let Some(frames) = self.cache.get(&key) {
            return Some(frames.clone());
        }
        let mut ips = stack_id.map(read_stack).unwrap_or_default();
        // The frame-pointer walk starts inside libc's wrapper and skips its caller; the
        // word at the stack pointer is that caller's return address. Put it second.
        if return_address != 0 && !ips.contains(&return_address) {
            let at = ips.len().min(1);
            ips.insert(at, return_address);
        }
        ips.truncate(MAX_FRAMES + 1);
        let mut frames = self.symbolize(tgid, &ips, return_address);
        // A site should start at the program's own code: the libc wrappers on top of every
        // mmap and brk say nothing about who leaked.
        // An address that resolved to nothing is no evidence of the program's own code.
        let own_named = |(name, system): &(String, bool)| !system && !name.starts_with("0x");
        match frames.iter().position(own_named) {
            Some(first_own) => {
                frames.drain(..first_own);
            }
            None => {
                let found = self.symbolize(tgid, &scanned, 0);
                let own: Vec<(String, bool)> = found
                    .into_iter()
                    .filter(|(_, system)| !system)
                    .map(|(name, _)| (format!("{name}?"), false))
                    .collect();
                if !own.is_empty() {
                    frames = own;
                }
            }
        }
        frames.dedup();
        // Unresolved addresses below the named frames (libc's thread and process start-up,
        // mapped after the copy was taken) add nothing a reader can use.
        while frames.len() > 1
            && frames
                .last()
                .is_some_and(|(name, _)| name.starts_with("0x"))
        {
            frames.pop();
        }
        let names: Vec<String> = frames
            .into_iter()
            .map(|(name, _)| name)
            .take(MAX_FRAMES)
            .collect();
        if names.is_empty() {
            return None;
        }
        let frames: Arc<[String]> = names.into();
        self.cache.insert(key, frames.clone());
        Some(frames)
    }

    /// Stack words that point into executable code of a file that is not libc or the
    /// loader: likely return addresses into the program, innermost first.
    fn own_code_words(&self, tgid: u32, words: &[u64]) -> Vec<u64> {
        let Some(copy) = self.maps.get(&tgid) else {
            return Vec::new();
        };
        let mut own: Vec<u64> = words
            .iter()
            .copied()
            .filter(|&word| {
                copy.ranges.iter().any(|r| {
                    r.executable
                        && r.start <= word
                        && word < r.end
                        && !is_system_library(Some(r.path.as_os_str()))
                })
            })
            .collect();
        own.dedup();
        own.truncate(MAX_FRAMES);
        own
    }

    /// Names and "is a system library" for each address that resolves; live through
    /// /proc when the process is there, else through the copy of its mappings.
    fn symbolize(&self, tgid: u32, ips: &[u64], guessed: u64) -> Vec<(String, bool)> {
        if ips.is_empty() {
            return Vec::new();
        }
        let source = Source::Process(Process::new(tgid.into()));
        let symbols: Vec<Option<(String, bool)>> =
            match self.symbolizer.symbolize(&source, Input::AbsAddr(ips)) {
                Ok(symbols) => symbols.iter().map(named).collect(),
                // Gone already: resolve through the copy of its mappings.
                Err(_) => self.symbolize_offline(tgid, ips).unwrap_or_default(),
            };
        symbols
            .into_iter()
            .zip(ips)
            .filter_map(|(symbol, ip)| match symbol {
                Some(frame) => Some(frame),
                // The guessed return address may not be code at all: drop it.
                None if *ip == guessed => None,
                None => Some((format!("{ip:#x}"), false)),
            })
            .collect()
    }
}

impl StackNamer {
    /// The function at `address` in process `tgid` and whether it lies in a system library:
    /// through /proc while the process lives, else through the copy of its mappings.
    pub(crate) fn name_address(&self, tgid: u32, address: u64) -> Option<(String, bool)> {
        let source = Source::Process(Process::new(tgid.into()));
        match self
            .symbolizer
            .symbolize(&source, Input::AbsAddr(&[address]))
        {
            Ok(symbols) => symbols.first().and_then(named),
            Err(_) => self
                .symbolize_offline(tgid, &[address])?
                .into_iter()
                .next()
                .flatten(),
        }
    }

    fn symbolize_offline(&self, tgid: u32, ips: &[u64]) -> Option<Vec<Option<(String, bool)>>> {
        let ranges = &self.maps.get(&tgid)?.ranges;
        Some(
            ips.iter()
                .map(|&ip| {
                    let range = ranges.iter().find(|r| r.start <= ip && ip < r.end)?;
                    let offset = ip - range.start + range.file_offset;
                    let source = Source::Elf(Elf::new(&range.path));
                    let symbols = self
                        .symbolizer
                        .symbolize(&source, Input::FileOffset(&[offset]))
                        .ok()?;
                    named(symbols.first()?)
                        .map(|(name, _)| (name, is_system_library(Some(range.path.as_os_str()))))
                })
                .collect(),
        )
    }
}

/// A frame's name and whether it lies in a system library, if it was found at all.
fn named(symbol: &Symbolized<'_>) -> Option<(String, bool)> {
    match symbol {
        Symbolized::Sym(Sym { name, module, .. }) => {
            Some((name.to_string(), is_system_library(module.as_deref())))
        }
        Symbolized::Unknown(_) => None,
    }
}

/// libc and the dynamic loader: the layers between a program and its syscalls.
fn is_system_library(module: Option<&std::ffi::OsStr>) -> bool {
    let Some(module) = module else { return false };
    let name = Path::new(module)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.starts_with("libc.so") || name.starts_with("libc-") || name.starts_with("ld-linux")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_and_loader_are_system_libraries() {
        for module in [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
            "libc-2.36.so",
        ] {
            assert!(
                is_system_library(Some(std::ffi::OsStr::new(module))),
                "{module}"
            );
        }
        assert!(!is_system_library(Some(std::ffi::OsStr::new(
            "/usr/bin/leakscope"
        ))));
        assert!(!is_system_library(None));
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;

    #[inline(never)]
    fn own_function() -> u64 {
        own_function as *const () as u64
    }

    #[test]
    fn libc_frames_are_skipped_and_own_frames_kept() {
        let mut namer = StackNamer::default();
        let libc_ip = libc::getpid as *const () as u64;
        let own_ip = own_function();
        let frames = namer
            .frames(std::process::id(), Some(1), &[], |_| {
                vec![libc_ip + 1, own_ip + 1]
            })
            .unwrap();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(frames[0].contains("own_function"), "{frames:?}");
    }
}
