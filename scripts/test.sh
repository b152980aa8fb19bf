#!/usr/bin/env bash
# The full test suite, privileged netns tests included. Installs what is
# missing first (scripts/bootstrap.sh), so it runs on a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/lint.sh
# The default members: every crate but xdp-ebpf, which only builds for the
# BPF target and is built (and so tested for build) through lb-userspace.
cargo build --all-targets
cargo test "$@"
# Every network parser under coverage-guided fuzzing, a bounded time each.
bash scripts/fuzz.sh
