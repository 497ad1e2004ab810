//! The text report's top sites: one line per site with what it kept and how fast, and, under
//! each top site of a class judged a leak, its stack, one frame per line, from the program's
//! first own frame down. The classes that do not leak stay one line per site.
//!
//! ```text
//!   brk       792 KiB grown at brk  (8 KiB/iter)
//!             [4 libc frames]
//!             parse_line  /src/parser/parse.c:88
//!             main        /src/parser/main.c:140
//! ```

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use super::model::{Report, ResourceReport};
use crate::analysis::trend::Verdict;
use crate::stacks::{Folded, Frame};
use crate::units;

/// Under the sites of a brk leak traced without `--heap`. The heap grows in the call that
/// finds it full, whoever keeps what filled it: a function that frees all it takes can be
/// that call.
pub(crate) const BRK_SITES_NOTE: &str =
    "brk sites are the calls that grew the heap, not always those that keep it: --heap names those";

/// Sites shown per class; those of a leaking class each with their stack.
const SITES_SHOWN: usize = 3;
/// Where a stack's lines start: under the site's text, past the class column.
const STACK_INDENT: &str = "            ";
/// The widest function column. A longer name (C++ templates, Rust generics) is cut with an
/// ellipsis, so one name cannot push the files of the others out of line; JSON keeps every
/// name whole.
const FUNCTION_WIDTH: usize = 48;

/// A site's stack as the text lays it out under the site's line. It is text only: JSON's
/// `frames` and `site` carry the same facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ShownStack {
    /// The site's text without its frames ("anon 64 KiB rw- private", "brk"), for the line
    /// above the stack.
    pub(crate) head: String,
    /// From the program's first own frame on, innermost first.
    pub(crate) frames: Arc<[Frame]>,
    /// The library and runtime frames folded above them, counted.
    pub(crate) folded: Folded,
}

impl Report {
    pub(crate) fn write_sites(&self, out: &mut dyn Write) -> io::Result<()> {
        let c = &self.classes;
        let classes = [
            ("fd", &c.fd),
            ("mmap", &c.mmap),
            ("files", &c.files),
            ("watches", &c.watches),
        ];
        let heap_grew = c.brk.verdict != Verdict::NoLeak && !c.brk.sites.is_empty();
        let allocated = c
            .heap
            .as_ref()
            .filter(|h| h.verdict != Verdict::NoLeak && !h.sites.is_empty());
        if classes.iter().all(|(_, class)| class.sites.is_empty())
            && !heap_grew
            && allocated.is_none()
        {
            return writeln!(out, "no resource was retained across iterations");
        }
        writeln!(out, "retained across iterations (top sites):")?;
        for (name, class) in classes {
            write_class_sites(out, name, class)?;
        }
        if heap_grew {
            let leaking = c.brk.verdict == Verdict::Leak;
            for site in c.brk.sites.iter().take(SITES_SHOWN) {
                let unstacked = match site.without_stack_bytes {
                    0 => String::new(),
                    bytes => format!(
                        ", {} by calls recorded without a stack",
                        units::bytes(bytes as f64)
                    ),
                };
                let stack = site.stack.as_ref().filter(|_| leaking);
                writeln!(
                    out,
                    "  brk     {:>9} grown at {}  ({}/iter{unstacked})",
                    units::bytes(site.bytes as f64),
                    stack.map_or(&site.site, |s| &s.head),
                    units::bytes_rate(site.bytes_per_iteration)
                )?;
                write_stack(out, stack)?;
            }
            if leaking && c.heap.is_none() {
                writeln!(out, "{STACK_INDENT}({BRK_SITES_NOTE})")?;
            }
        }
        if let Some(heap) = allocated {
            let leaking = heap.verdict == Verdict::Leak;
            for site in heap.sites.iter().take(SITES_SHOWN) {
                let unstacked = match site.without_stack {
                    0 => String::new(),
                    n => format!(", {n} of them recorded without a stack"),
                };
                writeln!(
                    out,
                    "  heap    {:>9} in {} allocations by {}{}  ({}, {}{unstacked})",
                    units::bytes(site.bytes as f64),
                    site.allocations,
                    site.site,
                    if site.system { " (system library)" } else { "" },
                    units::per_iteration(units::bytes_rate(site.bytes_per_iteration)),
                    units::per_iteration(units::count_rate(site.allocations_per_iteration)),
                )?;
                write_stack(out, site.stack.as_ref().filter(|_| leaking))?;
            }
        }
        Ok(())
    }
}

/// The top sites of an fd, mmap, files or watches class.
fn write_class_sites(out: &mut dyn Write, name: &str, class: &ResourceReport) -> io::Result<()> {
    let leaking = class.verdict == Verdict::Leak;
    for site in class.sites.iter().take(SITES_SHOWN) {
        let bytes = site
            .bytes_leaked
            .map_or(String::new(), |b| format!(", {}", units::bytes(b as f64)));
        let rate = site.rate_text();
        let unstacked = match site.without_stack {
            0 => String::new(),
            n => format!(", {n} of them recorded without a stack"),
        };
        let stack = site.stack.as_ref().filter(|_| leaking);
        writeln!(
            out,
            "  {name:<7} {:>7} × {}  ({rate}{bytes}, {}{unstacked})",
            site.leaked,
            stack.map_or(&site.site, |s| &s.head),
            site.verdict.as_str()
        )?;
        write_stack(out, stack)?;
    }
    Ok(())
}

/// A stack under its site's line: what was folded above it, then one frame per line, the
/// functions in one column and their file:line (or module) after it.
fn write_stack(out: &mut dyn Write, stack: Option<&ShownStack>) -> io::Result<()> {
    let Some(stack) = stack else { return Ok(()) };
    if !stack.folded.is_empty() {
        writeln!(out, "{STACK_INDENT}{}", stack.folded)?;
    }
    let cells: Vec<(String, String)> = stack
        .frames
        .iter()
        .map(|frame| (function_cell(frame), place_cell(frame)))
        .collect();
    let width = cells
        .iter()
        .map(|(function, _)| function.chars().count())
        .max()
        .unwrap_or(0);
    for (function, place) in cells {
        if place.is_empty() {
            writeln!(out, "{STACK_INDENT}{function}")?;
        } else {
            writeln!(out, "{STACK_INDENT}{function:<width$}  {place}")?;
        }
    }
    Ok(())
}

/// The function, cut to [`FUNCTION_WIDTH`], and "(inlined)" for a function the compiler
/// inlined into the next frame's.
pub(crate) fn function_cell(frame: &Frame) -> String {
    let mark = if frame.inlined { " (inlined)" } else { "" };
    format!(
        "{}{mark}",
        cut(&frame.function, FUNCTION_WIDTH - mark.len())
    )
}

/// Where the frame is: the source file as the debug info names it, with its line; without
/// debug info, the module ("in libc.so.6"); nothing when neither is known.
pub(crate) fn place_cell(frame: &Frame) -> String {
    match (&frame.file, frame.line) {
        (Some(file), Some(line)) => format!("{file}:{line}"),
        (Some(file), None) => file.to_string(),
        (None, _) if !frame.module.is_empty() => {
            let module = Path::new(&*frame.module)
                .file_name()
                .map_or(frame.module.to_string(), |n| n.to_string_lossy().into());
            format!("in {module}")
        }
        (None, _) => String::new(),
    }
}

/// `text` in at most `width` characters: cut, and an ellipsis in place of its last.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

#[cfg(test)]
#[path = "top_sites_tests.rs"]
mod tests;
