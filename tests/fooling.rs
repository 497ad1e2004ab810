//! Programs whose resource traffic looks like a leak to a naive detector, or hides one, with
//! the real probes (tests/fixtures/fooling.c, tests/fixtures/rust/spawn_true.rs): every
//! verdict must be right or honestly inconclusive. Each "must not leak" case runs 5 times,
//! so a verdict that flips is caught.

use rstest::rstest;

use leakscope_tests::{
    Traced, assert_class, assert_no_leak_in, assert_ran, assert_rate, assert_verdicts, class,
    fixture, leakscope_json,
};

/// `fooling MODE N` (or another fixture taking N) marked by its iteration symbol, with no
/// lost events and exactly N iterations.
fn traced(program: &str, args: &[&str], n: usize) -> Traced {
    let mut command = vec![fixture(program).to_string_lossy().into_owned()];
    command.extend(args.iter().map(|a| a.to_string()));
    command.push(n.to_string());
    let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
    assert_eq!(traced.report["lost_events"], 0, "{}", traced.stderr());
    assert_ran(&traced, n);
    traced
}

fn fooling(mode: &str, n: usize) -> Traced {
    traced("fooling", &[mode], n)
}

/// Nothing kept: fds and mappings no-leak, the heap and RSS flat (no-leak, or inconclusive
/// naming the iterations that would settle it: resident memory moves in steps of 100 KiB and
/// more), no files or watches.
fn assert_nothing_kept(traced: &Traced, context: &str) {
    assert_verdicts(traced, ["no-leak", "no-leak", "flat", "flat"], context);
    assert_others_kept_nothing(traced, context);
}

/// No files or watches left.
fn assert_others_kept_nothing(traced: &Traced, context: &str) {
    for name in ["files", "watches"] {
        assert_class(traced, name, "no-leak", context);
    }
}

#[rstest]
// glibc's posix_spawn runs the child in the parent's memory (CLONE_VM|CLONE_VFORK) on a
// stack it maps and unmaps around the call.
#[case::posix_spawn("posix-spawn", 300)]
#[case::mmap_fixed_over_the_same_address("map-fixed", 500)]
#[case::mremap_shrink_then_munmap("mremap-shrink", 500)]
// glibc caches thread stacks: a plateau, never a leak (long enough for RSS to be judged).
#[case::pthread_create_and_join("pthread-join", 10_000)]
#[case::detached_threads_that_exit("pthread-detach", 10_000)]
// The old fd 100 is closed by the dup itself.
#[case::dup2_onto_the_same_fd("dup2-same", 500)]
#[case::dup3_onto_the_same_fd("dup3-same", 500)]
#[case::fcntl_dupfd_cloexec_closed("dupfd-cloexec", 500)]
// 1 MiB touched and given back by MADV_DONTNEED every iteration; the mapping stays.
#[case::madvise_dontneed("madvise", 10_000)]
fn what_is_given_back_is_no_leak_five_times_out_of_five(#[case] mode: &str, #[case] n: usize) {
    for run in 0..5 {
        let traced = fooling(mode, n);
        let context = format!("{mode} run {run}");
        if mode.starts_with("pthread") {
            // Threads that overlap leave glibc two or three cached stacks: mappings grow
            // by those and stop, a plateau.
            assert_verdicts(&traced, ["no-leak", "bounded", "flat", "flat"], &context);
            assert_others_kept_nothing(&traced, &context);
        } else {
            assert_nothing_kept(&traced, &context);
        }
    }
}

#[test]
fn rust_command_status_per_iteration_is_no_leak_five_times_out_of_five() {
    for run in 0..5 {
        let traced = traced("rust/spawn_true", &[], 300);
        assert_nothing_kept(&traced, &format!("spawn_true run {run}"));
    }
}

#[test]
fn a_memfd_mapped_and_closed_leaks_its_mapping_not_its_fd() {
    let traced = fooling("memfd-map", 500);
    assert_class(&traced, "fd", "no-leak", "memfd-map");
    let mmap = class(&traced, "mmap");
    assert_eq!(mmap["verdict"], "leak", "{mmap}");
    assert_rate(&mmap["leaked_per_iteration"], 1.0, "mappings per iteration");
    assert_rate(&mmap["bytes_leaked_per_iteration"], 65536.0, "mapped bytes");
    let site = &mmap["sites"][0]["site"];
    assert!(
        site.as_str().is_some_and(|s| s.contains("memfd:fooling")),
        "{site}"
    );
}

#[test]
fn a_mapping_shrunk_by_mremap_and_kept_leaks_its_new_size() {
    let traced = fooling("mremap-shrink-keep", 500);
    assert_class(&traced, "fd", "no-leak", "mremap-shrink-keep");
    let mmap = class(&traced, "mmap");
    assert_eq!(mmap["verdict"], "leak", "{mmap}");
    assert_rate(&mmap["leaked_per_iteration"], 1.0, "mappings per iteration");
    assert_rate(&mmap["bytes_leaked_per_iteration"], 4096.0, "mapped bytes");
    // Each mapping was shrunk to 4 KiB: the site names that, not all of them together.
    let site = &mmap["sites"][0]["site"];
    assert!(
        site.as_str()
            .is_some_and(|s| s.contains("resized by mremap to 4 KiB")),
        "{site}"
    );
}

#[test]
fn a_kept_fcntl_dupfd_cloexec_is_an_fd_leak() {
    let traced = fooling("dupfd-keep", 500);
    let fd = class(&traced, "fd");
    assert_eq!(fd["verdict"], "leak", "{fd}");
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fds per iteration");
    assert_class(&traced, "mmap", "no-leak", "dupfd-keep");
}

/// A CLONE_FILES child shares the parent's fd table, and the ledger keeps one per
/// process: the fd verdict (and the watches', which live on fds) is inconclusive and says
/// why and what to count instead, whether the child leaves an fd open (a leak) or closes
/// the parent's (none). Mappings are judged as usual.
#[rstest]
#[case::child_opens_and_keeps("clone-files-open")]
#[case::clone3_child_opens_and_keeps("clone3-files-open")]
#[case::child_closes_the_parents("clone-files-close")]
fn a_shared_fd_table_makes_the_fd_verdict_inconclusive_with_the_reason(#[case] mode: &str) {
    for run in 0..5 {
        let traced = fooling(mode, 500);
        let context = format!("{mode} run {run}");
        for name in ["fd", "watches"] {
            assert_class(&traced, name, "inconclusive", &context);
            let why = class(&traced, name)["why"].as_str().unwrap_or("");
            assert!(
                why.contains("500 children shared the fd table") && why.contains("CLONE_FILES"),
                "{context}: {name}: {why}"
            );
            assert!(why.contains("/proc/PID/fd"), "the next step: {why}");
        }
        assert_class(&traced, "mmap", "no-leak", &context);
        assert_no_leak_in(&traced, &["brk", "rss", "files"], &context);
        let answer = traced.report["answer"].as_str().unwrap_or("");
        assert!(answer.contains("fds and watches inconclusive"), "{answer}");
    }
}

/// A CLONE_VM child (not a thread, not a vfork) maps memory in the parent's address space
/// and exits: the mapping stays, but the ledger keeps one address space per process. The
/// mapping, heap and resident-memory verdicts are inconclusive with the reason; fds are
/// judged as usual. (posix_spawn's CLONE_VM|CLONE_VFORK child is judged: see above.)
#[test]
fn a_shared_address_space_makes_the_memory_verdicts_inconclusive_with_the_reason() {
    for run in 0..5 {
        let traced = fooling("clone-vm-map", 500);
        let context = format!("clone-vm-map run {run}");
        for name in ["mmap", "brk", "rss"] {
            assert_class(&traced, name, "inconclusive", &context);
            let why = class(&traced, name)["why"].as_str().unwrap_or("");
            assert!(
                why.contains("500 children shared the address space") && why.contains("CLONE_VM"),
                "{context}: {name}: {why}"
            );
            assert!(why.contains("/proc/PID/maps"), "the next step: {why}");
        }
        assert_class(&traced, "fd", "no-leak", &context);
        let answer = traced.report["answer"].as_str().unwrap_or("");
        assert!(
            answer.contains("mappings, brk heap and RSS inconclusive"),
            "{answer}"
        );
    }
}

/// A shell runs the marked program 5 times, 100 iterations each; each run keeps one fd per
/// iteration and gives them all back at its exit. Across the runs the live fds are a
/// sawtooth, which read "no fd leak": what a process holds is now inconclusive, with the
/// reason and the next step. Files on disk outlive a process and are judged as usual.
/// Marked by the program's marker, or by its opens of /etc/hostname (two per iteration).
#[rstest]
#[case::by_symbol("--iteration-symbol", 500)]
#[case::by_path("--iteration-path", 1000)]
fn a_leak_in_each_of_several_short_runs_is_never_called_no_leak(
    #[case] flag: &str,
    #[case] iterations: usize,
) {
    let program = fixture("nofp/fd_fopen").to_string_lossy().into_owned();
    let script = format!("for i in 1 2 3 4 5; do {program} 100 || exit 1; done");
    let marker = match flag {
        "--iteration-symbol" => format!("{program}:iteration_marker"),
        _ => "/etc/hostname".to_string(),
    };
    for run in 0..3 {
        let traced = leakscope_json("run", &[flag, &marker], &["/bin/sh", "-c", &script]);
        assert_ran(&traced, iterations);
        let context = format!("5 runs of 100, run {run}");
        for name in ["fd", "watches", "mmap", "brk", "rss"] {
            assert_class(&traced, name, "inconclusive", &context);
            let why = class(&traced, name)["why"].as_str().unwrap_or("");
            assert!(
                why.contains("4 of the 5 runs of the marked loop ended while it went on (4 by their process's exit)"),
                "{context}: {name}: {why}"
            );
            assert!(
                why.contains("run one process with more iterations"),
                "{why}"
            );
        }
        assert_class(&traced, "files", "no-leak", &context);
    }
}

/// A program that runs itself again (exec) every 50 iterations, keeping 64 KiB per
/// iteration until then: one pid, but each exec gives back what the old program held, so
/// the mapped bytes are a sawtooth. What a process holds is inconclusive, naming the execs.
#[test]
fn a_leak_in_a_program_that_execs_itself_again_is_never_called_no_leak() {
    for run in 0..3 {
        let traced = fooling("reexec-map", 250);
        let context = format!("reexec-map run {run}");
        for name in ["fd", "mmap", "brk", "rss"] {
            assert_class(&traced, name, "inconclusive", &context);
            let why = class(&traced, name)["why"].as_str().unwrap_or("");
            assert!(
                why.contains(
                    "4 of the 5 runs of the marked loop ended while it went on (4 by an exec)"
                ),
                "{context}: {name}: {why}"
            );
        }
    }
}

/// Not a restart: three workers run the loop side by side (each iteration keeps an fd) and
/// end together; a program that forks after 20 iterations and leaves the rest to its child
/// (which inherits the fds). Both are judged: one fd per iteration, 5 runs each.
#[rstest]
#[case::workers_side_by_side("workers-keep", 3 * 200)]
#[case::handed_to_a_child("handover-keep", 200)]
fn a_loop_in_several_processes_that_never_restarts_is_judged(
    #[case] mode: &str,
    #[case] iterations: usize,
) {
    for run in 0..5 {
        let command = [
            fixture("fooling").to_string_lossy().into_owned(),
            mode.to_string(),
            "200".to_string(),
        ];
        let traced = leakscope_json("run", &["--iteration-symbol", "iteration_marker"], &command);
        assert_ran(&traced, iterations);
        let context = format!("{mode} run {run}");
        assert_class(&traced, "fd", "leak", &context);
        assert_rate(&class(&traced, "fd")["leaked_per_iteration"], 1.0, &context);
    }
}
