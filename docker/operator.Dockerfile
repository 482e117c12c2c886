# syntax=docker/dockerfile:1
# The buildvnf operator image. Build context: the repository root
#   docker build -f docker/operator.Dockerfile -t ghcr.io/build-vnf/buildvnf-operator:0.1.0 .
# (scripts/build-images.sh does this for both images.)
#
# The operator links dataplane-api (gRPC code generated with protoc); it compiles no eBPF.

ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler pkg-config gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p buildvnf-operator --bin buildvnf-operator \
 && install -D -m 0755 target/release/buildvnf-operator /out/buildvnf-operator

# distroless/cc nonroot: glibc and libgcc only, uid/gid 65532; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/build-vnf/build-vnf" \
      org.opencontainers.image.title="buildvnf-operator" \
      org.opencontainers.image.description="build-vnf Kubernetes operator: reconciles VNFChains into cnf-dataplane pods" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/buildvnf-operator /usr/local/bin/buildvnf-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/buildvnf-operator"]
