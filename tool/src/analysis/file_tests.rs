//! Verdicts of the files and watches classes on whole synthetic runs.

use super::trend::Verdict;
use super::*;
use crate::iterations::{self, IterationRequest};
use crate::ledger::file_tests::{FileCalls, O_CREAT, O_EXCL, O_RDWR, O_TMPFILE};
use crate::ledger::test_support::{Stream, call};
use leakscope_common::syscalls as nr;

const PID: u32 = 9;
const N: usize = 200;

/// A run of `n` marked iterations; `body` does one iteration's work.
fn run(n: usize, mut body: impl FnMut(&mut Stream, usize)) -> Stream {
    let mut s = Stream::new(PID);
    s.open("/usr/lib/libc.so.6", 3).close(3);
    for i in 0..n {
        s.marker();
        body(&mut s, i);
    }
    s
}

/// Analyzes with every entry still live at the end sized `size` bytes.
fn analyze_sized(s: &Stream, size: u64) -> Analysis {
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    let sizes = ledger
        .live_file_paths()
        .into_iter()
        .map(|(record, _)| (record, size))
        .collect();
    let facts = RunFacts {
        file_sizes: FileSizes {
            sizes,
            gone: Default::default(),
        },
        ..RunFacts::default()
    };
    analyze(&ledger, &iterations, &facts)
}

fn site_text(s: &Stream, site: crate::ledger::sites::SiteId) -> String {
    crate::report::sites::site_text(site, s.ledger().sites())
}

fn assert_rate(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= expected.abs() * 0.05 + 1e-9,
        "rate {actual}, expected {expected}"
    );
}

/// A mkstemp-like random name per iteration.
fn random_name(i: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..6)
        .map(|_| {
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ALPHABET[(x >> 58) as usize % ALPHABET.len()] as char
        })
        .collect()
}

#[test]
fn mkstemp_left_behind_is_a_leak_of_one_file_and_a_page_per_iteration() {
    let s = run(N, |s, i| {
        let path = format!("/tmp/app-{}.tmp", random_name(i));
        s.mkstemp(&path, 4).close(4);
    });
    let analysis = analyze_sized(&s, 4096);
    let files = &analysis.files;
    assert_eq!(files.verdict, Verdict::Leak, "{}", files.count.why);
    assert_rate(files.count.rate, 1.0);
    let bytes = files.bytes.as_ref().expect("files have bytes");
    assert_eq!(bytes.verdict, Verdict::Leak, "{}", bytes.why);
    assert_rate(bytes.rate, 4096.0);
    assert_eq!(files.sites.len(), 1, "one grouped site");
    let top = &files.sites[0];
    assert_eq!(site_text(&s, top.site), "file /tmp/app-XXXXXX.tmp");
    assert_eq!(top.leaked, N as u64 - 1);
    assert_eq!(top.bytes_leaked, Some((N as u64 - 1) * 4096));
    assert_eq!(files.live_bytes_at_end, Some((N as u64 - 1) * 4096));
    assert_eq!(analysis.fd.verdict, Verdict::NoLeak);
    assert_eq!(analysis.watches.verdict, Verdict::NoLeak);
}

/// The cases that must not leak, each judged several times over differently sized runs.
fn assert_flat(name: &str, body: impl Fn(&mut Stream, usize) + Copy) {
    for n in [50, 120, 200, 333, 500] {
        let analysis = analyze_sized(&run(n, body), 4096);
        let files = &analysis.files;
        assert_eq!(
            files.verdict,
            Verdict::NoLeak,
            "{name} ({n}): {}",
            files.count.why
        );
        assert_eq!(analysis.watches.verdict, Verdict::NoLeak, "{name} ({n})");
        // The one entry an atomic replace keeps is retained, but no site grows.
        assert!(
            files.sites.iter().all(|site| site.leaked <= 1),
            "{name} ({n}): {:?}",
            files.sites
        );
    }
}

#[test]
fn files_removed_or_replaced_are_no_leak() {
    assert_flat("create + unlink", |s, i| {
        let path = format!("/tmp/app-{}.tmp", random_name(i));
        s.mkstemp(&path, 4).close(4).unlink(&path);
    });
    assert_flat("atomic replace", |s, i| {
        let tmp = format!("/srv/.state-{}", random_name(i));
        s.mkstemp(&tmp, 4).close(4).rename(&tmp, "/srv/state.json");
    });
    assert_flat("same name re-created", |s, _| {
        s.mkstemp("/srv/out/a.txt", 4).close(4);
    });
    assert_flat("O_TMPFILE never linked", |s, _| {
        s.openat_flags(-100, "/tmp", O_TMPFILE | O_RDWR, 4).close(4);
    });
    assert_flat("O_CREAT of an existing file", |s, _| {
        s.sys(
            call(
                nr::OPENAT,
                4,
                [-100i64 as u64, 0, O_RDWR | O_CREAT, 0, 0, 0],
            )
            .with_path("/var/log/app.log")
            .with_open(O_RDWR | O_CREAT, Some(false)),
        )
        .close(4);
    });
    assert_flat("a directory made and removed", |s, i| {
        let dir = format!("/tmp/job-{i}");
        s.mkdir(&dir).mkstemp(&format!("{dir}/part"), 4).close(4);
        s.unlink(&format!("{dir}/part")).rmdir(&dir);
    });
}

#[test]
fn o_tmpfile_linked_in_and_mkdir_per_iteration_leak() {
    let linked = run(N, |s, i| {
        s.openat_flags(-100, "/data", O_TMPFILE | O_RDWR, 4);
        let name = format!("/data/blob-{i:04}");
        s.sys(call(nr::LINKAT, 0, [4, 0, -100i64 as u64, 0, 0x1000, 0]).with_path(&name));
        s.close(4);
    });
    let analysis = analyze_sized(&linked, 100);
    assert_eq!(analysis.files.verdict, Verdict::Leak);
    assert_rate(analysis.files.count.rate, 1.0);
    let top = &analysis.files.sites[0];
    assert_eq!(site_text(&linked, top.site), "hard link /data/blob-N");

    let dirs = run(N, |s, i| {
        s.mkdir(&format!("/tmp/tmp{}", random_name(i)));
        s.mkdir(&format!("/tmp/tmp{}/in", random_name(i)));
    });
    let analysis = analyze_sized(&dirs, 4096);
    assert_eq!(analysis.files.verdict, Verdict::Leak);
    assert_rate(analysis.files.count.rate, 2.0);
    let sites: Vec<String> = analysis
        .files
        .sites
        .iter()
        .map(|site| site_text(&dirs, site.site))
        .collect();
    assert_eq!(
        sites,
        vec!["directory /tmp/XXXXXXXXX", "directory /tmp/XXXXXXXXX/in"]
    );
    let _ = O_EXCL;
}

#[test]
fn watches_on_new_paths_leak_and_balanced_ones_do_not() {
    let leak = run(N, |s, i| {
        if i == 0 {
            s.inotify_init(5);
        }
        s.add_watch(5, &format!("/srv/job-{i}"), i as i32 + 1);
    });
    let analysis = analyze_sized(&leak, 0);
    assert_eq!(analysis.watches.verdict, Verdict::Leak);
    assert_rate(analysis.watches.count.rate, 1.0);
    assert_eq!(analysis.watches.sites.len(), 1);
    assert_eq!(
        site_text(&leak, analysis.watches.sites[0].site),
        "inotify watch on /srv/job-N"
    );
    assert_eq!(analysis.files.verdict, Verdict::NoLeak);

    assert_flat("the same path every iteration", |s, i| {
        if i == 0 {
            s.inotify_init(5);
        }
        s.add_watch(5, "/srv/config", 1);
    });
    assert_flat("rm_watch", |s, i| {
        if i == 0 {
            s.inotify_init(5);
        }
        s.add_watch(5, &format!("/srv/job-{i}"), i as i32 + 1)
            .rm_watch(5, i as i32 + 1);
    });
    assert_flat("closing the inotify fd", |s, i| {
        s.inotify_init(5);
        s.add_watch(5, &format!("/srv/a-{i}"), 1)
            .add_watch(5, &format!("/srv/b-{i}"), 2)
            .close(5);
    });
}

#[test]
fn entries_gone_unseen_are_said() {
    let s = run(50, |s, i| {
        s.mkstemp(&format!("/tmp/x-{i}"), 4).close(4);
    });
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    let facts = RunFacts {
        file_sizes: FileSizes {
            sizes: Default::default(),
            gone: ledger
                .live_file_paths()
                .into_iter()
                .map(|(record, _)| record)
                .collect(),
        },
        ..RunFacts::default()
    };
    let analysis = analyze(&ledger, &iterations, &facts);
    assert_eq!(analysis.files.removed_unseen, Some(50));
    assert!(
        analysis.files.count.why.contains("50 entries"),
        "{}",
        analysis.files.count.why
    );
}

#[test]
fn a_created_file_that_grows_leaks_bytes_with_a_flat_count() {
    let s = run(N, |s, i| {
        if i == 0 {
            s.mkstemp("/var/log/app.log", 4);
        }
    });
    let mut ledger = s.ledger();
    let record = ledger.live_file_paths()[0].0;
    // The session's samples during the run: 4 KiB more at every iteration.
    let markers = ledger.markers().to_vec();
    for (i, &t) in markers.iter().enumerate() {
        ledger.note_file_size(record, t + 500, 4096 * (i as u64 + 1));
    }
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    let facts = RunFacts {
        file_sizes: FileSizes {
            sizes: [(record, 4096 * N as u64)].into(),
            gone: Default::default(),
        },
        ..RunFacts::default()
    };
    let files = analyze(&ledger, &iterations, &facts).files;
    assert_eq!(files.count.verdict, Verdict::NoLeak, "{}", files.count.why);
    let bytes = files.bytes.as_ref().unwrap();
    assert_eq!(files.verdict, Verdict::Leak, "{}", bytes.why);
    assert_rate(bytes.rate, 4096.0);
}

#[test]
fn a_file_sampled_before_it_was_written_counts_its_written_size() {
    let s = run(N, |s, i| {
        let path = format!("/tmp/app-{}.tmp", random_name(i));
        s.mkstemp(&path, 4).close(4);
    });
    let mut ledger = s.ledger();
    // A few entries were looked at while still empty; all hold 4 KiB at the end.
    let live = ledger.live_file_paths();
    for &(record, _) in live.iter().step_by(7) {
        let born = ledger.file_records().get(record).born_ns;
        ledger.note_file_size(record, born + 1, 0);
    }
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    let facts = RunFacts {
        file_sizes: FileSizes {
            sizes: live.iter().map(|&(record, _)| (record, 4096)).collect(),
            gone: Default::default(),
        },
        ..RunFacts::default()
    };
    let files = analyze(&ledger, &iterations, &facts).files;
    assert_rate(files.bytes.as_ref().unwrap().rate, 4096.0);
    assert_eq!(files.live_bytes_at_end, Some((N as u64 - 1) * 4096));
}

#[test]
fn a_site_pinned_at_enospc_leaks_its_bytes_at_the_rate_it_grew() {
    // One 400-byte directory per iteration until the file system is out of inodes at
    // iteration 120; every mkdir after that fails with ENOSPC.
    let s = run(N, |s, i| {
        if i < 120 {
            s.mkdir(&format!("/t/d-{i}"));
        } else {
            let failed = crate::event::FailedCall {
                nr: nr::MKDIR,
                name: "mkdir",
                errno: 28,
            };
            s.push(PID, PID, crate::event::What::Failed(failed), None);
        }
    });
    let analysis = analyze_sized(&s, 400);
    let files = &analysis.files;
    assert!(files.limit_hit.is_some(), "{}", files.count.why);
    assert_eq!(files.verdict, Verdict::Leak, "{}", files.count.why);
    assert_rate(files.count.rate, 1.0);
    let bytes = files.bytes.as_ref().unwrap();
    assert_rate(bytes.rate, 400.0);
    assert!(bytes.why.contains("(46.9 KiB live)"), "{}", bytes.why);
    let site = &files.sites[0];
    assert_eq!(site.verdict, Verdict::Leak);
    assert_rate(site.leaked_per_iteration, 1.0);
    // Not the 120 x 400 B spread over all 200 iterations.
    assert_rate(site.bytes_leaked_per_iteration.unwrap(), 400.0);
}

/// Sizes as the session finds them when every entry in `gone` has vanished from disk.
fn analyze_with_gone(s: &Stream, gone: impl Fn(&str) -> bool) -> Analysis {
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    let mut sizes = FileSizes::default();
    for (record, path) in ledger.live_file_paths() {
        if gone(&path) {
            sizes.gone.insert(record);
        } else {
            sizes.sizes.insert(record, 4096);
        }
    }
    let facts = RunFacts {
        file_sizes: sizes,
        ..RunFacts::default()
    };
    analyze(&ledger, &iterations, &facts)
}

#[test]
fn a_growth_of_entries_gone_from_disk_is_inconclusive_never_a_leak() {
    // Created under a symlinked directory, removed under its real path: the ledger sees
    // two names, the disk one file, gone again in the same iteration.
    let s = run(N, |s, i| {
        s.mkstemp(&format!("/w/link/f-{i}"), 4)
            .close(4)
            .unlink(&format!("/w/real/f-{i}"));
    });
    let files = analyze_with_gone(&s, |_| true).files;
    assert_eq!(files.verdict, Verdict::Inconclusive, "{}", files.count.why);
    assert!(
        files.count.why.contains("gone from disk"),
        "{}",
        files.count.why
    );
    assert!(files.sites.iter().all(|site| site.verdict != Verdict::Leak));
    assert_eq!(files.removed_unseen, Some(N as u64));
}

#[test]
fn a_leak_beside_entries_gone_from_disk_stands_at_its_own_rate() {
    // One file kept and one gone unseen per iteration: a leak of 1, not 2.
    let s = run(N, |s, i| {
        s.mkstemp(&format!("/w/keep-{i}"), 4)
            .close(4)
            .mkstemp(&format!("/w/link/f-{i}"), 5)
            .close(5);
    });
    let files = analyze_with_gone(&s, |path| path.contains("/link/")).files;
    assert_eq!(files.verdict, Verdict::Leak, "{}", files.count.why);
    assert_rate(files.count.rate, 1.0);
    let leaking: Vec<String> = files
        .sites
        .iter()
        .filter(|site| site.verdict == Verdict::Leak)
        .map(|site| site_text(&s, site.site))
        .collect();
    assert_eq!(leaking, vec!["file /w/keep-N"]);
}

#[test]
fn creations_the_kernel_could_not_judge_make_the_files_class_inconclusive() {
    // One new name per iteration with a plain O_CREAT and no word from the kernel on whether
    // it created the file: it may be a leak the ledger cannot see, never a sure "no leak".
    let s = run(N, |s, i| {
        s.openat_flags(-100, &format!("/srv/out-{i}"), O_CREAT | O_RDWR, 4)
            .close(4);
    });
    let ledger = s.ledger();
    let iterations = iterations::detect(&ledger, &IterationRequest::Symbol("tick".into()));
    let analysis = analyze(&ledger, &iterations, &RunFacts::default());
    assert_eq!(analysis.files.verdict, Verdict::Inconclusive);
    assert!(
        analysis.files.count.why.contains(&format!(
            "the kernel could not say whether {N} O_CREAT opens created their file"
        )),
        "{}",
        analysis.files.count.why
    );
}
