#!/usr/bin/env bash
# End-to-end on kind: build the image, load it, install the chart, create a domain and two
# lab-mode mobile nodes, hand one over with `kubectl patch`, and check `kubectl get mobilenodes`.
# Needs docker, kind, helm and kubectl on PATH. Usage: e2e/kind/run.sh [--keep]
# PMIP_KIND_BUILD=offline: build the image with e2e/containers/build-image.sh (cargo and the
# workspace's release binaries, no registry) instead of the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER=pmip
NS=pmip-system
IMAGE=pmip:kind
KEEP=${1:-}

cleanup() { [ "$KEEP" = "--keep" ] || kind delete cluster --name "$CLUSTER"; }
trap cleanup EXIT

kind create cluster --config e2e/kind/kind-config.yaml --wait 120s
if [ "${PMIP_KIND_BUILD:-}" = offline ]; then
    e2e/containers/build-image.sh --engine docker --tag "$IMAGE"
else
    docker build -t "$IMAGE" .
fi
kind load docker-image "$IMAGE" --name "$CLUSTER"

helm install pmip charts/pmip --namespace "$NS" --create-namespace \
  --set image.repository=pmip --set image.tag=kind --set image.pullPolicy=Never \
  --wait --timeout 5m

# hostNetwork, NET_ADMIN and the privileged sysctl init container: Pod Security "privileged".
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=privileged --overwrite
kubectl apply -f e2e/kind/domain.yaml
kubectl -n "$NS" wait mobilitydomain/lab --for=condition=Ready --timeout=5m
kubectl -n "$NS" get mobilitydomains

# The LMA answers the gRPC health check (the chart's test pod).
helm upgrade pmip charts/pmip --namespace "$NS" --reuse-values --set tests.domain=lab --wait
helm test pmip --namespace "$NS" --timeout 2m

kubectl apply -f e2e/kind/mobilenodes.yaml
kubectl -n "$NS" wait mobilenode/phone-1 --for=jsonpath='{.status.state}'=Attached --timeout=2m
kubectl -n "$NS" wait mobilenode/phone-2 --for=jsonpath='{.status.state}'=Attached --timeout=2m
kubectl -n "$NS" get mobilenodes -o wide
prefix_before=$(kubectl -n "$NS" get mobilenode/phone-1 -o jsonpath='{.status.prefix}')

# Hand phone-1 over to the other worker's MAG.
kubectl -n "$NS" patch mobilenode/phone-1 --type merge -p '{"spec":{"lab":{"attachTo":"pmip-worker2"}}}'
kubectl -n "$NS" wait mobilenode/phone-1 --for=jsonpath='{.status.mag}'=pmip-worker2 --timeout=2m
kubectl -n "$NS" wait mobilenode/phone-1 --for=jsonpath='{.status.state}'=Attached --timeout=2m
kubectl -n "$NS" get mobilenodes

prefix_after=$(kubectl -n "$NS" get mobilenode/phone-1 -o jsonpath='{.status.prefix}')
handovers=$(kubectl -n "$NS" get mobilenode/phone-1 -o jsonpath='{.status.handovers}')
[ "$prefix_before" = "$prefix_after" ] || { echo "prefix changed: $prefix_before -> $prefix_after"; exit 1; }
[ "$handovers" -ge 1 ] || { echo "no handover counted"; exit 1; }
[ "$(kubectl -n "$NS" get mobilenode/phone-2 -o jsonpath='{.status.prefix}')" = "2001:db8:100:2::/64" ] \
  || { echo "phone-2 did not get its pinned prefix"; exit 1; }
echo "e2e: phone-1 kept $prefix_after across $handovers handover(s)"
