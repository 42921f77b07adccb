#!/usr/bin/env bash
# A Python base image made here, for machines that reach no image registry: Debian bookworm
# (minbase) with python3 (3.11) and its venv module, made with mmdebstrap from Debian's
# packages and stored in buildah's local storage as localhost/blockflow-base:bookworm.
# `make image BASE_IMAGE=localhost/blockflow-base:bookworm` builds the controller FROM it.
# Idempotent: an existing image is kept (BLOCKFLOW_REBUILD_BASE=1 makes it again).
set -euo pipefail
NAME="${BLOCKFLOW_BASE_IMAGE:-localhost/blockflow-base:bookworm}"
log() { printf '[base-image] %s\n' "$*" >&2; }
for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 \
    || { log "ERROR: '$tool' is missing: run hack/install-deps.sh --node as root"; exit 1; }
done
if [[ "${BLOCKFLOW_REBUILD_BASE:-0}" != 1 ]] && buildah inspect --type image "$NAME" >/dev/null 2>&1; then
  log "$NAME exists"
  exit 0
fi
work=$(mktemp -d)
container=""
cleanup() {
  [[ -z "$container" ]] || buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
log "making a Debian bookworm root filesystem with python3 (about a minute)"
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$work/rootfs.tar"
container=$(buildah from scratch)
buildah add --quiet "$container" "$work/rootfs.tar" / >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd /usr/bin/python3 "$container"
buildah commit --quiet --rm "$container" "$NAME" >/dev/null
container=""
log "made $NAME"
