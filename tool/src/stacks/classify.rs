//! Which frames are the program's own, and how a site's stack folds the rest.
//!
//! A leak is fixed in the program's code, so a site starts at its first `User` frame: the
//! libc wrappers, allocator internals and runtime layers above it are counted, not shown.

use std::fmt::{self, Display, Formatter};
use std::sync::Arc;

use super::frame::{Frame, FrameKind};

/// Frames a site keeps from its first user frame on: deeper frames do not split a site.
pub(crate) const SITE_FRAMES: usize = 3;

/// Libraries every program goes through on its way to a syscall or the allocator.
const SYSTEM_LIBRARIES: &[&str] = &[
    "libc.so",
    "libc-",
    "ld-linux",
    "ld64.so",
    "libpthread",
    "libm.so",
    "libm-",
    "libstdc++",
    "libgcc_s",
    "libuv",
];

/// Programs and libraries that are a language runtime as a whole: the program's code is
/// the JS or Python they run (named from their perf map), never theirs.
fn is_runtime_module(name: &str) -> bool {
    let python = name
        .strip_prefix("python")
        .is_some_and(|version| version.chars().all(|c| c.is_ascii_digit() || c == '.'));
    name == "node"
        || name == "nodejs"
        || name.starts_with("libnode.so")
        || name.starts_with("libpython")
        || python
}

/// Function name prefixes of language runtimes linked into the program itself.
const RUNTIME_PREFIXES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "<std::",
    "<core::",
    "<alloc::",
    // Rust's allocator shims (`__rust_alloc` -> `__rdl_alloc`, or `__rg_alloc` for a
    // `#[global_allocator]`): the program's code calls them through `alloc::alloc`.
    "__rust_",
    "__rdl_",
    "__rg_",
    "node::",
    "v8::",
    "uv_",
    "Builtins_",
    "Builtin:",
    "BytecodeHandler:",
    "Stub:",
];

/// The kind of code in module `module` (a file name or path).
pub(crate) fn module_kind(module: &str) -> FrameKind {
    let name = module.rsplit('/').next().unwrap_or(module);
    if SYSTEM_LIBRARIES.iter().any(|lib| name.starts_with(lib)) {
        FrameKind::System
    } else if is_runtime_module(name) {
        FrameKind::Runtime
    } else {
        FrameKind::User
    }
}

/// The kind of a named function in a module of kind `module_kind`: a runtime's code in
/// the program's own binary is not the program's.
pub(crate) fn function_kind(function: &str, module_kind: FrameKind) -> FrameKind {
    if module_kind == FrameKind::User && RUNTIME_PREFIXES.iter().any(|p| function.starts_with(p)) {
        FrameKind::Runtime
    } else {
        module_kind
    }
}

/// The frames a site shows, and what was folded above them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SiteStack {
    /// At most [`SITE_FRAMES`], from the first user frame on (from the first runtime frame
    /// when the stack has no user frame, from the top when it has neither), without the
    /// library frames that follow the last user one.
    pub(crate) frames: Arc<[Frame]>,
    /// The frames above the first user frame, counted by what they were.
    pub(crate) folded: Folded,
}

/// Counts of folded frames by label ("libc", "runtime"), in the order they were met, and
/// how many frames of the whole stack are JIT code no perf map named.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Folded {
    counts: Vec<(Arc<str>, u32)>,
    unnamed_jit: u32,
}

/// What a site with JIT frames no perf map named says, once.
pub(crate) const UNNAMED_JIT_HINT: &str = "JIT frames unnamed: run node with --perf-basic-prof \
     --interpreted-frames-native-stack (python >= 3.12: -X perf)";

impl SiteStack {
    /// Folds `frames` (innermost first) to a site's stack; `None` for an empty stack.
    pub(crate) fn fold(frames: &[Frame]) -> Option<SiteStack> {
        if frames.is_empty() {
            return None;
        }
        let user = frames
            .iter()
            .position(|frame| frame.kind == FrameKind::User);
        // No frame of the program's (JIT code no perf map named, say): the runtime's code
        // nearest the call tells more than libc's.
        let first_user = user
            .or_else(|| frames.iter().position(|f| f.kind == FrameKind::Runtime))
            .unwrap_or(0);
        let mut folded = Folded::default();
        // Counted as the unwinder found them: a function inlined into another is part of
        // its caller's frame.
        for frame in frames[..first_user].iter().filter(|f| !f.inlined) {
            folded.add(fold_label(frame));
        }
        // Wherever they are: the program's functions may be among them.
        folded.unnamed_jit = frames
            .iter()
            .filter(|f| f.kind == FrameKind::UnnamedJit)
            .count() as u32;
        let mut shown: Vec<Frame> = frames[first_user..]
            .iter()
            .take(SITE_FRAMES)
            .cloned()
            .collect();
        // The start-up code below `main` (or a thread's start) says nothing of the site.
        while user.is_some() && shown.last().is_some_and(|f| f.kind != FrameKind::User) {
            shown.pop();
        }
        // Unnamed JIT code is an address that differs from run to run, and from tier to
        // tier of the same function: it would split one leak into many sites.
        if user.is_none()
            && let Some(jit) = shown.iter().position(|f| f.kind == FrameKind::UnnamedJit)
        {
            shown.truncate(jit.max(1));
        }
        Some(SiteStack {
            frames: shown.into(),
            folded,
        })
    }
}

impl Folded {
    fn add(&mut self, label: Arc<str>) {
        match self.counts.iter_mut().find(|(l, _)| *l == label) {
            Some((_, count)) => *count += 1,
            None => self.counts.push((label, 1)),
        }
    }

    /// Nothing folded, and nothing to say of JIT frames.
    pub(crate) fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.unnamed_jit == 0
    }

    /// Frames of the stack in JIT code that no perf map named (the process wrote none).
    pub(crate) fn unnamed_jit(&self) -> u32 {
        self.unnamed_jit
    }

    /// Another call folded to the same frames: keeps the most unnamed JIT frames any had.
    pub(crate) fn merge_unnamed_jit(&mut self, other: &Folded) {
        self.unnamed_jit = self.unnamed_jit.max(other.unnamed_jit);
    }
}

/// What a folded frame counts as: its library's short name ("libc", "ld-linux-x86-64"),
/// "runtime" for a runtime's code, "unknown" for code no module covers.
fn fold_label(frame: &Frame) -> Arc<str> {
    match frame.kind {
        FrameKind::Runtime => Arc::from("runtime"),
        FrameKind::Unknown => Arc::from("unknown"),
        FrameKind::UnnamedJit => Arc::from("JIT"),
        FrameKind::System | FrameKind::User if !frame.module.is_empty() => {
            let name = frame.module.rsplit('/').next().unwrap_or(&frame.module);
            Arc::from(name.split(".so").next().unwrap_or(name))
        }
        _ => Arc::from("unnamed"),
    }
}

/// "[2 libc frames]", "[2 libc + 1 runtime frames]", and after them, for a stack with JIT
/// frames no perf map named, "(JIT frames unnamed: run node with …)".
impl Display for Folded {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if !self.counts.is_empty() {
            f.write_str("[")?;
            for (i, (label, count)) in self.counts.iter().enumerate() {
                if i > 0 {
                    f.write_str(" + ")?;
                }
                write!(f, "{count} {label}")?;
            }
            let total: u32 = self.counts.iter().map(|(_, n)| n).sum();
            f.write_str(if total == 1 { " frame]" } else { " frames]" })?;
        }
        if self.unnamed_jit > 0 {
            let gap = if self.counts.is_empty() { "" } else { "  " };
            write!(f, "{gap}({UNNAMED_JIT_HINT})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, module: &str) -> Frame {
        let module_kind = module_kind(module);
        Frame {
            kind: function_kind(function, module_kind),
            module: Arc::from(module),
            ..Frame::named(function)
        }
    }

    #[test]
    fn system_libraries_by_file_name() {
        for module in [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
            "libc-2.36.so",
            "libpthread.so.0",
            "libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
            "libgcc_s.so.1",
            "libuv.so.1",
        ] {
            assert_eq!(module_kind(module), FrameKind::System, "{module}");
        }
        for module in [
            "/usr/bin/leakscope",
            "/opt/app/libmylib.so",
            "libmagic.so.1",
            "",
        ] {
            assert_eq!(module_kind(module), FrameKind::User, "{module}");
        }
    }

    #[test]
    fn runtimes_inside_the_program_by_function_name() {
        for function in [
            "std::fs::File::open",
            "core::ptr::drop_in_place",
            "alloc::raw_vec::finish_grow",
            "<std::fs::File as std::io::Read>::read",
            "node::fs::Open",
            "v8::internal::Isolate::Run",
            "uv_fs_open",
            "Builtins_JSEntry",
        ] {
            assert_eq!(function_kind(function, FrameKind::User), FrameKind::Runtime);
        }
        assert_eq!(
            function_kind("leak_handle", FrameKind::User),
            FrameKind::User
        );
        assert_eq!(
            function_kind("JS:~leakyOpen", FrameKind::User),
            FrameKind::User
        );
        // A libc function is System whatever its name.
        assert_eq!(
            function_kind("uv_run", FrameKind::System),
            FrameKind::System
        );
    }

    #[test]
    fn a_site_starts_at_the_first_user_frame_and_counts_the_rest() {
        let frames = [
            frame("__GI___mmap64", "/lib/x86_64-linux-gnu/libc.so.6"),
            frame("sysmalloc_mmap", "/lib/x86_64-linux-gnu/libc.so.6"),
            frame("leak_big", "/tmp/mmap_big_malloc"),
            frame("main", "/tmp/mmap_big_malloc"),
            frame("__libc_start_call_main", "/lib/x86_64-linux-gnu/libc.so.6"),
            frame("__libc_start_main", "/lib/x86_64-linux-gnu/libc.so.6"),
        ];
        let site = SiteStack::fold(&frames).unwrap();
        let names: Vec<&str> = site.frames.iter().map(|f| &*f.function).collect();
        assert_eq!(names, ["leak_big", "main"]);
        assert_eq!(site.folded.to_string(), "[2 libc frames]");
    }

    #[test]
    fn folding_counts_each_kind_in_order() {
        let frames = [
            frame("__open64", "libc.so.6"),
            frame("std::fs::File::open", "/tmp/app"),
            frame("std::fs::OpenOptions::_open", "/tmp/app"),
            frame("leak_handle", "/tmp/app"),
        ];
        let site = SiteStack::fold(&frames).unwrap();
        assert_eq!(&*site.frames[0].function, "leak_handle");
        assert_eq!(site.folded.to_string(), "[1 libc + 2 runtime frames]");
    }

    #[test]
    fn without_a_user_frame_the_site_keeps_the_top() {
        let frames = [
            frame("__brk", "libc.so.6"),
            frame("__sbrk", "libc.so.6"),
            Frame::unknown(0x7f00_1234_5678),
        ];
        let site = SiteStack::fold(&frames).unwrap();
        assert_eq!(&*site.frames[0].function, "__brk");
        assert_eq!(site.frames.len(), 3);
        assert!(site.folded.is_empty());
        assert_eq!(site.folded.to_string(), "");
        assert_eq!(SiteStack::fold(&[]), None);
    }

    #[test]
    fn an_unnamed_frame_of_the_program_is_still_its_code() {
        let frames = [
            frame("__brk", "libc.so.6"),
            Frame::unnamed_in(Arc::from("a.out"), FrameKind::User, 0x1139),
        ];
        let site = SiteStack::fold(&frames).unwrap();
        assert_eq!(&*site.frames[0].function, "a.out+0x1139");
        assert_eq!(site.folded.to_string(), "[1 libc frame]");
    }

    #[test]
    fn inlined_frames_are_not_counted_as_folded_frames() {
        let inlined = Frame {
            inlined: true,
            ..frame("sysmalloc_mmap", "libc.so.6")
        };
        let frames = [
            frame("__mmap64", "libc.so.6"),
            inlined,
            frame("sysmalloc", "libc.so.6"),
            frame("leak_big", "app"),
        ];
        let site = SiteStack::fold(&frames).unwrap();
        assert_eq!(site.folded.to_string(), "[2 libc frames]");
    }

    #[test]
    fn node_and_python_are_runtimes_as_a_whole() {
        for module in [
            "/usr/bin/node",
            "nodejs",
            "libnode.so.108",
            "python3.12",
            "python3",
        ] {
            assert_eq!(module_kind(module), FrameKind::Runtime, "{module}");
        }
        assert_eq!(module_kind("libpython3.12.so.1.0"), FrameKind::Runtime);
        assert_eq!(module_kind("/opt/app/addon.node"), FrameKind::User);
        assert_eq!(module_kind("pythonic"), FrameKind::User);
        // Its `main` and `_start` are the runtime's too.
        assert_eq!(
            function_kind("main", module_kind("/usr/bin/node")),
            FrameKind::Runtime
        );
    }

    /// A Node stack named from its perf map: the site starts at the script's function,
    /// past libc, V8, node's C++ and node's own JS.
    #[test]
    fn a_js_site_starts_at_the_script_s_function() {
        let module = Arc::from("perf-9.map");
        let jit = |name: &str| super::super::jit_frame::jit_frame(name, &module);
        let frames = [
            frame("__open64", "libc.so.6"),
            frame("uv_fs_open", "/usr/bin/node"),
            frame("node::fs::OpenSync", "/usr/bin/node"),
            frame("Builtins_CallApiCallback", "/usr/bin/node"),
            jit("JS:^openSync node:fs:581:18"),
            jit("JS:~leakyOpen /tmp/t/node_fd.js:12:19"),
            jit("JS:^ /tmp/t/node_fd.js:1:1"),
            jit("JS:~Module._compile node:internal/modules/cjs/loader:1483:37"),
            frame("Builtins_JSEntry", "/usr/bin/node"),
            frame("main", "/usr/bin/node"),
        ];
        let site = SiteStack::fold(&frames).unwrap();
        let names: Vec<&str> = site.frames.iter().map(|f| &*f.function).collect();
        assert_eq!(names, ["leakyOpen", "<anonymous>"]);
        assert_eq!(site.folded.to_string(), "[1 libc + 4 runtime frames]");
        assert_eq!(site.folded.unnamed_jit(), 0);
    }

    /// Without a perf map, the JIT frames are addresses: the site says, once, how to have
    /// them named, wherever they are in the stack.
    #[test]
    fn unnamed_jit_frames_make_the_site_say_how_to_name_them() {
        let unnamed = |addr| Frame {
            kind: FrameKind::UnnamedJit,
            ..Frame::unknown(addr)
        };
        let frames = [
            frame("__GI___mmap64", "libc.so.6"),
            frame("node::NodeArrayBufferAllocator::Allocate", "/usr/bin/node"),
            unnamed(0x7f00_0000_1000),
            unnamed(0x7f00_0000_2000),
            frame("Builtins_JSEntry", "/usr/bin/node"),
            frame("_start", "/usr/bin/node"),
        ];
        let site = SiteStack::fold(&frames).unwrap();
        assert_eq!(site.folded.unnamed_jit(), 2);
        // No frame of the program's: the runtime's nearest the call.
        let names: Vec<&str> = site.frames.iter().map(|f| &*f.function).collect();
        assert_eq!(names, ["node::NodeArrayBufferAllocator::Allocate"]);
        assert_eq!(
            site.folded.to_string(),
            format!("[1 libc frame]  ({UNNAMED_JIT_HINT})")
        );
        let libc_only = SiteStack::fold(&frames[..1]).unwrap();
        assert_eq!(libc_only.folded.unnamed_jit(), 0);
        assert!(libc_only.folded.is_empty());
        // With a frame of the program's below them, they are folded and counted too.
        let mut with_user = frames.to_vec();
        with_user.insert(4, frame("js_callback", "/opt/app/addon.node"));
        let site = SiteStack::fold(&with_user).unwrap();
        assert_eq!(&*site.frames[0].function, "js_callback");
        assert_eq!(
            site.folded.to_string(),
            format!("[1 libc + 1 runtime + 2 JIT frames]  ({UNNAMED_JIT_HINT})")
        );
        assert_eq!(
            UNNAMED_JIT_HINT,
            "JIT frames unnamed: run node with --perf-basic-prof \
             --interpreted-frames-native-stack (python >= 3.12: -X perf)"
        );
    }

    #[test]
    fn one_folded_frame_is_singular() {
        let frames = [frame("__open64", "libc.so.6"), frame("open_config", "app")];
        let site = SiteStack::fold(&frames).unwrap();
        assert_eq!(site.folded.to_string(), "[1 libc frame]");
    }
}
