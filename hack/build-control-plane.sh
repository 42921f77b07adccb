#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kubectl from Debian's
# `kubernetes` source package into the Blockflow cache, for machines without
# Docker, envtest or a cluster.  Idempotent: a finished build is reused.
#
#   hack/build-control-plane.sh           the control plane
#   hack/build-control-plane.sh --node    also kubelet, kube-scheduler, kube-proxy and the
#                                         Pod sandbox's `pause` binary, for a node that runs Pods
#
# Why from source: Debian ships etcd and Go but no API server binary.  The
# source package (Kubernetes 1.20.2) carries its vendor/ tree, so the build
# needs no network beyond Debian's archive.
set -euo pipefail

K8S_VERSION="${BLOCKFLOW_K8S_VERSION:-1.20.2}"
CACHE_ROOT="${BLOCKFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/blockflow}"
DEST="$CACHE_ROOT/control-plane/$K8S_VERSION"
BIN="$DEST/bin"
WORK="$DEST/build"
WANTED=(kube-apiserver kube-controller-manager kubectl)
NODE=0
case "${1:-}" in
  --node) NODE=1; WANTED+=(kubelet kube-scheduler kube-proxy) ;;
  "") ;;
  *) echo "usage: $0 [--node]" >&2; exit 2 ;;
esac

log() { printf '[build-control-plane] %s\n' "$*" >&2; }
die() { printf '[build-control-plane] ERROR: %s\n' "$*" >&2; exit 1; }

all_built() {
  local b
  for b in "${WANTED[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
  [[ $NODE -eq 0 || -x "$BIN/pause" ]]
}

if all_built; then
  log "already built: $BIN"
  exit 0
fi

for tool in go rsync make dpkg-source apt-get; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing. Install the build prerequisites first: sudo hack/install-deps.sh (Debian/Ubuntu: golang-go rsync make dpkg-dev golang-github-modern-go-reflect2-dev)."
done
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -d "$REFLECT2_SRC" ]] || die "$REFLECT2_SRC not found: install Debian's golang-github-modern-go-reflect2-dev (the vendored reflect2 v1.0.1 crashes under Go >= 1.18)."

ensure_deb_src() {
  # apt-get source needs a deb-src entry; copy Debian's own entry with Types: deb-src.
  if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die "no deb-src entry in apt's sources and not root: add one (see hack/install-deps.sh) or run as root."
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      > /etc/apt/sources.list.d/blockflow-deb-src.sources
  elif [[ -f /etc/apt/sources.list ]]; then
    grep -E '^deb ' /etc/apt/sources.list | sed -E 's/^deb /deb-src /' \
      > /etc/apt/sources.list.d/blockflow-deb-src.list
  else
    die "cannot find Debian's apt sources to derive a deb-src entry from."
  fi
  log "added a deb-src entry; running apt-get update"
  apt-get update -qq
}

fetch_source() {
  mkdir -p "$WORK"
  local tree
  tree=$(find "$WORK" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
  if [[ -n "$tree" && -f "$tree/.blockflow-patched" ]]; then
    echo "$tree"; return 0
  fi
  rm -rf "$WORK"/kubernetes-*/
  ensure_deb_src
  log "downloading Debian's kubernetes source package"
  (cd "$WORK" && apt-get source --download-only kubernetes >&2)
  local dsc
  dsc=$(ls "$WORK"/kubernetes_*.dsc | head -n1)
  log "unpacking $(basename "$dsc")"
  (cd "$WORK" && dpkg-source --no-check -x "$dsc" >&2)
  tree=$(find "$WORK" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
  [[ -n "$tree" ]] || die "unpacking the source package produced no tree in $WORK"
  patch_reflect2 "$tree"
  touch "$tree/.blockflow-patched"
  echo "$tree"
}

patch_reflect2() {
  # The vendored reflect2 v1.0.1 segfaults (mapiterinit) under Go >= 1.18 on
  # the first custom-resource create; Debian's 1.0.2 is a drop-in fix.
  local tree=$1 vend="$1/vendor/github.com/modern-go/reflect2"
  log "replacing vendored reflect2 v1.0.1 with Debian's v1.0.2"
  rm -rf "$vend"
  cp -r "$REFLECT2_SRC" "$vend"
  rm -f "$vend/go.mod" "$vend/go.sum"
  sed -i -E 's#^(\# github.com/modern-go/reflect2) v1\.0\.1#\1 v1.0.2#' "$tree/vendor/modules.txt"
  sed -i -E 's#(github.com/modern-go/reflect2) v1\.0\.1#\1 v1.0.2#' "$tree/go.mod"
  grep -q 'github.com/modern-go/reflect2 v1.0.2' "$tree/vendor/modules.txt" \
    || die "could not pin reflect2 v1.0.2 in vendor/modules.txt"
}

build() {
  local tree=$1
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn "$tree" "$tree/.go/src/k8s.io/kubernetes"
  local what="" b missing=()
  for b in "${WANTED[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
  [[ ${#missing[@]} -gt 0 ]] || return 0
  for b in "${missing[@]}"; do what+="cmd/$b "; done
  log "building ${missing[*]} (about 6-7 minutes on 2 cores the first time, 2-3 for the node's)"
  (
    cd "$tree/.go/src/k8s.io/kubernetes"
    export GOPATH="$tree/.go" CGO_ENABLED=0 GOFLAGS=-mod=vendor GO111MODULE=on
    export GOCACHE="$WORK/go-build-cache"
    export KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
    make WHAT="${what% }" >&2
  )
  mkdir -p "$BIN"
  for b in "${missing[@]}"; do
    install -m 0755 "$tree/_output/local/bin/linux/amd64/$b" "$BIN/$b"
  done
}

build_pause() {
  # The Pod sandbox's process: the tree's pause.c, linked statically (no image registry here).
  local tree=$1
  [[ $NODE -eq 1 && ! -x "$BIN/pause" ]] || return 0
  command -v gcc >/dev/null 2>&1 || die "'gcc' is missing: install gcc and libc6-dev (hack/install-deps.sh --node)."
  log "compiling pause"
  gcc -Os -static -o "$BIN/pause.tmp" "$tree/build/pause/linux/pause.c"
  strip "$BIN/pause.tmp" 2>/dev/null || true
  mv "$BIN/pause.tmp" "$BIN/pause"
}

tree=$(fetch_source)
build "$tree"
build_pause "$tree"
all_built || die "build finished but binaries are missing from $BIN"
log "built into $BIN"
