# syntax=docker/dockerfile:1
# The cnf-dataplane sidecar image. Build context: the repository root
#   docker build -f docker/cnf-dataplane.Dockerfile -t ghcr.io/build-vnf/cnf-dataplane:0.1.0 .
# (scripts/build-images.sh does this for both images.)
#
# The eBPF programs (ebpf/*.c) are compiled by ebpf/build.rs (crate buildvnf-ebpf) with clang and embedded in the binary,
# so the builder needs clang, llvm, libbpf-dev (bpf_helpers.h), the kernel UAPI headers (linux-libc-dev) and
# protoc for the gRPC code; the runtime image needs none of them.

ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang llvm libbpf-dev linux-libc-dev libc6-dev gcc pkg-config protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cnf-dataplane-daemon --bin cnf-dataplane \
 && install -D -m 0755 target/release/cnf-dataplane /out/cnf-dataplane

# distroless/cc: glibc and libgcc only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:latest
LABEL org.opencontainers.image.source="https://github.com/build-vnf/build-vnf" \
      org.opencontainers.image.title="cnf-dataplane" \
      org.opencontainers.image.description="build-vnf eBPF/XDP network-function chain data plane (sidecar)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/cnf-dataplane /usr/local/bin/cnf-dataplane
# uid 0 on purpose: loading BPF programs and attaching XDP/TC needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and
# Kubernetes cannot give capabilities to a non-root user (no ambient capabilities). The pod the operator renders
# (operator/src/render.rs) drops every other capability, is not privileged and has a read-only root filesystem.
USER 0:0
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/cnf-dataplane"]
