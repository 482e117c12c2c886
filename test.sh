#!/usr/bin/env bash
# The test command: format check, clippy with -D warnings, and every test of the workspace.
# Run as root: the data-plane tests load eBPF and create network namespaces (under CI=true they may not skip).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
# One test binary at a time runs its tests on both cores; namespace tests use unique names, so they may overlap.
cargo test --workspace --locked
# The optional DPDK back end of the user-space tier (feature `dpdk`, links the system libdpdk).
echo "== cargo clippy -p cnf-usertier -p cnf-dataplane -p cnf-dataplane-daemon --features dpdk --all-targets -- -D warnings"
cargo clippy -p cnf-usertier -p cnf-dataplane -p cnf-dataplane-daemon --features dpdk --all-targets --locked -- -D warnings
echo "== cargo clippy -p buildvnf-operator --features testing --all-targets -- -D warnings (operator-bench)"
cargo clippy -p buildvnf-operator --features testing --all-targets --locked -- -D warnings
echo "== cargo test -p cnf-dataplane --features dpdk --test dpdk"
cargo test -p cnf-dataplane --features dpdk --locked --test dpdk
