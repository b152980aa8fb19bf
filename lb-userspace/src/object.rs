//! The XDP object built by build.rs, embedded in every binary that loads it.

/// The ELF object of `xdp-ebpf/`, aligned for aya's parser.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fulmar-xdp"));
