#!/usr/bin/env bash
# The main job: build build-vnf, check the example chains with the one shared validation, then bring the example
# edge chain (firewall -> NAT -> load balancer -> rate limiter -> monitor) up on this machine with
# `vnfctl testbed up`: client, CNF and server network namespaces, cnf-dataplane attaching the chain as XDP.
# pktgen-style traffic from an allowed and a denied client runs for 3 s with live progress; the report puts the
# end-to-end numbers beside the per-function counters and latency percentiles the kernel recorded, the plots go
# to results/, and the testbed is taken down (also on Ctrl-C or a failure). Needs root.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
[[ $(id -u) -eq 0 ]] || { echo "demo: needs root (network namespaces and eBPF)" >&2; exit 1; }

echo "== Building vnfctl, cnf-dataplane and pktgen (release). The first build takes several minutes on a 2-core"
echo "   machine and leaves a few GB in target/ (cargo clean frees it); later runs start in seconds."
cargo build --release --locked -p vnfctl -p cnf-dataplane-daemon -p pktgen
vnfctl=target/release/vnfctl

echo
echo "== The example chains (vnfctl validate examples/*.yaml)"
$vnfctl validate examples/*.yaml

echo
echo "== What bad input gets: every problem, with its field path (vnfctl validate examples/invalid/...)"
$vnfctl validate examples/invalid/06-cidr-host-bits.yaml examples/invalid/23-shadowed-rule.yaml \
  examples/invalid/13-lb-family-mismatch.yaml examples/invalid/05-unknown-field.yaml || true

name=demo
trap '$vnfctl testbed down "$name" >/dev/null || true' EXIT
trap 'exit 130' INT TERM
echo
echo "== The testbed: vnfctl testbed up examples/edge-chain.yaml --name $name"
$vnfctl testbed up examples/edge-chain.yaml --name "$name" | sed -e '/^flows/,/^gRPC/d'
echo
$vnfctl testbed traffic "$name" --rate 10000 --denied-rate 2000 --duration 3 --results results
echo
echo "== vnfctl testbed down $name"
$vnfctl testbed down "$name"
trap - EXIT
