//! Errors of the balancer library; each says what to do about it.
use std::{io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The kernel refused the object (verifier, map creation, BTF).
    #[error("loading the XDP object failed: {source}")]
    Load {
        #[source]
        source: aya::EbpfError,
    },
    /// A program or map the object must define is missing.
    #[error("the XDP object has no {kind} named {name}")]
    Missing { kind: &'static str, name: String },
    #[error("{what}: {source}")]
    Program {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    /// Attached through netlink: such an attachment cannot be pinned.
    #[error("this kernel attached XDP without a bpf_link (needs Linux >= 5.9): {source}")]
    NoBpfLink {
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no interface named {iface} in this network namespace (see `ip link`)")]
    NoInterface { iface: String },
    #[error("native XDP is unsupported on {iface}; try --mode generic")]
    NativeUnsupported { iface: String },
    #[error("{iface} already has an XDP program; run `cargo xtask detach --iface {iface}` first")]
    AlreadyAttached { iface: String },
    #[error("nothing of fulmar is attached to {iface} (no {path})")]
    NotAttached { iface: String, path: PathBuf },
    #[error("BPF_PROG_TEST_RUN failed: {source}")]
    TestRun {
        #[source]
        source: io::Error,
    },
    #[error("all {max} service slots are in use; delete a service first")]
    ServicesFull { max: u32 },
    #[error("a service holds at most {max} reals, {given} given")]
    TooManyReals { max: u32, given: usize },
    #[error("no service {0}")]
    NoService(String),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

pub type Result<T> = std::result::Result<T, LbError>;
