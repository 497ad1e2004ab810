//! The top sites' lines, on synthetic runs: a leaking class's stacks one frame per line,
//! the other classes compact, long names cut in the text only.

use leakscope_common::syscalls as nr;

use super::super::synthetic;
use super::*;
use crate::diagnosis::{RunInfo, diagnose};
use crate::iterations::IterationRequest;
use crate::ledger::Ledger;
use crate::ledger::test_support::{Stream, call, libc_frame, source_frame};
use crate::stacks::FrameKind;

const PID: u32 = 42;

fn info() -> RunInfo {
    crate::report::synthetic::run_info("./app", IterationRequest::Symbol("tick".into()))
}

fn text(report: &Report) -> String {
    let mut out = Vec::new();
    report.write_text(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The lines of the top sites, from the heading to the blank line after them.
fn site_lines(report: &Report) -> Vec<String> {
    text(report)
        .lines()
        .skip_while(|line| !line.starts_with("retained across iterations"))
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// 100 iterations that each map 64 KiB from `stack` and keep it (only the first `kept`).
fn mapping_run(stack: &[Frame], kept: u64) -> Ledger {
    let mut s = Stream::new(PID);
    for i in 0..100u64 {
        s.marker_with_rss(20_000_000);
        if i < kept {
            s.sys(
                call(
                    nr::MMAP,
                    0x1_0000_0000 + i as i64 * 0x10_0000,
                    [0, 65536, 3, 0x22, u64::MAX, 0],
                )
                .with_stack(stack.to_vec()),
            );
        }
    }
    s.exit();
    s.ledger()
}

fn inlined(frame: Frame) -> Frame {
    Frame {
        inlined: true,
        ..frame
    }
}

#[test]
fn a_leaking_class_shows_each_top_site_s_stack_one_frame_per_line() {
    let stack = [
        libc_frame("__mmap64"),
        libc_frame("sysmalloc"),
        inlined(source_frame("grow_cache", "/src/cache.c", 41)),
        source_frame("handle_request", "/src/server.c", 120),
        source_frame("main", "/src/main.c", 30),
        libc_frame("__libc_start_main"),
    ];
    let report = diagnose(mapping_run(&stack, 100), &info());
    assert_eq!(
        site_lines(&report),
        [
            "  mmap         99 × anon 64 KiB rw- private  (1.00 per iteration, \
             64 KiB per iteration, 6.2 MiB, leak)",
            "            [2 libc frames]",
            "            grow_cache (inlined)  /src/cache.c:41",
            "            handle_request        /src/server.c:120",
            "            main                  /src/main.c:30",
        ]
    );
    // JSON keeps its one-line site, frames and all.
    let json = report.to_json();
    let site = &json["classes"]["mmap"]["sites"][0];
    assert_eq!(
        site["site"],
        "anon 64 KiB rw- private ← grow_cache (cache.c:41) ← handle_request (server.c:120) \
         ← main (main.c:30)  [2 libc frames]"
    );
    assert_eq!(site["frames"].as_array().unwrap().len(), 3);
    assert_eq!(site.get("stack"), None, "the laid-out stack is text only");
}

#[test]
fn a_class_that_does_not_leak_keeps_its_sites_on_one_line() {
    // Twenty mappings kept at start, then none: a plateau, not a leak.
    let stack = [
        libc_frame("__mmap64"),
        source_frame("fill_cache", "/src/cache.c", 12),
        source_frame("main", "/src/main.c", 30),
    ];
    let report = diagnose(mapping_run(&stack, 20), &info());
    assert_eq!(report.classes.mmap.verdict, Verdict::Plateau);
    let lines = site_lines(&report);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("anon 64 KiB rw- private ← fill_cache (cache.c:12) ← main (main.c:30)"),
        "{lines:#?}"
    );
}

#[test]
fn long_names_are_cut_in_the_text_only_and_wide_paths_do_not_move_the_column() {
    let long = format!("std_like::collections::Map<{}>::insert", "Key, ".repeat(20));
    let path = format!("/home/dev/{}/src/map.cpp", "deep/".repeat(30));
    let stack = [
        libc_frame("__mmap64"),
        source_frame(&long, &path, 7),
        source_frame("main", "/src/main.c", 30),
    ];
    let report = diagnose(mapping_run(&stack, 100), &info());
    let lines = site_lines(&report);
    let cut = format!(
        "{}…",
        long.chars().take(FUNCTION_WIDTH - 1).collect::<String>()
    );
    assert_eq!(lines[2], format!("{STACK_INDENT}{cut}  {path}:7"));
    let main = format!("{STACK_INDENT}{:<FUNCTION_WIDTH$}  /src/main.c:30", "main");
    assert_eq!(lines[3], main);
    // Both files start in the same column, however wide the path before them.
    let column = |line: &str| line.chars().position(|c| c == '/').unwrap();
    assert_eq!(column(&lines[2]), column(&lines[3]));
    let json = report.to_json();
    assert_eq!(
        json["classes"]["mmap"]["sites"][0]["frames"][0]["function"], long,
        "JSON keeps the whole name"
    );
}

#[test]
fn frames_without_debug_info_name_their_module_and_unknown_ones_nothing() {
    let no_file = Frame {
        module: "/opt/app/libcache.so".into(),
        ..Frame::named("cache_grow")
    };
    let stack = [libc_frame("__mmap64"), no_file, Frame::named("run")];
    let report = diagnose(mapping_run(&stack, 100), &info());
    let lines = site_lines(&report);
    assert_eq!(
        lines[2],
        format!("{STACK_INDENT}cache_grow  in libcache.so")
    );
    assert_eq!(lines[3], format!("{STACK_INDENT}run"), "no trailing blanks");
}

#[test]
fn cut_counts_characters_not_bytes() {
    assert_eq!(cut("main", 8), "main");
    assert_eq!(cut("ääääää", 4), "äää…");
    assert_eq!(cut("abcdef", 6), "abcdef");
}

#[test]
fn heap_sites_carry_their_caller_s_frames_in_json_and_under_their_line() {
    let report = synthetic::heap_leak(vec![
        inlined(source_frame("leak_thirty", "/src/heap_small.c", 16)),
        source_frame("main", "/src/heap_small.c", 33),
    ]);
    let heap = report.classes.heap.as_ref().unwrap();
    assert_eq!(heap.verdict, Verdict::Leak, "{}", heap.why);
    let json = report.to_json();
    let site = &json["classes"]["heap"]["sites"][0];
    assert_eq!(site["site"], "leak_thirty");
    assert_eq!(
        site["frames"],
        serde_json::json!([
            {"function": "leak_thirty", "file": "/src/heap_small.c", "line": 16, "module": "parser"},
            {"function": "main", "file": "/src/heap_small.c", "line": 33, "module": "parser"},
        ])
    );
    let lines = site_lines(&report);
    assert!(lines[0].starts_with("  heap        300 B in 10 allocations by leak_thirty  ("));
    assert_eq!(
        lines[1..],
        [
            "            leak_thirty (inlined)  /src/heap_small.c:16",
            "            main                   /src/heap_small.c:33",
        ]
    );
}

#[test]
fn a_heap_caller_whose_code_was_not_known_has_no_frames() {
    let report = synthetic::heap_leak(Vec::new());
    let json = report.to_json();
    let site = &json["classes"]["heap"]["sites"][0];
    assert_eq!(site["site"], "0x401234");
    assert_eq!(site.get("frames"), None, "{site}");
    assert_eq!(site_lines(&report).len(), 1);
}

#[test]
fn a_heap_caller_in_libc_is_shown_with_its_module() {
    let strdup = Frame {
        kind: FrameKind::System,
        ..libc_frame("strdup")
    };
    let report = synthetic::heap_leak(vec![strdup]);
    let lines = site_lines(&report);
    assert!(
        lines[0].contains("by strdup (system library)"),
        "{lines:#?}"
    );
    assert_eq!(lines[1], format!("{STACK_INDENT}strdup  in libc.so.6"));
}
