# The pmip image from source, where a registry can be reached. Builds with Docker (BuildKit),
# podman or buildah; both base images are build arguments:
#   docker build -t pmip:dev .
#   podman build -t pmip:dev --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=... .
# Without a registry, e2e/containers/build-image.sh builds the same image from the workspace's
# binaries. operator/tests/dockerfile.rs checks that PMIP_BINARIES names the programs both ship
# (the daemons, the operator and pmipctl) and that both end with the same metadata.

# A Rust toolchain on Debian 12 (the runtime's libc must not be older than the builder's).
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
# glibc, libgcc and CA certificates, nothing else (Debian 12 distroless).
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features mag-cnf/lab --bin pmip-lma --bin pmip-mag --bin pmip-operator --bin pmipctl \
 && mkdir -p /out \
 && for b in pmip-lma pmip-mag pmip-operator pmipctl; do strip --strip-all -o "/out/$b" "target/release/$b"; done

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/ /usr/local/bin/
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pmip" \
      org.opencontainers.image.description="Proxy Mobile IPv6 (RFC 5213, RFC 5949) LMA, MAG and Kubernetes operator" \
      org.opencontainers.image.source="https://github.com/pmip-io/pmip" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PMIP_BINARIES="pmip-lma pmip-mag pmip-operator pmipctl"
# The operator and pmipctl run as this user; pmip-lma and pmip-mag need root in the node's
# network namespace (with NET_ADMIN and NET_RAW only) and their pods set runAsUser: 0.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pmip-operator"]
