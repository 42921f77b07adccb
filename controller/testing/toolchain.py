"""The local control plane's toolchain: which Kubernetes version, where its binaries come from
(``$KUBEBUILDER_ASSETS``, ``$PATH``, the cached build, or a fresh build from Debian's source
package by ``hack/build-control-plane.sh``), and the fixed names and limits the plane uses.
Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = os.environ.get("BLOCKFLOW_K8S_VERSION", "1.20.2")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".local" / "control-plane"
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
DEFAULT_CONTROLLERS = "garbagecollector,namespace,serviceaccount"
SERVICE_CIDR, SERVICE_IP = "10.0.0.0/24", "10.0.0.1"
ADMIN_USER = "blockflow-admin"
NON_ADMIN_USER = "blockflow-user"
READY_TIMEOUT = float(os.environ.get("BLOCKFLOW_CONTROL_PLANE_TIMEOUT", "90"))


class ControlPlaneError(RuntimeError):
    """The control plane cannot be started; the message says what to do."""


def cache_root() -> Path:
    explicit = os.environ.get("BLOCKFLOW_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "blockflow"


def cached_bin_dir() -> Path:
    return cache_root() / "control-plane" / K8S_VERSION / "bin"


def _find_binary(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / name).is_file():
        return Path(assets) / name
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    cached = cached_bin_dir() / name
    return cached if cached.is_file() else None


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path


NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "pause")


def resolve_node_binaries(*, build: bool = True) -> dict[str, str]:
    """kubelet, kube-scheduler, kube-proxy and pause, built from the same tree when missing."""
    found = {name: _find_binary(name) for name in NODE_BINARIES}
    if any(path is None for path in found.values()) and build:
        _build_from_source("--node")
        found = {name: _find_binary(name) for name in NODE_BINARIES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise ControlPlaneError(f"{', '.join(missing)} not found; look in {cached_bin_dir()}.")
    return {name: str(path) for name, path in found.items()}


def resolve_binaries(*, build: bool = True) -> Binaries:
    """Find the four binaries, building the Kubernetes ones from source when needed."""
    etcd = _find_binary("etcd")
    if etcd is None:
        raise ControlPlaneError(
            "etcd not found. Install it (Debian/Ubuntu: `apt-get install etcd-server`, or run "
            "`hack/install-deps.sh` as root), or set KUBEBUILDER_ASSETS to envtest's binaries."
        )
    wanted = ("kube-apiserver", "kube-controller-manager")
    found = {name: _find_binary(name) for name in wanted}
    if any(path is None for path in found.values()):
        if not build:
            missing = ", ".join(n for n, p in found.items() if p is None)
            raise ControlPlaneError(f"{missing} not found and building is disabled.")
        _build_from_source()
        found = {name: _find_binary(name) for name in wanted}
    apiserver, kcm = found["kube-apiserver"], found["kube-controller-manager"]
    if apiserver is None or kcm is None:
        raise ControlPlaneError(
            f"kube-apiserver or kube-controller-manager still missing after the build; "
            f"look in {cached_bin_dir()}."
        )
    # Prefer the kubectl built beside the API server: same version, no skew surprises.
    kubectl = apiserver.parent / "kubectl"
    if not kubectl.is_file():
        kubectl = Path(shutil.which("kubectl") or cached_bin_dir() / "kubectl")
    return Binaries(etcd, apiserver, kcm, kubectl)


def _build_from_source(*flags: str) -> None:
    what = "the node's binaries" if flags else "kube-apiserver/kube-controller-manager"
    print(
        f"[control-plane] building {what} into {cached_bin_dir()} (one-off, minutes)",
        file=sys.stderr,
    )
    result = subprocess.run(["bash", str(BUILD_SCRIPT), *flags], check=False)
    if result.returncode != 0:
        raise ControlPlaneError(
            "building the control plane failed (see the output above). Either install envtest's "
            "binaries and set KUBEBUILDER_ASSETS, or install the build prerequisites with "
            "`sudo hack/install-deps.sh` and run `hack/control-plane.sh up` again."
        )
