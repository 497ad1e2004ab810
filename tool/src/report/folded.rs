//! `--folded` and `--flamegraph`: what was retained across iterations, by stack, as folded
//! stacks (`class;caller;...;site width`, the format flamegraph.pl and inferno read) and as
//! a flamegraph SVG rendered by inferno.
//!
//! Each class is a root of its own, named with its unit, because the widths are what each
//! class leaks: bytes for mmap, brk and heap, a count for fd, files and watches. Below the
//! root come the site's frames from the outermost one shown down to the first frame in the
//! program's own code, and the resource itself last (the path, or `anon 64 KiB rw-`). A site
//! recorded without a stack has its text's callers instead.

use super::Report;
use super::export::Exporter;
use crate::stacks::FrameJson;

/// Folded stacks, one line per retained site, most retained first within a class.
pub(crate) struct FoldedExporter;

impl Exporter for FoldedExporter {
    fn render(&self, report: &Report) -> anyhow::Result<Vec<u8>> {
        let mut out = String::new();
        for line in folded_lines(report) {
            out.push_str(&line);
            out.push('\n');
        }
        Ok(out.into_bytes())
    }
}

/// A flamegraph SVG of the same stacks.
pub(crate) struct FlamegraphExporter;

impl Exporter for FlamegraphExporter {
    fn render(&self, report: &Report) -> anyhow::Result<Vec<u8>> {
        let lines = per_class_shares(&folded_lines(report));
        let mut svg = Vec::new();
        let mut options = inferno::flamegraph::Options::default();
        options.title = format!("leakscope: retained across iterations, {}", command(report));
        // Bytes and counts share no scale: 99 fds beside 6 MB of mappings would be a sliver
        // too thin to draw. Each class gets the same width; within it, a frame's width is
        // its share of the class's retained bytes or count (--folded keeps the amounts).
        options.subtitle = Some(
            "each class equally wide; within it, shares of its retained bytes (mmap, brk, heap) or count (fd, files, watches)".into(),
        );
        options.count_name = "millionths of the class".into();
        // The same report gives the same picture (no random colours).
        options.deterministic = true;
        if lines.is_empty() {
            options.subtitle = Some("nothing was retained across iterations".into());
            inferno::flamegraph::from_lines(&mut options, ["nothing retained 1"], &mut svg)?;
        } else {
            inferno::flamegraph::from_lines(
                &mut options,
                lines.iter().map(String::as_str),
                &mut svg,
            )?;
        }
        Ok(svg)
    }
}

/// `lines` with each class's widths rescaled to sum to a million.
fn per_class_shares(lines: &[String]) -> Vec<String> {
    const WHOLE: f64 = 1_000_000.0;
    let split = |line: &str| -> Option<(String, String, u64)> {
        let (stack, width) = line.rsplit_once(' ')?;
        let class = stack.split(';').next()?.to_string();
        Some((class, stack.to_string(), width.parse().ok()?))
    };
    let parsed: Vec<(String, String, u64)> = lines.iter().filter_map(|l| split(l)).collect();
    let mut totals: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (class, _, width) in &parsed {
        *totals.entry(class).or_default() += width;
    }
    parsed
        .iter()
        .map(|(class, stack, width)| {
            let share = *width as f64 / totals[class.as_str()].max(1) as f64;
            format!("{stack} {}", ((share * WHOLE).round() as u64).max(1))
        })
        .collect()
}

fn command(report: &Report) -> String {
    report.target.command.join(" ")
}

/// One retained site of a class: its stack (root first) and width.
struct Retained<'a> {
    /// The site's text: the resource, then its callers (` ← `).
    text: &'a str,
    /// The leaf instead of the text's resource (heap sites name only their caller).
    leaf: Option<&'static str>,
    frames: Option<&'a [FrameJson]>,
    width: u64,
}

/// Every class's retained sites as folded lines.
pub(crate) fn folded_lines(report: &Report) -> Vec<String> {
    let c = &report.classes;
    let resources = resource_sites;
    let mut classes: Vec<(String, Vec<Retained>)> = vec![
        ("fd (count)".into(), resources(&c.fd.sites, false)),
        ("mmap (bytes)".into(), resources(&c.mmap.sites, true)),
        (
            "brk (bytes)".into(),
            c.brk
                .sites
                .iter()
                .map(|s| Retained {
                    text: &s.site,
                    leaf: None,
                    frames: s.frames.as_deref(),
                    width: s.bytes,
                })
                .collect(),
        ),
        ("files (count)".into(), resources(&c.files.sites, false)),
        ("watches (count)".into(), resources(&c.watches.sites, false)),
    ];
    if let Some(heap) = &c.heap {
        classes.push((
            "heap (bytes)".into(),
            heap.sites
                .iter()
                .map(|s| Retained {
                    text: &s.site,
                    leaf: Some("allocated blocks"),
                    frames: s.frames.as_deref(),
                    width: s.bytes,
                })
                .collect(),
        ));
    }
    let mut lines = Vec::new();
    for (root, mut sites) in classes {
        sites.retain(|s| s.width > 0);
        sites.sort_by_key(|s| std::cmp::Reverse(s.width));
        for site in sites {
            let mut stack = vec![root.clone()];
            stack.extend(stack_of(&site));
            let stack: Vec<String> = stack.iter().map(|f| clean(f)).collect();
            lines.push(format!("{} {}", stack.join(";"), site.width));
        }
    }
    lines
}

/// A resource class's sites: their retained bytes (mmap, files) or count.
fn resource_sites(sites: &[super::sites::SiteReport], bytes: bool) -> Vec<Retained<'_>> {
    sites
        .iter()
        .map(|s| Retained {
            text: &s.site,
            leaf: None,
            frames: s.frames.as_deref(),
            width: if bytes {
                s.bytes_leaked.unwrap_or(0)
            } else {
                s.leaked
            },
        })
        .collect()
}

/// The site's stack below its class, root first: its frames (outermost first), then the
/// resource. Without frames, the text's callers (`resource ← f ← g` is `g;f;resource`).
fn stack_of(site: &Retained) -> Vec<String> {
    let mut parts = site.text.split(" ← ");
    let first = parts.next().unwrap_or(site.text);
    // A heap site's text is its caller: a caller, unless frames stand for it.
    let (resource, callers) = match site.leaf {
        Some(leaf) => (leaf.to_string(), Some(first)),
        None => (first.to_string(), None),
    };
    let mut stack: Vec<String> = match site.frames {
        Some(frames) if !frames.is_empty() => {
            frames.iter().rev().map(|f| f.function.clone()).collect()
        }
        _ => {
            let mut callers: Vec<String> = callers
                .into_iter()
                .chain(parts)
                .map(|caller| caller.split("  [").next().unwrap_or(caller).to_string())
                .collect();
            callers.reverse();
            callers
        }
    };
    stack.push(resource);
    stack
}

/// A frame as the folded format allows it: no `;` (the separator), no line breaks.
fn clean(frame: &str) -> String {
    frame
        .replace(';', ":")
        .replace(['\n', '\r'], " ")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::synthetic::{clean_report, leaking};

    fn frame(function: &str) -> FrameJson {
        FrameJson {
            function: function.into(),
            file: None,
            line: None,
            module: None,
        }
    }

    #[test]
    fn a_leaking_site_folds_under_its_class_with_its_frames_outermost_first() {
        let mut report = clean_report("./app");
        report.classes.fd = leaking("/etc/hostname ← open_config (app.c:12) ← main", None);
        report.classes.fd.sites[0].frames = Some(vec![frame("open_config"), frame("main")]);
        report.classes.mmap = leaking(
            "anon 64 KiB rw- private ← grow ← main  [2 libc frames]",
            Some(65536),
        );
        let lines = folded_lines(&report);
        assert_eq!(
            lines,
            [
                "fd (count);main;open_config;/etc/hostname 99",
                "mmap (bytes);main;grow;anon 64 KiB rw- private 6488064",
            ]
        );
    }

    #[test]
    fn separators_in_names_cannot_break_a_line() {
        let mut report = clean_report("./app");
        report.classes.files = leaking("/tmp/a;b\nc", Some(10));
        let lines = folded_lines(&report);
        assert_eq!(lines, ["files (count);/tmp/a:b c 99"]);
    }

    #[test]
    fn nothing_retained_folds_to_nothing_and_still_draws_a_flamegraph() {
        let report = clean_report("./app");
        assert!(folded_lines(&report).is_empty());
        let svg = FlamegraphExporter.render(&report).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("nothing was retained"),
            "{svg}"
        );
    }

    #[test]
    fn each_class_gets_the_same_width_in_the_picture() {
        let lines = [
            "fd (count);main;/etc/a 99".to_string(),
            "mmap (bytes);main;f;anon 6000000".to_string(),
            "mmap (bytes);main;g;anon 2000000".to_string(),
        ];
        assert_eq!(
            per_class_shares(&lines),
            [
                "fd (count);main;/etc/a 1000000",
                "mmap (bytes);main;f;anon 750000",
                "mmap (bytes);main;g;anon 250000",
            ]
        );
    }

    #[test]
    fn the_flamegraph_names_the_leaking_function() {
        let mut report = clean_report("./app");
        report.classes.fd = leaking("/etc/hostname ← open_config ← main", None);
        let svg = String::from_utf8(FlamegraphExporter.render(&report).unwrap()).unwrap();
        assert!(svg.contains("open_config"), "{svg}");
        assert!(svg.contains("fd (count)"), "{svg}");
    }
}
