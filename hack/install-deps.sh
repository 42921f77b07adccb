#!/usr/bin/env bash
# Install the OS packages Blockflow's demo and tests need (Debian/Ubuntu), only those missing.
#   etcd-server, openssl      the local control plane
#   golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev
#                             only to build kube-apiserver/kube-controller-manager/kubectl once,
#                             when they are not in $KUBEBUILDER_ASSETS, on PATH or in the cache
#   python3-venv              only when `python3 -m venv` does not work
#   postgresql                the tests start a throwaway server with its initdb/pg_ctl
#   chromium fonts-dejavu-core
#                             the web page's tests drive Debian's Chromium with Playwright
#                             (never `playwright install`); a font so text renders in screenshots
#   curl procps zsh           the docs' commands (curl), the test that runs them (pgrep), the
#                             CLI's zsh completion test
# With --node, also what a local node that runs Pods needs (hack/control-plane.sh up --node):
#   containerd runc containernetworking-plugins iptables conntrack
#                             the container runtime, the Pod network (CNI bridge) and kube-proxy
#   buildah mmdebstrap        images built here without Docker or a registry (make image)
#   gcc libc6-dev             the Pod sandbox's static `pause` binary
set -euo pipefail
NODE=0
case "${1:-}" in
  --node) NODE=1 ;;
  "") ;;
  *) echo "usage: $0 [--node]" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="${BLOCKFLOW_K8S_VERSION:-1.20.2}"
CACHE_BIN="${BLOCKFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/blockflow}/control-plane/$K8S_VERSION/bin"

have_binary() {
  [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/$1" ]] && return 0
  command -v "$1" >/dev/null 2>&1 && return 0
  [[ -x "$CACHE_BIN/$1" ]]
}

wanted=(openssl ca-certificates make curl procps zsh postgresql chromium fonts-dejavu-core)
have_binary etcd || wanted+=(etcd-server)
build_tools=0
have_binary kube-apiserver && have_binary kube-controller-manager || build_tools=1
if [[ $NODE -eq 1 ]]; then
  wanted+=(containerd runc containernetworking-plugins iptables conntrack buildah mmdebstrap
    gcc libc6-dev)
  for b in kubelet kube-scheduler kube-proxy pause; do have_binary "$b" || build_tools=1; done
fi
[[ $build_tools -eq 0 ]] || wanted+=(golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev)
python3 -m venv --help >/dev/null 2>&1 || wanted+=(python3-venv)

missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "[install-deps] all OS packages present" >&2
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || {
  echo "[install-deps] ERROR: not a Debian/Ubuntu system; install by hand: ${missing[*]} (see README)" >&2
  exit 1
}
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || {
    echo "[install-deps] ERROR: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  }
  SUDO=(sudo)
fi
echo "[install-deps] installing: ${missing[*]}" >&2
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
