#!/usr/bin/env bash
# The checks that need no privileges: formatting, clippy with warnings as
# errors on every crate, and on the XDP crate (built only for the BPF target,
# with nightly) the rule that every unsafe block says why it is sound.
# scripts/test.sh runs this first; bootstrap.sh installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --all-targets -- -D warnings
# The eBPF crate: the same flags as its build (lb-userspace/build/ebpf.rs),
# its own target directory; style lints are left to the BPF code's needs.
target="${CARGO_TARGET_DIR:-$PWD/target}/ebpf-clippy"
(
  cd xdp-ebpf
  CARGO_ENCODED_RUSTFLAGS=$(printf '%s\x1f%s' '--cfg=bpf_target_arch="x86_64"' '-Ctarget-cpu=v3') \
    rustup run nightly cargo clippy --package fulmar-xdp --bins --release \
    --target bpfel-unknown-none -Z build-std=core --target-dir "$target" \
    -- -A clippy::all -D clippy::undocumented_unsafe_blocks
)
echo "lint: fmt, clippy and unsafe documentation clean"
