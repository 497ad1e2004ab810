//! Support for the lifecycle tests: which BPF programs are loaded (through the bpf syscall),
//! which of them a process holds, whether a process is gone, and a leakscope run whose
//! stderr can be watched line by line while it runs.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// leakscope's kernel programs (the function names in ebpf/src/main.rs), as the kernel
/// keeps them: names are cut to 15 bytes.
pub const PROGRAM_NAMES: [&str; 5] = [
    "sys_exit",
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
    "iteration_marker",
];

/// The `--heap` programs (ebpf/src/heap.rs): the allocator's uprobes and uretprobe.
pub const HEAP_PROGRAM_NAMES: [&str; 3] = ["heap_enter", "heap_return", "heap_free"];

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;

fn bpf(command: libc::c_long, attr: &mut [u8; 128]) -> libc::c_long {
    // SAFETY: the attribute buffer is as large as any union member used here.
    unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_mut_ptr(), attr.len() as u32) }
}

/// Every BPF object of one kind in the kernel (programs or links), by id, with the start
/// of its `bpf_*_info` (256 bytes).
fn loaded_objects(next_id: libc::c_long, fd_by_id: libc::c_long) -> BTreeMap<u32, [u8; 256]> {
    let mut objects = BTreeMap::new();
    let mut id = 0u32;
    loop {
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        if bpf(next_id, &mut attr) != 0 {
            break; // ENOENT: no more
        }
        id = u32::from_ne_bytes(attr[4..8].try_into().unwrap());
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        let fd = bpf(fd_by_id, &mut attr);
        if fd < 0 {
            continue; // gone in between
        }
        let mut info = [0u8; 256];
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
        attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
        let ok = bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) == 0;
        // SAFETY: fd was returned by the kernel for us.
        unsafe { libc::close(fd as i32) };
        if ok {
            objects.insert(id, info);
        }
    }
    objects
}

/// Every BPF program loaded in the kernel, by id, with its (15-byte) name.
pub fn loaded_programs() -> BTreeMap<u32, String> {
    loaded_objects(BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID)
        .into_iter()
        .map(|(id, info)| {
            // struct bpf_prog_info: name[16] at offset 64.
            let name = &info[64..80];
            let end = name.iter().position(|&b| b == 0).unwrap_or(16);
            (id, String::from_utf8_lossy(&name[..end]).into_owned())
        })
        .collect()
}

/// Every BPF link in the kernel (a tracepoint's, or a uprobe's perf event's), by id, with
/// the id of the program it attaches.
pub fn loaded_links() -> BTreeMap<u32, u32> {
    loaded_objects(BPF_LINK_GET_NEXT_ID, BPF_LINK_GET_FD_BY_ID)
        .into_iter()
        // struct bpf_link_info: type, id, prog_id (u32 each).
        .map(|(id, info)| (id, u32::from_ne_bytes(info[8..12].try_into().unwrap())))
        .collect()
}

/// Whether a kernel program name is one of leakscope's.
pub fn is_leakscope_program(name: &str) -> bool {
    PROGRAM_NAMES
        .iter()
        .any(|full| full.as_bytes()[..full.len().min(15)] == *name.as_bytes())
}

/// The ids of the BPF programs process `pid` holds (through a program or link fd).
pub fn programs_held_by(pid: u32) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

/// The BPF-object fds (programs, links, maps, perf events) process `pid` holds.
pub fn bpf_fds_of(pid: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|link| link.to_string_lossy().into_owned())
        .filter(|link| {
            link.starts_with("anon_inode:bpf")
                || link.starts_with("anon_inode:btf")
                || link.starts_with("anon_inode:[perf_event]")
        })
        .collect()
}

/// Waits (up to `within`) until process `pid` holds leakscope's programs; returns their ids.
pub fn wait_for_programs(pid: u32, within: Duration) -> BTreeSet<u32> {
    let start = Instant::now();
    loop {
        let held = programs_held_by(pid);
        let loaded = loaded_programs();
        let ours: BTreeSet<u32> = held
            .iter()
            .copied()
            .filter(|id| loaded.get(id).is_some_and(|n| is_leakscope_program(n)))
            .collect();
        // The four tracepoints are attached (and the marker loaded) together.
        if ours.len() >= 4 {
            return ours;
        }
        assert!(
            start.elapsed() < within,
            "pid {pid} never held leakscope's programs (holds {held:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that within a second none of `ids` is loaded any more.
pub fn assert_unloaded(ids: &BTreeSet<u32>, context: &str) {
    let start = Instant::now();
    loop {
        let loaded = loaded_programs();
        let left: Vec<_> = ids.iter().filter(|id| loaded.contains_key(id)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{context}: leakscope's programs {left:?} are still loaded a second later"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// leakscope's programs and the links that attach them, the allocator's uprobes and
/// uretprobes among them.
#[derive(Debug)]
pub struct Probes {
    pub programs: BTreeSet<u32>,
    pub links: BTreeSet<u32>,
}

/// Waits (up to `within`) until process `pid`, a `--heap` run, has attached every allocator
/// program to the target (a link for each); returns all its programs and their links.
pub fn wait_for_heap_probes(pid: u32, within: Duration) -> Probes {
    let start = Instant::now();
    loop {
        let loaded = loaded_programs();
        let programs: BTreeSet<u32> = programs_held_by(pid)
            .into_iter()
            .filter(|id| {
                loaded.get(id).is_some_and(|name| {
                    is_leakscope_program(name) || HEAP_PROGRAM_NAMES.contains(&name.as_str())
                })
            })
            .collect();
        let links: BTreeMap<u32, u32> = loaded_links()
            .into_iter()
            .filter(|(_, program)| programs.contains(program))
            .collect();
        let attached = |name: &str| {
            links
                .values()
                .any(|program| loaded.get(program).is_some_and(|n| n == name))
        };
        if HEAP_PROGRAM_NAMES.iter().all(|name| attached(name)) {
            return Probes {
                programs,
                links: links.into_keys().collect(),
            };
        }
        assert!(
            start.elapsed() < within,
            "pid {pid} never attached the allocator probes (holds programs {programs:?}, \
             links {links:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that within a second none of the programs is loaded and no link attaches any
/// of them: no uprobe, uretprobe or tracepoint of leakscope's is left.
pub fn assert_probes_gone(probes: &Probes, context: &str) {
    assert_unloaded(&probes.programs, context);
    let left: Vec<(u32, u32)> = loaded_links()
        .into_iter()
        .filter(|(id, program)| probes.links.contains(id) || probes.programs.contains(program))
        .collect();
    assert!(
        left.is_empty(),
        "{context}: links (id, program) {left:?} are still attached"
    );
}

/// Gone: no such process, or a zombie (it has exited; only its parent's reaping is left).
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Asserts that process `pid` is gone within `within`.
pub fn assert_gone(pid: u32, within: Duration, context: &str) {
    let start = Instant::now();
    while !is_gone(pid) {
        assert!(
            start.elapsed() < within,
            "{context}: process {pid} is still there after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A leakscope process whose stderr is read line by line while it runs.
/// Gives `command` the default action for the stop signals. A test run started with
/// `nohup` or as a background job of a script inherits SIGHUP or SIGINT ignored, and an
/// ignored signal stays ignored across exec: leakscope's target would then never die of
/// the signal the test sends. The tests are about the signals, not about how CI was run.
pub fn with_default_stop_signals(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: only async-signal-safe calls (signal) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGHUP, libc::SIGTERM, libc::SIGQUIT] {
                libc::signal(signal, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

pub struct Watched {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
}

impl Watched {
    /// Starts `command` (a leakscope command line) with stderr piped; stdout as given.
    pub fn start(mut command: Command, stdout: Stdio) -> Watched {
        with_default_stop_signals(&mut command);
        let mut child = command
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run leakscope");
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with `{needle}` within {within:?}; stderr so far:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of our own child, which is not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, signal) }, 0);
    }

    /// Waits for leakscope to exit (at most `within`), collecting the rest of stderr.
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.stderr.push(line);
                }
                return status;
            }
            if start.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "leakscope did not exit within {within:?}; stderr:\n{}",
                    self.stderr.join("\n")
                );
            }
            while let Ok(line) = self.lines.try_recv() {
                self.stderr.push(line);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.join("\n")
    }
}

/// The JSON report leakscope wrote to `json` (the test fails, with its stderr, without one).
pub fn read_report(json: &std::path::Path, watched: &Watched) -> serde_json::Value {
    let text = std::fs::read_to_string(json)
        .unwrap_or_else(|_| panic!("no report written; stderr:\n{}", watched.stderr_text()));
    serde_json::from_str(&text).expect("the report is not JSON")
}

/// The status a catchable stop signal gives when it interrupts: 128 + its number.
pub fn interrupted_status(signal: libc::c_int) -> i32 {
    128 + signal
}

/// leakscope was killed by SIGKILL, or exited with 128 + `signal` (a catchable one).
pub fn assert_ended_by(status: std::process::ExitStatus, signal: libc::c_int, watched: &Watched) {
    use std::os::unix::process::ExitStatusExt as _;
    if signal == libc::SIGKILL {
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{}",
            watched.stderr_text()
        );
    } else {
        assert_eq!(
            status.code(),
            Some(interrupted_status(signal)),
            "{}",
            watched.stderr_text()
        );
    }
}

/// The child pid in a `test pause at gate (child N)` line.
pub fn paused_child(line: &str) -> u32 {
    line.rsplit_once("(child ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no child pid in `{line}`"))
}
