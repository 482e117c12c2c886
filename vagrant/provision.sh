#!/usr/bin/env bash
# Provisions the build-vnf testbed VM (Ubuntu 24.04; run as root by the Vagrantfile, or by hand with sudo):
# docker, kind, kubectl, helm, rustup with Rust 1.95, clang/llvm/libbpf-dev/protobuf-compiler; then creates the
# kind cluster of kind-config/cluster.yaml, builds and loads the images (scripts/build-images.sh), installs
# kube-prometheus-stack (Prometheus + Grafana) and the build-vnf chart (charts/build-vnf).
# Idempotent: a second run skips what is already there.
set -euo pipefail

REPO="${REPO:-/build-vnf}"
SKIP_CLUSTER="${SKIP_CLUSTER:-0}"
USER_NAME="${SUDO_USER:-vagrant}"
KIND_VERSION="${KIND_VERSION:-v0.30.0}"
KUBECTL_VERSION="${KUBECTL_VERSION:-}" # empty: the current stable release
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
RUST_VERSION="${RUST_VERSION:-1.95}"
CLUSTER="${CLUSTER:-build-vnf}"

log() { printf '\n== provision: %s\n' "$*"; }
die() {
  echo "provision: FAILED: $*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root"
[[ -d "$REPO" ]] || die "the repository is not at $REPO (set REPO)"
arch="$(dpkg --print-architecture)"

log "system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  ca-certificates curl gnupg git jq make gcc libc6-dev pkg-config \
  clang llvm libbpf-dev linux-libc-dev protobuf-compiler iproute2 ethtool shellcheck >/dev/null

log "docker"
if ! command -v docker >/dev/null 2>&1; then
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL https://download.docker.com/linux/ubuntu/gpg -o /etc/apt/keyrings/docker.asc
  chmod a+r /etc/apt/keyrings/docker.asc
  # shellcheck source=/dev/null
  codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  echo "deb [arch=${arch} signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/ubuntu ${codename} stable" \
    >/etc/apt/sources.list.d/docker.list
  apt-get update -qq
  apt-get install -y -qq docker-ce docker-ce-cli containerd.io docker-buildx-plugin >/dev/null
fi
systemctl enable --now docker >/dev/null
usermod -aG docker "$USER_NAME" || true

log "kind $KIND_VERSION"
if ! command -v kind >/dev/null 2>&1; then
  curl -fsSLo /usr/local/bin/kind "https://kind.sigs.k8s.io/dl/${KIND_VERSION}/kind-linux-${arch}"
  chmod 0755 /usr/local/bin/kind
fi

log "kubectl"
if ! command -v kubectl >/dev/null 2>&1; then
  version="${KUBECTL_VERSION:-$(curl -fsSL https://dl.k8s.io/release/stable.txt)}"
  curl -fsSLo /usr/local/bin/kubectl "https://dl.k8s.io/release/${version}/bin/linux/${arch}/kubectl"
  chmod 0755 /usr/local/bin/kubectl
fi

log "helm $HELM_VERSION"
if ! command -v helm >/dev/null 2>&1; then
  tmp="$(mktemp -d)"
  curl -fsSL "https://get.helm.sh/helm-${HELM_VERSION}-linux-${arch}.tar.gz" | tar -xz -C "$tmp"
  install -m 0755 "$tmp/linux-${arch}/helm" /usr/local/bin/helm
  rm -rf "$tmp"
fi

log "rustup with Rust $RUST_VERSION (for $USER_NAME)"
user_home="$(getent passwd "$USER_NAME" | cut -d: -f6)"
if [[ ! -x "$user_home/.cargo/bin/cargo" ]]; then
  sudo -u "$USER_NAME" -H bash -c \
    "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain ${RUST_VERSION} --profile minimal"
fi
sudo -u "$USER_NAME" -H "$user_home/.cargo/bin/rustup" default "$RUST_VERSION" >/dev/null

log "BPF filesystem and kernel settings"
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
# kind runs many nodes' worth of pods on one kernel: raise the inotify limits it needs.
sysctl -q -w fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512

if [[ "$SKIP_CLUSTER" == 1 ]]; then
  log "SKIP_CLUSTER=1: tools only"
  exit 0
fi

as_user() { sudo -u "$USER_NAME" -H --preserve-env=PATH bash -c "cd '$REPO' && $*"; }
export PATH="$user_home/.cargo/bin:$PATH"

log "kind cluster $CLUSTER (kind-config/cluster.yaml)"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "$REPO/kind-config/cluster.yaml" --wait 180s
fi
install -d -o "$USER_NAME" "$user_home/.kube"
kind get kubeconfig --name "$CLUSTER" >"$user_home/.kube/config"
chown "$USER_NAME" "$user_home/.kube/config"

log "images (scripts/build-images.sh, loaded into kind)"
as_user "scripts/build-images.sh --kind-load $CLUSTER" || die "building the images failed"
tag="$(awk '/^\[workspace.package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/, "", $0); sub(/^version=/, "", $0); print; exit}' "$REPO/Cargo.toml")"

log "kube-prometheus-stack (Prometheus + Grafana)"
as_user "helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null"
as_user "helm upgrade --install kps prometheus-community/kube-prometheus-stack --namespace monitoring --create-namespace \
  --set fullnameOverride=kps --set alertmanager.enabled=false \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set grafana.sidecar.dashboards.searchNamespace=ALL --wait --timeout 10m" ||
  die "installing kube-prometheus-stack failed"

log "build-vnf chart (charts/build-vnf)"
as_user "helm upgrade --install build-vnf charts/build-vnf --namespace buildvnf-system --create-namespace \
  --set operator.image.tag=$tag --set dataplane.image.tag=$tag \
  --set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true \
  --set grafana.dashboard.enabled=true --wait --timeout 5m" || die "installing the build-vnf chart failed"

log "ready"
cat <<MSG
  kubectl get pods -A                       # the cluster
  kubectl apply -f examples/edge-chain.yaml # a chain (namespace default)
  scripts/e2e.sh                            # the end-to-end test (REUSE_CLUSTER=1 SKIP_BUILD=1 to use this cluster)
  kubectl -n monitoring port-forward svc/kps-grafana 3000:80   # Grafana (admin / prom-operator), dashboard "build-vnf"
MSG
