//! The loader's view of the kernel object: every map, program and global under its shared
//! name and size, and a refused load's message.

use super::*;
use aya_obj::{Object, ProgramSection, generated::bpf_map_type};
use leakscope_common::KernelOffsets;

#[test]
fn a_refused_load_names_aya_s_cause_once() {
    let error = load_refused(aya::EbpfError::MapError(aya::maps::MapError::KeyNotFound));
    assert_eq!(
        error.exit_status(),
        crate::exit_code::NO_PRIVILEGE_OR_FEATURE
    );
    assert_eq!(
        format!("{:#}", anyhow::Error::from(error)),
        "loading the eBPF programs was refused: key not found"
    );
}

/// The object as the loader sees it before anything reaches the kernel.
fn parsed_object() -> Option<Object> {
    if OBJECT.is_empty() {
        // AYA_BUILD_SKIP: there is no object; `leakscope` itself says so at run time.
        eprintln!("built with AYA_BUILD_SKIP: no eBPF object to check");
        return None;
    }
    Some(Object::parse(OBJECT).expect("the embedded eBPF object parses"))
}

#[test]
fn every_map_is_found_under_its_shared_name_with_its_shared_size() {
    let Some(object) = parsed_object() else {
        return;
    };
    for (name, map_type, max_entries) in [
        (
            maps::TRACKED,
            bpf_map_type::BPF_MAP_TYPE_HASH,
            maps::TRACKED_MAX_ENTRIES,
        ),
        (
            maps::EVENTS,
            bpf_map_type::BPF_MAP_TYPE_RINGBUF,
            maps::EVENTS_PLACEHOLDER_BYTES,
        ),
        (
            maps::LOST,
            bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY,
            maps::LOST_MAX_ENTRIES,
        ),
        (
            maps::USTACK_SCRATCH,
            bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY,
            maps::USTACK_SCRATCH_MAX_ENTRIES,
        ),
        (
            maps::STACK_BUCKET,
            bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY,
            maps::STACK_BUCKET_MAX_ENTRIES,
        ),
        (
            maps::PATH_SCRATCH,
            bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY,
            maps::PATH_SCRATCH_MAX_ENTRIES,
        ),
        (
            maps::EMPTY_PROCESS,
            bpf_map_type::BPF_MAP_TYPE_ARRAY,
            maps::EMPTY_PROCESS_MAX_ENTRIES,
        ),
        (
            maps::TRACED_PIDS,
            bpf_map_type::BPF_MAP_TYPE_ARRAY,
            maps::traced_pids_words(maps::TRACED_PIDS_PLACEHOLDER_PIDS),
        ),
        (
            maps::HEAP_INFLIGHT,
            bpf_map_type::BPF_MAP_TYPE_HASH,
            maps::HEAP_INFLIGHT_MAX_ENTRIES,
        ),
        (
            maps::HEAP_LIVE,
            bpf_map_type::BPF_MAP_TYPE_HASH,
            maps::HEAP_LIVE_MAX_ENTRIES,
        ),
        (
            maps::HEAP_TOTALS,
            bpf_map_type::BPF_MAP_TYPE_HASH,
            maps::HEAP_TOTALS_MAX_ENTRIES,
        ),
    ] {
        let map = object
            .maps
            .get(name)
            .unwrap_or_else(|| panic!("map {name} is missing from the object"));
        assert_eq!(map.map_type(), map_type as u32, "type of {name}");
        assert_eq!(map.max_entries(), max_entries, "size of {name}");
    }
}

#[test]
fn every_program_is_found_under_its_shared_name() {
    let Some(object) = parsed_object() else {
        return;
    };
    let section = |name: &str| {
        &object
            .programs
            .get(name)
            .unwrap_or_else(|| panic!("program {name} is missing from the object"))
            .section
    };
    for raw in programs::RAW_TRACEPOINTS {
        assert!(
            matches!(section(raw.program), ProgramSection::RawTracePoint),
            "{} is no raw tracepoint",
            raw.program
        );
    }
    for tp in programs::BTF_TRACEPOINTS {
        assert!(
            matches!(section(tp.program), ProgramSection::BtfTracePoint),
            "{} is no BTF tracepoint",
            tp.program
        );
    }
    for name in [
        programs::ITERATION_MARKER,
        programs::HEAP_ENTER,
        programs::HEAP_FREE,
    ] {
        assert!(
            matches!(section(name), ProgramSection::UProbe { sleepable: false }),
            "{name} is no uprobe"
        );
    }
    assert!(matches!(
        section(programs::HEAP_RETURN),
        ProgramSection::URetProbe { sleepable: false }
    ));
}

#[test]
fn the_offsets_global_is_found_under_its_shared_name_with_its_size() {
    let Some(mut object) = parsed_object() else {
        return;
    };
    let offsets = KernelOffsets::default();
    // SAFETY: KernelOffsets is repr(C) plain data without padding (a layout guard in
    // leakscope-common checks its size).
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&offsets as *const KernelOffsets).cast::<u8>(),
            size_of::<KernelOffsets>(),
        )
    };
    let pair_opens = 1u32.to_ne_bytes();
    let stack_bytes = leakscope_common::USTACK_DEFAULT_BYTES.to_ne_bytes();
    let stack_rate = leakscope_common::USTACK_DEFAULT_RATE.to_ne_bytes();
    let heap_on = 0u32.to_ne_bytes();
    // What `override_global(.., must_exist = true)` does at load: the symbol must exist
    // and have exactly this size.
    object
        .patch_map_data(std::collections::HashMap::from([
            (globals::OFFSETS, (bytes, true)),
            (globals::PAIR_OPENS, (&pair_opens[..], true)),
            (globals::STACK_BYTES, (&stack_bytes[..], true)),
            (globals::STACK_RATE, (&stack_rate[..], true)),
            (globals::HEAP_ON, (&heap_on[..], true)),
        ]))
        .expect("the object has every global the loader sets, of its size");
}
