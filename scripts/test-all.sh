#!/usr/bin/env bash
# Installs what the tests need, then runs every test of the workspace (README, command 2).
#
# Idempotent: a Debian package or Python tool already present is not installed again, so the
# second run goes straight to the tests. Needs root (network namespaces, raw sockets, apt-get).
# Arguments go to `cargo test --workspace` (for example `-- --nocapture`).
#
# The tests use these as independent checks and peers:
#   tshark             decodes our Mobility Headers and Router Advertisements (Wireshark's dissector)
#   iproute2, nftables the namespace lab's fault tests (packets dropped with `numgen random`)
#   iperf3             the datapath benchmark's smoke test
#   isc-dhcp-client,   stock DHCPv4 clients (dhclient, busybox udhcpc) of the IPv4 nodes; busybox
#   udhcpc, busybox    also brings arping and ping
#   prometheus         promtool, which lints both daemons' /metrics (`promtool check metrics`)
#   python3-pip        for .ci/requirements.txt: scapy, the Helm engine, kubernetes-validate,
#                      Python's gRPC client with reflection
#   podman, runc,      e2e/tests/pods.rs: the image built offline and the operator's pods run
#   catatonit,         as containers (runc, since crun refuses a hybrid cgroup layout; catatonit
#   binutils           for podman's pod infra container; strip for the image's programs)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test-all.sh: run as root (the tests make network namespaces and raw sockets)" >&2
    exit 2
fi

# package -> a file it installs (checked instead of asking dpkg, so a tool installed some other
# way counts too).
packages=(
    "tshark:/usr/bin/tshark"
    "iproute2:/usr/sbin/ip"
    "nftables:/usr/sbin/nft"
    "iperf3:/usr/bin/iperf3"
    "isc-dhcp-client:/sbin/dhclient"
    "udhcpc:/sbin/udhcpc"
    "busybox:/bin/busybox"
    "prometheus:/usr/bin/promtool"
    "podman:/usr/bin/podman"
    "runc:/usr/sbin/runc"
    "catatonit:/usr/bin/catatonit"
    "binutils:/usr/bin/strip"
)
missing=()
for p in "${packages[@]}"; do
    [ -e "${p#*:}" ] || missing+=("${p%%:*}")
done
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "scripts/test-all.sh: missing ${missing[*]}, and this is not a Debian-like system: install them and run again" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Asked at install time otherwise: no setuid dumpcap, no iperf3 daemon.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# pip answers quickly when every requirement is already satisfied. Debian's own Python marks
# itself externally managed (PEP 668); these are test tools, so they go beside its packages.
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r .ci/requirements.txt

# Every file, function and test docs/CONFORMANCE.md names must exist.
python3 scripts/check-conformance-refs.py

exec cargo test --workspace "$@"
