//! Finds the struct offsets the kernel programs need in the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE field relocations, so instead of compiling a kernel layout into the
//! object, the loader reads `/sys/kernel/btf/vmlinux` once and passes the offsets in as a
//! global. Structs with anonymous inner structs/unions (common in `task_struct`) are
//! searched recursively.

use std::path::Path;

use btf_rs::{Btf, Type};
use leakscope_common::KernelOffsets;
use thiserror::Error;

pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub(crate) enum OffsetsError {
    #[error("the kernel exposes no BTF at {VMLINUX_BTF} (it needs CONFIG_DEBUG_INFO_BTF=y)")]
    NoBtf,
    #[error("cannot read the kernel's BTF: {0}")]
    Parse(String),
    #[error("the kernel's BTF has no `{0}`")]
    Missing(String),
}

impl OffsetsError {
    /// Every way of not finding the offsets is the kernel lacking a feature leakscope needs.
    pub(crate) fn exit_status(&self) -> u8 {
        crate::exit_code::NO_PRIVILEGE_OR_FEATURE
    }
}

/// Reads the offsets from the running kernel. Fork tracking needs `task_struct.tgid`, and
/// telling a process's end from its leader thread's needs `task_struct.signal` and
/// `signal_struct.live`, so their absence is an error; the RSS offsets are optional (RSS is
/// then sampled from /proc).
pub(crate) fn from_running_kernel() -> Result<KernelOffsets, OffsetsError> {
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(OffsetsError::NoBtf);
    }
    let btf = Btf::from_file(VMLINUX_BTF).map_err(|e| OffsetsError::Parse(e.to_string()))?;
    let mut offsets = KernelOffsets {
        task_tgid: member_offset(&btf, "task_struct", "tgid")?,
        task_signal: member_offset(&btf, "task_struct", "signal")?,
        signal_live: member_offset(&btf, "signal_struct", "live")?,
        ..Default::default()
    };
    // Each optional group is found, or left out, on its own: RSS sampling and the
    // "did this open create the file" bit do not depend on each other.
    if let Ok(rss) = rss_offsets(&btf) {
        offsets = rss.fill(offsets);
    }
    if let Ok(f_mode) = f_mode_offsets(&btf) {
        offsets = f_mode.fill(offsets);
    }
    if let Ok(pairing) = pairing_offsets(&btf) {
        offsets = pairing.fill(offsets);
    }
    if let Ok(start) = stack_start_offsets(&btf) {
        offsets = start.fill(offsets);
    }
    if let Ok(image) = exec_image_offsets(&btf) {
        offsets = image.fill(offsets);
    }
    Ok(offsets)
}

/// The offsets that tell whether a process is one task with its own fd table, the
/// condition for holding an open back to pair it with its close.
struct PairingOffsets {
    task_files: u32,
    task_signal: u32,
    signal_nr_threads: u32,
    files_count: u32,
}

impl PairingOffsets {
    fn fill(self, offsets: KernelOffsets) -> KernelOffsets {
        KernelOffsets {
            task_files: self.task_files,
            task_signal: self.task_signal,
            signal_nr_threads: self.signal_nr_threads,
            files_count: self.files_count,
            pairing_available: 1,
            ..offsets
        }
    }
}

fn pairing_offsets(btf: &Btf) -> Result<PairingOffsets, OffsetsError> {
    Ok(PairingOffsets {
        task_files: member_offset(btf, "task_struct", "files")?,
        task_signal: member_offset(btf, "task_struct", "signal")?,
        signal_nr_threads: member_offset(btf, "signal_struct", "nr_threads")?,
        files_count: member_offset(btf, "files_struct", "count")?,
    })
}

/// The offsets that sample RSS in the kernel.
struct RssOffsets {
    task_mm: u32,
    mm_rss_stat: u32,
    percpu_counter_size: u32,
    percpu_counter_count: u32,
}

impl RssOffsets {
    fn fill(self, offsets: KernelOffsets) -> KernelOffsets {
        KernelOffsets {
            task_mm: self.task_mm,
            mm_rss_stat: self.mm_rss_stat,
            percpu_counter_size: self.percpu_counter_size,
            percpu_counter_count: self.percpu_counter_count,
            rss_available: 1,
            ..offsets
        }
    }
}

fn rss_offsets(btf: &Btf) -> Result<RssOffsets, OffsetsError> {
    Ok(RssOffsets {
        task_mm: member_offset(btf, "task_struct", "mm")?,
        mm_rss_stat: member_offset(btf, "mm_struct", "rss_stat")?,
        percpu_counter_size: struct_size(btf, "percpu_counter")?,
        percpu_counter_count: member_offset(btf, "percpu_counter", "count")?,
    })
}

/// The offsets that find where the main thread's stack began (task -> mm -> start_stack),
/// for a stack copy that runs off its end.
struct StackStartOffsets {
    task_mm: u32,
    mm_start_stack: u32,
}

impl StackStartOffsets {
    fn fill(self, offsets: KernelOffsets) -> KernelOffsets {
        KernelOffsets {
            task_mm: self.task_mm,
            mm_start_stack: self.mm_start_stack,
            start_stack_available: 1,
            ..offsets
        }
    }
}

fn stack_start_offsets(btf: &Btf) -> Result<StackStartOffsets, OffsetsError> {
    Ok(StackStartOffsets {
        task_mm: member_offset(btf, "task_struct", "mm")?,
        mm_start_stack: member_offset(btf, "mm_struct", "start_stack")?,
    })
}

/// The offsets that read, at exec, the new program's code range, file name and file
/// identity (task -> mm -> start_code/end_code, bprm -> interp, bprm -> file -> f_inode ->
/// i_ino and i_sb -> s_dev).
struct ExecImageOffsets {
    task_mm: u32,
    mm_start_code: u32,
    mm_end_code: u32,
    binprm_interp: u32,
    binprm_file: u32,
    file_f_inode: u32,
    inode_i_ino: u32,
    inode_i_sb: u32,
    super_block_s_dev: u32,
}

impl ExecImageOffsets {
    fn fill(self, offsets: KernelOffsets) -> KernelOffsets {
        KernelOffsets {
            task_mm: self.task_mm,
            mm_start_code: self.mm_start_code,
            mm_end_code: self.mm_end_code,
            binprm_interp: self.binprm_interp,
            binprm_file: self.binprm_file,
            file_f_inode: self.file_f_inode,
            inode_i_ino: self.inode_i_ino,
            inode_i_sb: self.inode_i_sb,
            super_block_s_dev: self.super_block_s_dev,
            exec_image_available: 1,
            ..offsets
        }
    }
}

fn exec_image_offsets(btf: &Btf) -> Result<ExecImageOffsets, OffsetsError> {
    Ok(ExecImageOffsets {
        task_mm: member_offset(btf, "task_struct", "mm")?,
        mm_start_code: member_offset(btf, "mm_struct", "start_code")?,
        mm_end_code: member_offset(btf, "mm_struct", "end_code")?,
        binprm_interp: member_offset(btf, "linux_binprm", "interp")?,
        binprm_file: member_offset(btf, "linux_binprm", "file")?,
        file_f_inode: member_offset(btf, "file", "f_inode")?,
        inode_i_ino: member_offset(btf, "inode", "i_ino")?,
        inode_i_sb: member_offset(btf, "inode", "i_sb")?,
        super_block_s_dev: member_offset(btf, "super_block", "s_dev")?,
    })
}

/// The offsets that read a new file's `f_mode` (task -> files -> fdt -> fd[] -> f_mode).
struct FModeOffsets {
    task_files: u32,
    files_fdt: u32,
    fdtable_max_fds: u32,
    fdtable_fd: u32,
    file_f_mode: u32,
}

impl FModeOffsets {
    fn fill(self, offsets: KernelOffsets) -> KernelOffsets {
        KernelOffsets {
            task_files: self.task_files,
            files_fdt: self.files_fdt,
            fdtable_max_fds: self.fdtable_max_fds,
            fdtable_fd: self.fdtable_fd,
            file_f_mode: self.file_f_mode,
            f_mode_available: 1,
            ..offsets
        }
    }
}

fn f_mode_offsets(btf: &Btf) -> Result<FModeOffsets, OffsetsError> {
    Ok(FModeOffsets {
        task_files: member_offset(btf, "task_struct", "files")?,
        files_fdt: member_offset(btf, "files_struct", "fdt")?,
        fdtable_max_fds: member_offset(btf, "fdtable", "max_fds")?,
        fdtable_fd: member_offset(btf, "fdtable", "fd")?,
        file_f_mode: member_offset(btf, "file", "f_mode")?,
    })
}

fn find_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct, OffsetsError> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|_| OffsetsError::Missing(name.into()))?;
    types
        .into_iter()
        .find_map(|t| match t {
            // Skip forward declarations: the full definition has members.
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| OffsetsError::Missing(name.into()))
}

fn struct_size(btf: &Btf, name: &str) -> Result<u32, OffsetsError> {
    Ok(find_struct(btf, name)?.size() as u32)
}

/// Byte offset of `field` in struct `name`.
pub(crate) fn member_offset(btf: &Btf, name: &str, field: &str) -> Result<u32, OffsetsError> {
    let ty = find_struct(btf, name)?;
    find_member_bits(btf, &ty, field)
        .map(|bits| bits / 8)
        .ok_or_else(|| OffsetsError::Missing(format!("{name}.{field}")))
}

fn find_member_bits(btf: &Btf, ty: &btf_rs::Struct, field: &str) -> Option<u32> {
    for member in &ty.members {
        let name = btf.resolve_name(member).unwrap_or_default();
        if name == field {
            return Some(member.bit_offset());
        }
        if name.is_empty() {
            // An anonymous struct or union: its members live at its offset plus theirs.
            if let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(member)
                && let Some(bits) = find_member_bits(btf, &inner, field)
            {
                return Some(member.bit_offset() + bits);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads this machine's kernel BTF when it has one (every supported kernel does), and
    /// checks the offsets are plausible: tgid follows pid, and both live well inside the
    /// task.
    #[test]
    fn running_kernel_offsets_are_plausible() {
        if !Path::new(VMLINUX_BTF).exists() {
            eprintln!("no kernel BTF here; skipping");
            return;
        }
        let offsets = from_running_kernel().unwrap();
        let btf = Btf::from_file(VMLINUX_BTF).unwrap();
        let pid = member_offset(&btf, "task_struct", "pid").unwrap();
        assert_eq!(
            offsets.task_tgid,
            pid + 4,
            "tgid directly follows pid in task_struct"
        );
        assert_eq!(offsets.rss_available, 1);
        assert!(offsets.percpu_counter_size >= 8);
        assert_eq!(offsets.f_mode_available, 1);
        // struct fdtable { unsigned int max_fds; struct file __rcu **fd; ... }
        assert_eq!((offsets.fdtable_max_fds, offsets.fdtable_fd), (0, 8));
        // struct files_struct { atomic_t count; ... }: the first member.
        assert_eq!(offsets.pairing_available, 1);
        assert_eq!(offsets.files_count, 0);
        assert!(offsets.task_signal > 0 && offsets.signal_nr_threads > 0);
        // struct signal_struct { refcount_t sigcnt; atomic_t live; ... }
        assert_eq!(offsets.signal_live, 4);
        assert_eq!(offsets.start_stack_available, 1);
        // start_stack follows the code and data bounds in mm_struct: well inside it.
        assert!(offsets.mm_start_stack > 0 && offsets.mm_start_stack.is_multiple_of(8));
        // unsigned long start_code, end_code, start_data, ...: adjacent, before start_stack.
        assert_eq!(offsets.exec_image_available, 1);
        assert_eq!(offsets.mm_end_code, offsets.mm_start_code + 8);
        assert!(offsets.mm_start_code < offsets.mm_start_stack);
        assert!(offsets.binprm_interp.is_multiple_of(8));
    }
}
