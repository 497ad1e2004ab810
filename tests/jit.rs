//! Sites in JIT code: a Node script's leak is named by its JS function, from the perf map
//! node writes with `--perf-basic-prof --interpreted-frames-native-stack`; without those
//! flags the site says which flags to add. The CFI unwinder crosses the JIT frames by their
//! frame pointers.
//!
//! How deep the script's function lies (node 20.20, measured with `--stack-bytes`): 1 KiB
//! of stack reaches `leakyAlloc` in about 97 % of the ArrayBuffer calls and 2 KiB in all;
//! the open path (libuv's synchronous fs call) needs 3 KiB (2 KiB stops in libuv). The
//! default 8 KiB names both; 16 KiB is not needed for these.

use std::path::PathBuf;

use leakscope_tests::{Traced, assert_ran, assert_rate, leakscope_json, script, sites};

const N: usize = 1000;

/// The flags that make node write `/tmp/perf-PID.map` for its JIT code. V8 then also logs to
/// an `isolate-*.log` in the working directory: `--logfile=/dev/null` keeps it out of the
/// clone.
const PERF_MAP_FLAGS: [&str; 3] = [
    "--perf-basic-prof",
    "--interpreted-frames-native-stack",
    "--logfile=/dev/null",
];

const HINT: &str = "JIT frames unnamed: run node with --perf-basic-prof \
                    --interpreted-frames-native-stack (python >= 3.12: -X perf)";

/// A traced node run and its perf map, removed when dropped (node leaves it behind).
struct NodeRun {
    traced: Traced,
    perf_map: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for NodeRun {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.perf_map);
    }
}

/// `leakscope run --iteration-path DIR/tick -- node FLAGS SCRIPT N DIR`, which must run all
/// its iterations with nothing lost.
fn run_node(script_name: &str, flags: &[&str], options: &[&str]) -> NodeRun {
    let dir = tempfile::tempdir().unwrap();
    let mut command: Vec<String> = vec!["node".into()];
    command.extend(flags.iter().map(|flag| flag.to_string()));
    command.extend([
        script(script_name).to_string_lossy().into_owned(),
        N.to_string(),
        dir.path().to_string_lossy().into_owned(),
    ]);
    let tick = format!("{}/tick", dir.path().display());
    let options: Vec<&str> = ["--iteration-path", &tick]
        .into_iter()
        .chain(options.iter().copied())
        .collect();
    let traced = leakscope_json("run", &options, &command);
    let pid = traced.report["target"]["pid"]
        .as_u64()
        .expect("a target pid");
    let run = NodeRun {
        traced,
        perf_map: PathBuf::from(format!("/tmp/perf-{pid}.map")),
        _dir: dir,
    };
    assert_eq!(
        run.traced.report["lost_events"],
        0,
        "{}",
        run.traced.stderr()
    );
    assert_ran(&run.traced, N);
    run
}

/// The top site of class `name`: a leak of `rate` per iteration whose first frame is the JS
/// function `function` of `script_name`, named from the target's perf map, in JSON and in
/// the text report.
fn assert_top_site_is_js(run: &NodeRun, name: &str, function: &str, script_name: &str, rate: f64) {
    let traced = &run.traced;
    let top = &sites(traced, name)[0];
    assert_eq!(top["verdict"], "leak", "{top}");
    assert_rate(&top["leaked_per_iteration"], rate, "top site rate");
    let frame = &top["frames"][0];
    assert_eq!(frame["function"], function, "{top}");
    assert!(
        frame["file"]
            .as_str()
            .is_some_and(|file| file.ends_with(script_name)),
        "{frame}"
    );
    assert!(frame["line"].as_u64().is_some(), "{frame}");
    let map_name = run.perf_map.file_name().unwrap().to_string_lossy();
    assert_eq!(frame["module"], &*map_name, "{frame}");
    assert!(run.perf_map.is_file(), "node wrote no {map_name}");
    assert_eq!(top.get("unnamed_jit_frames"), None, "{top}");
    let shown = format!("{function} ({script_name}:");
    assert!(
        top["site"].as_str().is_some_and(|s| s.contains(&shown)),
        "{top}"
    );
    assert!(traced.stdout().contains(&shown), "{}", traced.stdout());
    assert!(!traced.stdout().contains(HINT), "{}", traced.stdout());
}

/// An ArrayBuffer kept per iteration: a mapping leak made from JS (malloc maps its 256 KiB
/// backing store), placed at the JS function, past libc, V8's C++ and its builtins.
#[test]
fn a_node_mapping_leak_is_named_by_its_js_function() {
    let run = run_node("node_buffer.js", &PERF_MAP_FLAGS, &[]);
    assert_top_site_is_js(&run, "mmap", "leakyAlloc", "node_buffer.js", 1.0);
    assert_rate(
        &sites(&run.traced, "mmap")[0]["bytes_leaked_per_iteration"],
        260.0 * 1024.0,
        "top site bytes per iteration",
    );
}

/// Without the flags node writes no perf map: the site's JIT frames are addresses, and its
/// text says once which flags name them.
#[test]
fn without_a_perf_map_the_site_says_which_flags_name_its_js() {
    let run = run_node("node_buffer.js", &[], &[]);
    assert!(!run.perf_map.exists(), "{}", run.perf_map.display());
    let traced = &run.traced;
    let top = &sites(traced, "mmap")[0];
    assert_eq!(top["verdict"], "leak", "{top}");
    assert_rate(&top["leaked_per_iteration"], 1.0, "top site rate");
    assert!(
        top["unnamed_jit_frames"].as_u64().is_some_and(|n| n > 0),
        "{top}"
    );
    let site = top["site"].as_str().unwrap_or_default();
    assert_eq!(site.matches(HINT).count(), 1, "{site}");
    assert!(!site.contains("leakyAlloc"), "{site}");
    let text = traced.stdout();
    let line = text
        .lines()
        .find(|line| line.contains(site))
        .unwrap_or_else(|| panic!("no line with the top site:\n{text}"));
    assert_eq!(line.matches("JIT frames unnamed").count(), 1, "{line}");
}

/// The fd leak of the issue: `leakyOpen` keeps an fd per iteration, `tidyOpen` opens the
/// same file and closes it. The fd site is named `leakyOpen`, and `tidyOpen` leaks nothing.
#[test]
fn a_node_fd_leak_is_named_by_its_js_function() {
    let run = run_node("node_fd.js", &PERF_MAP_FLAGS, &[]);
    assert_top_site_is_js(&run, "fd", "leakyOpen", "node_fd.js", 1.0);
    let fd = &run.traced.report["classes"]["fd"];
    assert_eq!(fd["verdict"], "leak", "{fd}");
    assert_rate(&fd["leaked_per_iteration"], 1.0, "fd leaked per iteration");
    for site in sites(&run.traced, "fd") {
        let named_tidy = site["frames"][0]["function"] == "tidyOpen";
        assert!(!(named_tidy && site["verdict"] == "leak"), "{site}");
    }
}
