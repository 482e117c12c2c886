#!/usr/bin/env bash
# The main job: build build-vnf, check the example chains with the one shared validation, then run a chain on
# this machine: cnf-dataplane attaches examples/lab.yaml (firewall -> rate limiter -> monitor) as XDP in a
# network namespace, pktgen drives real UDP through it, and the per-function counters and latency
# percentiles are printed beside pktgen's end-to-end numbers. Needs root. (The full testbed - `vnfctl
# testbed up` with client, CNF and backend namespaces for the edge chain, and `vnfctl bench` - is next.)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release --locked -p vnfctl -p cnf-dataplane -p pktgen
vnfctl=target/release/vnfctl

echo
echo "== The example chains (vnfctl validate examples/*.yaml)"
$vnfctl validate examples/*.yaml

echo
echo "== What bad input gets: every problem, with its field path (vnfctl validate examples/invalid/...)"
$vnfctl validate examples/invalid/06-cidr-host-bits.yaml examples/invalid/23-shadowed-rule.yaml \
  examples/invalid/13-lb-family-mismatch.yaml examples/invalid/05-unknown-field.yaml || true

echo
echo "== The laptop lab: examples/lab.yaml in a network namespace, real traffic from pktgen"
bash scripts/lab.sh examples/lab.yaml
