//! Rebuilds the eBPF programs when bpf-linker changes.
//!
//! rustc links the BPF target with the `bpf-linker` it finds on PATH, a tool cargo does not
//! track. When that binary is replaced (`cargo xtask` reinstalls it when a new nightly's LLVM
//! leaves the old one unable to start), the object must be linked again, so this script names it
//! with `rerun-if-changed`, as aya-template's ebpf/build.rs does. Its mtime is the key: a
//! different bpf-linker put earlier on PATH is not noticed, because watching PATH and all its
//! directories would rebuild far too often.
//!
//! This runs twice per build: for the inner nightly build of the object (the one that links
//! with bpf-linker), and for the host build of this crate's library that `tool/` names as a
//! build-dependency, which makes tool/build.rs run that inner build again.

use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    match which::which("bpf-linker") {
        Ok(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        // None yet (AYA_BUILD_SKIP work needs none, and the link fails without one). Watch the
        // directory `cargo install` puts it in (see xtask/src/bootstrap.rs), so that once it
        // appears there this script runs again and starts watching the binary itself.
        Err(_) => {
            if let Some(bin) = cargo_bin_dir().filter(|dir| dir.is_dir()) {
                println!("cargo:rerun-if-changed={}", bin.display());
            }
        }
    }
}

/// `$CARGO_HOME/bin`, where `cargo install` puts binaries.
fn cargo_bin_dir() -> Option<PathBuf> {
    let home = match env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home),
        None => env::home_dir()?.join(".cargo"),
    };
    Some(home.join("bin"))
}
