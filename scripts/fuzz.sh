#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer, AddressSanitizer) of what
# reads bytes from the network: the IMAP command framer and parser, the
# PROXY v2 header, XCLIENT/xtext and SASL PLAIN, the proxy's SMTP DATA
# scanner, the balancer's command grammar and configuration, and
# fulmar-maild's MIME structure and UID list. Bounded: every target runs FUZZ_SECONDS (default 20) from the
# committed seeds (fuzz/seeds/TARGET) plus a fresh corpus. A crash fails
# the run; its input is left in fuzz/artifacts/TARGET/ to reproduce with
# `cargo +nightly fuzz run --fuzz-dir fuzz TARGET ARTIFACT`.
# The random seed is fixed (FUZZ_SEED, default 1) so that a gate never
# flakes: a slower machine explores a prefix of the same inputs. Explore
# with another seed (FUZZ_SEED=0: libFuzzer picks one) and more time.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
seed="${FUZZ_SEED:-1}"
# Beside the main build (warm in CI), never mixed with it.
target_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
fuzz=(cargo +nightly fuzz)
"${fuzz[@]}" build --fuzz-dir fuzz --target-dir "$target_dir"
for target in $("${fuzz[@]}" list --fuzz-dir fuzz); do
  corpus="$(mktemp -d)"
  log="$corpus.log"
  echo "fuzz: $target for ${seconds}s"
  rc=0
  "${fuzz[@]}" run --fuzz-dir fuzz --target-dir "$target_dir" "$target" \
    "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -seed="$seed" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 \
    >"$log" 2>&1 || rc=$?
  grep -E "^(stat::number_of_executed_units|Done)" "$log" || true
  rm -rf "$corpus"
  if [ "$rc" != 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz: $target failed; input in fuzz/artifacts/$target/" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
