//! The command line, as the contract (shared notes) defines it. The clap structs stop at
//! `commands/`, which turns them into the plain options the rest of leakscope takes.

pub(crate) mod extract;

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::session::MarkerSpec;
use extract::{ExtractArgs, WorkerArgs};

const ABOUT: &str = "Which resource leaks when a program repeats an operation?";

const LONG_ABOUT: &str = "\
leakscope traces a program with kernel probes (eBPF), keeps an exact ledger of every file
descriptor, memory mapping and brk change it makes, attributes each to the loop iteration that
made it, and tells you which class leaks, how much per iteration, and where.

Examples:
  sudo leakscope extract                       the built-in tar-extraction loop
  sudo leakscope extract --inject-leak fd      ...with one deliberate fd leak per iteration
  sudo leakscope run -- ./server --selftest    trace any command from its first syscall
  sudo leakscope run --iteration-path /data/ -- python3 job.py
  sudo leakscope attach --pid 4242 --duration 30
  sudo leakscope attach --pid 4242 --interval 60 \\
      --metrics /var/lib/node_exporter/textfile/leakscope.prom
                                               watch a server: the verdicts so far every
                                               minute, as lines and as metrics

Exit status: 0 report written, 2 bad usage, 3 --fail-on-leak and a leak was found,
4 not enough privilege or a missing kernel feature, 5 --fail-on-leak and no leak but events
were lost (the ledger is incomplete), 128+N interrupted by signal N before tracing started or
a second time (130 SIGINT, 143 SIGTERM, 129 SIGHUP), 1 anything else.

SIGINT, SIGTERM and SIGHUP stop tracing: run and extract pass the signal on to their target
and report once it ended; attach stops and leaves the process alone. A second one kills the
target and stops at once. The report's `ended` says how tracing ended.

Watch mode, for long runs: --interval SECS prints, every SECS seconds while tracing, one
line per class on stderr (live amount, iterations, rate and verdict so far: the final
report's analysis on what was traced until then). --metrics FILE writes the same facts in
Prometheus text format, replaced atomically each interval and once more at the end, so
node_exporter's textfile collector can publish them: leakscope_live_fds,
leakscope_live_mappings, leakscope_mapped_bytes, leakscope_brk_bytes, leakscope_rss_bytes,
leakscope_live_files, leakscope_file_bytes, leakscope_live_watches,
leakscope_iterations_total, leakscope_lost_events_total,
leakscope_leak_rate_per_iteration{class}, leakscope_leak_rate_bytes_per_iteration{class},
leakscope_verdict{class,verdict} (1 for the current verdict) and leakscope_final, each
labelled with the target's pid and command. Alert on, e.g.,
leakscope_verdict{verdict=\"leak\"} == 1.

Every \"no leak\" comes with the smallest rate per iteration the run could have seen; a
class that could not see a small leak (the brk heap grows in ~132 KiB steps) is
\"inconclusive\" and names the number of iterations that would settle it.";

#[derive(Debug, Parser)]
#[command(name = "leakscope", version, about = ABOUT, long_about = LONG_ABOUT)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start CMD under tracing, so that nothing it does is missed.
    Run(RunArgs),
    /// Trace a running process; what it already holds is read from /proc first.
    Attach(AttachArgs),
    /// The built-in scenario: extract a tar archive N times per round, R rounds, traced.
    #[command(long_about = extract::EXTRACT_ABOUT, after_long_help = extract::EXTRACT_AFTER_HELP)]
    Extract(ExtractCommand),
    /// The traced child of `extract` (internal).
    #[command(name = crate::extract::WORKER_SUBCOMMAND, hide = true)]
    ExtractWorker(WorkerArgs),
    /// Print a completion script for SHELL on stdout.
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (leakscope.1 and one per command) into DIR (`cargo xtask man`).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

const COMPLETIONS_AFTER_HELP: &str = "\
Install, for example:
  leakscope completions bash > /etc/bash_completion.d/leakscope
  leakscope completions zsh  > /usr/local/share/zsh/site-functions/_leakscope
  leakscope completions fish > ~/.config/fish/completions/leakscope.fish";

#[derive(Debug, Args)]
pub(crate) struct ExtractCommand {
    #[command(flatten)]
    pub(crate) extract: ExtractArgs,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// The command to trace, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// The process to trace.
    #[arg(long, value_name = "PID")]
    pub(crate) pid: u32,
    /// Stop after this many seconds (default: until the process exits or Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Options every tracing command takes.
#[derive(Debug, Args, Clone)]
pub(crate) struct CommonArgs {
    /// A call of SYMBOL (uprobe) starts a new iteration; BINARY defaults to the target's
    /// executable. SYMBOL may be a C++ or Rust function's name as written in the source
    /// (`handle_request`, `Server::handle`, `server::handle`): the one function it names is
    /// found by demangling. E.g. `--iteration-symbol handle_request` or `--iteration-symbol /usr/lib/libfoo.so:step`.
    #[arg(long, value_name = "[BINARY:]SYMBOL", value_parser = parse_marker, conflicts_with = "iteration_path")]
    pub(crate) iteration_symbol: Option<MarkerSpec>,
    /// A successful open whose path contains SUBSTRING starts a new iteration.
    #[arg(long, value_name = "SUBSTRING")]
    pub(crate) iteration_path: Option<String>,
    /// Write the report as JSON to FILE, created before tracing starts ('-' = stdout, which
    /// then carries only the JSON: the text report and the target's stdout go to stderr).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Write what was retained across iterations as folded stacks to FILE
    /// (`class;caller;...;resource width`, for flamegraph.pl, inferno or speedscope): the
    /// width is bytes for mmap, brk and heap, a count for fd, files and watches.
    #[arg(long, value_name = "FILE")]
    pub(crate) folded: Option<PathBuf>,
    /// Write the same stacks as a flamegraph SVG to FILE (rendered with inferno).
    #[arg(long, value_name = "FILE")]
    pub(crate) flamegraph: Option<PathBuf>,
    /// Write the run as a timeline to FILE, in the Trace Event format that Perfetto UI and
    /// chrome://tracing open: iterations as slices, each class's live amount as a counter
    /// track, each retained resource as an instant at its acquisition, with its site.
    #[arg(long, value_name = "FILE")]
    pub(crate) trace: Option<PathBuf>,
    /// Write the report as one self-contained HTML page to FILE (no network: inline CSS,
    /// charts as inline SVG): the answer and the run's facts, each class's live amount per
    /// iteration with the judged window and fitted slope, the top sites with their stacks,
    /// the lifetime histograms and, for extract, the projection.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// Write each class's chart of its live amount per iteration to FILE, as one SVG.
    #[arg(long, value_name = "FILE")]
    pub(crate) svg: Option<PathBuf>,
    /// Exit with status 3 when any class is judged "leak", and with 5 when none is but
    /// events were lost (an incomplete ledger cannot prove "no leak").
    #[arg(long)]
    pub(crate) fail_on_leak: bool,
    /// Run the target as USER (default: $SUDO_USER when run through sudo). Not with attach.
    #[arg(long, value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Size of the kernel-to-user ring buffer in MiB (a power of two). Raise it if the
    /// report shows lost events. The default holds about 45,000 open records, about 0.1 s
    /// of a tight open/close loop if the reader were stopped. The kernel maps the ring
    /// twice into leakscope, so it counts twice in leakscope's resident memory.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = parse_ring_mib)]
    pub(crate) ring_mib: u32,
    /// Bytes of the target's stack copied with each call that makes an fd, and each mmap,
    /// mremap and brk (512 to 16384, a multiple of 8), so that the site of a leaked fd,
    /// mapping or heap growth can name the function that asked for it, even in code built
    /// without frame pointers. The copy must
    /// reach from the system call up to that function's frame: raise it when sites stop in
    /// libc or a library (deep call chains, big stack buffers, Node), lower it to cut the
    /// cost of programs that map memory in a tight loop.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = leakscope_common::USTACK_DEFAULT_BYTES,
        value_parser = parse_stack_bytes
    )]
    pub(crate) stack_bytes: u32,
    /// Stacks copied per second on each CPU (0: with every call). A program that opens files
    /// or maps memory now and then gets a stack with each such call; one that does it in a
    /// tight loop gets one with some of them, and the others join the site their stacked
    /// twin has (or, with no single one, a site without frames): each stack costs the target
    /// about a microsecond and leakscope an unwind. Raise it (or 0) when a busy program's
    /// sites lack frames.
    #[arg(long, value_name = "N", default_value_t = leakscope_common::USTACK_DEFAULT_RATE)]
    pub(crate) stack_rate: u32,
    /// Watch mode: every SECS seconds while tracing, print one line per class to stderr
    /// (live amount, iterations, rate and verdict so far: the final report's analysis run on
    /// what was traced until then). On a terminal the lines redraw in place; otherwise each
    /// block is appended under a timestamp, so a log keeps the history. Works with run,
    /// attach and extract.
    #[arg(long, value_name = "SECS", value_parser = crate::watch::parse_interval)]
    pub(crate) interval: Option<std::time::Duration>,
    /// Write the same facts to FILE in Prometheus text format every interval (every 10 s
    /// without --interval) and once more at the end, atomically (FILE.tmp, then rename).
    /// Checked before tracing starts. E.g. for node_exporter's textfile collector:
    /// `--metrics /var/lib/node_exporter/textfile/leakscope.prom`.
    #[arg(long, value_name = "FILE")]
    pub(crate) metrics: Option<PathBuf>,
    /// Trace the target's allocator (malloc, calloc, realloc, free, C++ new/delete,
    /// jemalloc, mimalloc) with uprobes, pairing allocations with frees in the kernel: adds
    /// the class `heap` (bytes live per iteration, and the callers of what survives). It
    /// costs a uprobe trap, a few microseconds, on every allocator call of the target:
    /// an allocation-heavy program runs many times slower, as under bcc's memleak.
    /// Forked and exec'd processes get their own probes within a poll (10 ms): what they
    /// allocate before that is not seen.
    #[arg(long)]
    pub(crate) heap: bool,
}

/// The command line that parses back into `args`: each field written as its own flag, in
/// the order clap declares them, so a field added to `T` is passed on without more code.
/// Values are written as they serialize: a string or number after the flag, `true` as the
/// bare flag, `false` and `None` not at all, a list as the flag repeated.
pub(crate) fn to_flags<T: Args + serde::Serialize>(args: &T) -> anyhow::Result<Vec<OsString>> {
    let Value::Object(mut fields) = serde_json::to_value(args)? else {
        anyhow::bail!("command-line arguments must serialize as a struct");
    };
    let command = T::augment_args(clap::Command::new("flags"));
    let mut argv = Vec::new();
    for arg in command.get_arguments() {
        let (Some(long), Some(value)) = (arg.get_long(), fields.remove(arg.get_id().as_str()))
        else {
            continue;
        };
        let values = match value {
            Value::Array(values) => values,
            value => vec![value],
        };
        for value in values {
            let text = match value {
                Value::Null | Value::Bool(false) => continue,
                Value::Bool(true) => None,
                Value::String(text) => Some(text),
                Value::Number(number) => Some(number.to_string()),
                other => anyhow::bail!("--{long}: {other} has no command-line form"),
            };
            argv.push(format!("--{long}").into());
            argv.extend(text.map(OsString::from));
        }
    }
    if let Some(field) = fields.keys().next() {
        anyhow::bail!("field `{field}` has no flag of its own");
    }
    Ok(argv)
}

fn parse_marker(text: &str) -> Result<MarkerSpec, String> {
    // Rust and C++ names contain "::"; only a single colon separates a binary.
    let bytes = text.as_bytes();
    let single = (0..bytes.len()).find(|&i| {
        bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':')
    });
    let (binary, symbol) = match single {
        Some(i) if i > 0 => (Some(PathBuf::from(&text[..i])), &text[i + 1..]),
        _ => (None, text),
    };
    if symbol.is_empty() {
        return Err("the symbol name is empty".into());
    }
    Ok(MarkerSpec {
        binary,
        symbol: symbol.into(),
    })
}

fn parse_ring_mib(text: &str) -> Result<u32, String> {
    let mib: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of MiB"))?;
    if !mib.is_power_of_two() || mib > 1024 {
        return Err(format!(
            "{mib} MiB: the ring size must be a power of two between 1 and 1024"
        ));
    }
    Ok(mib)
}

fn parse_stack_bytes(text: &str) -> Result<u32, String> {
    use leakscope_common::{USTACK_CAP, USTACK_MIN_BYTES};
    let bytes: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number of bytes"))?;
    if !(USTACK_MIN_BYTES..=USTACK_CAP as u32).contains(&bytes) || !bytes.is_multiple_of(8) {
        return Err(format!(
            "{bytes} bytes: the stack copy must be a multiple of 8 between {USTACK_MIN_BYTES} \
             and {USTACK_CAP}"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_bytes_are_a_multiple_of_8_within_the_kernel_s_bounds() {
        assert_eq!(parse_stack_bytes("512"), Ok(512));
        assert_eq!(parse_stack_bytes("16384"), Ok(16384));
        for refused in ["504", "16392", "1001", "8k", "-8"] {
            assert!(parse_stack_bytes(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn marker_forms() {
        assert_eq!(
            parse_marker("step").unwrap(),
            MarkerSpec {
                binary: None,
                symbol: "step".into()
            }
        );
        assert_eq!(
            parse_marker("/lib/x.so:step").unwrap(),
            MarkerSpec {
                binary: Some("/lib/x.so".into()),
                symbol: "step".into()
            }
        );
        assert_eq!(parse_marker("a::b::c").unwrap().binary, None);
        let both = parse_marker("/bin/server:Handler::handle").unwrap();
        assert_eq!(
            (both.binary.as_deref(), both.symbol.as_str()),
            (Some(std::path::Path::new("/bin/server")), "Handler::handle")
        );
        assert!(parse_marker("/bin/x:").is_err());
    }

    #[test]
    fn ring_size_must_be_power_of_two() {
        assert_eq!(parse_ring_mib("64"), Ok(64));
        assert!(parse_ring_mib("3").is_err());
        assert!(parse_ring_mib("x").is_err());
    }

    #[derive(Debug, PartialEq, Args, serde::Serialize)]
    struct Sample {
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        quiet: bool,
        #[arg(long)]
        archive: Option<PathBuf>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long = "file")]
        files: Vec<String>,
    }

    #[derive(Parser)]
    #[command(no_binary_name = true)]
    struct SampleLine {
        #[command(flatten)]
        sample: Sample,
    }

    #[test]
    fn flags_parse_back_into_what_wrote_them() {
        let sample = Sample {
            keep: true,
            quiet: false,
            archive: None,
            limit: Some(7),
            files: vec!["a=1".into(), "b=2".into()],
        };
        let argv = to_flags(&sample).unwrap();
        assert_eq!(
            argv,
            ["--keep", "--limit", "7", "--file", "a=1", "--file", "b=2"].map(OsString::from)
        );
        assert_eq!(SampleLine::try_parse_from(argv).unwrap().sample, sample);
    }

    #[test]
    fn run_needs_a_command() {
        assert!(Cli::try_parse_from(["leakscope", "run"]).is_err());
        let cli =
            Cli::try_parse_from(["leakscope", "run", "--json", "-", "--", "ls", "-l"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(
            run.command,
            vec![OsString::from("ls"), OsString::from("-l")]
        );
    }
}
