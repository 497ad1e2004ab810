//! Frames for the names a perf map gives JIT code: V8's (`JS:~leakyOpen /app/x.js:3:19`,
//! `Builtin:ArrayBufferConstructor`) and CPython's (`py::leaky_open:/app/x.py`).
//!
//! A JS function is one frame whatever tier runs it: V8 marks interpreted code `~`,
//! Sparkplug `^`, Maglev `+` and TurboFan `*`, and the same function moves between tiers as
//! it warms up; kept in the name, a leak would split into one site per tier.

use std::sync::Arc;

use super::frame::{Frame, FrameKind};

/// The prefixes V8 gives a JS function's code (current and older versions).
const JS_PREFIXES: &[&str] = &["JS:", "Eval:", "LazyCompile:", "Function:", "Script:"];

/// V8's tier markers, right after the prefix.
const TIERS: &[char] = &['~', '^', '+', '*'];

/// Where node's own JS lives: its functions are the runtime's, not the program's.
const NODE_INTERNAL: &str = "node:";

/// CPython's prefix (3.12 and later, `-X perf`).
const PYTHON_PREFIX: &str = "py::";

/// Names of a runtime's own generated code (V8's builtins, interpreter handlers, stubs,
/// compiled regular expressions).
const RUNTIME_PREFIXES: &[&str] = &[
    "Builtin:",
    "BytecodeHandler:",
    "Stub:",
    "Handler:",
    "RegExp:",
    "InterpreterEntryTrampoline",
];

/// The frame a perf map's `name` stands for, in the map called `module` (`perf-1234.map`).
pub(crate) fn jit_frame(name: &str, module: &Arc<str>) -> Frame {
    if let Some(rest) = JS_PREFIXES.iter().find_map(|p| name.strip_prefix(p)) {
        return js_frame(rest.trim_start_matches(TIERS), module);
    }
    if let Some(rest) = name.strip_prefix(PYTHON_PREFIX) {
        return python_frame(rest, module);
    }
    let kind = if RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p)) {
        FrameKind::Runtime
    } else {
        // Another JIT's names (a JVM agent's, say): the program's own code, as far as known.
        FrameKind::User
    };
    frame(name, None, None, module, kind)
}

/// `leakyOpen /app/x.js:3:19` (the function and where it starts), `get size node:fs:10:3`,
/// ` /app/x.js:1:1` (a script's top level, which has no name).
fn js_frame(rest: &str, module: &Arc<str>) -> Frame {
    let (function, location) = split_location(rest);
    let function = if function.is_empty() {
        "<anonymous>"
    } else {
        function
    };
    let (file, line) = match location {
        Some(location) => file_and_line(location),
        None => (None, None),
    };
    let kind = match file {
        Some(file) if !file.starts_with(NODE_INTERNAL) => FrameKind::User,
        _ => FrameKind::Runtime,
    };
    frame(function, file, line, module, kind)
}

/// The function name and the source location of a JS entry. A location is the last
/// word, or everything from the first absolute path on (a path may hold spaces, and so may
/// a name: `get size`).
fn split_location(rest: &str) -> (&str, Option<&str>) {
    let at = rest.find(" /").or_else(|| rest.rfind(' '));
    match at {
        Some(at) => (rest[..at].trim(), Some(rest[at + 1..].trim())),
        None => (rest.trim(), None),
    }
}

/// `/app/x.js:3:19` → (`/app/x.js`, 3); a location without a line is all file.
fn file_and_line(location: &str) -> (Option<&str>, Option<u32>) {
    let mut parts = location.rsplitn(3, ':');
    let (last, middle, first) = (parts.next(), parts.next(), parts.next());
    match (
        last.map(str::parse::<u32>),
        middle.map(str::parse::<u32>),
        first,
    ) {
        (Some(Ok(_column)), Some(Ok(line)), Some(file)) => (Some(file), Some(line)),
        _ => match location.rsplit_once(':') {
            Some((file, line)) if line.parse::<u32>().is_ok() => (Some(file), line.parse().ok()),
            _ => (Some(location), None),
        },
    }
}

/// `leaky_open:/app/x.py`: the function (qualified name) and its file.
fn python_frame(rest: &str, module: &Arc<str>) -> Frame {
    let (function, file) = match rest.split_once(':') {
        Some((function, file)) => (function, (!file.is_empty()).then_some(file)),
        None => (rest, None),
    };
    frame(function, file, None, module, FrameKind::User)
}

fn frame(
    function: &str,
    file: Option<&str>,
    line: Option<u32>,
    module: &Arc<str>,
    kind: FrameKind,
) -> Frame {
    Frame {
        function: Arc::from(function),
        file: file.map(Arc::from),
        line,
        module: module.clone(),
        kind,
        inlined: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Frame {
        jit_frame(name, &Arc::from("perf-7.map"))
    }

    #[test]
    fn a_js_function_is_one_frame_at_every_tier() {
        let frames: Vec<Frame> = ["~", "^", "+", "*", ""]
            .iter()
            .map(|tier| named(&format!("JS:{tier}leakyOpen /tmp/app/node_fd.js:12:19")))
            .collect();
        for frame in &frames {
            assert_eq!(frame, &frames[0]);
        }
        let frame = &frames[0];
        assert_eq!(&*frame.function, "leakyOpen");
        assert_eq!(frame.file.as_deref(), Some("/tmp/app/node_fd.js"));
        assert_eq!(frame.line, Some(12));
        assert_eq!(&*frame.module, "perf-7.map");
        assert_eq!(frame.kind, FrameKind::User);
        assert_eq!(frame.to_string(), "leakyOpen (node_fd.js:12)");
    }

    #[test]
    fn node_s_own_js_is_the_runtime() {
        let frame = named("JS:^openSync node:fs:581:18");
        assert_eq!(&*frame.function, "openSync");
        assert_eq!(frame.file.as_deref(), Some("node:fs"));
        assert_eq!(frame.line, Some(581));
        assert_eq!(frame.kind, FrameKind::Runtime);
        let frame = named("JS:~Module._extensions..js node:internal/modules/cjs/loader:1604:37");
        assert_eq!(&*frame.function, "Module._extensions..js");
        assert_eq!(frame.kind, FrameKind::Runtime);
    }

    #[test]
    fn names_and_paths_with_spaces() {
        let frame = named("JS:~get size /srv/my app/lib.js:40:11");
        assert_eq!(&*frame.function, "get size");
        assert_eq!(frame.file.as_deref(), Some("/srv/my app/lib.js"));
        assert_eq!(frame.line, Some(40));
        let frame = named("JS:*get size node:internal/streams:4:2");
        assert_eq!(&*frame.function, "get size");
        assert_eq!(frame.kind, FrameKind::Runtime);
    }

    #[test]
    fn a_script_top_level_is_anonymous() {
        let frame = named("JS:^ /tmp/app/node_fd.js:1:1");
        assert_eq!(&*frame.function, "<anonymous>");
        assert_eq!(frame.line, Some(1));
        assert_eq!(frame.kind, FrameKind::User);
        assert_eq!(
            named("Eval:~ /tmp/app/node_fd.js:1:1").kind,
            FrameKind::User
        );
        assert_eq!(
            named("Eval:~ node:internal/main/run_main_module:1:1").kind,
            FrameKind::Runtime
        );
        // No location at all: nothing says it is the program's.
        assert_eq!(named("JS:~").kind, FrameKind::Runtime);
    }

    #[test]
    fn v8_s_own_code_is_the_runtime() {
        for name in [
            "Builtin:ArrayBufferConstructor",
            "BytecodeHandler:LdaZero",
            "Stub:CEntryStub",
            "RegExp:[a-z]+",
        ] {
            let frame = named(name);
            assert_eq!(&*frame.function, name);
            assert_eq!(frame.kind, FrameKind::Runtime, "{name}");
        }
    }

    #[test]
    fn python_functions_and_their_files() {
        let frame = named("py::leaky_open:/srv/app/jobs.py");
        assert_eq!(&*frame.function, "leaky_open");
        assert_eq!(frame.file.as_deref(), Some("/srv/app/jobs.py"));
        assert_eq!(frame.line, None);
        assert_eq!(frame.kind, FrameKind::User);
        assert_eq!(
            &*named("py::<module>:/srv/app/main.py").function,
            "<module>"
        );
    }

    #[test]
    fn other_jits_names_are_kept_whole() {
        let frame = named("Lcom/example/Cache;::put");
        assert_eq!(&*frame.function, "Lcom/example/Cache;::put");
        assert_eq!(frame.kind, FrameKind::User);
        assert_eq!(frame.file, None);
    }
}
