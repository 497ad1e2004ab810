//! Compiles the C fixtures into OUT_DIR/fixtures: fixtures/*.c with frame pointers (-O1), as
//! the first tests were written for a frame-pointer walk; fixtures/nofp/*.c the way
//! distributions build (-O2, no frame pointers), for the tests that unwind with CFI; and
//! fixtures/rust/*.rs as a Rust release build (no frame pointers, no debug info).
use std::{
    env, fs,
    path::{Path, PathBuf},
};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("fixtures");
    println!("cargo:rerun-if-changed=fixtures");
    println!("cargo:rerun-if-changed=fixtures/nofp");
    compile_all(
        Path::new("fixtures"),
        &out,
        &["-O1", "-g", "-fno-omit-frame-pointer", "-pthread"],
    );
    compile_all(
        Path::new("fixtures/nofp"),
        &out.join("nofp"),
        &["-O2", "-g", "-fomit-frame-pointer", "-pthread"],
    );
    compile_rust(Path::new("fixtures/rust"), &out.join("rust"));
    println!("cargo:rustc-env=FIXTURE_DIR={}", out.display());
}

/// Every `*.rs` of `sources` into a program of its name in `out`, as `cargo build --release`
/// builds a program: optimized, no debug info, and no frame pointers. Not a `[[bin]]` of
/// this crate: the workspace's `.cargo/config.toml` forces frame pointers on its crates.
fn compile_rust(sources: &Path, out: &Path) {
    println!("cargo:rerun-if-changed={}", sources.display());
    fs::create_dir_all(out).unwrap();
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    for entry in fs::read_dir(sources).unwrap() {
        let source = entry.unwrap().path();
        if source.extension().and_then(|ext| ext.to_str()) != Some("rs") {
            continue;
        }
        let status = std::process::Command::new(&rustc)
            .args([
                "--edition",
                "2024",
                "-C",
                "opt-level=3",
                "-C",
                "strip=debuginfo",
            ])
            .arg("-o")
            .arg(out.join(source.file_stem().unwrap()))
            .arg(&source)
            // The workspace's flags (frame pointers) are not this program's.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .status()
            .expect("cannot run rustc");
        assert!(status.success(), "compiling {} failed", source.display());
    }
}

/// Every `*.c` and `*.cpp` of `sources` into a program of its name in `out`.
fn compile_all(sources: &Path, out: &Path, flags: &[&str]) {
    fs::create_dir_all(out).unwrap();
    let compiler = cc::Build::new().get_compiler();
    for entry in fs::read_dir(sources).unwrap() {
        let source = entry.unwrap().path();
        // C++ fixtures (new/delete) go through g++, with the same flags.
        let mut command = match source.extension().and_then(|ext| ext.to_str()) {
            Some("c") => compiler.to_command(),
            Some("cpp") => std::process::Command::new("g++"),
            _ => continue,
        };
        let name = source.file_stem().unwrap();
        let status = command
            .args(flags)
            .arg("-o")
            .arg(out.join(name))
            .arg(&source)
            .status()
            .expect("cannot run the C/C++ compiler");
        assert!(status.success(), "compiling {} failed", source.display());
    }
}
