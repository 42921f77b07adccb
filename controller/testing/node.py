"""A node that runs Pods, added to the local control plane (``hack/control-plane.sh up --node``).

Why it exists: the controller, its image and its Helm chart are used in clusters where they run
as Pods, and a control plane without nodes never runs one. This room starts, beside the API
server, what a kubeadm node runs — containerd with runc and a CNI bridge, kubelet,
kube-scheduler, kube-proxy (iptables) — plus a small cluster DNS (``cluster_dns``), all from
Debian's packages and the Kubernetes tree that ``hack/build-control-plane.sh --node`` builds.

The pieces no package ships (the runc wrapper that works around what this VM refuses, the
Pod sandbox image) are in ``node_files``; the bridge and the guard chains that keep the Pods'
network on this machine are in ``node_network``. ``Node.stop`` takes everything down again:
Pods, processes, mounts, the network and the sysctls it changed, and reports anything it could
not remove. Standard library only, like ``control_plane``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from controller.testing.node_files import PAUSE_IMAGE, RUNC_WRAPPER, pause_archive
from controller.testing.node_network import (
    BRIDGE,
    GATEWAY,
    POD_CIDR,
    NodeError,
    bridge_exists,
    free_port,
    make_network,
    network_leftovers,
    remove_network,
)
from controller.testing.node_network import run as _run

NODE_NAME = "node1"
CLUSTER_DOMAIN = "cluster.local"
CNI_NETWORK = "blockflow"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
NODE_CONTROLLERS = (
    "garbagecollector,namespace,serviceaccount,serviceaccount-token,job,deployment,replicaset,"
    "endpoint,endpointslice,disruption,podgc,statefulset,daemonset,ttl,nodelifecycle"
)
STOP_ORDER = ("kubelet", "kube-proxy", "kube-scheduler", "cluster-dns", "containerd")


def _require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise NodeError(
            f"{', '.join(missing)} not found: run `hack/install-deps.sh --node` as root "
            "(Debian/Ubuntu: containerd runc containernetworking-plugins iptables conntrack)."
        )


def cni_bin_dir() -> str:
    for folder in CNI_BIN_DIRS:
        if Path(folder, "bridge").is_file():
            return folder
    raise NodeError("the CNI bridge plugin is missing: install containernetworking-plugins.")


class Node:
    """The node's processes and files, under ``<plane state dir>/node``."""

    def __init__(self, plane_dir: Path) -> None:
        self.dir = plane_dir / "node"
        self.logs = plane_dir / "logs"
        # Sockets live under a short path (a unix socket's path has at most 107 bytes, and a
        # checkout may be deep): containerd's socket and state, and kubelet's root directory.
        tag = hashlib.sha256(str(plane_dir.resolve()).encode()).hexdigest()[:10]
        self.run_dir = Path("/run") / f"blockflow-node-{tag}"
        self._pod_uids: list[str] = []

    # -- paths --------------------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.run_dir / "kubelet"

    @property
    def _saved_sysctls(self) -> Path:
        return self.dir / "sysctls.json"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.socket), "-n", "k8s.io", *args, check=check)

    # -- network ------------------------------------------------------------------------------

    def prepare_network(self, api_port: int) -> None:
        """The bridge with the host's address, the guard chains and the sysctls a node needs."""
        if os.geteuid() != 0:
            raise NodeError(
                "a node needs root (containerd, kubelet and kube-proxy set up mounts, network "
                "namespaces and iptables): run as root, e.g. `sudo make test`."
            )
        _require("ip", "iptables", "containerd", "runc", "ctr", "conntrack")
        if bridge_exists():
            if _pids_matching(_is_node_process):
                raise NodeError(
                    f"the bridge {BRIDGE} is in use: another local node runs on this machine; "
                    "stop it with `hack/control-plane.sh down` in its checkout."
                )
            self._clear_stale()
        self.dir.mkdir(parents=True, exist_ok=True)
        make_network(api_port, self._saved_sysctls)

    # -- start --------------------------------------------------------------------------------

    def write_configs(self, binaries: dict[str, str], kubelet_port: int) -> None:
        containerd_dir = self.dir / "containerd"
        cni_conf = self.dir / "cni" / "net.d"
        for folder in (containerd_dir, cni_conf, self.kubelet_dir, self.dir / "cni" / "ipam"):
            folder.mkdir(parents=True, exist_ok=True)
        runc = shutil.which("runc") or "/usr/sbin/runc"
        wrapper = self.dir / "runc-wrapper"
        wrapper.write_text(RUNC_WRAPPER.format(python=sys.executable, runc=runc))
        wrapper.chmod(0o755)
        conflist = {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "subnet": POD_CIDR,
                        "rangeStart": "10.244.0.10",
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                }
            ],
        }
        (cni_conf / "10-blockflow.conflist").write_text(json.dumps(conflist, indent=2))
        (containerd_dir / "config.toml").write_text(
            f"""version = 2
root = "{containerd_dir / "root"}"
state = "{self.run_dir / "containerd-state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir()}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{wrapper}"
"""
        )
        kubelet_config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY,
            "port": kubelet_port,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": True},
                "webhook": {"enabled": False},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "clusterDNS": [GATEWAY],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": "/etc/resolv.conf",
            "volumePluginDir": str(self.kubelet_dir / "volume-plugins"),
            # Images are made here and cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
            # Report readiness soon after start (the default waits up to 10 s).
            "nodeStatusUpdateFrequency": "2s",
        }
        (self.dir / "kubelet-config.json").write_text(json.dumps(kubelet_config, indent=2))

    def start_containerd(self, spawn: Callable[[str, list[str]], int]) -> int:
        config = self.dir / "containerd" / "config.toml"
        pid = spawn("containerd", ["containerd", "--config", str(config)])
        _wait(lambda: self.ctr("version", check=False).returncode == 0, "containerd", self.logs)
        return pid

    def import_pause(self, pause_binary: Path) -> None:
        archive = self.dir / "pause.tar"
        archive.write_bytes(pause_archive(pause_binary))
        self.ctr("images", "import", "--no-unpack", str(archive))
        archive.unlink()

    def load_image(self, archive: Path) -> None:
        """Import a docker-archive or oci-archive into the node's containerd (k8s.io)."""
        self.ctr("images", "import", str(archive))

    def commands(self, binaries: dict[str, str], kubeconfig: Path) -> dict[str, list[str]]:
        """The argv of every node process but containerd, keyed by name."""
        python = sys.executable
        return {
            "cluster-dns": [
                python,
                "-m",
                "controller.testing.cluster_dns",
                "--kubeconfig",
                str(kubeconfig),
                "--listen",
                f"{GATEWAY}:53",
                "--domain",
                CLUSTER_DOMAIN,
            ],
            "kube-scheduler": [
                binaries["kube-scheduler"],
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                "--v=1",
            ],
            "kube-proxy": [
                binaries["kube-proxy"],
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={NODE_NAME}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={POD_CIDR}",
                "--masquerade-all",
                f"--bind-address={GATEWAY}",
                f"--healthz-bind-address=127.0.0.1:{free_port()}",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--v=1",
            ],
            "kubelet": [
                binaries["kubelet"],
                f"--config={self.dir / 'kubelet-config.json'}",
                f"--kubeconfig={kubeconfig}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{self.socket}",
                f"--root-dir={self.kubelet_dir}",
                f"--cert-dir={self.dir / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                f"--pod-infra-container-image={PAUSE_IMAGE}",
                "--v=1",
            ],
        }

    # -- stop ---------------------------------------------------------------------------------

    def stop(
        self,
        pids: dict[str, int],
        stop_process: Callable[[int], bool],
        api: Callable[[str, str], object] | None,
        kube_proxy: str | None,
    ) -> list[str]:
        """Take the node down; return what could not be removed (empty when clean)."""
        if api is not None and pids.get("kubelet"):
            self._delete_pods(api)
        for name in STOP_ORDER:
            if name == "containerd":
                self._kill_tasks()
            pid = pids.get(name)
            if pid:
                stop_process(pid)
        self._kill_shims()
        if kube_proxy and Path(kube_proxy).is_file():
            _run(kube_proxy, "--cleanup", "--proxy-mode=iptables", check=False)
        self._unmount_all()
        made_network = self._saved_sysctls.exists()  # not when the bridge was another node's
        if made_network:
            remove_network(self._saved_sysctls)
        for cached in Path("/var/lib/cni/results").glob(f"{CNI_NETWORK}-*"):
            cached.unlink(missing_ok=True)
        self._remove_pod_logs()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return leftovers(self.dir, self.run_dir, network=made_network)

    def _delete_pods(self, api: Callable[[str, str], object]) -> None:
        """Every Pod deleted at once, then wait for kubelet to stop their sandboxes (CNI DEL)."""
        try:
            listed = api("GET", "/api/v1/pods")
        except OSError:
            return
        assert isinstance(listed, dict)
        for pod in listed.get("items", []):
            meta = pod["metadata"]
            self._pod_uids.append(meta["uid"])
            with contextlib.suppress(OSError):
                api(
                    "DELETE",
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
                    "?gracePeriodSeconds=0",
                )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self._running_tasks():
            time.sleep(0.5)

    def _clear_stale(self) -> None:
        """What a node whose processes were all killed left (the machine's session ended before
        `down`): its shims, mounts, run folders, the bridge and its iptables chains."""
        print(f"[node] removing what a stopped node left ({BRIDGE}, its chains)", file=sys.stderr)
        shims = _pids_matching(lambda cmd: "containerd-shim" in cmd and "/blockflow-node-" in cmd)
        for pid in shims + _container_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for folder in Path("/run").glob("blockflow-node-*"):
            for target in sorted(_mounts_under(folder), key=len, reverse=True):
                _run("umount", "-l", target, check=False)
            shutil.rmtree(folder, ignore_errors=True)
        time.sleep(0.5)  # the killed processes leave their cgroups
        for cgroup in Path("/sys/fs/cgroup").glob("*/k8s.io/*"):
            if cgroup.is_dir():
                with contextlib.suppress(OSError):
                    cgroup.rmdir()  # only empty ones go
        remove_network(None)  # the sysctls' old values went with that node's folder

    def _remove_pod_logs(self) -> None:
        """kubelet keeps Pod logs in /var/log/pods (a fixed place) until it collects the Pod."""
        for uid in self._pod_uids:
            for folder in Path("/var/log/pods").glob(f"*_{uid}"):
                shutil.rmtree(folder, ignore_errors=True)
        links = Path("/var/log/containers")
        for link in links.glob("*.log") if links.is_dir() else ():
            if link.is_symlink() and not link.exists():
                link.unlink()

    def _running_tasks(self) -> list[str]:
        if not self.socket.exists():
            return []
        listed = self.ctr("tasks", "ls", "-q", check=False)
        return [line for line in listed.stdout.split() if line] if listed.returncode == 0 else []

    def _kill_tasks(self) -> None:
        for task in self._running_tasks():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self._running_tasks():
            time.sleep(0.3)

    def _kill_shims(self) -> None:
        """containerd's shims outlive it by design; those of this node's socket go too."""
        address = str(self.socket)
        for pid in _pids_matching(lambda cmd: "containerd-shim" in cmd and address in cmd):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    def _unmount_all(self) -> None:
        targets = _mounts_under(self.dir) + _mounts_under(self.run_dir)
        for target in sorted(targets, key=len, reverse=True):
            if _run("umount", target, check=False).returncode != 0:
                _run("umount", "-l", target, check=False)


# -- what a node leaves behind ---------------------------------------------------------------


def leftovers(node_dir: Path, run_dir: Path, *, network: bool = True) -> list[str]:
    """Anything of a node still on the machine: processes, mounts, its folders and, when it
    made the network, the bridge and iptables rules."""
    found: list[str] = []
    markers = (str(node_dir), str(run_dir))
    for pid in _pids_matching(lambda cmd: any(m in cmd for m in markers)):
        found.append(f"process {pid}")
    found += [f"container process {pid}" for pid in _container_pids()]
    for folder in (node_dir, run_dir):
        found += [f"mount {m}" for m in _mounts_under(folder)]
    if network:
        found += network_leftovers()
    found += [f"directory {folder}" for folder in (node_dir, run_dir) if folder.exists()]
    return found


CONTAINER_CGROUPS = Path("/sys/fs/cgroup/pids/k8s.io")  # containerd's namespace, cgroupfs


def _container_pids() -> list[int]:
    """Processes of containers (Pods' and their sandboxes'), which outlive killed shims."""
    found = []
    for procs in CONTAINER_CGROUPS.glob("*/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(line) for line in procs.read_text().split()]
    return found


def _is_node_process(cmd: str) -> bool:
    """kubelet, containerd or kube-proxy of a local node (any checkout's); not the shims, which
    outlive a killed containerd."""
    if "containerd-shim" in cmd:
        return False
    return (
        "/run/blockflow-node-" in cmd
        or "/node/containerd/config.toml" in cmd
        or ("kube-proxy" in cmd and f"--hostname-override={NODE_NAME}" in cmd)
    )


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    targets = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            target = fields[4].replace("\\040", " ")
            if target.startswith(prefix) or target == prefix.rstrip("/"):
                targets.append(target)
    return targets


def _pids_matching(match: Callable[[str], bool]) -> list[int]:
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd and match(cmd):
            found.append(int(entry.name))
    return found


def _wait(check: Callable[[], bool], what: str, logs: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise NodeError(f"{what} was not ready after {timeout:.0f}s; see {logs}/{what}.log")


def api_client(server: str, token: str, ca: Path) -> Callable[[str, str], object]:
    """A tiny JSON client of the API server (urllib), for the node's own bookkeeping."""
    context = ssl.create_default_context(cafile=str(ca))

    def call(method: str, path: str) -> object:
        request = urllib.request.Request(
            server + path, method=method, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {}
            raise OSError(f"{method} {path}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, ssl.SSLError) as exc:
            raise OSError(str(exc)) from exc

    return call


def node_ready(call: Callable[[str, str], object]) -> bool:
    try:
        node = call("GET", f"/api/v1/nodes/{NODE_NAME}")
    except OSError:
        return False
    assert isinstance(node, dict)
    taints = (node.get("spec") or {}).get("taints") or []
    if any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints):
        return False  # Ready, but Pods are not scheduled to it until the taint goes
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False
