//! The loop that runs inside the traced child: R rounds of N extractions of the same archive
//! into the same directory, one marker call and one optional deliberate leak per iteration,
//! and one line of RSS / fds / mappings after every round, as in the original report.

use std::{
    io::{self, Cursor, Write},
    path::Path,
    time::{Duration, Instant},
};

use super::{
    ExtractError, InjectLeak, WorkerConfig, archive, disk_leaks::DiskLeaks,
    marker::leakscope_iteration_marker, proc_stats::ProcessStats,
};

/// What one round did and what the process looked like after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RoundStats {
    /// 1-based.
    pub(crate) round: u64,
    pub(crate) rounds: u64,
    pub(crate) iterations: u64,
    pub(crate) stats: ProcessStats,
    /// RSS change since the previous round (or since before the first round).
    pub(crate) rss_delta_bytes: i64,
    /// Wall time of the round's iterations, without the /proc reads.
    pub(crate) elapsed_ns: u64,
}

impl RoundStats {
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_ns)
    }
}

/// The whole run, for callers that want more than the printed lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct WorkerSummary {
    pub(crate) inject_leak: InjectLeak,
    /// Before the first iteration: the reference for round 1's delta.
    pub(crate) baseline: ProcessStats,
    pub(crate) rounds: Vec<RoundStats>,
    pub(crate) total_iterations: u64,
    /// Regular files checked against the archive after the last round.
    pub(crate) verified_files: usize,
}

/// Starts the line that carries every round as JSON (`--rounds-line`): the parent takes it
/// from the worker's stdout for its report and does not print it.
pub(crate) const ROUNDS_LINE_PREFIX: &str = "leakscope-rounds ";

/// The rounds as the one line `--rounds-line` prints.
pub(crate) fn rounds_line(summary: &WorkerSummary) -> String {
    let json = serde_json::to_string(&summary.rounds).unwrap_or_else(|_| "[]".into());
    format!("{ROUNDS_LINE_PREFIX}{json}")
}

/// The rounds from a line of the worker's stdout, when it is the rounds line.
pub(crate) fn parse_rounds_line(line: &str) -> Option<Vec<RoundStats>> {
    serde_json::from_str(line.strip_prefix(ROUNDS_LINE_PREFIX)?).ok()
}

/// Set (to anything) in the worker's environment, it prints [`loop_time_line`] on stderr
/// after the last round: `cargo xtask bench` compares that number, traced and untraced.
pub(crate) const LOOP_NS_ENV: &str = "LEAKSCOPE_LOOP_NS";

impl WorkerSummary {
    /// The iterations' own wall time, all rounds together: no /proc reads, no archive
    /// checks, no process start-up.
    pub(crate) fn loop_ns(&self) -> u64 {
        self.rounds.iter().map(|round| round.elapsed_ns).sum()
    }
}

/// `loop_ns=N`, as the bench's C fixtures print it.
pub(crate) fn loop_time_line(summary: &WorkerSummary) -> String {
    format!("loop_ns={}", summary.loop_ns())
}

/// Runs the workload and prints one line per round to stdout (flushed at once, so a parent
/// reading a pipe sees progress while the run goes on).
///
/// Call it on the worker process's main thread with no other threads running (no async
/// runtime, no thread pool): `--inject-leak heap` moves the break with `sbrk`, which must not
/// race a malloc on another thread, and the per-round fd and mapping counts are the whole
/// process's.
pub(crate) fn run_worker(config: &WorkerConfig) -> Result<WorkerSummary, ExtractError> {
    run_worker_to(config, &mut io::stdout().lock())
}

/// [`run_worker`] with the round lines written to `out` instead of stdout.
pub(crate) fn run_worker_to(
    config: &WorkerConfig,
    out: &mut dyn Write,
) -> Result<WorkerSummary, ExtractError> {
    if config.rounds == 0 || config.iterations == 0 {
        return Err(ExtractError::WorkerArgs(
            "--rounds and --iterations must be at least 1".to_owned(),
        ));
    }
    // Read and check everything before the first iteration, so the traced part of the run is
    // only the loop.
    let bytes = archive::read_archive_file(&config.archive_file)?;
    let expected = archive::expected_contents(&bytes, &config.archive_file.display().to_string())?;
    let total_iterations = config.rounds.saturating_mul(config.iterations);
    config.inject_leak.prepare(total_iterations)?;
    let disk_leaks = DiskLeaks::new(config.inject_leak).map_err(|source| ExtractError::Inject {
        kind: config.inject_leak,
        iteration: 0,
        source,
    })?;

    let baseline = ProcessStats::read()?;
    let mut previous = baseline;
    let mut rounds = Vec::with_capacity(usize::try_from(config.rounds).unwrap_or(0));
    for round in 1..=config.rounds {
        let first_iteration = (round - 1) * config.iterations;
        let started = Instant::now();
        for iteration in first_iteration..first_iteration + config.iterations {
            run_iteration(&bytes, config, &disk_leaks, iteration)?;
        }
        let elapsed = started.elapsed();

        let stats = ProcessStats::read()?;
        let round_stats = RoundStats {
            round,
            rounds: config.rounds,
            iterations: config.iterations,
            stats,
            rss_delta_bytes: stats.rss_bytes as i64 - previous.rss_bytes as i64,
            elapsed_ns: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        };
        writeln!(out, "{}", format_round_line(&round_stats))
            .and_then(|()| out.flush())
            .map_err(ExtractError::Output)?;
        previous = stats;
        rounds.push(round_stats);
    }

    expected.verify(&config.dir)?;
    Ok(WorkerSummary {
        inject_leak: config.inject_leak,
        baseline,
        rounds,
        total_iterations,
        verified_files: expected.files.len(),
    })
}

/// One iteration, in the order the tracer relies on: the marker first, so everything the
/// iteration acquires is attributed to it; then the extraction; then the deliberate leak.
fn run_iteration(
    bytes: &[u8],
    config: &WorkerConfig,
    disk_leaks: &DiskLeaks,
    iteration: u64,
) -> Result<(), ExtractError> {
    leakscope_iteration_marker(iteration);
    extract_archive_once(bytes, &config.dir).map_err(|source| ExtractError::Extract {
        dir: config.dir.clone(),
        iteration,
        source,
    })?;
    config
        .inject_leak
        .inject(disk_leaks, &config.dir, iteration)
}

/// The operation from the bug report. A separate, named frame, so stacks of whatever it leaks
/// point here. The tar crate overwrites existing files (unlink, then create).
#[inline(never)]
fn extract_archive_once(bytes: &[u8], dir: &Path) -> io::Result<()> {
    tar::Archive::new(Cursor::new(bytes)).unpack(dir)
}

/// `Round 3/20: RSS = 12.4 MiB (+0.1 MiB), fds = 4, mappings = 37, 10000 extractions in 412 ms`
pub(crate) fn format_round_line(round: &RoundStats) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!(
        "Round {}/{}: RSS = {:.1} MiB ({:+.1} MiB), fds = {}, mappings = {}, {} extractions in {} ms",
        round.round,
        round.rounds,
        round.stats.rss_bytes as f64 / MIB,
        round.rss_delta_bytes as f64 / MIB,
        round.stats.fds,
        round.stats.mappings,
        round.iterations,
        round.elapsed().as_millis(),
    )
}

#[cfg(test)]
mod tests {
    use std::{fs, path::PathBuf};

    use super::*;
    use crate::extract::{
        archive::{build_archive, default_entries},
        inject::{HEAP_LEAK_BYTES, INJECTED_FD_FILE_NAME, MMAP_LEAK_BYTES},
        marker, proc_stats, test_support,
    };

    /// A directory to extract into and an archive file, as the parent would set them up.
    fn setup(inject_leak: InjectLeak) -> (tempfile::TempDir, WorkerConfig) {
        let root = tempfile::tempdir().unwrap();
        let archive_file = root.path().join("archive.tar");
        fs::write(&archive_file, build_archive(&default_entries()).unwrap()).unwrap();
        let dir = root.path().join("extract");
        fs::create_dir(&dir).unwrap();
        let config = WorkerConfig {
            dir,
            archive_file,
            rounds: 2,
            iterations: 20,
            inject_leak,
        };
        (root, config)
    }

    /// What a forked child measured around one run of the worker.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Measured {
        lines: Vec<String>,
        round_fds: Vec<u64>,
        fds_before: u64,
        fds_after: u64,
        injected_fds: usize,
        anon_rw_before: u64,
        anon_rw_after: u64,
        rss_before: u64,
        rss_after: u64,
        brk_before: u64,
        brk_after: u64,
        marker_calls: u64,
        last_marked: u64,
        verified_files: usize,
    }

    /// Runs the worker in a forked child, where it is the only thread: nothing else opens fds,
    /// maps memory or moves brk meanwhile, so the differences are exactly the worker's.
    fn measure_in_child(config: &WorkerConfig) -> Measured {
        test_support::in_forked_child(|| {
            let err = |e: &dyn std::fmt::Display| e.to_string();
            let injected_path = config.dir.join(INJECTED_FD_FILE_NAME);
            let fds_before = proc_stats::open_fd_count().map_err(|e| err(&e))?;
            let anon_rw_before = anonymous_read_write_bytes();
            let rss_before = proc_stats::rss_bytes().map_err(|e| err(&e))?;
            let brk_before = current_break();
            let calls_before = marker::marker_calls();

            let mut out = Vec::new();
            let summary = run_worker_to(config, &mut out).map_err(|e| err(&e))?;

            Ok(Measured {
                lines: String::from_utf8(out)
                    .map_err(|e| err(&e))?
                    .lines()
                    .map(str::to_owned)
                    .collect(),
                round_fds: summary.rounds.iter().map(|r| r.stats.fds).collect(),
                fds_before,
                fds_after: proc_stats::open_fd_count().map_err(|e| err(&e))?,
                injected_fds: proc_stats::fds_pointing_at(&injected_path).map_err(|e| err(&e))?,
                anon_rw_before,
                anon_rw_after: anonymous_read_write_bytes(),
                rss_before,
                rss_after: proc_stats::rss_bytes().map_err(|e| err(&e))?,
                brk_before,
                brk_after: current_break(),
                marker_calls: marker::marker_calls() - calls_before,
                last_marked: marker::last_marked_iteration(),
                verified_files: summary.verified_files,
            })
        })
        .expect("the worker ran in the child")
    }

    fn anonymous_read_write_bytes() -> u64 {
        use procfs::process::{MMPermissions, Process};
        Process::myself()
            .unwrap()
            .maps()
            .unwrap()
            .iter()
            .filter(|r| {
                proc_stats::is_anonymous(r)
                    && r.perms.contains(MMPermissions::READ | MMPermissions::WRITE)
            })
            .map(|r| r.address.1 - r.address.0)
            .sum()
    }

    fn current_break() -> u64 {
        // SAFETY: sbrk(0) only reads the current break.
        unsafe { libc::sbrk(0) as u64 }
    }

    fn assert_common(measured: &Measured) {
        assert_eq!(measured.lines.len(), 2, "{:?}", measured.lines);
        for (index, line) in measured.lines.iter().enumerate() {
            let prefix = format!("Round {}/2: RSS = ", index + 1);
            assert!(line.starts_with(&prefix), "{line}");
            assert!(line.contains(" MiB ("), "{line}");
            assert!(line.contains(" MiB), fds = "), "{line}");
            assert!(line.contains(", mappings = "), "{line}");
            assert!(line.contains(", 20 extractions in "), "{line}");
            assert!(line.ends_with(" ms"), "{line}");
        }
        assert_eq!(measured.marker_calls, 40);
        assert_eq!(measured.last_marked, 39);
        assert_eq!(measured.verified_files, 2);
    }

    #[test]
    fn without_injection_nothing_is_kept() {
        let _serial = test_support::serial();
        let (_root, config) = setup(InjectLeak::None);
        let measured = measure_in_child(&config);
        assert_common(&measured);
        assert_eq!(measured.fds_after, measured.fds_before);
        assert_eq!(measured.injected_fds, 0);
        assert_eq!(measured.brk_after, measured.brk_before);
        assert_eq!(
            fs::read_to_string(config.dir.join("a.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            fs::read_to_string(config.dir.join("b.txt")).unwrap(),
            "world"
        );
    }

    #[test]
    fn fd_injection_keeps_exactly_one_fd_per_iteration() {
        let _serial = test_support::serial();
        let (_root, config) = setup(InjectLeak::Fd);
        let measured = measure_in_child(&config);
        assert_common(&measured);
        assert_eq!(measured.fds_after - measured.fds_before, 40);
        assert_eq!(measured.injected_fds, 40);
        assert_eq!(measured.round_fds[1] - measured.round_fds[0], 20);
    }

    #[test]
    fn mmap_injection_keeps_64_kib_per_iteration() {
        let _serial = test_support::serial();
        let (_root, config) = setup(InjectLeak::Mmap);
        let measured = measure_in_child(&config);
        assert_common(&measured);
        let leaked = 40 * MMAP_LEAK_BYTES as u64;
        let grown = measured.anon_rw_after - measured.anon_rw_before;
        // The worker's own allocations may add a little; the leak is a lower bound.
        assert!(
            (leaked..leaked + (1 << 20)).contains(&grown),
            "anonymous rw bytes grew by {grown}"
        );
        // One touched page per mapping.
        assert!(measured.rss_after - measured.rss_before >= 40 * 4096);
        assert_eq!(measured.fds_after, measured.fds_before);
        assert_eq!(measured.brk_after, measured.brk_before);
    }

    #[test]
    fn heap_injection_grows_brk_by_4096_per_iteration() {
        let _serial = test_support::serial();
        let (_root, config) = setup(InjectLeak::Heap);
        let measured = measure_in_child(&config);
        assert_common(&measured);
        // The test thread's malloc uses its own mmap'ed arena, so brk moves only by the leak.
        assert_eq!(
            measured.brk_after - measured.brk_before,
            40 * HEAP_LEAK_BYTES as u64
        );
        assert!(measured.rss_after - measured.rss_before >= 40 * 4096);
        assert_eq!(measured.fds_after, measured.fds_before);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let (root, mut config) = setup(InjectLeak::None);
        // A path below a regular file can never be a directory, even for root.
        let file = root.path().join("not-a-directory");
        fs::write(&file, "").unwrap();
        config.dir = file.join("extract");
        let err = run_worker_to(&config, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, ExtractError::Extract { iteration: 0, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("not-a-directory"), "{err}");
        assert_eq!(err.exit_status(), crate::exit_code::FAILURE);
    }

    #[test]
    fn a_corrupt_archive_file_is_an_error_before_the_loop() {
        let (_root, config) = setup(InjectLeak::None);
        fs::write(&config.archive_file, vec![0xffu8; 2048]).unwrap();
        let mut out = Vec::new();
        let err = run_worker_to(&config, &mut out).unwrap_err();
        assert!(
            matches!(err, ExtractError::InvalidArchive { .. }),
            "{err:?}"
        );
        assert!(out.is_empty());
        assert!(!config.dir.join("a.txt").exists());
    }

    #[test]
    fn files_changed_behind_the_workers_back_fail_verification() {
        let (_root, config) = setup(InjectLeak::None);
        let expected =
            archive::expected_contents(&fs::read(&config.archive_file).unwrap(), "archive.tar")
                .unwrap();
        extract_archive_once(&fs::read(&config.archive_file).unwrap(), &config.dir).unwrap();
        fs::write(config.dir.join("b.txt"), "WORLD").unwrap();
        let err = expected.verify(&config.dir).unwrap_err();
        assert!(err.to_string().contains("b.txt"), "{err}");
    }

    #[test]
    fn zero_rounds_are_refused() {
        let (_root, mut config) = setup(InjectLeak::None);
        config.rounds = 0;
        assert!(matches!(
            run_worker_to(&config, &mut Vec::new()),
            Err(ExtractError::WorkerArgs(_))
        ));
        config.archive_file = PathBuf::from("/nonexistent/archive.tar");
        config.rounds = 1;
        assert!(matches!(
            run_worker_to(&config, &mut Vec::new()),
            Err(ExtractError::ReadArchive { .. })
        ));
    }

    #[test]
    fn the_loop_time_is_the_rounds_own_time() {
        let (_root, config) = setup(InjectLeak::None);
        let summary = run_worker_to(&config, &mut Vec::new()).unwrap();
        let rounds: u64 = summary.rounds.iter().map(|r| r.elapsed_ns).sum();
        assert!(rounds > 0);
        assert_eq!(summary.loop_ns(), rounds);
        assert_eq!(loop_time_line(&summary), format!("loop_ns={rounds}"));
    }

    #[test]
    fn the_round_line_has_the_reports_shape() {
        let round = RoundStats {
            round: 3,
            rounds: 20,
            iterations: 10_000,
            stats: ProcessStats {
                rss_bytes: (12.4 * 1024.0 * 1024.0) as u64,
                fds: 4,
                mappings: 37,
            },
            rss_delta_bytes: 104_858,
            elapsed_ns: 412_300_000,
        };
        assert_eq!(
            format_round_line(&round),
            "Round 3/20: RSS = 12.4 MiB (+0.1 MiB), fds = 4, mappings = 37, 10000 extractions in 412 ms"
        );
        let shrinking = RoundStats {
            rss_delta_bytes: -3 * 1024 * 1024,
            ..round
        };
        assert!(format_round_line(&shrinking).contains("(-3.0 MiB)"));
    }
}
