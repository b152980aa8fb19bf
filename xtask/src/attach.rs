//! `cargo xtask attach` / `detach`.
use std::{fs::File, os::fd::AsRawFd, path::PathBuf};

use anyhow::{Context, Result, bail};
use fulmar_lb::{AttachMode, Balancer, LoadOptions, PinLayout, balancer};

#[derive(clap::Args)]
pub struct AttachArgs {
    /// Interface to attach to.
    #[arg(long)]
    iface: String,
    /// native (in the driver) or generic (skb path, any interface).
    #[arg(long, default_value = "native")]
    mode: String,
    /// Pin directory (default /sys/fs/bpf/fulmar).
    #[arg(long)]
    pin_dir: Option<PathBuf>,
    /// Enter this network namespace (a name under /run/netns) first.
    #[arg(long)]
    netns: Option<String>,
    /// Flow table capacity.
    #[arg(long, default_value_t = LoadOptions::default().flow_capacity)]
    flows: u32,
}

#[derive(clap::Args)]
pub struct DetachArgs {
    #[arg(long)]
    iface: String,
    #[arg(long)]
    pin_dir: Option<PathBuf>,
}

/// Moves this (still single-threaded) process into a named network namespace.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = PathBuf::from("/run/netns").join(name);
    let ns = File::open(&path)
        .with_context(|| format!("no network namespace {name} ({})", path.display()))?;
    // SAFETY: setns(2) on an open namespace file.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("entering {name}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn pins(dir: Option<PathBuf>) -> PinLayout {
    dir.map(PinLayout::new).unwrap_or_default()
}

pub fn attach(args: AttachArgs) -> Result<()> {
    if let Some(ns) = &args.netns {
        enter_netns(ns)?;
    }
    let mode: AttachMode = args.mode.parse()?;
    let pins = pins(args.pin_dir);
    let fresh = !pins.exists();
    let mut lb = Balancer::load(
        &pins,
        &LoadOptions {
            flow_capacity: args.flows,
        },
    )?;
    if let Err(err) = lb.attach(&args.iface, mode) {
        if fresh {
            // Nothing was attached: take the maps this run pinned away again.
            drop(lb);
            balancer::unpin_all(&pins)?;
        }
        return Err(err.into());
    }
    println!(
        "attached to {} ({}), pinned under {}",
        args.iface,
        args.mode,
        pins.root.display()
    );
    for entry in std::fs::read_dir(&pins.root)? {
        println!("  {}", entry?.path().display());
    }
    Ok(())
}

pub fn detach(args: DetachArgs) -> Result<()> {
    let pins = pins(args.pin_dir);
    balancer::detach(&pins, &args.iface)?;
    let links_left = std::fs::read_dir(&pins.root)?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("link_"));
    if links_left {
        println!(
            "detached from {}; other attachments keep the maps pinned",
            args.iface
        );
    } else {
        balancer::unpin_all(&pins)?;
        println!(
            "detached from {}; removed {}",
            args.iface,
            pins.root.display()
        );
    }
    Ok(())
}
