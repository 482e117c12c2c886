#!/usr/bin/env bash
# The main job: build build-vnf, check the example chains with the one shared validation, and show the API.
# (The laptop testbed, which brings the edge chain up in network namespaces with real traffic, replaces this
# as it lands; see docs/ and the issues.)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release --locked -p vnfctl
vnfctl=target/release/vnfctl

echo
echo "== The example chains (vnfctl validate examples/*.yaml)"
$vnfctl validate examples/*.yaml

echo
echo "== What bad input gets: every problem, with its field path (vnfctl validate examples/invalid/...)"
$vnfctl validate examples/invalid/06-cidr-host-bits.yaml examples/invalid/23-shadowed-rule.yaml \
  examples/invalid/13-lb-family-mismatch.yaml examples/invalid/05-unknown-field.yaml || true

echo
echo "== The CRD: crds/buildvnf.io_vnfchains.yaml (kubectl apply -f it; vnfctl crd prints the same)"
crd=$($vnfctl crd)
grep -E '^  (group|scope):|^    kind:|^    - vnfc$' <<<"$crd"
echo "  printer columns: $(grep -A1 -E '^    - jsonPath' <<<"$crd" | sed -n 's/^      name: //p' | paste -sd, -)"
echo "  $(wc -l <<<"$crd") lines, $(grep -c 'rule:' <<<"$crd") CEL rules"
