# syntax=docker/dockerfile:1
# Test-traffic image for scripts/e2e.sh: pktgen (sender, receiver, reflector) plus iproute2, ping and ethtool, for the
# client and server pods and for ephemeral debug containers in chain pods. Build context: the repository root
#   docker build -f docker/pktgen.Dockerfile -t ghcr.io/build-vnf/buildvnf-pktgen:0.1.0 .

ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
# pktgen's XDP programs (ebpf/pktgen_*.c) are compiled by ebpf/build.rs with clang: clang, llvm, libbpf-dev and
# linux-libc-dev in the builder only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang llvm libbpf-dev linux-libc-dev libc6-dev gcc \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pktgen --bin pktgen \
 && install -D -m 0755 target/release/pktgen /out/pktgen

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iputils-ping ethtool \
 && rm -rf /var/lib/apt/lists/*
LABEL org.opencontainers.image.source="https://github.com/build-vnf/build-vnf" \
      org.opencontainers.image.title="buildvnf-pktgen" \
      org.opencontainers.image.description="build-vnf packet generator and receiver (test traffic)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/pktgen /usr/local/bin/pktgen
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pktgen"]
