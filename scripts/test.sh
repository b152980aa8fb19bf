#!/usr/bin/env bash
# The full test suite, privileged netns tests included. Installs what is
# missing first (scripts/bootstrap.sh), so it runs on a fresh Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
cargo build --workspace --all-targets
cargo test --workspace "$@"
