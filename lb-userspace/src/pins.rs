//! Where the balancer's BPF objects live on bpffs. Maps are pinned by name
//! in the root; the program and each interface's link beside them, so the
//! data path keeps running when no process holds it.
use std::path::{Path, PathBuf};

use fulmar_common::PRODUCT;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinLayout {
    pub root: PathBuf,
}

impl Default for PinLayout {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/sys/fs/bpf").join(PRODUCT),
        }
    }
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn program(&self) -> PathBuf {
        self.root.join("prog_lb")
    }
    pub fn link(&self, iface: &str) -> PathBuf {
        self.root.join(format!("link_{iface}"))
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn exists(&self) -> bool {
        Path::new(&self.root).exists()
    }
}
