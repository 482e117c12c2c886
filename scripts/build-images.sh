#!/usr/bin/env bash
# Builds the build-vnf container images with one version tag:
#   <registry>/buildvnf-operator:<tag>   (docker/operator.Dockerfile)
#   <registry>/cnf-dataplane:<tag>       (docker/cnf-dataplane.Dockerfile, eBPF objects embedded)
#   <registry>/buildvnf-pktgen:<tag>     (docker/pktgen.Dockerfile, test traffic for scripts/e2e.sh)
#
# Usage: scripts/build-images.sh [--tag TAG] [--registry REGISTRY] [--push] [--kind-load CLUSTER] [IMAGE...]
#   TAG defaults to the workspace version in Cargo.toml (the chart's appVersion), REGISTRY to ghcr.io/build-vnf.
#   IMAGE is any of: operator cnf-dataplane pktgen (default: all three).
# Needs docker with BuildKit (docker buildx); --kind-load needs kind.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

die() {
  echo "build-images: $*" >&2
  exit 1
}

workspace_version() {
  # The version line of [workspace.package] in the root Cargo.toml.
  awk '/^\[workspace.package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/, "", $0); sub(/^version=/, "", $0); print; exit}' Cargo.toml
}

tag="${BUILDVNF_TAG:-}"
registry="${BUILDVNF_REGISTRY:-ghcr.io/build-vnf}"
push=false
kind_cluster=""
images=()
while (($#)); do
  case "$1" in
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    --registry) registry="${2:?--registry needs a value}"; shift 2 ;;
    --push) push=true; shift ;;
    --kind-load) kind_cluster="${2:?--kind-load needs a cluster name}"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    operator|cnf-dataplane|pktgen) images+=("$1"); shift ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ -n "$tag" ]] || tag="$(workspace_version)"
[[ -n "$tag" ]] || die "cannot read the workspace version from Cargo.toml; pass --tag"
((${#images[@]})) || images=(operator cnf-dataplane pktgen)

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the docker daemon (is it running, and may this user use it?)"
if [[ -n "$kind_cluster" ]]; then
  command -v kind >/dev/null 2>&1 || die "--kind-load needs kind on PATH"
fi

# image name and Dockerfile for each image
image_name() {
  case "$1" in
    operator) echo "buildvnf-operator" ;;
    cnf-dataplane) echo "cnf-dataplane" ;;
    pktgen) echo "buildvnf-pktgen" ;;
  esac
}

built=()
for image in "${images[@]}"; do
  dockerfile="docker/${image}.Dockerfile"
  [[ -f "$dockerfile" ]] || die "missing $dockerfile"
  ref="${registry}/$(image_name "$image"):${tag}"
  echo "== building $ref from $dockerfile"
  DOCKER_BUILDKIT=1 docker build --file "$dockerfile" --tag "$ref" \
    --label "org.opencontainers.image.version=${tag}" \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    . || die "building $ref failed"
  built+=("$ref")
done

if [[ "$push" == true ]]; then
  for ref in "${built[@]}"; do
    echo "== pushing $ref"
    docker push "$ref" || die "pushing $ref failed"
  done
fi
if [[ -n "$kind_cluster" ]]; then
  for ref in "${built[@]}"; do
    echo "== loading $ref into kind cluster $kind_cluster"
    kind load docker-image --name "$kind_cluster" "$ref" || die "loading $ref into kind failed"
  done
fi
echo "== built: ${built[*]}"
