//! Compiles the C fixtures (fixtures/*.c) into OUT_DIR/fixtures, with frame pointers so
//! leakscope can walk their stacks.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("fixtures");
    fs::create_dir_all(&out).unwrap();
    let compiler = cc::Build::new().get_compiler();
    println!("cargo:rerun-if-changed=fixtures");
    for entry in fs::read_dir("fixtures").unwrap() {
        let source = entry.unwrap().path();
        if source.extension().is_none_or(|ext| ext != "c") {
            continue;
        }
        let name = source.file_stem().unwrap();
        let status = compiler
            .to_command()
            .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(out.join(name))
            .arg(&source)
            .status()
            .expect("cannot run the C compiler");
        assert!(status.success(), "compiling {} failed", source.display());
    }
    // fixtures/nofp: built the ordinary way (-O2, no frame pointers), as distro and
    // release builds are; C++ with g++. Into the same directory as the others.
    for entry in fs::read_dir("fixtures/nofp").unwrap() {
        let source = entry.unwrap().path();
        let cxx = match source.extension().and_then(|ext| ext.to_str()) {
            Some("c") => false,
            Some("cpp") => true,
            _ => continue,
        };
        let mut command = if cxx {
            std::process::Command::new("g++")
        } else {
            compiler.to_command()
        };
        let status = command
            .args(["-O2", "-g", "-fomit-frame-pointer", "-pthread", "-o"])
            .arg(out.join(source.file_stem().unwrap()))
            .arg(&source)
            .status()
            .expect("cannot run the C/C++ compiler");
        assert!(status.success(), "compiling {} failed", source.display());
    }
    println!("cargo:rustc-env=FIXTURE_DIR={}", out.display());
}
