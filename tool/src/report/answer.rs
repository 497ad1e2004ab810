//! The report's first line: the answer to "which resource leaks?", in words, with the
//! evidence that matters (rate and where), or why nothing does.

use super::model::{Report, ResourceReport};
use crate::{analysis::trend::Verdict, iterations::IterationSource, units};

impl Report {
    /// E.g. "fd leak: 1.00 per iteration, all at /data/x.txt (kept by dup)", or
    /// "no leak in 200000 iterations: fds, mappings, brk heap and RSS stay flat".
    pub fn answer(&self) -> String {
        let classes = &self.classes;
        let mut leaks = Vec::new();
        if classes.fd.verdict == Verdict::Leak {
            leaks.push(format!(
                "fd leak: {:.2} per iteration{}",
                classes.fd.leaked_per_iteration,
                top_site(&classes.fd)
            ));
        }
        if classes.mmap.verdict == Verdict::Leak {
            let bytes = classes.mmap.bytes_leaked_per_iteration.unwrap_or(0.0);
            leaks.push(format!(
                "mapping leak: {:.2} per iteration ({}/iteration){}",
                classes.mmap.leaked_per_iteration,
                units::bytes(bytes),
                top_site(&classes.mmap)
            ));
        }
        if classes.brk.verdict == Verdict::Leak {
            let site = classes
                .brk
                .sites
                .first()
                .map_or(String::new(), |s| format!(", grown at {}", s.site));
            leaks.push(format!(
                "brk heap leak: {}/iteration{site}",
                units::bytes(classes.brk.bytes_per_iteration)
            ));
        }
        if classes.rss.verdict == Verdict::Leak {
            leaks.push(format!(
                "resident memory leak: {}/iteration that no fd, mapping or brk change explains \
                 (growth inside an allocator's existing memory)",
                units::bytes(classes.rss.unexplained_bytes_per_iteration)
            ));
        }
        if !leaks.is_empty() {
            return leaks.join("; ");
        }

        let verdicts = [
            ("fds", classes.fd.verdict, classes.fd.why.as_str()),
            ("mappings", classes.mmap.verdict, classes.mmap.why.as_str()),
            ("brk heap", classes.brk.verdict, classes.brk.why.as_str()),
            ("RSS", classes.rss.verdict, classes.rss.why.as_str()),
        ];
        let named = |wanted: Verdict| -> Vec<&str> {
            verdicts
                .iter()
                .filter(|(_, v, _)| *v == wanted)
                .map(|(name, _, _)| *name)
                .collect()
        };
        let mut parts = Vec::new();
        let bounded = named(Verdict::Plateau);
        if !bounded.is_empty() {
            parts.push(format!("{} grew, then stopped (bounded)", join(&bounded)));
        }
        let flat = named(Verdict::NoLeak);
        if !flat.is_empty() {
            parts.push(format!("{} stay flat", join(&flat)));
        }
        // Classes inconclusive for the same reason (lost events, usually) are named together.
        let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, _, why) in verdicts
            .iter()
            .filter(|(_, v, _)| *v == Verdict::Inconclusive)
        {
            match reasons.iter_mut().find(|(reason, _)| reason == why) {
                Some((_, names)) => names.push(name),
                None => reasons.push((why, vec![name])),
            }
        }
        for (why, names) in reasons {
            parts.push(format!("{} inconclusive ({why})", join(&names)));
        }
        let judged = verdicts.iter().any(|(_, v, _)| *v != Verdict::Inconclusive);
        let head = if judged { "no leak" } else { "inconclusive" };
        let candidates = &self.iterations.candidates;
        // Time windows are the fallback when no loop was found: say how to mark one, with
        // the recurring paths that came closest, ready to paste.
        let hint = if judged {
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
        };
        // No convincing loop made every class inconclusive (short time windows may add
        // their own reason): say so once. Lost events are named as they always are.
        if let Some(reason) = &self.iterations.unconvincing
            && !judged
            && self.lost_events == 0
        {
            return format!("inconclusive: {reason}{hint}");
        }
        format!(
            "{head} in {} iterations: {}{hint}",
            self.iterations.count,
            parts.join("; ")
        )
    }
}

/// `path` in double quotes, so that it can be pasted into a shell as one word.
pub fn shell_quote(path: &str) -> String {
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

/// ", all at SITE" when one site holds (nearly) the whole leak, ", most at SITE" otherwise.
fn top_site(class: &ResourceReport) -> String {
    let Some(site) = class.sites.first() else {
        return String::new();
    };
    let share = if site.leaked_per_iteration >= class.leaked_per_iteration * 0.95 {
        "all"
    } else {
        "most"
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
