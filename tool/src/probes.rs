//! Loads leakscope's kernel programs, attaches them, and exposes their maps.
//!
//! One [`Probes`] value owns everything in the kernel: dropping it detaches the programs and
//! frees the maps, so an early error can never leave probes behind.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{RawTracePoint, UProbe, uprobe::UProbeScope},
};
use leakscope_common::{DropReason, KernelOffsets};
use thiserror::Error;

use crate::kernel_offsets::{self, OffsetsError};

/// The eBPF object built by build.rs from ebpf/.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/leakscope"));

/// Raw tracepoints, attached by name; none needs tracefs.
const TRACEPOINTS: [&str; 4] = [
    "sys_exit",
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
];

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(
        "this binary was built without its eBPF programs (AYA_BUILD_SKIP); rebuild with `cargo xtask build`"
    )]
    NoObject,
    #[error("{0}")]
    Offsets(#[from] OffsetsError),
    #[error("loading the eBPF programs was refused: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused eBPF program `{program}`: {source}")]
    Program {
        program: &'static str,
        // Boxed: aya's error is large, and every fallible loader call returns this type.
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF program `{0}` is missing from the object: the build is inconsistent")]
    MissingProgram(&'static str),
    #[error("eBPF map `{0}` is missing from the object: the build is inconsistent")]
    MissingMap(&'static str),
    #[error("eBPF map `{map}`: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("cannot attach the iteration marker to `{symbol}` in {binary}: {source}")]
    Marker {
        symbol: String,
        binary: String,
        source: Box<aya::programs::ProgramError>,
    },
}

impl ProbeError {
    /// Whether the failure is the kernel saying no (missing privilege or feature), which
    /// the contract maps to exit status 4, rather than a bug or a bad argument.
    pub fn is_kernel_refusal(&self) -> bool {
        match self {
            ProbeError::Offsets(_) | ProbeError::Load(_) | ProbeError::Program { .. } => true,
            ProbeError::Map { source, .. } => {
                matches!(source, aya::maps::MapError::CreateError { .. })
            }
            _ => false,
        }
    }
}

pub struct ProbeOptions {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
}

pub struct Probes {
    ebpf: Ebpf,
    tracked: HashMap<MapData, u32, u8>,
    lost: PerCpuArray<MapData, u64>,
    stacks: StackTraceMap<MapData>,
    pub offsets: KernelOffsets,
}

impl Probes {
    /// Loads and attaches every program. After this returns, the kernel reports any
    /// process added with [`Probes::track`].
    pub fn load(options: &ProbeOptions) -> Result<(Probes, RingBuf<MapData>), ProbeError> {
        if OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        let offsets = kernel_offsets::from_running_kernel()?;
        let mut ebpf = EbpfLoader::new()
            .override_global("OFFSETS", &offsets, true)
            .map_max_entries("EVENTS", options.ring_bytes)
            .load(OBJECT)
            .map_err(ProbeError::Load)?;
        for name in TRACEPOINTS {
            let program: &mut RawTracePoint = program(&mut ebpf, name)?;
            program.load().map_err(|source| ProbeError::Program {
                program: name,
                source: Box::new(source),
            })?;
            program.attach(name).map_err(|source| ProbeError::Program {
                program: name,
                source: Box::new(source),
            })?;
        }
        let marker: &mut UProbe = program(&mut ebpf, "iteration_marker")?;
        marker.load().map_err(|source| ProbeError::Program {
            program: "iteration_marker",
            source: Box::new(source),
        })?;

        let ring = RingBuf::try_from(take_map(&mut ebpf, "EVENTS")?).map_err(|source| {
            ProbeError::Map {
                map: "EVENTS",
                source,
            }
        })?;
        let tracked = HashMap::try_from(take_map(&mut ebpf, "TRACKED")?).map_err(|source| {
            ProbeError::Map {
                map: "TRACKED",
                source,
            }
        })?;
        let lost = PerCpuArray::try_from(take_map(&mut ebpf, "LOST")?).map_err(|source| {
            ProbeError::Map {
                map: "LOST",
                source,
            }
        })?;
        let stacks = StackTraceMap::try_from(take_map(&mut ebpf, "STACKS")?).map_err(|source| {
            ProbeError::Map {
                map: "STACKS",
                source,
            }
        })?;
        Ok((
            Probes {
                ebpf,
                tracked,
                lost,
                stacks,
                offsets,
            },
            ring,
        ))
    }

    /// Starts tracing process `tgid` (and, from then on, the processes it forks).
    pub fn track(&mut self, tgid: u32) -> Result<(), ProbeError> {
        self.tracked
            .insert(tgid, 0, 0)
            .map_err(|source| ProbeError::Map {
                map: "TRACKED",
                source,
            })
    }

    /// Attaches the iteration marker to `symbol` in `binary`, for the processes traced.
    pub fn attach_marker(&mut self, binary: &Path, symbol: &str) -> Result<(), ProbeError> {
        let marker: &mut UProbe = program(&mut self.ebpf, "iteration_marker")?;
        marker
            .attach(symbol, binary, UProbeScope::AllProcesses)
            .map(drop)
            .map_err(|source| ProbeError::Marker {
                symbol: symbol.into(),
                binary: binary.display().to_string(),
                source: Box::new(source),
            })
    }

    /// Records the kernel dropped or could only half-record, every reason together,
    /// summed over CPUs. Nonzero means the ledger is incomplete, and the report says so.
    pub fn lost_events(&self) -> u64 {
        self.lost_by_reason().iter().map(|(_, n)| n).sum()
    }

    /// The same, by reason (nonzero reasons only, in slot order).
    pub fn lost_by_reason(&self) -> Vec<(DropReason, u64)> {
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

    /// The user-stack instruction pointers recorded under `stack_id`, innermost first.
    pub fn user_stack(&self, stack_id: u32) -> Vec<u64> {
        self.stacks
            .get(&stack_id, 0)
            .map(|trace| trace.frames().iter().map(|frame| frame.ip).collect())
            .unwrap_or_default()
    }

    /// Whether RSS is sampled in the kernel (the BTF had the mm offsets).
    pub fn samples_rss(&self) -> bool {
        self.offsets.rss_available != 0
    }
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

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, ProbeError> {
    ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))
}
