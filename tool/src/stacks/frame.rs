//! A named stack frame: typed data shared by the ledger's sites, the text report and JSON.

use std::fmt::{self, Display, Formatter};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

/// What a frame's code is, for folding: a site starts at the first `User` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FrameKind {
    /// The program's own code (or code nobody classified: it may be the program's).
    User,
    /// libc, the dynamic loader and the other layers every program goes through.
    System,
    /// A language runtime inside the program: Rust's std/core/alloc, node's and V8's code.
    Runtime,
    /// Code that no module covers and no perf map names: named by address only.
    Unknown,
    /// Code in anonymous executable memory (JIT code) of a process that wrote no perf map:
    /// named by address only, and the site says how to have it named.
    UnnamedJit,
}

/// One frame of a user stack, innermost first in a [`Frames`] list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Frame {
    /// The function, demangled; for an address no symbol covers, `module+0xoffset` (or the
    /// bare address when no module covers it either).
    pub(crate) function: Arc<str>,
    /// The source file, as the debug info names it (a full path when it has one).
    pub(crate) file: Option<Arc<str>>,
    pub(crate) line: Option<u32>,
    /// The file name of the module (`libc.so.6`), empty when no module covers the address.
    pub(crate) module: Arc<str>,
    pub(crate) kind: FrameKind,
    /// A frame of a function the compiler inlined into its caller (the next frame).
    pub(crate) inlined: bool,
}

/// A stack, innermost frame first.
pub(crate) type Frames = Arc<[Frame]>;

impl Frame {
    /// A frame known only by its name, as tests build them.
    #[cfg(test)]
    pub(crate) fn named(function: &str) -> Frame {
        Frame {
            function: Arc::from(function),
            file: None,
            line: None,
            module: Arc::from(""),
            kind: FrameKind::User,
            inlined: false,
        }
    }

    /// A frame of `module` that no symbol names: `libc.so.6+0x2a1f0` (the offset is the
    /// address in the file's own layout, as `addr2line -e` takes it).
    pub(crate) fn unnamed_in(module: Arc<str>, kind: FrameKind, vaddr: u64) -> Frame {
        Frame {
            function: Arc::from(format!("{module}+{vaddr:#x}")),
            file: None,
            line: None,
            module,
            kind,
            inlined: false,
        }
    }

    /// An address that no module covers (JIT code, or a mapping made after the module
    /// table was taken).
    pub(crate) fn unknown(addr: u64) -> Frame {
        Frame {
            function: Arc::from(format!("{addr:#x}")),
            file: None,
            line: None,
            module: Arc::from(""),
            kind: FrameKind::Unknown,
            inlined: false,
        }
    }

    /// Whether a symbol named this frame (rather than only its module or address).
    pub(crate) fn is_named(&self) -> bool {
        !self.function.starts_with("0x") && !self.function.contains("+0x")
    }
}

/// "leak_big (mmap_big_malloc.c:12)": the function, and the file's name and line when
/// the debug info has them.
impl Display for Frame {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.function)?;
        let Some(file) = &self.file else {
            return Ok(());
        };
        let name = Path::new(&**file)
            .file_name()
            .map_or(file.to_string(), |name| name.to_string_lossy().into_owned());
        match self.line {
            Some(line) => write!(f, " ({name}:{line})"),
            None => write!(f, " ({name})"),
        }
    }
}

/// A frame in JSON: `{function, file, line, module}`, with `null` for what is unknown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct FrameJson {
    pub(crate) function: String,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
    pub(crate) module: Option<String>,
}

impl From<&Frame> for FrameJson {
    fn from(frame: &Frame) -> Self {
        FrameJson {
            function: frame.function.to_string(),
            file: frame.file.as_deref().map(str::to_string),
            line: frame.line,
            module: (!frame.module.is_empty()).then(|| frame.module.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_as_function_and_file_line() {
        let mut frame = Frame::named("leak_big");
        assert_eq!(frame.to_string(), "leak_big");
        frame.file = Some(Arc::from("/src/fixtures/mmap_big_malloc.c"));
        frame.line = Some(12);
        assert_eq!(frame.to_string(), "leak_big (mmap_big_malloc.c:12)");
    }

    #[test]
    fn unnamed_frames_name_their_module_never_bare_hex() {
        let frame = Frame::unnamed_in(Arc::from("libc.so.6"), FrameKind::System, 0x2a1f0);
        assert_eq!(frame.to_string(), "libc.so.6+0x2a1f0");
        assert!(!frame.is_named());
        assert!(!Frame::unknown(0x7f00).is_named());
        assert!(Frame::named("main").is_named());
    }

    #[test]
    fn json_frames_have_nulls_for_what_is_unknown() {
        let json = serde_json::to_value(FrameJson::from(&Frame::named("f"))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"function": "f", "file": null, "line": null, "module": null})
        );
    }
}
