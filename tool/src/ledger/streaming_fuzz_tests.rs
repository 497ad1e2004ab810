//! Folding against the full ledger on random streams: several processes that fork, exec
//! and exit, markers from several of them, equal timestamps and 50 ms gaps, fds, dup,
//! mappings (partial unmaps, mremap with DONTUNMAP), files renamed and removed, watches,
//! failures of every class, resident samples, file sizes sampled and read at the end,
//! seeded fds and mappings; with marker and path boundaries, folding every few events,
//! compared at the end and on copies taken mid-run (as watch mode does). Plus the two
//! cases a review found: a release stamped before its birth, and byte totals past 2^53.

use super::BoundarySource;
use super::tests::{assert_same, difference, judged};
use crate::analysis::{self, RunFacts};
use crate::event::{Event, FailedCall, What};
use crate::iterations::{IterationRequest, detect};
use crate::ledger::Ledger;
use crate::ledger::test_support::call;
use leakscope_common::syscalls as nr;

mod random {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn ev(events: &mut Vec<Event>, t: u64, tgid: u32, what: What, rss: Option<u64>) {
        events.push(Event {
            time_ns: t,
            tgid,
            tid: tgid,
            rss_bytes: rss,
            what,
        });
    }

    fn sys(nr_: u32, ret: i64, args: [u64; 6]) -> crate::event::Syscall {
        call(nr_, ret, args)
    }

    pub(super) fn random_stream(seed: u64, steps: usize) -> Vec<Event> {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut events = Vec::new();
        let mut t: u64 = 1_000_000;
        let main = 100u32;
        let mut procs: Vec<u32> = vec![main];
        let mut next_child = 1000u32;
        for _ in 0..steps {
            // time: often the same instant, sometimes a long gap
            t += match r.below(10) {
                0..=2 => 0,
                3..=7 => 1 + r.below(3_000_000),
                8 => 49_000_000 + r.below(2_000_000),
                _ => 20_000_000 + r.below(40_000_000),
            };
            let p = procs[r.below(procs.len() as u64) as usize];
            let rss = (r.below(3) == 0).then(|| 1 << 20 | (r.below(8) << 12));
            let what = match r.below(22) {
                0..=2 => What::Marker { arg: 0, heap: None },
                3 => What::Syscall(
                    sys(nr::OPENAT, 40, [-100i64 as u64, 0, 0, 0, 0, 0])
                        .with_path("/srv/iteration/tick"),
                ),
                4 | 5 => {
                    let fd = 3 + r.below(12) as i64;
                    What::Syscall(
                        sys(nr::OPENAT, fd, [-100i64 as u64, 0, 0, 0, 0, 0])
                            .with_path(["/a", "/b", "/c"][r.below(3) as usize]),
                    )
                }
                6 | 7 => What::Syscall(sys(nr::CLOSE, 0, [3 + r.below(12), 0, 0, 0, 0, 0])),
                8 | 9 => {
                    let slot = 0x7000_0000_0000u64 + r.below(8) * 0x100_0000;
                    let len = (1 + r.below(4)) * 4096;
                    What::Syscall(sys(nr::MMAP, slot as i64, [0, len, 3, 0x22, u64::MAX, 0]))
                }
                10 => {
                    let slot = 0x7000_0000_0000u64 + r.below(8) * 0x100_0000;
                    let off = r.below(2) * 4096;
                    What::Syscall(sys(
                        nr::MUNMAP,
                        0,
                        [slot + off, 4096 * (1 + r.below(4)), 0, 0, 0, 0],
                    ))
                }
                11 => {
                    let slot = 0x7000_0000_0000u64 + r.below(8) * 0x100_0000;
                    let new_len = (1 + r.below(6)) * 4096;
                    let dont = if r.below(4) == 0 { 1 | 4 } else { 1 };
                    let new = if dont & 4 != 0 {
                        slot + 0x80_0000
                    } else {
                        slot
                    };
                    What::Syscall(sys(
                        nr::MREMAP,
                        new as i64,
                        [slot, 4096, new_len, dont, 0, 0],
                    ))
                }
                12 => {
                    let k = r.below(6);
                    let fd = 20 + r.below(3) as i64;
                    What::Syscall(
                        sys(
                            nr::OPENAT,
                            fd,
                            [-100i64 as u64, 0, 2 | 0o100 | 0o200, 0o600, 0, 0],
                        )
                        .with_path(&format!("/tmp/f-{k}")),
                    )
                }
                13 => What::Syscall(
                    sys(nr::UNLINK, 0, [0; 6]).with_path(&format!("/tmp/f-{}", r.below(6))),
                ),
                14 => What::Syscall(
                    sys(nr::RENAME, 0, [0; 6])
                        .with_path(&format!("/tmp/f-{}", r.below(6)))
                        .with_path2(&format!("/tmp/g-{}", r.below(3))),
                ),
                15 => What::Syscall(sys(nr::INOTIFY_INIT1, 30, [0; 6])),
                16 => {
                    let wd = 1 + r.below(4) as i64;
                    What::Syscall(
                        sys(nr::INOTIFY_ADD_WATCH, wd, [30, 0, 0x100, 0, 0, 0])
                            .with_path(&format!("/w/{wd}")),
                    )
                }
                17 => What::Syscall(sys(
                    nr::INOTIFY_RM_WATCH,
                    0,
                    [30, 1 + r.below(4), 0, 0, 0, 0],
                )),
                18 => {
                    let (nr_, errno) =
                        [(nr::OPENAT, 24), (nr::OPENAT, 17), (nr::MMAP, 12)][r.below(3) as usize];
                    What::Failed(FailedCall {
                        nr: nr_,
                        name: if nr_ == nr::MMAP { "mmap" } else { "openat" },
                        errno,
                    })
                }
                19 => {
                    if procs.len() < 4 {
                        let child = next_child;
                        next_child += 1;
                        procs.push(child);
                        What::Fork { child }
                    } else {
                        What::Exit
                    }
                }
                20 => {
                    if p != main {
                        procs.retain(|&q| q != p);
                        What::Exit
                    } else {
                        What::Exec(None)
                    }
                }
                21 if r.below(2) == 0 => What::Syscall(sys(
                    nr::DUP,
                    3 + r.below(12) as i64,
                    [3 + r.below(12), 0, 0, 0, 0, 0],
                )),
                _ => {
                    let req = 0x100_0000 + r.below(8) * 0x1000;
                    let ret = if r.below(3) == 0 { 0x100_0000 } else { req };
                    What::Syscall(sys(nr::BRK, ret as i64, [req, 0, 0, 0, 0, 0]))
                }
            };
            // the Fork must come from a living parent: p
            ev(&mut events, t, p, what, rss);
        }
        events
    }

    fn replay_events(
        events: &[Event],
        fold_every: Option<u64>,
        source: BoundarySource,
        max_boundaries: usize,
    ) -> Ledger {
        let mut ledger = Ledger::new();
        ledger.set_max_boundaries(max_boundaries);
        ledger.begin(100, 500_000);
        if let Some(every) = fold_every {
            ledger.stream_on_every(source, every);
        }
        for event in events {
            ledger.apply(event);
            if matches!(event.what, What::Marker { .. }) {
                for (record, _) in ledger.live_file_window(None, 100) {
                    ledger.note_file_size(record, event.time_ns, 100 * (record % 9));
                }
            }
        }
        ledger
    }

    fn judged_facts(ledger: &Ledger, request: &IterationRequest) -> String {
        let mut facts = RunFacts::default();
        for (record, _) in ledger.live_file_paths() {
            if record % 4 == 0 {
                facts.file_sizes.gone.insert(record);
            } else {
                facts.file_sizes.sizes.insert(record, 1000 + record);
            }
        }
        let iterations = detect(ledger, request);
        // Lifetimes in iterations too: at any stride, these runs' boundaries are all among
        // the recent ones, counted exactly both ways.
        let analysis = analysis::analyze(ledger, &iterations, &facts);
        format!("{iterations:?}\n{analysis:#?}")
    }

    fn check_prefixes(seed: u64, steps: usize, every: u64, path: bool) -> Result<(), String> {
        check_prefixes_at(
            seed,
            steps,
            every,
            path,
            crate::ledger::boundaries::MAX_BOUNDARIES,
        )
    }

    fn check_prefixes_at(
        seed: u64,
        steps: usize,
        every: u64,
        path: bool,
        max_boundaries: usize,
    ) -> Result<(), String> {
        let events = random_stream(seed, steps);
        let (source, request) = boundaries(path);
        let mut full = seeded();
        let mut folded = seeded();
        full.set_max_boundaries(max_boundaries);
        folded.set_max_boundaries(max_boundaries);
        folded.stream_on_every(source, every);
        for (i, event) in events.iter().enumerate() {
            for ledger in [&mut full, &mut folded] {
                ledger.apply(event);
                if i % 3 == 0 {
                    for (record, _) in ledger.live_file_window(None, 100) {
                        ledger.note_file_size(
                            record,
                            event.time_ns,
                            100 * ((record + i as u64) % 9),
                        );
                    }
                }
            }
            if i % 97 == 96 {
                let a = judged_facts(&folded.clone(), &request);
                let b = judged_facts(&full.clone(), &request);
                if let Some(difference) = difference(&a, &b) {
                    return Err(format!(
                        "prefix {i} seed {seed} every {every} path {path}: {difference}"
                    ));
                }
            }
        }
        Ok(())
    }

    fn seeded() -> Ledger {
        let mut ledger = Ledger::new();
        ledger.begin(100, 500_000);
        ledger.seed_fd(
            100,
            0,
            &crate::ledger::test_support::link("/dev/null"),
            false,
        );
        ledger.seed_fd(100, 5, &crate::ledger::test_support::link("/etc/x"), false);
        ledger.seed_mapping(
            100,
            0x7000_0000_0000,
            8192,
            &procfs::process::MMapPath::Anonymous,
        );
        ledger.seed_mapping(
            100,
            0x7000_0300_0000,
            4096,
            &procfs::process::MMapPath::Anonymous,
        );
        ledger
    }

    #[test]
    fn fuzz_prefixes() {
        sweep(1..5, &[1, 4], |seed, every, path| {
            check_prefixes(seed, 700, every, path)
        });
    }

    /// Copies taken mid-run (watch mode) with strides growing as they go.
    #[test]
    fn fuzz_prefixes_with_strides() {
        sweep(5..9, &[1, 4], |seed, every, path| {
            check_prefixes_at(seed, 900, every, path, 4)
        });
    }

    /// Runs `check` on every seed, fold interval and boundary source; fails with the
    /// first few differences (or panics) found.
    fn sweep(
        seeds: std::ops::Range<u64>,
        everys: &[u64],
        check: impl Fn(u64, u64, bool) -> Result<(), String> + std::panic::RefUnwindSafe,
    ) {
        let mut failures = Vec::new();
        for seed in seeds {
            for &every in everys {
                for path in [false, true] {
                    let outcome = std::panic::catch_unwind(|| check(seed, every, path))
                        .unwrap_or_else(|p| {
                            Err(format!(
                                "seed {seed} every {every} path {path} panicked: {:?}",
                                p.downcast_ref::<String>()
                            ))
                        });
                    failures.extend(outcome.err());
                }
            }
        }
        let shown: Vec<&str> = failures.iter().take(4).map(String::as_str).collect();
        assert!(
            failures.is_empty(),
            "{} failing:\n{}",
            failures.len(),
            shown.join("\n=====\n")
        );
    }

    /// The boundaries both ways: (the ledger's source, the detector's request).
    fn boundaries(path: bool) -> (BoundarySource, IterationRequest) {
        if path {
            (
                BoundarySource::PathsContaining("iteration/tick".into()),
                IterationRequest::Path("iteration/tick".into()),
            )
        } else {
            (
                BoundarySource::Markers,
                IterationRequest::Symbol("tick".into()),
            )
        }
    }

    fn check(seed: u64, steps: usize, every: u64, path: bool) -> Result<(), String> {
        check_at(
            seed,
            steps,
            every,
            path,
            crate::ledger::boundaries::MAX_BOUNDARIES,
        )
    }

    fn check_at(
        seed: u64,
        steps: usize,
        every: u64,
        path: bool,
        max_boundaries: usize,
    ) -> Result<(), String> {
        let events = random_stream(seed, steps);
        let (source, request) = boundaries(path);
        let full = replay_events(&events, None, source.clone(), max_boundaries);
        let folded = replay_events(&events, Some(every), source, max_boundaries);
        if detect(&full, &request).stride > 1 {
            STRIDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        FOLDED.fetch_add(
            folded.fd_records().folded().records
                + folded.map_records().folded().records
                + folded.file_records().folded().records
                + folded.watch_records().folded().records,
            std::sync::atomic::Ordering::Relaxed,
        );
        let a = judged_facts(&folded, &request);
        let b = judged_facts(&full, &request);
        if let Some(difference) = difference(&a, &b) {
            return Err(format!(
                "seed {seed} every {every} path {path}: {difference}"
            ));
        }
        Ok(())
    }

    /// With strides: at most 8 boundaries kept, so the stride doubles several times in a
    /// run, between folds and after them. Lifetimes in iterations are estimates there
    /// (each fold counts at its own stride); everything else must be equal.
    #[test]
    fn fuzz_folding_with_strides() {
        sweep(2000..2030, &[1, 37], |seed, every, path| {
            check_at(seed, 900, every, path, 4)
        });
        let strided = STRIDED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            strided >= 100,
            "only {strided} runs judged at a stride above 1"
        );
    }

    static STRIDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    static FOLDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    #[test]
    fn fuzz_folding() {
        sweep(1000..1040, &[1, 37], |seed, every, path| {
            check(seed, 600, every, path)
        });
        let folded = FOLDED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            folded > 10_000,
            "only {folded} records folded: the streams prove little"
        );
    }
}

mod found_in_review {
    use super::*;

    fn at(t: u64, tgid: u32, what: What) -> Event {
        Event {
            time_ns: t,
            tgid,
            tid: tgid,
            rss_bytes: None,
            what,
        }
    }
    fn creat(path: &str, fd: i64) -> What {
        What::Syscall(
            call(
                nr::OPENAT,
                fd,
                [-100i64 as u64, 0, 2 | 0o100 | 0o200, 0o600, 0, 0],
            )
            .with_path(path),
        )
    }
    fn unlink(path: &str) -> What {
        What::Syscall(call(nr::UNLINK, 0, [0; 6]).with_path(path))
    }
    const MS: u64 = 1_000_000;

    fn both(events: &[Event], sizes: &[(usize, u64, u64, u64)]) -> (String, String) {
        let run = |fold: bool| {
            let mut ledger = Ledger::new();
            if fold {
                ledger.stream_on_every(BoundarySource::Markers, 1);
            }
            for (i, event) in events.iter().enumerate() {
                ledger.apply(event);
                for &(after, record, t, bytes) in sizes {
                    if after == i {
                        ledger.note_file_size(record, t, bytes);
                    }
                }
            }
            ledger
        };
        let (folded, full) = (run(true), run(false));
        assert!(folded.file_records().folded().records > 0, "nothing folded");
        (judged(&folded), judged(&full))
    }

    /// A file one process creates and another removes: the removal can be stamped
    /// before the creating call's return (the entry exists before sys_exit), while the
    /// creation reaches the ring first. A boundary between the two stamps then counts
    /// the record as -1 in the full ledger (births before it: 0, deaths before it: 1),
    /// but `add_to` adds nothing when from >= to.
    #[test]
    fn released_before_born_folds_differently() {
        let mut events = vec![at(MS, 100, What::Marker { arg: 0, heap: None })];
        events.push(at(10 * MS + 500, 100, creat("/tmp/x", 7))); // stamped last, arrives first
        events.push(at(10 * MS + 100, 200, unlink("/tmp/x")));
        events.push(at(10 * MS + 300, 300, What::Marker { arg: 0, heap: None }));
        for k in 1..20 {
            events.push(at(
                10 * MS + k * 20 * MS,
                100,
                What::Marker { arg: 0, heap: None },
            ));
        }
        let (folded, full) = both(&events, &[]);
        assert_same(&folded, &full);
    }

    /// Byte series are summed in f64 from two parts (kept prefix + folded totals): above
    /// 2^53 bytes (a sparse file on tmpfs/XFS can report that size) the two roundings
    /// differ from the full ledger's single one.
    #[test]
    fn byte_totals_above_2_pow_53_round_differently() {
        let mut events = vec![at(MS / 2, 100, creat("/tmp/big", 7))];
        for k in 0..40u64 {
            events.push(at(
                MS + k * 20 * MS,
                100,
                What::Marker { arg: 0, heap: None },
            ));
            if k % 4 == 1 {
                events.push(at(
                    MS + k * 20 * MS + MS,
                    100,
                    creat(&format!("/tmp/small-{k}"), 8),
                ));
            }
            if k % 4 == 3 {
                events.push(at(
                    MS + k * 20 * MS + MS,
                    100,
                    unlink(&format!("/tmp/small-{}", k - 2)),
                ));
            }
        }
        // sizes: big = 2^60 + 2^7 (halfway between two f64s), each small file 2^7
        let mut sizes = vec![(0usize, 0u64, MS / 2 + 10, (1u64 << 60) + (1 << 7))];
        let mut record = 1u64;
        for (i, e) in events.iter().enumerate() {
            if let What::Syscall(c) = &e.what
                && c.nr == nr::OPENAT
                && i > 0
            {
                sizes.push((i, record, e.time_ns + 10, 1 << 7));
                record += 1;
            }
        }
        let (folded, full) = both(&events, &sizes);
        assert_same(&folded, &full);
    }
}
