//! The other tools the bench runs on the same workloads, each on a count small enough for
//! its speed, each timed by the workload's own `loop_ns` like leakscope. A peer that cannot
//! be installed or does not run on this kernel becomes a table row saying why.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Once,
};

use crate::{
    bench::measure,
    shell::{output, step},
};

/// The bpftrace peer's script, written next to the bench's other files at run time.
pub(crate) const PAIR_FDS_BT: &str = include_str!("pair_fds.bt");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Strace,
    PerfTrace,
    Bpftrace,
    Valgrind,
}

pub(crate) struct Peer {
    tool: Tool,
    /// The table's setup column.
    pub(crate) label: &'static str,
    /// The program on PATH, and the Debian package that brings it.
    program: &'static str,
    package: &'static str,
    /// The peer runs 1/divisor of the workload's iterations: strace's ~90x on the storm
    /// would otherwise take minutes per run.
    divisor: u64,
    /// Where the peer's own output goes (it is not read; bpftrace's and perf's are kept
    /// to look at).
    workdir: PathBuf,
}

/// Every peer, in the table's order.
pub(crate) fn all(workdir: &Path) -> Vec<Peer> {
    let peer = |tool, label, program, package, divisor| Peer {
        tool,
        label,
        program,
        package,
        divisor,
        workdir: workdir.to_owned(),
    };
    vec![
        peer(Tool::Strace, "strace -f", "strace", "strace", 50),
        peer(Tool::PerfTrace, "perf trace -s", "perf", "linux-perf", 10),
        peer(
            Tool::Bpftrace,
            "bpftrace pair_fds.bt",
            "bpftrace",
            "bpftrace",
            1,
        ),
        peer(
            Tool::Valgrind,
            "valgrind --track-fds=yes",
            "valgrind",
            "valgrind",
            100,
        ),
    ]
}

impl Peer {
    /// The reduced count for a workload of `full` iterations.
    pub(crate) fn iterations(&self, full: u64) -> u64 {
        (full / self.divisor).max(100).min(full)
    }

    /// Installs the peer if it is missing and checks that it runs here on `true`.
    /// (`bootstrap::ensure_fixture_tools` installs the test tools the same way, but a
    /// missing peer is only a table row, never a failed bench.)
    /// The error is the reason shown in the table instead of numbers.
    pub(crate) fn prepare(&self) -> Result<(), String> {
        if self.tool == Tool::Bpftrace {
            std::fs::write(self.workdir.join("pair_fds.bt"), PAIR_FDS_BT)
                .map_err(|e| format!("cannot write its script: {e}"))?;
        }
        if output("which", &[self.program]).is_none() {
            install(self.package)?;
        }
        // An absolute path: bpftrace refuses a bare name that PATH finds twice (/bin, /usr/bin).
        let truth = output("which", &["true"]).unwrap_or_else(|| "/bin/true".into());
        measure::run_quietly(&mut self.wrap(&Command::new(truth.trim())))
            .map_err(|e| format!("does not run here: {e:#}"))
    }

    /// `plain` run under the peer, with the same arguments and environment.
    pub(crate) fn wrap(&self, plain: &Command) -> Command {
        let mut argv: Vec<String> = vec![plain.get_program().to_string_lossy().into_owned()];
        argv.extend(plain.get_args().map(|a| a.to_string_lossy().into_owned()));
        let mut command = Command::new(self.program);
        match self.tool {
            Tool::Strace => {
                command.args(["-f", "-qq", "-o", "/dev/null"]).args(&argv);
            }
            Tool::PerfTrace => {
                command
                    .args(["trace", "-s", "-o"])
                    .arg(self.workdir.join("perf-trace.txt"))
                    .arg("--")
                    .args(&argv);
            }
            Tool::Bpftrace => {
                // bpftrace splits -c on spaces itself (no shell): the bench's paths have none.
                command
                    .args(["-q", "-o"])
                    .arg(self.workdir.join("bpftrace.txt"))
                    .arg(self.workdir.join("pair_fds.bt"))
                    .args(["-c", &argv.join(" ")]);
            }
            Tool::Valgrind => {
                command
                    .args([
                        "-q",
                        "--track-fds=yes",
                        "--trace-children=yes",
                        "--log-file=/dev/null",
                    ])
                    .args(&argv);
            }
        }
        for (key, value) in plain.get_envs() {
            if let Some(value) = value {
                command.env(key, value);
            }
        }
        command
    }
}

impl Peer {
    /// A failed run's message, with what is known about it: valgrind cannot run Rust code
    /// whose rustix reads the vDSO (rustix issue 1559): leakscope's extract worker dies
    /// with SIGSEGV in `check_elf_base` under it.
    pub(crate) fn explain(&self, error: String) -> String {
        if self.tool == Tool::Valgrind && error.contains("SIGSEGV") {
            format!("{error} (rustix's vDSO lookup crashes under valgrind: rustix issue 1559)")
        } else {
            error
        }
    }
}

/// `apt-get install PACKAGE`, after one `apt-get update` per bench run.
pub(crate) fn install(package: &str) -> Result<(), String> {
    static UPDATED: Once = Once::new();
    UPDATED.call_once(|| {
        let _ = measure::run_quietly(Command::new("apt-get").args(["update", "-qq"]));
    });
    step(&format!("installing {package} (a peer of the bench)"));
    measure::run_quietly(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .map_err(|e| format!("cannot be installed (apt-get install {package}: {e:#})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(command: &Command) -> Vec<String> {
        std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn each_peer_runs_the_same_command_with_its_environment() {
        let mut plain = Command::new("/bench/open_close");
        plain
            .args(["1000", "/bench/bench.txt"])
            .env("LEAKSCOPE_LOOP_NS", "1");
        for peer in all(Path::new("/bench")) {
            let wrapped = peer.wrap(&plain);
            let words = argv(&wrapped);
            assert_eq!(words[0], peer.program);
            let joined = words.join(" ");
            assert!(
                joined.contains("/bench/open_close 1000 /bench/bench.txt"),
                "{}: {joined}",
                peer.label
            );
            assert!(
                wrapped
                    .get_envs()
                    .any(|(k, v)| k == "LEAKSCOPE_LOOP_NS" && v.is_some()),
                "{}",
                peer.label
            );
        }
    }

    #[test]
    fn reduced_counts_stay_within_the_workload() {
        let peers = all(Path::new("/bench"));
        let strace = &peers[0];
        assert_eq!(strace.iterations(1_000_000), 20_000);
        assert_eq!(strace.iterations(1_000), 100);
        assert_eq!(strace.iterations(50), 50);
        assert_eq!(peers[2].iterations(1_000_000), 1_000_000);
    }
}
