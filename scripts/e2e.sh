#!/usr/bin/env bash
# The cluster end-to-end test of build-vnf, in one command (inside the Vagrant VM, or on any Linux machine with
# docker, kind, kubectl, helm and jq; needs network access to pull base images and the kube-prometheus-stack chart):
#
#   scripts/e2e.sh
#
# NOT RUN IN CI HERE: the CI machine has no Docker daemon and no kind, so .ci/run does not run this script; CI
# only lints it (packaging/tests/shellcheck.rs). What CI checks of the chart without a cluster is in
# packaging/tests/helm.rs (helm lint/template and kubernetes-validate). Run this script yourself before a release.
#
# 1. creates the kind cluster of kind-config/cluster.yaml (1 control plane + 2 workers, bpffs mounted),
# 2. builds the images (scripts/build-images.sh) and loads them into kind,
# 3. installs kube-prometheus-stack (Prometheus + Grafana) and the build-vnf chart as committed (its crds/ and
#    templates unpatched: only image names and the monitoring add-ons are set), checks the API server has no
#    warning for the CRD,
# 4. checks every example against the API server (server-side dry run): valid ones are accepted, each invalid one
#    marked `# crd: schema|cel|apiserver` is refused, each marked `semantic` passes the API server,
# 5. applies every example chain and waits for each to be Ready, default-deny firewalls included (the kubelet's
#    probes and the operator's gRPC still reach the pod), checks a default-deny chain drops what it denies. The
#    examples with a second interface (examples/ipv6-router.yaml's eth1, examples/userspace-cipher.yaml's net1)
#    get it from Multus: before the chart, the script installs the Multus thick plugin (pinned, MULTUS_VERSION)
#    and one NetworkAttachmentDefinition per network the examples name, of CNI type ptp with host-local IPAM
#    (both plugins ship in kind's node image, which uses them for its own pod network). The examples are
#    unchanged for that, except ipv6-router.yaml, which named an egress eth1 no pod could have: it now says
#    where eth1 comes from (secondaryNetworks: v6-uplink),
# 6. applies examples/lab.yaml, waits for Ready, sends UDP from a client pod and asserts the firewall: allowed
#    traffic reaches a receiver inside the chain pod, denied traffic is dropped (reason firewall_rule),
# 7. kills the lab chain's sidecar (kill -9 of the cnf-dataplane process, from its node) under allowed and denied
#    traffic: the chain renders `--on-exit keep`, so not one denied packet reaches the pod while the sidecar is
#    gone, allowed traffic keeps flowing, and the restarted sidecar re-adopts the chain with its counters,
# 8. runs an edge chain (firewall, NAT, load balancer, monitor, forwarder) in front of two server pods: asserts that
#    the load balancer spreads flows over both backends and the DNAT mapping reaches its backend,
# 9. edits the chain live (kubectl patch): the change is applied without restarting pods, traffic follows it, and
#    no counter of the sidecar's /metrics decreases across an edit (Prometheus counters are monotonic),
# 9b. sidecar mode (docs/sidecar.md): an HTTP Deployment exists before a chain with spec.target selects it; the
#    chain lists its pods as not injected with the rollout command, which the script runs; the rolled pods carry
#    cnf-dataplane as a native sidecar with exactly BPF/NET_ADMIN/PERFMON; allowed HTTP requests pass, requests
#    to a denied port are dropped (counted), 1000 UDP packets/s are cut to the 200/s rate limit; the chain's
#    namespaceSelector also selects a second opted-in namespace, where the operator copies the chain's ConfigMap
#    and TLS Secret and the same workload is injected and filtered (counted in the chain's status), while a
#    matching namespace that did not opt in gets neither copies nor injection; that namespace's labels stop
#    matching: detached live, copies removed; matching again: copies back, its rolled pods run the chain;
#    deleting the chain detaches it live and removes every copy,
# 10. asserts that Prometheus has scraped the per-function latency histograms and the operator's metrics, and that
#    the operator was never refused by the API server (its RBAC is the chart's),
# 11. deletes the chains and checks that everything they owned is gone.
# It stops at the first failed check with a message saying what was expected, dumps the state of the cluster
# and, unless KEEP_CLUSTER=1, deletes the cluster it created.
#
# Environment: CLUSTER (default build-vnf), TAG (default: workspace version), REGISTRY (default ghcr.io/build-vnf),
# MULTUS_VERSION (default v4.2.3: the k8snetworkplumbingwg/multus-cni tag whose multus-daemonset-thick.yml is applied),
# SC_HTTP_IMAGE (default docker.io/library/busybox:1.36: HTTP server and client of the sidecar-mode step),
# KIND_NODE_IMAGE (optional kindest/node image), KEEP_CLUSTER=1 (keep it afterwards), REUSE_CLUSTER=1 (use an
# existing cluster of that name), SKIP_BUILD=1 (images already loaded).
set -Eeuo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

CLUSTER="${CLUSTER:-build-vnf}"
REGISTRY="${REGISTRY:-ghcr.io/build-vnf}"
TAG="${TAG:-$(awk '/^\[workspace.package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/, "", $0); sub(/^version=/, "", $0); print; exit}' Cargo.toml)}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
REUSE_CLUSTER="${REUSE_CLUSTER:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
SYSTEM_NS=buildvnf-system
MONITORING_NS=monitoring
LAB_NS=laptop # examples/lab.yaml's namespace
E2E_NS=buildvnf-e2e
PKTGEN_IMAGE="${REGISTRY}/buildvnf-pktgen:${TAG}"
MULTUS_VERSION="${MULTUS_VERSION:-v4.2.3}"
SC_HTTP_IMAGE="${SC_HTTP_IMAGE:-docker.io/library/busybox:1.36}" # the sidecar-mode step's HTTP server and client
MULTUS_MANIFEST="https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/${MULTUS_VERSION}/deployments/multus-daemonset-thick.yml"
KCTX="kind-${CLUSTER}"

step() { printf '\n== %s\n' "$*"; }
info() { printf '   %s\n' "$*"; }

created_cluster=0
finished=0

diagnostics() {
  echo "---- cluster state (for the failure above) ----" >&2
  kubectl --context "$KCTX" get vnfchains -A -o wide >&2 || true
  kubectl --context "$KCTX" get vnfchains -A -o yaml >&2 || true
  kubectl --context "$KCTX" get pods -A -o wide >&2 || true
  kubectl --context "$KCTX" -n "$SYSTEM_NS" logs deploy/build-vnf-operator --tail=200 >&2 || true
  for ns in "$LAB_NS" "$E2E_NS" default; do
    kubectl --context "$KCTX" -n "$ns" describe pods >&2 || true
    kubectl --context "$KCTX" -n "$ns" logs -l app.kubernetes.io/name=cnf-dataplane --all-containers --tail=100 >&2 || true
  done
  kubectl --context "$KCTX" get events -A --sort-by=.lastTimestamp >&2 || true
}

fail() {
  echo >&2
  echo "e2e: FAILED: $*" >&2
  diagnostics
  exit 1
}

on_exit() {
  local rc=$?
  rm -rf "${tmp:-}"
  if ((rc != 0)) && ((finished == 0)); then
    echo "e2e: stopped with exit status $rc; see the messages above" >&2
  fi
  if ((created_cluster == 1)) && [[ "$KEEP_CLUSTER" != 1 ]]; then
    echo "e2e: deleting kind cluster $CLUSTER (KEEP_CLUSTER=1 keeps it)" >&2
    kind delete cluster --name "$CLUSTER" >&2 || true
  fi
}
trap on_exit EXIT
# A command that fails outside an explicit check still stops the script (set -e); say which one and where.
trap 'echo "e2e: FAILED: \"$BASH_COMMAND\" (line $LINENO) exited with $?" >&2' ERR

k() { kubectl --context "$KCTX" "$@"; }

need() {
  local missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "e2e: FAILED: missing tools: ${missing[*]} (vagrant/provision.sh installs them)" >&2
    exit 1
  fi
}

# The value of one sample of a sidecar's /metrics: the sum over every line of metric $3 whose labels contain
# all of the following strings (e.g. 'function="fw"'). Read through the API server's pod proxy.
pod_metric() {
  local ns=$1 pod=$2 name=$3
  shift 3
  k get --raw "/api/v1/namespaces/${ns}/pods/${pod}:9090/proxy/metrics" |
    awk -v name="$name" -v filters="$*" '
      BEGIN { n = split(filters, f, " ") }
      $1 == name || index($1, name "{") == 1 {
        ok = 1
        for (i = 1; i <= n; i++) if (index($1, f[i]) == 0) ok = 0
        if (ok) sum += $2
      }
      END { printf "%d\n", sum }'
}

# A Prometheus instant query through the API server's service proxy; prints the first value or nothing.
prom_query() {
  local q
  q="$(jq -rn --arg q "$1" '$q | @uri')"
  k get --raw "/api/v1/namespaces/${MONITORING_NS}/services/kps-prometheus:http-web/proxy/api/v1/query?query=${q}" |
    jq -r '.data.result[0].value[1] // empty'
}

# Pods of a chain (its sidecars), one name per line.
chain_pods() {
  k -n "$1" get pods -l "buildvnf.io/chain=$2" --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

# Waits until the chain runs its current spec generation on every replica and is Ready.
wait_chain() {
  local ns=$1 name=$2 gen
  gen="$(k -n "$ns" get vnfchain "$name" -o jsonpath='{.metadata.generation}')"
  k -n "$ns" wait --for=jsonpath='{.status.lastAppliedGeneration}'="$gen" "vnfchain/$name" --timeout=300s >/dev/null ||
    fail "vnfchain $ns/$name did not apply generation $gen within 300 s"
  k -n "$ns" wait --for=condition=Ready "vnfchain/$name" --timeout=300s >/dev/null ||
    fail "vnfchain $ns/$name did not become Ready within 300 s"
  info "vnfchain $ns/$name is Ready at generation $gen"
}

# Runs `pktgen recv` in a server pod for $3 seconds in the background, JSON summary into file $4.
recv_in_pod() {
  local ns=$1 pod=$2 secs=$3 out=$4
  k -n "$ns" exec "$pod" -- pktgen recv --bind 0.0.0.0:9000 --duration "$secs" --json -q >"$out" 2>"$out.err" &
}

# Sends $3 UDP packets from the client pod to $2 (address:port) over $4 flows.
send_from_client() {
  local ns=$1 dst=$2 count=$3 flows=$4
  k -n "$ns" exec e2e-client -- pktgen send --dst "$dst" --count "$count" --rate 1000 --flows "$flows" --json -q \
    >/dev/null || fail "pktgen send to $dst failed"
}

received() { jq -r '.packets // 0' "$1" 2>/dev/null || echo 0; }

# Starts the client pod in namespace $1. Transmit checksum offload is turned off on its eth0 first: a veth with
# it on sends packets whose UDP checksum is only partial, and a chain that rewrites addresses (NAT, LB) and sends
# the packet on with XDP_TX would deliver it with a wrong checksum (see docs/operations.md, cnf-dataplane's
# daemon/offload.rs). That needs CAP_NET_ADMIN in the client pod, nothing else.
start_client() {
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: e2e-client
  namespace: $1
spec:
  restartPolicy: Never
  containers:
    - name: client
      image: $PKTGEN_IMAGE
      command: ["sh", "-c", "ethtool -K eth0 tx off >/dev/null && exec sleep 3600"]
      securityContext:
        runAsUser: 0
        capabilities: {drop: ["ALL"], add: ["NET_ADMIN"]}
EOF
}

# Counter-typed series of a sidecar's /metrics, one "series value" line each, sorted: every counter and every
# histogram series (_bucket, _count, _sum), which Prometheus requires never to decrease while the target lives.
scrape_counters() {
  local ns=$1 pod=$2
  k get --raw "/api/v1/namespaces/${ns}/pods/${pod}:9090/proxy/metrics" |
    awk '
      $1 == "#" && $2 == "TYPE" { type[$3] = $4; next }
      /^#/ || NF < 2 { next }
      {
        value = $NF
        series = substr($0, 1, length($0) - length(value) - 1)
        name = series
        sub(/\{.*/, "", name)
        base = name
        sub(/_(bucket|count|sum|total)$/, "", base)
        if (type[name] == "counter" || type[base] == "counter" || type[base] == "histogram") print series, value
      }' | sort
}

# Fails unless every series of the scrape in file $1 is still in file $2 with a value at least as large ($3 says
# across what).
counters_never_decrease() {
  local before=$1 after=$2 what=$3 bad
  [[ -s "$before" ]] || fail "no counters scraped before $what"
  bad="$(awk '
    function key(line) { return substr(line, 1, length(line) - length($NF) - 1) }
    NR == FNR { old[key($0)] = $NF; next }
    { new[key($0)] = $NF }
    END {
      for (s in old) {
        if (!(s in new)) print "gone: " s " (was " old[s] ")"
        else if (new[s] + 0 < old[s] + 0) print "decreased: " s " " old[s] " -> " new[s]
      }
    }' "$before" "$after" | sort | head -n 20)"
  [[ -z "$bad" ]] || fail "counters went backwards across $what:
$bad"
  info "$(wc -l <"$before") counter series, none decreased across $what"
}

# Waits until ephemeral container $3 of pod $2 is in state $4 (running or terminated), at most $5 seconds.
wait_ephemeral() {
  local ns=$1 pod=$2 name=$3 state=$4 secs=$5 i
  for ((i = 0; i < secs; i++)); do
    [[ -n "$(k -n "$ns" get pod "$pod" \
      -o jsonpath="{.status.ephemeralContainerStatuses[?(@.name==\"$name\")].state.$state}")" ]] && return 0
    sleep 1
  done
  fail "ephemeral container $name of pod $ns/$pod is not $state after $secs s"
}

# Starts `pktgen recv` on UDP port $3 for $4 seconds in an ephemeral container named $5 of pod $2. It shares the
# pod's network namespace (what it counts went through the chain on eth0) but not the sidecar's PID namespace, so
# it outlives a kill of the sidecar. Its JSON summary is in `kubectl logs POD -c NAME` when it ends.
recv_beside_sidecar() {
  local ns=$1 pod=$2 port=$3 secs=$4 name=$5
  k -n "$ns" debug "$pod" --image="$PKTGEN_IMAGE" --container="$name" \
    -- pktgen recv --bind "0.0.0.0:$port" --duration "$secs" --json -q >/dev/null ||
    fail "cannot start the receiver $name in pod $ns/$pod (ephemeral container)"
  wait_ephemeral "$ns" "$pod" "$name" running 60
}

# The restart count of the cnf-dataplane container of pod $2.
sidecar_restarts() {
  k -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[?(@.name=="cnf-dataplane")].restartCount}'
}

# kill -9 of the cnf-dataplane process of pod $2, from its kind node: inside the container the process is PID 1,
# and a SIGKILL sent to PID 1 from its own PID namespace is ignored.
kill_sidecar() {
  local ns=$1 pod=$2 node cid pid comm
  node="$(k -n "$ns" get pod "$pod" -o jsonpath='{.spec.nodeName}')"
  cid="$(k -n "$ns" get pod "$pod" -o jsonpath='{.status.containerStatuses[?(@.name=="cnf-dataplane")].containerID}')"
  [[ -n "$node" && "$cid" == containerd://* ]] || fail "no node or containerd container ID for the sidecar of $ns/$pod"
  pid="$(docker exec "$node" crictl inspect --output go-template --template '{{.info.pid}}' "${cid#containerd://}")"
  comm="$(docker exec "$node" cat "/proc/$pid/comm")"
  [[ "$comm" == cnf-dataplane ]] || fail "PID $pid on node $node is '$comm', not cnf-dataplane"
  docker exec "$node" kill -9 "$pid" || fail "kill -9 $pid on node $node failed"
  info "killed cnf-dataplane (PID $pid on node $node) with SIGKILL"
}

# The sidecar arguments of chain $2's Deployment, with CNF_ON_EXIT written as the flag it stands for.
sidecar_args() {
  k -n "$1" get deployment "$2-dataplane" -o json |
    jq -r '.spec.template.spec.containers[] | select(.name == "cnf-dataplane")
      | [(.args // [])[], ((.env // [])[] | select(.name == "CNF_ON_EXIT") | "--on-exit=\(.value)")] | join(" ")'
}

# "namespace name" of every dedicated-mode VNFChain of file $1 (sidecar-mode ones, with spec.target, run in the
# workload pods they select: the sidecar step below covers that mode).
example_chains() {
  k create --dry-run=client -f "$1" -o json |
    jq -r '(.items // [.])[] | select(.kind == "VNFChain" and .spec.target == null)
      | "\(.metadata.namespace // "default") \(.metadata.name)"'
}

# "namespace network" of every Multus network the VNFChains of file $1 name (spec.interfaces.secondaryNetworks).
example_networks() {
  k create --dry-run=client -f "$1" -o json |
    jq -r '(.items // [.])[] | select(.kind == "VNFChain") | .metadata.namespace as $ns
      | (.spec.interfaces.secondaryNetworks // [])[] | "\(.namespace // $ns // "default") \(.name)"'
}

# Multus (thick plugin, pinned) and a NetworkAttachmentDefinition for every network an example names: CNI type
# ptp (a veth pair to the node) with host-local IPAM, one /24 of 10.250.0.0/16 each. Both plugins are in kind's
# node image (kindnet uses them), checked on every node first. IPv4 even for the IPv6 example's uplink: a kind
# node container may have IPv6 disabled, and the chain only needs the interface to exist.
install_multus() {
  local node plugin n=0 ns net
  for node in $(kind get nodes --name "$CLUSTER"); do
    for plugin in ptp host-local; do
      docker exec "$node" test -x "/opt/cni/bin/$plugin" ||
        fail "node $node has no CNI plugin /opt/cni/bin/$plugin (the secondary networks of the examples use it)"
    done
  done
  k apply -f "$MULTUS_MANIFEST" >/dev/null || fail "applying Multus $MULTUS_VERSION ($MULTUS_MANIFEST) failed"
  k -n kube-system rollout status daemonset/kube-multus-ds --timeout=300s >/dev/null ||
    fail "the Multus DaemonSet kube-multus-ds did not become ready"
  k wait --for=condition=Established crd/network-attachment-definitions.k8s.cni.cncf.io --timeout=60s >/dev/null ||
    fail "Multus did not install the NetworkAttachmentDefinition CRD"
  for f in examples/*.yaml; do example_networks "$f"; done | sort -u >"$tmp/networks.txt"
  while read -r ns net; do
    [[ -n "$net" ]] || continue
    n=$((n + 1))
    k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
    k apply -f - >/dev/null <<EOF || fail "creating NetworkAttachmentDefinition $ns/$net failed"
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: $net
  namespace: $ns
spec:
  config: '{"cniVersion": "0.3.1", "name": "$net", "type": "ptp", "ipam": {"type": "host-local", "subnet": "10.250.$n.0/24"}}'
EOF
    info "NetworkAttachmentDefinition $ns/$net (ptp, 10.250.$n.0/24)"
  done <"$tmp/networks.txt"
  ((n >= 2)) || fail "expected the examples to name at least 2 Multus networks, found $n"
}

need docker kind kubectl helm jq awk
tmp="$(mktemp -d)"
[[ -n "$TAG" ]] || fail "cannot read the workspace version from Cargo.toml; set TAG"

step "kind cluster $CLUSTER (kind-config/cluster.yaml)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  [[ "$REUSE_CLUSTER" == 1 ]] || fail "a kind cluster named $CLUSTER exists; delete it or set REUSE_CLUSTER=1"
  info "reusing the existing cluster"
else
  node_image=()
  [[ -n "${KIND_NODE_IMAGE:-}" ]] && node_image=(--image "$KIND_NODE_IMAGE")
  kind create cluster --name "$CLUSTER" --config kind-config/cluster.yaml "${node_image[@]}" --wait 180s ||
    fail "kind create cluster failed"
  created_cluster=1
fi
[[ "$(k get nodes --no-headers | wc -l)" -eq 3 ]] || fail "expected 3 nodes (1 control plane + 2 workers)"

step "images $REGISTRY/{buildvnf-operator,cnf-dataplane,buildvnf-pktgen}:$TAG"
if [[ "$SKIP_BUILD" == 1 ]]; then
  info "SKIP_BUILD=1: using images already loaded"
else
  bash scripts/build-images.sh --tag "$TAG" --registry "$REGISTRY" --kind-load "$CLUSTER" ||
    fail "building or loading the images failed"
fi

step "kube-prometheus-stack (Prometheus + Grafana) in namespace $MONITORING_NS"
# Installed before build-vnf: the operator renders a PodMonitor per chain only if the CRD exists at its start.
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
helm --kube-context "$KCTX" upgrade --install kps prometheus-community/kube-prometheus-stack \
  --namespace "$MONITORING_NS" --create-namespace \
  --set fullnameOverride=kps \
  --set alertmanager.enabled=false \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.scrapeInterval=10s \
  --set grafana.sidecar.dashboards.searchNamespace=ALL \
  --wait --timeout 10m >/dev/null || fail "installing kube-prometheus-stack failed"

step "Multus $MULTUS_VERSION (thick plugin) and the examples' secondary networks"
# Before any chain: a pod gets its Multus interfaces only when it is created.
install_multus

step "build-vnf chart (charts/build-vnf) in namespace $SYSTEM_NS"
k create namespace "$LAB_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
k create namespace "$E2E_NS" --dry-run=client -o yaml | k apply -f - >/dev/null
# Only values a user sets: the images built above and the monitoring add-ons. A chart whose values still list
# the chains' namespaces for their certificates (tls.chains) gets them; one whose operator issues certificates
# itself does not need it.
chart_values=()
if grep -q '^  chains:' charts/build-vnf/values.yaml; then
  chains_json="[{\"namespace\":\"$LAB_NS\",\"names\":[\"lab\"]},{\"namespace\":\"$E2E_NS\",\"names\":[\"e2e-edge\"]}"
  chains_json+=",{\"namespace\":\"default\",\"names\":[\"edge\",\"firewall\",\"dns-firewall\",\"v6-router\",\"secure-tunnel\"]}]"
  chart_values+=(--set-json "tls.chains=$chains_json")
fi
helm --kube-context "$KCTX" upgrade --install build-vnf charts/build-vnf \
  --namespace "$SYSTEM_NS" --create-namespace \
  --set operator.image.repository="$REGISTRY/buildvnf-operator" \
  --set operator.image.tag="$TAG" \
  --set dataplane.image.repository="$REGISTRY/cnf-dataplane" \
  --set dataplane.image.tag="$TAG" \
  --set operator.logJson=false \
  "${chart_values[@]}" \
  --set metrics.serviceMonitor.enabled=true \
  --set metrics.prometheusRule.enabled=true \
  --set grafana.dashboard.enabled=true \
  --wait --timeout 5m >/dev/null 2>"$tmp/helm.err" || fail "installing the build-vnf chart failed: $(cat "$tmp/helm.err")"
k -n "$SYSTEM_NS" rollout status deploy/build-vnf-operator --timeout=120s >/dev/null ||
  fail "the operator Deployment did not become available"
k get crd vnfchains.buildvnf.io >/dev/null || fail "the chart did not install the VNFChain CRD"
# The API server warns about what it accepts but ignores (unknown formats, ...): the committed CRD has none.
k apply --server-side --force-conflicts --dry-run=server -f charts/build-vnf/crds/ >/dev/null 2>"$tmp/crd.err" ||
  fail "the API server refuses the committed CRD: $(cat "$tmp/crd.err")"
if grep -qi warning "$tmp/crd.err" "$tmp/helm.err"; then
  fail "the API server warns about the chart or its CRD: $(cat "$tmp/crd.err" "$tmp/helm.err")"
fi
info "operator running; CRD installed as committed, without warnings"

step "examples against the API server (server-side dry run)"
for f in examples/*.yaml; do
  k apply --dry-run=server -f "$f" >/dev/null 2>"$tmp/err" || fail "$f is valid but the API server refused it: $(cat "$tmp/err")"
  info "accepted: $f"
done
refused=0
for f in examples/invalid/*.yaml; do
  layer="$(sed -n 's/^# crd: *\([a-z]*\).*/\1/p' "$f" | head -n1)"
  [[ -n "$layer" ]] || fail "$f has no '# crd:' line"
  if k -n "$E2E_NS" apply --dry-run=server -f "$f" >/dev/null 2>"$tmp/err"; then
    [[ "$layer" == semantic ]] || fail "$f (# crd: $layer) was accepted by the API server; it must be refused"
  else
    [[ "$layer" != semantic ]] || fail "$f (# crd: semantic) was refused by the API server: $(cat "$tmp/err")"
    refused=$((refused + 1))
  fi
done
info "$refused invalid examples refused by the API server; the semantic ones passed it (validate() catches them)"

step "every example chain (default-deny and secondary networks included)"
runnable=()
for f in examples/*.yaml; do
  found=0
  while read -r ns name; do
    [[ -n "$name" ]] || continue
    runnable+=("$ns/$name")
    found=1
  done < <(example_chains "$f")
  if ((found == 0)); then
    info "not applied here (sidecar mode, no pods selected in this step): $f"
    continue
  fi
  k apply -f "$f" >/dev/null || fail "kubectl apply -f $f failed"
done
((${#runnable[@]} >= 6)) || fail "only ${#runnable[@]} example chains found: ${runnable[*]}"
for pair in "${runnable[@]}"; do
  wait_chain "${pair%/*}" "${pair#*/}"
done
# A default-deny chain must not cut its own pod off: after a minute of probes it is still Ready, never restarted.
sleep 60
for pair in "${runnable[@]}"; do
  ns="${pair%/*}"
  name="${pair#*/}"
  [[ "$(k -n "$ns" get vnfchain "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]] ||
    fail "vnfchain $pair is no longer Ready a minute after it was"
  while read -r pod; do
    [[ -z "$pod" || "$(sidecar_restarts "$ns" "$pod")" == 0 ]] ||
      fail "the sidecar of $pair in pod $pod restarted (probes cut off by its own chain?)"
  done < <(chain_pods "$ns" "$name")
done
info "Ready and never restarted after 60 s: ${runnable[*]}"

# The default-deny firewall example drops UDP to any port: a receiver in its pod gets nothing, the firewall counts.
fw_pod="$(chain_pods default firewall | head -n1)"
[[ -n "$fw_pod" ]] || fail "no running pod of chain default/firewall"
fw_ip="$(k -n default get pod "$fw_pod" -o jsonpath='{.status.podIP}')"
start_client default
k -n default wait --for=condition=Ready pod/e2e-client --timeout=120s >/dev/null || fail "client pod not Ready"
recv_beside_sidecar default "$fw_pod" 9000 25 e2e-deny-recv
drops0="$(pod_metric default "$fw_pod" buildvnf_function_drops_total 'function="fw"')"
send_from_client default "$fw_ip:9000" 1000 4
drops1="$(pod_metric default "$fw_pod" buildvnf_function_drops_total 'function="fw"')"
wait_ephemeral default "$fw_pod" e2e-deny-recv terminated 60
got="$(k -n default logs "$fw_pod" -c e2e-deny-recv | jq -r '.packets // 0')"
info "default-deny firewall: 1000 UDP packets to :9000 -> receiver in the pod got $got, firewall dropped +$((drops1 - drops0))"
((got == 0)) || fail "the default-deny firewall example let $got UDP packets through to its pod"
((drops1 - drops0 >= 900)) || fail "the default-deny firewall example dropped only $((drops1 - drops0)) of 1000"
k -n default delete pod e2e-client --wait=false >/dev/null

# The examples with a second interface run on it: their pods carry the Multus interface the chain attached.
for pair in default/v6-router default/secure-tunnel; do
  pod="$(chain_pods "${pair%/*}" "${pair#*/}" | head -n1)"
  [[ -n "$pod" ]] || fail "no running pod of chain $pair"
  k -n "${pair%/*}" get pod "$pod" -o jsonpath='{.metadata.annotations.k8s\.v1\.cni\.cncf\.io/network-status}' |
    jq -e 'length >= 2' >/dev/null || fail "pod $pod of chain $pair has no Multus network-status with a second interface"
  info "vnfchain $pair runs on its pod's eth0 and its Multus interface"
done
for pair in "${runnable[@]}"; do
  [[ "$pair" == "$LAB_NS/lab" ]] && continue
  k -n "${pair%/*}" delete vnfchain "${pair#*/}" --wait --timeout=120s >/dev/null || fail "deleting vnfchain $pair timed out"
done

step "lab chain: examples/lab.yaml (firewall -> rate limiter -> monitor)"
k apply -f examples/lab.yaml >/dev/null
wait_chain "$LAB_NS" lab
lab_pod="$(chain_pods "$LAB_NS" lab | head -n1)"
[[ -n "$lab_pod" ]] || fail "no running pod of chain $LAB_NS/lab"
lab_ip="$(k -n "$LAB_NS" get pod "$lab_pod" -o jsonpath='{.status.podIP}')"
hook="$(k -n "$LAB_NS" get vnfchain lab -o jsonpath='{.status.attachments[0].hook}')"
info "chain pod $lab_pod ($lab_ip), attached with $hook"
start_client "$LAB_NS"
k -n "$LAB_NS" wait --for=condition=Ready pod/e2e-client --timeout=120s >/dev/null || fail "client pod not Ready"

# The receiver runs in the chain pod itself (an ephemeral container shares its network namespace), so a packet
# it counts went through the XDP/TC chain on the pod's eth0.
k -n "$LAB_NS" debug "$lab_pod" --image="$PKTGEN_IMAGE" --container=e2e-recv --target=cnf-dataplane \
  -- pktgen recv --bind 0.0.0.0:9000 --duration 40 --json -q >/dev/null ||
  fail "cannot start the receiver in the chain pod (ephemeral container)"
k -n "$LAB_NS" wait --for=jsonpath='{.status.ephemeralContainerStatuses[0].state.running}' "pod/$lab_pod" \
  --timeout=60s >/dev/null 2>&1 || sleep 5
passed0="$(pod_metric "$LAB_NS" "$lab_pod" buildvnf_function_passed_total 'function="fw"')"
drops0="$(pod_metric "$LAB_NS" "$lab_pod" buildvnf_function_drops_total 'function="fw"' 'reason="firewall_rule"')"
send_from_client "$LAB_NS" "$lab_ip:9000" 3000 4
passed1="$(pod_metric "$LAB_NS" "$lab_pod" buildvnf_function_passed_total 'function="fw"')"
drops1="$(pod_metric "$LAB_NS" "$lab_pod" buildvnf_function_drops_total 'function="fw"' 'reason="firewall_rule"')"
send_from_client "$LAB_NS" "$lab_ip:9001" 1000 4
passed2="$(pod_metric "$LAB_NS" "$lab_pod" buildvnf_function_passed_total 'function="fw"')"
drops2="$(pod_metric "$LAB_NS" "$lab_pod" buildvnf_function_drops_total 'function="fw"' 'reason="firewall_rule"')"
info "port 9000: fw passed +$((passed1 - passed0)), dropped +$((drops1 - drops0)) of 3000"
info "port 9001: fw passed +$((passed2 - passed1)), dropped +$((drops2 - drops1)) of 1000"
((passed1 - passed0 >= 2700)) || fail "firewall passed $((passed1 - passed0)) of 3000 packets to the allowed port 9000"
((drops1 - drops0 <= 10)) || fail "firewall dropped $((drops1 - drops0)) packets to the allowed port 9000"
((drops2 - drops1 >= 900)) || fail "firewall dropped only $((drops2 - drops1)) of 1000 packets to the denied port 9001"
((passed2 - passed1 <= 10)) || fail "firewall passed $((passed2 - passed1)) packets to the denied port 9001"
k -n "$LAB_NS" wait --for=jsonpath='{.status.ephemeralContainerStatuses[0].state.terminated.reason}'=Completed \
  "pod/$lab_pod" --timeout=90s >/dev/null || fail "the receiver in the chain pod did not finish"
k -n "$LAB_NS" logs "$lab_pod" -c e2e-recv >"$tmp/lab-recv.json"
got="$(received "$tmp/lab-recv.json")"
info "receiver in the chain pod got $got packets on port 9000"
((got >= 2700)) || fail "the receiver behind the firewall got $got of 3000 allowed packets"

step "kill -9 of the lab chain's sidecar under traffic: no denied packet gets through (--on-exit keep)"
args="$(sidecar_args "$LAB_NS" lab)"
[[ "$args" =~ --on-exit[=\ ]keep ]] || fail "the lab chain's sidecar does not run with --on-exit keep (args: $args)"
restarts0="$(sidecar_restarts "$LAB_NS" "$lab_pod")"
scrape_counters "$LAB_NS" "$lab_pod" >"$tmp/kill-before.txt"
recv_beside_sidecar "$LAB_NS" "$lab_pod" 9000 50 e2e-kill-allow
recv_beside_sidecar "$LAB_NS" "$lab_pod" 9001 50 e2e-kill-deny
# 20 s of 1000 packets/s to each port; the sidecar is killed 5 s in, and restarted by the kubelet meanwhile.
k -n "$LAB_NS" exec e2e-client -- pktgen send --dst "$lab_ip:9000" --count 20000 --rate 1000 --flows 4 --json -q \
  >"$tmp/kill-allow-send.json" 2>&1 &
s_allow=$!
k -n "$LAB_NS" exec e2e-client -- pktgen send --dst "$lab_ip:9001" --count 20000 --rate 1000 --flows 4 --json -q \
  >"$tmp/kill-deny-send.json" 2>&1 &
s_deny=$!
sleep 5
kill_sidecar "$LAB_NS" "$lab_pod"
wait "$s_allow" || fail "pktgen send to :9000 failed during the kill: $(cat "$tmp/kill-allow-send.json")"
wait "$s_deny" || fail "pktgen send to :9001 failed during the kill: $(cat "$tmp/kill-deny-send.json")"
for _ in $(seq 1 60); do
  (($(sidecar_restarts "$LAB_NS" "$lab_pod") > restarts0)) && break
  sleep 2
done
(($(sidecar_restarts "$LAB_NS" "$lab_pod") > restarts0)) || fail "the killed sidecar was not restarted within 120 s"
k -n "$LAB_NS" wait --for=condition=Ready "pod/$lab_pod" --timeout=120s >/dev/null ||
  fail "the restarted sidecar of $lab_pod did not become Ready"
wait_chain "$LAB_NS" lab
wait_ephemeral "$LAB_NS" "$lab_pod" e2e-kill-allow terminated 90
wait_ephemeral "$LAB_NS" "$lab_pod" e2e-kill-deny terminated 90
allowed="$(k -n "$LAB_NS" logs "$lab_pod" -c e2e-kill-allow | jq -r '.packets // 0')"
denied="$(k -n "$LAB_NS" logs "$lab_pod" -c e2e-kill-deny | jq -r '.packets // 0')"
info "while the sidecar was killed and restarted: allowed :9000 got $allowed of 20000, denied :9001 got $denied of 20000"
((denied == 0)) || fail "$denied packets to the denied port 9001 reached the pod around the kill of its sidecar"
((allowed >= 18000)) || fail "only $allowed of 20000 allowed packets reached the pod around the kill (the chain was not kept)"
k -n "$LAB_NS" logs "$lab_pod" -c cnf-dataplane | grep -q "re-adopted generation" ||
  fail "the restarted sidecar did not re-adopt the kept chain (no 're-adopted generation' in its log)"
scrape_counters "$LAB_NS" "$lab_pod" >"$tmp/kill-after.txt"
counters_never_decrease "$tmp/kill-before.txt" "$tmp/kill-after.txt" "a kill -9 of the sidecar and its re-adoption"

step "edge chain: firewall -> NAT -> load balancer -> monitor -> forwarder, in front of two servers"
start_client "$E2E_NS"
for s in e2e-server-1 e2e-server-2; do
  k -n "$E2E_NS" run "$s" --image="$PKTGEN_IMAGE" --restart=Never --command -- sleep 3600 >/dev/null
done
k -n "$E2E_NS" wait --for=condition=Ready pod/e2e-client pod/e2e-server-1 pod/e2e-server-2 --timeout=120s >/dev/null ||
  fail "client/server pods not Ready"
s1_ip="$(k -n "$E2E_NS" get pod e2e-server-1 -o jsonpath='{.status.podIP}')"
s2_ip="$(k -n "$E2E_NS" get pod e2e-server-2 -o jsonpath='{.status.podIP}')"

# First only a firewall and a monitor: the NAT and load-balancer addresses are the chain pod's own IP, known
# once it runs; they are added by a live edit below (which must not restart the pod).
k apply -f - >/dev/null <<EOF
apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata:
  name: e2e-edge
  namespace: $E2E_NS
spec:
  classifier:
    protocol: udp
    destinationPorts: [{from: 7000, to: 7001}]
  functions:
    - name: fw
      type: firewall
      firewall:
        defaultAction: deny
        rules:
          - {action: allow, protocol: udp, destinationPorts: [{from: 7000, to: 7001}]}
    - name: mon
      type: monitor
      monitor: {countBy: protocol}
  interfaces: {ingress: eth0}
  dataplane:
    hook: auto
    telemetry: {latencyHistograms: true, sampleOneIn: 1}
  placement: {replicas: 1}
EOF
wait_chain "$E2E_NS" e2e-edge
edge_pod="$(chain_pods "$E2E_NS" e2e-edge | head -n1)"
[[ -n "$edge_pod" ]] || fail "no running pod of chain $E2E_NS/e2e-edge"
edge_ip="$(k -n "$E2E_NS" get pod "$edge_pod" -o jsonpath='{.status.podIP}')"
restarts_before="$(k -n "$E2E_NS" get pod "$edge_pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')"
# The forwarder bounces translated packets out of eth0 to the pod's gateway (the node side of its veth).
# shellcheck disable=SC2016 # the command is for the sh in the debug container, not for this shell
k -n "$E2E_NS" debug "$edge_pod" --image="$PKTGEN_IMAGE" --container=e2e-gw --target=cnf-dataplane \
  -- sh -c 'gw=$(ip -4 route show default | awk "{print \$3; exit}"); ip neigh show "$gw" | awk "{print \$5; exit}"' \
  >/dev/null || fail "cannot start a debug container in $edge_pod"
k -n "$E2E_NS" wait --for=jsonpath='{.status.ephemeralContainerStatuses[0].state.terminated.reason}'=Completed \
  "pod/$edge_pod" --timeout=90s >/dev/null || fail "the gateway lookup in $edge_pod did not finish"
gw_mac="$(k -n "$E2E_NS" logs "$edge_pod" -c e2e-gw | tr -d '[:space:]')"
[[ "$gw_mac" =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || fail "could not find the MAC of $edge_pod's gateway (got '$gw_mac')"
info "chain pod $edge_pod ($edge_ip), gateway MAC $gw_mac, servers $s1_ip and $s2_ip"

# Traffic before the edits, so that the counters compared across them are not all zero.
send_from_client "$E2E_NS" "$edge_ip:7000" 500 4
(($(pod_metric "$E2E_NS" "$edge_pod" buildvnf_chain_packets_total 'result="classified"') > 0)) ||
  fail "the edge chain classified no packet of 500 sent to it"
scrape_counters "$E2E_NS" "$edge_pod" >"$tmp/edit0.txt"

step "live edit 1: add NAT (udp $edge_ip:7001 -> $s1_ip:9000), LB (udp $edge_ip:7000 -> both servers) and a forwarder"
k -n "$E2E_NS" patch vnfchain e2e-edge --type=merge -p "$(
  cat <<EOF
{"spec": {"functions": [
  {"name": "fw", "type": "firewall", "firewall": {"defaultAction": "deny",
    "rules": [{"action": "allow", "protocol": "udp", "destinationPorts": [{"from": 7000, "to": 7001}]}]}},
  {"name": "nat", "type": "nat", "nat": {"dnat": [
    {"protocol": "udp", "destination": "$edge_ip", "port": 7001, "toAddress": "$s1_ip", "toPort": 9000}]}},
  {"name": "lb", "type": "loadBalancer", "loadBalancer": {"vip": "$edge_ip", "port": 7000, "protocol": "udp",
    "backends": [{"address": "$s1_ip", "port": 9000}, {"address": "$s2_ip", "port": 9000}]}},
  {"name": "mon", "type": "monitor", "monitor": {"countBy": "protocol"}},
  {"name": "out", "type": "forwarder", "forwarder": {"mode": "bounce", "nextHopMAC": "$gw_mac"}}
]}}
EOF
)" >/dev/null || fail "kubectl patch (add NAT/LB/forwarder) was refused"
wait_chain "$E2E_NS" e2e-edge
[[ "$(chain_pods "$E2E_NS" e2e-edge | head -n1)" == "$edge_pod" ]] || fail "the live edit replaced the chain pod"
[[ "$(k -n "$E2E_NS" get pod "$edge_pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')" == "$restarts_before" ]] ||
  fail "the live edit restarted the sidecar"
info "applied live: same pod, no restart"
scrape_counters "$E2E_NS" "$edge_pod" >"$tmp/edit1.txt"
counters_never_decrease "$tmp/edit0.txt" "$tmp/edit1.txt" "live edit 1 (kubectl patch)"

recv_in_pod "$E2E_NS" e2e-server-1 25 "$tmp/s1.json"
r1=$!
recv_in_pod "$E2E_NS" e2e-server-2 25 "$tmp/s2.json"
r2=$!
sleep 3
send_from_client "$E2E_NS" "$edge_ip:7000" 2000 64
wait "$r1" || fail "receiver on e2e-server-1 failed: $(cat "$tmp/s1.json.err")"
wait "$r2" || fail "receiver on e2e-server-2 failed: $(cat "$tmp/s2.json.err")"
got1="$(received "$tmp/s1.json")"
got2="$(received "$tmp/s2.json")"
info "load balancer: 2000 packets over 64 flows -> server-1 $got1, server-2 $got2"
((got1 + got2 >= 1800)) || fail "the backends received $((got1 + got2)) of 2000 packets sent to the VIP"
((got1 >= 200 && got2 >= 200)) || fail "the load balancer did not spread 64 flows over both backends ($got1 / $got2)"

recv_in_pod "$E2E_NS" e2e-server-1 20 "$tmp/s1-nat.json"
r1=$!
recv_in_pod "$E2E_NS" e2e-server-2 20 "$tmp/s2-nat.json"
r2=$!
sleep 3
send_from_client "$E2E_NS" "$edge_ip:7001" 1000 4
wait "$r1" || fail "receiver on e2e-server-1 failed"
wait "$r2" || fail "receiver on e2e-server-2 failed"
got1="$(received "$tmp/s1-nat.json")"
got2="$(received "$tmp/s2-nat.json")"
info "DNAT: 1000 packets to :7001 -> server-1 $got1, server-2 $got2"
((got1 >= 900)) || fail "DNAT delivered $got1 of 1000 packets to server-1"
((got2 == 0)) || fail "DNAT traffic reached server-2 ($got2 packets)"

step "live edit 2: the firewall now denies port 7000"
scrape_counters "$E2E_NS" "$edge_pod" >"$tmp/edit1b.txt"
k -n "$E2E_NS" patch vnfchain e2e-edge --type=json \
  -p '[{"op": "replace", "path": "/spec/functions/0/firewall/rules/0/destinationPorts", "value": [{"from": 7001}]}]' \
  >/dev/null || fail "kubectl patch (firewall rule) was refused"
wait_chain "$E2E_NS" e2e-edge
scrape_counters "$E2E_NS" "$edge_pod" >"$tmp/edit2.txt"
counters_never_decrease "$tmp/edit1b.txt" "$tmp/edit2.txt" "live edit 2 (kubectl patch)"
drops0="$(pod_metric "$E2E_NS" "$edge_pod" buildvnf_function_drops_total 'function="fw"' 'reason="firewall_default"')"
recv_in_pod "$E2E_NS" e2e-server-1 15 "$tmp/s1-deny.json"
r1=$!
recv_in_pod "$E2E_NS" e2e-server-2 15 "$tmp/s2-deny.json"
r2=$!
sleep 3
send_from_client "$E2E_NS" "$edge_ip:7000" 1000 16
wait "$r1" || true # no traffic at all is the expected outcome
wait "$r2" || true
got="$(($(received "$tmp/s1-deny.json") + $(received "$tmp/s2-deny.json")))"
drops1="$(pod_metric "$E2E_NS" "$edge_pod" buildvnf_function_drops_total 'function="fw"' 'reason="firewall_default"')"
info "after the edit: backends got $got of 1000, firewall default-denied +$((drops1 - drops0))"
((got == 0)) || fail "after denying port 7000, $got packets still reached the backends"
((drops1 - drops0 >= 900)) || fail "after denying port 7000 the firewall dropped only $((drops1 - drops0)) of 1000"

step "sidecar mode: a chain in front of an HTTP workload's own pods (docs/sidecar.md)"
SC_NS=buildvnf-e2e-sidecar
k get mutatingwebhookconfiguration build-vnf-operator -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | grep -q . ||
  fail "the operator did not write its CA into the MutatingWebhookConfiguration build-vnf-operator"
# The chain lives in SC_NS and selects the namespaces labelled SC_LABEL: SC_NS itself and SC_NS_B (both opted
# in to injection), and SC_NS_OFF, which carries the label but did not opt in (no copies, no injection there).
SC_NS_B=buildvnf-e2e-sidecar-b
SC_NS_OFF=buildvnf-e2e-sidecar-off
SC_LABEL=buildvnf.io/e2e-sidecar=selected
for ns in "$SC_NS" "$SC_NS_B" "$SC_NS_OFF"; do
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label namespace "$ns" "$SC_LABEL" --overwrite >/dev/null
done
# Opt the namespaces in to injection; the injected sidecar needs the privileged Pod Security level.
for ns in "$SC_NS" "$SC_NS_B"; do
  k label namespace "$ns" buildvnf.io/injection=enabled pod-security.kubernetes.io/enforce=privileged --overwrite >/dev/null
done
# The HTTP workload of namespace $1: busybox httpd serves the same page on 8080 (allowed by the chain) and 8081
# (denied); a pktgen receiver measures the rate limit.
sc_web() {
  k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $1}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: $SC_HTTP_IMAGE
          command: ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && httpd -p 8081 -h /www && exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080}, {containerPort: 8081}]
          readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
        - name: recv
          image: $PKTGEN_IMAGE
          command: ["sleep", "3600"]
EOF
}
# The workload of SC_NS exists before the chain: its pods are not injected until they are rolled.
sc_web "$SC_NS"
k -n "$SC_NS" rollout status deployment/web --timeout=180s >/dev/null || fail "the HTTP workload did not start"
k apply -f - >/dev/null <<EOF
apiVersion: buildvnf.io/v1alpha1
kind: VNFChain
metadata: {name: web-guard, namespace: $SC_NS}
spec:
  target:
    podSelector: {matchLabels: {app: web}}
    namespaceSelector: {matchLabels: {${SC_LABEL%%=*}: ${SC_LABEL#*=}}}
  functions:
    - name: fw
      type: firewall
      firewall:
        defaultAction: deny
        rules:
          - {action: allow, protocol: tcp, destinationPorts: [{from: 8080}]}
          - {action: allow, protocol: udp, destinationPorts: [{from: 9000}]}
    - name: limit
      type: rateLimiter
      rateLimiter: {packetsPerSecond: 200, burstPackets: 50, key: global}
EOF
# The pods that predate the chain are listed with the command that rolls them.
cmd=""
for _ in $(seq 1 60); do
  cmd="$(k -n "$SC_NS" get vnfchain web-guard -o jsonpath='{.status.notInjected[0].command}')"
  [[ -n "$cmd" ]] && break
  sleep 2
done
[[ "$cmd" == "kubectl -n $SC_NS rollout restart deployment/web" ]] ||
  fail "status.notInjected of web-guard does not name the rollout of deployment/web (got '$cmd')"
info "pre-existing pods reported not injected; rolling them: $cmd"
k -n "$SC_NS" rollout restart deployment/web >/dev/null
k -n "$SC_NS" rollout status deployment/web --timeout=300s >/dev/null || fail "the rolled workload did not become ready"
# The second selected namespace: the operator copies the chain's ConfigMap and TLS Secret there (names suffixed
# with the chain's namespace), and the same workload, created after the chain, is injected at creation.
sc_copies() {
  k -n "$SC_NS_B" get "configmap/web-guard-dataplane.$SC_NS" "secret/web-guard-dataplane-tls.$SC_NS" >/dev/null 2>&1
}
ok=0
for _ in $(seq 1 60); do
  sc_copies && { ok=1; break; }
  sleep 2
done
((ok == 1)) || fail "the operator did not copy web-guard's ConfigMap and TLS Secret into $SC_NS_B"
k -n "$SC_NS_B" get configmap "web-guard-dataplane.$SC_NS" -o json | jq -e --arg ns "$SC_NS" '
  .metadata.labels["buildvnf.io/chain"] == "web-guard" and .metadata.labels["buildvnf.io/chain-namespace"] == $ns
  and ((.metadata.ownerReferences // []) | length == 0)' >/dev/null ||
  fail "the ConfigMap copy in $SC_NS_B is not labelled as web-guard's (or has an owner reference)"
[[ -z "$(k -n "$SC_NS_OFF" get configmaps,secrets -l buildvnf.io/chain=web-guard -o name)" ]] ||
  fail "the operator copied into $SC_NS_OFF, which did not opt in to injection"
sc_web "$SC_NS_B"
k -n "$SC_NS_B" rollout status deployment/web --timeout=300s >/dev/null || fail "the workload of $SC_NS_B did not become ready"
# A matching pod in the namespace that did not opt in: never injected, never counted.
k -n "$SC_NS_OFF" run web-off --image="$SC_HTTP_IMAGE" --restart=Never --labels=app=web --command -- sleep 3600 >/dev/null
k -n "$SC_NS_OFF" wait --for=condition=Ready pod/web-off --timeout=120s >/dev/null || fail "pod web-off not Ready"
[[ -z "$(k -n "$SC_NS_OFF" get pod web-off -o jsonpath='{.spec.initContainers}')" ]] ||
  fail "pod web-off of $SC_NS_OFF (not opted in) was injected"
wait_chain "$SC_NS" web-guard
injected_b="$(k -n "$SC_NS_B" get pods -l app=web,buildvnf.io/chain=web-guard --field-selector=status.phase=Running -o name | wc -l)"
((injected_b == 2)) || fail "$injected_b of 2 pods of $SC_NS_B run web-guard's sidecar"
ok=0
for _ in $(seq 1 30); do
  k -n "$SC_NS" get vnfchain web-guard -o json | jq -e --arg b "$SC_NS_B" --arg off "$SC_NS_OFF" '
    .status.readyReplicas == 4 and ([.status.attachments[].pod | select(startswith($b + "/"))] | length >= 2)
    and ([(.status.notInjected // [])[] | select(.namespace == $off)] | length == 0)' >/dev/null && { ok=1; break; }
  sleep 2
done
((ok == 1)) ||
  fail "web-guard's status does not count 2 injected pods of $SC_NS and 2 of $SC_NS_B (or lists $SC_NS_OFF's pod)"
info "web-guard runs in 2 pods of $SC_NS and 2 of $SC_NS_B (copies there), nothing in $SC_NS_OFF"
sc_pod="$(k -n "$SC_NS" get pods -l app=web,buildvnf.io/chain=web-guard --field-selector=status.phase=Running \
  -o jsonpath='{.items[0].metadata.name}')"
[[ -n "$sc_pod" ]] || fail "no injected pod of deployment/web"
k -n "$SC_NS" get pod "$sc_pod" -o json | jq -e '
  (.spec.initContainers[0] | .name == "cnf-dataplane" and .restartPolicy == "Always"
    and .securityContext.privileged == false
    and (.securityContext.capabilities.add | sort) == ["BPF", "NET_ADMIN", "PERFMON"])
  and ([.spec.containers[] | select(.securityContext.capabilities.add != null)] | length == 0)' >/dev/null ||
  fail "pod $sc_pod was not injected as a native sidecar with exactly BPF, NET_ADMIN and PERFMON"
[[ -z "$(k -n "$SC_NS" get vnfchain web-guard -o jsonpath='{.status.notInjected}')" ]] ||
  fail "after the rollout, web-guard still lists pods without the sidecar"
sc_ip="$(k -n "$SC_NS" get pod "$sc_pod" -o jsonpath='{.status.podIP}')"
info "injected pod $sc_pod ($sc_ip): cnf-dataplane is a native sidecar with three capabilities"

k -n "$SC_NS" run sc-client --image="$SC_HTTP_IMAGE" --restart=Never --labels=buildvnf.io/inject=false \
  --command -- sleep 3600 >/dev/null
k -n "$SC_NS" wait --for=condition=Ready pod/sc-client --timeout=120s >/dev/null || fail "sidecar-mode client not Ready"
ok=0
for _ in $(seq 1 20); do
  if k -n "$SC_NS" exec sc-client -- wget -q -T 3 -O- "http://$sc_ip:8080/" 2>/dev/null | grep -q hello; then
    ok=$((ok + 1))
  fi
done
((ok == 20)) || fail "only $ok of 20 allowed HTTP requests to $sc_ip:8080 got through the sidecar-mode chain"
drops0="$(pod_metric "$SC_NS" "$sc_pod" buildvnf_function_drops_total 'function="fw"')"
denied=0
for _ in $(seq 1 5); do
  if k -n "$SC_NS" exec sc-client -- wget -q -T 3 -O- "http://$sc_ip:8081/" >/dev/null 2>&1; then
    denied=$((denied + 1))
  fi
done
drops1="$(pod_metric "$SC_NS" "$sc_pod" buildvnf_function_drops_total 'function="fw"')"
((denied == 0)) || fail "$denied of 5 HTTP requests to the denied port 8081 got an answer"
((drops1 > drops0)) || fail "the firewall counted no drop for the requests to port 8081"
info "HTTP: 20/20 requests to :8080 answered, 0/5 to :8081 (firewall dropped +$((drops1 - drops0)))"

# The rate limit: 3000 UDP packets at 1000/s to the allowed port 9000; 200/s + a burst of 50 may pass.
k -n "$SC_NS" exec "$sc_pod" -c recv -- pktgen recv --bind 0.0.0.0:9000 --duration 12 --json -q >"$tmp/sc-recv.json" 2>&1 &
r=$!
sleep 2
k -n "$SC_NS" run sc-udp --image="$PKTGEN_IMAGE" --restart=Never --labels=buildvnf.io/inject=false --command -- \
  pktgen send --dst "$sc_ip:9000" --count 3000 --rate 1000 --flows 4 --json -q >/dev/null
k -n "$SC_NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/sc-udp --timeout=120s >/dev/null ||
  fail "the UDP sender did not finish"
wait "$r" || fail "the receiver in $sc_pod failed: $(cat "$tmp/sc-recv.json")"
got="$(received "$tmp/sc-recv.json")"
limited="$(pod_metric "$SC_NS" "$sc_pod" buildvnf_function_drops_total 'function="limit"' 'reason="rate_limited"')"
info "rate limit 200/s: 3000 packets in 3 s -> received $got, rate-limited $limited"
((got >= 300 && got <= 1000)) || fail "the rate limiter let $got of 3000 packets through (expected 650 +- slack)"
((limited >= 1500)) || fail "the rate limiter counted only $limited drops"

# The chain filters the pods of the second namespace too.
sc_pod_b="$(k -n "$SC_NS_B" get pods -l app=web,buildvnf.io/chain=web-guard --field-selector=status.phase=Running \
  -o jsonpath='{.items[0].metadata.name}')"
sc_ip_b="$(k -n "$SC_NS_B" get pod "$sc_pod_b" -o jsonpath='{.status.podIP}')"
k -n "$SC_NS" exec sc-client -- wget -q -T 3 -O- "http://$sc_ip_b:8080/" 2>/dev/null | grep -q hello ||
  fail "an allowed HTTP request to $SC_NS_B/$sc_pod_b:8080 got no answer"
if k -n "$SC_NS" exec sc-client -- wget -q -T 3 -O- "http://$sc_ip_b:8081/" >/dev/null 2>&1; then
  fail "a request to the denied port 8081 of $SC_NS_B/$sc_pod_b got an answer"
fi
info "$SC_NS_B/$sc_pod_b: :8080 answered, :8081 dropped"
# The second namespace's labels stop matching: the chain is detached live there and the copies go.
k label namespace "$SC_NS_B" "${SC_LABEL%%=*}-" >/dev/null
ok=0
for _ in $(seq 1 30); do
  if ! sc_copies && k -n "$SC_NS" exec sc-client -- wget -q -T 3 -O- "http://$sc_ip_b:8081/" >/dev/null 2>&1; then
    ok=1
    break
  fi
  sleep 2
done
((ok == 1)) || fail "after $SC_NS_B stopped matching, its copies are still there or $sc_pod_b:8081 is still filtered"
info "$SC_NS_B no longer selected: detached live, copies removed"
k label namespace "$SC_NS_B" "$SC_LABEL" --overwrite >/dev/null
ok=0
for _ in $(seq 1 30); do
  sc_copies && { ok=1; break; }
  sleep 2
done
((ok == 1)) || fail "after $SC_NS_B matched again, the copies did not come back"
# Its sidecars were detached: they run the chain again once their pods restart (the chain's status says so).
k -n "$SC_NS_B" rollout restart deployment/web >/dev/null
k -n "$SC_NS_B" rollout status deployment/web --timeout=300s >/dev/null || fail "the rolled workload of $SC_NS_B did not become ready"
wait_chain "$SC_NS" web-guard
k -n "$SC_NS" delete vnfchain web-guard --wait --timeout=120s >/dev/null || fail "deleting vnfchain web-guard timed out"
[[ -z "$(k get configmaps,secrets -A -l "buildvnf.io/chain=web-guard,buildvnf.io/chain-namespace=$SC_NS" -o name)" ]] ||
  fail "copies of web-guard are left after its deletion"
# Deleting the chain detaches it live: port 8081 answers at once, without a rollout.
ok=0
for _ in $(seq 1 15); do
  k -n "$SC_NS" exec sc-client -- wget -q -T 3 -O- "http://$sc_ip:8081/" >/dev/null 2>&1 && { ok=1; break; }
  sleep 2
done
((ok == 1)) || fail "after deleting web-guard, port 8081 of $sc_pod is still filtered (no live detach)"
info "chain deleted: detached live, port 8081 answers"
k delete namespace "$SC_NS" "$SC_NS_B" "$SC_NS_OFF" --wait=false >/dev/null

step "Prometheus: per-function latency histograms and operator metrics"
ok=0
for _ in $(seq 1 30); do
  buckets="$(prom_query "count(buildvnf_function_latency_seconds_bucket{chain=\"e2e-edge\"})" || true)"
  samples="$(prom_query "sum(buildvnf_function_latency_seconds_count{chain=\"lab\"})" || true)"
  reconciles="$(prom_query "sum(buildvnf_operator_reconciles_total)" || true)"
  if [[ -n "$buckets" && -n "$samples" && -n "$reconciles" ]] && ((${samples%.*} > 0)); then
    ok=1
    break
  fi
  sleep 5
done
((ok == 1)) || fail "Prometheus has no latency histograms of the chains or no operator metrics after 150 s (buckets='${buckets:-}', lab samples='${samples:-}', reconciles='${reconciles:-}')"
info "Prometheus: $buckets latency bucket series for e2e-edge, ${samples%.*} lab latency samples, $reconciles reconciles"
k -n "$MONITORING_NS" get configmap -l grafana_dashboard=1 -o name | grep -q . ||
  fail "no Grafana dashboard ConfigMap (label grafana_dashboard=1)"

step "the operator under the chart's RBAC"
if k -n "$SYSTEM_NS" logs -l app.kubernetes.io/name=buildvnf-operator --all-containers --tail=-1 |
  grep -i -m 5 forbidden >"$tmp/forbidden.txt"; then
  fail "the API server refused the operator (its ClusterRole lacks a permission): $(cat "$tmp/forbidden.txt")"
fi
info "no request of the operator was forbidden"

step "delete the chains and check the cleanup"
for pair in "$E2E_NS/e2e-edge" "$LAB_NS/lab"; do
  ns="${pair%/*}"
  name="${pair#*/}"
  k -n "$ns" delete vnfchain "$name" --wait --timeout=120s >/dev/null || fail "deleting vnfchain $pair timed out"
  left=""
  for _ in $(seq 1 30); do
    left="$(k -n "$ns" get deployments,services,configmaps,pods -l "buildvnf.io/chain=$name" -o name 2>/dev/null)"
    if k get crd podmonitors.monitoring.coreos.com >/dev/null 2>&1; then
      left+="$(k -n "$ns" get podmonitors -l "buildvnf.io/chain=$name" -o name 2>/dev/null)"
    fi
    [[ -z "$left" ]] && break
    sleep 2
  done
  [[ -z "$left" ]] || fail "objects of deleted chain $pair are still there: $left"
  info "vnfchain $pair deleted; its Deployment, Service, ConfigMap, PodMonitor and pods are gone"
done

finished=1
step "e2e: all checks passed"
