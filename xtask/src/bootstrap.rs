//! Installs what building Rust eBPF needs on a fresh machine, skipping what is there.
//!
//! The facts behind each step (nightly's rust-src for build-std; bpf-linker linked against
//! nightly's own libLLVM because the distribution's LLVM is older) are in the project's
//! toolchain notes.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::shell::{self, output, step};

pub(crate) fn ensure_toolchain() -> Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    // The probes are raw tracepoints and uprobes only, which need neither tracefs nor
    // debugfs; nothing to mount.
    Ok(())
}

fn ensure_nightly() -> Result<()> {
    if output("rustc", &["+nightly", "--version"]).is_some() {
        return Ok(());
    }
    step("installing the nightly toolchain (the eBPF side needs -Z build-std)");
    shell::status(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
        .context("no nightly toolchain and rustup could not install one; install it with `rustup toolchain install nightly`")
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if installed.lines().any(|line| line.starts_with("rust-src")) {
        return Ok(());
    }
    step("installing rust-src for nightly (build-std compiles core for the BPF target)");
    shell::status(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
    .context("fix: `rustup component add rust-src --toolchain nightly`")
}

/// The LLVM major version of the nightly compiler, e.g. 22.
fn nightly_llvm_major() -> Result<u32> {
    let verbose = output("rustc", &["+nightly", "-vV"]).context("`rustc +nightly -vV` failed")?;
    let version = verbose
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` printed no LLVM version")?;
    version
        .split('.')
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .context("unreadable LLVM version")
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

fn ensure_bpf_linker() -> Result<()> {
    // A working binary runs; one whose libLLVM went away with an old nightly does not.
    if output("bpf-linker", &["--version"]).is_some() {
        return Ok(());
    }
    let llvm_major = nightly_llvm_major()?;
    let sysroot = output("rustc", &["+nightly", "--print", "sysroot"])
        .context("`rustc +nightly --print sysroot` failed")?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libLLVM.so.") && name.contains("-rust-"))
        })
        .with_context(|| {
            format!(
                "nightly ships no libLLVM in {}; bpf-linker needs one",
                lib_dir.display()
            )
        })?;

    // bpf-linker's RUNPATH points here, so it must outlive this build: under CARGO_HOME.
    let prefix = cargo_home().join("leakscope-llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("cannot create {}", prefix_lib.display()))?;
    for link in [
        prefix_lib.join("libLLVM.so"),
        prefix_lib.join(libllvm.file_name().unwrap()),
    ] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    step(&format!(
        "installing bpf-linker against nightly's own LLVM {llvm_major} ({}); takes about a minute",
        libllvm.display()
    ));
    let feature = format!("llvm-{llvm_major}");
    // A build step like any other: its compiler output appears only if it fails.
    let result = shell::quiet(
        Command::new("cargo")
            .args([
                "install",
                "--quiet",
                "bpf-linker",
                "--no-default-features",
                "--features",
                &feature,
                "--locked",
            ])
            .env("LLVM_PREFIX", &prefix),
    );
    if let Err(error) = result {
        bail!(
            "{error:#}\nfix: check that crates.io is reachable and that bpf-linker has an `{feature}` feature \
             (see the toolchain notes), then run the same `cargo install` by hand"
        );
    }
    if output("bpf-linker", &["--version"]).is_none() {
        bail!(
            "bpf-linker was installed but does not run; is {} on PATH?",
            cargo_home().join("bin").display()
        );
    }
    Ok(())
}

/// The integration tests compile C and C++ fixtures and run Python and Node ones; they
/// check the completion scripts with each shell, render the man pages with `man` and open
/// the HTML report in headless `chromium`.
pub(crate) fn ensure_fixture_tools() -> Result<()> {
    for (program, package) in [
        ("cc", "gcc"),
        ("g++", "g++"),
        ("python3", "python3"),
        ("node", "nodejs"),
        ("strace", "strace"),
        ("zsh", "zsh"),
        ("fish", "fish"),
        ("man", "man-db"),
        ("chromium", "chromium"),
    ] {
        if output("which", &[program]).is_some() {
            continue;
        }
        step(&format!(
            "installing {package} (the integration tests and the bench use `{program}`)"
        ));
        let _ = shell::status(Command::new("apt-get").args(["update", "-qq"]));
        shell::status(Command::new("apt-get").args(["install", "-y", "-qq", package]))
            .with_context(|| format!("fix: install `{package}` with your package manager"))?;
    }
    Ok(())
}
