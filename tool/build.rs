//! Builds the eBPF programs (ebpf/) with the nightly toolchain and leaves the object in
//! OUT_DIR for `include_bytes_aligned!`. See ../shared toolchain notes for why nightly.
use std::{env, fs, path::PathBuf};

use anyhow::Context as _;
// The eBPF crate is a build-dependency only so that cargo builds it first and reruns this
// script when it changes (aya-template's layout); nothing of it is used here.
use leakscope_ebpf as _;

fn main() -> anyhow::Result<()> {
    // `AYA_BUILD_SKIP=1` lets pure-logic work build without nightly or bpf-linker; the
    // binary then reports at run time that it has no probes.
    let skipped =
        env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skipped {
        let out = PathBuf::from(env::var("OUT_DIR")?).join("leakscope");
        if !out.exists() {
            fs::write(&out, []).context("writing the empty eBPF placeholder")?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    let metadata_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../ebpf");
    let ebpf = aya_build::Package {
        name: "leakscope-ebpf",
        root_dir: metadata_root.to_str().context("non-UTF-8 path to ebpf/")?,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default()).context(
        "building the eBPF programs (ebpf/) failed; the compiler's messages are the \
         `cargo:warning=` lines above (aya-build forwards the inner nightly build's output so)",
    )
}
