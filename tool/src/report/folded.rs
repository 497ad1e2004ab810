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
        let lines: Vec<String> = per_class_shares(folded_stacks(report))
            .iter()
            .map(Folded::line)
            .collect();
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

/// `stacks` with each class's widths rescaled to sum to a million.
fn per_class_shares(mut stacks: Vec<Folded>) -> Vec<Folded> {
    const WHOLE: f64 = 1_000_000.0;
    let mut totals: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for folded in &stacks {
        *totals.entry(folded.class).or_default() += folded.width;
    }
    let shares: Vec<u64> = stacks
        .iter()
        .map(|f| {
            let share = f.width as f64 / totals[f.class].max(1) as f64;
            ((share * WHOLE).round() as u64).max(1)
        })
        .collect();
    for (folded, share) in stacks.iter_mut().zip(shares) {
        folded.width = share;
    }
    stacks
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

/// One retained site, folded: its class root, the whole stack (`;`-joined, the root
/// first) and its width.
#[derive(Debug, PartialEq)]
struct Folded {
    class: &'static str,
    stack: String,
    width: u64,
}

impl Folded {
    /// The site as a line of the folded format.
    fn line(&self) -> String {
        format!("{} {}", self.stack, self.width)
    }
}

/// Every class's retained sites as folded lines.
pub(crate) fn folded_lines(report: &Report) -> Vec<String> {
    folded_stacks(report).iter().map(Folded::line).collect()
}

/// Every class's retained sites, most retained first within a class.
fn folded_stacks(report: &Report) -> Vec<Folded> {
    let c = &report.classes;
    let mut classes: Vec<(&'static str, Vec<Retained>)> = vec![
        ("fd (count)", resource_sites(&c.fd.sites, false)),
        ("mmap (bytes)", resource_sites(&c.mmap.sites, true)),
        (
            "brk (bytes)",
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
        ("files (count)", resource_sites(&c.files.sites, false)),
        ("watches (count)", resource_sites(&c.watches.sites, false)),
    ];
    if let Some(heap) = &c.heap {
        classes.push((
            "heap (bytes)",
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
    let mut folded = Vec::new();
    for (class, mut sites) in classes {
        sites.retain(|s| s.width > 0);
        sites.sort_by_key(|s| std::cmp::Reverse(s.width));
        for site in sites {
            let frames = std::iter::once(class.to_string()).chain(stack_of(&site));
            let stack: Vec<String> = frames.map(|f| clean(&f)).collect();
            folded.push(Folded {
                class,
                stack: stack.join(";"),
                width: site.width,
            });
        }
    }
    folded
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
        let folded = |class, stack: &str, width| Folded {
            class,
            stack: format!("{class};{stack}"),
            width,
        };
        let stacks = vec![
            folded("fd (count)", "main;/etc/a", 99),
            folded("mmap (bytes)", "main;f;anon", 6_000_000),
            folded("mmap (bytes)", "main;g;anon", 2_000_000),
        ];
        let lines: Vec<String> = per_class_shares(stacks).iter().map(Folded::line).collect();
        assert_eq!(
            lines,
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
