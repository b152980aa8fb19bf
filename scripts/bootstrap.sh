#!/usr/bin/env bash
# Installs everything the build, the lab and the test suites need on a fresh
# Debian 12 machine. Idempotent, and a few seconds when all is present.
set -euo pipefail

BPF_LINKER_VERSION=0.13.0
CARGO_FUZZ_VERSION=0.13.2
LLVM_MAJOR=22

# Debian packages: LLVM for bpf-linker, protoc for etcd-client, and the real
# peers the lab and tests run (iproute2, bpftool, xdp-tools), systemd for
# `systemd-analyze verify` of the units, util-linux for `unshare`; the proxy
# tests run a real OpenLDAP (slapd, misc.schema) and real Dovecot back-ends,
# driven by Python's imaplib/poplib/smtplib (and curl, a second IMAP client). Fencing runs Debian's
# fence-agents and ipmitool against PyPI's Redfish and IPMI emulators, and
# cuts nodes off loop-attached ext4 volumes (e2fsprogs). The failover
# manager keeps its state in etcd (a 3-member etcd-server in the lab;
# etcd-client builds its protos with protoc and libprotobuf-dev's types).
# isync's mbsync is the real sync client of fulmar-maild's IMAP tests.
# prometheus scrapes every daemon in the lab; its promtool checks and unit-
# tests the shipped alert rules.
APT_PACKAGES=(
  "llvm-${LLVM_MAJOR}-dev" "libpolly-${LLVM_MAJOR}-dev" protobuf-compiler
  build-essential pkg-config iproute2 iputils-ping bpftool xdp-tools ethtool
  procps psmisc netcat-openbsd systemd util-linux
  slapd ldap-utils dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd python3 curl
  python3-venv fence-agents ipmitool e2fsprogs
  libprotobuf-dev etcd-server etcd-client
  isync prometheus
)

# Real power-management peers for the fencing tests, from PyPI, in a venv
# of their own: the sushy-tools Redfish emulator and pyghmi's fakebmc.
PEERS_VENV="${FULMAR_PEERS:-/opt/fulmar-peers}"
PEERS_PACKAGES=("sushy-tools==2.2.0" "pyghmi==1.6.19" "bcrypt==5.0.0")

log() { printf 'bootstrap: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "run as root: the lab needs network namespaces and the bootstrap installs Debian packages"
    exit 1
  fi
}

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a single-node etcd on localhost; the tests run their
  # own members in the lab, so one we just installed is switched off.
  if printf '%s\n' "${missing[@]}" | grep -qx etcd-server; then
    systemctl disable --now etcd.service >/dev/null 2>&1 || true
  fi
  # Likewise the package's Prometheus (and its node exporter) on :9090.
  if printf '%s\n' "${missing[@]}" | grep -qx prometheus; then
    systemctl disable --now prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true
  fi
}

install_peers() {
  if [ -x "$PEERS_VENV/bin/sushy-emulator" ] && [ -x "$PEERS_VENV/bin/fakebmc" ]; then
    return 0
  fi
  log "installing ${PEERS_PACKAGES[*]} into $PEERS_VENV"
  python3 -m venv "$PEERS_VENV"
  "$PEERS_VENV/bin/pip" install -q --disable-pip-version-check "${PEERS_PACKAGES[@]}"
}

install_rust_components() {
  if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
  fi
  if ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
    log "adding rust-src to nightly"
    rustup component add rust-src --toolchain nightly
  fi
  # scripts/lint.sh: rustfmt and clippy on stable, clippy for the BPF crate.
  local have
  have=$(rustup component list --installed)
  for c in rustfmt clippy; do
    if ! grep -q "^$c" <<<"$have"; then
      log "adding $c to the default toolchain"
      rustup component add "$c"
    fi
  done
  if ! rustup component list --toolchain nightly --installed | grep -q '^clippy'; then
    log "adding clippy to nightly"
    rustup component add clippy --toolchain nightly
  fi
}

install_bpf_linker() {
  if command -v bpf-linker >/dev/null && bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
    return 0
  fi
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM $LLVM_MAJOR (a few minutes, once)"
  LLVM_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" cargo install bpf-linker \
    --version "$BPF_LINKER_VERSION" --locked --no-default-features --features "llvm-${LLVM_MAJOR}"
}

install_cargo_fuzz() {
  if cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    return 0
  fi
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (scripts/fuzz.sh)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
}

main() {
  need_root
  install_apt
  install_peers
  install_rust_components
  install_bpf_linker
  install_cargo_fuzz
  # bpffs: the balancer pins its maps under /sys/fs/bpf.
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
}

main "$@"
