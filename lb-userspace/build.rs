//! Builds the XDP object from `xdp-ebpf/` and copies it into OUT_DIR, where
//! `src/object.rs` embeds it.
#[path = "build/ebpf.rs"]
mod ebpf;

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let root = manifest.join("..");
    for dir in ["xdp-ebpf", "xdp-common", "lb-userspace/build"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // cargo-fuzz builds (`--cfg fuzzing`) exercise the grammar and the
    // configuration, never load the program: no BPF toolchain under the
    // sanitizer, and an empty object that no loader would take.
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        fs::write(out.join(ebpf::PACKAGE), b"").expect("write an empty object into OUT_DIR");
        return;
    }
    let object = match ebpf::build(&root.join("xdp-ebpf"), &out.join("ebpf-target")) {
        Ok(object) => object,
        Err(err) => panic!("{err}"),
    };
    fs::copy(&object, out.join(ebpf::PACKAGE)).expect("copy the XDP object into OUT_DIR");
}
