#!/usr/bin/env bash
# For users with Docker: a kind cluster with Blockflow's CRDs, as an alternative to
# hack/control-plane.sh (which needs no Docker and is what the tests use).
#   hack/kind.sh up | down | env
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${BLOCKFLOW_KIND_CLUSTER:-blockflow}"
KUBECONFIG_PATH="$ROOT/.local/kind/kubeconfig"
command -v kind >/dev/null 2>&1 || { echo "kind is not installed: https://kind.sigs.k8s.io/" >&2; exit 1; }
case "${1:-}" in
  up)
    mkdir -p "$(dirname "$KUBECONFIG_PATH")"
    if ! kind get clusters 2>/dev/null | grep -qx "$NAME"; then
      kind create cluster --name "$NAME" --kubeconfig "$KUBECONFIG_PATH" --wait 120s
    else
      kind export kubeconfig --name "$NAME" --kubeconfig "$KUBECONFIG_PATH"
    fi
    KUBECONFIG="$KUBECONFIG_PATH" kubectl apply -f "$ROOT/crds/"
    echo "kind cluster '$NAME' ready; eval \"\$(hack/kind.sh env)\"" >&2
    ;;
  down) kind delete cluster --name "$NAME"; rm -f "$KUBECONFIG_PATH" ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
  *) echo "usage: hack/kind.sh up|down|env" >&2; exit 2 ;;
esac
