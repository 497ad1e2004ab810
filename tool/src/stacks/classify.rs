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

/// Function name prefixes of language runtimes linked into the program itself.
const RUNTIME_PREFIXES: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "<std::",
    "<core::",
    "<alloc::",
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
    /// At most [`SITE_FRAMES`], from the first user frame on (from the top when the stack
    /// has no user frame), without the library frames that follow the last user one.
    pub(crate) frames: Arc<[Frame]>,
    /// The frames above the first user frame, counted by what they were.
    pub(crate) folded: Folded,
}

/// Counts of folded frames by label ("libc", "runtime"), in the order they were met.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Folded(pub(crate) Vec<(Arc<str>, u32)>);

impl SiteStack {
    /// Folds `frames` (innermost first) to a site's stack; `None` for an empty stack.
    pub(crate) fn fold(frames: &[Frame]) -> Option<SiteStack> {
        if frames.is_empty() {
            return None;
        }
        let user = frames
            .iter()
            .position(|frame| frame.kind == FrameKind::User);
        let first_user = user.unwrap_or(0);
        let mut folded = Folded::default();
        // Counted as the unwinder found them: a function inlined into another is part of
        // its caller's frame.
        for frame in frames[..first_user].iter().filter(|f| !f.inlined) {
            folded.add(fold_label(frame));
        }
        let mut shown: Vec<Frame> = frames[first_user..]
            .iter()
            .take(SITE_FRAMES)
            .cloned()
            .collect();
        // The start-up code below `main` (or a thread's start) says nothing of the site.
        while user.is_some() && shown.last().is_some_and(|f| f.kind != FrameKind::User) {
            shown.pop();
        }
        Some(SiteStack {
            frames: shown.into(),
            folded,
        })
    }
}

impl Folded {
    fn add(&mut self, label: Arc<str>) {
        match self.0.iter_mut().find(|(l, _)| *l == label) {
            Some((_, count)) => *count += 1,
            None => self.0.push((label, 1)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a folded frame counts as: its library's short name ("libc", "ld-linux-x86-64"),
/// "runtime" for a runtime's code, "unknown" for code no module covers.
fn fold_label(frame: &Frame) -> Arc<str> {
    match frame.kind {
        FrameKind::Runtime => Arc::from("runtime"),
        FrameKind::Unknown => Arc::from("unknown"),
        FrameKind::System | FrameKind::User if !frame.module.is_empty() => {
            let name = frame.module.rsplit('/').next().unwrap_or(&frame.module);
            Arc::from(name.split(".so").next().unwrap_or(name))
        }
        _ => Arc::from("unnamed"),
    }
}

/// "[2 libc frames]", "[2 libc + 1 runtime frames]".
impl Display for Folded {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str("[")?;
        for (i, (label, count)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "{count} {label}")?;
        }
        let total: u32 = self.0.iter().map(|(_, n)| n).sum();
        f.write_str(if total == 1 { " frame]" } else { " frames]" })
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
    fn one_folded_frame_is_singular() {
        let frames = [frame("__open64", "libc.so.6"), frame("open_config", "app")];
        let site = SiteStack::fold(&frames).unwrap();
        assert_eq!(site.folded.to_string(), "[1 libc frame]");
    }
}
