//! Sites as text: the one place a [`SiteKey`] becomes the string the JSON's `"site"` keys
//! and the text report show ("/tmp/x/data.txt (kept by dup)", "anon 64 KiB rw- private ← f").

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use crate::analysis::HeapSite;
use crate::analysis::sites::Site;
use crate::analysis::trend::Verdict;
use crate::ledger::sites::{
    Backing, EntryKind, FdKind, FdSite, FdSource, MappingSite, MarkType, PidfdDelivery, Seeded,
    SiteId, SiteKey, Sites, StackId, WatchApi,
};
use crate::stacks::FrameJson;
use crate::units;

use super::top_sites::ShownStack;

/// A class's site in the report: where retained resources came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct SiteReport {
    pub(crate) site: String,
    /// The frames the site's text shows, for sites that have a stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frames: Option<Vec<FrameJson>>,
    /// Retained resources from this site.
    pub(crate) leaked: u64,
    pub(crate) leaked_per_iteration: f64,
    /// Bytes they still held at the last boundary (mappings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_leaked: Option<u64>,
    /// Growth of those bytes per iteration (mappings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_leaked_per_iteration: Option<f64>,
    /// The trend of this site's retained count.
    pub(crate) verdict: Verdict,
    /// Of `leaked`, those recorded without a stack (past `--stack-rate`, or while the
    /// ring was a quarter full) and counted here, the one site they differ from only by it.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) without_stack: u64,
    /// The stack as the text report lays it out, one frame per line (text only).
    #[serde(skip)]
    pub(crate) stack: Option<ShownStack>,
    /// Frames of the site's stack in JIT code that no perf map named: the process wrote
    /// none (the site's text says which flags have it written).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub(crate) unnamed_jit_frames: u32,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl SiteReport {
    /// "1.00 per iteration", with ", 64 KiB per iteration" for a site that keeps bytes.
    pub(crate) fn rate_text(&self) -> String {
        let count = units::per_iteration(units::count_rate(self.leaked_per_iteration));
        match self.bytes_leaked_per_iteration {
            Some(bytes) => format!(
                "{count}, {}",
                units::per_iteration(units::bytes_rate(bytes))
            ),
            None => count,
        }
    }

    pub(crate) fn new(site: &Site, sites: &Sites) -> Self {
        SiteReport {
            site: resized_site_text(site.site, sites, site.resized_to),
            frames: site_frames(sites.key(site.site), sites),
            leaked: site.leaked,
            leaked_per_iteration: site.leaked_per_iteration,
            bytes_leaked: site.bytes_leaked,
            bytes_leaked_per_iteration: site.bytes_leaked_per_iteration,
            verdict: site.verdict,
            without_stack: site.without_stack,
            stack: shown_stack(site.site, sites, site.resized_to),
            unnamed_jit_frames: unnamed_jit_frames(sites.key(site.site), sites),
        }
    }
}

/// Heap growth attributed to one call site.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HeapSiteReport {
    pub(crate) site: String,
    /// The frames the site's text shows, when the growth had a stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) frames: Option<Vec<FrameJson>>,
    /// Bytes the break grew by from this site during the iterations.
    pub(crate) bytes: u64,
    pub(crate) bytes_per_iteration: f64,
    /// Of `bytes`, those grown by calls recorded without a stack (see [`SiteReport`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) without_stack_bytes: u64,
    /// The stack as the text report lays it out (text only).
    #[serde(skip)]
    pub(crate) stack: Option<ShownStack>,
    /// See [`SiteReport::unnamed_jit_frames`].
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub(crate) unnamed_jit_frames: u32,
}

impl HeapSiteReport {
    pub(crate) fn new(site: &HeapSite, sites: &Sites) -> Self {
        HeapSiteReport {
            site: site_text(site.site, sites),
            frames: site_frames(sites.key(site.site), sites),
            bytes: site.bytes,
            bytes_per_iteration: site.bytes_per_iteration,
            without_stack_bytes: site.without_stack,
            stack: shown_stack(site.site, sites, None),
            unnamed_jit_frames: unnamed_jit_frames(sites.key(site.site), sites),
        }
    }
}

/// The stack of a site that has one.
fn stack_of(key: &SiteKey) -> Option<StackId> {
    match key {
        SiteKey::Mapping(mapping) => mapping.stack,
        SiteKey::Brk { stack } => *stack,
        SiteKey::Fd(fd) => fd.stack,
        _ => None,
    }
}

/// The frames of a site that has a stack, as JSON lists them.
pub(crate) fn site_frames(key: &SiteKey, sites: &Sites) -> Option<Vec<FrameJson>> {
    let stack = stack_of(key)?;
    Some(sites.stack(stack).iter().map(FrameJson::from).collect())
}

/// Frames of a site's stack in JIT code no perf map named (0 without a stack).
fn unnamed_jit_frames(key: &SiteKey, sites: &Sites) -> u32 {
    stack_of(key).map_or(0, |stack| sites.folded(stack).unnamed_jit())
}

/// The stack of site `id`, for the text report's lines under the site (`None` when it has
/// none): the site's text without it, its frames and what was folded above them.
pub(crate) fn shown_stack(
    id: SiteId,
    sites: &Sites,
    resized_to: Option<u64>,
) -> Option<ShownStack> {
    let key = sites.key(id);
    let stack = stack_of(key)?;
    let mut head = SiteText {
        key,
        sites,
        with_stack: false,
    }
    .to_string();
    head.push_str(&resized_text(resized_to));
    Some(ShownStack {
        head,
        frames: sites.stack(stack).into(),
        folded: sites.folded(stack).clone(),
    })
}

/// The text of site `id`.
pub(crate) fn site_text(id: SiteId, sites: &Sites) -> String {
    SiteText {
        key: sites.key(id),
        sites,
        with_stack: true,
    }
    .to_string()
}

/// A site's text with the size an mremap resized its mappings to.
pub(crate) fn resized_site_text(id: SiteId, sites: &Sites, resized_to: Option<u64>) -> String {
    site_text(id, sites) + &resized_text(resized_to)
}

/// " (resized by mremap to 4 MiB)", or nothing.
fn resized_text(resized_to: Option<u64>) -> String {
    resized_to.map_or(String::new(), |bytes| {
        format!(" (resized by mremap to {})", units::bytes(bytes as f64))
    })
}

/// A site key with the interner its stacks live in.
pub(crate) struct SiteText<'a> {
    pub(crate) key: &'a SiteKey,
    pub(crate) sites: &'a Sites,
    /// With the stack's frames after the site (JSON's `site`), or without (the text
    /// report's line above a stack it lays out).
    pub(crate) with_stack: bool,
}

impl Display for SiteText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.key {
            SiteKey::Fd(site) => {
                write!(f, "{}", FdText(site))?;
                self.frames(f, site.stack)
            }
            SiteKey::Mapping(mapping) => self.mapping(f, mapping),
            SiteKey::SeededMapping(seeded) => write!(f, "{}", SeededText(seeded)),
            SiteKey::RemapOfUntracked => f.write_str("mremap of a mapping from before tracing"),
            SiteKey::Brk { stack } => {
                f.write_str("brk")?;
                self.frames(f, *stack)
            }
            SiteKey::Entry(entry) => {
                let kind = match entry.kind {
                    EntryKind::File => "file",
                    EntryKind::Directory => "directory",
                    EntryKind::Node => "node",
                    EntryKind::Symlink => "symlink",
                    EntryKind::HardLink => "hard link",
                };
                write!(f, "{kind} {}", entry.pattern)
            }
            SiteKey::Watch(watch) => {
                let api = match watch.api {
                    WatchApi::Inotify => "inotify watch",
                    WatchApi::Fanotify(MarkType::Inode) => "fanotify mark",
                    WatchApi::Fanotify(MarkType::Mount) => "fanotify mount mark",
                    WatchApi::Fanotify(MarkType::Filesystem) => "fanotify filesystem mark",
                };
                write!(f, "{api} on {}", watch.pattern)
            }
        }
    }
}

impl SiteText<'_> {
    fn mapping(&self, f: &mut Formatter<'_>, mapping: &MappingSite) -> fmt::Result {
        match &mapping.backing {
            Backing::Anon => f.write_str("anon")?,
            Backing::Fd(site) => write!(f, "{}", FdText(site))?,
            Backing::UnknownFd(fd) => write!(f, "file (fd {fd})")?,
        }
        let sharing = if mapping.shared { "shared" } else { "private" };
        write!(
            f,
            " {} {} {sharing}",
            units::bytes(mapping.len as f64),
            prot_text(mapping.prot)
        )?;
        self.frames(f, mapping.stack)
    }

    /// " ← leak_big (app.c:12) ← main (app.c:30)  [2 libc frames]": the call's frames
    /// from the program's own code on, and what was folded above them.
    fn frames(&self, f: &mut Formatter<'_>, stack: Option<StackId>) -> fmt::Result {
        let Some(id) = stack.filter(|_| self.with_stack) else {
            return Ok(());
        };
        for frame in self.sites.stack(id) {
            write!(f, " ← {frame}")?;
        }
        let folded = self.sites.folded(id);
        if !folded.is_empty() {
            write!(f, "  {folded}")?;
        }
        Ok(())
    }
}

/// The names `/proc/PID/maps` gives (and the lower-case variant names procfs has for the
/// pseudo-paths without one).
struct SeededText<'a>(&'a Seeded);

impl Display for SeededText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Seeded::Path(path) => f.write_str(path),
            Seeded::Heap => f.write_str("[heap]"),
            Seeded::Stack => f.write_str("[stack]"),
            Seeded::ThreadStack(tid) => write!(f, "tstack({tid})"),
            Seeded::Vdso => f.write_str("vdso"),
            Seeded::Vvar => f.write_str("vvar"),
            Seeded::Vsyscall => f.write_str("vsyscall"),
            Seeded::Rollup => f.write_str("rollup"),
            Seeded::Anonymous => f.write_str("anonymous"),
            Seeded::SysVShm(key) => write!(f, "vsys({key})"),
            Seeded::Other(name) => write!(f, "other({:?})", name.to_lowercase()),
        }
    }
}

struct FdText<'a>(&'a FdSite);

impl Display for FdText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.0.source {
            FdSource::Path(path) => f.write_str(path)?,
            FdSource::Kind(kind) => write!(f, "{}", KindText(kind))?,
            FdSource::DupOfUntracked => f.write_str("dup of an fd from before tracing")?,
        }
        match self.0.kept_by {
            Some(call) => write!(f, " (kept by {call})"),
            None => Ok(()),
        }
    }
}

struct KindText<'a>(&'a FdKind);

impl Display for KindText<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            FdKind::Anon(name) => write!(f, "anon:{name}"),
            FdKind::DeliveredPidfd(how) => write!(f, "anon:pidfd ({})", delivery_text(*how)),
            FdKind::Bpf => f.write_str("bpf fd"),
            FdKind::BpfIterator => f.write_str("bpf iterator"),
            FdKind::BpfPinned => f.write_str("bpf object (pinned)"),
            FdKind::FromAnotherProcess => f.write_str("fd from another process"),
            FdKind::Received => f.write_str("fd received over a socket (SCM_RIGHTS)"),
            FdKind::ByHandle => f.write_str("file by handle"),
            FdKind::FsContext(name) => write!(f, "fs context:{name}"),
            FdKind::Memfd(name) => write!(f, "memfd:{name}"),
            FdKind::MountTree(path) => write!(f, "mount tree:{path}"),
            FdKind::MessageQueue(name) => write!(f, "mqueue:{name}"),
            FdKind::Pipe => f.write_str("pipe"),
            FdKind::Socket => f.write_str("socket"),
            FdKind::ProcInode { kind, inode } => write!(f, "{kind}:[{inode}]"),
            FdKind::ProcLink { kind, detail } => write!(f, "{kind}:{detail}"),
        }
    }
}

fn delivery_text(how: PidfdDelivery) -> &'static str {
    match how {
        PidfdDelivery::Clone => "clone CLONE_PIDFD",
        PidfdDelivery::Clone3 => "clone3 CLONE_PIDFD",
        PidfdDelivery::PeerPidfd => "getsockopt SO_PEERPIDFD",
        PidfdDelivery::ScmPidfd => "received over a socket, SCM_PIDFD",
    }
}

/// "rw-"-style protection text.
fn prot_text(prot: u64) -> String {
    let bit = |mask: u64, c: char| if prot & mask != 0 { c } else { '-' };
    [bit(1, 'r'), bit(2, 'w'), bit(4, 'x')].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stacks::{Frame, FrameKind};
    use procfs::process::MMapPath;
    use std::sync::Arc;

    fn text(key: SiteKey, sites: &mut Sites) -> String {
        let id = sites.intern(key);
        site_text(id, sites)
    }

    #[test]
    fn fd_sites_read_as_before() {
        let mut sites = Sites::default();
        let dup = SiteKey::Fd(FdSite {
            source: FdSource::Path(Arc::from("/tmp/x/data.txt")),
            kept_by: Some("dup"),
            stack: None,
        });
        assert_eq!(text(dup, &mut sites), "/tmp/x/data.txt (kept by dup)");
        assert_eq!(
            text(SiteKey::fd_kind(FdKind::Received), &mut sites),
            "fd received over a socket (SCM_RIGHTS)"
        );
        assert_eq!(
            text(
                SiteKey::fd_kind(FdKind::DeliveredPidfd(PidfdDelivery::Clone3)),
                &mut sites
            ),
            "anon:pidfd (clone3 CLONE_PIDFD)"
        );
    }

    #[test]
    fn an_fd_site_names_the_stack_of_the_call_that_made_it() {
        let mut sites = Sites::default();
        let frame = |function: &str, module: &str| Frame {
            module: Arc::from(module),
            kind: if module.starts_with("libc") {
                FrameKind::System
            } else {
                FrameKind::User
            },
            ..Frame::named(function)
        };
        let frames = [
            frame("__libc_open64", "libc.so.6"),
            frame("_IO_file_fopen", "libc.so.6"),
            frame("open_config", "fd_fopen"),
            frame("main", "fd_fopen"),
        ];
        let stack = sites.intern_stack(Some(&frames));
        let open = SiteKey::fd_path("/etc/hostname").with_stack(stack);
        let json = site_frames(&open, &sites).unwrap();
        assert_eq!(json[0].function, "open_config");
        assert_eq!(
            text(open, &mut sites),
            "/etc/hostname ← open_config ← main  [2 libc frames]"
        );
        let dup = SiteKey::Fd(FdSite {
            source: FdSource::Kind(FdKind::Pipe),
            kept_by: Some("dup2"),
            stack,
        });
        assert_eq!(
            text(dup, &mut sites),
            "pipe (kept by dup2) ← open_config ← main  [2 libc frames]"
        );
        assert_eq!(
            site_frames(&SiteKey::fd_path("/etc/hostname"), &sites),
            None
        );
    }

    #[test]
    fn mapping_and_brk_sites_name_their_stack() {
        let mut sites = Sites::default();
        let frames = ["f", "g", "h", "main"].map(Frame::named);
        let stack = sites.intern_stack(Some(&frames));
        let mapping = SiteKey::Mapping(MappingSite {
            backing: Backing::Anon,
            len: 65536,
            prot: 3,
            shared: false,
            stack,
        });
        assert_eq!(
            text(mapping, &mut sites),
            "anon 64 KiB rw- private ← f ← g ← h"
        );
        assert_eq!(
            text(SiteKey::Brk { stack: None }, &mut sites),
            "brk".to_string()
        );
        assert_eq!(prot_text(5), "r-x");
    }

    #[test]
    fn a_stack_shows_file_and_line_and_what_was_folded() {
        let mut sites = Sites::default();
        let frame = |function: &str, module: &str, line: Option<u32>| Frame {
            module: Arc::from(module),
            kind: if module.starts_with("libc") {
                FrameKind::System
            } else {
                FrameKind::User
            },
            file: line.map(|_| Arc::from("/src/mmap_big_malloc.c")),
            line,
            ..Frame::named(function)
        };
        let frames = [
            frame("__GI___mmap64", "libc.so.6", None),
            frame("sysmalloc_mmap", "libc.so.6", None),
            frame("leak_big", "mmap_big_malloc", Some(12)),
            frame("main", "mmap_big_malloc", Some(30)),
        ];
        let stack = sites.intern_stack(Some(&frames));
        let mapping = SiteKey::Mapping(MappingSite {
            backing: Backing::Anon,
            len: 262144,
            prot: 3,
            shared: false,
            stack,
        });
        assert_eq!(
            text(mapping, &mut sites),
            "anon 256 KiB rw- private ← leak_big (mmap_big_malloc.c:12) \
             ← main (mmap_big_malloc.c:30)  [2 libc frames]"
        );
        let json = site_frames(&SiteKey::Brk { stack }, &sites).unwrap();
        assert_eq!(json.len(), 2);
        assert_eq!(json[0].function, "leak_big");
        assert_eq!(json[0].file.as_deref(), Some("/src/mmap_big_malloc.c"));
        assert_eq!(json[0].line, Some(12));
        assert_eq!(json[0].module.as_deref(), Some("mmap_big_malloc"));
        assert_eq!(site_frames(&SiteKey::Brk { stack: None }, &sites), None);
    }

    /// A stack through JIT code of a process that wrote no perf map: the site's text says
    /// once how to have it written, and JSON counts the frames.
    #[test]
    fn unnamed_jit_frames_are_counted_and_explained_once() {
        let mut sites = Sites::default();
        let jit = |addr| Frame {
            kind: FrameKind::UnnamedJit,
            ..Frame::unknown(addr)
        };
        let libc = |function| Frame {
            module: Arc::from("libc.so.6"),
            kind: FrameKind::System,
            ..Frame::named(function)
        };
        let top = [libc("__mmap64"), libc("sysmalloc"), libc("_int_malloc")];
        // A first call from the runtime's own code, then one from JIT code: with no frame
        // of the program's, both are one site, which says so.
        let native = sites.intern_stack(Some(&top));
        let mut frames = top.to_vec();
        frames.extend([jit(0x7f00_0000_1000), jit(0x7f00_0000_2000)]);
        let stack = sites.intern_stack(Some(&frames));
        assert_eq!(stack, native);
        let key = SiteKey::Brk { stack };
        assert_eq!(unnamed_jit_frames(&key, &sites), 2);
        let text = text(key, &mut sites);
        assert_eq!(text.matches("JIT frames unnamed").count(), 1, "{text}");
        assert!(
            text.ends_with(
                "(JIT frames unnamed: run node with --perf-basic-prof \
                 --interpreted-frames-native-stack (python >= 3.12: -X perf))"
            ),
            "{text}"
        );
        assert_eq!(unnamed_jit_frames(&SiteKey::Brk { stack: None }, &sites), 0);
    }

    #[test]
    fn seeded_mappings_read_as_proc_maps_names_them() {
        let mut sites = Sites::default();
        let mut seeded = |path: MMapPath| text(SiteKey::SeededMapping((&path).into()), &mut sites);
        assert_eq!(
            seeded(MMapPath::Path("/usr/bin/prog".into())),
            "/usr/bin/prog"
        );
        assert_eq!(seeded(MMapPath::Heap), "[heap]");
        assert_eq!(seeded(MMapPath::Stack), "[stack]");
        assert_eq!(seeded(MMapPath::Anonymous), "anonymous");
        assert_eq!(seeded(MMapPath::TStack(12)), "tstack(12)");
        assert_eq!(seeded(MMapPath::Vdso), "vdso");
    }

    #[test]
    fn a_resized_mapping_names_its_size() {
        let mut sites = Sites::default();
        let id = sites.intern(SiteKey::Mapping(MappingSite {
            backing: Backing::UnknownFd(7),
            len: 4096,
            prot: 1,
            shared: true,
            stack: None,
        }));
        assert_eq!(
            resized_site_text(id, &sites, Some(4 << 20)),
            "file (fd 7) 4 KiB r-- shared (resized by mremap to 4 MiB)"
        );
    }
}
