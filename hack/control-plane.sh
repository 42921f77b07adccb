#!/usr/bin/env bash
# Local Kubernetes control plane for Blockflow: etcd + kube-apiserver +
# kube-controller-manager on 127.0.0.1, no Docker.
#
#   hack/control-plane.sh up       start (or reuse) it; builds the binaries once if needed
#   hack/control-plane.sh up --node  with a node that runs Pods: containerd, kubelet,
#                                  kube-scheduler, kube-proxy, cluster DNS (root; needs
#                                  `hack/install-deps.sh --node`)
#   hack/control-plane.sh load-image ARCHIVE   import an image archive into the node
#   hack/control-plane.sh env      print `export KUBECONFIG=...` (use: eval "$(hack/control-plane.sh env)")
#   hack/control-plane.sh status   is it running, where, which pids (exit 3 when stopped)
#   hack/control-plane.sh token    a bearer token for the web page (--user: the non-admin user's)
#   hack/control-plane.sh down     stop it (and its node) and delete its state; fails naming
#                                  anything a node left behind
#
# State lives in .local/control-plane/ (override: BLOCKFLOW_CONTROL_PLANE_DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${BLOCKFLOW_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
# The module uses only the standard library, so it runs before the virtualenv exists.
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m controller.testing.control_plane "$@"
