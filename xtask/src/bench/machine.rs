//! What else was going on on the machine: its load, and other tracers. Any process on the
//! system pays for every eBPF program attached to `sys_exit` (another leakscope, a bpftrace),
//! untraced or not, so a foreign tracer running during a pair makes its ratio noise. The
//! bench counts those pairs and says so under the tables.

use std::collections::BTreeSet;

/// Programs whose presence makes a measurement noisy, by their exact `comm`.
const TRACERS: [&str; 5] = ["leakscope", "bpftrace", "strace", "perf", "valgrind"];

/// `/proc/loadavg`'s three averages, e.g. `2.27 2.06 2.11`.
pub(crate) fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The names of tracer processes running now. The bench waits for each run it starts, so
/// between runs none of them is its own.
pub(crate) fn foreign_tracers() -> BTreeSet<String> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.bytes().all(|b| b.is_ascii_digit()) && name != me
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("comm")).ok())
        .map(|comm| comm.trim().to_owned())
        .filter(|comm| is_tracer(comm))
        .collect()
}

fn is_tracer(comm: &str) -> bool {
    // valgrind runs as its tool, e.g. "memcheck-amd64-".
    TRACERS.contains(&comm) || comm.starts_with("memcheck-")
}

/// Pairs run, and those that started while a foreign tracer ran.
#[derive(Debug, Default)]
pub(crate) struct Noise {
    pub(crate) pairs: usize,
    pub(crate) disturbed: usize,
    pub(crate) tracers: BTreeSet<String>,
}

impl Noise {
    /// Called before each pair.
    pub(crate) fn look(&mut self) {
        self.pairs += 1;
        let found = foreign_tracers();
        if !found.is_empty() {
            self.disturbed += 1;
            self.tracers.extend(found);
        }
    }

    pub(crate) fn line(&self, load_before: Option<&str>, load_after: Option<&str>) -> String {
        let tracers = if self.disturbed == 0 {
            "no other tracer seen".to_owned()
        } else {
            format!(
                "another tracer ({}) was running at the start of {} of {} pairs",
                self.tracers.iter().cloned().collect::<Vec<_>>().join(", "),
                self.disturbed,
                self.pairs
            )
        };
        format!(
            "machine: {} CPUs, load average {} before, {} after; {tracers}",
            std::thread::available_parallelism().map_or(0, usize::from),
            load_before.unwrap_or("?"),
            load_after.unwrap_or("?"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracers_are_known_by_their_names() {
        assert!(is_tracer("leakscope"));
        assert!(is_tracer("memcheck-amd64-"));
        assert!(is_tracer("perf"));
        assert!(!is_tracer("cargo"));
        // A test harness named after the project traces nothing itself.
        assert!(!is_tracer("leakscope-2ec53"));
        assert!(!is_tracer("bash"));
    }

    #[test]
    fn the_noise_line_counts_disturbed_pairs() {
        let quiet = Noise {
            pairs: 4,
            ..Noise::default()
        };
        assert!(
            quiet
                .line(Some("0.1 0.2 0.3"), None)
                .contains("load average 0.1 0.2 0.3 before, ? after; no other tracer seen")
        );
        let noisy = Noise {
            pairs: 4,
            disturbed: 1,
            tracers: ["leakscope".to_owned()].into(),
        };
        assert!(
            noisy
                .line(None, None)
                .ends_with("another tracer (leakscope) was running at the start of 1 of 4 pairs")
        );
    }

    #[test]
    fn this_machine_has_a_load_average() {
        let load = load_average().unwrap();
        assert_eq!(load.split(' ').count(), 3, "{load}");
    }
}
