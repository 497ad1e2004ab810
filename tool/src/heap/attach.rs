//! `--heap`: which objects of the target define allocator entry points, and the uprobes on
//! them, scoped to the one process (a machine-wide uprobe would trap every malloc on the
//! host).
//!
//! The objects are the executable, and the shared libraries it needs (its `DT_NEEDED`, and
//! theirs), found as the dynamic loader finds them: the executable's RUNPATH/RPATH, then
//! the system's library directories. For a process that is already running, its mapped
//! executable objects instead.

use std::path::{Path, PathBuf};

use leakscope_common::heap::{HeapKind, SYMBOLS};
use object::{Object, ObjectSymbol, SymbolKind};

/// One allocator entry point found in an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryPoint {
    pub(crate) object: PathBuf,
    pub(crate) symbol: &'static str,
    pub(crate) kind: HeapKind,
    /// Traced at entry only, lending its caller to the allocator call inside it
    /// (`leakscope_common::heap::COOKIE_WRAPPER`): C++ `operator new` from libstdc++, which
    /// may throw, and an exception cannot unwind through a uretprobe's frame.
    pub(crate) wrapper: bool,
}

/// Defined by the C++ runtime only (libstdc++, libc++, or a binary that links one in
/// statically): its `operator new` calls `malloc` (or `aligned_alloc`), traced. Any other
/// `operator new` (a program's own, tcmalloc's, jemalloc's, mimalloc's `mi_new`) may
/// allocate without a traced call, so it keeps its return probe, or its blocks would go
/// unseen. (An exception thrown out of such a `new` then ends the program: see the
/// README's limitations.)
const CXX_RUNTIME_MARK: &str = "_ZSt15get_new_handlerv";

/// Allocators that replace `operator new` even where the C++ runtime is linked in.
const NEW_WITHOUT_MALLOC: &[&str] = &[
    "tc_malloc",
    "je_malloc",
    "mallocx",
    "_rjem_malloc",
    "mi_malloc",
    "mi_new",
];

/// Libraries looked at, at most: a dependency graph is rarely deeper than a few dozen.
const MAX_OBJECTS: usize = 64;

/// Where the dynamic loader looks after RUNPATH (x86_64 Debian and Fedora layouts).
const SYSTEM_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// The executable and the libraries it loads at start, each once, the executable first.
pub(crate) fn objects_of_executable(executable: &Path) -> Vec<PathBuf> {
    let mut found = vec![executable.to_path_buf()];
    let mut next = 0;
    while next < found.len() && found.len() < MAX_OBJECTS {
        let object = found[next].clone();
        next += 1;
        let Ok(data) = std::fs::read(&object) else {
            continue;
        };
        let Ok(file) = object::File::parse(&*data) else {
            continue;
        };
        let (needed, search) = dynamic_entries(&file, &object);
        for library in needed {
            if let Some(path) = find_library(&library, &search)
                && !found.iter().any(|f| same_file(f, &path))
            {
                found.push(path);
            }
        }
    }
    found
}

/// The executable objects process `pid` has mapped now.
pub(crate) fn objects_of_process(pid: u32) -> Vec<PathBuf> {
    let Ok(maps) = procfs::process::Process::new(pid as i32).and_then(|p| p.maps()) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = Vec::new();
    for map in maps {
        if let procfs::process::MMapPath::Path(path) = map.pathname
            && map.perms.contains(procfs::process::MMPermissions::EXECUTE)
            && !found.contains(&path)
        {
            // Through the process's root, so a container's libraries are the ones read.
            found.push(path);
        }
    }
    found
}

/// The allocator entry points each object defines (absent ones are skipped).
pub(crate) fn entry_points(objects: &[PathBuf]) -> Vec<EntryPoint> {
    let mut points = Vec::new();
    for object in objects {
        let Ok(data) = std::fs::read(object) else {
            continue;
        };
        let Ok(file) = object::File::parse(&*data) else {
            continue;
        };
        let defined: std::collections::HashSet<&str> = file
            .dynamic_symbols()
            .chain(file.symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| s.name().ok())
            .collect();
        // `new` only lends its caller where the C++ runtime defines it.
        let runtime_new = defined.contains(CXX_RUNTIME_MARK)
            && !NEW_WITHOUT_MALLOC.iter().any(|s| defined.contains(s));
        for &(symbol, kind) in SYMBOLS {
            if defined.contains(symbol) {
                points.push(EntryPoint {
                    object: object.clone(),
                    symbol,
                    kind,
                    wrapper: HeapKind::may_throw(symbol) && runtime_new,
                });
            }
        }
    }
    points
}

/// Whether `points` can pair allocations with frees at all: `malloc` and `free` both
/// found. Else the reason, for the one line `--heap` exits with.
pub(crate) fn check_usable(points: &[EntryPoint], objects: &[PathBuf]) -> Result<(), String> {
    let has = |name: &str| points.iter().any(|p| p.symbol == name);
    let missing: Vec<&str> = ["malloc", "free"]
        .into_iter()
        .filter(|name| !has(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let looked: Vec<String> = objects.iter().map(|o| o.display().to_string()).collect();
    Err(format!(
        "--heap: no `{}` found in the target's objects ({}); is it statically linked and stripped?",
        missing.join("` or `"),
        if looked.is_empty() {
            "none readable".to_string()
        } else {
            looked.join(", ")
        }
    ))
}

/// `DT_NEEDED` names and the directories RUNPATH/RPATH add (with `$ORIGIN` expanded).
fn dynamic_entries(file: &object::File, path: &Path) -> (Vec<String>, Vec<PathBuf>) {
    use object::read::elf::{Dyn as _, FileHeader as _};
    let object::File::Elf64(elf) = file else {
        return (Vec::new(), Vec::new());
    };
    let endian = elf.endian();
    let data = elf.data();
    let Ok(sections) = elf.elf_header().sections(endian, data) else {
        return (Vec::new(), Vec::new());
    };
    let Ok(Some((entries, link))) = sections.dynamic(endian, data) else {
        return (Vec::new(), Vec::new());
    };
    let Ok(strings) = sections.strings(endian, data, link) else {
        return (Vec::new(), Vec::new());
    };
    let origin = path.parent().unwrap_or(Path::new("/"));
    let (mut needed, mut search) = (Vec::new(), Vec::new());
    for entry in entries {
        let tag: i64 = entry.d_tag(endian);
        if !matches!(
            tag,
            object::elf::DT_NEEDED | object::elf::DT_RUNPATH | object::elf::DT_RPATH
        ) {
            continue;
        }
        let Ok(text) = entry.string(endian, strings) else {
            continue;
        };
        let text = String::from_utf8_lossy(text).into_owned();
        match tag {
            object::elf::DT_NEEDED => needed.push(text),
            object::elf::DT_RUNPATH | object::elf::DT_RPATH => {
                for dir in text.split(':').filter(|d| !d.is_empty()) {
                    let dir = dir
                        .replace("${ORIGIN}", &origin.to_string_lossy())
                        .replace("$ORIGIN", &origin.to_string_lossy());
                    search.push(PathBuf::from(dir));
                }
            }
            _ => {}
        }
    }
    (needed, search)
}

fn find_library(name: &str, search: &[PathBuf]) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| p.exists());
    }
    let ld_library_path: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    search
        .iter()
        .chain(ld_library_path.iter())
        .cloned()
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc() -> Option<PathBuf> {
        objects_of_executable(&std::env::current_exe().unwrap())
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == "libc.so.6"))
    }

    #[test]
    fn the_test_binary_needs_libc_and_libc_defines_malloc_and_free() {
        let libc = libc().expect("this test binary links libc.so.6");
        let points = entry_points(std::slice::from_ref(&libc));
        for (symbol, kind) in [
            ("malloc", HeapKind::Malloc),
            ("free", HeapKind::Free),
            ("calloc", HeapKind::Calloc),
            ("realloc", HeapKind::Realloc),
            ("posix_memalign", HeapKind::PosixMemalign),
        ] {
            assert!(
                points.iter().any(|p| p.symbol == symbol && p.kind == kind),
                "{symbol} in {}",
                libc.display()
            );
        }
        assert!(check_usable(&points, &[libc]).is_ok());
    }

    #[test]
    fn libstdcxx_defines_operator_new_and_delete() {
        let Some(libstdcxx) = SYSTEM_DIRS
            .iter()
            .map(|d| Path::new(d).join("libstdc++.so.6"))
            .find(|p| p.is_file())
        else {
            eprintln!("no libstdc++.so.6 here");
            return;
        };
        let points = entry_points(&[libstdcxx]);
        assert!(
            points
                .iter()
                .any(|p| p.symbol == "_Znwm" && p.kind == HeapKind::Malloc)
        );
        assert!(
            points
                .iter()
                .any(|p| p.symbol == "_ZdlPv" && p.kind == HeapKind::Free)
        );
        // libstdc++'s `new` calls malloc, and may throw: traced as a wrapper, at entry only.
        for point in &points {
            assert_eq!(
                point.wrapper,
                HeapKind::may_throw(point.symbol),
                "{point:?}"
            );
        }
        assert!(
            points
                .iter()
                .any(|p| p.symbol == "_ZnwmRKSt9nothrow_t" && p.wrapper)
        );
    }

    #[test]
    fn without_malloc_and_free_heap_tracing_refuses_with_what_was_searched() {
        let objects = [PathBuf::from("/bin/prog")];
        let error = check_usable(&[], &objects).unwrap_err();
        assert!(error.contains("`malloc` or `free`"), "{error}");
        assert!(error.contains("/bin/prog"), "{error}");
    }
}
