#!/usr/bin/env bash
# For users with Docker and kind: a kind cluster running Blockflow from this checkout, the way
# the README's install section describes (the tests do the same without Docker on a local node:
# hack/control-plane.sh up --node).
#   hack/kind.sh up      cluster (or reuse), docker build, kind load, CRDs, helm install --wait
#   hack/kind.sh down    delete the cluster
#   hack/kind.sh env     print `export KUBECONFIG=...`
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${BLOCKFLOW_KIND_CLUSTER:-blockflow}"
IMAGE="${BLOCKFLOW_IMAGE:-blockflow:dev}"
KUBECONFIG_PATH="$ROOT/.local/kind/kubeconfig"
need() { command -v "$1" >/dev/null 2>&1 || { echo "$1 is not installed: $2" >&2; exit 1; }; }
case "${1:-}" in
  up)
    need kind https://kind.sigs.k8s.io/
    need docker https://docs.docker.com/engine/install/
    need helm https://helm.sh/docs/intro/install/
    mkdir -p "$(dirname "$KUBECONFIG_PATH")"
    if ! kind get clusters 2>/dev/null | grep -qx "$NAME"; then
      kind create cluster --name "$NAME" --kubeconfig "$KUBECONFIG_PATH" --wait 120s
    else
      kind export kubeconfig --name "$NAME" --kubeconfig "$KUBECONFIG_PATH"
    fi
    docker build -t "$IMAGE" "$ROOT"
    kind load docker-image "$IMAGE" --name "$NAME"
    export KUBECONFIG="$KUBECONFIG_PATH"
    kubectl apply -f "$ROOT/crds/"
    helm upgrade --install blockflow "$ROOT/charts/blockflow" -n blockflow-system \
      --create-namespace --wait --timeout 5m \
      --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}"
    echo "kind cluster '$NAME' runs Blockflow; eval \"\$(hack/kind.sh env)\"" >&2
    ;;
  down) need kind https://kind.sigs.k8s.io/; kind delete cluster --name "$NAME"; rm -f "$KUBECONFIG_PATH" ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
  *) echo "usage: hack/kind.sh up|down|env" >&2; exit 2 ;;
esac
