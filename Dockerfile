# syntax=docker/dockerfile:1
# One image with every pmip binary. Build from the repository root:
#   docker build -t ghcr.io/pmip-io/pmip:dev .
# operator/tests/dockerfile.rs checks that PMIP_BINARIES below is exactly the set of bin
# targets the workspace declares (cargo metadata).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && for b in crdgen pmip-bench pmip-lab pmip-lma pmip-mag pmip-operator pmipctl; do cp "target/release/$b" /out/; done

FROM debian:bookworm-slim AS runtime
# iproute2: the daemons' lab mode and troubleshooting; ca-certificates: OTLP over TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates iproute2 \
 && rm -rf /var/lib/apt/lists/*
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pmip" \
      org.opencontainers.image.description="Proxy Mobile IPv6 (RFC 5213, RFC 5949) LMA, MAG and Kubernetes operator" \
      org.opencontainers.image.source="https://github.com/pmip-io/pmip" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PMIP_BINARIES="crdgen pmip-bench pmip-lab pmip-lma pmip-mag pmip-operator pmipctl"
COPY --from=build /out/ /usr/local/bin/
# The operator, crdgen and pmipctl run as this user; pmip-lma and pmip-mag need root in the host network
# namespace (with NET_ADMIN/NET_RAW only) and their pods set runAsUser: 0 themselves.
RUN mkdir -p /var/lib/pmip /etc/pmip && chown 65532:65532 /var/lib/pmip
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pmip-operator"]
