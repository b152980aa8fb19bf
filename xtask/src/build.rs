//! `cargo xtask build-ebpf`: the XDP object alone, built by the very code
//! lb-userspace's build.rs uses.
#[path = "../../lb-userspace/build/ebpf.rs"]
mod ebpf;

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};

#[derive(clap::Args)]
pub struct Args {
    /// Where to copy the object (default: target/bpf/fulmar-xdp.o).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn run(args: Args) -> Result<()> {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    let object =
        ebpf::build(&root.join("xdp-ebpf"), &target.join("ebpf")).map_err(|e| anyhow!(e))?;
    let out = args.out.unwrap_or(target.join("bpf").join("fulmar-xdp.o"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::copy(&object, &out).with_context(|| format!("copying to {}", out.display()))?;
    println!("{}", out.display());
    Ok(())
}
