//! `extract`'s answer to the original report's list of suspects: "file handles, internal
//! buffers, directory watchers, event listeners, temporary files that persist". Each suspect
//! is answered from the class verdicts that cover it, with their evidence, and says so
//! honestly when no class covers it directly (event listeners are heap objects: the heap
//! class answers for them under `--heap`; without it only the memory classes bound them).

use std::io::{self, Write};

use serde::Serialize;

use super::model::{Classes, HeapReport, Report, ResourceReport};
use crate::analysis::trend::Verdict;
use crate::units;

/// One suspect of the original report, answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Suspect {
    /// The report's words: "file handles", "temporary files", ...
    pub(crate) suspect: &'static str,
    /// The classes whose verdicts answer it ("fd"; "brk", "mmap", "rss").
    pub(crate) classes: Vec<&'static str>,
    /// What they say about it: the class's verdict, or the worst of several.
    pub(crate) verdict: Verdict,
    /// The line's evidence, e.g. "no leak above 1 per 50,000 extractions (fd)".
    pub(crate) evidence: String,
}

/// The memory classes, with the names the evidence uses.
const MEMORY: [&str; 3] = ["brk", "mmap", "rss"];

impl Report {
    /// Answers the original report's five suspects from this report's classes (`extract`).
    pub(crate) fn answer_suspects(&mut self) {
        self.suspects = Some(suspects(&self.classes));
    }

    /// The block after the class table, one line per suspect.
    pub(super) fn write_suspects(&self, out: &mut dyn Write) -> io::Result<()> {
        let Some(suspects) = &self.suspects else {
            return Ok(());
        };
        writeln!(out, "suspects from the original report:")?;
        for suspect in suspects {
            writeln!(out, "  {:<18} {}", suspect.suspect, suspect.evidence)?;
        }
        writeln!(out)
    }
}

pub(crate) fn suspects(c: &Classes) -> Vec<Suspect> {
    let memory = memory(c);
    vec![
        counted("file handles", "fd", &c.fd),
        Suspect {
            suspect: "internal buffers",
            classes: MEMORY.to_vec(),
            verdict: memory.verdict,
            evidence: memory.evidence.clone(),
        },
        counted("directory watchers", "watches", &c.watches),
        match &c.heap {
            Some(heap) => traced_listeners(heap),
            None => listeners(&memory),
        },
        temporary_files(&c.files),
    ]
}

/// A suspect answered by one counted class (fd, watches).
fn counted(suspect: &'static str, name: &'static str, class: &ResourceReport) -> Suspect {
    let evidence = if created_none(class) {
        format!("none created ({name})")
    } else {
        match class.verdict {
            Verdict::Leak => format!("LEAK: {}{}", count_leak(class), at_site(class)),
            Verdict::NoLeak => format!("{} ({name})", count_limit(class)),
            other => open_verdict(other, &class.why, name),
        }
    };
    Suspect {
        suspect,
        classes: vec![name],
        verdict: class.verdict,
        evidence,
    }
}

/// Temporary files that persist: the files class, with what it left on disk.
fn temporary_files(files: &ResourceReport) -> Suspect {
    let evidence = if created_none(files) {
        "none created (files)".to_string()
    } else {
        match files.verdict {
            Verdict::Leak => {
                let bytes = files
                    .bytes_leaked_per_iteration
                    .filter(|&b| b > 0.0)
                    .map_or(String::new(), |b| format!(" ({})", units::bytes_rate(b)));
                format!("LEAK: {}{bytes}{}", count_leak(files), at_site(files))
            }
            // Extraction itself leaves its output on disk (a.txt, b.txt), overwritten every
            // time: flat, and said so, so that "2 on disk" is not read as 2 leaked.
            Verdict::NoLeak if files.live_at_end == 0 => {
                format!("0 left behind (files: {})", count_limit(files))
            }
            Verdict::NoLeak => format!(
                "{} (files: {} on disk at the end, flat)",
                count_limit(files),
                files.live_at_end
            ),
            other => open_verdict(other, &files.why, "files"),
        }
    };
    Suspect {
        suspect: "temporary files",
        classes: vec!["files"],
        verdict: files.verdict,
        evidence,
    }
}

/// The memory classes together: what "internal buffers" and "event listeners" rest on.
struct Memory {
    verdict: Verdict,
    evidence: String,
    /// The smallest leak the memory classes could have seen, per extraction.
    bound: Option<String>,
}

fn memory(c: &Classes) -> Memory {
    let classes = [
        ("brk heap", c.brk.verdict, c.brk.why.as_str()),
        ("mappings", c.mmap.verdict, c.mmap.why.as_str()),
        ("RSS", c.rss.verdict, c.rss.why.as_str()),
    ];
    // RSS holds every byte the process touched, so its limit bounds all memory growth;
    // without a RSS limit, the larger of the others (both must hold) is the bound.
    let bound = c
        .rss
        .detection_limit_bytes_per_iteration
        .or_else(|| {
            let brk = c.brk.detection_limit_bytes_per_iteration?;
            let mmap = c.mmap.detection_limit_bytes_per_iteration?;
            Some(brk.max(mmap))
        })
        .map(bytes_per_extraction);
    let leaks: Vec<String> = [
        (c.brk.verdict, "brk heap", c.brk.bytes_per_iteration, {
            c.brk.sites.first().map(|s| s.site.clone())
        }),
        (
            c.mmap.verdict,
            "mappings",
            c.mmap.bytes_leaked_per_iteration.unwrap_or(0.0),
            c.mmap.sites.first().map(|s| s.site.clone()),
        ),
        (
            c.rss.verdict,
            "RSS not explained by mmap/brk",
            c.rss.unexplained_bytes_per_iteration,
            None,
        ),
    ]
    .into_iter()
    .filter(|(verdict, ..)| *verdict == Verdict::Leak)
    .map(|(_, name, bytes, site)| {
        let at = site.map_or(String::new(), |s| format!(" at {s}"));
        format!("{name} {}{at}", bytes_per_extraction(bytes))
    })
    .collect();
    if !leaks.is_empty() {
        return Memory {
            verdict: Verdict::Leak,
            evidence: format!("LEAK: {}", leaks.join("; ")),
            bound,
        };
    }
    let open: Vec<_> = classes
        .iter()
        .filter(|(_, verdict, _)| *verdict == Verdict::Inconclusive)
        .collect();
    if !open.is_empty() {
        let reasons: Vec<String> = open
            .iter()
            .map(|(name, _, why)| format!("{name}: {why}"))
            .collect();
        return Memory {
            verdict: Verdict::Inconclusive,
            evidence: format!("inconclusive: {}", reasons.join("; ")),
            bound,
        };
    }
    let bounded: Vec<&str> = classes
        .iter()
        .filter(|(_, verdict, _)| *verdict == Verdict::Plateau)
        .map(|(name, ..)| *name)
        .collect();
    if !bounded.is_empty() {
        return Memory {
            verdict: Verdict::Plateau,
            evidence: format!("{} grew, then stopped (bounded)", bounded.join(" and ")),
            bound,
        };
    }
    let evidence = match &bound {
        Some(bound) => format!("brk, mappings and RSS flat: no leak above {bound}"),
        None => "brk, mappings and RSS flat".to_string(),
    };
    Memory {
        verdict: Verdict::NoLeak,
        evidence,
        bound,
    }
}

/// Event listeners are heap objects: under `--heap` the heap class's verdict is theirs.
fn traced_listeners(heap: &HeapReport) -> Suspect {
    let evidence = match heap.verdict {
        Verdict::Leak => {
            let site = heap
                .sites
                .first()
                .map_or(String::new(), |site| format!(", most from {}", site.site));
            format!(
                "heap leak: {}{site} (heap)",
                bytes_per_extraction(heap.bytes_per_iteration)
            )
        }
        Verdict::NoLeak => match heap.detection_limit_bytes_per_iteration {
            Some(limit) => format!("no heap leak above {} (heap)", bytes_per_extraction(limit)),
            None => "no heap leak (heap)".to_string(),
        },
        Verdict::Plateau => format!("grew, then stopped (bounded): {} (heap)", heap.why),
        Verdict::Inconclusive => format!("inconclusive: {} (heap)", heap.why),
    };
    Suspect {
        suspect: "event listeners",
        classes: vec!["heap"],
        verdict: heap.verdict,
        evidence,
    }
}

/// Without `--heap` the heap objects listeners are go untraced: only the memory they would
/// take bounds them.
fn listeners(memory: &Memory) -> Suspect {
    const NOT_TRACED: &str = "not traced: heap allocations are traced with --heap";
    let (verdict, evidence) = match memory.verdict {
        Verdict::NoLeak => (
            Verdict::NoLeak,
            match &memory.bound {
                Some(bound) => {
                    format!("{NOT_TRACED}; brk/mmap/RSS bound them: no leak above {bound}")
                }
                None => format!("{NOT_TRACED}; brk/mmap/RSS stay flat"),
            },
        ),
        // Memory grows, but nothing says it is listeners: that cannot be a verdict on them.
        Verdict::Leak => (
            Verdict::Inconclusive,
            format!(
                "inconclusive: {NOT_TRACED}; memory grows (see internal buffers), and they may be part of it"
            ),
        ),
        Verdict::Plateau => (
            Verdict::Plateau,
            format!("{NOT_TRACED}; brk/mmap/RSS: {}", memory.evidence),
        ),
        Verdict::Inconclusive => (
            Verdict::Inconclusive,
            format!(
                "inconclusive: {NOT_TRACED}; brk/mmap/RSS, which bound them, are inconclusive too (see internal buffers)"
            ),
        ),
    };
    Suspect {
        suspect: "event listeners",
        classes: MEMORY.to_vec(),
        verdict,
        evidence,
    }
}

/// Nothing of the class was made, and nothing was lost that could hide it.
fn created_none(class: &ResourceReport) -> bool {
    super::text::none_created(class)
}

/// "1.00 per extraction".
fn count_leak(class: &ResourceReport) -> String {
    per_extraction(units::per_iteration(units::count_rate(
        class.leaked_per_iteration,
    )))
}

/// "no leak above 1 per 50,000 extractions", or "no sustained growth" without a limit.
fn count_limit(class: &ResourceReport) -> String {
    class
        .detection_limit_per_iteration
        .map_or("no sustained growth".to_string(), |limit| {
            format!(
                "no leak above {}",
                per_extraction(units::per_iteration(units::count_rate(limit)))
            )
        })
}

fn at_site(class: &ResourceReport) -> String {
    class
        .sites
        .first()
        .map_or(String::new(), |site| format!(" at {}", site.site))
}

/// Inconclusive or bounded, with the class's reason (which names the next step).
fn open_verdict(verdict: Verdict, why: &str, name: &str) -> String {
    match verdict {
        Verdict::Plateau => format!("grew, then stopped (bounded): {why} ({name})"),
        _ => format!("inconclusive: {why} ({name})"),
    }
}

fn bytes_per_extraction(bytes: f64) -> String {
    per_extraction(units::per_iteration(units::bytes_rate(bytes)))
}

/// `extract` calls an iteration an extraction.
fn per_extraction(text: String) -> String {
    text.replace("iteration", "extraction")
}

#[cfg(test)]
#[path = "suspects_tests.rs"]
mod tests;
