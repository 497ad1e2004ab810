//! Each traced process's code modules: which file is mapped executable where, with its
//! load bias and a framehop unwinder over them.
//!
//! Many targets are gone before their events are drained, so the table is a copy of
//! `/proc/PID/maps` taken as soon as the process is known (after exec, at attach,
//! inherited at fork), refreshed while the process lives when a stack reaches code the
//! copy does not cover (a library loaded after it was taken).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use procfs::process::{MMPermissions, MMapPath};

use leakscope_common::syscalls as nr;

use super::classify::module_kind;
use super::elf_sections::{Data, ElfCache, ExecSegment};
use super::frame::FrameKind;
use crate::event::{Event, ExecImage, Syscall, What};
use framehop::Unwinder as _;
use framehop::x86_64::UnwinderX86_64;

/// How often, at most, a live process's copy is taken again because a stack reached code
/// it does not cover (JIT code never is covered: do not reread maps for every stack).
const REFRESH_EVERY: Duration = Duration::from_millis(50);

/// An executable file mapping.
#[derive(Clone, Debug)]
pub(crate) struct CodeRange {
    pub(crate) range: Range<u64>,
    pub(crate) file_offset: u64,
    pub(crate) path: Arc<std::path::Path>,
    /// The file name, as frames show it (`libc.so.6`).
    pub(crate) name: Arc<str>,
    pub(crate) kind: FrameKind,
    /// The same number for the same path in every copy: the symbol cache's key (a
    /// path is slow to hash, and a frame is named on every captured stack).
    pub(crate) file_id: u32,
}

/// The code ranges of one address space, resolved against their files on first use.
#[derive(Debug, Default)]
pub(crate) struct Space {
    code: Vec<CodeRange>,
    /// Anonymous executable ranges (JIT code): covered, although no module describes them.
    anon_code: Vec<Range<u64>>,
    resolved: OnceLock<Resolved>,
}

/// What the files say about the ranges: load biases, and an unwinder with their CFI.
pub(crate) struct Resolved {
    /// By index into `Space::code`; `None` when the file could not be read.
    biases: Vec<Option<u64>>,
    pub(crate) unwinder: UnwinderX86_64<Data>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("biases", &self.biases)
            .finish()
    }
}

/// A code address located in a module: the file and the address in its own layout.
pub(crate) struct Located<'a> {
    pub(crate) module: &'a CodeRange,
    pub(crate) vaddr: u64,
}

impl Space {
    fn from_maps(maps: procfs::process::MemoryMaps, ids: &mut FileIds) -> Space {
        let mut code = Vec::new();
        let mut anon_code = Vec::new();
        for map in maps {
            if !map.perms.contains(MMPermissions::EXECUTE) {
                continue;
            }
            let range = map.address.0..map.address.1;
            match map.pathname {
                MMapPath::Path(path) => code.push(code_range(path, range, map.offset, ids)),
                _ => anon_code.push(range),
            }
        }
        Space {
            code,
            anon_code,
            resolved: OnceLock::new(),
        }
    }

    /// The module ranges, the biases and the unwinder (built on first use).
    pub(crate) fn resolved(&self, files: &mut ElfCache) -> &Resolved {
        self.resolved.get_or_init(|| {
            let mut unwinder = UnwinderX86_64::new();
            let biases = self
                .code
                .iter()
                .map(|code| {
                    let sections = files.get(&code.path)?;
                    let bias = sections.load_bias(code.range.start, code.file_offset)?;
                    unwinder.add_module(super::unwind::module(code, bias, &sections));
                    Some(bias)
                })
                .collect();
            Resolved { biases, unwinder }
        })
    }

    /// The module and ELF address of `addr`, if a readable file's code covers it.
    pub(crate) fn locate(&self, files: &mut ElfCache, addr: u64) -> Option<Located<'_>> {
        let index = self.code.iter().position(|c| c.range.contains(&addr))?;
        let bias = self.resolved(files).biases[index]?;
        Some(Located {
            module: &self.code[index],
            vaddr: addr.wrapping_sub(bias),
        })
    }

    /// The module whose code covers `addr`, even if its file could not be read.
    pub(crate) fn module_at(&self, addr: u64) -> Option<&CodeRange> {
        self.code.iter().find(|c| c.range.contains(&addr))
    }

    /// Whether some executable mapping (file or anonymous) covers `addr`.
    pub(crate) fn covers(&self, addr: u64) -> bool {
        self.module_at(addr).is_some() || self.anon_code.iter().any(|r| r.contains(&addr))
    }
}

/// Numbers for paths, see [`CodeRange::file_id`].
#[derive(Default)]
struct FileIds(HashMap<Arc<Path>, u32>);

impl FileIds {
    fn id(&mut self, path: &Arc<Path>) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(path.clone()).or_insert(next)
    }
}

fn code_range(path: PathBuf, range: Range<u64>, file_offset: u64, ids: &mut FileIds) -> CodeRange {
    let path: Arc<Path> = path.into();
    let name: Arc<str> = path
        .file_name()
        .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy())
        .into();
    CodeRange {
        kind: module_kind(&name),
        range,
        file_offset,
        file_id: ids.id(&path),
        path,
        name,
    }
}

/// A copy of a process's code mappings and when it was taken (CLOCK_MONOTONIC ns, the
/// probes' clock), so an exec after it can be recognised as making it stale.
struct MapsCopy {
    taken_ns: u64,
    taken: Instant,
    space: Arc<Space>,
    /// Taken by the spawner right after the target's first exec: it already describes the
    /// program that exec's event (drained later) announces.
    covers_next_exec: bool,
}

/// The address spaces of the traced processes, by tgid.
#[derive(Default)]
pub(crate) struct AddressSpaces {
    copies: HashMap<u32, MapsCopy>,
    file_ids: FileIds,
    /// Keep a process's table after its exit: `--heap` names the callers of surviving
    /// allocations only when the run ends, often after their processes are gone.
    keep_exited: bool,
}

impl AddressSpaces {
    /// From now on a process's table outlives its exit (see `keep_exited`).
    pub(crate) fn keep_exited(&mut self) {
        self.keep_exited = true;
    }

    /// Copies the mappings of a target that has just exec'd. The spawner learns of the
    /// exec when the close-on-exec pipe closes, which is before the kernel maps the new
    /// program; so wait (briefly) until its code is mapped.
    pub(crate) fn remember_after_exec(&mut self, tgid: u32) {
        const WAIT: Duration = Duration::from_micros(200);
        for _ in 0..100 {
            let exe = procfs::process::Process::new(tgid as i32).and_then(|p| p.exe());
            self.remember(tgid);
            let Some(copy) = self.copies.get_mut(&tgid) else {
                return;
            }; // gone already
            if exe.is_ok_and(|exe| copy.space.code.iter().any(|c| *c.path == *exe)) {
                copy.covers_next_exec = true;
                return;
            }
            std::thread::sleep(WAIT);
        }
    }

    /// Copies the mappings of `tgid` now, while it is alive.
    pub(crate) fn remember(&mut self, tgid: u32) {
        let taken_ns = crate::event::monotonic_now_ns();
        let taken = Instant::now();
        let Ok(maps) = procfs::process::Process::new(tgid as i32).and_then(|p| p.maps()) else {
            return;
        };
        let space = Space::from_maps(maps, &mut self.file_ids);
        // A zombie's maps are empty, and so are a process's in the middle of its exec: a
        // copy with no code replaces nothing (an exec drops the old copy by itself).
        if space.code.is_empty() && self.copies.contains_key(&tgid) {
            return;
        }
        let copy = MapsCopy {
            taken_ns,
            taken,
            space: Arc::new(space),
            covers_next_exec: false,
        };
        self.copies.insert(tgid, copy);
    }

    /// A forked child has its parent's address space.
    pub(crate) fn inherit(&mut self, parent: u32, child: u32) {
        if let Some(copy) = self.copies.get(&parent) {
            let copy = MapsCopy {
                taken_ns: copy.taken_ns,
                taken: copy.taken,
                space: copy.space.clone(),
                covers_next_exec: false,
            };
            self.copies.insert(child, copy);
        }
    }

    /// `tgid` exec'd at `time_ns`: copy its new mappings, or forget a copy that predates
    /// the exec (it describes the old program).
    pub(crate) fn exec(&mut self, tgid: u32, time_ns: u64) {
        if let Some(copy) = self.copies.get_mut(&tgid)
            && copy.covers_next_exec
        {
            copy.covers_next_exec = false;
            return;
        }
        self.remember(tgid);
        if self
            .copies
            .get(&tgid)
            .is_some_and(|copy| copy.taken_ns < time_ns)
        {
            self.copies.remove(&tgid);
        }
    }

    /// The address space of `tgid` in which to resolve `addrs`: the copy, taken again
    /// first when the process lives and some address lies in no code the copy knows
    /// (at most every [`REFRESH_EVERY`]); a first copy when there is none yet.
    pub(crate) fn for_addresses(&mut self, tgid: u32, addrs: &[u64]) -> Option<Arc<Space>> {
        let stale = match self.copies.get(&tgid) {
            None => true,
            Some(copy) => {
                copy.taken.elapsed() >= REFRESH_EVERY
                    && addrs.iter().any(|&addr| !copy.space.covers(addr))
            }
        };
        if stale {
            let exec_copy = self.copies.get(&tgid).map(|c| c.covers_next_exec);
            self.remember(tgid);
            // A refresh keeps the promise that the copy already describes the next exec.
            if let (Some(true), Some(copy)) = (exec_copy, self.copies.get_mut(&tgid)) {
                copy.covers_next_exec = true;
            }
        }
        self.copies.get(&tgid).map(|copy| copy.space.clone())
    }

    /// Follows the calls that load code: the dynamic loader (and dlopen) opens a library,
    /// maps its code with PROT_EXEC from the fd and closes it. Each such mapping joins the
    /// process's table, so a library loaded after the copy was taken (libc, for a program
    /// gone before its events are drained) still names its frames. `path_of_fd` names an
    /// fd the process has open: the ledger already follows every fd, so no second table
    /// is kept here (that cost the reader a hash insert per open).
    pub(crate) fn observe(
        &mut self,
        event: &Event,
        path_of_fd: &dyn Fn(u32, i32) -> Option<Arc<str>>,
    ) {
        match &event.what {
            What::Syscall(call) => {
                // Only a path the ledger holds whole: one cut short (`…`) or not UTF-8
                // (U+FFFD) would name a file that is not the one mapped.
                if let Some(fd) = executable_fd_mapping(call)
                    && let Some(path) = path_of_fd(event.tgid, fd).filter(|p| {
                        p.starts_with('/') && !p.ends_with('…') && !p.contains('\u{fffd}')
                    })
                {
                    self.map_code(event.tgid, call, Path::new(&*path));
                }
            }
            // A process's last record: no stack of it comes after.
            What::Exit if !self.keep_exited => {
                self.copies.remove(&event.tgid);
            }
            _ => {}
        }
    }

    fn map_code(&mut self, tgid: u32, call: &Syscall, path: &Path) {
        const PAGE: u64 = 4096;
        let start = call.ret as u64;
        let end = start.saturating_add(call.args[1].div_ceil(PAGE) * PAGE);
        let code = code_range(
            path.to_path_buf(),
            start..end,
            call.args[5],
            &mut self.file_ids,
        );
        self.add_code(tgid, code);
    }

    /// Puts a newly mapped code range into `tgid`'s table, in place of what it overlaps
    /// (a MAP_FIXED mapping replaces the pages under it).
    fn add_code(&mut self, tgid: u32, new: CodeRange) {
        let Some(copy) = self.copies.get_mut(&tgid) else {
            return;
        };
        let added = new.range.clone();
        let overlaps = |r: &Range<u64>| r.start < added.end && added.start < r.end;
        let old = &copy.space;
        if old
            .code
            .iter()
            .any(|c| c.range == new.range && c.path == new.path && c.file_offset == new.file_offset)
        {
            return; // the copy was taken after this mapping was made
        }
        let mut code: Vec<CodeRange> = old
            .code
            .iter()
            .filter(|c| !overlaps(&c.range))
            .cloned()
            .collect();
        code.push(new);
        let anon_code = old
            .anon_code
            .iter()
            .filter(|r| !overlaps(r))
            .cloned()
            .collect();
        copy.space = Arc::new(Space {
            code,
            anon_code,
            resolved: OnceLock::new(),
        });
    }

    /// Puts the exec'd program's code, as the kernel reported it, into `tgid`'s table when
    /// the copy lacks it. The kernel maps that file itself (no mmap this table follows),
    /// so a process gone within a millisecond of its exec left either no copy or one taken
    /// before its program was mapped, and its own frames could not be named.
    pub(crate) fn add_exec_image(
        &mut self,
        tgid: u32,
        time_ns: u64,
        image: &ExecImage,
        files: &mut ElfCache,
    ) {
        if !is_the_file(&image.path, image) {
            return; // replaced since, or seen through another root
        }
        let Some(sections) = files.get(&image.path) else {
            return;
        };
        let Some(ranges) = image_ranges(&sections.exec_segments, &image.code) else {
            return;
        };
        let start = ranges.first().map(|(range, _)| range.start);
        if let Some(copy) = self.copies.get(&tgid)
            && let Some(module) = start.and_then(|start| copy.space.module_at(start))
            && is_the_file(&module.path, image)
        {
            return; // the copy was taken after the program was mapped
        }
        // No copy, an empty one (taken in the middle of the exec), or one of a program
        // exec'd later: this program's code alone, and the libraries it maps next.
        self.copies.insert(
            tgid,
            MapsCopy {
                taken_ns: time_ns,
                taken: Instant::now(),
                space: Arc::new(Space::default()),
                covers_next_exec: false,
            },
        );
        let path: Arc<Path> = image.path.as_path().into();
        for (range, file_offset) in ranges {
            let code = code_range(path.to_path_buf(), range, file_offset, &mut self.file_ids);
            self.add_code(tgid, code);
        }
    }

    #[cfg(test)]
    pub(crate) fn space(&self, tgid: u32) -> Option<&Arc<Space>> {
        self.copies.get(&tgid).map(|copy| &copy.space)
    }
}

/// The mappings (address range, file offset) that an exec made of `segments`, the file's
/// executable segments, given the process's `mm->start_code..mm->end_code`. The kernel
/// sets `end_code` to the load bias plus the end of the last executable segment, so the
/// bias follows; `start_code` is at most the first one's address (older kernels take it
/// from every segment). A file whose segments do not fit (another file at that path now)
/// gives none.
fn image_ranges(segments: &[ExecSegment], code: &Range<u64>) -> Option<Vec<(Range<u64>, u64)>> {
    const PAGE: u64 = 4096;
    let last_end = segments.iter().map(|s| s.vaddr + s.file_size).max()?;
    let first = segments.iter().map(|s| s.vaddr).min()?;
    let bias = code.end.checked_sub(last_end)?;
    if !bias.is_multiple_of(PAGE) || code.start > bias + first {
        return None;
    }
    let ranges = segments
        .iter()
        .map(|s| {
            let start = (bias + s.vaddr) & !(PAGE - 1);
            let end = (bias + s.vaddr + s.file_size).div_ceil(PAGE) * PAGE;
            (start..end, s.file_offset & !(PAGE - 1))
        })
        .collect();
    Some(ranges)
}

/// Whether `path` leads to the file the kernel exec'd for `image`.
fn is_the_file(path: &Path, image: &ExecImage) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.ino() == image.ino && meta.dev() == image.dev)
}

/// The fd an `mmap` maps executable code from, if it does.
fn executable_fd_mapping(call: &Syscall) -> Option<i32> {
    let fd = call.args[4] as i32;
    let anonymous = call.args[3] & libc::MAP_ANONYMOUS as u64 != 0;
    (call.nr == nr::MMAP && call.args[2] & libc::PROT_EXEC as u64 != 0 && fd >= 0 && !anonymous)
        .then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_space_has_libc_and_the_test_binary() {
        let mut spaces = AddressSpaces::default();
        let me = std::process::id();
        spaces.remember(me);
        let space = spaces.space(me).unwrap().clone();
        let libc_ip = libc::getpid as *const () as u64;
        let module = space.module_at(libc_ip).unwrap();
        assert!(module.name.starts_with("libc.so"), "{}", module.name);
        assert_eq!(module.kind, FrameKind::System);
        let own_ip = our_own_space_has_libc_and_the_test_binary as *const () as u64;
        assert_eq!(space.module_at(own_ip).unwrap().kind, FrameKind::User);
        let mut files = ElfCache::default();
        let located = space.locate(&mut files, libc_ip).unwrap();
        assert!(located.vaddr < libc_ip);
        // A forked child shares the table; an exec after the copy drops it.
        let child = u32::MAX - 1; // no such process: nothing to copy again
        spaces.inherit(me, child);
        assert!(Arc::ptr_eq(spaces.space(child).unwrap(), &space));
        spaces.exec(child, u64::MAX);
        assert!(spaces.space(child).is_none());
    }

    /// A process gone before its maps were read: the exec's image (file, start and end of
    /// code) alone names its own code, at the addresses and file offsets its maps show.
    #[test]
    fn an_exec_image_names_the_program_without_its_maps() {
        use std::os::unix::fs::MetadataExt;
        let me = procfs::process::Process::myself().unwrap();
        let stat = me.stat().unwrap();
        let exe = me.exe().unwrap();
        let meta = std::fs::metadata(&exe).unwrap();
        let image = ExecImage {
            path: exe,
            code: stat.startcode..stat.endcode,
            ino: meta.ino(),
            dev: meta.dev(),
        };
        // Another file than the one exec'd (its inode differs): nothing is added.
        let mut files = ElfCache::default();
        let mut spaces = AddressSpaces::default();
        let other = ExecImage {
            ino: meta.ino() + 1,
            ..image.clone()
        };
        spaces.add_exec_image(u32::MAX - 3, 1, &other, &mut files);
        assert!(spaces.space(u32::MAX - 3).is_none());
        let mut files = ElfCache::default();
        let mut spaces = AddressSpaces::default();
        let gone = u32::MAX - 2;
        spaces.add_exec_image(gone, 1, &image, &mut files);
        let from_image = spaces.space(gone).unwrap().clone();
        let pid = std::process::id();
        spaces.remember(pid);
        let from_maps = spaces.space(pid).unwrap().clone();
        let own_ip = an_exec_image_names_the_program_without_its_maps as *const () as u64;
        let (a, b) = (
            from_image.locate(&mut files, own_ip).unwrap(),
            from_maps.locate(&mut files, own_ip).unwrap(),
        );
        assert_eq!((a.vaddr, a.module.kind), (b.vaddr, FrameKind::User));
        assert_eq!(a.module.range, b.module.range);
        // A copy that already holds the program is left as it is.
        spaces.add_exec_image(pid, 1, &image, &mut files);
        assert!(Arc::ptr_eq(spaces.space(pid).unwrap(), &from_maps));
    }

    #[test]
    fn an_exec_image_is_placed_by_its_code_end() {
        let text = ExecSegment {
            file_offset: 0x1040,
            file_size: 0x2345,
            vaddr: 0x1040,
        };
        let bias = 0x5555_0000_0000;
        let code = bias + 0x1040..bias + 0x3385;
        let ranges = image_ranges(&[text], &code).unwrap();
        assert_eq!(ranges, vec![(bias + 0x1000..bias + 0x4000, 0x1000)]);
        // A non-PIE program: no bias.
        let fixed = image_ranges(&[text], &(0x1040..0x3385)).unwrap();
        assert_eq!(fixed, vec![(0x1000..0x4000, 0x1000)]);
        // Another file's layout: the bias would not be a page, or the code would start
        // before its first executable segment.
        assert_eq!(image_ranges(&[text], &(bias + 0x1040..bias + 0x3386)), None);
        assert_eq!(image_ranges(&[text], &(bias + 0x2000..bias + 0x3385)), None);
    }

    /// The loader's way of mapping a library: open, mmap of the code with PROT_EXEC from
    /// the fd, close. The mapping joins the table, named by the opened path.
    #[test]
    fn an_executable_mmap_of_an_opened_library_joins_the_table() {
        use crate::ledger::test_support::call;
        let event = |what: What| Event {
            time_ns: 1,
            tgid: std::process::id(),
            tid: std::process::id(),
            rss_bytes: None,
            what,
        };
        let libc_path = "/lib/x86_64-linux-gnu/libc.so.6";
        let sections = ElfCache::default().get(Path::new(libc_path)).unwrap();
        let text = sections.exec_segments[0];
        let mut spaces = AddressSpaces::default();
        let me = std::process::id();
        spaces.remember(me);
        // Somewhere nothing is mapped in this process.
        let at = 0x1000_0000_0000u64;
        let exec_map = |fd: u64| {
            let (prot, flags) = (
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
            );
            let offset = text.file_offset & !4095;
            call(
                nr::MMAP,
                at as i64,
                [at, 0x10000, prot as u64, flags as u64, fd, offset],
            )
        };
        // The ledger's view of the process's fds: 7 is the library, until it is closed.
        let open = |_: u32, fd: i32| (fd == 7).then(|| Arc::<str>::from(libc_path));
        let closed = |_: u32, _: i32| None;
        spaces.observe(&event(What::Syscall(exec_map(7))), &open);
        let space = spaces.space(me).unwrap().clone();
        let module = space
            .module_at(at + 0x100)
            .expect("the new mapping is code");
        assert_eq!(&*module.name, "libc.so.6");
        let mut files = ElfCache::default();
        let located = space.locate(&mut files, at + 0x100).unwrap();
        assert_eq!(
            located.vaddr,
            (text.file_offset & !4095) + 0x100 - text.file_offset + text.vaddr
        );
        // After the close, the fd no longer names the file.
        spaces.observe(&event(What::Syscall(exec_map(7))), &closed);
        assert!(Arc::ptr_eq(spaces.space(me).unwrap(), &space));
        // The process's exit is its last record: its table goes.
        spaces.observe(&event(What::Exit), &closed);
        assert!(spaces.space(me).is_none());
    }
}
