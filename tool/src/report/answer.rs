//! The report's first line: the answer to "which resource leaks?", in words, with the
//! evidence that matters (rate and where), or how small a leak the run could have seen.

use super::model::{LimitHitReport, Report, ResourceReport};
use super::sites::SiteReport;
use super::text::none_created;
use crate::{analysis::trend::Verdict, iterations::IterationSource, units};

/// One class as the answer speaks of it.
struct Spoken<'a> {
    /// "fds", "mappings", ...
    name: &'static str,
    /// "fd", "mapping", ... as in "no fd leak".
    adjective: &'static str,
    verdict: Verdict,
    why: &'a str,
    /// "1 per 18,000 iterations", "7.5 B/iteration".
    limit: Option<String>,
    /// The target made none (files and watches): nothing to put a limit on.
    none_created: bool,
}

impl Report {
    /// E.g. "fd leak: 1.00 per iteration, all at /data/x.txt (kept by dup)", or
    /// "no leak in 200000 iterations: fds, mappings, brk heap and RSS stay flat; ...".
    pub(crate) fn answer(&self) -> String {
        if let Some(held) = &self.held_at_exit {
            return format!(
                "inconclusive: {}; pid {} held {} {}{}",
                self.classes.fd.why,
                held.pid,
                held.summary(),
                if held.exited {
                    "at exit"
                } else {
                    "when tracing stopped"
                },
                self.marker_hint(false)
            );
        }
        let leaks = self.leaks();
        if !leaks.is_empty() {
            return leaks.join("; ");
        }
        let classes = self.spoken();
        let flat: Vec<&Spoken> = classes
            .iter()
            .filter(|c| c.verdict == Verdict::NoLeak && !c.none_created)
            .collect();
        let none: Vec<&Spoken> = classes
            .iter()
            .filter(|c| c.verdict == Verdict::NoLeak && c.none_created)
            .collect();
        let bounded: Vec<&Spoken> = classes
            .iter()
            .filter(|c| c.verdict == Verdict::Plateau)
            .collect();
        let open: Vec<&Spoken> = classes
            .iter()
            .filter(|c| c.verdict == Verdict::Inconclusive)
            .collect();

        let mut parts = Vec::new();
        if !bounded.is_empty() {
            parts.push(format!(
                "{} grew, then stopped (bounded)",
                join(&bounded.iter().map(|c| c.name).collect::<Vec<_>>())
            ));
        }
        if !flat.is_empty() {
            let limits: Vec<String> = flat
                .iter()
                .filter_map(|c| c.limit.as_ref().map(|l| format!("{} from {l}", c.name)))
                .collect();
            parts.push(format!(
                "{} stay flat; it would have seen a leak of {}",
                join(&flat.iter().map(|c| c.name).collect::<Vec<_>>()),
                join(&limits.iter().map(String::as_str).collect::<Vec<_>>())
            ));
        }
        if !none.is_empty() {
            parts.push(format!(
                "no {} created",
                join_or(&none.iter().map(|c| c.name).collect::<Vec<_>>())
            ));
        }
        // Classes inconclusive for the same reason (lost events, usually) are named together.
        let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
        for class in &open {
            match reasons.iter_mut().find(|(reason, _)| *reason == class.why) {
                Some((_, names)) => names.push(class.name),
                None => reasons.push((class.why, vec![class.name])),
            }
        }
        for (why, names) in reasons {
            parts.push(format!("{} inconclusive ({why})", join(&names)));
        }

        let judged: Vec<&str> = classes
            .iter()
            .filter(|c| c.verdict != Verdict::Inconclusive)
            .map(|c| c.adjective)
            .collect();
        // "no files or watches created" says it already: the head names what was measured.
        let measured: Vec<&str> = classes
            .iter()
            .filter(|c| c.verdict != Verdict::Inconclusive && !c.none_created)
            .map(|c| c.adjective)
            .collect();
        let named = if measured.is_empty() {
            &judged
        } else {
            &measured
        };
        let count = units::grouped(self.iterations.count as u64);
        let head = if judged.is_empty() {
            format!("inconclusive in {count} iterations")
        } else if open.is_empty() {
            format!("no leak in {count} iterations")
        } else {
            format!("no {} leak in {count} iterations", join_or(named))
        };
        let hint = self.marker_hint(!judged.is_empty());
        // No convincing loop made every class inconclusive (short time windows may add
        // their own reason): say so once. Lost events are named as they always are.
        if let Some(reason) = &self.iterations.unconvincing
            && judged.is_empty()
            && self.lost_events == 0
        {
            return format!("inconclusive: {reason}{hint}");
        }
        format!("{head}: {}{hint}", parts.join("; "))
    }

    /// When nothing could be judged: the recurring paths that came closest, ready to paste
    /// as markers, or how to mark the loop when none recurred.
    fn marker_hint(&self, judged: bool) -> String {
        let candidates = &self.iterations.candidates;
        if judged {
            String::new()
        } else if !candidates.is_empty() {
            let tries: Vec<String> = candidates
                .iter()
                .map(|c| {
                    format!(
                        "--iteration-path {} ({} opens)",
                        shell_quote(&c.path),
                        c.count
                    )
                })
                .collect();
            format!("; try {}", tries.join(" or "))
        } else if self.iterations.source == IterationSource::Time {
            "; mark the repeated operation with --iteration-symbol or --iteration-path".into()
        } else {
            String::new()
        }
    }

    fn leaks(&self) -> Vec<String> {
        let classes = &self.classes;
        let mut leaks = Vec::new();
        if classes.fd.verdict == Verdict::Leak {
            leaks.push(format!(
                "fd leak: {}{}{}",
                units::per_iteration(units::count_rate(classes.fd.leaked_per_iteration)),
                top_site(&classes.fd, false),
                limit_text(classes.fd.limit_hit.as_ref(), self.target.fd_limit)
            ));
        }
        if classes.mmap.verdict == Verdict::Leak {
            let bytes = classes.mmap.bytes_leaked_per_iteration.unwrap_or(0.0);
            let mappings = classes.mmap.leaked_per_iteration;
            // A mapping grown by mremap leaks bytes while the count stays flat: lead with
            // what actually grows.
            let count = if classes.mmap.count_verdict == Verdict::Leak {
                let rate = units::count_rate(mappings);
                match rate.strip_prefix("1 per ") {
                    Some(every) => format!("1 mapping per {every} and "),
                    None => format!("{rate} mappings and "),
                }
            } else {
                String::new()
            };
            leaks.push(format!(
                "mapping leak: {count}{}{}{}",
                units::per_iteration(units::bytes_rate(bytes)),
                top_site(&classes.mmap, classes.mmap.count_verdict != Verdict::Leak),
                limit_text(classes.mmap.limit_hit.as_ref(), None)
            ));
        }
        if classes.brk.verdict == Verdict::Leak {
            let site = classes
                .brk
                .sites
                .first()
                .map_or(String::new(), |s| format!(", grown at {}", s.site));
            leaks.push(format!(
                "brk heap leak: {}{site}{}",
                units::per_iteration(units::bytes_rate(classes.brk.bytes_per_iteration)),
                limit_text(classes.brk.limit_hit.as_ref(), None)
            ));
        }
        if let Some(heap) = classes.heap.as_ref().filter(|h| h.verdict == Verdict::Leak) {
            let site = heap
                .sites
                .first()
                .map_or(String::new(), |s| format!(", allocated in {}", s.site));
            leaks.push(format!(
                "heap leak: {}{site}",
                units::per_iteration(units::bytes_rate(heap.bytes_per_iteration)),
            ));
        }
        for (name, class) in [("files", &classes.files), ("watches", &classes.watches)] {
            if class.verdict == Verdict::Leak {
                // Files leak bytes on disk too; watches are counted only.
                let bytes = class
                    .bytes_leaked_per_iteration
                    .filter(|&b| b > 0.0)
                    .map_or(String::new(), |b| format!(" ({})", units::bytes_rate(b)));
                leaks.push(format!(
                    "{name} leak: {}{bytes}{}{}",
                    units::per_iteration(units::count_rate(class.leaked_per_iteration)),
                    top_site(class, class.count_verdict != Verdict::Leak),
                    limit_text(class.limit_hit.as_ref(), None)
                ));
            }
        }
        if classes.rss.verdict == Verdict::Leak {
            leaks.push(format!(
                "resident memory leak: {} that no fd, mapping or brk change explains \
                 (growth inside an allocator's existing memory)",
                units::per_iteration(units::bytes_rate(
                    classes.rss.unexplained_bytes_per_iteration
                ))
            ));
        }
        leaks
    }

    fn spoken(&self) -> Vec<Spoken<'_>> {
        let c = &self.classes;
        let count_limit =
            |class: &ResourceReport| class.detection_limit_per_iteration.map(units::count_rate);
        let bytes_limit =
            |limit: Option<f64>| limit.map(|l| units::per_iteration(units::bytes_rate(l)));
        let mmap_limit = match (
            count_limit(&c.mmap),
            bytes_limit(c.mmap.detection_limit_bytes_per_iteration),
        ) {
            (Some(count), Some(bytes)) => Some(format!("{} or {bytes}", per_iteration(&count))),
            (count, bytes) => count.map(|c| per_iteration(&c)).or(bytes),
        };
        let mut spoken = vec![
            Spoken {
                name: "fds",
                adjective: "fd",
                verdict: c.fd.verdict,
                why: &c.fd.why,
                limit: count_limit(&c.fd).map(|l| per_iteration(&l)),
                none_created: false,
            },
            Spoken {
                name: "mappings",
                adjective: "mapping",
                verdict: c.mmap.verdict,
                why: &c.mmap.why,
                limit: mmap_limit,
                none_created: false,
            },
            Spoken {
                name: "brk heap",
                adjective: "brk heap",
                verdict: c.brk.verdict,
                why: &c.brk.why,
                limit: bytes_limit(c.brk.detection_limit_bytes_per_iteration),
                none_created: false,
            },
            Spoken {
                name: "RSS",
                adjective: "RSS",
                verdict: c.rss.verdict,
                why: &c.rss.why,
                limit: bytes_limit(c.rss.detection_limit_bytes_per_iteration),
                none_created: false,
            },
            Spoken {
                name: "files",
                adjective: "file",
                verdict: c.files.verdict,
                why: &c.files.why,
                limit: count_limit(&c.files).map(|l| per_iteration(&l)),
                none_created: none_created(&c.files),
            },
            Spoken {
                name: "watches",
                adjective: "watch",
                verdict: c.watches.verdict,
                why: &c.watches.why,
                limit: count_limit(&c.watches).map(|l| per_iteration(&l)),
                none_created: none_created(&c.watches),
            },
        ];
        if let Some(heap) = &c.heap {
            spoken.push(Spoken {
                name: "heap allocations",
                adjective: "heap",
                verdict: heap.verdict,
                why: &heap.why,
                limit: bytes_limit(heap.detection_limit_bytes_per_iteration),
                none_created: false,
            });
        }
        spoken
    }
}

fn per_iteration(rate: &str) -> String {
    units::per_iteration(rate.to_string())
}

/// "; it hit EMFILE at iteration 251 (RLIMIT_NOFILE 256), and 1,749 calls failed after it".
fn limit_text(hit: Option<&LimitHitReport>, fd_limit: Option<u64>) -> String {
    let Some(hit) = hit else {
        return String::new();
    };
    let rlimit = match fd_limit {
        Some(limit) if hit.errno == "EMFILE" => format!(" (RLIMIT_NOFILE {limit})"),
        _ => String::new(),
    };
    format!(
        "; it hit {} at iteration {}{rlimit}, and {} calls failed after it",
        hit.errno,
        units::grouped(hit.iteration as u64),
        units::grouped(hit.failures)
    )
}

/// `path` in double quotes, so that it can be pasted into a shell as one word.
pub(crate) fn shell_quote(path: &str) -> String {
    let mut quoted = String::with_capacity(path.len() + 2);
    quoted.push('"');
    for c in path.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// ", all at SITE" when one site holds (nearly) the whole leak, ", most at SITE" when it
/// holds more than half, ", largest share at SITE" otherwise. The share is of what all the
/// class's sites retain per iteration, in the same measure: the class's own rate comes from
/// its judged window, a site's from its total, so the two do not compare. `by_bytes`
/// compares bytes (a mapping that grows, a file that is written) instead of counts.
pub(super) fn top_site(class: &ResourceReport, by_bytes: bool) -> String {
    let measure = |site: &SiteReport| {
        if by_bytes {
            site.bytes_leaked_per_iteration.unwrap_or(0.0)
        } else {
            site.leaked_per_iteration
        }
        .max(0.0)
    };
    let Some(site) = class
        .sites
        .iter()
        .max_by(|a, b| measure(a).total_cmp(&measure(b)))
    else {
        return String::new();
    };
    let all: f64 = class.sites.iter().map(measure).sum();
    if all <= 0.0 {
        // No site retains anything in this measure: none to name.
        return String::new();
    }
    let top = measure(site);
    let share = if top >= all * 0.95 {
        "all"
    } else if top > all * 0.5 {
        "most"
    } else {
        "largest share"
    };
    format!(", {share} at {}", site.site)
}

fn join(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn join_or(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
