#!/usr/bin/env bash
# Brings the whole system up in the lab and shows it working. Installs what
# is missing first (scripts/bootstrap.sh). `cargo xtask lab down` ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
cargo xtask lab up
