//! The bench's heap row: `leakscope run --heap` against bcc's `memleak-bpfcc -p PID` on the
//! same malloc/free loop (tests/fixtures/bench_malloc.c), both timed by the loop itself.
//!
//! memleak attaches to a running pid only (its `-c` starts the command untraced while bcc
//! still compiles), so the loop waits for SIGUSR1: it is sent once memleak says it attaches,
//! plus [`ATTACH_SETTLE`]. memleak needs kernel headers; where the running kernel has none
//! (no /lib/modules/RELEASE/build, no CONFIG_IKHEADERS), the bench links Debian's
//! `linux-headers-amd64` there, or the row says why memleak is unavailable.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{measure, peers, table};
use crate::shell::{self, step};

/// After memleak prints "Attaching to pid", it attaches its uprobes in milliseconds.
const ATTACH_SETTLE: Duration = Duration::from_secs(2);
/// bcc compiles its program first: tens of seconds on a busy machine.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(180);

/// The rendered table of the heap row.
pub(crate) fn run(leakscope: &Path, workdir: &Path, pairs: usize, iterations: u64) -> String {
    let title = format!(
        "malloc/free loop: {iterations} x (malloc of 16..512 B + free) (tests/fixtures/bench_malloc.c), {pairs} pairs"
    );
    let fixture = match compile(workdir) {
        Ok(fixture) => fixture,
        Err(e) => return format!("{title}\n  not measured: {e:#}\n"),
    };
    let leakscope_row = table::Row {
        setup: "leakscope run --heap".into(),
        result: pairs_of(pairs, iterations, &fixture, "leakscope --heap", |n| {
            let mut command = Command::new(leakscope);
            command
                .args(["run", "--heap", "--iteration-symbol", "iteration_marker"])
                .arg("--json")
                .arg(workdir.join("heap-report.json"))
                .arg("--")
                .arg(&fixture)
                .arg(n.to_string());
            measure::loop_ns(&mut command)
        })
        .map_err(|e| format!("{e:#}")),
    };
    step("checking that memleak-bpfcc runs here");
    let memleak_row = table::Row {
        setup: "memleak-bpfcc -p".into(),
        result: prepare_memleak().and_then(|()| {
            pairs_of(pairs, iterations, &fixture, "memleak-bpfcc", |n| {
                memleak_loop_ns(&fixture, n, workdir)
            })
            .map_err(|e| format!("{e:#}"))
        }),
    };
    table::render_table(&title, &[leakscope_row, memleak_row])
}

/// `pairs` x (untraced, traced) of `n` iterations.
fn pairs_of(
    pairs: usize,
    n: u64,
    fixture: &Path,
    label: &str,
    mut traced: impl FnMut(u64) -> Result<u64>,
) -> Result<table::Pairs> {
    let mut measured = table::Pairs {
        iterations: n,
        ..table::Pairs::default()
    };
    for pair in 1..=pairs {
        step(&format!(
            "heap: pair {pair}/{pairs}: untraced, then {label} ({n} iterations)"
        ));
        measured
            .untraced_ns
            .push(measure::loop_ns(Command::new(fixture).arg(n.to_string()))?);
        measured.traced_ns.push(traced(n)?);
    }
    Ok(measured)
}

fn compile(workdir: &Path) -> Result<PathBuf> {
    let fixture = workdir.join("bench_malloc");
    step("compiling the malloc/free loop fixture");
    shell::status(
        Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&fixture)
            .arg(shell::workspace_root().join("tests/fixtures/bench_malloc.c")),
    )?;
    Ok(fixture)
}

/// memleak-bpfcc installed, and kernel headers where bcc looks for them.
fn prepare_memleak() -> Result<(), String> {
    if shell::output("which", &["memleak-bpfcc"]).is_none() {
        peers::install("bpfcc-tools")?;
    }
    let release = shell::output("uname", &["-r"]).unwrap_or_default();
    let modules = Path::new("/lib/modules").join(release.trim());
    if modules.join("build").exists() || Path::new("/sys/kernel/kheaders.tar.xz").exists() {
        return Ok(());
    }
    peers::install("linux-headers-amd64")?;
    let (build, source) = newest_debian_headers().ok_or_else(|| {
        "unavailable: no kernel headers for this kernel, and no linux-headers-*-amd64 in /usr/src"
            .to_string()
    })?;
    step(&format!(
        "linking {} into {} for bcc",
        build.display(),
        modules.display()
    ));
    std::fs::create_dir_all(&modules).map_err(|e| format!("unavailable: {e}"))?;
    for (link, target) in [("build", &build), ("source", &source)] {
        let _ = std::os::unix::fs::symlink(target, modules.join(link));
    }
    Ok(())
}

/// The newest `/usr/src/linux-headers-V-amd64` and its `-common` twin.
fn newest_debian_headers() -> Option<(PathBuf, PathBuf)> {
    let mut builds: Vec<PathBuf> = std::fs::read_dir("/usr/src")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-headers-") && n.ends_with("-amd64"))
        })
        .collect();
    builds.sort();
    let build = builds.pop()?;
    let name = build.file_name()?.to_str()?.replace("-amd64", "-common");
    Some((build.clone(), build.with_file_name(name)))
}

/// Stops memleak: SIGINT (its way to end), then SIGTERM if it is still there after a few
/// seconds. A bench started in the background of a non-interactive shell hands its
/// children SIGINT ignored, and memleak would then print its table every 5 s forever.
fn stop_memleak(memleak: &mut std::process::Child) {
    for signal in ["-INT", "-TERM"] {
        let _ = Command::new("kill")
            .args([signal, &memleak.id().to_string()])
            .status();
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(5) {
            if memleak.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = memleak.kill();
    let _ = memleak.wait();
}

/// One memleak run: the loop waits for SIGUSR1 until memleak has attached to it.
fn memleak_loop_ns(fixture: &Path, n: u64, workdir: &Path) -> Result<u64> {
    let mut target = Command::new(fixture)
        .arg(n.to_string())
        .env("BENCH_WAIT_GO", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the loop")?;
    let pid = target.id().to_string();
    let log = workdir.join("memleak.txt");
    let mut memleak = Command::new("memleak-bpfcc")
        .args(["-p", &pid])
        // Its lines are Python prints: unbuffered, so "Attaching" is seen at once.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(workdir.join("memleak-stderr.txt"))?)
        .spawn()
        .context("cannot start memleak-bpfcc")?;
    let started = Instant::now();
    let attached = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Attaching to pid") {
            break true;
        }
        if started.elapsed() > ATTACH_TIMEOUT || memleak.try_wait()?.is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stop = |memleak: &mut std::process::Child, target: &mut std::process::Child| {
        stop_memleak(memleak);
        let _ = target.kill();
        let _ = target.wait();
    };
    if !attached {
        stop(&mut memleak, &mut target);
        let why = std::fs::read_to_string(workdir.join("memleak-stderr.txt")).unwrap_or_default();
        bail!(
            "memleak-bpfcc never attached: {}",
            measure::last_lines(&why, 2)
        );
    }
    std::thread::sleep(ATTACH_SETTLE);
    shell::status(Command::new("kill").args(["-USR1", &pid]))?;
    let output = target.wait_with_output()?;
    stop_memleak(&mut memleak);
    let stderr = String::from_utf8_lossy(&output.stderr);
    measure::parse_loop_ns(&stderr).with_context(|| {
        format!(
            "the loop printed no loop_ns= line: {}",
            measure::last_lines(&stderr, 2)
        )
    })
}
