#!/usr/bin/env bash
# Builds the pmip image from the workspace's own binaries, with no registry: FROM scratch with
# pmip-lma, pmip-mag, pmip-operator and pmipctl (stripped) and exactly the shared libraries they
# link (as ldd lists them). The Dockerfile at the root builds the same image from source where a
# registry can be reached; this script is for machines without one, and for tests.
#
# Usage: e2e/containers/build-image.sh [--profile release|dev|PROFILE] [--tag IMAGE]
#                                      [--engine podman|docker|buildah] [--no-build]
#   --profile   the cargo profile whose binaries go in (default release; `dev` is target/debug)
#   --tag       the image name (default localhost/pmip:dev)
#   --engine    what builds the image (default podman; PMIP_IMAGE_ENGINE)
#   --no-build  use the binaries as they are instead of running `cargo build` first
# Prints the image's name and size last. CONTAINERS_CONF is honoured (podman, buildah).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

profile=release
tag=localhost/pmip:dev
engine=${PMIP_IMAGE_ENGINE:-podman}
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --engine) engine=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

# The programs the image ships; operator/tests/dockerfile.rs checks that the Dockerfile's
# PMIP_BINARIES names the same ones.
binaries=(pmip-lma pmip-mag pmip-operator pmipctl)

case "$profile" in
    dev|test) dir=debug ;;
    *) dir=$profile ;;
esac
bin_dir="${CARGO_TARGET_DIR:-target}/$dir"
if [ "$build" = 1 ]; then
    # MobilityDomain spec.mags.lab needs the MAG's lab feature (emulated mobile nodes).
    cargo build --locked --profile "$profile" --features mag-cnf/lab $(printf -- '--bin %s ' "${binaries[@]}")
fi
for b in "${binaries[@]}"; do
    [ -x "$bin_dir/$b" ] || { echo "build-image.sh: $bin_dir/$b is missing (build it, or drop --no-build)" >&2; exit 1; }
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/pmip-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
for b in "${binaries[@]}"; do
    strip --strip-all -o "$root/usr/local/bin/$b" "$bin_dir/$b"
done
# Every library a program links, and the dynamic loader, at the path ldd resolves it to.
libs=$(for b in "${binaries[@]}"; do ldd "$bin_dir/$b"; done \
    | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
for l in $libs; do
    mkdir -p "$root$(dirname "$l")"
    cp -L "$l" "$root$l"
done
# root for the daemons (their pods run them as 0), nonroot for the operator and pmipctl.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
# For pmipctl --ca-less https:// URLs and an OTLP collector behind a public certificate.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
"$engine" build --tag "$tag" --build-arg "VERSION=$version" -f "$here/Containerfile" "$stage" >/dev/null
size=$("$engine" image inspect --format '{{.Size}}' "$tag")
echo "$tag $size bytes (profile $profile: ${#binaries[@]} programs, $(echo "$libs" | wc -w) libraries)"
