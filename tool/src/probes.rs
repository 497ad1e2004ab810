//! Loads leakscope's kernel programs, attaches them, and exposes their maps.
//!
//! One [`Probes`] value owns everything in the kernel: dropping it detaches the programs and
//! frees the maps, so an early error can never leave probes behind.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, RawTracePoint, UProbe, uprobe::UProbeScope},
};
use leakscope_common::{DropReason, PathEvent, TrackedProcess, globals, maps, programs};
use thiserror::Error;

use crate::{
    exit_code,
    kernel_offsets::{self, OffsetsError},
};

/// The eBPF object built by build.rs from ebpf/.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/leakscope"));

#[derive(Debug, Error)]
pub(crate) enum ProbeError {
    #[error(
        "this binary was built without its eBPF programs (AYA_BUILD_SKIP); rebuild with `cargo xtask build`"
    )]
    NoObject,
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error("loading the eBPF programs was refused")]
    Load(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the kernel refused eBPF program `{program}`")]
    Program {
        program: &'static str,
        // Boxed: aya's error is large, and every fallible loader call returns this type.
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF program `{0}` is missing from the object: the build is inconsistent")]
    MissingProgram(&'static str),
    #[error("eBPF map `{0}` is missing from the object: the build is inconsistent")]
    MissingMap(&'static str),
    #[error("eBPF map `{map}`")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error(
        "--heap: cannot attach to `{symbol}` in {binary}{}",
        refused_hint(source)
    )]
    Heap {
        symbol: &'static str,
        binary: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot attach the iteration marker to `{symbol}` in {binary}")]
    Marker {
        symbol: String,
        binary: String,
        source: Box<aya::programs::ProgramError>,
    },
}

impl ProbeError {
    /// The kernel saying no (missing privilege or feature) is exit status 4; a marker that
    /// cannot be attached is the user's symbol (2); anything else is a bug or a broken build.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            ProbeError::Offsets(offsets) => offsets.exit_status(),
            ProbeError::Load(_) | ProbeError::Program { .. } => exit_code::NO_PRIVILEGE_OR_FEATURE,
            ProbeError::Map {
                source: aya::maps::MapError::CreateError { .. },
                ..
            } => exit_code::NO_PRIVILEGE_OR_FEATURE,
            ProbeError::Marker { .. } | ProbeError::Heap { .. } => exit_code::USAGE,
            ProbeError::NoObject
            | ProbeError::MissingProgram(_)
            | ProbeError::MissingMap(_)
            | ProbeError::Map { .. } => exit_code::FAILURE,
        }
    }
}

/// The kernel refuses (EINVAL) a uprobe where another tracer's uprobe already sits with
/// other options: bcc's memleak running on the same library is the usual one.
fn refused_hint(error: &aya::programs::ProgramError) -> &'static str {
    let text = error.to_string();
    if text.contains("perf_event_open") && text.contains("os error 22") {
        " (another uprobe tracer on the same function, e.g. bcc's memleak, makes the kernel refuse it)"
    } else {
        ""
    }
}

/// aya's `EbpfError` quotes the error it wraps in its own message ("map error: {0}"), which
/// the chain then prints again: keep the wrapped error, so each cause is named once.
fn load_refused(error: aya::EbpfError) -> ProbeError {
    use aya::EbpfError;
    ProbeError::Load(match error {
        EbpfError::MapError(wrapped) => Box::new(wrapped),
        EbpfError::ProgramError(wrapped) => Box::new(wrapped),
        EbpfError::ParseError(wrapped) => Box::new(wrapped),
        EbpfError::BtfError(wrapped) => Box::new(wrapped),
        other => Box::new(other),
    })
}

/// One `--heap` uprobe attached to one process.
#[derive(Debug)]
pub(crate) struct HeapLink {
    program: &'static str,
    link: aya::programs::uprobe::UProbeLinkId,
}

pub(crate) struct ProbeOptions {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub(crate) ring_bytes: u32,
    /// Bytes of user stack the kernel copies with each mapping or fd-making call: a multiple of 8 in
    /// `USTACK_MIN_BYTES..=USTACK_CAP` (`--stack-bytes` checks it).
    pub(crate) stack_bytes: u32,
    /// Stacks the kernel copies per second per CPU; 0: with every call.
    pub(crate) stack_rate: u32,
    /// `--heap`: load the allocator programs and let the marker carry heap totals.
    pub(crate) heap: bool,
}

pub(crate) struct Probes {
    ebpf: Ebpf,
    tracked: HashMap<MapData, u32, TrackedProcess>,
    traced_pids: Array<MapData, u64>,
    /// Whether the kernel holds opens back ([`NO_PAIR_ENV`] unset).
    pair_opens: bool,
    lost: PerCpuArray<MapData, u64>,
    /// `--heap`: the live allocations and the per-process totals.
    heap: Option<crate::heap::HeapMaps>,
    /// Held while the kernel counts the programs' runs and run time ([`PROGRAM_STATS_ENV`]).
    stats: Option<std::os::fd::OwnedFd>,
}

/// When set, the kernel counts each program's runs and time (BPF_ENABLE_STATS, for as long
/// as leakscope runs), and leakscope prints them on stderr when it detaches: one line
/// `leakscope-program-stats: NAME run_cnt=N run_time_ns=T` per program. `cargo xtask bench`
/// uses it for the kernel side's own cost per event, which the machine's noise barely
/// touches. Counting costs two clock reads per run, so it is off unless asked for.
pub(crate) const PROGRAM_STATS_ENV: &str = "LEAKSCOPE_PROGRAM_STATS";

/// When set (to anything), the kernel sends every open as its own record instead of
/// holding it back to pair it with its close: for comparing the two paths (the reports
/// must be the same) and for measuring what pairing saves.
pub(crate) const NO_PAIR_ENV: &str = "LEAKSCOPE_NO_PAIR";

impl Probes {
    /// Loads and attaches every program. After this returns, the kernel reports any
    /// process added with [`Probes::track`].
    pub(crate) fn load(options: &ProbeOptions) -> Result<(Probes, RingBuf<MapData>), ProbeError> {
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        let offsets = kernel_offsets::from_running_kernel()?;
        crate::self_stats::give_back_freed_memory();
        // Enabled before load, so no run is left uncounted; a kernel that refuses only
        // loses the figures.
        let stats = std::env::var_os(PROGRAM_STATS_ENV)
            .and_then(|_| aya::sys::enable_stats(aya::sys::Stats::RunTime).ok());
        // Parsed once, for the loader's relocations and the BTF tracepoints' load.
        let btf = aya::Btf::from_sys_fs().map_err(|e| ProbeError::Load(Box::new(e)))?;
        let pair_opens = u32::from(std::env::var_os(NO_PAIR_ENV).is_none());
        let heap_on = u32::from(options.heap);
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global(globals::OFFSETS, &offsets, true)
            .override_global(globals::PAIR_OPENS, &pair_opens, true)
            .override_global(globals::STACK_BYTES, &options.stack_bytes, true)
            .override_global(globals::STACK_RATE, &options.stack_rate, true)
            .override_global(globals::HEAP_ON, &heap_on, true)
            .map_max_entries(maps::EVENTS, options.ring_bytes)
            .map_max_entries(maps::TRACED_PIDS, maps::traced_pids_words(pid_max()))
            .load(OBJECT)
            .map_err(load_refused)?;
        // BTF tracepoints are loaded against the kernel's own type of the tracepoint.
        for tp in programs::BTF_TRACEPOINTS {
            let program: &mut BtfTracePoint = program(&mut ebpf, tp.program)?;
            program
                .load(tp.tracepoint, &btf)
                .and_then(|()| program.attach().map(drop))
                .map_err(|source| ProbeError::Program {
                    program: tp.program,
                    source: Box::new(source),
                })?;
        }
        drop(btf);
        crate::self_stats::give_back_freed_memory();
        // Raw tracepoints, attached by name. Neither kind needs tracefs.
        for raw in programs::RAW_TRACEPOINTS {
            let program: &mut RawTracePoint = program(&mut ebpf, raw.program)?;
            program.load().map_err(|source| ProbeError::Program {
                program: raw.program,
                source: Box::new(source),
            })?;
            program
                .attach(raw.tracepoint)
                .map_err(|source| ProbeError::Program {
                    program: raw.program,
                    source: Box::new(source),
                })?;
        }
        let marker: &mut UProbe = program(&mut ebpf, programs::ITERATION_MARKER)?;
        marker.load().map_err(|source| ProbeError::Program {
            program: programs::ITERATION_MARKER,
            source: Box::new(source),
        })?;

        let ring = typed_map(&mut ebpf, maps::EVENTS, RingBuf::try_from)?;
        let tracked = typed_map(&mut ebpf, maps::TRACKED, HashMap::try_from)?;
        let traced_pids = typed_map(&mut ebpf, maps::TRACED_PIDS, Array::try_from)?;
        let lost = typed_map(&mut ebpf, maps::LOST, PerCpuArray::try_from)?;
        let heap = if options.heap {
            for name in [programs::HEAP_ENTER, programs::HEAP_FREE] {
                let probe: &mut UProbe = program(&mut ebpf, name)?;
                probe.load().map_err(|source| ProbeError::Program {
                    program: name,
                    source: Box::new(source),
                })?;
            }
            let probe: &mut UProbe = program(&mut ebpf, programs::HEAP_RETURN)?;
            probe.load().map_err(|source| ProbeError::Program {
                program: programs::HEAP_RETURN,
                source: Box::new(source),
            })?;
            Some(crate::heap::HeapMaps {
                live: typed_map(&mut ebpf, maps::HEAP_LIVE, HashMap::try_from)?,
                totals: typed_map(&mut ebpf, maps::HEAP_TOTALS, HashMap::try_from)?,
                lifetimes: typed_map(&mut ebpf, maps::HEAP_LIFETIMES, PerCpuArray::try_from)?,
            })
        } else {
            None
        };
        Ok((
            Probes {
                ebpf,
                tracked,
                traced_pids,
                pair_opens: pair_opens != 0,
                lost,
                heap,
                stats,
            },
            ring,
        ))
    }

    /// Starts tracing process `tgid` (and, from then on, the processes it forks).
    pub(crate) fn track(&mut self, tgid: u32) -> Result<(), ProbeError> {
        // SAFETY: TrackedProcess is Pod: all zeroes is an empty slot.
        let empty: TrackedProcess = unsafe { std::mem::zeroed() };
        // The bit first: a traced process whose bit is clear would be missed, while a bit
        // without an entry only costs a lookup. A tgid beyond the array is looked up. Read,
        // set, written back: the kernel changes bits only of processes already traced, and
        // this is the first one.
        let (word, bit) = (tgid / 64, 1u64 << (tgid % 64));
        let set = self
            .traced_pids
            .get(&word, 0)
            .and_then(|bits| self.traced_pids.set(word, bits | bit, 0));
        match set {
            Ok(()) | Err(aya::maps::MapError::OutOfBounds { .. }) => {}
            Err(source) => {
                return Err(ProbeError::Map {
                    map: maps::TRACED_PIDS,
                    source,
                });
            }
        }
        self.tracked
            .insert(tgid, empty, 0)
            .map_err(|source| ProbeError::Map {
                map: maps::TRACKED,
                source,
            })
    }

    /// Attaches the iteration marker to `symbol` in `binary`, for the processes traced.
    pub(crate) fn attach_marker(&mut self, binary: &Path, symbol: &str) -> Result<(), ProbeError> {
        let marker: &mut UProbe = program(&mut self.ebpf, programs::ITERATION_MARKER)?;
        marker
            .attach(symbol, binary, UProbeScope::AllProcesses)
            .map(drop)
            .map_err(|source| ProbeError::Marker {
                symbol: symbol.into(),
                binary: binary.display().to_string(),
                source: Box::new(source),
            })
    }

    /// `--heap`: attaches the allocator programs to `points`, for process `pid` only. An
    /// entry point the kernel refuses is skipped; `malloc` and `free` must attach, else the
    /// error says why. Returns the links, to detach them when the process is gone.
    pub(crate) fn attach_heap(
        &mut self,
        pid: u32,
        points: &[crate::heap::attach::EntryPoint],
    ) -> Result<Vec<HeapLink>, ProbeError> {
        use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint};
        use leakscope_common::heap::{COOKIE_WRAPPER, HeapKind};
        let Some(scope) = std::num::NonZeroU32::new(pid).map(UProbeScope::OneProcess) else {
            return Ok(Vec::new());
        };
        // Order matters in a running process: the frees first, so no block recorded is
        // freed unseen; then the returns, so every entry seen has its return seen too (an
        // entry without its return would stay in flight, and the calls under it would
        // count as nested in it, unrecorded); the entries last.
        // A wrapper (operator new) has no return probe: see `EntryPoint::wrapper`.
        type Wanted = fn(&crate::heap::attach::EntryPoint) -> bool;
        let passes: [(&'static str, Wanted); 3] = [
            (programs::HEAP_FREE, |p| p.kind == HeapKind::Free),
            (programs::HEAP_RETURN, |p| {
                p.kind != HeapKind::Free && !p.wrapper
            }),
            (programs::HEAP_ENTER, |p| p.kind != HeapKind::Free),
        ];
        let mut links = Vec::new();
        // Entries whose return probe attached: an entry without its return would stay in
        // flight forever, and every deeper call would count as nested in it.
        let mut returned: Vec<(&Path, &str)> = Vec::new();
        for (name, wanted) in passes {
            for point in points.iter().filter(|p| wanted(p)) {
                if name == programs::HEAP_ENTER
                    && !point.wrapper
                    && !returned.contains(&(point.object.as_path(), point.symbol))
                {
                    continue;
                }
                let probe: &mut UProbe = program(&mut self.ebpf, name)?;
                let wrapper = if point.wrapper { COOKIE_WRAPPER } else { 0 };
                let at = UProbeAttachPoint {
                    location: UProbeAttachLocation::Symbol(point.symbol),
                    cookie: Some(point.kind as u64 | wrapper),
                };
                match probe.attach(at, &point.object, scope) {
                    Ok(link) => {
                        if name == programs::HEAP_RETURN {
                            returned.push((point.object.as_path(), point.symbol));
                        }
                        links.push(HeapLink {
                            program: name,
                            link,
                        });
                    }
                    Err(source) if matches!(point.symbol, "malloc" | "free") => {
                        return Err(ProbeError::Heap {
                            symbol: point.symbol,
                            binary: point.object.display().to_string(),
                            source: Box::new(source),
                        });
                    }
                    Err(_) => {} // an optional entry point: skipped
                }
            }
        }
        Ok(links)
    }

    /// Detaches heap probes of a process that is gone (each holds an fd and kernel memory).
    pub(crate) fn detach_heap(&mut self, links: Vec<HeapLink>) {
        for HeapLink {
            program: name,
            link,
        } in links
        {
            if let Ok(probe) = program::<UProbe>(&mut self.ebpf, name) {
                let _ = probe.detach(link);
            }
        }
    }

    /// `--heap`: the kernel's heap maps (None without it).
    pub(crate) fn heap_maps(&self) -> Option<&crate::heap::HeapMaps> {
        self.heap.as_ref()
    }

    /// The opens the kernel holds back for pairing right now, one per traced process at
    /// most, each read twice and taken only when both reads are the same sealed open (see
    /// [`TrackedProcess`]): a slot being rewritten is skipped, its open arrives later.
    pub(crate) fn held_opens(&self) -> Vec<PathEvent> {
        if !self.pair_opens {
            return Vec::new();
        }
        // Keys may be visited twice when the kernel removes one meanwhile; bounded by the
        // map's size.
        let mut seen = std::collections::BTreeSet::new();
        let mut opens = Vec::new();
        for tgid in self
            .tracked
            .keys()
            .take(maps::TRACKED_MAX_ENTRIES as usize)
            .filter_map(Result::ok)
        {
            if !seen.insert(tgid) {
                continue;
            }
            let Ok(first) = self.tracked.get(&tgid, 0) else {
                continue;
            };
            if first.held != leakscope_common::HELD_OPEN {
                continue;
            }
            if let Ok(second) = self.tracked.get(&tgid, 0)
                && let Some(open) = crate::session::held::sealed_open(&first, &second)
            {
                opens.push(open);
            }
        }
        opens
    }

    /// The same, by reason (nonzero reasons only, in slot order).
    pub(crate) fn lost_by_reason(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .filter_map(|&reason| {
                let n: u64 = self
                    .lost
                    .get(&reason.slot(), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (n > 0).then_some((reason, n))
            })
            .collect()
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        if self.stats.is_none() {
            return;
        }
        for (name, program) in self.ebpf.programs() {
            if let Ok(info) = program.info() {
                eprintln!(
                    "leakscope-program-stats: {name} run_cnt={} run_time_ns={}",
                    info.run_count(),
                    info.run_time().as_nanos()
                );
            }
        }
    }
}

/// The kernel's highest pid plus one (`/proc/sys/kernel/pid_max`): the pids
/// `TRACED_PIDS` covers. If it cannot be read, the compiled-in size (pids beyond the array are
/// looked up in the hash map, so any size is exact).
fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(maps::TRACED_PIDS_PLACEHOLDER_PIDS)
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(ProbeError::MissingProgram(name))?;
    program.try_into().map_err(|source| ProbeError::Program {
        program: name,
        source: Box::new(source),
    })
}

/// Takes map `name` out of the object as the type `convert` makes of it.
fn typed_map<M>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<M, aya::maps::MapError>,
) -> Result<M, ProbeError> {
    let map = ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))?;
    convert(map).map_err(|source| ProbeError::Map { map: name, source })
}

#[cfg(test)]
#[path = "probes_tests.rs"]
mod tests;
