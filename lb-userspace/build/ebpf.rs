//! The one way the XDP object is built, shared by `lb-userspace/build.rs`
//! (which embeds it) and `cargo xtask build-ebpf` (which writes it out).
//!
//! It does what aya-build 0.2 does — nightly cargo, `-Z build-std=core`,
//! `bpfel-unknown-none`, BTF — plus `-C target-cpu=v3`: the balancer's
//! compare-and-swap and fetch-add need BPF CPU v3, and aya-build replaces all
//! RUSTFLAGS, leaving no way to ask for it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The eBPF package and its binary.
pub const PACKAGE: &str = "fulmar-xdp";

/// Builds the object of the crate at `crate_dir` using `target_dir` for
/// intermediate files, and returns the path of the ELF object.
pub fn build(crate_dir: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let flags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
        "-Ctarget-cpu=v3",
        "-Ctarget-feature=+allows-misaligned-mem-access",
    ]
    .join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        PACKAGE,
        "--bins",
        "--release",
    ])
    .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(crate_dir)
    .env("CARGO_ENCODED_RUSTFLAGS", flags)
    // The outer cargo's compiler settings must not leak into the nightly build.
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("RUSTFLAGS");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run rustup ({e}): run scripts/bootstrap.sh"))?;
    if !status.success() {
        return Err(format!(
            "building {PACKAGE} failed ({status}); if nightly rust-src or bpf-linker is \
             missing, run scripts/bootstrap.sh"
        ));
    }
    let object = target_dir.join("bpfel-unknown-none/release").join(PACKAGE);
    fs::metadata(&object).map_err(|e| format!("{}: {e}", object.display()))?;
    Ok(object)
}
